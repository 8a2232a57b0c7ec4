"""The event log and the relay ledger of the memory store, SQLite and PostgreSQL.

Every test drives real stores: a ``MemoryStore``, a SQLite file in ``tmp_path``, and a
PostgreSQL server (its own table prefix in the run's schema). Events come from a real
``Tracker`` whenever a test needs events, so the log is held to what plugins receive.
"""

from __future__ import annotations

import itertools
import secrets
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeAlias

import psycopg
import pytest
from psycopg import sql as pgsql
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.schema import CreateTable
from statemachine.plugins.sql import SQLStore, store_url, tables_metadata
from statemachine.plugins.sql import store as sql_store_module
from statemachine.plugins.sql.schema import NAMING_CONVENTION, SCHEMA_VERSION, build_tables

import statemachine
from statemachine import (
    ConcurrentUpdateError,
    DeadLetter,
    Event,
    EventLog,
    JobDeleted,
    JobExists,
    LoggedEvent,
    MemoryStore,
    PersistenceError,
    PhaseSet,
    RelayCursor,
    RelayLedger,
    Tracker,
    TransitionRejected,
    TransitionRequest,
    Veto,
    hookimpl,
)

from .conftest import Recorder, StoreTarget, target_for

#: A store with an event log and a relay ledger: the memory store or the SQL store.
LogStore: TypeAlias = MemoryStore | SQLStore

BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


class Place:
    """Where a test's event log lives; opens stores on it and closes them all at the end.

    The memory store is one instance (``open`` returns it each time); a SQL place opens a
    new store, with a pool of its own, on the same tables each time.
    """

    def __init__(self, backend: str, target: StoreTarget | None) -> None:
        self.backend = backend
        self.target = target
        self._memory = MemoryStore() if target is None else None
        self._opened: list[SQLStore] = []

    def open(self, **options: Any) -> LogStore:
        if self._memory is not None:
            return self._memory
        assert self.target is not None
        store = self.target.open(**options)
        self._opened.append(store)
        return store

    def close(self) -> None:
        for store in self._opened:
            store.close()


@pytest.fixture(params=BACKENDS)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    """A fresh, empty event log on each backend."""
    where = Place(request.param, target_for(request, tmp_path))
    try:
        yield where
    finally:
        where.close()


def tracker_on(store: LogStore, ingestion: PhaseSet, *plugins: object, **options: Any) -> Tracker:
    """A tracker on ``store`` with exactly ``plugins`` (no entry point's)."""
    return Tracker(ingestion, store=store, plugins=plugins, load_entrypoints=False, **options)


def ids(events: list[LoggedEvent] | list[Event]) -> list[str]:
    return [e.event.event_id if isinstance(e, LoggedEvent) else e.event_id for e in events]


def positions(logged: list[LoggedEvent]) -> list[int]:
    return [e.position for e in logged]


