"""The relay: durable delivery of a store's event log to notifiers (DESIGN §7).

Every test drives real stores (a ``MemoryStore``, a SQLite file, a PostgreSQL schema of its
own) and real relays; the notifiers are small recording classes of this file that raise the
delivery errors a real notifier raises. Subprocess tests run real interpreters and the real
``phasekit`` command.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import statemachine.plugins.sql as sql_plugin
import yaml
from statemachine.plugins.sql import SQLStore

from statemachine import (
    DeliveryError,
    EndpointGone,
    Event,
    InvalidArgument,
    LoggedEvent,
    MemoryStore,
    PermanentDeliveryError,
    PhaseKitError,
    Tracker,
    hookimpl,
    load_spec,
)
from statemachine.relay import Relay, RelayOptions

from .conftest import Recorder, StoreTarget
from .relay_plugin import read_lines

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
SQL_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
#: Relay options that keep the tests quick: short waits, frequent saves.
FAST: dict[str, Any] = {
    "backoff": 0.02,
    "max_backoff": 0.2,
    "lease": 2.0,
    "save_every": 0.05,
    "idle_wait": 0.1,
    "drain_timeout": 5.0,
}
SPEC = load_spec("ingestion")

LogStore = MemoryStore | SQLStore


# -- places, notifiers, workloads ---------------------------------------------------------------


class Place:
    """Where a test's event log lives. ``open()`` gives the memory store itself each time, or a
    new SQL store (a connection pool of its own, as another process would have) on the same
    tables; every store opened is closed at the end."""

    def __init__(self, backend: str, target: StoreTarget | None) -> None:
        self.backend = backend
        self.target = target
        self._memory = MemoryStore() if target is None else None
        self._opened: list[SQLStore] = []

    def open(self) -> LogStore:
        if self._memory is not None:
            return self._memory
        assert self.target is not None
        store = self.target.open()
        self._opened.append(store)
        return store

    @property
    def url(self) -> str:
        assert self.target is not None
        return self.target.url

    def close(self) -> None:
        for store in self._opened:
            store.close()


def _target(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    if backend == "sqlite":
        return StoreTarget("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}")
    url, schema = request.getfixturevalue("pg_schema")
    return StoreTarget(
        "postgresql", url, {"schema": schema, "table_prefix": f"r{secrets.token_hex(3)}_"}
    )


@pytest.fixture(params=BACKENDS)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    backend = request.param
    target = None if backend == "memory" else _target(backend, request, tmp_path)
    found = Place(backend, target)
    try:
        yield found
    finally:
        found.close()


@pytest.fixture(params=SQL_BACKENDS)
def sql_place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    found = Place(request.param, _target(request.param, request, tmp_path))
    try:
        yield found
    finally:
        found.close()


#: What a recording notifier's ``fail`` callable is given: the event and the attempt's number
#: at it (1 for the first); it returns the exception to raise, or None to take the event.
Failure = Callable[[Event, int], BaseException | None]


class InFlight:
    """Counts deliveries in progress across notifiers, to see whether two ever overlapped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def enter(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self._lock:
            self.now -= 1


class Recording:
    """A notifier the relay drives: keeps each event it took, and every attempt, with times.

    It raises what ``fail`` returns, as a real notifier raises when a delivery failed.
    """

    def __init__(
        self,
        fail: Failure | None = None,
        *,
        delay: float = 0.0,
        in_flight: InFlight | None = None,
    ) -> None:
        self.fail = fail
        self.delay = delay
        self.in_flight = in_flight
        self.events: list[Event] = []
        self.arrived: list[float] = []
        self.attempts: list[tuple[float, str]] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def _deliver(self, event: Event) -> None:
        if self.in_flight is not None:
            self.in_flight.enter()
        try:
            with self._lock:
                self.attempts.append((time.monotonic(), event.event_id))
                attempt = sum(1 for _, i in self.attempts if i == event.event_id)
                self.threads.add(threading.current_thread().name)
            if self.delay:
                time.sleep(self.delay)
            failure = self.fail(event, attempt) if self.fail is not None else None
            if failure is not None:
                raise failure
            with self._lock:
                self.events.append(event)
                self.arrived.append(time.monotonic())
        finally:
            if self.in_flight is not None:
                self.in_flight.leave()

    def job_created(self, event: Event) -> None:
        self._deliver(event)

    def phase_changed(self, event: Event) -> None:
        self._deliver(event)

    def progress_updated(self, event: Event) -> None:
        self._deliver(event)

    def job_status_changed(self, event: Event) -> None:
        self._deliver(event)

    def job_deleted(self, event: Event) -> None:
        self._deliver(event)

    @property
    def ids(self) -> list[str]:
        with self._lock:
            return [e.event_id for e in self.events]

    def tries(self, event_id: str) -> list[float]:
        """When each attempt at ``event_id`` began (monotonic seconds)."""
        with self._lock:
            return [at for at, i in self.attempts if i == event_id]


def commit(tracker: Tracker, jobs: int = 2, prefix: str = "job") -> None:
    """Changes on ``jobs`` new jobs: each created, a phase started, progress, completed; the
    last one deleted, so every event type is in the log."""
    for n in range(jobs):
        job = tracker.create_job(f"{prefix}-{n}")
        phase = job.phases["discovery"]
        phase.start()
        phase.update_progress(items_processed=5, items_total=10)
        phase.complete()
    tracker.delete_job(f"{prefix}-{jobs - 1}")


def logged(store: LogStore) -> list[LoggedEvent]:
    """Every event in the store's log, in position order."""
    found: list[LoggedEvent] = []
    while batch := store.read_events(found[-1].position if found else 0, limit=500):
        found.extend(batch)
    return found


def logged_ids(store: LogStore) -> list[str]:
    return [e.event.event_id for e in logged(store)]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> float:
    """Seconds until ``condition()`` held; fails the test after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.005)
    return time.monotonic() - start


def tracker_on(store: LogStore, **kwargs: Any) -> Tracker:
    return Tracker(SPEC, store, load_entrypoints=False, **kwargs)


def status_of(relay: Relay, name: str) -> Any:
    (found,) = [s for s in relay.status() if s.notifier == name]
    return found


def first_arrivals(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


# -- at least once, in commit order -------------------------------------------------------------


def test_run_once_delivers_every_committed_event_once_in_commit_order(place: Place) -> None:
    recorder = Recorder()
    store = place.open()
    tracker = tracker_on(store, plugins=[recorder])
    commit(tracker, jobs=3)
    rec = Recording()
    relay = Relay(place.open(), {"a": rec}, options=FAST)
    events = logged(store)

    assert relay.run_once() == len(events) == 3 * 6 + 1
    # The events the in-process plugin got, the same ids and fields, in commit order.
    assert rec.events == [e.event for e in events] == recorder.events
    assert {e.type for e in rec.events} == {
        "job_created",
        "phase_changed",
        "progress_updated",
        "job_status_changed",
        "job_deleted",
    }
    assert relay.run_once() == 0  # nothing twice
    commit(tracker, jobs=1, prefix="later")
    assert relay.run_once() == 6 + 1
    assert rec.ids == logged_ids(store)
    status = status_of(relay, "a")
    assert (status.position, status.lag, status.dead_letters) == (store.last_position(), 0, 0)
    assert relay.stop() == 0
    assert status_of(relay, "a").owner is None  # the lease is given back
    tracker.close()


def test_a_started_relay_delivers_commits_of_many_threads_in_commit_order(place: Place) -> None:
    store = place.open()
    tracker = tracker_on(store)
    rec = Recording()
    relay = Relay(place.open(), {"a": rec}, options=FAST)
    relay.start()
    writers = [
        threading.Thread(target=commit, args=(tracker, 5, f"w{n}"), name=f"writer-{n}")
        for n in range(4)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    expected = logged_ids(store)
    assert len(expected) == 4 * (5 * 6 + 1)
    wait_until(lambda: len(rec.ids) >= len(expected))
    assert relay.stop() == 0
    assert rec.ids == expected  # every event, once, in the order of the log
    assert rec.threads == {"phasekit-relay a"}  # never in a committing thread
    tracker.close()


def test_positions_follow_each_jobs_versions(place: Place) -> None:
    store = place.open()
    tracker = tracker_on(store)
    commit(tracker, jobs=3)
    rec = Recording()
    Relay(place.open(), {"a": rec}, options=FAST).run_once()
    versions: dict[str, list[int]] = {}
    for event in rec.events:
        versions.setdefault(event.job_id, []).append(event.version)
    for job, seen in versions.items():
        assert seen == sorted(seen), job
    tracker.close()


# -- one lane per notifier ----------------------------------------------------------------------


def test_two_notifiers_have_their_own_cursors_and_a_failing_one_holds_back_nothing(
    place: Place,
) -> None:
    healed = threading.Event()
    healthy = Recording()
    broken = Recording(lambda e, n: None if healed.is_set() else DeliveryError("receiver down"))
    store = place.open()
    tracker = tracker_on(store)
    options = {**FAST, "max_attempts": 1000, "backoff": 0.05, "max_backoff": 0.1}
    relay = Relay(place.open(), {"healthy": healthy, "broken": broken}, options=options)
    relay.start()
    started = time.monotonic()
    commit(tracker, jobs=4)
    committed = time.monotonic()
    expected = logged_ids(store)
    behind = wait_until(lambda: len(healthy.ids) == len(expected), timeout=5)
    wait_until(lambda: len(broken.tries(expected[0])) >= 3, timeout=15)

    # The healthy notifier had everything, soon after the last commit, while the other one
    # was still retrying its first event.
    assert healthy.ids == expected
    assert broken.ids == []
    assert {i for _, i in broken.attempts} == {expected[0]}
    assert behind < 1.0, f"the healthy notifier was {behind:.2f} s behind"
    assert healthy.arrived[0] - started < committed - started + 1.0
    h, b = status_of(relay, "healthy"), status_of(relay, "broken")
    assert (h.position, h.lag) == (store.last_position(), 0)
    assert (b.position, b.lag) == (0, store.last_position())
    assert b.attempts >= 3
    assert b.last_error == "DeliveryError: receiver down"

    healed.set()
    wait_until(lambda: len(broken.ids) == len(expected), timeout=5)
    relay.stop()
    assert broken.ids == expected
    tracker.close()


def test_run_once_gives_a_failing_notifier_one_attempt_and_the_others_everything(
    place: Place,
) -> None:
    store = place.open()
    commit(tracker_on(store), jobs=2)
    healthy = Recording()
    broken = Recording(lambda e, n: DeliveryError("no"))
    relay = Relay(place.open(), {"broken": broken, "healthy": healthy}, options=FAST)
    assert relay.run_once() == len(logged(store))
    assert healthy.ids == logged_ids(store)
    assert len(broken.attempts) == 1


# -- retries, backoff, dead letters -------------------------------------------------------------


def test_backoff_waits_at_least_what_retry_after_asks(place: Place) -> None:
    store = place.open()
    commit(tracker_on(store), jobs=1)
    first = logged_ids(store)[0]
    rec = Recording(
        lambda e, n: (
            DeliveryError("busy", retry_after=0.4) if e.event_id == first and n <= 2 else None
        )
    )
    relay = Relay(place.open(), {"a": rec}, options={**FAST, "backoff": 0.01})

    assert relay.run_once() == 0
    retry_at = status_of(relay, "a").retry_at
    assert retry_at is not None
    assert relay.run_once() == 0  # too early: no attempt is made
    assert len(rec.attempts) == 1

    relay.start()
    wait_until(lambda: rec.ids[:1] == [first], timeout=5)
    relay.stop()
    tries = rec.tries(first)
    assert len(tries) == 3
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert all(0.39 <= gap < 1.4 for gap in gaps), gaps
    assert rec.ids == logged_ids(store)


def test_backoff_doubles_from_backoff_up_to_max_backoff(place: Place) -> None:
    store = place.open()
    commit(tracker_on(store), jobs=1)
    first = logged_ids(store)[0]
    rec = Recording(lambda e, n: DeliveryError("flaky") if e.event_id == first and n <= 5 else None)
    options = {**FAST, "backoff": 0.08, "max_backoff": 0.3, "idle_wait": 0.02}
    relay = Relay(place.open(), {"a": rec}, options=options)
    relay.start()
    wait_until(lambda: rec.ids[:1] == [first], timeout=10)
    relay.stop()
    tries = rec.tries(first)
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert len(gaps) == 5
    # Each wait is drawn between half and all of min(max_backoff, backoff * 2**k).
    for k, gap in enumerate(gaps):
        wait = min(0.3, 0.08 * 2**k)
        assert wait / 2 - 0.01 <= gap <= wait + 0.25, (k, gaps)
    assert gaps[-1] <= 0.3 + 0.25  # capped


def test_after_max_attempts_an_event_is_a_dead_letter_and_the_lane_goes_on(place: Place) -> None:
    store = place.open()
    commit(tracker_on(store), jobs=2)
    events = logged(store)
    poison = events[2]
    rec = Recording(
        lambda e, n: DeliveryError("cannot take this one") if e == poison.event else None
    )
    relay = Relay(place.open(), {"a": rec}, options={**FAST, "max_attempts": 3, "backoff": 0})
    for _ in range(20):
        relay.run_once()
        if status_of(relay, "a").lag == 0:
            break
    status = status_of(relay, "a")
    assert (status.lag, status.dead_letters, status.attempts) == (0, 1, 0)
    assert len(rec.tries(poison.event.event_id)) == 3
    assert rec.ids == [e.event.event_id for e in events if e is not poison]
    (letter,) = store.dead_letters()
    assert (letter.notifier, letter.position, letter.attempts) == ("a", poison.position, 3)
    assert letter.event == poison.event
    assert letter.reason == "DeliveryError: cannot take this one"
    assert store.dead_letters("other") == []


def test_a_started_relay_dead_letters_after_max_attempts_and_goes_on(place: Place) -> None:
    store = place.open()
    tracker = tracker_on(store)
    commit(tracker, jobs=1)
    poison_id = logged_ids(store)[1]
    rec = Recording(lambda e, n: DeliveryError("never") if e.event_id == poison_id else None)
    relay = Relay(place.open(), {"a": rec}, options={**FAST, "max_attempts": 4})
    relay.start()
    commit(tracker, jobs=1, prefix="more")
    expected = [i for i in logged_ids(store) if i != poison_id]
    wait_until(lambda: len(rec.ids) == len(expected))
    relay.stop()
    assert rec.ids == expected
    assert len(rec.tries(poison_id)) == 4
    assert [d.event.event_id for d in store.dead_letters("a")] == [poison_id]
    tracker.close()


def test_a_permanent_error_dead_letters_the_event_at_once(place: Place) -> None:
    store = place.open()
    commit(tracker_on(store), jobs=2)
    events = logged(store)
    refused = {events[1].event.event_id, events[4].event.event_id}
    rec = Recording(lambda e, n: PermanentDeliveryError("400") if e.event_id in refused else None)
    relay = Relay(place.open(), {"a": rec}, options=FAST)

    assert relay.run_once() == len(events) - 2  # one pass: the lane does not stop at them
    assert [len(rec.tries(i)) for i in sorted(refused)] == [1, 1]
    assert rec.ids == [e.event.event_id for e in events if e.event.event_id not in refused]
    letters = store.dead_letters("a")
    assert [d.position for d in letters] == [events[1].position, events[4].position]
    assert {d.attempts for d in letters} == {1}
    assert {d.reason for d in letters} == {"PermanentDeliveryError: 400"}
    assert status_of(relay, "a").dead_letters == 2


def test_endpoint_gone_disables_the_notifier_until_retry_dead(place: Place) -> None:
    gone = threading.Event()
    gone.set()
    store = place.open()
    tracker = tracker_on(store)
    commit(tracker, jobs=1)
    events = logged(store)
    gone_at = events[2]
    rec = Recording(
        lambda e, n: EndpointGone("HTTP 410") if gone.is_set() and e == gone_at.event else None
    )
    other = Recording()
    relay = Relay(place.open(), {"a": rec, "b": other}, options=FAST)

    relay.run_once()
    assert rec.ids == [e.event.event_id for e in events[:2]]
    assert other.ids == [e.event.event_id for e in events]  # the other notifier goes on
    status = status_of(relay, "a")
    assert status.disabled == "EndpointGone: HTTP 410"
    assert (status.position, status.dead_letters) == (gone_at.position, 1)

    # Disabled: nothing more is attempted, whatever is committed; the cursor stays.
    commit(tracker, jobs=1, prefix="meanwhile")
    attempts = len(rec.attempts)
    relay.run_once()
    relay.start()
    wait_until(lambda: len(other.ids) == len(logged(store)))
    time.sleep(0.3)
    relay.stop()
    assert len(rec.attempts) == attempts
    status = status_of(relay, "a")
    assert (status.position, status.lag) == (
        gone_at.position,
        store.last_position() - status.position,
    )
    assert status.disabled is not None

    # --retry-dead: the dead letter goes, the notifier is enabled, and what was committed
    # meanwhile follows, in order.
    gone.clear()
    relay = Relay(place.open(), {"a": rec, "b": other}, options=FAST)
    assert relay.retry_dead() == {"a": (1, 0), "b": (0, 0)}
    assert rec.ids[-1] == gone_at.event.event_id
    status = status_of(relay, "a")
    assert (status.disabled, status.dead_letters) == (None, 0)
    assert store.dead_letters() == []
    relay.run_once()
    assert rec.ids == logged_ids(store)  # every event exactly once, in commit order
    assert relay.retry_dead("a") == {"a": (0, 0)}
    with pytest.raises(InvalidArgument, match="no notifier 'c'"):
        relay.retry_dead("c")
    tracker.close()


def test_stopping_waits_for_no_notifier_that_cannot_take_anything(place: Place) -> None:
    """A disabled notifier, or one another relay holds, is not waited for while draining."""
    store = place.open()
    tracker = tracker_on(store)
    commit(tracker, jobs=1)
    gone = Recording(lambda e, n: EndpointGone("HTTP 410"))
    held = Recording()
    assert store.claim_cursor("held", "another-relay", lease=30) is not None
    healthy = Recording()
    options = {**FAST, "drain_timeout": 5.0}
    relay = Relay(place.open(), {"gone": gone, "held": held, "healthy": healthy}, options=options)
    relay.start()
    wait_until(lambda: status_of(relay, "gone").disabled is not None)
    commit(tracker, jobs=1, prefix="late")  # committed just before stop(): drained
    started = time.monotonic()
    left = relay.stop()
    took = time.monotonic() - started
    assert healthy.ids == logged_ids(store)
    assert held.attempts == [] and len(gone.attempts) == 1
    assert left == store.last_position()  # what "held" still lacks
    assert took < 1.5, f"stop() took {took:.2f} s"
    tracker.close()


def test_retry_dead_counts_the_letters_still_refused_and_keeps_them(place: Place) -> None:
    store = place.open()
    commit(tracker_on(store), jobs=1)
    events = logged(store)
    refusing = threading.Event()
    refusing.set()
    rec = Recording(
        lambda e, n: (
            PermanentDeliveryError("no")
            if refusing.is_set()
            and e.event_id in {events[0].event.event_id, events[3].event.event_id}
            else None
        )
    )
    relay = Relay(place.open(), {"a": rec}, options=FAST)
    relay.run_once()
    assert len(store.dead_letters("a")) == 2
    assert relay.retry_dead() == {"a": (0, 2)}
    assert len(store.dead_letters("a")) == 2  # kept
    refusing.clear()
    assert relay.retry_dead() == {"a": (2, 0)}
    assert store.dead_letters("a") == []
    assert sorted(rec.ids) == sorted(e.event.event_id for e in events)


def test_retry_dead_on_a_running_relay_takes_turns_with_its_lane_and_keeps_the_lease(
    place: Place,
) -> None:
    store = place.open()
    tracker = tracker_on(store)
    commit(tracker, jobs=3)
    refusing = threading.Event()
    refusing.set()
    in_flight = InFlight()
    rec = Recording(
        lambda e, n: PermanentDeliveryError("no") if refusing.is_set() else None,
        delay=0.003,
        in_flight=in_flight,
    )
    relay = Relay(place.open(), {"a": rec}, options=FAST, owner="relay-1")
    relay.run_once()
    dead = [d.event.event_id for d in store.dead_letters("a")]
    assert len(dead) == len(logged(store))
    refusing.clear()
    relay.start()
    other = Recording(in_flight=in_flight)
    waiting = Relay(place.open(), {"a": other}, options=FAST, owner="relay-2")
    waiting.start()
    commit(tracker, jobs=10, prefix="more")  # the lane is busy with these meanwhile
    time.sleep(0.05)

    assert relay.retry_dead() == {"a": (len(dead), 0)}
    assert status_of(relay, "a").owner == "relay-1"  # the running lane keeps its lease
    expected = logged_ids(store)
    wait_until(lambda: len(set(rec.ids)) == len(expected))
    relay.stop()
    waiting.stop()
    assert in_flight.most == 1  # the lane and retry_dead() took turns
    assert sorted(rec.ids) == sorted(expected)  # each event once: no lease was lost
    assert other.attempts == []
    tracker.close()


# -- leases: one relay at a time per notifier ---------------------------------------------------


def test_two_relays_on_one_store_deliver_a_notifier_one_at_a_time(place: Place) -> None:
    store = place.open()
    tracker = tracker_on(store)
    in_flight = InFlight()
    first, second = (
        Recording(delay=0.002, in_flight=in_flight),
        Recording(delay=0.002, in_flight=in_flight),
    )
    options = {**FAST, "lease": 5.0}
    one = Relay(place.open(), {"a": first}, options=options, owner="relay-1")
    two = Relay(place.open(), {"a": second}, options=options, owner="relay-2")
    one.start()
    two.start()
    writers = [threading.Thread(target=commit, args=(tracker, 4, f"w{n}")) for n in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    expected = logged_ids(store)
    wait_until(lambda: len(set(first.ids) | set(second.ids)) == len(expected))

    assert in_flight.most == 1  # never two deliveries of the notifier at once
    together = first.ids + second.ids
    assert sorted(together) == sorted(expected)  # each exactly once: no lease was lost
    holder, idle = (first, second) if first.ids else (second, first)
    assert holder.ids == expected and idle.ids == []
    assert status_of(one, "a").owner in ("relay-1", "relay-2")

    # The holder stops and gives its lease back: the other takes over, from its cursor.
    stopping, going_on = (one, two) if holder is first else (two, one)
    stopping.stop()
    stopped_at = time.monotonic()
    commit(tracker, jobs=1, prefix="after")
    expected = logged_ids(store)
    took = wait_until(lambda: len(idle.ids) == len(expected) - len(holder.ids), timeout=10)
    going_on.stop()
    assert holder.ids + idle.ids == expected
    assert in_flight.most == 1
    assert took < options["lease"] / 3 + 1.0, f"taken over after {took:.2f} s"
    assert time.monotonic() - stopped_at < options["lease"] + 2
    tracker.close()


def test_the_lease_of_a_dead_relay_expires_and_another_takes_over(place: Place) -> None:
    store = place.open()
    commit(tracker_on(store), jobs=1)
    # A relay that took the lease and died: it never renews it, never gives it back.
    assert store.claim_cursor("a", "dead-owner", lease=0.5) is not None
    taken = time.monotonic()
    rec = Recording()
    relay = Relay(place.open(), {"a": rec}, options={**FAST, "lease": 0.6})
    assert relay.run_once() == 0
    assert status_of(relay, "a").owner == "dead-owner"
    assert rec.attempts == []
    relay.start()
    wait_until(lambda: len(rec.ids) == len(logged(store)), timeout=5)
    took = rec.arrived[0] - taken
    relay.stop()
    assert 0.5 <= took < 0.5 + 0.6 / 3 + 1.0, f"taken over after {took:.2f} s"
    assert rec.ids == logged_ids(store)


def test_a_relay_that_lost_its_lease_does_not_save_its_cursor(place: Place) -> None:
    store = place.open()
    commit(tracker_on(store), jobs=1)
    cursor = store.claim_cursor("a", "relay-1", lease=0.2)
    assert cursor is not None
    time.sleep(0.25)
    assert store.claim_cursor("a", "relay-2", lease=5) is not None
    moved = type(cursor)("a", position=3)
    assert store.save_cursor(moved, "relay-1", lease=5) is False
    assert store.save_cursor(moved, "relay-2", lease=5) is True
    assert store.claim_cursor("a", "relay-1", lease=5) is None
    store.release_cursor("a", "relay-1")  # not its lease: nothing happens
    assert store.claim_cursor("a", "relay-1", lease=5) is None
    store.release_cursor("a", "relay-2")
    again = store.claim_cursor("a", "relay-1", lease=5)
    assert again is not None and again.position == 3


# -- the tracker's relay ----------------------------------------------------------------------


def test_a_tracker_with_a_relay_thread_delivers_within_moments(place: Place) -> None:
    rec = Recording()
    store = place.open()
    # Default relay options: the lane sleeps up to 1 s between looks, so a quick delivery
    # means the commit woke it.
    tracker = tracker_on(store, notifiers={"a": rec}, relay="thread")
    assert isinstance(tracker.relay, Relay)
    latencies = []
    for n in range(5):
        time.sleep(0.05)
        job = tracker.create_job(f"job-{n}")
        job.phases["discovery"].start()
        committed = time.monotonic()
        wanted = logged_ids(store)
        wait_until(lambda wanted=wanted: rec.ids == wanted, timeout=5)
        latencies.append(rec.arrived[-1] - committed)
    tracker.close()
    assert tracker.relay is None
    assert rec.threads == {"phasekit-relay a"}
    assert sorted(latencies)[2] < 0.5, latencies  # the median
    assert max(latencies) < 1.2, latencies


def test_close_drains_what_the_relay_thread_has_not_delivered_yet(place: Place) -> None:
    rec = Recording(delay=0.002)
    store = place.open()
    tracker = tracker_on(store, notifiers={"a": rec}, relay="thread", relay_options=FAST)
    commit(tracker, jobs=10)
    expected = logged_ids(store)
    assert len(rec.ids) < len(expected)  # still delivering
    tracker.close()
    assert rec.ids == expected


@pytest.mark.parametrize("mode", ["off", "external"])
def test_relay_off_and_external_deliver_nothing_in_process(place: Place, mode: str) -> None:
    rec = Recording()
    store = place.open()
    tracker = tracker_on(store, notifiers={"a": rec}, relay=mode, relay_options=FAST)
    assert tracker.relay is None
    commit(tracker, jobs=2)
    time.sleep(0.3)
    tracker.close()
    assert rec.attempts == []
    # The events wait in the log, for a relay elsewhere.
    elsewhere = Recording()
    store = place.open()
    assert Relay(store, {"a": elsewhere}, options=FAST).run_once() == len(logged(store)) > 0
    assert elsewhere.ids == logged_ids(store)


def test_an_unknown_relay_mode_is_refused(place: Place) -> None:
    with pytest.raises(InvalidArgument, match="relay must be one of thread, external, off"):
        tracker_on(place.open(), notifiers={"a": Recording()}, relay="threads")


class RecordingNotifiers:
    """A plugin offering the ``recording`` notifier to configs; keeps every one it built."""

    def __init__(self) -> None:
        self.built: list[Recording] = []

    @hookimpl
    def register_notifiers(self) -> dict[str, Callable[..., object]]:
        def build(**options: Any) -> Recording:
            built = Recording(delay=float(options.get("delay", 0)))
            self.built.append(built)
            return built

        return {"recording": build}


def _config(place: Place, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"spec": "ingestion", **extra}
    if place.target is not None:
        config["store"] = place.target.url
        config["store_options"] = place.target.options
    return config


def test_from_config_runs_the_relay_with_its_relay_options(sql_place: Place) -> None:
    options = {"backoff": 0.5, "max_backoff": 2, "lease": 3, "save_every": 0.05, "idle_wait": 0.2}
    config = _config(sql_place, notifiers={"recording": {}}, relay="thread", relay_options=options)
    plugin = RecordingNotifiers()
    tracker = Tracker.from_config(config, plugins=[plugin, sql_plugin], load_entrypoints=False)
    assert tracker.relay is not None
    assert tracker.relay.options == RelayOptions(**options)
    commit(tracker, jobs=1)
    (rec,) = plugin.built
    expected = logged_ids(tracker.store)  # type: ignore[arg-type]
    wait_until(lambda: rec.ids == expected)
    tracker.close()

    # Relay.from_config reads the same: store, notifiers and options.
    relay = Relay.from_config(config, plugins=[plugin, sql_plugin], load_entrypoints=False)
    assert relay.options == RelayOptions(**options)
    assert status_of(relay, "recording").position == len(expected)
    relay.close()

    with pytest.raises(InvalidArgument, match="unknown relay option bakoff; relay options: "):
        Tracker.from_config(
            {**config, "relay_options": {"bakoff": 1}},
            plugins=[plugin, sql_plugin],
            load_entrypoints=False,
        )
    with pytest.raises(PhaseKitError, match="relay option lease must be positive"):
        Relay.from_config(
            {**config, "relay_options": {"lease": 0}},
            plugins=[plugin, sql_plugin],
            load_entrypoints=False,
        )


def test_from_config_relay_external_leaves_delivery_to_relay_processes(sql_place: Place) -> None:
    config = _config(sql_place, notifiers={"recording": {}}, relay="external")
    plugin = RecordingNotifiers()
    with Tracker.from_config(
        config, plugins=[plugin, sql_plugin], load_entrypoints=False
    ) as tracker:
        assert tracker.relay is None
        commit(tracker, jobs=1)
    (idle,) = plugin.built
    assert idle.attempts == []
    with Relay.from_config(config, plugins=[plugin, sql_plugin], load_entrypoints=False) as relay:
        assert relay.run_once() == 7
    assert plugin.built[1].ids == logged_ids(sql_place.open())


# -- a memory:// process that ends without close() ---------------------------------------------


def _exit_without_close(lines: Path, mode: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tests.relay_worker", "exit-without-close"]
    return subprocess.run(
        [*command, str(lines), "150", mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("mode", ["kept", "dropped"])
def test_a_memory_tracker_whose_process_exits_without_close_delivers_everything(
    tmp_path: Path, mode: str
) -> None:
    """Kept in a global or let go of (and collected) before the end: its relay drains at
    exit, and the notifier has every committed event, in order."""
    lines = tmp_path / "delivered.txt"
    started = time.monotonic()
    run = _exit_without_close(lines, mode)
    took = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    committed = json.loads(run.stdout)
    assert len(committed) == 150 * 10
    delivered = lines.read_text().splitlines()
    assert delivered == committed, (len(delivered), len(committed), run.stderr)
    assert run.stderr == ""
    assert took < 30


def test_what_a_memory_tracker_could_not_deliver_at_exit_is_counted_and_logged(
    tmp_path: Path,
) -> None:
    lines = tmp_path / "delivered.txt"
    run = _exit_without_close(lines, "stuck")
    assert run.returncode == 0, run.stderr
    committed = json.loads(run.stdout)
    assert lines.read_text() == ""
    assert (
        f"{len(committed)} committed event(s) were not delivered to every notifier before the "
        "tracker closed; a memory store's log goes with the process"
    ) in run.stderr


# -- the command line ---------------------------------------------------------------------------


def _phasekit() -> list[str]:
    beside = Path(sys.executable).parent / "phasekit"
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "statemachine"]


@pytest.fixture
def plugin_site(tmp_path: Path) -> Path:
    """A folder for PYTHONPATH whose distribution declares the ``relayfile`` notifier plugin."""
    site = tmp_path / "site"
    info = site / "phasekit_relay_tests-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: phasekit-relay-tests\nVersion: 0\n"
    )
    (info / "entry_points.txt").write_text("[phasekit]\nrelayfile = tests.relay_plugin\n")
    return site


class Cli:
    """Runs ``phasekit`` as a process, with the test plugin on its path."""

    def __init__(self, site: Path, cwd: Path) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PHASEKIT_DISABLE")},
            "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]),
        }
        self.cwd = cwd

    def __call__(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        run = subprocess.run(
            [*_phasekit(), *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == code, (run.returncode, run.stdout, run.stderr)
        assert "Traceback" not in run.stderr, run.stderr
        return run

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)


def test_phasekit_relay_once_status_and_retry_dead(
    sql_place: Place, tmp_path: Path, plugin_site: Path
) -> None:
    out, refuse = tmp_path / "delivered.jsonl", tmp_path / "refuse"
    config = tmp_path / "phasekit.yaml"
    config.write_text(
        yaml.safe_dump(
            _config(
                sql_place,
                notifiers={"relayfile": {"path": "${RELAY_OUT}", "refuse": str(refuse)}},
                relay="external",
                relay_options=FAST,
            )
        )
    )
    phasekit = Cli(plugin_site, tmp_path)
    phasekit.env["RELAY_OUT"] = str(out)
    store = sql_place.open()
    tracker = tracker_on(store)
    commit(tracker, jobs=2)
    total = len(logged(store))

    (before,) = phasekit.json("relay", "--config", str(config), "--status")
    assert before["notifier"] == "relayfile"
    assert (before["position"], before["lag"], before["dead_letters"]) == (0, total, 0)

    assert phasekit.json("relay", "--config", str(config), "--once") == {
        "delivered": total,
        "undelivered": 0,
    }
    assert [line["id"] for line in read_lines(out)] == logged_ids(store)

    # The receiver refuses two new jobs' events for good: dead letters, listed by --status.
    refuse.touch()
    commit(tracker, jobs=2, prefix="refused")
    refused = logged_ids(store)[total:]
    run = phasekit("relay", "--config", str(config), "--once")
    assert run.stdout == "delivered 0 event(s); 0 wait\n"
    (after,) = phasekit.json("relay", "--config", str(config), "--status")
    assert after["position"] == store.last_position()
    assert (after["lag"], after["dead_letters"], after["owner"]) == (0, len(refused), None)
    assert after["last_error"].startswith("PermanentDeliveryError: relayfile refuses ")
    table = phasekit("relay", "--config", str(config), "--status").stdout
    assert "relayfile" in table and str(len(refused)) in table
    assert [d.event.event_id for d in store.dead_letters("relayfile")] == refused

    # Still refused: nothing delivered, the letters kept.
    assert phasekit.json("relay", "--config", str(config), "--retry-dead") == {
        "relayfile": {"delivered": 0, "dead": len(refused)}
    }
    refuse.unlink()
    assert phasekit.json("relay", "--config", str(config), "--retry-dead") == {
        "relayfile": {"delivered": len(refused), "dead": 0}
    }
    assert [line["id"] for line in read_lines(out)] == logged_ids(store)
    (last,) = phasekit.json("relay", "--config", str(config), "--status")
    assert (last["lag"], last["dead_letters"]) == (0, 0)
    run = phasekit("relay", "--config", str(config), "--retry-dead", "--notifier", "relayfile")
    assert run.stdout == "relayfile: 0 dead letter(s) delivered, 0 still dead\n"
    phasekit("relay", "--config", str(config), "--once", "--status", code=2)
    tracker.close()


def test_phasekit_relay_runs_until_sigterm_and_drains(
    sql_place: Place, tmp_path: Path, plugin_site: Path
) -> None:
    out = tmp_path / "delivered.jsonl"
    config = tmp_path / "phasekit.yaml"
    config.write_text(
        yaml.safe_dump(
            _config(sql_place, notifiers={"relayfile": {"path": str(out)}}, relay_options=FAST)
        )
    )
    phasekit = Cli(plugin_site, tmp_path)
    relay = subprocess.Popen(
        [*_phasekit(), "relay", "--config", str(config)],
        cwd=tmp_path,
        env=phasekit.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        store = sql_place.open()
        tracker = tracker_on(store)
        commit(tracker, jobs=3)
        expected = logged_ids(store)
        wait_until(lambda: len(read_lines(out)) == len(expected), timeout=20)
        relay.terminate()
        _, err = relay.communicate(timeout=20)
    finally:
        relay.kill()
    assert relay.returncode == 0, err
    assert "relaying to relayfile" in err
    assert [line["id"] for line in read_lines(out)] == expected
    (status,) = phasekit.json("relay", "--config", str(config), "--status")
    assert (status["lag"], status["owner"]) == (0, None)  # released on the way out
    tracker.close()


def test_phasekit_events_json_after_and_prune(
    sql_place: Place, tmp_path: Path, plugin_site: Path
) -> None:
    out = tmp_path / "delivered.jsonl"
    config = tmp_path / "phasekit.yaml"
    config.write_text(
        yaml.safe_dump(
            _config(
                sql_place,
                notifiers={"relayfile": {"path": str(out)}},
                relay="external",
                relay_options=FAST,
            )
        )
    )
    phasekit = Cli(plugin_site, tmp_path)
    store = sql_place.open()
    tracker = tracker_on(store)
    commit(tracker, jobs=2)
    events = logged(store)

    def printed(*args: str) -> list[dict[str, Any]]:
        run = phasekit("events", "--config", str(config), "--json", *args)
        return [json.loads(line) for line in run.stdout.splitlines()]

    assert printed() == [
        {"position": e.position, "event": e.event.model_dump(mode="json")} for e in events
    ]
    after = events[4].position
    assert [p["position"] for p in printed("--after", str(after))] == [
        e.position for e in events if e.position > after
    ]
    assert printed("--after", str(events[-1].position)) == []
    human = phasekit("events", "--config", str(config), "--after", str(after)).stdout
    assert len(human.splitlines()) == len(events) - 5
    assert events[5].event.job_id in human

    # Delivered to the notifier up to the last position; then two more jobs, not relayed.
    phasekit("relay", "--config", str(config), "--once")
    delivered_to = store.last_position()
    commit(tracker, jobs=2, prefix="later")
    assert (
        phasekit.json("events", "prune", "--config", str(config), "--before", "1h")["removed"] == 0
    )  # every event is newer than an hour
    # A cut-off a minute ahead: every event is older; only those the cursor passed go.
    soon = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    pruned = phasekit.json("events", "prune", "--config", str(config), "--before", soon)
    assert pruned["removed"] == len(events)  # only what the notifier's cursor has passed
    left = printed()
    assert [p["position"] for p in left] == [
        e.position for e in logged(store) if e.position > delivered_to
    ]
    assert left and left[0]["position"] == delivered_to + 1
    # The relay picks up exactly where it was.
    assert phasekit.json("relay", "--config", str(config), "--once")["delivered"] == len(left)
    assert [line["id"] for line in read_lines(out)] == [e.event.event_id for e in events] + [
        p["event"]["event_id"] for p in left
    ]
    text = phasekit("events", "prune", "--config", str(config), "--before", soon).stdout
    assert text.startswith(f"removed {len(left)} event(s) committed before ")
    tracker.close()


def test_the_relay_refuses_a_store_without_an_event_log() -> None:
    class Plain:
        def create(self, record: Any, events: Any) -> None: ...

    with pytest.raises(PhaseKitError, match="keeps no event log"):
        Relay(Plain(), {"a": Recording()})  # type: ignore[arg-type]


def test_status_counts_dead_letters_per_notifier(place: Place) -> None:
    store = place.open()
    commit(tracker_on(store), jobs=1)
    first = logged_ids(store)[0]
    relay = Relay(
        place.open(),
        {
            "a": Recording(
                lambda e, n: PermanentDeliveryError("a") if e.event_id == first else None
            ),
            "b": Recording(lambda e, n: PermanentDeliveryError("b")),
            "c": Recording(),
        },
        options=FAST,
    )
    relay.run_once()
    counted = Counter({s.notifier: s.dead_letters for s in relay.status()})
    assert counted == Counter({"a": 1, "b": len(logged(store)), "c": 0})
    assert relay.counts() == {
        "a": {"delivered": 6, "failures": 1, "dead_lettered": 1},
        "b": {"delivered": 0, "failures": 7, "dead_lettered": 7},
        "c": {"delivered": 7, "failures": 0, "dead_lettered": 0},
    }
    assert relay.undelivered() == 0


def test_phasekit_relay_refuses_a_memory_store_it_could_never_read(tmp_path: Path) -> None:
    config = tmp_path / "memory.yaml"
    config.write_text("spec: ingestion\nnotifiers:\n  logging: {}\n")
    script = Path(sys.executable).with_name("phasekit")
    run = subprocess.run(
        [str(script), "relay", "--config", str(config), "--once"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 1
    assert "its store is memory://, which lives inside one process" in run.stderr
    assert "Traceback" not in run.stderr
