"""Deadlines end to end: a status's timeout and heartbeat, the sweep that fires on_timeout.

Every test drives real stores (a ``MemoryStore``, a SQLite file of its own, a PostgreSQL
table prefix of its own in the run's schema) and real trackers; time moves with a fake
``Tracker(clock=...)``, never by sleeping for a deadline. The race tests put two trackers on
one store and make the other writer act at a chosen point of the commit protocol with a
``before_transition`` plugin; the sweeper-process test runs real interpreters
(``tests/deadline_worker.py``) on one PostgreSQL store at once.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, select, text
from statemachine.plugins.sql import SQLStore, store_url
from statemachine.plugins.sql.schema import SCHEMA_VERSION

from statemachine import (
    DeadlineIndex,
    Event,
    InvalidArgument,
    InvalidTransition,
    JobRecord,
    LoggedEvent,
    MemoryStore,
    PersistenceError,
    PhaseChanged,
    PhaseKitError,
    PhaseSet,
    SpecError,
    Store,
    Tracker,
    TransitionRequest,
    Veto,
    check_spec,
    hookimpl,
    parse_spec,
)
from statemachine.relay import Relay

from .conftest import Recorder, StoreTarget, target_for

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "deadline_worker.py"

RUNNING = "running: {active: true, timeout: 2h, heartbeat: 5m, on_timeout: fail}"
PAUSED = "paused: {timeout: 1d, on_timeout: fail}"
SPEC_TEXT = f"""\
phasekit: 1
name: timed
statuses:
  not_started: {{initial: true}}
  {RUNNING}
  {PAUSED}
  completed: {{terminal: true, success: true}}
  failed: {{terminal: true}}
transitions:
  - {{trigger: start,    source: not_started, dest: running}}
  - {{trigger: pause,    source: running,     dest: paused}}
  - {{trigger: resume,   source: paused,      dest: running}}
  - {{trigger: complete, source: running,     dest: completed}}
  - {{trigger: fail,     source: [not_started, running, paused], dest: failed}}
phases:
  - {{name: discovery}}
  - {{name: extraction}}
  - {{name: transformation}}
  - {{name: loading}}
aggregate:
  status:
    - {{any: [failed], then: failed}}
    - {{all: [completed], then: completed}}
    - {{any: [running, paused], then: running}}
    - {{any: [completed], then: running}}
    - {{otherwise: not_started}}
"""
SPEC = parse_spec(SPEC_TEXT, "timed.yaml")
#: The same phase set (same name) before its statuses had deadlines.
PLAIN = parse_spec(
    SPEC_TEXT.replace(RUNNING, "running: {active: true}").replace(PAUSED, "paused: {}"),
    "timed-plain.yaml",
)
#: The phase set with a deadline on its initial status too: "picked up within 1h".
QUEUED_TEXT = SPEC_TEXT.replace(
    "not_started: {initial: true}", "not_started: {initial: true, timeout: 1h, on_timeout: fail}"
)
QUEUED = parse_spec(QUEUED_TEXT, "queued.yaml")
QUEUED_TIMED_OUT = "timeout of 1h passed in status not_started"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HEARTBEAT_MISSED = "heartbeat of 5m missed in status running"
RUNNING_TIMED_OUT = "timeout of 2h passed in status running"
PAUSED_TIMED_OUT = "timeout of 1d passed in status paused"

BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
#: The columns of the phases table at schema version 2 (``git show fefb743:plugins/sql/schema.py``).
V2_PHASE_COLUMNS = [
    "job_id",
    "phase_name",
    "position",
    "status",
    "progress",
    "items_processed",
    "items_total",
    "started_at",
    "completed_at",
    "updated_at",
    "error",
]


# -- clocks, places, trackers -------------------------------------------------------------------


class Clock:
    """What "now" is for a tracker: a timezone-aware UTC time the test moves by hand."""

    def __init__(self, at: datetime = T0) -> None:
        self.now = at

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta = MINUTE, /, **parts: float) -> datetime:
        self.now += timedelta(**parts) if parts else delta
        return self.now

    def set(self, at: datetime) -> datetime:
        self.now = at
        return at


class Place:
    """Where a test's jobs live. ``open()`` gives the memory store itself each time, or a new
    SQL store (a pool of its own, as another process would have) on the same tables."""

    def __init__(self, backend: str, target: StoreTarget | None) -> None:
        self.backend = backend
        self.target = target
        self._memory = MemoryStore() if target is None else None
        self._opened: list[SQLStore] = []

    def open(self) -> MemoryStore | SQLStore:
        if self._memory is not None:
            return self._memory
        assert self.target is not None
        store = self.target.open()
        self._opened.append(store)
        return store

    def close(self) -> None:
        for store in self._opened:
            if not store.closed:
                store.close()


@pytest.fixture(params=BACKENDS)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    found = Place(request.param, target_for(request, tmp_path))
    try:
        yield found
    finally:
        found.close()


def tracker_on(
    store: Store,
    clock: Callable[[], datetime],
    *,
    spec: PhaseSet = SPEC,
    plugins: list[object] | None = None,
    **kw: Any,
) -> Tracker:
    return Tracker(spec, store, plugins or [], clock=clock, load_entrypoints=False, **kw)


def described(events: list[PhaseChanged]) -> list[tuple[str, str, str, str, str, str | None]]:
    """What each change was, sorted: (job, phase, trigger, source, dest, error)."""
    return sorted((e.job_id, e.phase, e.trigger, e.source, e.dest, e.error) for e in events)


def changes(tracker: Tracker, job_id: str) -> list[tuple[str, str, str | None]]:
    """The job's history after its creation: (phase, trigger, error) of each change."""
    history = tracker.history(job_id)
    assert history[0].type == "job_created"
    return [(e.phase, e.trigger, e.error) for e in history[1:]]  # type: ignore[union-attr]


def logged(store: MemoryStore | SQLStore) -> list[LoggedEvent]:
    found: list[LoggedEvent] = []
    while page := store.read_events(found[-1].position if found else 0, limit=1000):
        found.extend(page)
    return found


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.01)


class OnRequest:
    """A ``before_transition`` plugin that, the first time ``trigger`` is asked for, runs
    ``action`` (another writer's change, at that point of the commit) and allows it."""

    def __init__(self, trigger: str, action: Callable[[], object]) -> None:
        self.trigger = trigger
        self.action = action
        self.asked: list[TransitionRequest] = []

    @hookimpl
    def before_transition(self, event: TransitionRequest) -> None:
        if event.trigger == self.trigger:
            self.asked.append(event)
            if len(self.asked) == 1:
                self.action()


