"""Password hashing (argon2) and access tokens (HS256 JWT with ``sub``, ``iat``, ``exp``)."""

from __future__ import annotations

import hashlib
import secrets
import time

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verified against when the email is unknown, so both failures take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def configure_password_hashing(time_cost: int, memory_kib: int, parallelism: int) -> None:
    """Set argon2's cost (the defaults follow argon2-cffi's RFC 9106 profile; tests lower it for speed)."""
    global _hasher, _DUMMY_HASH
    if (_hasher.time_cost, _hasher.memory_cost, _hasher.parallelism) == (time_cost, memory_kib, parallelism):
        return
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
    _DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def create_access_token(user_id: str, key: str, ttl_seconds: int) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl_seconds}, key, algorithm="HS256")


def decode_access_token(token: str, key: str) -> str | None:
    """The user id of a valid token, or None when it is missing, forged, malformed or expired."""
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"], options={"require": ["sub", "exp", "iat"]})
    except jwt.PyJWTError:
        return None
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else None


def new_invite_token() -> str:
    """256 bits of randomness, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_invite_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
