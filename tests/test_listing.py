"""Listing jobs page by page (keyset ``after``) and counting them, on every bundled store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from statemachine import (
    InvalidArgumentType,
    JobCounter,
    MemoryStore,
    Tracker,
    list_cursor,
    load_spec,
)

from .conftest import target_for

SPEC = load_spec("ingestion")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    target = target_for(request, tmp_path)
    if target is None:
        yield MemoryStore()
        return
    opened = target.open()
    try:
        yield opened
    finally:
        opened.close()


def _fill(store: Any, count: int) -> None:
    """``count`` jobs, three of them at each instant (ties the keyset must break by id)."""
    now = [T0]
    tracker = Tracker(SPEC, store, clock=lambda: now[0], load_entrypoints=False)
    for i in range(count):
        now[0] = T0 + timedelta(seconds=i // 3)
        tracker.create_job(f"job-{i:03}")
        if i % 4 == 0:
            tracker.fire(f"job-{i:03}", "discovery", "start")


def test_pages_after_the_last_job_are_the_pages_offset_gives(store: Any) -> None:
    _fill(store, 40)
    everything = [r.job_id for r in store.list(limit=1000)]
    assert len(everything) == 40
    assert everything == [r.job_id for i in range(0, 40, 7) for r in store.list(limit=7, offset=i)]
    seen: list[str] = []
    after = None
    while True:
        page = store.list(limit=7, after=after)
        seen += [r.job_id for r in page]
        if len(page) < 7:
            break
        after = (page[-1].updated_at, page[-1].job_id)
    assert seen == everything
    # Filters apply as without a cursor; an offset counts from the cursor.
    running = [r.job_id for r in store.list(status="running", limit=1000)]
    assert len(running) == 10
    first = store.list(status="running", limit=2)
    cursor = (first[-1].updated_at, first[-1].job_id)
    rest = store.list(status="running", limit=1000, after=cursor)
    assert [r.job_id for r in [*first, *rest]] == running
    fifth = store.list(limit=5)[-1]
    skipped = store.list(limit=3, offset=2, after=(fifth.updated_at, fifth.job_id))
    assert [r.job_id for r in skipped] == everything[7:10]


def test_count_jobs_counts_every_job_by_phase_set_and_status(store: Any) -> None:
    assert isinstance(store, JobCounter)
    assert store.count_jobs() == {}
    _fill(store, 10)
    by_status: dict[str, int] = {}
    for record in store.list(limit=1000):
        by_status[record.status] = by_status.get(record.status, 0) + 1
    assert len(by_status) == 2
    assert store.count_jobs() == {("ingestion", s): n for s, n in by_status.items()}


def test_a_cursor_must_be_a_time_with_a_zone_and_an_id() -> None:
    assert list_cursor((T0, "a")) == (T0, "a")
    for bad in [None, (T0,), ("2026-03-02", "a"), (T0.replace(tzinfo=None), "a"), (T0, 3)]:
        with pytest.raises(InvalidArgumentType, match=r"after must be \(updated_at, job_id\)"):
            list_cursor(bad)
    with pytest.raises(InvalidArgumentType):
        MemoryStore().list(after=("x", "y"))  # type: ignore[arg-type]


def test_a_sqlite_store_made_before_the_count_index_gets_it_and_counts_from_it(
    tmp_path: Path,
) -> None:
    import sqlite3  # noqa: PLC0415

    from statemachine.plugins.sql import SQLStore  # noqa: PLC0415

    path = tmp_path / "jobs.db"
    SQLStore(f"sqlite:///{path}").close()
    SQLStore(f"sqlite:///{path}").count_jobs()  # tables made
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX ix_phasekit_jobs_spec_status")
    store = SQLStore(f"sqlite:///{path}")
    assert store.count_jobs() == {}
    store.close()
    with sqlite3.connect(path) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT spec_name, status, count(*) FROM phasekit_jobs "
            "GROUP BY spec_name, status"
        ).fetchall()
    assert "COVERING INDEX ix_phasekit_jobs_spec_status" in " ".join(str(row) for row in plan)