class Refuse:
    """A ``before_transition`` plugin that vetoes ``trigger`` while ``on`` is set."""

    def __init__(self, trigger: str) -> None:
        self.trigger = trigger
        self.on = True

    @hookimpl
    def before_transition(self, event: TransitionRequest) -> Veto | None:
        if self.on and event.trigger == self.trigger:
            return Veto("the operator holds this phase")
        return None


def running_and_paused(tracker: Tracker, job_id: str) -> None:
    """``job_id`` at the clock's time: discovery running, extraction started and paused."""
    tracker.create_job(job_id)
    tracker.fire(job_id, "discovery", "start")
    tracker.fire(job_id, "extraction", "start")
    tracker.fire(job_id, "extraction", "pause")


# -- 1. a timeout and a heartbeat in one sweep --------------------------------------------------


def test_a_timeout_and_a_heartbeat_both_fire_in_one_sweep(place: Place) -> None:
    clock = Clock()
    tracker = tracker_on(place.open(), clock)
    running_and_paused(tracker, "j1")  # discovery: heartbeat due at T0+5m; extraction: T0+1d
    job = tracker.get_job("j1")
    assert job.phases["discovery"].deadline == T0 + 5 * MINUTE
    assert job.phases["extraction"].deadline == T0 + timedelta(days=1)
    assert job.phases["transformation"].deadline is None  # not_started has no deadline
    clock.set(T0 + timedelta(days=1) - 2 * MINUTE)
    tracker.create_job("j2")
    tracker.fire("j2", "discovery", "start")  # its heartbeat is due 3 minutes after the sweep

    now = clock.set(T0 + timedelta(days=1, seconds=1))
    fired = tracker.sweep()

    assert all(isinstance(e, PhaseChanged) for e in fired)
    assert described(fired) == [
        ("j1", "discovery", "fail", "running", "failed", HEARTBEAT_MISSED),
        ("j1", "extraction", "fail", "paused", "failed", PAUSED_TIMED_OUT),
    ]
    assert {e.at for e in fired} == {now}
    with tracker_on(place.open(), clock) as reader:  # SQL: another pool reads what was committed
        job = reader.get_job("j1")
        for name, error in (("discovery", HEARTBEAT_MISSED), ("extraction", PAUSED_TIMED_OUT)):
            phase = job.phases[name]
            assert (phase.status, phase.error, phase.completed_at) == ("failed", error, now)
            assert phase.deadline is None  # failed has no deadline: out of the index
        assert job.get_overall_status() == "failed"
        assert reader.get_job("j2").phases["discovery"].status == "running"  # not due yet
        assert changes(reader, "j1") == [  # the earlier deadline first
            ("discovery", "start", None),
            ("extraction", "start", None),
            ("extraction", "pause", None),
            ("discovery", "fail", HEARTBEAT_MISSED),
            ("extraction", "fail", PAUSED_TIMED_OUT),
        ]
        assert tracker.sweep() == []  # nothing fires twice
        clock.advance(minutes=4)
        (late,) = tracker.sweep()  # j2's heartbeat has passed now
        assert (late.job_id, late.phase, late.error) == ("j2", "discovery", HEARTBEAT_MISSED)
    tracker.close()


# -- 2. heartbeats and progress move the heartbeat deadline, not the timeout --------------------


def test_reports_in_time_keep_a_phase_alive_until_its_timeout(place: Place) -> None:
    clock = Clock()
    tracker = tracker_on(place.open(), clock)
    tracker.create_job("j")
    tracker.fire("j", "discovery", "start")
    tracker.report_progress("j", "discovery", 0, items_total=1000)
    reports = 0
    # A report every 4 minutes, by each of the three ways a worker has to say it is alive.
    while clock.now + 4 * MINUTE < T0 + timedelta(hours=2):
        clock.advance(minutes=4)
        assert tracker.sweep() == []  # the last report was 4 minutes ago: in time
        way = reports % 3
        if way == 0:
            tracker.heartbeat("j", "discovery")
        elif way == 1:
            tracker.report_progress("j", "discovery", reports)
        else:
            tracker.get_job("j").phases["discovery"].heartbeat()  # PhaseState.heartbeat()
        reports += 1
        phase = tracker.get_job("j").phases["discovery"]
        assert phase.status == "running"
        assert phase.entered_at == T0  # progress does not move the status's entry
        # The heartbeat deadline moves with each report, the timeout stays: the earlier one.
        assert phase.deadline == min(clock.now + 5 * MINUTE, T0 + timedelta(hours=2))
    assert reports == 29
    assert clock.now == T0 + timedelta(hours=1, minutes=56)
    phase = tracker.get_job("j").phases["discovery"]
    assert phase.deadline == T0 + timedelta(hours=2)  # the timeout, counted from the start
    assert (phase.items_processed, phase.items_total) == (28, 1000)  # the last count reported
    clock.set(T0 + timedelta(hours=2) - timedelta(seconds=1))
    assert tracker.sweep() == []
    clock.set(T0 + timedelta(hours=2))  # a deadline at the sweep's time has passed
    (fired,) = tracker.sweep()
    assert (fired.phase, fired.trigger, fired.error) == ("discovery", "fail", RUNNING_TIMED_OUT)
    history = changes(tracker, "j")
    assert history == [("discovery", "start", None), ("discovery", "fail", RUNNING_TIMED_OUT)]
    tracker.close()


def test_entering_a_status_again_restarts_its_timeout(place: Place) -> None:
    clock = Clock()
    tracker = tracker_on(place.open(), clock)
    tracker.create_job("j")
    tracker.fire("j", "discovery", "start")
    clock.advance(minutes=3)
    paused_at = clock.now
    tracker.fire("j", "discovery", "pause")
    phase = tracker.get_job("j").phases["discovery"]
    assert (phase.entered_at, phase.deadline) == (paused_at, paused_at + timedelta(days=1))
    clock.advance(hours=20)
    tracker.heartbeat("j", "discovery")  # paused has no heartbeat: its timeout stays
    assert tracker.get_job("j").phases["discovery"].deadline == paused_at + timedelta(days=1)
    clock.advance(hours=3, minutes=59)  # a minute before the paused timeout
    resumed_at = clock.now
    tracker.fire("j", "discovery", "resume")
    phase = tracker.get_job("j").phases["discovery"]
    assert (phase.entered_at, phase.deadline) == (resumed_at, resumed_at + 5 * MINUTE)
    clock.set(paused_at + timedelta(days=1, minutes=1))  # past the paused deadline it left
    assert tracker.sweep() == []
    clock.set(resumed_at + 5 * MINUTE)
    (fired,) = tracker.sweep()
    assert fired.error == HEARTBEAT_MISSED
    tracker.close()


