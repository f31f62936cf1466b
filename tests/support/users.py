"""Creating accounts and workspaces through the real REST API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx


@dataclass
class Account:
    id: str
    email: str
    password: str
    display_name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def register(client: httpx.Client, name: str = "user") -> Account:
    email = f"{name}-{uuid.uuid4().hex[:10]}@example.com"
    password = "correct horse battery"
    r = client.post("/api/auth/register", json={"email": email, "password": password, "display_name": name})
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    r = client.post("/api/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return Account(user_id, email, password, name, r.json()["access_token"])


def create_workspace(client: httpx.Client, owner: Account, name: str = "ws") -> str:
    r = client.post("/api/workspaces", json={"name": name}, headers=owner.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def add_member(client: httpx.Client, wid: str, owner: Account, member: Account, role: str) -> None:
    """Invite ``member`` with ``role`` and accept, as a user would."""
    r = client.post(
        f"/api/workspaces/{wid}/invites",
        json={"role": role if role != "owner" else "admin"},
        headers=owner.headers,
    )
    assert r.status_code == 201, r.text
    r = client.post(f"/api/invites/{r.json()['token']}/accept", headers=member.headers)
    assert r.status_code == 200, r.text
    if role == "owner":
        r = client.patch(f"/api/workspaces/{wid}/members/{member.id}", json={"role": "owner"}, headers=owner.headers)
        assert r.status_code == 200, r.text


def workspace_with(client: httpx.Client, *roles: str) -> tuple[str, Account, list[Account]]:
    """A new workspace with its owner and one new member per role given."""
    owner = register(client, "owner")
    wid = create_workspace(client, owner)
    others = []
    for role in roles:
        acct = register(client, role)
        add_member(client, wid, owner, acct, role)
        others.append(acct)
    return wid, owner, others
