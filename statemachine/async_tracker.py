"""The AsyncTracker: a Tracker for asyncio applications, on the same commit protocol.

An ``AsyncTracker`` runs a ``Tracker`` — the one implementation of the commit protocol,
by-id planning and retries, events and hooks — inside SQLAlchemy's ``greenlet_spawn``, the
way SQLAlchemy's ``AsyncSession`` runs a ``Session``. The SQL store underneath is opened on
the async drivers (aiosqlite for ``sqlite:///``, psycopg's async connection for
``postgresql://``), so every database round trip is awaited on the event loop and never
blocks it; the tables, statements and guarantees are those of the sync store, so a sync
worker and an async web application share one store.

Calls on one job are serialised by an ``asyncio.Lock`` per job (tasks of this tracker take
turns; other processes are handled by the compare-and-swap and re-planning, as for a
Tracker). Hook implementations may be coroutines: they are awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from .errors import InvalidArgument, InvalidArgumentType, PhaseKitError
from .hooks import PluginInfo, PluginManager
from .limits import parse_duration
from .relay import Relay, RelayOptions
from .runtime import JobState, PhaseSet, PhaseState, load_spec
from .store import (
    EventLog,
    HistoryEvent,
    JobDeleted,
    MemoryStore,
    PhaseChanged,
    RelayLedger,
    Store,
    open_store,
)
from .tracker import Tracker
from .tracker_config import build_notifiers, config_spec, read_config

__all__ = ["AsyncTracker"]

P = ParamSpec("P")
T = TypeVar("T")

_LOCK_STRIPES = 64

log = logging.getLogger("phasekit")


def _greenlet() -> tuple[Callable[..., Awaitable[Any]], Callable[[Awaitable[Any]], Any]]:
    """SQLAlchemy's ``greenlet_spawn`` and ``await_only``, or a clear error without greenlet."""
    if importlib.util.find_spec("greenlet") is None:
        raise PhaseKitError(
            "AsyncTracker needs greenlet (SQLAlchemy's asyncio layer), which is not installed: "
            "pip install 'phasekit[async]'"
        )
    from sqlalchemy.util import await_only, greenlet_spawn  # noqa: PLC0415

    return greenlet_spawn, await_only


class _Snapshot:
    """The committer of jobs an AsyncTracker returns: they are read-only snapshots."""

    __slots__ = ()

    def _refuse(self) -> None:
        raise PhaseKitError(
            "jobs an AsyncTracker returns are snapshots: change them with "
            "`await tracker.fire(job_id, phase, trigger)` or `await tracker.report_progress(...)`"
        )

    def commit_transition(
        self,
        job: JobState,
        phase: PhaseState,
        trigger: str,
        error: str | None,
        data: Mapping[str, Any],
    ) -> None:
        self._refuse()

    def commit_progress(
        self, job: JobState, phase: PhaseState, items_processed: int, items_total: int | None
    ) -> None:
        self._refuse()

    def refresh(self, job: JobState) -> None:
        self._refuse()