def test_heartbeats_do_not_move_the_timeout_of_the_initial_status(place: Place) -> None:
    """The phases of a new job enter the initial status when the job is created: a timeout
    there ("picked up within 1h") counts from then, whatever is reported meanwhile."""
    clock = Clock()
    tracker = tracker_on(place.open(), clock, spec=QUEUED)
    tracker.create_job("j")
    assert tracker.get_job("j").phases["discovery"].deadline == T0 + timedelta(hours=1)
    for _ in range(2):
        clock.advance(minutes=20)
        tracker.heartbeat("j", "discovery")  # liveness, but not picked up
    deadline = tracker.get_job("j").phases["discovery"].deadline
    clock.set(T0 + timedelta(hours=1))
    fired = tracker.sweep()
    tracker.close()
    assert sorted((e.phase, e.error) for e in fired) == sorted(
        (name, QUEUED_TIMED_OUT) for name in QUEUED.phase_names
    )
    assert deadline == T0 + timedelta(hours=1)


def test_a_progress_report_held_by_coalescing_still_counts_as_a_heartbeat(place: Place) -> None:
    """``progress_interval`` holds a report that changes counts; DESIGN §2 says progress
    reports are the heartbeat, so a report made in time must keep the phase from failing
    (and must not be dropped), even in the tracker that holds it and sweeps."""
    clock = Clock()
    tracker = tracker_on(place.open(), clock, progress_interval=60)
    tracker.create_job("j")
    tracker.fire("j", "discovery", "start")
    clock.advance(minutes=1)
    tracker.report_progress("j", "discovery", 1, items_total=10)  # saved: heartbeat at T0+6m
    clock.advance(minutes=3)
    job = tracker.report_progress("j", "discovery", 5)  # held: saved within the interval
    assert job.phases["discovery"].deadline == T0 + 9 * MINUTE  # what the caller is told
    assert tracker.get_job("j").phases["discovery"].items_processed == 1  # the store: held
    clock.advance(minutes=2)  # 2 minutes after the last report, 6 after the start
    fired = tracker.sweep()
    tracker.flush()
    phase = tracker.get_job("j").phases["discovery"]
    tracker.close()
    assert described(fired) == []
    assert (phase.status, phase.items_processed, phase.items_total) == ("running", 5, 10)


# -- 3. the trigger and the error, in the event, the hooks, the history and the log ------------


def test_the_committed_events_and_the_history_say_which_deadline_passed(place: Place) -> None:
    clock = Clock()
    recorder = Recorder()
    store = place.open()
    tracker = tracker_on(store, clock, plugins=[recorder])
    running_and_paused(tracker, "j")
    recorder.take()
    clock.set(T0 + timedelta(days=2))
    fired = tracker.sweep()
    assert described(fired) == [
        ("j", "discovery", "fail", "running", "failed", HEARTBEAT_MISSED),
        ("j", "extraction", "fail", "paused", "failed", PAUSED_TIMED_OUT),
    ]
    # The in-process hooks saw each change, then the aggregate's change, as for any commit.
    seen = recorder.take()
    assert [e for e in seen if e.type == "phase_changed"] == fired
    aggregate = [
        (e.old_status, e.new_status, e.old_current_phase, e.new_current_phase)  # type: ignore[union-attr]
        for e in seen
        if e.type == "job_status_changed"
    ]
    # The first failure fails the job (paused extraction is its current phase then); the
    # second leaves no phase at work, and the current phase is the first that failed.
    assert aggregate == [
        ("running", "failed", "discovery", "extraction"),
        ("failed", "failed", "extraction", "discovery"),
    ]
    assert [e.type for e in seen] == ["phase_changed", "job_status_changed"] * 2
    # The history keeps the same events (same ids), with their trigger and error.
    history = [e for e in tracker.history("j") if e.type == "phase_changed"]
    assert history[-2:] == fired
    assert [(e.trigger, e.error) for e in history[:3]] == [("start", None)] * 2 + [  # type: ignore[union-attr]
        ("pause", None)
    ]
    # The event log holds them too, in commit order, once each.
    ids = [e.event.event_id for e in logged(store)]
    assert [i for i in ids if i in {e.event_id for e in fired}] == [e.event_id for e in fired]
    assert len(ids) == len(set(ids))
    tracker.close()


# -- 4. the relay delivers the sweep's events --------------------------------------------------


