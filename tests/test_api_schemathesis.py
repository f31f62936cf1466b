"""schemathesis against the running server's own ``/openapi.json``: every operation gets bounded, generated valid
and invalid requests (as a real user with a bearer token; path ids are often swapped for real ones so requests
get past the 404s into the handlers) and no response may be a server error (5xx). Both database backends: the
same bad input can be a 4xx on SQLite and a 500 on PostgreSQL (e.g. a string that is not a UUID in a UUID
column).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from tests.support.server import ThreadServer
from tests.support.users import add_member, create_workspace, register

EXAMPLES_PER_OPERATION = 15
# Never-ending responses (SSE): nothing to fuzz in a request without a body, and reading them would hang.
SKIP = {("GET", "/api/notifications/stream")}


@dataclass
class Target:
    """One backend's server, the user the requests act as, and the real ids seeded on it."""

    backend: str
    base: str
    headers: dict[str, str]
    real: dict[str, str]


def _seed(backend: str, server: ThreadServer) -> Target:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        owner = register(http, "owner")
        member = register(http, "member")
        wid = create_workspace(http, owner)
        add_member(http, wid, owner, member, "editor")
        r = http.post(f"/api/workspaces/{wid}/tasks", json={"title": "seed task"}, headers=owner.headers)
        assert r.status_code == 201, r.text
        task_id = r.json()["id"]
        r = http.post(f"/api/workspaces/{wid}/invites", json={"role": "viewer"}, headers=owner.headers)
        assert r.status_code == 201, r.text
        invite = r.json()
    real: dict[str, str] = {"wid": wid, "task_id": task_id, "user_id": member.id, "token": invite["token"]}
    if "id" in invite:
        real["invite_id"] = invite["id"]
    return Target(backend, server.base_url, {"Authorization": f"Bearer {owner.token}"}, real)


@pytest.mark.slow
@pytest.mark.postgres
def test_no_generated_request_gets_a_server_error(make_server: Callable[..., ThreadServer]) -> None:
    """Each generated request goes to both backends' servers in turn: generating is half the cost, so it is
    done once (the requests, and what is asserted of each response, are the same as two separate runs')."""
    targets = [_seed(b, make_server(b, quota_rest_writes_per_minute=100_000)) for b in ("sqlite", "postgres")]
    schemas = [httpx.get(f"{t.base}/openapi.json", timeout=30).json() for t in targets]
    assert schemas[0] == schemas[1], "both backends serve the same API"
    schema = schemathesis.openapi.from_dict(schemas[0])
    session = requests.Session()
    calls: dict[str, Counter[str]] = {t.backend: Counter() for t in targets}
    failures: list[str] = []

    def fuzz(label: str, strategies: list[Any]) -> None:
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(strategies), use_real=st.booleans())
        def call(case: Any, use_real: bool) -> None:
            generated = dict(case.path_parameters) if case.path_parameters else None
            # Deleting the seeded workspace would turn the rest of the run into 404s: keep it.
            swap = (
                use_real
                and generated
                and not (case.method.upper() == "DELETE" and case.path == "/api/workspaces/{wid}")
            )
            for t in targets:
                if generated is not None:
                    case.path_parameters = {k: t.real[k] if swap and k in t.real else v for k, v in generated.items()}
                response = case.call(base_url=t.base, session=session, headers=t.headers, timeout=30)
                calls[t.backend][label] += 1
                if response.status_code >= 500:
                    failures.append(
                        f"{t.backend}: {label} -> {response.status_code} {response.text[:200]}\n"
                        f"    {case.as_curl_command(t.headers)}"
                    )

        call()

    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the server's schema is invalid: {result}"
        op = result.ok()
        if (op.method.upper(), op.path) in SKIP:
            continue
        strategies = [op.as_strategy(GenerationMode.POSITIVE)]
        if op.path_parameters or op.query or op.body:
            strategies.append(op.as_strategy(GenerationMode.NEGATIVE))
        fuzz(f"{op.method.upper()} {op.path}", strategies)

    for t in targets:
        counted = calls[t.backend]
        summary = {"backend": t.backend, "operations": len(counted), "calls": sum(counted.values())}
        print("\nRELIABILITY-SCHEMATHESIS " + json.dumps(summary))
        assert len(counted) > 20, f"too few operations exercised on {t.backend}: {sorted(counted)}"
    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures[:20])
    for t in targets:
        assert httpx.get(f"{t.base}/readyz", timeout=10).status_code == 200


def test_setting_the_role_a_member_already_has_is_not_a_server_error(client: httpx.Client) -> None:
    """Found by schemathesis: the no-op branch read expired ORM objects after its rollback (500 MissingGreenlet)."""
    owner, member = register(client, "owner"), register(client, "member")
    wid = create_workspace(client, owner)
    add_member(client, wid, owner, member, "editor")
    for _ in range(2):
        r = client.patch(f"/api/workspaces/{wid}/members/{member.id}", json={"role": "admin"}, headers=owner.headers)
        assert r.status_code == 200, r.text
        assert r.json()["role"] == "admin" and r.json()["user_id"] == member.id
