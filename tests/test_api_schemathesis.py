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


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_no_generated_request_gets_a_server_error(make_server: Callable[..., ThreadServer], backend: str) -> None:
    server = make_server(backend, quota_rest_writes_per_minute=100_000)
    base = server.base_url
    with httpx.Client(base_url=base, timeout=30) as http:
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
    headers = {"Authorization": f"Bearer {owner.token}"}
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    session = requests.Session()
    calls: Counter[str] = Counter()
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
            # Deleting the seeded workspace would turn the rest of the run into 404s: keep it.
            if (
                use_real
                and case.path_parameters
                and not (case.method.upper() == "DELETE" and case.path == "/api/workspaces/{wid}")
            ):
                for name in case.path_parameters:
                    if name in real:
                        case.path_parameters[name] = real[name]
            response = case.call(base_url=base, session=session, headers=headers, timeout=30)
            calls[label] += 1
            if response.status_code >= 500:
                failures.append(
                    f"{label} -> {response.status_code} {response.text[:200]}\n    {case.as_curl_command(headers)}"
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

    total = sum(calls.values())
    print("\nRELIABILITY-SCHEMATHESIS " + json.dumps({"backend": backend, "operations": len(calls), "calls": total}))
    assert len(calls) > 20, f"too few operations exercised: {sorted(calls)}"
    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures[:20])
    assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200


def test_setting_the_role_a_member_already_has_is_not_a_server_error(client: httpx.Client) -> None:
    """Found by schemathesis: the no-op branch read expired ORM objects after its rollback (500 MissingGreenlet)."""
    owner, member = register(client, "owner"), register(client, "member")
    wid = create_workspace(client, owner)
    add_member(client, wid, owner, member, "editor")
    for _ in range(2):
        r = client.patch(f"/api/workspaces/{wid}/members/{member.id}", json={"role": "admin"}, headers=owner.headers)
        assert r.status_code == 200, r.text
        assert r.json()["role"] == "admin" and r.json()["user_id"] == member.id