class AsyncTracker:
    """Jobs of one phase set, driven by id from asyncio code; ``async with`` closes it.

    Takes the Tracker's arguments. ``store`` is a URL (``memory://``, ``sqlite:///…``,
    ``postgresql://…``) or a ``Store`` of this process's memory; SQL stores are opened on
    their async drivers. Notifiers are delivered by a relay thread over a store of its own
    (the sync driver), at least once, as for a Tracker.
    """

    def __init__(
        self,
        spec: PhaseSet | str | os.PathLike[str],
        store: str | Store = "memory://",
        plugins: Iterable[object] = (),
        *,
        store_options: Mapping[str, Any] | None = None,
        progress_interval: float | None = None,
        conflict_retries: int = 8,
        load_entrypoints: bool = True,
        notifiers: Mapping[str, object] | None = None,
        relay: str | None = None,
        relay_options: Mapping[str, Any] | RelayOptions | None = None,
        clock: Callable[[], datetime] | None = None,
        sweep_every: float | str | timedelta | None = None,
    ) -> None:
        if clock is not None and not callable(clock):
            raise InvalidArgumentType(f"clock must be a callable, not {type(clock).__name__}")
        if progress_interval is not None:
            raise InvalidArgument(
                "AsyncTracker does not coalesce progress (progress_interval); report progress "
                "as often as it should be saved, or use a Tracker"
            )
        self._spawn, self._await = _greenlet()
        #: What every timestamp, progress interval and deadline reads the time from.
        self.clock: Callable[[], datetime] = clock or _utc_now
        phase_set = spec if isinstance(spec, PhaseSet) else load_spec(spec)
        plugins = list(plugins)
        manager = PluginManager(plugins, load_entrypoints=load_entrypoints)  # for the stores
        self._url = store if isinstance(store, str) else None
        self._store_options = dict(store_options or {})
        if isinstance(store, str):
            opened = _open_async(store, manager, self._store_options)
        else:
            if store_options:
                raise InvalidArgument("store_options apply to a store URL, not to a Store")
            opened = store
        # Building the tracker reads and writes the store (its phase set is kept there), so
        # it happens in the first awaited call; until then the arguments wait here.
        self._pending: tuple[Any, ...] | None = (
            phase_set,
            opened,
            plugins,
            conflict_retries,
            load_entrypoints,
            self.clock,
        )
        #: Seconds between the deadline sweeps of a task of this tracker (None: no task).
        self.sweep_every = (
            None
            if sweep_every is None
            else parse_duration(sweep_every, "sweep_every").total_seconds()
        )
        self._sweeping: asyncio.Task[None] | None = None
        self._manager = manager
        self._notifiers = dict(notifiers or {})
        self._relay_mode = relay
        self._relay_options = relay_options
        self._tracker: Tracker | None = None
        self.spec = phase_set
        self.store: Store = opened
        self.relay: Relay | None = None
        self._relay_store: Store | None = None
        self._locks = [asyncio.Lock() for _ in range(_LOCK_STRIPES)]
        self._closed = False

    @classmethod
    def from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any],
        *,
        plugins: Iterable[object] = (),
        load_entrypoints: bool = True,
    ) -> AsyncTracker:
        """An AsyncTracker from a config file or dict, as ``Tracker.from_config`` reads it."""
        config, base = read_config(source)
        tracker = cls(
            config_spec(config, base),
            config.store,
            plugins,
            store_options=config.store_options,
            progress_interval=config.progress_interval,
            load_entrypoints=load_entrypoints,
            relay=config.relay,
            relay_options=config.relay_options,
            sweep_every=config.sweep_every,
        )
        if config.notifiers:
            tracker._notifiers = build_notifiers(tracker._manager, config.notifiers)
        return tracker

    # -- running the Tracker in a greenlet ---------------------------------------------------

    async def _run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        result: T = await self._spawn(fn, *args, **kwargs)
        return result

    async def _ready(self) -> Tracker:
        if self._closed:
            raise PhaseKitError("this tracker is closed")
        if self._tracker is None:
            assert self._pending is not None
            phase_set, store, plugins, retries, load_entrypoints, clock = self._pending
            self._pending = None
            tracker = await self._run(
                _build, phase_set, store, plugins, retries, load_entrypoints, clock, self._await
            )
            self._tracker = tracker
            if self._notifiers:
                self._start_relay(tracker)
            if self.sweep_every is not None:
                self._sweeping = asyncio.create_task(
                    self._sweep_forever(self.sweep_every), name=f"phasekit-sweeper-{self.spec.name}"
                )
        return self._tracker

    async def _sweep_forever(self, every: float) -> None:
        """``sweep_every``: a sweep now, then every ``every`` seconds; a failed one is logged
        and the next runs on time (its claims expire, nothing is lost)."""
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("phasekit: the deadline sweep failed; the next runs in %gs", every)
            await asyncio.sleep(every)

    def _start_relay(self, tracker: Tracker) -> None:
        """Notifiers go through a relay thread, over a store on the sync driver."""
        mode = self._relay_mode or "thread"
        durable = isinstance(self.store, EventLog) and isinstance(self.store, RelayLedger)
        if not durable:
            tracker.use_notifiers(self._notifiers, mode, self._relay_options)
            return
        if mode != "thread":
            return
        if isinstance(self.store, MemoryStore) or self._url is None:
            relay_store: Store = self.store
        else:
            relay_store = open_store(self._url, self._manager.stores(), **self._store_options)
            self._relay_store = relay_store
        self.relay = Relay(relay_store, self._notifiers, options=self._relay_options)
        self.relay.start()

    def _lock_for(self, job_id: str) -> asyncio.Lock:
        return self._locks[hash(job_id) % _LOCK_STRIPES]

    def _snapshot(self, job: JobState) -> JobState:
        return self.spec.restore(job.to_record(), committer=_Snapshot())

    # -- jobs --------------------------------------------------------------------------------

    async def create_job(self, job_id: str, metadata: Mapping[str, Any] | None = None) -> JobState:
        """Create and store a job, every phase in the initial status; ``JobExists`` if taken."""
        tracker = await self._ready()
        async with self._lock_for(job_id):
            job = await self._run(tracker.create_job, job_id, metadata)
        return self._snapshot(job)

    async def get_job(self, job_id: str) -> JobState:
        """The job as the store has it now (a snapshot); ``JobNotFound`` if there is none."""
        tracker = await self._ready()
        return self._snapshot(await self._run(tracker.get_job, job_id))

    async def fire(
        self,
        job_id: str,
        phase: str,
        trigger: str,
        *,
        error: str | None = None,
        idempotency_key: str | None = None,
        **data: Any,
    ) -> JobState:
        """``Tracker.fire``: load, plan, commit, re-plan after a conflict; the committed job."""
        tracker = await self._ready()
        async with self._lock_for(job_id):
            job = await self._run(
                tracker.fire,
                job_id,
                phase,
                trigger,
                error=error,
                idempotency_key=idempotency_key,
                **data,
            )
        return self._snapshot(job)

    async def report_progress(
        self, job_id: str, phase: str, items_processed: int, items_total: int | None = None
    ) -> JobState:
        """``Tracker.report_progress``: the job as committed."""
        tracker = await self._ready()
        async with self._lock_for(job_id):
            job = await self._run(
                tracker.report_progress, job_id, phase, items_processed, items_total
            )
        return self._snapshot(job)

    async def heartbeat(self, job_id: str, phase: str) -> JobState:
        """``Tracker.heartbeat``: the phase is alive (its heartbeat deadline moves); the job as
        committed."""
        tracker = await self._ready()
        async with self._lock_for(job_id):
            job = await self._run(tracker.heartbeat, job_id, phase)
        return self._snapshot(job)

    async def sweep(self, now: datetime | None = None) -> list[PhaseChanged]:
        """``Tracker.sweep``: fire the ``on_timeout`` trigger of every phase past its deadline;
        the changes committed. Jobs of this tracker are not locked for it: a change made
        meanwhile wins by the version check, and the sweep passes that phase by."""
        tracker = await self._ready()
        return await self._run(tracker.sweep, now)

    async def delete_job(self, job_id: str) -> JobDeleted:
        """Delete the stored job ``job_id``, its phases and its history; its ``JobDeleted``."""
        tracker = await self._ready()
        async with self._lock_for(job_id):
            return await self._run(tracker.delete_job, job_id)

    async def history(self, job_id: str) -> list[HistoryEvent]:
        """The job's history: its creation, then every status change, in order."""
        tracker = await self._ready()
        return await self._run(tracker.history, job_id)

    async def list_jobs(
        self,
        *,
        status: str | None = None,
        phase_status: Mapping[str, str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobState]:
        """``Tracker.list_jobs``: jobs of this phase set, most recently updated first."""
        tracker = await self._ready()
        jobs = await self._run(
            tracker.list_jobs, status=status, phase_status=phase_status, limit=limit, offset=offset
        )
        return [self._snapshot(j) for j in jobs]

    async def plugin_info(self) -> list[PluginInfo]:
        tracker = await self._ready()
        return tracker.plugin_info()

    async def close(self) -> None:
        """Stop the relay (after its drain timeout), close plugins, then the store."""
        if self._closed:
            return
        self._closed = True
        sweeping, self._sweeping = self._sweeping, None
        if sweeping is not None:
            sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeping
        relay, self.relay = self.relay, None
        if relay is not None:
            await asyncio.to_thread(relay.close)
        if self._relay_store is not None:
            self._relay_store.close()
        if self._tracker is not None:
            await self._run(self._tracker.close)
        elif self._pending is not None:
            await self._run(self.store.close)

    async def __aenter__(self) -> AsyncTracker:
        await self._ready()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncTracker {self.spec.name!r} store={type(self.store).__name__}>"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _open_async(url: str, manager: PluginManager, options: dict[str, Any]) -> Store:
    """The store ``url`` names, on its async driver when it has one."""
    factories = manager.stores()
    scheme = url.partition("://")[0].split("+", 1)[0]
    if scheme == "memory":
        return open_store(url, factories, **options)
    try:
        return open_store(url, factories, asyncio=True, **options)
    except TypeError:
        raise PhaseKitError(
            f"the {scheme}:// store has no asyncio mode (its factory takes no asyncio=True); "
            "an AsyncTracker needs one, or a Store of this process's memory"
        ) from None


def _build(  # noqa: PLR0917 - the pending arguments, in order
    spec: PhaseSet,
    store: Store,
    plugins: list[object],
    conflict_retries: int,
    load_entrypoints: bool,
    clock: Callable[[], datetime] | None,
    await_only: Callable[[Awaitable[Any]], Any],
) -> Tracker:
    """The Tracker an AsyncTracker drives (run inside ``greenlet_spawn``)."""
    tracker = Tracker(
        spec,
        store,
        plugins,
        conflict_retries=conflict_retries,
        load_entrypoints=load_entrypoints,
        clock=clock,
    )
    tracker.plugins.awaiter = await_only
    tracker.wait = lambda seconds: await_only(asyncio.sleep(seconds))
    return tracker
