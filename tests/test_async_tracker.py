"""The AsyncTracker passes the Tracker's behavioural tests, and keeps its event loop free.

The behaviour tests are written once, against ``driver``: a small facade that exposes the
by-id API as plain calls, parametrised over the two trackers (``sync``: a ``Tracker``;
``async``: an ``AsyncTracker`` whose coroutines run on one event loop the fixture owns) and
the three bundled stores (memory, SQLite, PostgreSQL). Then come what only an AsyncTracker
does: coroutine hooks awaited, snapshots, ``async with``, the relay of ``from_config``, an
event loop the database never blocks, many tasks on one job. Every test drives the real
trackers and stores; nothing of phasekit is replaced.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import statemachine.plugins.sql as sql_plugin
from statemachine.plugins import logging_notifier
from statemachine.plugins.sql import SQLStore

from statemachine import (
    AsyncTracker,
    Event,
    InvalidTransition,
    JobDeleted,
    JobExists,
    JobNotFound,
    JobState,
    JobStatusChanged,
    MemoryStore,
    PhaseKitError,
    PhaseSet,
    RelayOptions,
    Store,
    Tracker,
    TransitionRejected,
    TransitionRequest,
    UnknownPhase,
    Veto,
    hookimpl,
    load_spec,
    spec_from_dict,
)

from .conftest import Recorder, StoreTarget, row_locked

SPEC = load_spec("ingestion")
PHASES = tuple(SPEC.phase_names)
#: A phase set whose ``start`` asks the guard ``ready``.
GUARDED = spec_from_dict(
    {
        "phasekit": 1,
        "name": "guarded",
        "statuses": {
            "idle": {"initial": True},
            "busy": {"active": True},
            "done": {"terminal": True, "success": True},
        },
        "transitions": [
            {"trigger": "start", "source": "idle", "dest": "busy", "conditions": ["ready"]},
            {"trigger": "finish", "source": "busy", "dest": "done"},
        ],
        "phases": [{"name": "only"}],
        "aggregate": {"status": [{"all": ["done"], "then": "done"}, {"otherwise": "idle"}]},
    }
)
BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
SQL_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
#: Relay options that keep delivery quick.
FAST_RELAY: dict[str, Any] = {
    "backoff": 0.02,
    "max_backoff": 0.2,
    "save_every": 0.05,
    "idle_wait": 0.05,
}

AnyTracker = Tracker | AsyncTracker


# -- where the jobs live -------------------------------------------------------------------------


class Place:
    """A test's store: one ``MemoryStore`` (every tracker gets that very object), or SQL tables
    (a SQLite file, a PostgreSQL schema and table prefix of the test's own) that each tracker
    opens anew, on the sync or the async driver."""

    def __init__(self, backend: str, target: StoreTarget | None) -> None:
        self.backend = backend
        self.target = target
        self.memory = MemoryStore() if target is None else None
        self._inspector: SQLStore | None = None

    def tracker(
        self, kind: str, plugins: tuple[object, ...] = (), spec: PhaseSet = SPEC
    ) -> AnyTracker:
        """A new tracker of ``kind`` (``sync`` or ``async``) on this place."""
        cls: type[AnyTracker] = Tracker if kind == "sync" else AsyncTracker
        if self.target is None:
            return cls(spec, store=self.memory, plugins=plugins, load_entrypoints=False)  # type: ignore[arg-type]
        return cls(
            spec,
            store=self.target.url,
            plugins=[*plugins, sql_plugin],
            store_options=self.target.options,
            load_entrypoints=False,
        )

    def async_tracker(self, *plugins: object, spec: PhaseSet = SPEC) -> AsyncTracker:
        tracker = self.tracker("async", plugins, spec)
        assert isinstance(tracker, AsyncTracker)
        return tracker

    def config(self, **extra: Any) -> dict[str, Any]:
        """A tracker config on this place (a memory store of its own for ``memory``)."""
        config: dict[str, Any] = {"spec": "ingestion", **extra}
        if self.target is not None:
            config["store"] = self.target.url
            config["store_options"] = self.target.options
        return config

    def inspector(self) -> Store:
        """The store as a sync reader sees it (another pool, for SQL), to check what is there."""
        if self.memory is not None:
            return self.memory
        if self._inspector is None:
            assert self.target is not None
            self._inspector = self.target.open()
        inspector: Store = self._inspector
        return inspector

    def logged(self, store: Store | None = None) -> list[Event]:
        """Every event of the store's event log, in commit order."""
        log = store or self.inspector()
        events: list[Event] = []
        after = 0
        while page := log.read_events(after, limit=1000):  # type: ignore[attr-defined]
            events.extend(e.event for e in page)
            after = page[-1].position
        return events

    def close(self) -> None:
        if self._inspector is not None:
            self._inspector.close()


def make_place(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> Place:
    if backend == "memory":
        return Place("memory", None)
    if backend == "sqlite":
        return Place("sqlite", StoreTarget("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}"))
    return Place("postgresql", request.getfixturevalue("pg_target"))


@pytest.fixture(params=BACKENDS)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    made = make_place(request, tmp_path, request.param)
    yield made
    made.close()


@pytest.fixture(params=SQL_BACKENDS)
def sql_place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    made = make_place(request, tmp_path, request.param)
    yield made
    made.close()


# -- the facade: one API, both trackers ----------------------------------------------------------


class Facade:
    """A Tracker or an AsyncTracker, its by-id API as plain calls (coroutines are run on the
    driver's event loop)."""

    def __init__(self, tracker: AnyTracker, runner: asyncio.Runner) -> None:
        self.tracker = tracker
        self.kind = "async" if isinstance(tracker, AsyncTracker) else "sync"
        self._runner = runner

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.tracker, method)(*args, **kwargs)
        return self._runner.run(result) if self.kind == "async" else result

    def create_job(self, job_id: str, metadata: dict[str, Any] | None = None) -> JobState:
        job: JobState = self._call("create_job", job_id, metadata)
        return job

    def get_job(self, job_id: str) -> JobState:
        job: JobState = self._call("get_job", job_id)
        return job

    def fire(self, job_id: str, phase: str, trigger: str, **kwargs: Any) -> JobState:
        job: JobState = self._call("fire", job_id, phase, trigger, **kwargs)
        return job

    def report_progress(
        self, job_id: str, phase: str, items_processed: int, items_total: int | None = None
    ) -> JobState:
        job: JobState = self._call("report_progress", job_id, phase, items_processed, items_total)
        return job

    def history(self, job_id: str) -> list[Any]:
        events: list[Any] = self._call("history", job_id)
        return events

    def list_jobs(self, **filters: Any) -> list[JobState]:
        jobs: list[JobState] = self._call("list_jobs", **filters)
        return jobs

    def delete_job(self, job_id: str) -> JobDeleted:
        deleted: JobDeleted = self._call("delete_job", job_id)
        return deleted

    def close(self) -> None:
        self._call("close")


class Driver:
    """Trackers of one kind on one place, and the event loop the async ones run on."""

    def __init__(self, kind: str, place: Place) -> None:
        self.kind = kind
        self.place = place
        self.runner = asyncio.Runner()
        self._opened: list[Facade] = []

    def tracker(self, *plugins: object, spec: PhaseSet = SPEC, kind: str | None = None) -> Facade:
        """A new tracker on the driver's store: of the driver's kind unless ``kind`` says."""
        facade = Facade(self.place.tracker(kind or self.kind, plugins, spec), self.runner)
        self._opened.append(facade)
        return facade

    def logged(self) -> list[Event]:
        return self.place.logged()

    def close(self) -> None:
        try:
            for facade in reversed(self._opened):
                facade.close()
        finally:
            self.runner.close()
            self.place.close()


@pytest.fixture(
    params=[
        pytest.param(
            (kind, backend),
            id=f"{kind}-{backend}",
            marks=[pytest.mark.postgres] if backend == "postgresql" else [],
        )
        for kind in ("sync", "async")
        for backend in ("memory", "sqlite", "postgresql")
    ]
)
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Driver]:
    kind, backend = request.param
    made = Driver(kind, make_place(request, tmp_path, backend))
    yield made
    made.close()


