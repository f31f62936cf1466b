"""Password hashing (argon2), access tokens (HS256 JWT with ``sub``, ``sid``, ``iat``, ``exp``), and the opaque
refresh and personal access tokens (random, stored as SHA-256)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from api.errors import ApiError

T = TypeVar("T")

_hasher = PasswordHasher()
# Verified against when the email is unknown, so both failures take the same time. Made on first use, with the
# configured cost: a hash at import would cost every command of the CLI a tenth of a second.
_dummy_hash: str | None = None


def configure_password_hashing(time_cost: int, memory_kib: int, parallelism: int) -> None:
    """Set argon2's cost (the defaults follow argon2-cffi's RFC 9106 profile; tests lower it for speed)."""
    global _hasher, _dummy_hash
    if (_hasher.time_cost, _hasher.memory_cost, _hasher.parallelism) == (time_cost, memory_kib, parallelism):
        return
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
    _dummy_hash = None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _dummy() -> str:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
    return _dummy_hash


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def _lower_priority(nice: int) -> None:
    """Give the calling thread a lower CPU priority (Linux: a thread has its own nice value); elsewhere, or
    when not allowed, nothing happens."""
    if nice <= 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):
        pass


class HashLane:
    """Password hashing on threads of its own, with a bounded number of hashes waiting for them.

    argon2 is deliberately slow (tens of ms of CPU and 64 MiB each); on the event loop's default executor a
    flood of registrations queued ahead of every login and of other work using that executor. A lane has
    ``threads`` threads and admits at most ``max_waiting`` more hashes than it has threads; beyond that the
    request is refused at once (503 with ``Retry-After``) instead of waiting behind the flood. Logins and
    registrations use separate lanes, so a registration flood never queues ahead of a login's verification;
    the registration lane's threads also run at a lower CPU priority (``nice``), so they do not take the CPU
    from logins and the event loop either.
    A hash whose client went away still holds its place until it finishes (argon2 cannot be interrupted).
    """

    def __init__(self, name: str, threads: int, max_waiting: int, nice: int = 0) -> None:
        self.name = name
        self.capacity = threads + max_waiting
        self._executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix=f"plait-hash-{name}", initializer=_lower_priority, initargs=(nice,)
        )
        self._lock = threading.Lock()
        self._pending = 0

    def _done(self, _: Future[Any]) -> None:
        with self._lock:
            self._pending -= 1

    def refuse_if_full(self) -> None:
        """503 now when the lane has no room, before the request does any other work (a flood's requests are
        turned away without a database query); ``run`` checks again, as the lane may fill meanwhile."""
        if self._pending >= self.capacity:
            raise ApiError(503, "Server busy; try again shortly", headers={"Retry-After": "1"})

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        with self._lock:
            if self._pending >= self.capacity:
                busy = True
            else:
                busy = False
                self._pending += 1
        if busy:
            raise ApiError(503, "Server busy; try again shortly", headers={"Retry-After": "1"})
        future = self._executor.submit(fn, *args)
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)


PAT_PREFIX = "plait_pat_"  # recognizable by secret scanners
REFRESH_PREFIX = "plait_rt_"


def create_access_token(user_id: str, key: str, ttl_seconds: int, session_id: str) -> str:
    """A short-lived token of one session: ``sid`` lets every request check that the session still lives."""
    now = int(time.time())
    claims = {"sub": user_id, "sid": session_id, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, key, algorithm="HS256")


def decode_access_token(token: str, key: str) -> tuple[str, str] | None:
    """(user id, session id) of a valid token, or None when it is missing, forged, malformed, expired, or has
    no session (tokens made before sessions existed cannot be revoked, so they are refused)."""
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"], options={"require": ["sub", "exp", "iat", "sid"]})
    except jwt.PyJWTError:
        return None
    sub, sid = claims.get("sub"), claims.get("sid")
    return (sub, sid) if isinstance(sub, str) and isinstance(sid, str) else None


def new_opaque_token(prefix: str) -> str:
    """``prefix`` and 256 bits of randomness, URL-safe."""
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What is stored of a refresh or access token: its SHA-256 (the token itself has 256 bits of entropy, so
    no salt or slow hash is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_invite_token() -> str:
    """256 bits of randomness, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_invite_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
