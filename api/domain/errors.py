"""How a domain rule says no, without knowing about HTTP frameworks.

A rule that refuses raises :class:`Refused` with the status and message the client gets; the API answers it
as every other error (``{"detail": ...}``, see ``api/errors.py``, whose ``ApiError`` is a ``Refused`` too), so
moving a rule out of a route changes neither the status nor the body.
"""

from __future__ import annotations


class Refused(Exception):
    """The request is refused: ``status_code`` and ``detail`` are what the client receives."""

    def __init__(self, status_code: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers


def not_found(what: str = "Workspace") -> Refused:
    """The one 404 wording: unknown ids and things the caller may not see answer alike (nothing leaks)."""
    return Refused(404, f"{what} not found")