def ids(events: list[Any]) -> list[str]:
    return [e.event_id for e in events]


def changes(history: list[Any]) -> list[tuple[Any, ...]]:
    """The (type, phase, trigger, source, dest, version) of each history event."""
    return [
        (e.type, getattr(e, "phase", None), getattr(e, "trigger", None), e.version) for e in history
    ]


class Policy:
    """Vetoes starting the loading phase."""

    name = "policy"

    @hookimpl
    def before_transition(self, event: TransitionRequest) -> Veto | None:
        if event.phase == "loading" and event.trigger == "start":
            return Veto("loading waits for the maintenance window")
        return None


class Raising:
    name = "raising"

    @hookimpl
    def phase_changed(self, event: Event) -> None:
        raise RuntimeError("notifier down")

    @hookimpl
    def job_status_changed(self, event: Event) -> None:
        raise RuntimeError("notifier down")


# -- the behaviour of both trackers --------------------------------------------------------------


def test_create_get_fire_and_report_progress_by_id_return_the_committed_job(
    driver: Driver,
) -> None:
    t = driver.tracker()
    created = t.create_job("j", metadata={"source": "s3://bucket", "tries": [1, 2]})
    assert created.version == 1
    assert {p.status for p in created.phases.values()} == {"not_started"}
    with pytest.raises(JobExists):
        t.create_job("j")
    with pytest.raises(JobNotFound, match="no job 'nope'"):
        t.get_job("nope")

    job = t.fire("j", "discovery", "start")
    assert (job.version, job.phases["discovery"].status) == (2, "running")
    assert job.phases["discovery"].started_at is not None
    job = t.report_progress("j", "discovery", 150, items_total=200)
    discovery = job.phases["discovery"]
    assert (job.version, discovery.items_processed, discovery.items_total) == (3, 150, 200)
    assert discovery.progress == 75.0
    job = t.fire("j", "discovery", "fail", error="disk full")
    assert (job.phases["discovery"].status, job.phases["discovery"].error) == (
        "failed",
        "disk full",
    )
    assert job.get_overall_status() == "failed"

    stored = t.get_job("j")
    assert stored.to_schema() == job.to_schema()
    assert stored.metadata == {"source": "s3://bucket", "tries": [1, 2]}
    with pytest.raises(UnknownPhase, match="no phase 'nope'"):
        t.fire("j", "nope", "start")
    with pytest.raises(JobNotFound):
        t.fire("nope", "discovery", "start")
    with pytest.raises(InvalidTransition):  # a failed phase takes no progress
        t.report_progress("j", "discovery", 160)
    assert t.get_job("j").version == 4


