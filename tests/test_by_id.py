"""Working by id: host applications hold a job id, the tracker loads, plans and commits."""

from __future__ import annotations

import threading
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