class Recording:
    """A notifier a relay drives: keeps each event it is given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def job_created(self, event: Event) -> None:
        self.events.append(event)

    def phase_changed(self, event: Event) -> None:
        self.events.append(event)

    def progress_updated(self, event: Event) -> None:
        self.events.append(event)

    def job_status_changed(self, event: Event) -> None:
        self.events.append(event)

    def job_deleted(self, event: Event) -> None:
        self.events.append(event)


def test_the_relay_delivers_the_sweeps_events_like_any_other_change(place: Place) -> None:
    clock = Clock()
    store = place.open()
    tracker = tracker_on(store, clock)
    running_and_paused(tracker, "j")
    notifier = Recording()
    relay = Relay(place.open(), {"hook": notifier}, options={"lease": 5.0})
    before = relay.run_once()
    assert before == len(notifier.events) == len(logged(store))
    clock.set(T0 + timedelta(days=2))
    fired = tracker.sweep()
    assert len(fired) == 2
    delivered = relay.run_once()
    new = notifier.events[before:]
    assert delivered == len(new) == len(logged(store)) - before
    assert [e for e in new if e.type == "phase_changed"] == fired  # same ids, fields, order
    assert [e.type for e in new] == ["phase_changed", "job_status_changed"] * 2
    assert new == [e.event for e in logged(store)[before:]]
    assert relay.run_once() == 0  # nothing twice
    relay.stop()
    tracker.close()


# -- 5. a worker against a sweep ---------------------------------------------------------------


def two_trackers(target: StoreTarget, clock: Clock, **sweeper: Any) -> tuple[Tracker, Tracker]:
    """A worker and a sweeper on one SQL store, each with a pool of its own."""
    return tracker_on(target.open(), clock), tracker_on(target.open(), clock, **sweeper)


def test_a_worker_that_completes_after_the_deadline_but_before_the_sweep_wins(
    store_target: StoreTarget,
) -> None:
    clock = Clock()
    worker, sweeper = two_trackers(store_target, clock)
    worker.create_job("j")
    worker.fire("j", "discovery", "start")
    clock.advance(minutes=6)  # past the heartbeat, but the worker is done first
    worker.fire("j", "discovery", "complete")
    assert sweeper.sweep() == []
    assert changes(sweeper, "j") == [("discovery", "start", None), ("discovery", "complete", None)]
    assert sweeper.get_job("j").phases["discovery"].status == "completed"
    worker.close()
    sweeper.close()


def test_a_worker_completing_between_the_sweeps_claim_and_its_commit_wins(
    store_target: StoreTarget,
) -> None:
    clock = Clock()
    worker = tracker_on(store_target.open(), clock)
    # The sweeper's plugin lets the worker commit at the sweep's own before_transition: the
    # sweep has claimed the phase and planned "fail" on the job as it was loaded.
    racing = OnRequest("fail", lambda: worker.fire("j", "discovery", "complete"))
    sweeper = tracker_on(store_target.open(), clock, plugins=[racing])
    worker.create_job("j")
    worker.fire("j", "discovery", "start")
    clock.advance(minutes=6)
    assert sweeper.sweep() == []  # the sweep lost the version check, then passed it by
    assert len(racing.asked) == 1  # planned again after losing: "fail" no longer applies
    assert changes(worker, "j") == [("discovery", "start", None), ("discovery", "complete", None)]
    phase = worker.get_job("j").phases["discovery"]
    assert (phase.status, phase.error, phase.deadline) == ("completed", None, None)
    assert sweeper.sweep() == []
    worker.close()
    sweeper.close()


def test_a_sweep_committing_while_a_worker_plans_wins_and_the_worker_is_told(
    store_target: StoreTarget,
) -> None:
    clock = Clock()
    sweeper = tracker_on(store_target.open(), clock)
    fired: list[PhaseChanged] = []
    racing = OnRequest("complete", lambda: fired.extend(sweeper.sweep()))
    worker = tracker_on(store_target.open(), clock, plugins=[racing])
    worker.create_job("j")
    worker.fire("j", "discovery", "start")
    clock.advance(minutes=6)
    with pytest.raises(InvalidTransition, match="failed"):
        worker.fire("j", "discovery", "complete")  # planned, then the sweep committed first
    assert described(fired) == [("j", "discovery", "fail", "running", "failed", HEARTBEAT_MISSED)]
    assert changes(sweeper, "j") == [
        ("discovery", "start", None),
        ("discovery", "fail", HEARTBEAT_MISSED),
    ]
    assert worker.get_job("j").phases["discovery"].status == "failed"
    worker.close()
    sweeper.close()


def test_a_claimed_phase_a_worker_completes_is_not_given_its_deadline_back(place: Place) -> None:
    clock = Clock()
    worker = tracker_on(place.open(), clock)
    sweeping = place.open()
    assert isinstance(sweeping, DeadlineIndex)
    sweeper = tracker_on(sweeping, clock)
    for job_id in ("beat", "done", "idle"):
        worker.create_job(job_id)
        worker.fire(job_id, "discovery", "start")
    now = clock.advance(minutes=6)
    claimed = sweeping.claim_due(now, spec=SPEC.name, limit=10, lease=60)
    assert sorted((d.job_id, d.phase_name, d.status) for d in claimed) == [
        ("beat", "discovery", "running"),
        ("done", "discovery", "running"),
        ("idle", "discovery", "running"),
    ]
    assert {(d.deadline, d.claimed_until) for d in claimed} == {
        (T0 + 5 * MINUTE, now + timedelta(seconds=60))
    }
    assert sweeping.claim_due(now, spec=SPEC.name, limit=10, lease=60) == []  # held
    worker.fire("done", "discovery", "complete")  # while the sweep has it claimed
    worker.heartbeat("beat", "discovery")  # alive after all: due at now+5m
    for due in claimed:  # the sweep gives its claims back, late, with their old deadline
        sweeping.release_due(due, due.deadline)
    # "idle" is due again at once; "done" and "beat" changed since: nothing to give back.
    assert described(sweeper.sweep()) == [
        ("idle", "discovery", "fail", "running", "failed", HEARTBEAT_MISSED)
    ]
    assert worker.get_job("beat").phases["discovery"].deadline == now + 5 * MINUTE
    clock.advance(minutes=5)  # past the lease and the heartbeat's new deadline
    assert described(sweeper.sweep()) == [
        ("beat", "discovery", "fail", "running", "failed", HEARTBEAT_MISSED)
    ]
    assert changes(sweeper, "done") == [
        ("discovery", "start", None),
        ("discovery", "complete", None),
    ]
    worker.close()
    sweeper.close()


def test_the_claims_of_a_sweep_that_died_expire_and_the_phase_fires_once(place: Place) -> None:
    clock = Clock()
    tracker = tracker_on(place.open(), clock)
    tracker.create_job("j")
    tracker.fire("j", "discovery", "start")
    dead = place.open()
    assert isinstance(dead, DeadlineIndex)
    now = clock.advance(minutes=6)
    assert len(dead.claim_due(now, spec=SPEC.name, limit=10, lease=60)) == 1  # then it died
    clock.advance(seconds=30)
    assert tracker.sweep() == []  # still claimed
    clock.set(now + timedelta(seconds=61))
    (fired,) = tracker.sweep()
    assert (fired.phase, fired.error) == ("discovery", HEARTBEAT_MISSED)
    clock.advance(minutes=5)
    assert tracker.sweep() == []
    assert [t for _, t, _ in changes(tracker, "j")] == ["start", "fail"]
    tracker.close()


def test_a_vetoed_timeout_stays_until_its_claim_expires_then_fires(
    place: Place, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    refuse = Refuse("fail")
    tracker = tracker_on(place.open(), clock, plugins=[refuse])
    tracker.create_job("j")
    tracker.fire("j", "discovery", "start")
    now = clock.advance(minutes=6)
    with caplog.at_level(logging.WARNING, logger="phasekit"):
        assert tracker.sweep() == []  # the commit protocol applies: the veto stands
    assert "the deadline of phase 'discovery' of job 'j' passed" in caplog.text
    assert "the operator holds this phase" in caplog.text
    assert tracker.get_job("j").phases["discovery"].status == "running"
    refuse.on = False
    clock.advance(seconds=30)
    assert tracker.sweep() == []  # tried again once its claim expires, not before
    clock.set(now + timedelta(seconds=61))
    assert len(tracker.sweep()) == 1
    assert [t for _, t, _ in changes(tracker, "j")] == ["start", "fail"]
    tracker.close()


def test_a_job_deleted_while_the_sweep_fires_it_is_passed_by_and_the_sweep_goes_on(
    place: Place,
) -> None:
    clock = Clock()
    worker = tracker_on(place.open(), clock)
    racing = OnRequest("fail", lambda: worker.delete_job("gone"))
    sweeper = tracker_on(place.open(), clock, plugins=[racing])
    for job_id in ("gone", "kept"):  # "gone" is due first
        worker.create_job(job_id)
        worker.fire(job_id, "discovery", "start")
        clock.advance(seconds=10)
    clock.advance(minutes=6)
    assert described(sweeper.sweep()) == [
        ("kept", "discovery", "fail", "running", "failed", HEARTBEAT_MISSED)
    ]
    assert [e.job_id for e in racing.asked] == ["gone", "kept"]
    assert sweeper.history("gone") == []
    worker.close()
    sweeper.close()


def test_a_sweep_fires_the_jobs_of_its_own_phase_set_only(place: Place) -> None:
    other = parse_spec(SPEC_TEXT.replace("name: timed", "name: other"))
    clock = Clock()
    timed = tracker_on(place.open(), clock)
    others = tracker_on(place.open(), clock, spec=other)
    timed.create_job("t")
    timed.fire("t", "discovery", "start")
    others.create_job("o")
    others.fire("o", "discovery", "start")
    clock.advance(minutes=6)
    assert [(e.job_id, e.error) for e in timed.sweep()] == [("t", HEARTBEAT_MISSED)]
    assert others.get_job("o").phases["discovery"].status == "running"  # not its to fire
    assert [(e.job_id, e.error) for e in others.sweep()] == [("o", HEARTBEAT_MISSED)]
    timed.close()
    others.close()


def test_two_sweeping_trackers_at_once_fire_each_due_phase_once(place: Place) -> None:
    clock = Clock()
    with tracker_on(place.open(), clock) as setup:
        for n in range(40):
            setup.create_job(f"j{n}")
            setup.fire(f"j{n}", "discovery", "start")
            setup.fire(f"j{n}", "extraction", "start")
            setup.fire(f"j{n}", "extraction", "pause")
    clock.set(T0 + timedelta(days=2))
    sweepers = [tracker_on(place.open(), clock) for _ in range(2)]
    go = threading.Barrier(2)
    results: list[list[PhaseChanged]] = [[], []]
    errors: list[BaseException] = []

    def sweep(n: int) -> None:
        go.wait()
        try:
            results[n] = sweepers[n].sweep()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=sweep, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    fired = [(e.job_id, e.phase) for result in results for e in result]
    assert len(fired) == len(set(fired)) == 80
    for n in range(40):
        history = changes(sweepers[0], f"j{n}")
        assert sorted(p for p, t, _ in history if t == "fail") == ["discovery", "extraction"]
    for tracker in sweepers:
        tracker.close()


# -- 6. three sweeper processes on PostgreSQL ---------------------------------------------------


@pytest.mark.postgres
def test_three_sweeper_processes_fire_a_thousand_due_phases_exactly_once(
    pg_target: StoreTarget, tmp_path: Path
) -> None:
    # With a deadline on the initial status, every phase of a new job is due an hour later;
    # two of each job's four phases are started (a heartbeat of 5m).
    spec_path = tmp_path / "queued.yaml"
    spec_path.write_text(QUEUED_TEXT)
    spec = QUEUED
    clock = Clock()
    jobs = [f"job-{n:03d}" for n in range(250)]
    with tracker_on(pg_target.open(), clock, spec=spec) as setup:
        for job_id in jobs:
            clock.advance(seconds=1)
            setup.create_job(job_id)
            setup.fire(job_id, "discovery", "start")
            setup.fire(job_id, "extraction", "start")
    now = T0 + timedelta(hours=2)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                str(spec_path),
                pg_target.url,
                json.dumps(pg_target.options),
                now.isoformat(),
            ],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                proc.kill()
                pytest.fail(f"a sweeper did not start ({line!r}): {proc.communicate()[1]}")
        for proc in procs:  # all at once
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert all("fired" in r for r in reports), reports
    counts = [len(r["fired"]) for r in reports]
    print(f"\nthree sweepers fired {counts} in {[r['seconds'] for r in reports]} s")
    assert sum(counts) == 1000, counts
    assert sum(1 for c in counts if c) >= 2, counts  # the work was split
    fired = [(job, phase) for r in reports for job, phase, _, _ in r["fired"]]
    assert len(set(fired)) == 1000
    errors = Counter(error for r in reports for _, phase, _, error in r["fired"])
    assert errors == {HEARTBEAT_MISSED: 500, QUEUED_TIMED_OUT: 500}

    reader_store = pg_target.open()
    with tracker_on(reader_store, Clock(now), spec=spec) as reader:
        log = [e.event for e in logged(reader_store)]
        fails = Counter(
            (e.job_id, e.phase) for e in log if e.type == "phase_changed" and e.trigger == "fail"
        )
        assert len(fails) == 1000 and set(fails.values()) == {1}  # no phase failed twice
        for job_id in jobs:
            history = reader.history(job_id)
            failed = Counter(
                e.phase for e in history if e.type == "phase_changed" and e.trigger == "fail"
            )  # type: ignore[union-attr]
            assert failed == dict.fromkeys(spec.phase_names, 1), job_id
            assert {p.status for p in reader.get_job(job_id).phases.values()} == {"failed"}
        assert reader.sweep() == []


# -- 7. restored and older jobs get their deadlines ---------------------------------------------


def test_a_job_loaded_by_a_fresh_tracker_still_fires(place: Place) -> None:
    clock = Clock()
    with tracker_on(place.open(), clock) as first:
        running_and_paused(first, "j")
    clock.advance(minutes=6)
    with tracker_on(place.open(), clock) as fresh:
        job = fresh.get_job("j")
        assert job.phases["discovery"].deadline == T0 + 5 * MINUTE
        assert job.phases["extraction"].deadline == T0 + timedelta(days=1)
        (fired,) = fresh.sweep()
        assert (fired.phase, fired.error) == ("discovery", HEARTBEAT_MISSED)
    clock.set(T0 + timedelta(days=1))
    with tracker_on(place.open(), clock) as another:
        (fired,) = another.sweep()
        assert (fired.phase, fired.error) == ("extraction", PAUSED_TIMED_OUT)


def test_jobs_stored_before_their_status_had_a_deadline_get_one_from_their_timestamps(
    place: Place,
) -> None:
    clock = Clock()
    older = tracker_on(place.open(), clock, spec=PLAIN)
    older.create_job("old")
    older.fire("old", "discovery", "start")
    older.fire("old", "extraction", "start")
    clock.advance(minutes=3)
    paused_at = clock.now
    older.fire("old", "extraction", "pause")
    assert [p.deadline for p in older.get_job("old").phases.values()] == [None] * 4
    older.close()
    assert SPEC.name == PLAIN.name and SPEC.fingerprint != PLAIN.fingerprint

    clock.advance(minutes=1)
    tracker = tracker_on(place.open(), clock)
    job = tracker.get_job("old")  # its deadlines are this version's, from its timestamps
    assert job.phases["discovery"].deadline == T0 + 5 * MINUTE
    assert job.phases["extraction"].deadline == paused_at + timedelta(days=1)
    assert tracker.sweep() == []  # not due yet; the sweep stored their deadlines
    clock.advance(minutes=2)
    (fired,) = tracker.sweep()
    assert (fired.job_id, fired.phase, fired.error) == ("old", "discovery", HEARTBEAT_MISSED)
    tracker.close()
    clock.set(paused_at + timedelta(days=1))
    with tracker_on(place.open(), clock) as fresh:  # a sweep in another tracker finds it
        (fired,) = fresh.sweep()
        assert (fired.phase, fired.error) == ("extraction", PAUSED_TIMED_OUT)
        assert changes(fresh, "old")[-2:] == [
            ("discovery", "fail", HEARTBEAT_MISSED),
            ("extraction", "fail", PAUSED_TIMED_OUT),
        ]


def test_more_undated_phases_than_one_page_all_get_their_deadline(place: Place) -> None:
    """A sweep dates old phases 1,000 at a time: 260 jobs of four phases need two pages."""
    clock = Clock()
    with tracker_on(place.open(), clock, spec=PLAIN) as older:
        for n in range(260):
            older.create_job(f"j{n:03d}")
    clock.advance(minutes=30)
    with tracker_on(place.open(), clock, spec=QUEUED) as tracker:
        assert tracker.sweep() == []  # not due yet: dated from the jobs' creation
        clock.set(T0 + timedelta(hours=1))
        fired = tracker.sweep()
    assert len({(e.job_id, e.phase) for e in fired}) == len(fired) == 1040
    assert {e.error for e in fired} == {QUEUED_TIMED_OUT}


def test_a_status_that_lost_its_deadline_in_a_new_version_fires_no_more(place: Place) -> None:
    clock = Clock()
    with tracker_on(place.open(), clock) as older:
        running_and_paused(older, "j")
    untimed = parse_spec(
        SPEC_TEXT.replace(
            RUNNING, "running: {active: true, heartbeat: 1d, on_timeout: fail}"
        ).replace(PAUSED, "paused: {}")
    )
    clock.advance(minutes=6)  # past the heartbeat of 5m the job was stored with
    with tracker_on(place.open(), clock, spec=untimed) as tracker:
        job = tracker.get_job("j")
        assert job.phases["discovery"].deadline == T0 + timedelta(days=1)
        assert job.phases["extraction"].deadline is None
        assert tracker.sweep() == []
        clock.set(T0 + timedelta(days=1))
        assert [(e.phase, e.error) for e in tracker.sweep()] == [
            ("discovery", "heartbeat of 1d missed in status running")
        ]
        clock.advance(days=30)
        assert tracker.sweep() == []  # paused has no deadline now
        assert tracker.get_job("j").phases["extraction"].status == "paused"


# -- 8. schema version 2 tables upgraded to version 3 -------------------------------------------


def version_2_tables(target: StoreTarget) -> Any:
    """Turn the store's tables into version 2's: the phases table without entered_at and
    deadline, no deadline index, version 2 recorded (the rest is as version 2 had it)."""
    store = target.open()
    store.load("nothing")  # the tables exist
    tables = store.tables
    store.close()
    engine = create_engine(store_url(target.url))
    with engine.begin() as conn:
        for index in tables.phases.indexes:
            if "deadline" in {c.name for c in index.columns}:
                index.drop(conn)
        name = conn.dialect.identifier_preparer.format_table(tables.phases)
        conn.execute(text(f"ALTER TABLE {name} DROP COLUMN entered_at"))
        conn.execute(text(f"ALTER TABLE {name} DROP COLUMN deadline"))
        conn.execute(tables.schema_info.update().values(version=2))
    return engine


def phase_columns(engine: Any, target: StoreTarget) -> tuple[list[str], set[str], list[Any]]:
    """The phases table's columns, its index names, and the version recorded."""
    store = target.open(create_tables=False)
    tables = store.tables
    store.close()
    schema = target.options.get("schema")
    with engine.connect() as conn:
        found = inspect(conn)
        columns = [c["name"] for c in found.get_columns(tables.phases.name, schema=schema)]
        indexes = {i["name"] for i in found.get_indexes(tables.phases.name, schema=schema)}
        version = list(conn.execute(select(tables.schema_info)).all())
    return columns, indexes, version


