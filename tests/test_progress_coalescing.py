"""Progress coalescing holds reports for an interval and never loses one silently."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from statemachine import ConcurrentUpdateError, PersistenceError, PhaseSet, Tracker

from .conftest import StoreTarget, row_locked

PHASES = ("discovery", "extraction", "transformation", "loading")


def _stored_counts(tracker: Tracker, job_id: str) -> dict[str, int]:
    stored = tracker.store.load(job_id)
    assert stored is not None
    return {p.phase_name: p.items_processed for p in stored.phases}


def test_reports_of_writers_on_their_own_copies_are_all_saved(
    ingestion: PhaseSet, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    tracker = Tracker(ingestion, store=url, progress_interval=0.5)
    job = tracker.create_job("shared")
    for name in PHASES:
        job.phases[name].start()

    def worker(name: str) -> None:
        for processed in range(1, 101):  # the documented loop: load, report, retry on conflict
            while True:
                try:
                    tracker.get_job("shared").phases[name].update_progress(processed, 100)
                    break
                except ConcurrentUpdateError:
                    continue

    threads = [threading.Thread(target=worker, args=(name,)) for name in PHASES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tracker.close()
    with Tracker(ingestion, store=url) as again:
        assert _stored_counts(again, "shared") == dict.fromkeys(PHASES, 100)


def test_a_held_report_on_a_copy_another_writer_changed_is_merged_not_skipped(
    ingestion: PhaseSet,
) -> None:
    with Tracker(ingestion, progress_interval=60, load_entrypoints=False) as tracker:
        mine = tracker.create_job("j")
        mine.phases["extraction"].start()
        mine.phases["extraction"].update_progress(1, 10)  # saved: the first of the interval
        mine.phases["extraction"].update_progress(7, 10)  # held
        other = tracker.get_job("j")
        other.phases["discovery"].start()  # another writer commits meanwhile
        tracker.flush()
        stored = tracker.store.load("j")
        assert stored is not None
        assert stored.phase("extraction").items_processed == 7  # type: ignore[union-attr]
        assert stored.phase("discovery").status == "running"  # type: ignore[union-attr]


def test_held_reports_are_saved_in_time_without_a_later_report(ingestion: PhaseSet) -> None:
    with Tracker(ingestion, progress_interval=0.2, load_entrypoints=False) as tracker:
        phase = tracker.create_job("j").phases["discovery"]
        phase.start()
        phase.update_progress(1, 10)  # saved
        phase.update_progress(5, 10)  # held: no report follows
        deadline = time.monotonic() + 3
        while _stored_counts(tracker, "j")["discovery"] != 5:
            assert time.monotonic() < deadline, "the held report was never saved"
            time.sleep(0.02)
        assert tracker.get_job("j").phases["discovery"].items_processed == 5


@pytest.mark.postgres
def test_one_failing_save_neither_drops_the_other_reports_nor_goes_unreported(
    ingestion: PhaseSet, pg_target: StoreTarget
) -> None:
    store = pg_target.open(lock_timeout=0.3)
    tracker = Tracker(ingestion, store=store, progress_interval=60, load_entrypoints=False)
    phases = {}
    for job_id in ("a", "locked", "b"):
        phase = tracker.create_job(job_id).phases["discovery"]
        phase.start()
        phase.update_progress(1, 10)  # saved
        phase.update_progress(9, 10)  # held
        phases[job_id] = phase
    with row_locked(store, pg_target.url, "locked"):
        with pytest.raises(PersistenceError, match="progress of 1 job\\(s\\) could not be saved"):
            tracker.flush()
        assert _stored_counts(tracker, "a")["discovery"] == 9
        assert _stored_counts(tracker, "b")["discovery"] == 9
        assert _stored_counts(tracker, "locked")["discovery"] == 1
    tracker.flush()  # the failed report was kept: the next flush saves it
    assert _stored_counts(tracker, "locked")["discovery"] == 9
    phases["locked"].update_progress(10, 10)  # held again
    with (
        row_locked(store, pg_target.url, "locked"),
        pytest.raises(PersistenceError, match="tracker closed, but progress of 1 job"),
    ):
        tracker.close()  # closing says what it could not save


@pytest.mark.postgres
def test_leaving_a_with_block_on_an_error_keeps_that_error_and_logs_the_unsaved_progress(
    ingestion: PhaseSet, pg_target: StoreTarget, caplog: pytest.LogCaptureFixture
) -> None:
    store = pg_target.open(lock_timeout=0.3)
    tracker = Tracker(ingestion, store=store, progress_interval=60, load_entrypoints=False)
    phase = tracker.create_job("locked").phases["discovery"]
    phase.start()
    phase.update_progress(1, 10)
    phase.update_progress(5, 10)  # held
    # Closing cannot save the held report while the row is locked.
    locked = row_locked(store, pg_target.url, "locked")
    with locked, pytest.raises(KeyError, match="own error"), tracker:
        raise KeyError("the block's own error")
    assert "closing the tracker after an error" in caplog.text
    assert "progress of 1 job(s) could not be saved" in caplog.text