def test_history_lists_the_creation_then_every_status_change(driver: Driver) -> None:
    t = driver.tracker()
    t.create_job("j")
    t.fire("j", "extraction", "start")
    t.report_progress("j", "extraction", 1, items_total=2)  # counters: not a status change
    t.fire("j", "extraction", "pause")
    t.fire("j", "extraction", "resume")
    t.fire("j", "extraction", "complete")
    assert changes(t.history("j")) == [
        ("job_created", None, None, 1),
        ("phase_changed", "extraction", "start", 2),
        ("phase_changed", "extraction", "pause", 4),
        ("phase_changed", "extraction", "resume", 5),
        ("phase_changed", "extraction", "complete", 6),
    ]
    assert [(e.source, e.dest) for e in t.history("j")[1:]] == [
        ("not_started", "running"),
        ("running", "paused"),
        ("paused", "running"),
        ("running", "completed"),
    ]
    assert t.history("nope") == []


def test_list_jobs_by_status_and_by_phase_status(driver: Driver) -> None:
    t = driver.tracker()
    for job_id in ("a", "b", "c"):
        t.create_job(job_id)
    t.fire("a", "discovery", "start")
    t.fire("b", "discovery", "start")
    t.fire("b", "discovery", "complete")

    def listed(**filters: Any) -> list[str]:
        return sorted(j.job_id for j in t.list_jobs(**filters))

    assert listed() == ["a", "b", "c"]
    assert listed(status="running") == ["a", "b"]
    assert listed(status="not_started") == ["c"]
    assert listed(phase_status={"discovery": "running"}) == ["a"]
    assert listed(phase_status={"discovery": "completed", "extraction": "not_started"}) == ["b"]
    assert listed(status="not_started", phase_status={"discovery": "not_started"}) == ["c"]
    assert listed(status="failed") == []
    assert len(t.list_jobs(limit=2)) == 2
    (a,) = t.list_jobs(phase_status={"discovery": "running"})
    assert a.to_schema() == t.get_job("a").to_schema()
    with pytest.raises(PhaseKitError, match="did you mean 'extraction'"):
        t.list_jobs(phase_status={"extractoin": "running"})


def test_delete_job_removes_the_job_its_phases_and_its_history(driver: Driver) -> None:
    recorder = Recorder()
    t = driver.tracker(recorder)
    t.create_job("j")
    t.fire("j", "discovery", "start")
    deleted = t.delete_job("j")
    assert isinstance(deleted, JobDeleted)
    assert (deleted.job_id, deleted.version) == ("j", 3)
    assert recorder.events[-1] == deleted
    with pytest.raises(JobNotFound):
        t.get_job("j")
    assert t.history("j") == []
    assert t.list_jobs() == []
    with pytest.raises(JobNotFound):
        t.delete_job("j")
    assert driver.logged()[-1].event_id == deleted.event_id
    assert t.create_job("j").version == 1  # the id is free again


def test_an_invalid_trigger_names_the_allowed_ones_and_changes_nothing(driver: Driver) -> None:
    recorder = Recorder()
    t = driver.tracker(recorder)
    t.create_job("j")
    t.fire("j", "discovery", "start")
    before = (t.get_job("j").to_record(), t.history("j"), ids(driver.logged()))
    recorder.take()
    with pytest.raises(InvalidTransition) as info:
        t.fire("j", "discovery", "resume")
    message = str(info.value)
    assert "job 'j', phase 'discovery': cannot 'resume' from status 'running'" in message
    allowed = t.get_job("j").phases["discovery"].allowed_triggers()
    assert set(info.value.allowed) == set(allowed) and "complete" in allowed
    assert f"allowed triggers from 'running': {', '.join(info.value.allowed)}" in message
    assert (t.get_job("j").to_record(), t.history("j"), ids(driver.logged())) == before
    assert recorder.events == []


def test_a_guard_that_says_no_rejects_and_nothing_is_stored(driver: Driver) -> None:
    asked: list[tuple[str, str, str]] = []

    class Guards:
        name = "guards"

        @hookimpl
        def register_guards(self) -> dict[str, Any]:
            def ready(ctx: Any) -> bool:
                asked.append((ctx.source, ctx.dest, ctx.phase.status))
                return ctx.data.get("ok") is True

            return {"ready": ready}

    t = driver.tracker(Guards(), spec=GUARDED)
    t.create_job("g")
    before = (t.get_job("g").to_record(), t.history("g"), ids(driver.logged()))
    with pytest.raises(TransitionRejected, match="guard 'ready' said no") as info:
        t.fire("g", "only", "start")
    assert (info.value.job_id, info.value.phase, info.value.trigger) == ("g", "only", "start")
    assert (t.get_job("g").to_record(), t.history("g"), ids(driver.logged())) == before
    job = t.fire("g", "only", "start", ok=True)
    assert (job.phases["only"].status, job.version) == ("busy", 2)
    assert asked == [("idle", "busy", "idle")] * 2  # the phase is unchanged while guarded