def increasing(values: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


def drive(tracker: Tracker) -> None:
    """Commits of every kind: creation, transitions, progress, a failure, a deletion."""
    job = tracker.create_job("a", metadata={"source": "s3://bucket/key", "é": [1, 2.5, None]})
    job.phases["discovery"].start()
    job.phases["discovery"].update_progress(3, 10)
    job.phases["discovery"].update_progress(10, 10)
    job.phases["discovery"].complete()
    tracker.create_job("b")
    tracker.fire("b", "discovery", "start")
    tracker.report_progress("b", "discovery", 4)
    tracker.fire("b", "discovery", "fail", error="disk full: ünïcødé ✗")
    tracker.delete_job("a")


class Policy:
    """Vetoes starting the loading phase."""

    @hookimpl
    def before_transition(self, event: TransitionRequest) -> Veto | None:
        if event.phase == "loading" and event.trigger == "start":
            return Veto("loading waits for the maintenance window")
        return None


def run_in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """``target`` started in a thread; the dict gets its ``result`` or its ``error``."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = target()
        except BaseException as exc:
            outcome["error"] = exc
        outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# -- 1. every commit's events, in commit order, as the plugins received them ------------------


def test_the_stores_keep_an_event_log_and_a_relay_ledger(place: Place) -> None:
    store = place.open()
    assert isinstance(store, EventLog)
    assert isinstance(store, RelayLedger)
    assert store.read_events() == []
    assert store.last_position() == 0


def test_every_commit_is_logged_in_commit_order_exactly_as_the_plugins_received_it(
    place: Place, ingestion: PhaseSet
) -> None:
    recorder = Recorder()
    store = place.open()
    with tracker_on(store, ingestion, recorder) as tracker:
        drive(tracker)
        logged = store.read_events()
        assert ids(logged) == ids(recorder.events)
        assert [e.event for e in logged] == recorder.events
        assert increasing(positions(logged))
        assert store.last_position() == logged[-1].position
        assert {e.event.type for e in logged} == {
            "job_created",
            "phase_changed",
            "progress_updated",
            "job_status_changed",
            "job_deleted",
        }
        assert isinstance(logged[-1].event, JobDeleted)
    if place.backend != "memory":  # a store opened afresh reads the same log
        again = place.open()
        assert again.read_events() == logged
        assert again.last_position() == logged[-1].position


def test_reading_after_a_position_pages_through_the_log_exactly(
    place: Place, ingestion: PhaseSet
) -> None:
    store = place.open()
    with tracker_on(store, ingestion) as tracker:
        drive(tracker)
        logged = store.read_events()
        for i, event in enumerate(logged):
            for limit in (1, 2, 5, 1000):
                assert (
                    store.read_events(event.position, limit=limit) == logged[i + 1 : i + 1 + limit]
                )
        for limit in (1, 3, 7):
            paged: list[LoggedEvent] = []
            after = 0
            while page := store.read_events(after, limit=limit):
                assert len(page) <= limit
                paged += page
                after = page[-1].position
            assert paged == logged
        assert store.read_events(store.last_position()) == []
        assert store.read_events(logged[-1].position + 100) == []


def test_a_commit_that_fails_logs_nothing(place: Place, ingestion: PhaseSet) -> None:
    recorder = Recorder()
    store = place.open()
    with tracker_on(store, ingestion, Policy(), recorder) as tracker:
        tracker.create_job("j").phases["discovery"].start()
        before, last = store.read_events(), store.last_position()
        stale = tracker.get_job("j")
        tracker.fire("j", "discovery", "pause")
        logged = store.read_events(last)
        assert logged and ids(logged) == ids(recorder.events[len(before) :])
        last = store.last_position()

        with pytest.raises(ConcurrentUpdateError):  # a copy another commit made stale
            stale.phases["discovery"].complete()
        with pytest.raises(ConcurrentUpdateError):
            stale.phases["extraction"].update_progress(1, 2)
        with pytest.raises(ConcurrentUpdateError):  # a deletion at a stale version
            store.delete("j", expected_version=1, events=[JobDeleted(job_id="j", version=2)])
        with pytest.raises(TransitionRejected, match="maintenance window"):
            tracker.fire("j", "loading", "start")
        with pytest.raises(JobExists):
            tracker.create_job("j")

        assert store.last_position() == last
        assert store.read_events(last) == []
        assert store.read_events() == before + logged
        assert ids(store.read_events()) == ids(recorder.events)


# -- 2. commit order, not insertion order, on PostgreSQL ------------------------------------------


class HeldCommits:
    """Holds, inside PostgreSQL, every commit that inserts a given job's event of a given type.

    A trigger on the events table waits, after such a row is inserted (it has its id), on an
    advisory lock this object holds; the transaction stays open until ``release``. Dropped,
    with its function, when the block ends.
    """

    def __init__(self, target: StoreTarget, job_id: str, event_type: str) -> None:
        schema, prefix = target.options["schema"], target.options["table_prefix"]
        self.events = f'"{schema}"."{prefix}events"'
        self._function = f'"{schema}"."{prefix}hold_commits"'
        self._key = (0x70686B, secrets.randbelow(2**31 - 1) + 1)
        self._conn = psycopg.connect(target.url, autocommit=True)
        self._conn.execute("SELECT pg_advisory_lock(%s, %s)", self._key)
        self._conn.execute(
            f"CREATE FUNCTION {self._function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"PERFORM pg_advisory_xact_lock_shared({self._key[0]}, {self._key[1]}); "
            "RETURN NULL; END $$"
        )
        self._conn.execute(
            pgsql.SQL(
                f"CREATE TRIGGER hold_commits AFTER INSERT ON {self.events} FOR EACH ROW "
                "WHEN (NEW.job_id = {} AND NEW.event_type = {}) "
                f"EXECUTE FUNCTION {self._function}()"
            ).format(pgsql.Literal(job_id), pgsql.Literal(event_type))
        )

    def query(self, sql: str, *params: Any) -> list[Any]:
        """Rows of ``sql`` as another session sees them: committed rows only."""
        return self._conn.execute(sql, params).fetchall()

    def wait_until_held(self) -> None:
        deadline = time.monotonic() + 5
        while not self.query(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 2",
            *self._key,
        )[0][0]:
            assert time.monotonic() < deadline, "no commit reached the trigger"
            time.sleep(0.01)

    def release(self) -> None:
        self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", self._key)

    def __enter__(self) -> HeldCommits:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._conn.execute(f"DROP TRIGGER IF EXISTS hold_commits ON {self.events}")
            self._conn.execute(f"DROP FUNCTION IF EXISTS {self._function}()")
        finally:
            self._conn.close()  # and with it the advisory lock, if still held


@pytest.mark.postgres
def test_an_event_whose_transaction_commits_late_is_read_after_everything_read_before(
    pg_target: StoreTarget, ingestion: PhaseSet
) -> None:
    """A commit holds its transaction open after inserting its event, while later commits
    end first and a reader reads them all. The late event must come after them in the log.

    The late commit is a real ``Tracker`` commit, held inside the database (``HeldCommits``),
    so its row gets its id before the others' rows and commits after them: exactly the case
    a reader of ``id > the last id seen`` gets wrong, which the test shows too.
    """
    recorder = Recorder()
    writer, late_store, reader = pg_target.open(), pg_target.open(), pg_target.open()
    try:
        with (
            tracker_on(writer, ingestion, recorder) as tracker,
            tracker_on(late_store, ingestion, recorder) as late_tracker,
            HeldCommits(pg_target, "late", "progress_updated") as held,
        ):
            late_tracker.create_job("late")
            late_tracker.fire("late", "discovery", "start")
            thread, outcome = run_in_thread(
                lambda: late_tracker.report_progress("late", "discovery", 5, 10)
            )
            held.wait_until_held()
            # The late row is inserted (it has its id) and uncommitted. Later commits end first.
            tracker.create_job("early")
            tracker.fire("early", "discovery", "start")
            tracker.report_progress("early", "discovery", 1, 2)

            read_before = reader.read_events()
            last = reader.last_position()
            committed = ids(recorder.events)
            assert ids(read_before) == committed
            assert positions(read_before) == list(range(1, len(committed) + 1))
            assert last == len(committed)
            ((naive_last_id,),) = held.query(f"SELECT max(id) FROM {held.events}")

            held.release()
            thread.join(10)
            assert not thread.is_alive()
            assert "error" not in outcome, outcome.get("error")

            (late_event,) = recorder.events[len(committed) :]
            read_after = reader.read_events(last)
            assert ids(read_after) == [late_event.event_id]
            assert read_after[0].event == late_event
            assert read_after[0].position > max(positions(read_before))
            assert reader.last_position() == read_after[0].position
            assert ids(reader.read_events()) == ids(recorder.events)

            # What a reader of "id > the last id seen" would have done: skipped it for good.
            ((late_id,),) = held.query(
                f"SELECT id FROM {held.events} WHERE event_id = %s", late_event.event_id
            )
            assert late_id < naive_last_id
            naive = held.query(
                f"SELECT event_id FROM {held.events} WHERE id > %s ORDER BY id", naive_last_id
            )
            assert late_event.event_id not in [row[0] for row in naive]
    finally:
        for store in (writer, late_store, reader):
            store.close()


# -- 3. concurrent numbering ---------------------------------------------------------------


def test_concurrent_commits_and_readers_number_every_event_once_in_commit_order(
    place: Place, ingestion: PhaseSet
) -> None:
    """Writers (each on a store of its own on SQL backends) drive their own jobs and fight
    over a shared one, while readers page through the log. Every reader reads every
    committed event once, in one order, without gaps; failed (conflicting) commits leave
    nothing behind."""
    writers, readers = 4, 3
    recorder = Recorder()  # shared by every tracker: list.append is atomic
    trackers = [
        tracker_on(place.open(), ingestion, recorder, conflict_retries=100) for _ in range(writers)
    ]
    reader_stores = [place.open() for _ in range(readers)]
    trackers[0].create_job("shared")
    for phase in ("discovery", "extraction", "transformation", "loading"):
        trackers[0].fire("shared", phase, "start")
    done = threading.Event()
    errors: list[BaseException] = []
    seen: list[list[LoggedEvent]] = [[] for _ in range(readers)]

    def write(n: int) -> None:
        try:
            tracker = trackers[n]
            job = tracker.create_job(f"job-{n}")
            shared_phase = ("discovery", "extraction", "transformation", "loading")[n]
            for phase in ("discovery", "extraction"):
                job.phases[phase].start()
                for i in range(1, 4):
                    job.phases[phase].update_progress(i, 3)
                    tracker.report_progress("shared", shared_phase, 10 * len(phase) + i)
                job.phases[phase].complete()
        except BaseException as exc:
            errors.append(exc)

    def read(n: int) -> None:
        try:
            store, after = reader_stores[n], 0
            while True:
                finished = done.is_set()  # every commit ended before this read began
                page = store.read_events(after, limit=5)
                seen[n].extend(page)
                if page:
                    after = page[-1].position
                elif finished:
                    return
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(n,)) for n in range(readers)]
    threads += [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads[readers:]:
        thread.join(60)
    done.set()
    for thread in threads[:readers]:
        thread.join(60)
    try:
        assert not errors, errors
        assert not any(t.is_alive() for t in threads)
        assert len({e.job_id for e in recorder.events}) == writers + 1
        check_one_log(place.open(), seen, recorder.events)
    finally:
        for tracker in trackers:
            tracker.close()


def check_one_log(store: LogStore, seen: list[list[LoggedEvent]], committed: list[Event]) -> None:
    """The log holds exactly the ``committed`` events, numbered 1..n in per-job commit
    order, and every reader saw all of it, once, in that order."""
    log = store.read_events(limit=100_000)
    assert positions(log) == list(range(1, len(committed) + 1))  # unique, no gaps
    assert sorted(ids(log)) == sorted(ids(committed))  # exactly the committed events
    assert len(set(ids(log))) == len(log)
    for n, read in enumerate(seen):
        assert increasing(positions(read)), f"reader {n} went back"
        assert read == log, f"reader {n} missed or repeated events"
    assert store.last_position() == len(committed)

    by_job: dict[str, list[Event]] = defaultdict(list)
    for event in log:
        by_job[event.event.job_id].append(event.event)
    for job_id, events in by_job.items():
        versions = [e.version for e in events]
        assert versions == sorted(versions), f"{job_id} out of commit order"
        assert sorted(set(versions)) == list(range(1, versions[-1] + 1))  # no commit lost
        # A commit's events (one version) in the order its plugins received them.
        by_version: dict[int, list[str]] = defaultdict(list)
        for e in committed:
            if e.job_id == job_id:
                by_version[e.version].append(e.event_id)
        assert ids(events) == [i for v in sorted(by_version) for i in by_version[v]]


# -- 4. pruning ----------------------------------------------------------------------------------


def commit_batch(tracker: Tracker, job_id: str) -> None:
    tracker.create_job(job_id)
    tracker.fire(job_id, "discovery", "start")
    tracker.report_progress(job_id, "discovery", 1, 4)


def a_cut(store: LogStore, tracker: Tracker) -> tuple[list[LoggedEvent], datetime]:
    """Commits before a moment, the moment, and commits after it."""
    commit_batch(tracker, "old")
    old = store.read_events()
    time.sleep(0.005)
    cut = datetime.now(UTC)
    time.sleep(0.005)
    commit_batch(tracker, "new")
    return old, cut


def test_without_cursors_pruning_removes_every_event_older_than_before(
    place: Place, ingestion: PhaseSet
) -> None:
    store = place.open()
    with tracker_on(store, ingestion) as tracker:
        old, cut = a_cut(store, tracker)
        everything = store.read_events()
        new = everything[len(old) :]
        assert all(e.event.at < cut for e in old) and all(e.event.at > cut for e in new)
        assert store.prune_events(before=cut - timedelta(hours=1)) == 0
        assert store.prune_events(before=cut) == len(old)
        assert store.read_events() == new
        assert store.prune_events(before=cut) == 0
        last = store.last_position()
        assert last == everything[-1].position


def test_pruning_keeps_what_a_relay_cursor_has_not_passed(
    place: Place, ingestion: PhaseSet
) -> None:
    store = place.open()
    future = datetime.now(UTC) + timedelta(hours=1)
    with tracker_on(store, ingestion) as tracker:
        old, cut = a_cut(store, tracker)
        everything = store.read_events()
        slow = store.claim_cursor("slow", "relay", lease=30)
        assert slow is not None and slow.position == 0
        assert store.prune_events(before=future) == 0  # a fresh cursor has had nothing

        fast = store.claim_cursor("fast", "relay", lease=30)
        assert fast is not None
        assert store.save_cursor(replace(fast, position=everything[-1].position), "relay", lease=30)
        assert store.save_cursor(replace(slow, position=old[1].position), "relay", lease=30)
        assert store.prune_events(before=future) == 2  # up to the slowest cursor, inclusive
        assert store.read_events() == everything[2:]

        # Every cursor passed everything: now only the age keeps events.
        assert store.save_cursor(replace(slow, position=everything[-1].position), "relay", lease=30)
        assert store.prune_events(before=cut) == len(old) - 2
        assert store.read_events() == everything[len(old) :]
        assert store.prune_events(before=future) == len(everything) - len(old)
        assert store.read_events() == []


def test_pruning_everything_never_takes_positions_back(place: Place, ingestion: PhaseSet) -> None:
    store = place.open()
    with tracker_on(store, ingestion) as tracker:
        commit_batch(tracker, "a")
        logged = store.read_events()
        last = store.last_position()
        assert store.prune_events(before=datetime.now(UTC) + timedelta(hours=1)) == len(logged)
        assert store.read_events() == []
        assert store.last_position() == last
        if place.backend != "memory":  # nor for a store opened afresh
            assert place.open().last_position() == last
        commit_batch(tracker, "b")
        later = store.read_events()
        assert len(later) == len(logged)
        assert min(positions(later)) > last
        assert store.read_events(last) == later
        assert store.last_position() == later[-1].position


# -- 5. the relay ledger -------------------------------------------------------------------------


def test_a_cursor_is_claimed_fresh_and_its_lease_keeps_other_owners_out_until_it_expires(
    place: Place,
) -> None:
    store = place.open()
    claimed_at = datetime.now(UTC)
    a = store.claim_cursor("hook", "relay-a", lease=2.0)
    assert a is not None
    assert a == RelayCursor("hook", owner="relay-a", lease_until=a.lease_until)
    assert a.lease_until is not None
    assert claimed_at < a.lease_until <= datetime.now(UTC) + timedelta(seconds=2.0)
    assert store.claim_cursor("hook", "relay-b", lease=2.0) is None
    renewed = store.claim_cursor("hook", "relay-a", lease=0.3)  # the holder renews, shorter
    assert renewed is not None and renewed.lease_until is not None
    assert renewed.lease_until >= claimed_at
    assert store.claim_cursor("hook", "relay-b", lease=30) is None or (
        datetime.now(UTC) >= renewed.lease_until  # a slow machine: the short lease ran out
    )

    time.sleep(0.4)  # relay-a's lease runs out
    b = store.claim_cursor("hook", "relay-b", lease=30)
    assert b is not None
    assert (b.notifier, b.position, b.owner) == ("hook", 0, "relay-b")
    assert store.claim_cursor("hook", "relay-a", lease=30) is None
    assert store.relay_cursors() == [b]


def test_a_stale_owner_saves_nothing_not_even_its_dead_letter(
    place: Place, ingestion: PhaseSet
) -> None:
    store = place.open()
    with tracker_on(store, ingestion) as tracker:
        commit_batch(tracker, "j")
        event = store.read_events()[0]
        a = store.claim_cursor("hook", "relay-a", lease=0.2)
        assert a is not None
        time.sleep(0.3)
        b = store.claim_cursor("hook", "relay-b", lease=30)
        assert b is not None
        letter = DeadLetter("hook", event.position, event.event, "410 Gone", 3, datetime.now(UTC))
        moved = replace(a, position=event.position, attempts=2, last_error="timed out")
        assert store.save_cursor(moved, "relay-a", lease=30, dead_letter=letter) is False
        assert store.save_cursor(moved, "relay-a", lease=30) is False
        assert store.relay_cursors() == [b]
        assert store.dead_letters() == []
        never_claimed = RelayCursor("other", position=event.position)
        assert store.save_cursor(never_claimed, "relay-a", lease=30) is False
        assert [c.notifier for c in store.relay_cursors()] == ["hook"]


def test_a_cursor_saved_with_a_dead_letter_keeps_both(place: Place, ingestion: PhaseSet) -> None:
    store = place.open()
    with tracker_on(store, ingestion) as tracker:
        commit_batch(tracker, "j")
        tracker.fire("j", "discovery", "fail", error="disk full: ünïcødé ✗\nsecond line")
        logged = store.read_events()
        failed = next(e for e in logged if getattr(e.event, "error", None))
        cursor = store.claim_cursor("hook", "relay", lease=30)
        assert cursor is not None
        retry_at = datetime(2031, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        saved = replace(
            cursor, position=failed.position, attempts=0, retry_at=retry_at, last_error="410 ✗"
        )
        letter = DeadLetter(
            "hook", failed.position, failed.event, "HTTP 410 Gone: endpoint removed", 5,
            datetime.now(UTC),
        )  # fmt: skip
        assert store.save_cursor(saved, "relay", lease=30, dead_letter=letter) is True

        (kept,) = store.dead_letters()
        assert kept == letter
        assert kept.event == failed.event and kept.event.event_id == failed.event.event_id
        assert store.dead_letters("hook") == [letter]
        assert store.dead_letters("another") == []
        (now,) = store.relay_cursors()
        assert (now.position, now.attempts, now.retry_at, now.last_error, now.owner) == (
            failed.position,
            0,
            retry_at,
            "410 ✗",
            "relay",
        )
        assert now.disabled is None

        second = DeadLetter("hook", logged[0].position, logged[0].event, "bad", 1, kept.at)
        assert store.save_cursor(now, "relay", lease=30, dead_letter=second)
        assert store.dead_letters() == [second, letter]  # oldest position first
        assert store.dead_letters(limit=1) == [second]
        store.remove_dead_letter("hook", second.position)
        store.remove_dead_letter("hook", second.position)  # twice is harmless
        assert store.dead_letters() == [letter]
        store.remove_dead_letter("hook", letter.position)
        assert store.dead_letters() == []


def test_released_cursors_keep_their_place_and_are_listed_by_name(place: Place) -> None:
    store = place.open()
    for name in ("zeta", "hook", "alpha"):
        assert store.claim_cursor(name, "relay-a", lease=30) is not None
    hook = store.claim_cursor("hook", "relay-a", lease=30)
    assert hook is not None
    disabled = replace(hook, position=7, attempts=1, disabled="endpoint gone", last_error="404")
    assert store.save_cursor(disabled, "relay-a", lease=30)

    store.release_cursor("hook", "relay-b")  # not the holder: nothing changes
    assert store.claim_cursor("hook", "relay-b", lease=30) is None
    store.release_cursor("hook", "relay-a")
    cursors = store.relay_cursors()
    assert [c.notifier for c in cursors] == ["alpha", "hook", "zeta"]
    released = cursors[1]
    assert released == replace(disabled, owner=None, lease_until=None)
    taken = store.claim_cursor("hook", "relay-b", lease=30)  # free at once, not on expiry
    assert taken is not None
    assert replace(taken, owner=None, lease_until=None) == released
    assert taken.owner == "relay-b"


# -- 6. waiting for events ---------------------------------------------------------------------


def test_waiting_for_events_when_none_come_returns_false_after_the_timeout(
    place: Place, ingestion: PhaseSet, record_property: Callable[[str, object], None]
) -> None:
    store = place.open()
    with tracker_on(store, ingestion) as tracker:
        commit_batch(tracker, "j")
        assert store.wait_for_events(0, 5.0) is True  # something is there already
        after = store.last_position()
        start = time.monotonic()
        assert store.wait_for_events(after, 0.3) is False
        waited = time.monotonic() - start
        record_property("waited_s", round(waited, 3))
        assert 0.29 <= waited < 0.9


def wake_latency(reader: LogStore, tracker: Tracker) -> tuple[bool, float]:
    """How soon a reader waiting in ``reader`` wakes once ``tracker`` commits."""
    tracker.create_job("j")
    after = reader.last_position()
    assert reader.wait_for_events(after, 0.3) is False  # a PostgreSQL reader now listens
    thread, outcome = run_in_thread(lambda: reader.wait_for_events(after, 5.0))
    time.sleep(0.2)
    assert thread.is_alive()
    tracker.fire("j", "discovery", "start")
    committed = time.monotonic()
    thread.join(6)
    assert "error" not in outcome, outcome.get("error")
    return outcome["result"], outcome["ended"] - committed


def test_a_waiting_reader_wakes_promptly_when_another_thread_of_its_store_commits(
    place: Place, ingestion: PhaseSet, record_property: Callable[[str, object], None]
) -> None:
    store = place.open()
    with tracker_on(store, ingestion) as tracker:
        woke, latency = wake_latency(store, tracker)
    record_property("wake_latency_s", round(latency, 4))
    assert woke is True
    assert latency < 1.0


def test_a_waiting_reader_wakes_promptly_when_another_store_commits(
    store_target: StoreTarget, ingestion: PhaseSet, record_property: Callable[[str, object], None]
) -> None:
    """PostgreSQL: only the NOTIFY of the other store's commit can wake the reader before its
    five seconds are up. SQLite: the reader looks again at most a quarter of a second later."""
    reader, writer = store_target.open(), store_target.open()
    try:
        with tracker_on(writer, ingestion) as tracker:
            woke, latency = wake_latency(reader, tracker)
    finally:
        reader.close()
    record_property("wake_latency_s", round(latency, 4))
    assert woke is True
    assert latency < 1.0


# -- 7. the schema: version 1 tables, and the tables a host's migrations make ---------------


def version_1_tables(target: StoreTarget, ingestion: PhaseSet) -> Engine:
    """Tables as version 1 left them, holding a job: version 2's four tables dropped."""
    store = target.open()
    with tracker_on(store, ingestion) as tracker:
        tracker.create_job("old", metadata={"k": "v"})
        tracker.fire("old", "discovery", "start")
    tables = store.tables
    engine = create_engine(store_url(target.url))
    with engine.begin() as conn:
        for table in reversed(tables.added_in_version_2):
            table.drop(conn)
        conn.execute(tables.schema_info.update().values(version=1))
    return engine


def table_state(engine: Engine, target: StoreTarget) -> tuple[list[str], list[Any], list[Any]]:
    """The store's tables, the version recorded and the jobs, as they are now."""
    schema = target.options.get("schema")
    prefix = target.options.get("table_prefix", "phasekit_")
    tables = build_tables(prefix, schema)
    with engine.connect() as conn:
        names = sorted(n for n in inspect(conn).get_table_names(schema) if n.startswith(prefix))
        version = list(conn.execute(select(tables.schema_info)).all())
        jobs = list(conn.execute(select(tables.jobs.c.job_id, tables.jobs.c.version)).all())
    return names, version, jobs


def test_version_1_tables_are_refused_without_create_tables_naming_what_is_missing(
    store_target: StoreTarget, ingestion: PhaseSet
) -> None:
    engine = version_1_tables(store_target, ingestion)
    before = table_state(engine, store_target)
    assert before[1] == [("phasekit", 1)]
    store = store_target.open(create_tables=False)
    added = [t.name for t in store.tables.added_in_version_2]
    for use in (
        lambda: store.load("old"),
        store.read_events,
        lambda: store.claim_cursor("hook", "relay", lease=30),
    ):
        with pytest.raises(PersistenceError, match="schema version 1") as info:
            use()
        for name in added:
            assert name in str(info.value)
    store.close()
    assert table_state(engine, store_target) == before  # nothing was written
    engine.dispose()


def test_version_1_tables_are_upgraded_when_the_store_may_create_tables(
    store_target: StoreTarget, ingestion: PhaseSet
) -> None:
    engine = version_1_tables(store_target, ingestion)
    recorder = Recorder()
    store = store_target.open()
    with tracker_on(store, ingestion, recorder) as tracker:
        old = tracker.get_job("old")
        assert old.phases["discovery"].status == "running"
        assert old.metadata == {"k": "v"}
        assert [e.type for e in tracker.history("old")] == ["job_created", "phase_changed"]
        assert store.read_events() == []  # version 1 kept no log
        assert store.last_position() == 0
        old.phases["discovery"].complete()
        tracker.create_job("new")
        logged = store.read_events()
        assert ids(logged) == ids(recorder.events)
        assert positions(logged) == list(range(1, len(logged) + 1))
    names, version, jobs = table_state(engine, store_target)
    assert version == [("phasekit", SCHEMA_VERSION)]
    assert set(names) == {t.name for t in store.tables.metadata.sorted_tables}
    assert sorted(j for j, _ in jobs) == ["new", "old"]
    engine.dispose()


@pytest.mark.parametrize(("prefix", "schema"), [("phasekit_", None), ("host_", "jobs")])
def test_tables_metadata_is_exactly_the_store_tables_with_a_naming_convention(
    tmp_path: Path, prefix: str, schema: str | None
) -> None:
    metadata = tables_metadata(table_prefix=prefix, schema=schema)
    expected = {
        f"{prefix}{name}"
        for name in (
            "jobs",
            "phases",
            "history",
            "specs",
            "schema",
            "events",
            "event_sequence",
            "relay_cursors",
            "dead_letters",
        )
    }
    assert {t.name for t in metadata.tables.values()} == expected
    assert all(t.schema == schema for t in metadata.tables.values())
    assert metadata.naming_convention == NAMING_CONVENTION
    for key in ("pk", "fk", "ix", "uq", "ck"):
        assert key in metadata.naming_convention
    if schema is None:
        store = SQLStore(f"sqlite:///{tmp_path / 'x.db'}", table_prefix=prefix)
        assert {t.name for t in store.metadata.sorted_tables} == expected
        assert [(t.name, [c.name for c in t.columns]) for t in store.metadata.sorted_tables] == [
            (t.name, [c.name for c in t.columns]) for t in metadata.sorted_tables
        ]
        store.close()
    phases = metadata.tables[f"{schema}.{prefix}phases" if schema else f"{prefix}phases"]
    ddl = str(CreateTable(phases))
    assert f"CONSTRAINT pk_{prefix}phases PRIMARY KEY" in ddl
    assert f"CONSTRAINT fk_{prefix}phases_job_id_{prefix}jobs FOREIGN KEY" in ddl
    index_names = {i.name for t in metadata.tables.values() for i in t.indexes}
    assert f"ix_{prefix}events_position" in index_names


def test_tables_a_host_makes_from_tables_metadata_hold_the_event_log(
    tmp_path: Path, ingestion: PhaseSet
) -> None:
    path = tmp_path / "host.db"
    engine = create_engine(f"sqlite:///{path}")
    tables_metadata(table_prefix="host_").create_all(engine)  # the host's own migration
    engine.dispose()
    recorder = Recorder()
    store = SQLStore(f"sqlite:///{path}", table_prefix="host_", create_tables=False)
    with tracker_on(store, ingestion, recorder) as tracker:
        drive(tracker)
        assert ids(store.read_events()) == ids(recorder.events)
        cursor = store.claim_cursor("hook", "relay", lease=30)
        assert cursor is not None
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name, version FROM host_schema").fetchall() == [
            ("phasekit", SCHEMA_VERSION)
        ]


def test_a_store_with_event_retention_prunes_old_delivered_events_as_it_commits(
    tmp_path: Path, ingestion: PhaseSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLStore(f"sqlite:///{tmp_path / 'kept.db'}", event_retention="1s")
    assert store.event_retention == timedelta(seconds=1)
    with tracker_on(store, ingestion) as tracker:
        tracker.create_job("old")
        first = store.last_position()
        time.sleep(1.1)  # the first event is now older than the retention
        monkeypatch.setattr(sql_store_module, "PRUNE_EVERY", 0.0)
        tracker.create_job("new")  # this commit prunes
        assert [e.position for e in store.read_events()] == [first + 1]
        assert store.last_position() == first + 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), (12, 12), (0.5, 0.5)],
)
def test_durations_read_as_the_format_writes_them(text: object, seconds: float) -> None:
    assert statemachine.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "5x", "m5", "-5s", "0s", 0, "1h 30", True])
def test_a_bad_duration_says_how_to_write_one(text: object) -> None:
    with pytest.raises((ValueError, TypeError), match=r"duration|longer than zero"):
        statemachine.parse_duration(text, "event_retention")
