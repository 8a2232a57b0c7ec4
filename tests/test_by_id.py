"""Working by id: host applications hold a job id, the tracker loads, plans and commits."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from statemachine import InvalidTransition, JobState, PhaseKitError, PhaseSet, Tracker

from .conftest import StoreTarget

PHASES = ("discovery", "extraction", "transformation", "loading")


@pytest.fixture
def durable(ingestion: PhaseSet, store_target: StoreTarget) -> Iterator[Tracker]:
    with Tracker(ingestion, store=store_target.open()) as tracker:
        yield tracker


def test_fire_by_id_returns_the_committed_job(durable: Tracker) -> None:
    durable.create_job("j")
    job = durable.fire("j", "discovery", "start")
    assert isinstance(job, JobState)
    assert job.phases["discovery"].status == "running"
    assert durable.get_job("j").version == job.version == 2
    job = durable.fire("j", "discovery", "fail", error="disk full")
    assert (job.phases["discovery"].status, job.phases["discovery"].error) == (
        "failed",
        "disk full",
    )


def test_report_progress_by_id_returns_the_committed_job(durable: Tracker) -> None:
    durable.create_job("j")
    durable.fire("j", "extraction", "start")
    job = durable.report_progress("j", "extraction", 150, items_total=200)
    stored = durable.get_job("j").phases["extraction"]
    assert (stored.items_processed, stored.items_total) == (150, 200)
    assert job.phases["extraction"].progress == stored.progress == 75.0


def test_a_trigger_another_writer_made_impossible_names_the_new_status(durable: Tracker) -> None:
    durable.create_job("j")
    stale = durable.get_job("j")
    durable.fire("j", "discovery", "start")
    durable.fire("j", "discovery", "complete")
    with pytest.raises(InvalidTransition, match="cannot 'start' from status 'completed'"):
        durable.fire("j", "discovery", "start")
    assert stale.phases["discovery"].status == "not_started"  # a copy, untouched


def test_writers_on_different_phases_of_one_job_never_see_a_conflict(durable: Tracker) -> None:
    durable.create_job("shared")
    errors: list[BaseException] = []

    def worker(phase: str) -> None:
        try:
            durable.fire("shared", phase, "start")
            for processed in range(1, 26):
                durable.report_progress("shared", phase, processed, items_total=25)
            durable.fire("shared", phase, "complete")
        except BaseException as exc:  # every error reaches the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(phase,)) for phase in PHASES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    job = durable.get_job("shared")
    assert [job.phases[p].items_processed for p in PHASES] == [25] * 4
    assert job.get_overall_status() == "completed"
    changes = [(e.phase, e.trigger) for e in durable.history("shared")[1:]]  # type: ignore[union-attr]
    assert sorted(changes) == sorted([(p, t) for p in PHASES for t in ("start", "complete")])


def test_refresh_reloads_a_tracked_job_in_place(durable: Tracker) -> None:
    durable.create_job("j")
    mine = durable.get_job("j")
    phase = mine.phases["discovery"]
    durable.fire("j", "discovery", "start")
    assert phase.status == "not_started"
    mine.refresh()
    assert (phase.status, mine.version) == ("running", 2)
    phase.pause()  # and it commits from there, no conflict
    assert durable.get_job("j").phases["discovery"].status == "paused"


def test_a_detached_job_has_nothing_to_refresh_from(ingestion: PhaseSet, tmp_path: Path) -> None:
    with pytest.raises(PhaseKitError, match="detached"):
        ingestion.new_job("j").refresh()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def anywhere(
    request: pytest.FixtureRequest, ingestion: PhaseSet, tmp_path: Path
) -> Iterator[Tracker]:
    """A tracker on each bundled store: memory, SQLite and PostgreSQL."""
    if request.param == "memory":
        store: object = "memory://"
    elif request.param == "sqlite":
        store = StoreTarget("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}").open()
    else:
        url, schema = request.getfixturevalue("pg_schema")
        store = StoreTarget(
            "postgresql", url, {"schema": schema, "table_prefix": f"byid{uuid.uuid4().hex[:8]}_"}
        ).open()
    with Tracker(ingestion, store=store) as tracker:  # type: ignore[arg-type]
        yield tracker


def test_a_repeated_idempotency_key_commits_nothing_and_returns_the_job_as_it_is(
    anywhere: Tracker,
) -> None:
    anywhere.create_job("j")
    first = anywhere.fire("j", "discovery", "start", idempotency_key="task-7:start")
    anywhere.report_progress("j", "discovery", 5, items_total=10)
    again = anywhere.fire("j", "discovery", "start", idempotency_key="task-7:start")
    assert again.version == first.version + 1  # the progress report, nothing more
    assert again.phases["discovery"].items_processed == 5
    assert [e.type for e in anywhere.history("j")] == ["job_created", "phase_changed"]
    # The same key on another job, or another key, is a change of its own.
    anywhere.create_job("k")
    assert anywhere.fire("k", "discovery", "start", idempotency_key="task-7:start").version == 2
    done = anywhere.fire("j", "discovery", "complete", idempotency_key="task-7:complete")
    assert done.phases["discovery"].status == "completed"


def test_a_repeated_key_is_answered_even_when_the_trigger_is_no_longer_allowed(
    anywhere: Tracker,
) -> None:
    anywhere.create_job("j")
    anywhere.fire("j", "discovery", "start", idempotency_key="k")
    anywhere.fire("j", "discovery", "complete")
    # A redelivered "start" after the phase moved on: the key says it was done.
    job = anywhere.fire("j", "discovery", "start", idempotency_key="k")
    assert job.phases["discovery"].status == "completed"
    with pytest.raises(InvalidTransition):
        anywhere.fire("j", "discovery", "start", idempotency_key="k2")


def test_a_deleted_job_forgets_its_idempotency_keys(anywhere: Tracker) -> None:
    anywhere.create_job("j")
    anywhere.fire("j", "discovery", "start", idempotency_key="k")
    anywhere.delete_job("j")
    anywhere.create_job("j")
    assert anywhere.fire("j", "discovery", "start", idempotency_key="k").version == 2


@pytest.mark.parametrize(
    ("key", "error"),
    [("", "1 to 200 characters"), ("x" * 201, "1 to 200 characters"), (7, "must be a string")],
)
def test_an_invalid_idempotency_key_is_refused_before_anything_is_loaded(
    anywhere: Tracker, key: object, error: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=error):
        anywhere.fire("nope", "discovery", "start", idempotency_key=key)  # type: ignore[arg-type]


def test_list_jobs_by_phase_status_finds_work_without_scanning(anywhere: Tracker) -> None:
    for job_id in ("a", "b", "c"):
        anywhere.create_job(job_id)
    anywhere.fire("a", "discovery", "start")
    anywhere.fire("b", "discovery", "start")
    anywhere.fire("b", "discovery", "complete")
    running = anywhere.list_jobs(phase_status={"discovery": "running"})
    assert [j.job_id for j in running] == ["a"]
    waiting = anywhere.list_jobs(
        phase_status={"discovery": "completed", "extraction": "not_started"}
    )
    assert [j.job_id for j in waiting] == ["b"]
    untouched = anywhere.list_jobs(phase_status={"discovery": "not_started"}, status="not_started")
    assert [j.job_id for j in untouched] == ["c"]
    assert len(anywhere.list_jobs(phase_status={"discovery": "running"}, limit=0)) == 0


def test_list_jobs_by_phase_status_names_an_unknown_phase_or_status(anywhere: Tracker) -> None:
    with pytest.raises(PhaseKitError, match="did you mean 'extraction'"):
        anywhere.list_jobs(phase_status={"extractoin": "running"})
    with pytest.raises(ValueError, match="did you mean 'running'"):
        anywhere.list_jobs(phase_status={"extraction": "runing"})


def test_the_sql_store_answers_a_phase_status_filter_from_an_index(
    durable: Tracker, store_target: StoreTarget
) -> None:
    store = durable.store
    tables = getattr(store, "tables", None)
    assert tables is not None
    indexed = [tuple(c.name for c in i.columns) for i in tables.phases.indexes]
    assert ("phase_name", "status", "job_id") in indexed


def test_to_schema_carries_each_phases_allowed_triggers(anywhere: Tracker) -> None:
    job = anywhere.create_job("j")
    schema = job.to_schema()
    discovery = schema.phases[0]
    assert discovery.allowed_triggers == job.phases["discovery"].allowed_triggers()
    assert "start" in (discovery.allowed_triggers or [])
    job = anywhere.fire("j", "discovery", "start")
    phase = job.phases["discovery"].to_schema()
    assert phase.allowed_triggers == job.phases["discovery"].allowed_triggers()
    assert "complete" in (phase.allowed_triggers or [])