def test_a_veto_rejects_with_its_reason_and_nothing_is_stored(driver: Driver) -> None:
    recorder = Recorder()
    t = driver.tracker(Policy(), recorder)
    t.create_job("j")
    recorder.take()
    before = (t.get_job("j").to_record(), t.history("j"), ids(driver.logged()))
    with pytest.raises(TransitionRejected, match="maintenance window") as info:
        t.fire("j", "loading", "start")
    assert "policy" in (info.value.rejected_by or "")
    assert (t.get_job("j").to_record(), t.history("j"), ids(driver.logged())) == before
    assert recorder.events == []
    assert t.fire("j", "discovery", "start").version == 2  # other transitions still pass


def test_hooks_run_in_protocol_order_with_the_event_ids_of_the_event_log(
    driver: Driver,
) -> None:
    recorder = Recorder()
    t = driver.tracker(recorder)
    t.create_job("j")
    t.fire("j", "discovery", "start")
    t.report_progress("j", "discovery", 5, items_total=10)
    t.fire("j", "discovery", "complete")
    assert recorder.types == [
        "job_created",
        "phase_changed",  # start
        "job_status_changed",  # not_started -> running
        "progress_updated",
        "phase_changed",  # complete
        "job_status_changed",  # current phase discovery -> extraction
    ]
    assert [e.version for e in recorder.events] == [1, 2, 2, 3, 4, 4]
    logged = driver.logged()
    assert ids(logged) == ids(recorder.events)
    assert logged == recorder.events


