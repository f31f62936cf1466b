"""Signed webhooks (docs/webhooks.md): events derived from document changes and membership, stored as
deliveries before anything is sent (they survive restarts), sent by a worker with exponential backoff, and a
webhook that keeps failing is disabled.

Server-side request forgery: a URL must be http(s) and every address its host resolves to must be public,
checked when the webhook is created and again before each attempt — and the request goes to the address that
was checked (the connection is pinned to it, TLS still verifies the host name), so a DNS answer that changes
in between (rebinding) cannot redirect it. ``PLAIT_WEBHOOK_ALLOW_PRIVATE=true`` lifts the address check.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, cast, get_args
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.db import Database, insert_ignoring_conflicts
from persistence.models import User, Webhook, WebhookDelivery, as_utc, iso_z, new_id, utcnow
from sync_server.schema import TaskChange

if TYPE_CHECKING:
    from persistence.settings import Settings
    from sync_server.events import Committed
    from sync_server.supervisor import Supervisor

log = logging.getLogger("plait.webhooks")

WebhookEvent = Literal[
    "task.created",
    "task.updated",
    "task.deleted",
    "task.assigned",
    "task.completed",
    "member.joined",
    "member.left",
]
EVENTS: tuple[str, ...] = get_args(WebhookEvent)
LEASE = timedelta(seconds=30)  # a claimed delivery is not retried by another worker before this
HOOK_CACHE_SECONDS = 5.0  # how long a node may not know about a webhook created on another node
BATCH = 20
# A receiver's answer: only the status counts. At most this much of the body is read (so that a short answer
# leaves the connection reusable); the rest is never read, and never decompressed, the connection is closed.
# httpcore reads the socket in pieces of up to 64 KiB, so that is what one attempt may hold at most.
RESPONSE_READ_LIMIT = 4096


# ---- URL guard -------------------------------------------------------------------------------------------


class UnsafeUrl(ValueError):
    """The URL is not http(s), or its host resolves to an address webhooks may not reach."""


# Forms that carry an IPv4 address inside IPv6 through a translator or relay Plait cannot see (the relay or
# tunnel endpoint decides where it goes), and old or special-use ranges ``is_global`` does not know about.
_V6_REFUSED = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2002::/16",  # 6to4: wraps an IPv4 address (private ones included), reached through any relay
        "2001::/32",  # Teredo: wraps an IPv4 server address and a NAT's
        "fec0::/10",  # site-local (deprecated, private by design)
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): the translator is inside someone's network
        "3fff::/20",  # documentation (RFC 9637)
        "::/96",  # IPv4-compatible (deprecated)
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known NAT64 prefix: judged by the IPv4 address it wraps
_V4_REFUSED = (ipaddress.IPv4Network("192.88.99.0/24"),)  # 6to4 relay anycast (deprecated)


def address_allowed(address: str) -> bool:
    """Only global unicast addresses: no private, loopback, link-local, multicast, reserved or unspecified —
    and no IPv6 form that wraps an IPv4 address except IPv4-mapped and well-known NAT64, judged by that
    IPv4 address."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif any(ip in net for net in _V6_REFUSED):
            return False
    if isinstance(ip, ipaddress.IPv4Address) and any(ip in net for net in _V4_REFUSED):
        return False
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )


def _check_host(host: str) -> None:
    """A host name must be valid DNS (IDNA): labels of 1-63 characters, 253 in all (the resolver failed
    with UnicodeError, a 500, on a longer label)."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        encoded = host.encode("idna")
    except UnicodeError:
        raise UnsafeUrl("invalid host name") from None
    if len(encoded.rstrip(b".")) > 253:
        raise UnsafeUrl("invalid host name (longer than 253 characters)")


def check_url_syntax(url: str) -> None:
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        # NUL failed the insert on PostgreSQL (a 500); an HTTP client would refuse the others anyway
        raise UnsafeUrl("the URL may not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("only http and https URLs are allowed")
    if not parts.hostname:
        raise UnsafeUrl("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("credentials in the URL are not allowed (deliveries are signed instead)")
    if parts.fragment:
        raise UnsafeUrl("the URL may not have a fragment")
    try:
        _ = parts.port
    except ValueError:
        raise UnsafeUrl("invalid port") from None
    _check_host(parts.hostname)


async def resolve_allowed(url: str, allow_private: bool) -> list[str]:
    """The addresses the URL's host resolves to, all of them allowed (else UnsafeUrl)."""
    check_url_syntax(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl(f"the host {host!r} cannot be resolved") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnsafeUrl(f"the host {host!r} cannot be resolved")
    if not allow_private:
        refused = [a for a in addresses if not address_allowed(a)]
        if refused:
            raise UnsafeUrl(f"the host {host!r} resolves to a non-public address ({refused[0]})")
    return addresses


def pinned_request(url: str, address: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL rewritten to connect to ``address``, with the original Host header and TLS server name."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = host + (f":{parts.port}" if parts.port else "")
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = parts.netloc.rsplit("@", 1)[-1]
    extensions: dict[str, Any] = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return target, {"Host": host_header}, extensions


# ---- events and signatures -------------------------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`` (the X-Plait-Signature header)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def task_events(changes: Sequence[TaskChange]) -> list[tuple[str, str, dict[str, Any]]]:
    """(event, task id, data) for one update's task changes: one ``task.updated`` per task with every changed
    field, plus ``task.assigned`` / ``task.completed`` where they apply."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    updated: dict[str, dict[str, Any]] = {}
    tasks: dict[str, dict[str, Any] | None] = {}
    for ch in changes:
        tid = ch.task_id
        if ch.kind == "created":
            task = ch.task or {}
            out.append(("task.created", tid, {"task": ch.task}))
            if task.get("assignee_id"):
                out.append(
                    ("task.assigned", tid, {"task": ch.task, "assignee_id": task["assignee_id"], "previous": None})
                )
            if task.get("status") == "done":
                out.append(("task.completed", tid, {"task": ch.task}))
        elif ch.kind == "deleted":
            out.append(("task.deleted", tid, {"task": ch.task}))
        elif ch.kind == "updated" and ch.field is not None:
            tasks[tid] = ch.task
            if ch.field == "description":
                updated.setdefault(tid, {})["description"] = {"edit": ch.summary}
                continue
            if ch.old == ch.new:
                continue
            updated.setdefault(tid, {})[ch.field] = {"from": ch.old, "to": ch.new}
            if ch.field == "assignee_id" and ch.new:
                out.append(("task.assigned", tid, {"task": ch.task, "assignee_id": ch.new, "previous": ch.old}))
            if ch.field == "status" and ch.new == "done":
                out.append(("task.completed", tid, {"task": ch.task}))
    for tid, fields in updated.items():
        out.append(("task.updated", tid, {"task": tasks.get(tid), "changes": fields}))
    return out


TYPING_DELAY = timedelta(seconds=2)  # description edits wait this long for more keystrokes to fold in


def _is_typing(event: str, data: dict[str, Any]) -> bool:
    return event == "task.updated" and set(data.get("changes") or {}) == {"description"}


def _typing_key(task_id: str, actor: str | None, seq: int) -> str:
    return f"typing:{task_id}:{actor or 'server'}:{seq}"


def _merged(payload: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with the newer task state and the edit counts added up."""
    old = ((payload.get("data") or {}).get("changes") or {}).get("description", {}).get("edit") or {}
    new = (data.get("changes") or {}).get("description", {}).get("edit") or {}
    edit = {k: int(old.get(k, 0)) + int(new.get(k, 0)) for k in ("inserted", "deleted")}
    return {**payload, "data": {"task": data.get("task"), "changes": {"description": {"edit": edit}}}}


@dataclass(frozen=True)
class HookInfo:
    id: str
    events: frozenset[str]


# ---- the service -----------------------------------------------------------------------------------------


class WebhookService:
    """Derives deliveries from durable updates (one worker) and sends due deliveries (another)."""

    def __init__(self, db: Database, s: Settings) -> None:
        self.db = db
        self.allow_private = s.webhook_allow_private
        self.base = s.webhook_retry_base_seconds
        self.max_attempts = s.webhook_max_attempts
        self.max_failures = s.webhook_max_consecutive_failures
        self.deadline = s.webhook_timeout_seconds
        self.concurrency = s.webhook_concurrency
        self._queue: asyncio.Queue[tuple[str, list[tuple[int, str | None, list[TaskChange]]]]] = asyncio.Queue()
        self._hooks: dict[str, tuple[float, list[HookInfo]]] = {}
        self._hooked: set[str] = set()  # workspaces with an active webhook, as of _hooked_at
        self._hooked_at: float | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._sup: Supervisor | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}  # webhook id -> the task sending its deliveries
        self._client = httpx.AsyncClient(timeout=s.webhook_timeout_seconds, follow_redirects=False)
        self.sent = 0

    def start(self, sup: Supervisor) -> None:
        self._sup = sup
        self._tasks = [
            sup.spawn("webhooks-derive", self._derive_loop()),
            sup.spawn("webhooks-send", self._send_loop()),
        ]

    async def stop(self) -> None:
        """Derive what is queued (at most 5 s), then stop sending: a delivery cut short is retried after a
        restart (it is stored, and its lease runs out)."""
        if self._tasks and not self._tasks[0].done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout=5.0)
        tasks = [*self._tasks, *self._inflight.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await self._client.aclose()

    def invalidate(self, workspace_id: str) -> None:
        """A webhook of this workspace was created or deleted on this node: stop using the cached list."""
        self._hooks.pop(workspace_id, None)
        self._hooked_at = None

    # -- deriving deliveries --------------------------------------------------------------------------------

    def on_durable(self, commits: Sequence[Committed]) -> None:
        if not commits:
            return
        wid = commits[0].workspace_id  # one flush: one workspace
        hooked, at = self._hooked, self._hooked_at
        if at is not None and wid not in hooked and time.monotonic() - at < HOOK_CACHE_SECONDS:
            return  # no webhook in this workspace: nothing to derive (the common case, on the typing hot path)
        items = [(c.seq, c.actor_id, cast("list[TaskChange]", list(c.changes))) for c in commits if c.changes]
        if items:
            self._queue.put_nowait((wid, items))

    async def _refresh_hooked(self) -> None:
        """Which workspaces have an active webhook at all: one query per HOOK_CACHE_SECONDS for the node,
        however many rooms are busy (rather than one per workspace)."""
        if self._hooked_at is not None and time.monotonic() - self._hooked_at < HOOK_CACHE_SECONDS:
            return
        started = time.monotonic()
        async with self.db.session() as s:
            rows = await s.execute(select(Webhook.workspace_id).where(Webhook.active).distinct())
            self._hooked = {str(r[0]) for r in rows}
        self._hooked_at = started

    async def hooks(self, workspace_id: str) -> list[HookInfo]:
        await self._refresh_hooked()
        if workspace_id not in self._hooked:
            return []
        cached = self._hooks.get(workspace_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < HOOK_CACHE_SECONDS:
            return cached[1]
        async with self.db.session() as s:
            rows = await s.execute(
                select(Webhook.id, Webhook.events).where(Webhook.workspace_id == workspace_id, Webhook.active)
            )
            hooks = [HookInfo(r[0], frozenset(r[1] or ())) for r in rows]
        self._hooks[workspace_id] = (now, hooks)
        return hooks

    async def _derive_loop(self) -> None:
        while True:
            wid, items = await self._queue.get()
            try:
                hooks = await self.hooks(wid)
                if hooks:
                    events = [
                        (
                            _typing_key(tid, actor, seq) if _is_typing(event, data) else f"{seq}:{tid}:{event}",
                            event,
                            actor,
                            data,
                        )
                        for seq, actor, changes in items
                        for event, tid, data in task_events(changes)
                    ]
                    try:
                        await self.enqueue(wid, hooks, events)
                    except IntegrityError:
                        # A cached webhook was deleted (on another node): reload the list and try once more.
                        self.invalidate(wid)
                        await self.enqueue(wid, await self.hooks(wid), events)
            except Exception:
                log.exception("deriving webhook deliveries for %s failed", wid)
            finally:
                self._queue.task_done()

    async def enqueue(
        self, workspace_id: str, hooks: list[HookInfo], events: list[tuple[str, str, str | None, dict[str, Any]]]
    ) -> int:
        """Store one delivery per (webhook subscribed to the event, event); duplicates (same key) are ignored."""
        now = utcnow()
        rows: list[dict[str, Any]] = []
        async with self.db.transaction() as s:
            actor_ids = {a for _, _, a, _ in events if a}
            actors: dict[str, dict[str, str]] = {}
            if actor_ids:
                for uid, name in await s.execute(select(User.id, User.display_name).where(User.id.in_(actor_ids))):
                    actors[uid] = {"id": uid, "display_name": name}
            typing: dict[tuple[str, str], dict[str, Any]] = {}  # (webhook, key prefix) -> row in this batch
            for key, event, actor, data in events:
                for hook in hooks:
                    if event not in hook.events:
                        continue
                    if key.startswith("typing:"):
                        prefix = key.rsplit(":", 1)[0] + ":"
                        if await self._merge_typing(s, hook.id, prefix, typing, data, now):
                            continue
                    delivery_id = new_id()
                    payload = {
                        "id": delivery_id,
                        "event": event,
                        "workspace_id": workspace_id,
                        "occurred_at": iso_z(now),
                        "actor": actors.get(actor) if actor else None,
                        "data": data,
                    }
                    rows.append(
                        {
                            "id": delivery_id,
                            "webhook_id": hook.id,
                            "event": event,
                            "payload": payload,
                            "status": "pending",
                            "attempts": 0,
                            "next_attempt_at": now + TYPING_DELAY if key.startswith("typing:") else now,
                            "dedup_key": key[:200],
                            "created_at": now,
                        }
                    )
                    if key.startswith("typing:"):
                        typing[(hook.id, key.rsplit(":", 1)[0] + ":")] = rows[-1]
            await insert_ignoring_conflicts(
                s,
                self.db,
                WebhookDelivery.__table__,  # type: ignore[arg-type]
                rows,
                ["webhook_id", "dedup_key"],
            )
        if rows:
            self._wake.set()
        return len(rows)

    async def _merge_typing(
        self,
        s: AsyncSession,
        hook_id: str,
        prefix: str,
        batch: dict[tuple[str, str], dict[str, Any]],
        data: dict[str, Any],
        now: datetime,
    ) -> bool:
        """Fold a description edit into a not-yet-sent ``task.updated`` of the same task and actor (from this
        batch, or stored and not due yet), so a run of typing is one delivery, not one per keystroke."""
        row = batch.get((hook_id, prefix))
        if row is not None:
            row["payload"] = _merged(row["payload"], data)
            return True
        existing = await s.scalar(
            select(WebhookDelivery)
            .where(
                WebhookDelivery.webhook_id == hook_id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.attempts == 0,
                WebhookDelivery.next_attempt_at > now + timedelta(seconds=0.2),
                WebhookDelivery.dedup_key.startswith(prefix, autoescape=True),
            )
            .limit(1)
        )
        if existing is None:
            return False
        result = await s.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == existing.id,
                WebhookDelivery.attempts == 0,
                WebhookDelivery.next_attempt_at > now,
            )
            .values(payload=_merged(existing.payload, data))
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0)) == 1

    async def member_event(
        self, workspace_id: str, event: str, user_id: str, role: str | None, actor_id: str | None
    ) -> None:
        """``member.joined`` / ``member.left`` (called by the invite and member routes after their commit)."""
        hooks = [h for h in await self.hooks(workspace_id) if event in h.events]
        if not hooks:
            return
        async with self.db.session() as s:
            name = await s.scalar(select(User.display_name).where(User.id == user_id))
        data = {"user": {"id": user_id, "display_name": name}, "role": role}
        await self.enqueue(workspace_id, hooks, [(f"{event}:{user_id}:{new_id()}", event, actor_id, data)])

    # -- sending ---------------------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        """Hands the due deliveries of each webhook to a task of its own, at most ``webhook_concurrency`` tasks
        at once; a webhook that has one gets no second (its deliveries stay in order). So a slow receiver holds
        one slot for at most the deadline per attempt, and never the loop: other webhooks' deliveries start as
        soon as they are due and a slot is free."""
        while True:
            self._wake.clear()
            delay = 5.0
            try:
                free = self.concurrency - len(self._inflight)
                if free > 0:
                    due = await self._due()
                    by_hook: dict[str, list[tuple[WebhookDelivery, Webhook]]] = {}
                    for d, h in due:
                        by_hook.setdefault(h.id, []).append((d, h))
                    for hook_id, items in list(by_hook.items())[:free]:
                        self._start(hook_id, items)
                    if len(by_hook) <= free:
                        if len(due) == BATCH:
                            continue
                        delay = await self._next_due_in()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook delivery round failed")
                delay = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.01, delay))

    def _start(self, hook_id: str, items: list[tuple[WebhookDelivery, Webhook]]) -> None:
        assert self._sup is not None, "start() first"
        task = self._sup.run_soon(f"webhook-{hook_id}", self._attempt_in_order(items))
        self._inflight[hook_id] = task

        def done(_: asyncio.Task[None]) -> None:
            if self._inflight.get(hook_id) is task:
                del self._inflight[hook_id]
            self._wake.set()

        task.add_done_callback(done)

    def _not_in_flight(self) -> list[Any]:
        return [Webhook.id.not_in(list(self._inflight))] if self._inflight else []

    async def _due(self) -> list[tuple[WebhookDelivery, Webhook]]:
        async with self.db.session() as s:
            rows = await s.execute(
                select(WebhookDelivery, Webhook)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= utcnow(),
                    Webhook.active,
                    *self._not_in_flight(),
                )
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.seq)
                .limit(BATCH)
            )
            return [(d, h) for d, h in rows]

    async def _next_due_in(self) -> float:
        """Seconds until the earliest pending delivery is due (at most 5: other nodes add deliveries too)."""
        async with self.db.session() as s:
            earliest = await s.scalar(
                select(WebhookDelivery.next_attempt_at)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.status == "pending", Webhook.active, *self._not_in_flight())
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(1)
            )
        if earliest is None:
            return 5.0
        return min(5.0, max(0.0, (as_utc(earliest) - utcnow()).total_seconds()))

    async def _claim(self, d: WebhookDelivery) -> bool:
        """Take the delivery for one attempt; another worker (node) that read it too loses."""
        now = utcnow()
        async with self.db.transaction() as s:
            result = await s.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == d.id,
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.attempts == d.attempts,
                    WebhookDelivery.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + LEASE)
                .execution_options(synchronize_session=False)
            )
        return int(getattr(result, "rowcount", 0)) == 1

    async def _attempt_in_order(self, items: list[tuple[WebhookDelivery, Webhook]]) -> None:
        """One hook's due deliveries one after another (hooks in parallel): a failing endpoint is not sent
        several requests at once. The run stops at the first failure, or once it has taken the deadline: the
        rest stay due and go back into the next round with everyone else's (a slow or failing endpoint does
        not keep its slot), and once its consecutive failures disable it, they are not attempted (the disable
        marks them failed)."""
        started = time.monotonic()
        for d, h in items:
            if not await self._attempt(d, h) or time.monotonic() - started >= self.deadline:
                return

    async def _attempt(self, d: WebhookDelivery, hook: Webhook) -> bool:
        """Claim, send, record; False if the attempt failed."""
        try:
            if not await self._claim(d):
                return True
            code, error = await self._send(d, hook)
            await self._record(d, hook, code, error)
            return error is None
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook delivery %s failed unexpectedly", d.id)
            return False

    async def _send(self, d: WebhookDelivery, hook: Webhook) -> tuple[int | None, str | None]:
        """One HTTP attempt: (status code, error or None when delivered), within the deadline as a whole
        (``webhook_timeout_seconds``: httpx's timeouts are per read, and a receiver sending a byte every few
        seconds never trips them)."""
        status: list[int] = []
        try:
            async with asyncio.timeout(self.deadline):
                return await self._post(d, hook, status)
        except TimeoutError:
            if status:  # the answer came; only reading its body ran out of time
                return self._outcome(status[0])
            return None, f"no answer within the {self.deadline:g} s deadline"

    async def _post(self, d: WebhookDelivery, hook: Webhook, status: list[int]) -> tuple[int | None, str | None]:
        try:
            addresses = await resolve_allowed(hook.url, self.allow_private)
        except UnsafeUrl as exc:
            log.warning("webhook %s: delivery %s refused: %s", hook.id, d.id, exc)
            return None, f"refused: {exc}"
        body = json.dumps(d.payload, separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(time.time()))
        url, headers, extensions = pinned_request(hook.url, addresses[0])
        headers.update(
            {
                "Content-Type": "application/json",
                "User-Agent": "Plait-Webhooks/1",
                "X-Plait-Event": d.event,
                "X-Plait-Delivery": d.id,
                "X-Plait-Timestamp": timestamp,
                "X-Plait-Signature": sign(hook.secret, timestamp, body),
            }
        )
        try:
            async with self._client.stream(
                "POST", url, content=body, headers=headers, extensions=extensions
            ) as response:
                status.append(response.status_code)
                read = 0
                async for chunk in response.aiter_raw():  # raw: a compressed body is never inflated
                    read += len(chunk)
                    if read >= RESPONSE_READ_LIMIT:
                        break  # leaving the block closes the connection with the rest unread
        except httpx.HTTPError as exc:
            if not status:
                return None, f"{type(exc).__name__}: {exc}"[:500]
        return self._outcome(status[0])

    @staticmethod
    def _outcome(code: int) -> tuple[int | None, str | None]:
        if 200 <= code < 300:
            return code, None
        return code, f"HTTP {code}"

    async def _record(self, d: WebhookDelivery, hook: Webhook, code: int | None, error: str | None) -> None:
        now = utcnow()
        attempts = d.attempts + 1
        async with self.db.transaction() as s:
            if error is None:
                await s.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == d.id)
                    .values(
                        status="delivered",
                        attempts=attempts,
                        last_status_code=code,
                        last_error=None,
                        delivered_at=now,
                        next_attempt_at=None,
                    )
                )
                await s.execute(update(Webhook).where(Webhook.id == hook.id).values(failure_count=0))
                self.sent += 1
                return
            final = attempts >= self.max_attempts
            await s.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == d.id)
                .values(
                    status="failed" if final else "pending",
                    attempts=attempts,
                    last_status_code=code,
                    last_error=error[:500],
                    next_attempt_at=None if final else now + timedelta(seconds=self.base * 2 ** (attempts - 1)),
                )
            )
            failures = await s.scalar(
                update(Webhook)
                .where(Webhook.id == hook.id)
                .values(failure_count=Webhook.failure_count + 1)
                .returning(Webhook.failure_count)
            )
            if failures is not None and failures >= self.max_failures:
                await s.execute(
                    update(Webhook).where(Webhook.id == hook.id, Webhook.active).values(active=False, disabled_at=now)
                )
                await s.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.webhook_id == hook.id, WebhookDelivery.status == "pending")
                    .values(status="failed", next_attempt_at=None, last_error="webhook disabled: too many failures")
                )
                log.warning("webhook %s disabled after %d consecutive failed attempts", hook.id, failures)
                self.invalidate(hook.workspace_id)


async def member_event(
    service: WebhookService, workspace_id: str, event: str, user_id: str, role: str | None, actor_id: str | None
) -> None:
    """Emit ``member.joined`` / ``member.left`` after a membership change. Never fails the caller: the change
    is committed already."""
    try:
        await service.member_event(workspace_id, event, user_id, role, actor_id)
    except Exception:
        log.exception("webhook %s event for %s failed", event, workspace_id)
