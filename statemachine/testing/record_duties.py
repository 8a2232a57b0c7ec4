"""The store conformance suite's tests of one job at a time: create, load, save, list,
delete, history, and a job a tracker drove, restored."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import timedelta

import pytest

from statemachine import (
    HISTORY_TYPES,
    ConcurrentUpdateError,
    Event,
    EventLog,
    JobExists,
    JobNotFound,
    JobRecord,
    Store,
    Tracker,
)

from .clock import Clock
from .duties import Duties, same_record
from .records import (
    RICH_METADATA,
    T0,
    all_events,
    change_events,
    created_events,
    moved,
    new_record,
    rich_record,
    suite_spec,
)

__all__ = ["RecordDuties"]


class RecordDuties(Duties):
    """Tests of what a store keeps of a job, and gives back."""

    # -- create, load, save --------------------------------------------------------------

    def test_load_gives_back_the_created_job_field_for_field(
        self, store: Store, reopen: Callable[[], Store]
    ) -> None:
        """What ``create`` stored, ``load`` returns equal, in this store and in another."""
        record = rich_record("job-1")
        store.create(record, created_events(record))
        same_record(store.load("job-1"), record, "load() after create() differs")
        same_record(reopen().load("job-1"), record, "load() from another store differs")

    def test_load_of_an_unknown_job_is_none(self, store: Store) -> None:
        """``load`` of an id never created returns None (it does not raise)."""
        assert store.load("never-created") is None

    def test_create_of_a_taken_id_raises_job_exists_and_keeps_the_first(self, store: Store) -> None:
        """A second ``create`` of one id raises ``JobExists`` and changes nothing."""
        first = new_record("job-1", metadata={"by": "first"})
        store.create(first, created_events(first))
        second = new_record("job-1", metadata={"by": "second"})
        with pytest.raises(JobExists):
            store.create(second, created_events(second))
        same_record(store.load("job-1"), first, "a refused create() changed the job")
        assert len(store.history("job-1")) == 1, "a refused create() added to the history"

    def test_save_at_the_stored_version_replaces_the_job(
        self, store: Store, reopen: Callable[[], Store]
    ) -> None:
        """``save(expected_version=stored)`` replaces the record, field for field."""
        record = new_record("job-1")
        store.create(record, created_events(record))
        at = T0 + timedelta(seconds=1, microseconds=5)
        changed = moved(record, "discovery", "running", at=at).replace(
            status="running", current_phase="discovery", progress=12.5
        )
        store.save(
            changed,
            expected_version=1,
            events=change_events(changed, "discovery", "start", "not_started", "running", at=at),
        )
        same_record(store.load("job-1"), changed, "load() after save() differs")
        same_record(reopen().load("job-1"), changed, "load() from another store differs")

    def test_a_stale_save_raises_concurrent_update_error_and_writes_nothing(
        self, store: Store, request: pytest.FixtureRequest
    ) -> None:
        """A ``save`` whose expected version is not the stored one raises
        ``ConcurrentUpdateError``; the job, its history and the event log stay as they were."""
        record = new_record("job-1")
        store.create(record, created_events(record))
        at = T0 + timedelta(seconds=1)
        second = moved(record, "discovery", "running", at=at)
        store.save(
            second,
            expected_version=1,
            events=change_events(second, "discovery", "start", "not_started", "running", at=at),
        )
        history = store.history("job-1")
        logged = store.last_position() if isinstance(store, EventLog) else None
        for stale in (1, 5):  # behind the stored version, and ahead of it
            lost = moved(record, "extraction", "failed", at=at)
            with pytest.raises(ConcurrentUpdateError):
                store.save(
                    lost.replace(version=stale + 1),
                    expected_version=stale,
                    events=change_events(
                        lost, "extraction", "fail", "not_started", "failed", at=at
                    ),
                )
        same_record(store.load("job-1"), second, "a refused save() changed the job")
        assert store.history("job-1") == history, "a refused save() added to the history"
        if isinstance(store, EventLog):
            assert store.last_position() == logged, "a refused save() added to the event log"

    def test_a_save_of_an_unknown_job_raises_and_creates_nothing(self, store: Store) -> None:
        """``save`` of a job never created raises (``JobNotFound`` or a conflict)."""
        record = new_record("ghost").replace(version=2)
        with pytest.raises((JobNotFound, ConcurrentUpdateError)):
            store.save(record, expected_version=1, events=[])
        assert store.load("ghost") is None, "save() of an unknown job created it"

    # -- list ----------------------------------------------------------------------------

    def _five_jobs(self, store: Store) -> list[str]:
        """Five jobs; ``b`` and ``c`` updated at the same time; the ids, in ``list`` order."""
        updated = {"a": 1, "b": 3, "c": 3, "d": 2, "e": 0}
        for job_id, seconds in updated.items():
            at = T0 + timedelta(seconds=seconds, microseconds=250)
            status = "running" if job_id in "bd" else "not_started"
            record = new_record(job_id, at=T0, status=status).replace(updated_at=at)
            store.create(record, created_events(record))
        return ["b", "c", "d", "a", "e"]

    def test_list_gives_the_newest_updated_first_then_by_job_id(self, store: Store) -> None:
        """``list()`` orders by ``updated_at``, newest first, ties by id (``list_order``)."""
        order = self._five_jobs(store)
        assert [r.job_id for r in store.list()] == order

    def test_list_keeps_only_jobs_in_the_status_asked_for(self, store: Store) -> None:
        """``list(status=S)`` gives the jobs whose overall status is S, in list order."""
        self._five_jobs(store)
        assert [r.job_id for r in store.list(status="running")] == ["b", "d"]
        assert [r.job_id for r in store.list(status="failed")] == []

    def test_list_pages_with_limit_and_offset(self, store: Store) -> None:
        """``limit`` and ``offset`` cut pages out of the ordered list."""
        order = self._five_jobs(store)
        pages = [[r.job_id for r in store.list(limit=2, offset=n)] for n in (0, 2, 4, 6)]
        assert pages == [order[0:2], order[2:4], order[4:5], []]

    # -- the optional filters and idempotency keys a tracker uses when a store has them ---

    def _list_option(self, store: Store, name: str, request: pytest.FixtureRequest) -> None:
        if name not in inspect.signature(store.list).parameters:
            self.not_applicable(
                request,
                f"{type(store).__name__}.list takes no {name}=: tracker.list_jobs reads every "
                "job, page by page, to find the ones it wants",
            )

    def test_list_keeps_only_jobs_of_the_phase_set_asked_for(
        self, store: Store, request: pytest.FixtureRequest
    ) -> None:
        """``list(spec=NAME)`` gives the jobs of phase set NAME only."""
        self._list_option(store, "spec", request)
        self._five_jobs(store)
        other = new_record("f").replace(spec_name="other", status="running")
        store.create(other, created_events(other))
        lister: Callable[..., list[JobRecord]] = store.list
        assert [r.job_id for r in lister(spec="other")] == ["f"]
        assert [r.job_id for r in lister(spec=suite_spec().name, status="running")] == ["b", "d"]

    def test_list_keeps_only_jobs_whose_phases_are_in_the_statuses_asked_for(
        self, store: Store, request: pytest.FixtureRequest
    ) -> None:
        """``list(phase_status={phase: status, ...})``: every pair holds for each job given."""
        self._list_option(store, "phase_status", request)
        at = T0 + timedelta(seconds=1)
        for job_id, dest in (("a", "running"), ("b", "failed"), ("c", None)):
            record = new_record(job_id)
            store.create(record, created_events(record))
            if dest is not None:
                changed = moved(record, "discovery", dest, at=at)
                store.save(changed, expected_version=1, events=[])
        lister: Callable[..., list[JobRecord]] = store.list
        wanted = {"discovery": "running", "extraction": "not_started"}
        assert [r.job_id for r in lister(phase_status=wanted)] == ["a"]
        assert [r.job_id for r in lister(phase_status={"discovery": "not_started"})] == ["c"]

    def test_an_idempotency_key_is_kept_with_its_commit_only(
        self, store: Store, request: pytest.FixtureRequest
    ) -> None:
        """``save(..., idempotency_key=K)`` keeps K for the job; a refused save keeps none."""
        seen = getattr(store, "seen_idempotency_key", None)
        if not callable(seen):
            self.not_applicable(
                request,
                f"{type(store).__name__} keeps no idempotency keys (seen_idempotency_key): "
                "tracker.fire(..., idempotency_key=...) raises PhaseKitError on it",
            )
        assert callable(seen)
        record = new_record("job-1")
        store.create(record, created_events(record))
        saver: Callable[..., None] = store.save
        changed = moved(record, "discovery", "running", at=T0)
        # A key comes with a transition (tracker.fire): its events hold a phase change.
        events = change_events(changed, "discovery", "start", "not_started", "running", at=T0)
        saver(changed, expected_version=1, events=events, idempotency_key="task-7:start")
        with pytest.raises(ConcurrentUpdateError):
            saver(changed, expected_version=1, events=events, idempotency_key="task-8:start")
        assert seen("job-1", "task-7:start") is True
        assert seen("job-1", "task-8:start") is False
        assert seen("job-2", "task-7:start") is False

    # -- delete (optional: Tracker.delete_job uses it) -----------------------------------

    def _delete(self, store: Store, request: pytest.FixtureRequest) -> Callable[..., None]:
        delete = getattr(store, "delete", None)
        if not callable(delete):
            self.not_applicable(
                request,
                f"{type(store).__name__} has no delete(job_id, *, expected_version, events): "
                "tracker.delete_job() raises PhaseKitError on it",
            )
        assert callable(delete)
        deleting: Callable[..., None] = delete
        return deleting

    def test_delete_removes_the_job_and_its_history(
        self, store: Store, request: pytest.FixtureRequest
    ) -> None:
        """``delete`` at the stored version removes the job, its history and its listing."""
        delete = self._delete(store, request)
        record = new_record("job-1")
        store.create(record, created_events(record))
        keep = new_record("job-2")
        store.create(keep, created_events(keep))
        delete("job-1", expected_version=1, events=[])
        assert store.load("job-1") is None
        assert store.history("job-1") == []
        assert [r.job_id for r in store.list()] == ["job-2"]

    def test_a_stale_delete_raises_concurrent_update_error_and_keeps_the_job(
        self, store: Store, request: pytest.FixtureRequest
    ) -> None:
        """``delete`` at a version that is not the stored one raises and deletes nothing."""
        delete = self._delete(store, request)
        record = new_record("job-1")
        store.create(record, created_events(record))
        with pytest.raises(ConcurrentUpdateError):
            delete("job-1", expected_version=3, events=[])
        same_record(store.load("job-1"), record, "a refused delete() changed the job")

    # -- history -------------------------------------------------------------------------

    def test_history_keeps_the_status_changes_in_commit_order(
        self, store: Store, reopen: Callable[[], Store]
    ) -> None:
        """``history`` gives the ``HISTORY_TYPES`` events of every commit, equal and in order;
        progress and aggregate events are not history."""
        record = new_record("job-1")
        commits: list[list[Event]] = [created_events(record)]
        store.create(record, commits[0])
        steps = [("discovery", "start", "not_started", "running")]
        steps += [("discovery", "complete", "running", "completed")]
        steps += [("extraction", "fail", "not_started", "failed")]
        for n, (phase, trigger, source, dest) in enumerate(steps, start=1):
            at = T0 + timedelta(seconds=n, microseconds=n)
            changed = moved(record, phase, dest, at=at)
            commits.append(change_events(changed, phase, trigger, source, dest, at=at))
            store.save(changed, expected_version=record.version, events=commits[-1])
            record = changed
        expected = [e for e in all_events(commits) if isinstance(e, HISTORY_TYPES)]
        same_record(store.history("job-1"), expected, "history() differs")
        same_record(reopen().history("job-1"), expected, "history() from another store differs")

    def test_history_of_an_unknown_job_is_empty(self, store: Store) -> None:
        """``history`` of an id never created is an empty list."""
        assert store.history("never-created") == []

    # -- a tracker on the store ----------------------------------------------------------

    def test_a_job_a_tracker_drove_is_restored_field_for_field(
        self, store: Store, reopen: Callable[[], Store]
    ) -> None:
        """Driven through the commit protocol and loaded by another tracker on another store,
        a job has every field it had, and the same history."""
        clock = Clock(T0)
        spec = suite_spec()
        first = Tracker(spec, store=store, load_entrypoints=False, clock=clock)
        job = first.create_job("job-1", metadata=RICH_METADATA)
        discovery, extraction, loading = (
            job.phases[n] for n in ("discovery", "extraction", "loading")
        )
        steps: list[Callable[[], None]] = [
            lambda: discovery.trigger("start"),
            lambda: discovery.update_progress(items_processed=10, items_total=10),
            lambda: discovery.trigger("complete"),
            lambda: extraction.trigger("start"),
            lambda: extraction.update_progress(items_processed=33, items_total=200),
            lambda: extraction.trigger("pause"),
            lambda: extraction.trigger("resume"),
            lambda: loading.trigger("fail", "upstream refused: 503 ü"),
        ]
        for step in steps:
            clock.advance(timedelta(seconds=1, microseconds=123457))
            step()
        second = Tracker(spec, store=reopen(), load_entrypoints=False)
        restored = second.get_job("job-1")
        same_record(restored.to_record(), job.to_record(), "the restored job differs")
        assert restored.to_schema() == job.to_schema()
        same_record(second.history("job-1"), first.history("job-1"), "the history differs")