def test_version_2_tables_are_upgraded_and_their_phases_get_deadlines(
    store_target: StoreTarget,
) -> None:
    clock = Clock()
    # A job of the phase set before it had deadlines, and one stored without a deadline
    # under this version of it: both kept in version 2's tables, which hold no deadlines.
    for spec, job_id in ((PLAIN, "plain"), (SPEC, "same")):
        clock.set(T0)
        with tracker_on(store_target.open(), clock, spec=spec) as old:
            old.create_job(job_id)
            old.fire(job_id, "discovery", "start")
            clock.advance(minutes=1)
            old.fire(job_id, "extraction", "start")
            old.fire(job_id, "extraction", "pause")
    engine = version_2_tables(store_target)
    columns, indexes, version = phase_columns(engine, store_target)
    assert columns == V2_PHASE_COLUMNS
    assert version == [("phasekit", 2)]

    clock.set(T0 + 2 * MINUTE)
    store = store_target.open()  # may create tables: it upgrades them
    tracker = tracker_on(store, clock)
    columns, indexes, version = phase_columns(engine, store_target)
    assert columns == [*V2_PHASE_COLUMNS, "entered_at", "deadline"]
    assert f"ix_{store.tables.phases.name}_deadline" in indexes
    assert version == [("phasekit", SCHEMA_VERSION)] == [("phasekit", 3)]
    for job_id in ("plain", "same"):
        job = tracker.get_job(job_id)  # what version 2 kept, read back
        assert [p.status for p in job.phases.values()][:2] == ["running", "paused"]
        assert job.phases["discovery"].entered_at is None  # version 2 did not keep it
    assert tracker.sweep() == []  # nothing due yet; every phase got its deadline
    phases = store.tables.phases
    with engine.connect() as conn:
        stored = {
            (row.job_id, row.phase_name): row.deadline
            for row in conn.execute(select(phases.c.job_id, phases.c.phase_name, phases.c.deadline))
        }
    # From their last change, as the entry into the status is not known.
    for job_id in ("plain", "same"):
        assert stored[(job_id, "discovery")] == T0 + 5 * MINUTE
        assert stored[(job_id, "extraction")] == T0 + MINUTE + timedelta(days=1)
        assert stored[(job_id, "transformation")] is None
    clock.advance(minutes=4)
    assert described(tracker.sweep()) == [
        ("plain", "discovery", "fail", "running", "failed", HEARTBEAT_MISSED),
        ("same", "discovery", "fail", "running", "failed", HEARTBEAT_MISSED),
    ]
    tracker.close()
    clock.set(T0 + timedelta(days=1, minutes=1))
    with tracker_on(store_target.open(), clock) as fresh:
        assert described(fresh.sweep()) == [
            ("plain", "extraction", "fail", "paused", "failed", PAUSED_TIMED_OUT),
            ("same", "extraction", "fail", "paused", "failed", PAUSED_TIMED_OUT),
        ]
        fresh.create_job("new")  # and the upgraded tables take new jobs
        assert fresh.get_job("new").version == 1
    engine.dispose()