def test_a_raising_hook_reaches_neither_the_caller_nor_the_state_nor_other_plugins(
    driver: Driver, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    t = driver.tracker(Raising(), recorder)
    t.create_job("j")
    job = t.fire("j", "discovery", "start")
    assert job.phases["discovery"].status == "running"
    assert t.get_job("j").phases["discovery"].status == "running"
    assert recorder.types == ["job_created", "phase_changed", "job_status_changed"]
    assert "notifier down" in caplog.text
    assert "plugin 'raising' failed in hook phase_changed" in caplog.text


def test_a_job_is_restored_field_for_field_by_a_fresh_tracker_of_the_other_kind(
    driver: Driver,
) -> None:
    writer = driver.tracker()
    writer.create_job("j", metadata={"source": "s3://bucket/x", "tries": [1, 2], "n": None})
    writer.fire("j", "discovery", "start")
    writer.report_progress("j", "discovery", 10, items_total=10)
    writer.fire("j", "discovery", "complete")
    writer.fire("j", "extraction", "start")
    writer.report_progress("j", "extraction", 33, items_total=200)
    writer.fire("j", "extraction", "pause")
    writer.fire("j", "extraction", "resume")
    last = writer.fire("j", "loading", "fail", error="upstream refused: 503")

    other = "async" if driver.kind == "sync" else "sync"
    reader = driver.tracker(kind=other)
    assert reader.kind == other
    restored = reader.get_job("j")
    for name in ("job_id", "metadata", "version", "created_at", "updated_at"):
        assert getattr(restored, name) == getattr(last, name), name
    assert list(restored.phases) == list(last.phases) == list(PHASES)
    fields = (
        "phase_name",
        "status",
        "progress",
        "items_processed",
        "items_total",
        "started_at",
        "completed_at",
        "updated_at",
        "error",
    )
    for phase in PHASES:
        for name in fields:
            mine, theirs = last.phases[phase], restored.phases[phase]
            assert getattr(theirs, name) == getattr(mine, name), (phase, name)
    assert restored.to_record() == last.to_record()
    assert restored.to_schema() == last.to_schema()
    assert restored.get_overall_status() == last.get_overall_status() == "failed"
    assert reader.history("j") == writer.history("j")
    # And the fresh tracker carries on where the first one stopped.
    assert reader.fire("j", "extraction", "complete").version == last.version + 1
    assert writer.get_job("j").phases["extraction"].status == "completed"


def test_a_repeated_idempotency_key_commits_nothing(driver: Driver) -> None:
    recorder = Recorder()
    t = driver.tracker(recorder)
    t.create_job("j")
    first = t.fire("j", "discovery", "start", idempotency_key="task-7:start")
    recorder.take()
    before = (t.history("j"), ids(driver.logged()))
    again = t.fire("j", "discovery", "start", idempotency_key="task-7:start")
    assert again.version == first.version == 2
    assert again.to_schema() == t.get_job("j").to_schema()
    assert (t.history("j"), ids(driver.logged())) == before
    assert recorder.events == []
    # After another change, the key still commits nothing; the job comes back as it is now.
    t.report_progress("j", "discovery", 5, items_total=10)
    later = t.fire("j", "discovery", "start", idempotency_key="task-7:start")
    assert (later.version, later.phases["discovery"].items_processed) == (3, 5)
    assert [e.type for e in t.history("j")] == ["job_created", "phase_changed"]


class Interloper:
    """Before the first change it is asked about, another tracker on the same store commits a
    change to the same job: the change this tracker planned is then stale."""

    name = "interloper"

    def __init__(self, other: Facade, phase: str, trigger: str) -> None:
        self.other = other
        self.phase, self.trigger = phase, trigger
        self.asked: list[tuple[str, str, str]] = []

    @hookimpl
    def before_transition(self, event: TransitionRequest) -> None:
        self.asked.append((event.phase, event.trigger, event.source))
        if len(self.asked) == 1:
            self.other.fire(event.job_id, self.phase, self.trigger)


def test_a_stale_conflicting_writer_makes_the_by_id_call_plan_again_not_fail(
    driver: Driver,
) -> None:
    other = driver.tracker(kind="sync")  # another tracker, on the same store
    interloper, recorder = Interloper(other, "extraction", "start"), Recorder()
    t = driver.tracker(interloper, recorder)
    t.create_job("j")
    recorder.take()
    job = t.fire("j", "discovery", "start")
    # Planned twice: the first commit lost to the other writer, the reload planned again.
    assert interloper.asked == [("discovery", "start", "not_started")] * 2
    assert job.version == 3
    assert (job.phases["discovery"].status, job.phases["extraction"].status) == (
        "running",
        "running",
    )
    assert job.to_schema() == t.get_job("j").to_schema()
    assert changes(t.history("j")) == [
        ("job_created", None, None, 1),
        ("phase_changed", "extraction", "start", 2),  # the other writer's change stands
        ("phase_changed", "discovery", "start", 3),
    ]
    # The events are those of the plan made on the reloaded job: the aggregate moves from
    # what the other writer left (running, extraction), not from what the stale copy had.
    assert [(e.type, e.version) for e in recorder.events] == [
        ("phase_changed", 3),
        ("job_status_changed", 3),
    ]
    aggregate = recorder.events[1]
    assert isinstance(aggregate, JobStatusChanged)
    assert (aggregate.old_status, aggregate.old_current_phase) == ("running", "extraction")
    assert (aggregate.new_status, aggregate.new_current_phase) == ("running", "discovery")
    assert ids(driver.logged())[-1] == recorder.events[-1].event_id


def test_a_trigger_a_stale_writer_made_impossible_raises_invalid_transition(
    driver: Driver,
) -> None:
    other = driver.tracker(kind="sync")
    interloper = Interloper(other, "discovery", "fail")
    t = driver.tracker(interloper)
    t.create_job("j")
    with pytest.raises(InvalidTransition, match="cannot 'start' from status 'failed'"):
        t.fire("j", "discovery", "start")
    assert len(interloper.asked) == 1  # the reloaded phase no longer allows the trigger
    stored = t.get_job("j")
    assert (stored.version, stored.phases["discovery"].status) == (2, "failed")


# -- what only an AsyncTracker does --------------------------------------------------------------


def run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(main())


class AsyncRecorder:
    """Notification hooks as coroutines: each awaits, then records the event and its loop."""

    name = "async-recorder"

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.loops: set[asyncio.AbstractEventLoop] = set()

    async def _record(self, event: Event) -> None:
        await asyncio.sleep(0)
        self.loops.add(asyncio.get_running_loop())
        self.events.append(event)

    @hookimpl
    async def job_created(self, event: Event) -> None:
        await self._record(event)

    @hookimpl
    async def phase_changed(self, event: Event) -> None:
        await self._record(event)

    @hookimpl
    async def progress_updated(self, event: Event) -> None:
        await self._record(event)

    @hookimpl
    async def job_status_changed(self, event: Event) -> None:
        await self._record(event)


def test_an_async_hook_implementation_is_awaited(place: Place) -> None:
    recorder = AsyncRecorder()

    async def main() -> asyncio.AbstractEventLoop:
        async with place.async_tracker(recorder) as t:
            await t.create_job("j")
            assert [e.type for e in recorder.events] == ["job_created"]  # before it returned
            await t.fire("j", "discovery", "start")
            await t.report_progress("j", "discovery", 3, items_total=4)
        return asyncio.get_running_loop()

    loop = run(main)
    assert [e.type for e in recorder.events] == [
        "job_created",
        "phase_changed",
        "job_status_changed",
        "progress_updated",
    ]
    assert recorder.loops == {loop}
    assert ids(place.logged()) == ids(recorder.events)


def test_an_async_before_transition_returning_a_veto_rejects(place: Place) -> None:
    class AsyncPolicy:
        name = "async-policy"

        @hookimpl
        async def before_transition(self, event: TransitionRequest) -> Veto | None:
            await asyncio.sleep(0)
            if event.phase == "loading":
                return Veto("loading waits for the maintenance window")
            return None

    async def main() -> None:
        async with place.async_tracker(AsyncPolicy()) as t:
            await t.create_job("j")
            with pytest.raises(TransitionRejected, match="maintenance window") as info:
                await t.fire("j", "loading", "start")
            assert "async-policy" in (info.value.rejected_by or "")
            assert (await t.get_job("j")).version == 1
            assert len(await t.history("j")) == 1
            assert (await t.fire("j", "discovery", "start")).version == 2

    run(main)
    assert [e.type for e in place.logged()] == [
        "job_created",
        "phase_changed",
        "job_status_changed",
    ]


def test_jobs_it_returns_are_snapshots_changed_only_through_the_tracker(place: Place) -> None:
    async def main() -> None:
        async with place.async_tracker() as t:
            for job in (
                await t.create_job("j"),
                await t.get_job("j"),
                await t.fire("j", "discovery", "start"),
                (await t.list_jobs())[0],
            ):
                phase = job.phases["discovery"]
                with pytest.raises(PhaseKitError, match=r"`await tracker\.fire\("):
                    phase.complete()  # type: ignore[attr-defined]
                with pytest.raises(PhaseKitError, match="snapshots"):
                    phase.trigger("pause")
                with pytest.raises(PhaseKitError, match=r"await tracker\.report_progress"):
                    phase.update_progress(1, 2)
                with pytest.raises(PhaseKitError, match="snapshots"):
                    job.refresh()
            stored = await t.get_job("j")
            assert (stored.version, stored.phases["discovery"].status) == (2, "running")
            assert phase.may("complete")  # reading a snapshot is fine

    run(main)


def test_async_with_closes_the_tracker(place: Place) -> None:
    async def main() -> AsyncTracker:
        async with place.async_tracker() as t:
            await t.create_job("j")
        with pytest.raises(PhaseKitError, match="closed"):
            await t.get_job("j")
        await t.close()  # a second close does nothing
        unused = place.async_tracker()
        await unused.close()  # one that never reached its store closes too
        with pytest.raises(PhaseKitError, match="closed"):
            await unused.create_job("k")
        return t

    closed = run(main)
    if isinstance(closed.store, SQLStore):
        assert closed.store._closed
    assert place.inspector().load("j") is not None  # what it committed stays


class Collecting:
    """A notifier: records what the relay delivers (from the relay's thread)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.threads: set[str] = set()
        self.closed = False

    def _record(self, event: Event) -> None:
        self.threads.add(threading.current_thread().name)
        self.events.append(event)

    @hookimpl
    def job_created(self, event: Event) -> None:
        self._record(event)

    @hookimpl
    def phase_changed(self, event: Event) -> None:
        self._record(event)

    @hookimpl
    def progress_updated(self, event: Event) -> None:
        self._record(event)

    @hookimpl
    def job_status_changed(self, event: Event) -> None:
        self._record(event)

    def close(self) -> None:
        self.closed = True


class CollectingNotifiers:
    """Offers the ``collecting`` notifier to configs; keeps every one it built."""

    name = "collecting-notifiers"

    def __init__(self) -> None:
        self.built: list[Collecting] = []

    @hookimpl
    def register_notifiers(self) -> dict[str, Callable[..., object]]:
        def build(**options: Any) -> Collecting:
            self.built.append(Collecting())
            return self.built[-1]

        return {"collecting": build}


async def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not delivered in time")
        await asyncio.sleep(0.02)


def test_from_config_delivers_notifiers_through_the_relay(place: Place) -> None:
    plugin = CollectingNotifiers()
    config = place.config(notifiers={"collecting": {}}, relay_options=FAST_RELAY)

    async def main() -> list[str]:
        t = AsyncTracker.from_config(config, plugins=[plugin, sql_plugin], load_entrypoints=False)
        try:
            await t.create_job("j")
            await t.fire("j", "discovery", "start")
            await t.report_progress("j", "discovery", 1, items_total=2)
            assert t.relay is not None
            assert t.relay.options == RelayOptions(**FAST_RELAY)
            (notifier,) = plugin.built
            expected = ids(place.logged(place.inspector() if place.target else t.store))
            assert len(expected) == 4
            await eventually(lambda: ids(notifier.events) == expected)
        finally:
            await t.close()
        assert notifier.closed
        return expected

    expected = run(main)
    assert ids(plugin.built[0].events) == expected  # once each, in commit order
    assert threading.current_thread().name not in plugin.built[0].threads  # by the relay


def test_from_config_with_the_bundled_logging_notifier(
    place: Place, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="phasekit.events")
    config = place.config(notifiers={"logging": {}}, relay_options=FAST_RELAY)
    line = "job=j v=2 phase_changed phase=discovery start not_started->running"

    async def main() -> None:
        async with AsyncTracker.from_config(
            config, plugins=[logging_notifier, sql_plugin], load_entrypoints=False
        ) as t:
            await t.create_job("j")
            await t.fire("j", "discovery", "start")
            await eventually(lambda: line in caplog.text)

    run(main)
    threads = {r.threadName for r in caplog.records if r.name == "phasekit.events"}
    assert threading.current_thread().name not in threads  # the relay's thread wrote them


def ticking(gaps: list[float], stop: asyncio.Event, every: float = 0.005) -> Any:
    """A task that wakes every ``every`` seconds, recording how long each wait really took."""

    async def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(every)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    return asyncio.create_task(tick())


def test_the_event_loop_keeps_ticking_while_eight_tasks_commit(
    sql_place: Place, record_property: Callable[[str, object], None]
) -> None:
    reports = 25

    async def main() -> tuple[list[float], float, int]:
        async with sql_place.async_tracker() as t:
            for n in range(8):
                await t.create_job(f"j{n}")
            gaps: list[float] = []
            stop = asyncio.Event()

            async def work(job_id: str) -> int:
                await t.fire(job_id, "discovery", "start")
                for done in range(1, reports + 1):
                    await t.report_progress(job_id, "discovery", done, items_total=reports)
                await t.fire(job_id, "discovery", "complete")
                return reports + 2

            ticker = ticking(gaps, stop)
            began = time.perf_counter()
            commits = await asyncio.gather(*(work(f"j{n}") for n in range(8)))
            elapsed = time.perf_counter() - began
            stop.set()
            await ticker
            for n in range(8):
                assert (await t.get_job(f"j{n}")).version == 1 + reports + 2
        return gaps, elapsed, sum(commits)

    gaps, elapsed, commits = run(main)
    worst = max(gaps)
    record_property("max_gap_ms", round(worst * 1000, 1))
    print(
        f"\n{sql_place.backend}: {commits} commits by 8 tasks in {elapsed:.2f}s; the 5 ms ticker "
        f"woke {len(gaps)} times, longest gap {worst * 1000:.1f} ms"
    )
    assert worst < 0.5
    assert len(gaps) >= elapsed / 0.5  # it ticked all along, not only at the end


def hold_the_database(place: Place, job_id: str, held: threading.Event, seconds: float) -> None:
    """From a thread: take the lock a commit on ``job_id`` needs, for ``seconds``."""
    assert place.target is not None
    if place.backend == "sqlite":
        conn = sqlite3.connect(place.target.url.removeprefix("sqlite:///"))
        try:
            conn.execute("BEGIN IMMEDIATE")  # the database's write lock
            held.set()
            time.sleep(seconds)
            conn.rollback()
        finally:
            conn.close()
        return
    store = place.inspector()
    assert isinstance(store, SQLStore)
    with row_locked(store, place.target.url, job_id):
        held.set()
        time.sleep(seconds)


def test_the_event_loop_keeps_ticking_while_a_commit_waits_for_a_database_lock(
    sql_place: Place, record_property: Callable[[str, object], None]
) -> None:
    hold = 0.4

    async def main() -> tuple[list[float], float]:
        async with sql_place.async_tracker() as t:
            await t.create_job("j")
            held = threading.Event()
            holder = threading.Thread(target=hold_the_database, args=(sql_place, "j", held, hold))
            holder.start()
            await asyncio.to_thread(held.wait, 10)
            gaps: list[float] = []
            stop = asyncio.Event()
            ticker = ticking(gaps, stop)
            began = time.perf_counter()
            job = await t.fire("j", "discovery", "start")  # waits for the lock, not the loop
            waited = time.perf_counter() - began
            stop.set()
            await ticker
            await asyncio.to_thread(holder.join)
            assert job.version == 2
        return gaps, waited

    gaps, waited = run(main)
    worst = max(gaps)
    record_property("max_gap_ms", round(worst * 1000, 1))
    print(
        f"\n{sql_place.backend}: the commit waited {waited * 1000:.0f} ms for a lock held "
        f"elsewhere; the 5 ms ticker woke {len(gaps)} times, longest gap {worst * 1000:.1f} ms"
    )
    assert waited > hold / 2  # it really waited on the database
    assert worst < hold / 2  # and the loop went on meanwhile


def test_eight_tasks_on_the_four_phases_of_one_job_lose_nothing(place: Place) -> None:
    """Per phase two tasks: one starts it, reports progress 1..20 and completes it; the other
    pauses and resumes it five times meanwhile."""
    reports, toggles = 20, 5

    async def main() -> tuple[list[Any], JobState, list[Any]]:
        async with place.async_tracker() as t:
            await t.create_job("j")
            started = {p: asyncio.Event() for p in PHASES}
            toggled = {p: asyncio.Event() for p in PHASES}

            async def progress(phase: str) -> None:
                await t.fire("j", phase, "start")
                started[phase].set()
                for done in range(1, reports + 1):
                    await t.report_progress("j", phase, done, items_total=reports)
                await toggled[phase].wait()
                await t.fire("j", phase, "complete")

            async def toggle(phase: str) -> None:
                await started[phase].wait()
                for _ in range(toggles):
                    await t.fire("j", phase, "pause")
                    await t.fire("j", phase, "resume")
                toggled[phase].set()

            tasks = [progress(p) for p in PHASES] + [toggle(p) for p in PHASES]
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            return outcomes, await t.get_job("j"), await t.history("j")

    outcomes, job, history = run(main)
    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    assert [job.phases[p].items_processed for p in PHASES] == [reports] * 4
    assert {job.phases[p].status for p in PHASES} == {"completed"}
    assert job.get_overall_status() == "completed"
    per_phase = 1 + reports + 2 * toggles + 1
    assert job.version == 1 + 4 * per_phase
    assert len(history) == 1 + 4 * (2 + 2 * toggles)
    logged = place.logged()
    assert sum(e.type == "progress_updated" for e in logged) == 4 * reports
    assert sorted({e.version for e in logged}) == list(range(1, job.version + 1))


def test_a_sync_tracker_given_an_async_hook_logs_an_error_naming_the_plugin(
    place: Place, caplog: pytest.LogCaptureFixture
) -> None:
    recorder, sync_recorder = AsyncRecorder(), Recorder()
    tracker = place.tracker("sync", (recorder, sync_recorder))
    assert isinstance(tracker, Tracker)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tracker:
            tracker.create_job("j")
            job = tracker.fire("j", "discovery", "start")
            assert tracker.get_job("j").to_schema() == job.to_schema()
        gc.collect()
    assert job.phases["discovery"].status == "running"
    assert recorder.events == []  # never run
    assert sync_recorder.types == ["job_created", "phase_changed", "job_status_changed"]
    assert "plugin 'async-recorder' failed in hook phase_changed" in caplog.text
    assert (
        "plugin 'async-recorder' implements phase_changed as a coroutine, which a Tracker "
        "cannot await; use an AsyncTracker" in caplog.text
    )
    errors = [r for r in caplog.records if "async-recorder" in r.getMessage()]
    assert errors and {r.levelno for r in errors} == {logging.ERROR}
    never_awaited = [w for w in caught if "was never awaited" in str(w.message)]
    assert never_awaited == []  # each coroutine was closed, not left to warn


#: A phase set whose busy status has a heartbeat of 5 minutes and a timeout of an hour.
TIMED = spec_from_dict(
    {
        "phasekit": 1,
        "name": "timed",
        "statuses": {
            "idle": {"initial": True},
            "busy": {"active": True, "timeout": "1h", "heartbeat": "5m", "on_timeout": "give_up"},
            "done": {"terminal": True, "success": True},
            "gave_up": {"terminal": True},
        },
        "transitions": [
            {"trigger": "start", "source": "idle", "dest": "busy"},
            {"trigger": "finish", "source": "busy", "dest": "done"},
            {"trigger": "give_up", "source": "busy", "dest": "gave_up"},
        ],
        "phases": [{"name": "only"}],
        "aggregate": {"status": [{"all": ["done"], "then": "done"}, {"otherwise": "idle"}]},
    }
)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _timed_tracker(place: Place, clock: Callable[[], datetime], **kwargs: Any) -> AsyncTracker:
    if place.target is None:
        assert place.memory is not None
        return AsyncTracker(TIMED, place.memory, load_entrypoints=False, clock=clock, **kwargs)
    return AsyncTracker(
        TIMED,
        place.target.url,
        [sql_plugin],
        store_options=place.target.options,
        load_entrypoints=False,
        clock=clock,
        **kwargs,
    )


def test_heartbeat_and_sweep_on_the_tracker_clock(place: Place) -> None:
    now = [T0]

    async def main() -> list[Any]:
        async with _timed_tracker(place, lambda: now[0]) as t:
            await t.create_job("j")
            started = await t.fire("j", "only", "start")
            assert started.phases["only"].deadline == T0 + timedelta(minutes=5)
            now[0] = T0 + timedelta(minutes=4)
            alive = await t.heartbeat("j", "only")
            assert alive.phases["only"].deadline == T0 + timedelta(minutes=9)
            assert await t.sweep(now=T0 + timedelta(minutes=8)) == []
            now[0] = T0 + timedelta(minutes=10)
            return await t.sweep()

    (fired,) = run(main)
    assert (fired.job_id, fired.phase, fired.trigger) == ("j", "only", "give_up")
    assert fired.error == "heartbeat of 5m missed in status busy"
    assert fired.at == T0 + timedelta(minutes=10)
    stored = place.inspector().load("j")
    assert stored is not None and stored.phases[0].status == "gave_up"


def test_sweep_every_runs_a_task_that_close_cancels(place: Place) -> None:
    late = T0 + timedelta(hours=2)

    async def main() -> tuple[str, bool]:
        async with _timed_tracker(place, lambda: T0) as setup:
            await setup.create_job("j")
            await setup.fire("j", "only", "start")
        t = _timed_tracker(place, lambda: late, sweep_every=0.05)
        async with t:
            task = t._sweeping
            assert task is not None and not task.done()
            deadline = time.monotonic() + 10
            while (await t.get_job("j")).phases["only"].status != "gave_up":
                assert time.monotonic() < deadline, "the sweeping task never fired"
                await asyncio.sleep(0.02)
            error = (await t.get_job("j")).phases["only"].error or ""
        return error, task.done()

    error, stopped = run(main)
    assert error == "heartbeat of 5m missed in status busy"
    assert stopped
