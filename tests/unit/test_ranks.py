"""Board order under concurrent moves: replicas that move tasks independently and then exchange updates show
one order, with every task exactly once and every rank a valid fractional index (a property test)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc

from sync_server import schema

STATUSES = list(schema.STATUSES)
moves = st.lists(
    st.tuples(
        st.integers(0, 2),  # which replica
        st.integers(0, 5),  # which task
        st.sampled_from(STATUSES),
        st.one_of(st.none(), st.integers(0, 6)),  # position (None: last)
        st.booleans(),  # sync all replicas afterwards
    ),
    max_size=30,
)


def _board(doc: Doc[Any]) -> dict[str, list[str]]:
    tasks = schema.list_tasks(doc)
    return {s: [t["id"] for t in sorted(tasks, key=schema.order_key) if t["status"] == s] for s in STATUSES}


def _sync(docs: list[Doc[Any]]) -> None:
    updates = [d.get_update() for d in docs]
    for d in docs:
        for u in updates:
            d.apply_update(u)


@settings(max_examples=150, deadline=None)
@given(moves)
def test_concurrent_moves_converge_to_one_order(plan: list[tuple[int, int, str, int | None, bool]]) -> None:
    origin: Doc[Any] = Doc()
    ids = [f"t{i}" for i in range(6)]
    with origin.transaction():
        for tid in ids:
            schema.create_task(origin, task_id=tid, title=tid, created_by=None)
    replicas = [Doc() for _ in range(3)]
    for r in replicas:
        r.apply_update(origin.get_update())
    for which, task, status, position, sync in plan:
        doc = replicas[which]
        with doc.transaction():
            rank = schema.rank_at(doc, status, position, exclude=ids[task])
            assert schema.valid_rank(rank)
            schema.move_task(doc, ids[task], status, rank)
        if sync:
            _sync(replicas)
    _sync(replicas)
    boards = [_board(r) for r in replicas]
    assert boards[0] == boards[1] == boards[2]
    placed = [tid for column in boards[0].values() for tid in column]
    assert sorted(placed) == ids  # every task exactly once
    for tid in ids:
        assert schema.valid_rank(schema.get_task(replicas[0], tid)["rank"])  # type: ignore[index]