def test_version_2_tables_are_refused_without_create_tables_and_left_as_they_are(
    store_target: StoreTarget,
) -> None:
    clock = Clock()
    with tracker_on(store_target.open(), clock, spec=PLAIN) as old:
        old.create_job("kept")
    engine = version_2_tables(store_target)
    before = phase_columns(engine, store_target)
    store = store_target.open(create_tables=False)
    with pytest.raises(PersistenceError, match="schema version 2") as info:
        store.load("kept")
    assert "entered_at and deadline" in str(info.value)
    assert "the tables" not in str(info.value)  # version 2 has them: only columns are missing
    store.close()
    assert phase_columns(engine, store_target) == before  # nothing was written
    engine.dispose()


def test_after_a_version_2_upgrade_heartbeats_do_not_postpone_the_timeout(
    store_target: StoreTarget,
) -> None:
    """Version 2 kept no entered_at: the phase's last change before the upgrade stands in for
    it. The timeout then counts from there; a heartbeat every 4 minutes must not move it."""
    clock = Clock()
    with tracker_on(store_target.open(), clock) as old:
        old.create_job("j")
        old.fire("j", "discovery", "start")  # at T0, under version 2
    version_2_tables(store_target).dispose()
    tracker = tracker_on(store_target.open(), clock)
    fired: list[PhaseChanged] = []
    while not fired and clock.now < T0 + timedelta(hours=3):
        clock.advance(minutes=4)
        fired = tracker.sweep()
        if not fired:
            tracker.heartbeat("j", "discovery")
    phase = tracker.get_job("j").phases["discovery"]
    tracker.close()
    assert [(e.phase, e.error) for e in fired] == [("discovery", RUNNING_TIMED_OUT)], (
        f"still {phase.status} at {clock.now}, deadline {phase.deadline}"
    )
    assert fired[0].at <= T0 + timedelta(hours=2, minutes=4)


