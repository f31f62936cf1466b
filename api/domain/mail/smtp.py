"""One SMTP submission with ``aiosmtplib``, as ``PLAIT_SMTP_*`` configures it (plain, STARTTLS or TLS)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import aiosmtplib

from persistence.settings import Settings


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None
    password: str | None
    sender: str
    tls: str  # none | starttls | tls
    ca_file: Path | None
    timeout: float

    @classmethod
    def from_settings(cls, s: Settings) -> SmtpConfig | None:
        """None when no SMTP server is configured (then Plait sends no e-mail)."""
        if not s.smtp_host:
            return None
        return cls(
            s.smtp_host,
            s.smtp_port,
            s.smtp_username,
            s.smtp_password,
            s.smtp_from,
            s.smtp_tls,
            s.smtp_ca_file,
            s.smtp_timeout_seconds,
        )

    def tls_context(self) -> ssl.SSLContext | None:
        """The server's certificate is always verified: against ``smtp_ca_file`` or the system's CAs."""
        if self.tls == "none":
            return None
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)


def build_message(config: SmtpConfig, to: str, subject: str, body: str, message_id: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = config.sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(idstring=message_id, domain="plait")
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    msg.set_content(body)
    return msg


async def send(config: SmtpConfig, message: EmailMessage) -> None:
    """Submit one message; raises (``aiosmtplib.SMTPException``, ``OSError``, ``TimeoutError``) on failure."""
    await aiosmtplib.send(
        message,
        hostname=config.host,
        port=config.port,
        username=config.username,
        password=config.password,
        use_tls=config.tls == "tls",
        start_tls=config.tls == "starttls",
        tls_context=config.tls_context(),
        timeout=config.timeout,
    )
