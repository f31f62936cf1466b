"""Tokens never reach the logs: uvicorn logs request targets (access log, WebSocket lines) as the client sent
them, and a token may be in one (``?token=`` on sync and event-stream URLs, invite tokens in paths).

Redaction is by parsed parameter, as the app reads them: the query string is split on ``&`` and a parameter
whose percent-decoded name is ``token`` (``?%74oken=`` authenticates as well as ``?token=``) has its value
replaced; a path is percent-decoded before the invite routes are matched. The filter is installed by
``create_app``, so every way of running the app (``plait serve``, ``uvicorn --factory api.app:create_app``,
the tests' servers) has it.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote, unquote_plus

REDACTED = "<redacted>"
# A request target in a log line: starts with "/" at the start of the text or after a space or a quote.
_TARGET = re.compile(r"(?:^|(?<=[\s\"'(]))/[^\s\"']*")
_INVITE = re.compile(r"(/api/invites/|/invite/)[^/]+")
LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn")


def _redact_query(query: str) -> str:
    parts = query.split("&")
    for i, part in enumerate(parts):
        name, eq, value = part.partition("=")
        if eq and value and unquote_plus(name).strip().lower() == "token":
            parts[i] = f"{name}={REDACTED}"
    return "&".join(parts)


def _redact_target(target: str) -> str:
    path, q, query = target.partition("?")
    if "%" in path or "/invite" in path:
        decoded = unquote(path)
        if _INVITE.search(decoded):
            path = _INVITE.sub(rf"\1{REDACTED}", decoded)
    return path + q + (_redact_query(query) if q else "")


def redact_tokens(text: str) -> str:
    """``text`` with the token of every request target in it replaced by ``<redacted>``."""
    if "?" not in text and "/invite" not in text and "%" not in text:
        return text  # the common case: nothing that can hold a token
    return _TARGET.sub(lambda m: _redact_target(m.group(0)), text)


class NoTokenInLogs(logging.Filter):
    """Rewrites a record's message and string arguments with :func:`redact_tokens`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_tokens(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        return True


def install_log_redaction() -> None:
    """Add the filter to uvicorn's loggers (once; a logging configuration applied later keeps it: dictConfig
    replaces a logger's handlers, not its filters)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, NoTokenInLogs) for f in logger.filters):
            logger.addFilter(NoTokenInLogs())