# -- 9. errors and warnings in a phase set's deadlines ------------------------------------------


def the_issue(text_: str) -> Any:
    with pytest.raises(SpecError) as caught:
        parse_spec(text_, "timed.yaml")
    issues = caught.value.issues
    assert len(issues) == 1, issues
    return issues[0]


def position(text_: str, needle: str) -> tuple[int, int]:
    index = text_.index(needle)
    return text_.count("\n", 0, index) + 1, index - (text_.rfind("\n", 0, index) + 1) + 1


@pytest.mark.parametrize(
    ("running", "code", "path", "at", "words"),
    [
        (
            "running: {active: true, timeout: 5x, on_timeout: fail}",
            "invalid-duration",
            "statuses.running.timeout",
            "5x",
            "timeout must be a duration, not the string '5x'",
        ),
        (
            "running: {active: true, timeout: 0, on_timeout: fail}",
            "invalid-duration",
            "statuses.running.timeout",
            "0,",
            "longer than zero",
        ),
        (
            "running: {active: true, heartbeat: 0s, on_timeout: fail}",
            "invalid-duration",
            "statuses.running.heartbeat",
            "0s",
            "heartbeat must be longer than zero",
        ),
        (
            "running: {active: true, timeout: 6000w, on_timeout: fail}",
            "invalid-duration",
            "statuses.running.timeout",
            "6000w",
            "at most 100 years",
        ),
        (
            "running: {active: true, timeout: 2h, heartbeat: 5m}",
            "missing-on-timeout",
            "statuses.running.timeout",
            "2h",
            "has a timeout and a heartbeat but no 'on_timeout'",
        ),
        (
            "running: {active: true, heartbeat: 5m}",
            "missing-on-timeout",
            "statuses.running.heartbeat",
            "5m",
            "has a heartbeat but no 'on_timeout'",
        ),
        (
            "running: {active: true, on_timeout: fail}",
            "on-timeout-without-deadline",
            "statuses.running.on_timeout",
            "fail}",
            "has 'on_timeout' but no deadline",
        ),
        (
            "running: {active: true, timeout: 2h, on_timeout: resume}",
            "timeout-trigger-not-allowed",
            "statuses.running.on_timeout",
            "resume}",
            "its transitions start from paused); triggers allowed from 'running': complete, "
            "fail, pause",
        ),
    ],
)
def test_a_bad_deadline_is_a_located_error(
    running: str, code: str, path: str, at: str, words: str
) -> None:
    text_ = SPEC_TEXT.replace(RUNNING, running)
    issue = the_issue(text_)
    assert (issue.code, issue.path) == (code, path)
    line, column = position(text_, running)
    assert (issue.line, issue.column) == (line, column + running.index(at))
    assert words in issue.message
    assert issue.severity == "error"


def test_an_on_timeout_trigger_with_a_typo_has_a_did_you_mean() -> None:
    issue = the_issue(SPEC_TEXT.replace("heartbeat: 5m, on_timeout: fail", "on_timeout: fial"))
    assert (issue.code, issue.path, issue.hint) == (
        "timeout-trigger-not-allowed",
        "statuses.running.on_timeout",
        "fail",
    )
    assert "no transition has that trigger" in issue.message


def test_durations_in_every_spelling_give_the_same_deadlines() -> None:
    spelled = SPEC_TEXT.replace("timeout: 2h, heartbeat: 5m", "timeout: 1h60m, heartbeat: 300")
    rule = parse_spec(spelled).deadlines.rule("running")
    assert rule is not None
    assert (rule.timeout, rule.heartbeat) == (timedelta(hours=2), timedelta(minutes=5))
    assert SPEC.deadlines.rule("running") == rule
    assert SPEC.deadlines.rule("not_started") is None


