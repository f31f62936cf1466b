"""A real SMTP server for the tests (aiosmtpd, in a thread): records what Plait sends, can refuse on demand,
and speaks plain SMTP, STARTTLS or TLS from the start (certificates from a throwaway CA, ``trustme``)."""

from __future__ import annotations

import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.server import free_port

LINK = re.compile(r"https?://\S+")


@dataclass
class Mail:
    to: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())

    def links(self) -> list[str]:
        return LINK.findall(self.body)


@dataclass
class _Handler:
    mails: list[Mail] = field(default_factory=list)
    refuse: int = 0  # answer this many DATA commands with a temporary failure
    refused: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.cond:
            if self.refuse > 0:
                self.refuse -= 1
                self.refused += 1
                return "451 4.3.0 try again later"
            raw = envelope.original_content or envelope.content or b""
            assert isinstance(raw, bytes)
            msg = message_from_bytes(raw, policy=policy.default)
            assert isinstance(msg, EmailMessage)
            self.mails.append(Mail(list(envelope.rcpt_tos), msg))
            self.cond.notify_all()
        return "250 OK"


class SmtpServer:
    """``start()`` it, point Plait at ``settings()``; ``wait_for(to)`` returns the mails sent to an address."""

    def __init__(self, tls: str = "none", port: int | None = None, ca_dir: Path | None = None) -> None:
        self.tls = tls
        self.port = port or free_port()
        self.handler = _Handler()
        self._controller: Controller | None = None
        self.ca_file: Path | None = None
        kwargs: dict[str, Any] = {}
        if tls != "none":
            assert ca_dir is not None, "TLS needs a directory for the CA file"
            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1", "localhost")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(context)
            self.ca_file = ca_dir / "smtp-ca.pem"
            ca.cert_pem.write_to_path(str(self.ca_file))
            kwargs = {"ssl_context": context} if tls == "tls" else {"tls_context": context, "require_starttls": True}
        self._kwargs = kwargs

    def start(self) -> SmtpServer:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **self._kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def settings(self) -> dict[str, Any]:
        """The PLAIT_SMTP_* settings for this server."""
        return {
            "smtp_host": "127.0.0.1",
            "smtp_port": self.port,
            "smtp_tls": self.tls,
            "smtp_ca_file": self.ca_file,
            "smtp_from": "Plait <plait@example.com>",
        }

    @property
    def mails(self) -> list[Mail]:
        with self.handler.cond:
            return list(self.handler.mails)

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.mails if address in m.to]

    def wait_for(self, address: str, count: int = 1, timeout: float = 20.0) -> list[Mail]:
        """The first ``count`` mails to ``address``, once they arrived (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self.handler.cond:
            while True:
                found = [m for m in self.handler.mails if address in m.to]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(found)} of {count} mails to {address} arrived in {timeout}s")
                self.handler.cond.wait(left)
