"""Deltas of /metrics series, for asserting that a behaviour moved the counter documented for it.

The Prometheus registry is the process's: every in-process server (``ThreadServer``) of the test process counts
into the same series, so a delta read from one of them includes whatever the others did meanwhile. Where another
server could move a series, assert ``>=``; for an exact delta read a ``ProcessServer`` (its own registry), or a
series nothing else moves during the test.

Usage::

    before = scrape(http)                      # http: an httpx.Client on the server's base URL, or a base URL
    ... behaviour ...
    after = wait_moved(http, before, "plait_schema_repairs_total", at_least=3)
    assert delta(before, after, "plait_socket_closes_total", code="4403") >= 1
"""

from __future__ import annotations

import asyncio
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(http: httpx.Client | str) -> Samples:
    """Every sample of /metrics, keyed by series name and sorted labels."""
    if isinstance(http, str):
        r = httpx.get(f"{http}/metrics", timeout=10)
    else:
        r = http.get("/metrics")
    assert r.status_code == 200, f"/metrics answered {r.status_code}"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much one series (exact labels) moved; a series absent before counts from 0."""
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def wait_moved(
    http: httpx.Client | str,
    before: Samples,
    name: str,
    *,
    at_least: float = 1,
    timeout: float = 10.0,
    **labels: str,
) -> Samples:
    """Scrape until ``name`` moved by ``at_least`` since ``before`` (a counter is recorded after the behaviour's
    visible effect, e.g. after the commit); returns that scrape. AssertionError with the last delta on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        now = scrape(http)
        moved = delta(before, now, name, **labels)
        if moved >= at_least:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels or ''} moved by {moved}, expected at least {at_least}")
        time.sleep(0.02)


async def async_wait_moved(
    http: httpx.Client | str,
    before: Samples,
    name: str,
    *,
    at_least: float = 1,
    timeout: float = 10.0,
    **labels: str,
) -> Samples:
    """``wait_moved`` for async tests: each scrape runs in a thread, so the test's event loop keeps serving."""
    return await asyncio.to_thread(wait_moved, http, before, name, at_least=at_least, timeout=timeout, **labels)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
