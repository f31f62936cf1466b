"""Accounts reused across the tests of one module: argon2 makes every registration deliberately slow.

Reuse is safe when each test creates its own workspace: an account's state is its memberships.
"""

from __future__ import annotations

import httpx

from tests.support.users import Account, register


class AccountPool:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._accounts: dict[str, Account] = {}

    def __call__(self, name: str) -> Account:
        """The pool's account called ``name`` (registered and logged in on first use)."""
        if name not in self._accounts:
            with httpx.Client(base_url=self.base_url, timeout=30) as c:
                self._accounts[name] = register(c, name)
        return self._accounts[name]
