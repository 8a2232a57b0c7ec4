"""The store conformance suite's tests of the optional parts: the event log, the phase sets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from statemachine import Event, LoggedEvent, SpecArchive, Store

from .duties import Duties, read_log, same_record
from .records import T0, change_events, created_events, moved, new_record, suite_spec

__all__ = ["LogDuties"]


class LogDuties(Duties):
    """Tests of a store's event log (``EventLog``) and phase-set archive (``SpecArchive``)."""

    # -- the event log (optional: the relay and ``phasekit events`` read it) -------------

    def _logged_commits(self, store: Store) -> list[Event]:
        """Two jobs' commits, interleaved; every event, in commit order."""
        events: list[Event] = []
        records = {}
        for job_id in ("job-1", "job-2"):
            records[job_id] = new_record(job_id)
            events += created_events(records[job_id])
            store.create(records[job_id], events[-1:])
        for n, job_id in enumerate(["job-1", "job-2", "job-1"], start=1):
            at = T0 + timedelta(seconds=n)
            record = records[job_id]
            phase = "discovery" if n < 3 else "extraction"
            changed = moved(record, phase, "running", at=at)
            commit = change_events(changed, phase, "start", "not_started", "running", at=at)
            store.save(changed, expected_version=record.version, events=commit)
            records[job_id] = changed
            events += commit
        return events

    def test_the_event_log_holds_every_event_in_commit_order(
        self, store: Store, request: pytest.FixtureRequest
    ) -> None:
        """Every event of every commit is logged, equal, at positions that grow."""
        log = self.event_log_of(store, request)
        start = log.last_position()
        events = self._logged_commits(store)
        logged = read_log(log, start)
        positions = [e.position for e in logged]
        assert positions == sorted(set(positions)), f"positions do not grow: {positions}"
        same_record([e.event for e in logged], events, "the event log differs")
        assert log.last_position() == positions[-1]

    def test_a_reader_resumes_after_its_position_and_gets_at_most_its_limit(
        self, store: Store, request: pytest.FixtureRequest
    ) -> None:
        """``read_events(after=p, limit=n)``: the next ``n`` events past ``p``, none twice."""
        log = self.event_log_of(store, request)
        start = log.last_position()
        events = self._logged_commits(store)
        seen: list[LoggedEvent] = []
        after = start
        while page := log.read_events(after, limit=3):
            assert len(page) <= 3, f"read_events(limit=3) gave {len(page)} events"
            seen += page
            after = page[-1].position
        assert [e.event.event_id for e in seen] == [e.event_id for e in events]
        assert log.read_events(log.last_position()) == []

    def test_pruning_before_the_first_event_removes_nothing(
        self, store: Store, request: pytest.FixtureRequest
    ) -> None:
        """``prune_events(before=...)`` earlier than every event keeps every event."""
        log = self.event_log_of(store, request)
        start = log.last_position()
        events = self._logged_commits(store)
        assert log.prune_events(before=T0 - timedelta(days=365)) == 0
        assert len(read_log(log, start)) == len(events)

    # -- phase sets (optional: jobs load without their YAML file) ------------------------

    def test_a_remembered_phase_set_is_recalled_by_fingerprint(
        self, store: Store, reopen: Callable[[], Store], request: pytest.FixtureRequest
    ) -> None:
        """``remember_spec`` keeps a definition that ``recall_spec`` gives back, equal."""
        if not isinstance(store, SpecArchive):
            self.not_applicable(
                request,
                f"{type(store).__name__} is no SpecArchive (remember_spec, recall_spec): its "
                "jobs load only where their phase set's YAML file is",
            )
        assert isinstance(store, SpecArchive)
        spec = suite_spec()
        definition = spec.definition.model_dump(mode="json", exclude_defaults=True)
        store.remember_spec(spec.name, spec.fingerprint, definition)
        assert store.recall_spec(spec.fingerprint) == definition
        other = reopen()
        assert isinstance(other, SpecArchive)
        assert other.recall_spec(spec.fingerprint) == definition
        assert store.recall_spec("0" * 16) is None