def test_check_spec_warns_about_a_deadline_on_a_terminal_status() -> None:
    text_ = SPEC_TEXT.replace(
        "failed: {terminal: true}", "failed: {terminal: true, timeout: 1d, on_timeout: retry}"
    ).replace(
        "transitions:\n", "transitions:\n  - {trigger: retry, source: failed, dest: not_started}\n"
    )
    spec = parse_spec(text_)
    found = {(i.code, i.path): i for i in check_spec(spec)}
    issue = found[("deadline-on-terminal", "statuses.failed.timeout")]
    assert issue.severity == "warning"
    assert "terminal but has a timeout" in issue.message
    with pytest.raises(SpecError) as strict:
        check_spec(spec, strict=True)
    assert "deadline-on-terminal" in {i.code for i in strict.value.issues}


def test_check_spec_warns_about_an_active_status_left_without_a_deadline() -> None:
    spec = parse_spec(SPEC_TEXT.replace(RUNNING, "running: {active: true}"))
    (issue,) = check_spec(spec)
    assert (issue.code, issue.path, issue.severity) == (
        "active-without-deadline",
        "statuses.running",
        "warning",
    )
    assert "'paused' has one" in issue.message
    assert check_spec(SPEC) == []  # with its deadline, nothing to say
    assert check_spec(PLAIN) == []  # and without any deadline, neither


# -- 10. sweep_every: the sweeping thread ------------------------------------------------------


def test_sweep_every_fires_a_due_phase_without_a_call_and_close_stops_it(place: Place) -> None:
    clock = Clock()
    tracker = tracker_on(place.open(), clock, sweep_every=0.05)
    sweeper = tracker.sweeper
    assert sweeper is not None and sweeper.running
    tracker.create_job("j")
    tracker.fire("j", "discovery", "start")
    clock.advance(minutes=6)  # past the heartbeat: the next sweep of the thread fires it
    wait_until(lambda: tracker.get_job("j").phases["discovery"].status == "failed")
    assert changes(tracker, "j") == [
        ("discovery", "start", None),
        ("discovery", "fail", HEARTBEAT_MISSED),
    ]
    name = f"phasekit-sweeper-{SPEC.name}"
    assert name in {t.name for t in threading.enumerate()}
    tracker.close()
    assert tracker.sweeper is None
    assert not sweeper.running
    assert name not in {t.name for t in threading.enumerate()}


def test_sweep_every_must_be_a_duration() -> None:
    with pytest.raises(InvalidArgument, match="sweep_every must be longer than zero"):
        tracker_on(MemoryStore(), Clock(), sweep_every=0)


# -- 11. a store without a deadline index; clocks ----------------------------------------------


class PlainStore:
    """A store a plugin might bring: the Store protocol, and no deadline index."""

    def __init__(self) -> None:
        self._inner = MemoryStore()

    def create(self, record: JobRecord, events: Any) -> None:
        self._inner.create(record, events)

    def load(self, job_id: str) -> JobRecord | None:
        return self._inner.load(job_id)

    def save(self, record: JobRecord, *, expected_version: int, events: Any) -> None:
        self._inner.save(record, expected_version=expected_version, events=events)

    def list(self, *, status: str | None = None, limit: int = 100, offset: int = 0) -> Any:
        return self._inner.list(status=status, limit=limit, offset=offset)

    def history(self, job_id: str) -> Any:
        return self._inner.history(job_id)

    def close(self) -> None:
        self._inner.close()


def test_a_store_without_a_deadline_index_cannot_be_swept() -> None:
    store = PlainStore()
    assert not isinstance(store, DeadlineIndex)
    clock = Clock()
    tracker = tracker_on(store, clock)  # type: ignore[arg-type]
    tracker.create_job("j")
    tracker.fire("j", "discovery", "start")
    clock.advance(minutes=6)
    with pytest.raises(PhaseKitError) as info:
        tracker.sweep()
    assert str(info.value) == (
        "store PlainStore keeps no deadline index (claim_due, release_due, undated_phases, "
        "set_deadline): phasekit cannot sweep its jobs"
    )
    assert tracker.get_job("j").phases["discovery"].status == "running"  # nothing changed
    tracker.close()
    # A phase set without deadlines has nothing to sweep, on any store.
    with tracker_on(PlainStore(), clock, spec=PLAIN) as plain:  # type: ignore[arg-type]
        plain.create_job("j")
        plain.fire("j", "discovery", "start")
        clock.advance(days=30)
        assert plain.sweep() == []


def test_a_sweeping_thread_on_a_store_without_an_index_logs_and_keeps_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="phasekit"):
        tracker = tracker_on(PlainStore(), Clock(), sweep_every=0.02)  # type: ignore[arg-type]
        sweeper = tracker.sweeper
        assert sweeper is not None
        wait_until(lambda: caplog.text.count("the deadline sweep failed") >= 2)
        assert sweeper.running
        assert "keeps no deadline index" in caplog.text
        tracker.close()
    assert not sweeper.running


def test_a_sweep_needs_a_timezone_aware_now() -> None:
    clock = Clock()
    with tracker_on(MemoryStore(), clock) as tracker:
        tracker.create_job("j")
        tracker.fire("j", "discovery", "start")
        with pytest.raises(InvalidArgument, match="no time zone"):
            tracker.sweep(now=datetime(2026, 3, 2, 9, 6))  # no time zone: the point of it
        # An aware time in another zone is the same instant.
        (fired,) = tracker.sweep(now=(T0 + 6 * MINUTE).astimezone(timezone(timedelta(hours=5))))
        assert fired.error == HEARTBEAT_MISSED
    naive = tracker_on(MemoryStore(), lambda: datetime(2026, 3, 2))  # no time zone
    with pytest.raises(InvalidArgument, match="no time zone"):
        naive.create_job("j")
    naive.close()


def test_on_sqlite_a_claim_starts_from_the_deadline_index_not_from_the_jobs(
    tmp_path: Path,
) -> None:
    """Without statistics (no ANALYZE), SQLite would start a join of phases and jobs from the
    phase set's jobs: every job read by every claim. The claim has the phases alone in FROM."""
    import sqlite3  # noqa: PLC0415

    from sqlalchemy import event  # noqa: PLC0415
    from sqlalchemy.engine import Engine  # noqa: PLC0415

    store = SQLStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        statements.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        store.claim_due(T0, spec="deadlines", limit=10)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
        store.close()
    (claim,) = [(s, p) for s, p in statements if "deadline <=" in s and "SELECT" in s.upper()]
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        plan = " ".join(
            str(row) for row in conn.execute(f"EXPLAIN QUERY PLAN {claim[0]}", claim[1])
        )
    assert "USING INDEX ix_phasekit_phases_deadline" in plan, plan
    assert "SCAN" not in plan, plan
