"""The ingestion pipeline's original phase-status behaviours, on the bundled phase set."""

from __future__ import annotations

from datetime import UTC

import pytest

from statemachine import InvalidTransition, JobState, PhaseSet, PhaseStatus


@pytest.fixture
def job(ingestion: PhaseSet) -> JobState:
    return ingestion.new_job("seed")


# -- PhaseState ---------------------------------------------------------------------------


def test_phase_initialises_not_started_with_empty_counters(job: JobState) -> None:
    phase = job.phases["discovery"]
    assert phase.phase_name == "discovery"
    assert phase.status == PhaseStatus.NOT_STARTED
    assert (phase.progress, phase.items_processed, phase.items_total) == (0.0, 0, None)
    assert (phase.started_at, phase.completed_at, phase.error) == (None, None, None)


def test_start_marks_phase_running_and_sets_started_at(job: JobState) -> None:
    phase = job.phases["discovery"]
    phase.start()
    assert phase.status == PhaseStatus.RUNNING
    assert phase.started_at is not None and phase.started_at.tzinfo is UTC
    assert phase.updated_at == phase.started_at


def test_pause_marks_running_phase_paused(job: JobState) -> None:
    phase = job.phases["discovery"]
    phase.start()
    phase.pause()
    assert phase.status == PhaseStatus.PAUSED


def test_resume_returns_paused_phase_to_running_keeping_started_at(job: JobState) -> None:
    phase = job.phases["discovery"]
    phase.start()
    started = phase.started_at
    phase.pause()
    phase.resume()
    assert phase.status == PhaseStatus.RUNNING
    assert phase.started_at == started


def test_complete_sets_progress_100_and_completed_at(job: JobState) -> None:
    phase = job.phases["discovery"]
    phase.start()
    phase.update_progress(items_processed=10, items_total=20)
    phase.complete()
    assert phase.status == PhaseStatus.COMPLETED
    assert phase.progress == 100.0
    assert phase.completed_at is not None


def test_fail_records_error_and_completed_at(job: JobState) -> None:
    phase = job.phases["discovery"]
    phase.start()
    phase.fail("disk full")
    assert phase.status == PhaseStatus.FAILED
    assert phase.error == "disk full"
    assert phase.completed_at is not None


def test_progress_with_total_is_percentage_of_items(job: JobState) -> None:
    phase = job.phases["extraction"]
    phase.start()
    phase.update_progress(items_processed=50, items_total=200)
    assert phase.progress == 25.0
    assert (phase.items_processed, phase.items_total) == (50, 200)


def test_progress_without_total_stores_counts_and_keeps_progress(job: JobState) -> None:
    phase = job.phases["extraction"]
    phase.start()
    phase.update_progress(items_processed=42)
    assert phase.items_processed == 42
    assert phase.items_total is None
    assert phase.progress == 0.0


def test_progress_is_capped_at_99_until_complete(job: JobState) -> None:
    phase = job.phases["extraction"]
    phase.start()
    phase.update_progress(items_processed=200, items_total=200)
    assert phase.progress == 99.0
    phase.complete()
    assert phase.progress == 100.0


def test_terminal_detection(job: JobState) -> None:
    done, failed, running = (job.phases[n] for n in ("discovery", "extraction", "loading"))
    done.start()
    done.complete()
    failed.fail()
    running.start()
    assert done.is_terminal() and failed.is_terminal()
    assert not running.is_terminal()
    assert not job.phases["transformation"].is_terminal()


def test_active_detection(job: JobState) -> None:
    phase = job.phases["discovery"]
    assert not phase.is_active()
    phase.start()
    assert phase.is_active()
    phase.pause()
    assert not phase.is_active()


def test_invalid_transition_is_rejected(job: JobState) -> None:
    with pytest.raises(InvalidTransition):
        job.phases["discovery"].complete()


# -- the job across its four phases -------------------------------------------------------


def test_overall_status_completed_when_all_phases_completed(job: JobState) -> None:
    for phase in job.phases.values():
        phase.start()
        phase.complete()
    assert job.get_overall_status() == "completed"


def test_overall_status_failed_when_any_phase_failed(job: JobState) -> None:
    job.phases["discovery"].start()
    job.phases["discovery"].complete()
    job.phases["extraction"].start()
    job.phases["extraction"].fail("boom")
    assert job.get_overall_status() == "failed"


def test_overall_status_running_when_a_phase_runs_or_is_paused(job: JobState) -> None:
    job.phases["discovery"].start()
    assert job.get_overall_status() == "running"
    job.phases["discovery"].pause()
    assert job.get_overall_status() == "running"


def test_current_phase_is_the_running_phase(job: JobState) -> None:
    job.phases["discovery"].start()
    job.phases["discovery"].complete()
    job.phases["extraction"].start()
    assert job.get_current_phase() == "extraction"


def test_current_phase_is_the_paused_phase(job: JobState) -> None:
    job.phases["discovery"].start()
    job.phases["discovery"].complete()
    job.phases["extraction"].start()
    job.phases["extraction"].pause()
    assert job.get_current_phase() == "extraction"


def test_overall_progress_counts_each_of_four_phases_as_25_percent(job: JobState) -> None:
    assert job.get_overall_progress() == 0.0
    job.phases["discovery"].start()
    job.phases["discovery"].complete()
    assert job.get_overall_progress() == 25.0
    job.phases["extraction"].start()
    job.phases["extraction"].update_progress(items_processed=50, items_total=100)
    assert job.get_overall_progress() == 37.5


def test_job_between_phases_is_running_not_not_started(job: JobState) -> None:
    """The one deliberate change from the original model: work that has begun is running."""
    job.phases["discovery"].start()
    job.phases["discovery"].complete()
    assert job.get_overall_status() == "running"
    assert job.get_current_phase() == "extraction"
