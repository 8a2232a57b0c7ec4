"""The Tracker: jobs of one phase set, committed to a store, announced to plugins."""

from __future__ import annotations

import atexit
import copy
import inspect
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from functools import partial
from types import TracebackType
from typing import Any

from .errors import (
    ConcurrentUpdateError,
    InvalidArgument,
    InvalidArgumentType,
    InvalidTransition,
    JobNotFound,
    PersistenceError,
    PhaseKitError,
    SpecMismatch,
    TransitionRejected,
    UnknownPhase,
    did_you_mean,
)
from .hooks import PluginInfo, PluginManager
from .limits import check_count, check_metadata, check_page, validate_job_id
from .progress_hold import HeldReport, ProgressHold
from .relay import Relay, RelayOptions
from .runtime import (
    Change,
    JobState,
    PhaseSet,
    PhaseState,
    adopt,
    aggregate_of,
    apply_committed,
    apply_unsaved,
    load_spec,
    mark_saved,
    plan_progress,
    plan_transition,
    record_after,
    run_actions,
    saved_deadline,
)
from .store import (
    DeadlineIndex,
    DuePhase,
    Event,
    EventLog,
    HistoryEvent,
    JobCreated,
    JobDeleted,
    JobRecord,
    JobStatusChanged,
    MemoryStore,
    PhaseChanged,
    ProgressUpdated,
    RelayLedger,
    SpecArchive,
    Store,
    TransitionRequest,
    open_store,
)
from .sweeper import SWEEP_BATCH, SWEEP_LEASE, Sweeper
from .tracker_config import (
    RELAY_MODES,
    build_notifiers,
    close_notifiers,
    config_spec,
    read_config,
)

__all__ = ["Tracker"]

log = logging.getLogger("phasekit")

_LOCK_STRIPES = 64
#: How long a job counts as contended after it lost a compare-and-swap (seconds): by-id calls
#: on it take the store's lock at once meanwhile.
CONTENDED_FOR = 2.0
_CONTENDED_KEPT = 4096


# Events are built from values phasekit has already checked, on every commit: they are
# constructed without a second validation (``EventBase.build``); their defaults still apply.


class Tracker:
    """Jobs of one phase set, every change committed to one store and then announced.

    Each change follows the commit protocol: check (source status, guards), ask
    ``before_transition``, save the new record and its history events in one
    compare-and-swap step, apply the change in memory, run ``after`` actions, notify.
    A Tracker is safe to share between threads.
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
        self.spec = spec if isinstance(spec, PhaseSet) else load_spec(spec)
        if clock is not None and not callable(clock):
            raise InvalidArgumentType(f"clock must be a callable, not {type(clock).__name__}")
        #: What "now" is for this tracker's timestamps and deadlines: a callable returning a
        #: timezone-aware UTC datetime (tests pass their own, to move time without sleeping).
        self.clock: Callable[[], datetime] = clock or _utc_now
        #: The thread sweeping deadlines, when ``sweep_every`` is given.
        self.sweeper: Sweeper | None = None
        self._dated = False  # whether a sweep gave old phases their deadlines
        #: The relay delivering ``notifiers`` from the store's event log, if it runs here.
        self.relay: Relay | None = None
        self._notifiers: dict[str, object] = {}
        self._notifiers_registered = False
        #: How often a by-id call reloads and plans again after another writer won.
        self.conflict_retries = check_count("conflict_retries", conflict_retries)
        self.plugins = PluginManager(
            plugins,
            load_entrypoints=load_entrypoints,
        )
        self._guards = self.plugins.guards()
        self._actions = self.plugins.actions()
        self._check_registries()
        if isinstance(store, str):
            store = open_store(store, self.plugins.stores(), **dict(store_options or {}))
        elif store_options:
            raise InvalidArgumentType("store_options apply to a store URL, not to a Store instance")
        self.store: Store = store
        if isinstance(store, SpecArchive):
            try:
                store.remember_spec(
                    self.spec.name,
                    self.spec.fingerprint,
                    self.spec.definition.model_dump(mode="json", exclude_defaults=True),
                )
            except PhaseKitError:
                raise
            except Exception as exc:
                raise PersistenceError(f"store could not record phase set: {exc}") from exc
        listing = inspect.signature(store.list).parameters
        self._store_filters_spec = "spec" in listing
        self._store_filters_phases = "phase_status" in listing
        self.progress_interval = progress_interval
        self._locks = [threading.RLock() for _ in range(_LOCK_STRIPES)]
        self._held = (
            ProgressHold(progress_interval, self._save_due_progress) if progress_interval else None
        )
        self._closed = False
        self._commits = _Commits(self)
        #: How a by-id call waits before it tries again (an AsyncTracker waits without
        #: blocking its event loop).
        self.wait: Callable[[float], None] = time.sleep
        self._conflicts: dict[str, float] = {}  # job id -> until when it counts as contended
        # Work waiting for the running locked commit (per thread, and per asyncio task).
        self._deferred: ContextVar[list[Callable[[], None]] | None] = ContextVar(
            f"phasekit_deferred_{id(self)}", default=None
        )
        if notifiers:
            self.use_notifiers(notifiers, relay, relay_options)
        if sweep_every is not None:
            self.sweeper = Sweeper(self.sweep, sweep_every, name=self.spec.name)
            self.sweeper.start()

    def use_notifiers(
        self,
        notifiers: Mapping[str, object],
        mode: str | None = None,
        options: Mapping[str, Any] | RelayOptions | None = None,
    ) -> None:
        """Deliver ``notifiers`` (by name) from the store's event log.

        ``mode`` is where: ``thread`` (the default) runs a relay in this process,
        ``external`` leaves it to ``phasekit relay`` processes, ``off`` to nobody. A store
        without an event log calls them in-process after each commit instead (at most once).
        """
        if self._notifiers:
            raise PhaseKitError("this tracker already has its notifiers")
        notifiers = dict(notifiers)
        if mode is not None and mode not in RELAY_MODES:
            raise InvalidArgument(f"relay must be one of {', '.join(RELAY_MODES)}, not {mode!r}")
        self._notifiers = notifiers
        durable = isinstance(self.store, EventLog) and isinstance(self.store, RelayLedger)
        if not durable:
            log.info(
                "phasekit: store %s keeps no event log; notifiers %s are called in-process "
                "after each commit (at most once)",
                type(self.store).__name__,
                ", ".join(notifiers),
            )
            for name, notifier in notifiers.items():
                self.plugins.register(notifier, name=f"notifier:{name}")
            self._notifiers_registered = True
            return
        if (mode or "thread") != "thread":
            return  # `phasekit relay` processes deliver them (external), or nobody (off)
        self.relay = Relay(self.store, notifiers, options=options)
        self.relay.start()
        # An interpreter that exits without close() still delivers what it committed (a
        # memory store's log ends with the process), within the relay's drain timeout.
        atexit.register(_close_at_exit, weakref.ref(self))

    @classmethod
    def from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any],
        *,
        plugins: Iterable[object] = (),
        load_entrypoints: bool = True,
    ) -> Tracker:
        """A tracker from a config file or dict: ``spec``, ``store``, ``notifiers``.

        A relative spec path in a file is read relative to that file's folder.
        """
        config, base = read_config(source)
        tracker = cls(
            config_spec(config, base),
            config.store,
            plugins,
            store_options=config.store_options,
            progress_interval=config.progress_interval,
            load_entrypoints=load_entrypoints,
        )
        try:
            if config.notifiers:
                built = build_notifiers(tracker.plugins, config.notifiers)
                tracker.use_notifiers(built, config.relay, config.relay_options)
            if config.sweep_every is not None:
                tracker.sweeper = Sweeper(tracker.sweep, config.sweep_every, name=tracker.spec.name)
                tracker.sweeper.start()
        except BaseException:
            tracker.close()
            raise
        return tracker

    def _check_registries(self) -> None:
        for kind, needed, registry in (
            ("guard", self.spec.guard_names, self._guards),
            ("action", self.spec.action_names, self._actions),
        ):
            missing = sorted(needed - set(registry))
            if missing:
                raise PhaseKitError(
                    f"phase set {self.spec.name!r} uses {kind}s {', '.join(map(repr, missing))} "
                    f"that no plugin registers (registered {kind}s: "
                    f"{', '.join(sorted(registry)) or 'none'})"
                )

    # -- jobs --------------------------------------------------------------------------------

    def create_job(self, job_id: str, metadata: Mapping[str, Any] | None = None) -> JobState:
        """Create and store a job, every phase in the initial status; ``JobExists`` if taken."""
        self._check_open()
        record = self.spec.initial_record(job_id, check_metadata(metadata), at=self._now())
        event = JobCreated.build(
            job_id=record.job_id,
            version=record.version,
            at=record.created_at,
            spec=self.spec.name,
            phases=list(self.spec.phase_names),
            initial_status=self.spec.initial_status,
            metadata=copy.deepcopy(record.metadata) if record.metadata else {},
        )
        with self._lock_for(record.job_id):
            try:
                self.store.create(record, [event])
            except PhaseKitError:  # JobExists, or a store's own PersistenceError
                raise
            except Exception as exc:
                raise PersistenceError(f"job {job_id!r}: store failed: {exc}") from exc
        # The phase set made this record: unlike a stored one, it needs no check against it.
        job = JobState.from_record(
            self.spec, record, guards=self._guards, actions=self._actions, committer=self._commits
        )
        self.plugins.job_created(event)
        return job

    def _attach(self, record: JobRecord) -> JobState:
        return self.spec.restore(
            record, guards=self._guards, actions=self._actions, committer=self._commits
        )

    def _restore(self, record: JobRecord) -> JobState:
        if record.spec_name != self.spec.name:
            raise SpecMismatch(
                f"job {record.job_id!r} belongs to phase set {record.spec_name!r}, "
                f"not {self.spec.name!r}"
            )
        return self._attach(record)

    def get_job(self, job_id: str) -> JobState:
        """The job as the store has it now; ``JobNotFound`` if there is none. No hook fires."""
        record = self._load(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return self._restore(record)

    def _load(self, job_id: str) -> JobRecord | None:
        if not _could_exist(job_id):
            return None
        try:
            return self.store.load(job_id)
        except PhaseKitError:
            raise
        except Exception as exc:
            raise PersistenceError(f"job {job_id!r}: store failed to load: {exc}") from exc

    def list_jobs(
        self,
        *,
        status: str | None = None,
        phase_status: Mapping[str, str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobState]:
        """Jobs of this phase set, most recently updated first.

        ``status`` keeps jobs in that overall status; ``phase_status`` (e.g.
        ``{"extraction": "not_started"}``) those whose every named phase is in the status it
        names: how a worker finds work. The bundled stores answer both from an index.
        """
        limit, offset = check_page(limit, offset)
        wanted = self._check_phase_status(phase_status)
        if self._store_filters_spec and (not wanted or self._store_filters_phases):
            filters: dict[str, Any] = {"phase_status": wanted} if wanted else {}
            records = self.store.list(  # type: ignore[call-arg]
                status=status, spec=self.spec.name, limit=limit, offset=offset, **filters
            )
            return [self._restore(r) for r in records]
        # A store without the optional filters: page through, keeping the jobs that match.
        jobs: list[JobState] = []
        skipped, start = 0, 0
        while len(jobs) < limit:
            page = self.store.list(status=status, limit=limit, offset=start)
            for record in page:
                if record.spec_name != self.spec.name or not _phases_match(record, wanted):
                    continue
                if skipped < offset:
                    skipped += 1
                elif len(jobs) < limit:
                    jobs.append(self._restore(record))
            if len(page) < limit:
                break
            start += limit
        return jobs

    def _check_phase_status(self, phase_status: Mapping[str, str] | None) -> dict[str, str]:
        if phase_status is None:
            return {}
        if not isinstance(phase_status, Mapping):
            kind = type(phase_status).__name__
            raise InvalidArgumentType(f"phase_status must map phases to statuses, not a {kind}")
        wanted = dict(phase_status)
        for phase, status in wanted.items():
            if phase not in self.spec.phase_names:
                raise UnknownPhase(phase, job_id=None, known=self.spec.phase_names)
            statuses = list(self.spec.statuses)
            if status not in statuses:
                raise InvalidArgument(
                    f"phase set {self.spec.name!r} has no status {status!r}"
                    f"{did_you_mean(str(status), statuses)}; statuses: {', '.join(statuses)}"
                )
        return wanted

    # -- working by id ----------------------------------------------------------------------

    def fire(
        self,
        job_id: str,
        phase: str,
        trigger: str,
        *,
        error: str | None = None,
        idempotency_key: str | None = None,
        **data: Any,
    ) -> JobState:
        """Fire ``trigger`` on ``phase`` of the stored job ``job_id``; the committed job.

        The job is loaded, the change planned and committed; when another writer committed
        first, the job is reloaded and the change planned again (guards asked again), up to
        ``conflict_retries`` times. If the reloaded phase no longer allows the trigger, the
        caller gets ``InvalidTransition``: the other writer's change stands.

        With an ``idempotency_key`` (a string of at most 200 characters), the change is
        committed with the key; a later call with the same key on this job commits nothing
        and returns the job as it is now, so a retried request or redelivered task is safe.
        """
        if idempotency_key is None:
            return self._by_id(
                job_id, lambda job: job.phases[phase].trigger(trigger, error, **data)
            )
        key = _check_idempotency_key(idempotency_key)
        seen = getattr(self.store, "seen_idempotency_key", None)
        if not callable(seen):
            raise PhaseKitError(
                f"store {type(self.store).__name__} keeps no idempotency keys "
                "(it has no seen_idempotency_key method)"
            )

        def change(job: JobState) -> None:
            if seen(job_id, key):
                return  # committed before: the job as it is now is the answer
            self._commit_transition(job, job.phases[phase], trigger, error, data, key)

        return self._by_id(job_id, change)

    def report_progress(
        self, job_id: str, phase: str, items_processed: int, items_total: int | None = None
    ) -> JobState:
        """Report progress on ``phase`` of the stored job ``job_id``; the job as committed."""
        return self._by_id(
            job_id, lambda job: job.phases[phase].update_progress(items_processed, items_total)
        )

    def heartbeat(self, job_id: str, phase: str) -> JobState:
        """Report that work on ``phase`` of the stored job ``job_id`` is alive, without counts.

        Progress reports are heartbeats too; this is for work that cannot count items. It
        moves the phase's ``heartbeat`` deadline; the job as committed.
        """
        return self._by_id(job_id, lambda job: job.phases[phase].heartbeat())

    # -- deadlines -------------------------------------------------------------------------

    def sweep(self, now: datetime | None = None) -> list[PhaseChanged]:
        """Fire the ``on_timeout`` trigger of every phase past its deadline; the changes made.

        Due phases come from the store's deadline index (its cost grows with the phases due,
        not with the jobs kept), claimed so that sweeps running at once in other processes
        split them. Each fires through the commit protocol, with an ``error`` naming the
        deadline (``"heartbeat of 5m missed in status running"``): a phase another writer
        changed first, or whose deadline moved, is passed by; one a guard or a plugin
        refuses is logged and tried again once its claim expires (a minute).

        The first sweep of a tracker also gives a deadline to phases kept without one (jobs
        stored before their status had a deadline, or under an earlier version of the phase
        set), computed from their timestamps.
        """
        self._check_open()
        if not self.spec.deadlines:
            return []
        index = self.store
        if not isinstance(index, DeadlineIndex):
            raise PhaseKitError(
                f"store {type(index).__name__} keeps no deadline index (claim_due, release_due, "
                "undated_phases, set_deadline): phasekit cannot sweep its jobs"
            )
        at = self._now() if now is None else _check_now(now)
        if self._held is not None:
            # Held reports are heartbeats too: stored first, they move their deadlines.
            self._save_held(self._held.take(), raise_errors=False)
        if not self._dated:
            self._date_phases(index)
            self._dated = True
        fired: list[PhaseChanged] = []
        while True:
            batch = index.claim_due(at, spec=self.spec.name, limit=SWEEP_BATCH, lease=SWEEP_LEASE)
            for due in batch:
                event = self._time_out(index, due, at)
                if event is not None:
                    fired.append(event)
            if len(batch) < SWEEP_BATCH:
                return fired

    def _time_out(self, index: DeadlineIndex, due: DuePhase, now: datetime) -> PhaseChanged | None:
        """Fire ``on_timeout`` on one claimed phase if it is still past its deadline."""
        committed: list[PhaseChanged] = []
        passed_by: list[datetime | None] = []
        deadlines = self.spec.deadlines

        def change(job: JobState) -> None:
            committed.clear()
            passed_by.clear()
            phase = job.phases[due.phase_name]
            overdue = deadlines.overdue(phase.to_record(), job.created_at, now)
            if overdue is None or phase.status != due.status:
                # Changed since, or its deadline moved: the deadline it has now stands.
                passed_by.append(deadlines.of_record(phase.to_record(), job.created_at))
                return
            committed.append(
                self._commit_transition(job, phase, overdue.trigger, overdue.error, {})
            )

        try:
            self._by_id(due.job_id, change)
        except (JobNotFound, UnknownPhase, SpecMismatch):
            return None  # deleted since, or not a phase of this phase set any more
        except (InvalidTransition, TransitionRejected) as exc:
            log.warning(
                "phasekit: the deadline of phase %r of job %r passed, but %s; trying again in %gs",
                due.phase_name,
                due.job_id,
                exc,
                SWEEP_LEASE,
            )
            return None
        if passed_by:
            index.release_due(due, passed_by[0])
        return committed[0] if committed else None

    def _date_phases(self, index: DeadlineIndex) -> None:
        """Store the deadline of phases kept without one, or under another phase-set version."""
        deadlines = self.spec.deadlines
        after: tuple[str, str] | None = None
        dated = 0
        while True:
            page = index.undated_phases(
                spec=self.spec.name,
                fingerprint=self.spec.fingerprint,
                statuses=list(deadlines.rules),
                after=after,
                limit=1000,
            )
            for job_id, created_at, phase in page:
                deadline = deadlines.of_record(phase, created_at)
                if deadline != phase.deadline:
                    index.set_deadline(job_id, phase.phase_name, phase.status, deadline)
                    dated += 1
            if len(page) < 1000:
                break
            after = (page[-1][0], page[-1][2].phase_name)
        if dated:
            log.info("phasekit: %d phase(s) of %r got their deadline", dated, self.spec.name)

    def _now(self) -> datetime:
        return _check_now(self.clock())

    def _by_id(self, job_id: str, change: Callable[[JobState], None]) -> JobState:
        """Load, plan and commit; after a lost compare-and-swap, again with the job locked.

        Writers in this process take turns on the job's lock and never conflict. The first
        attempt is optimistic; when another process committed first, the job is reloaded and
        the change planned again inside the store's ``locked(job_id)`` (when it has one),
        where no other writer can get in between: a retry cannot lose again.
        """
        locked: Callable[[str], AbstractContextManager[None]] | None = getattr(
            self.store, "locked", None
        )
        for attempt in range(self.conflict_retries + 1):
            # A job that lost a compare-and-swap a moment ago is contended: its next calls
            # go locked at once instead of losing an optimistic attempt first.
            exclusive = locked is not None and (attempt > 0 or self._contended(job_id))
            pending: list[Callable[[], None]] = []
            try:
                with self._lock_for(job_id):
                    if exclusive:
                        # What follows a commit (actions, hooks) waits until the locked
                        # transaction committed.
                        token = self._deferred.set(pending)
                        try:
                            assert locked is not None
                            with locked(job_id):
                                job = self.get_job(job_id)
                                change(job)
                        finally:
                            self._deferred.reset(token)
                    else:
                        job = self.get_job(job_id)
                        change(job)
            except ConcurrentUpdateError:
                self._note_contended(job_id)
                if attempt == self.conflict_retries:
                    raise
                self.wait(random.uniform(0, min(0.05, 0.001 * 2**attempt)))  # jittered
                continue
            for after in pending:
                after()
            return job
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _contended(self, job_id: str) -> bool:
        until = self._conflicts.get(job_id)
        return until is not None and until > time.monotonic()

    def _note_contended(self, job_id: str) -> None:
        conflicts = self._conflicts
        conflicts.pop(job_id, None)
        conflicts[job_id] = time.monotonic() + CONTENDED_FOR
        if len(conflicts) > _CONTENDED_KEPT:
            conflicts.pop(next(iter(conflicts)), None)

    def _after_commit(self, work: Callable[[], None]) -> None:
        """Run ``work`` (a commit's actions and hooks) now, or once the locked block commits."""
        pending = self._deferred.get()
        if pending is None:
            work()
        else:
            pending.append(work)

    def delete_job(self, job_id: str) -> JobDeleted:
        """Delete the stored job ``job_id``: its row, its phases and its history.

        The ``JobDeleted`` event is logged (and announced) like any other change; progress
        this tracker still holds for the job is dropped. ``JobNotFound`` if there is none.
        """
        self._check_open()
        delete = getattr(self.store, "delete", None)
        if not callable(delete):
            raise PhaseKitError(f"store {type(self.store).__name__} cannot delete jobs")
        for attempt in range(self.conflict_retries + 1):
            with self._lock_for(job_id):
                record = self._load(job_id)
                if record is None:
                    raise JobNotFound(job_id)
                self._restore(record)  # a job of another phase set is not this tracker's
                event = JobDeleted.build(job_id=job_id, version=record.version + 1, at=self._now())
                try:
                    delete(job_id, expected_version=record.version, events=[event])
                except ConcurrentUpdateError:
                    if attempt == self.conflict_retries:
                        raise
                    continue
                except PhaseKitError:
                    raise
                except Exception as exc:
                    raise PersistenceError(
                        f"job {job_id!r}: store failed to delete: {exc}"
                    ) from exc
                if self._held is not None:
                    self._held.drop(job_id)
            self._announce([event])
            return event
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _refresh(self, job: JobState) -> None:
        adopt(job, self.get_job(job.job_id))

    def history(self, job_id: str) -> list[HistoryEvent]:
        """The job's history: its creation, then every status change, in order."""
        if not _could_exist(job_id):
            return []
        return self.store.history(job_id)

    def plugin_info(self) -> list[PluginInfo]:
        """Every plugin registered or tried, with version, distribution, hooks and load error."""
        return self.plugins.plugin_info()

    # -- the commit protocol (tracked jobs call it through ``_Commits``) ---------------------

    def _lock_for(self, job_id: str) -> threading.RLock:
        return self._locks[hash(job_id) % _LOCK_STRIPES]

    def _save(
        self,
        job: JobState,
        record: JobRecord,
        events: list[Event],
        idempotency_key: str | None = None,
    ) -> None:
        try:
            if idempotency_key is None:
                self.store.save(record, expected_version=job.version, events=events)
            else:
                self.store.save(  # type: ignore[call-arg]
                    record,
                    expected_version=job.version,
                    events=events,
                    idempotency_key=idempotency_key,
                )
        except PhaseKitError:  # ConcurrentUpdateError, JobNotFound, a store's PersistenceError
            raise
        except Exception as exc:
            raise PersistenceError(
                f"job {job.job_id!r}: store failed, nothing was changed: {exc}"
            ) from exc

    def _commit_transition(  # noqa: PLR0917 - the Committer's arguments, and the key
        self,
        job: JobState,
        phase: PhaseState,
        trigger: str,
        error: str | None,
        data: Mapping[str, Any],
        idempotency_key: str | None = None,
    ) -> PhaseChanged:
        """Commit ``trigger`` on ``phase`` (what ``phase.<trigger>()`` calls); its event."""
        self._check_open()
        with self._lock_for(job.job_id):
            change = plan_transition(job, phase, trigger, error, data, at=self._now())
            source, dest = change.source, change.after.status
            if self.plugins.wants("before_transition"):
                request = TransitionRequest(
                    job_id=job.job_id,
                    phase=phase.phase_name,
                    trigger=trigger,
                    source=source,
                    dest=dest,
                    error=error,
                    data=dict(data),
                )
                vetoes = self.plugins.before_transition(request)
                if vetoes:
                    raise TransitionRejected(
                        job_id=job.job_id,
                        phase=phase.phase_name,
                        trigger=trigger,
                        reason="; ".join(v.reason for _, v in vetoes),
                        rejected_by=", ".join(f"plugin {name!r}" for name, _ in vetoes),
                    )
            record = record_after(job, change)
            changed = PhaseChanged.build(
                job_id=job.job_id,
                version=record.version,
                at=change.at,
                phase=phase.phase_name,
                trigger=trigger,
                source=source,
                dest=dest,
                error=error,
            )
            aggregate = _aggregate_event(job, record, change)
            events: list[Event] = [changed] if aggregate is None else [changed, aggregate]
            self._save(job, record, events, idempotency_key)
            apply_committed(job, change, record)
            if self._held is not None:
                self._held.included(job)

        def after() -> None:
            failure: BaseException | None = None
            try:
                run_actions(job, change)
            except Exception as exc:  # the change is committed; report after notifying
                failure = exc
            self._announce(events)
            if failure is not None:
                raise failure

        self._after_commit(after)
        return changed

    def _commit_progress(
        self, job: JobState, phase: PhaseState, items_processed: int, items_total: int | None
    ) -> None:
        """Commit a progress report (what ``phase.update_progress()`` calls)."""
        self._check_open()
        held = self._held
        with self._lock_for(job.job_id):
            change = plan_progress(job, phase, items_processed, items_total, at=self._now())
            # A report that changes no count is a heartbeat: it is saved at once, since
            # what it moves is the phase's deadline, which waits for nobody. So is a report
            # the stored deadline would pass before the hold saves it (an interval at most):
            # a sweep elsewhere would time out a phase whose worker is alive.
            stored = saved_deadline(job, change.index)
            if (
                held is not None
                and (change.after.items_processed, change.after.items_total)
                != (phase.items_processed, phase.items_total)
                and (stored is None or stored > change.at + timedelta(seconds=held.interval))
            ):
                after = change.after
                report = HeldReport(
                    job, change.index, after.items_processed, after.items_total, change.at
                )
                if held.hold_or_save(report):
                    apply_unsaved(job, change)
                    return
            record = record_after(job, change)
            events = _progress_events(job, record, change)
            self._save(job, record, events)
            apply_committed(job, change, record)
            if held is not None:
                held.included(job)
        self._after_commit(lambda: self._announce(events))

    def _announce(self, events: Iterable[Event]) -> None:
        """Call the notification hooks of plugins in this process, event by event."""
        plugins = self.plugins
        for event in events:
            if plugins.wants(event.type):
                getattr(plugins, event.type)(event)

    def flush(self) -> None:
        """Save the progress reports coalescing holds, and announce them.

        Each held report is merged into the job as the store has it now, so a report made on
        a copy that another writer changed since is saved too. A job whose save fails keeps
        its reports held (the next flush, or the background saver, tries again) and does not
        stop the others; ``PersistenceError`` then names every job that failed.
        """
        if self._held is not None:
            self._save_held(self._held.take(), raise_errors=True)

    def _save_due_progress(self) -> None:
        """Save the held reports whose interval has passed (the background saver calls it)."""
        assert self._held is not None
        try:
            self._save_held(self._held.take(due_only=True), raise_errors=False)
        except Exception:  # the saver thread must live on: the reports stay held
            log.exception("phasekit could not save held progress")

    def _save_held(self, taken: dict[str, dict[int, HeldReport]], *, raise_errors: bool) -> None:
        assert self._held is not None
        failures: list[str] = []
        for job_id, reports in taken.items():
            try:
                self._save_held_job(job_id, reports)
            except PhaseKitError as exc:
                self._held.put_back(job_id, reports)
                failures.append(f"job {job_id!r}: {exc}")
        if failures:
            message = (
                f"progress of {len(failures)} job(s) could not be saved and is held for the "
                f"next try: {'; '.join(failures)}"
            )
            if raise_errors:
                raise PersistenceError(message)
            log.error("phasekit: %s", message)

    def _save_held_job(self, job_id: str, reports: dict[int, HeldReport]) -> None:
        """Merge ``reports`` into the stored job and save it, retrying when another writer won."""
        for _ in range(self.conflict_retries + 1):
            with self._lock_for(job_id):
                stored = self._load(job_id)
                if stored is None:
                    log.warning(
                        "phasekit: %d held progress report(s) of job %r dropped: the job is gone",
                        len(reports),
                        job_id,
                    )
                    return
                job = self._attach(stored)
                changes = [c for c in map(partial(_merge, job), sorted(reports.items())) if c]
                if not changes:
                    return
                record = job.to_record().replace(version=stored.version + 1)
                events = _merged_progress_events(stored, record, changes)
                try:
                    self._save(job, record, events)
                except ConcurrentUpdateError:
                    continue
                mark_saved(job, record)
                for report in reports.values():
                    if report.job.version == stored.version:  # no one wrote since its copy
                        mark_saved(report.job, record)
            self._announce(events)
            return
        raise PersistenceError(
            f"job {job_id!r} changed {self.conflict_retries + 1} times while its held progress "
            "was saved"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise PhaseKitError("this tracker is closed")

    def close(self) -> None:
        """Flush pending progress, close plugins that have ``close()``, then the store."""
        if self._closed:
            return
        sweeper, self.sweeper = self.sweeper, None
        if sweeper is not None:
            sweeper.stop()
        if self._held is not None:
            self._held.stop()
        lost: PersistenceError | None = None
        try:
            self.flush()
        except PersistenceError as exc:  # reported once everything else is closed
            lost = exc
        finally:
            self._closed = True
            self._stop_relay()
            for info in self.plugins.plugin_info():
                plugin = self.plugins.get_plugin(info.name)
                closer = getattr(plugin, "close", None)
                # Entry-point plugins are modules or classes shared by every tracker: only
                # plugin objects given to (or built for) this tracker are closed with it.
                if callable(closer) and info.source == "explicit" and not isinstance(plugin, type):
                    try:
                        closer()
                    except Exception:
                        log.exception("phasekit plugin %r failed to close", info.name)
            self.store.close()
        if lost is not None:
            raise PersistenceError(f"tracker closed, but {lost}") from None

    def _stop_relay(self) -> None:
        """Stop the relay after its drain timeout, then close the notifiers."""
        relay, self.relay = self.relay, None
        if relay is not None:
            try:
                left = relay.stop()
            except Exception:
                log.exception("phasekit: stopping the relay")
                left = 0
            if left and isinstance(self.store, MemoryStore):
                log.warning(
                    "phasekit: %d committed event(s) were not delivered to every notifier "
                    "before the tracker closed; a memory store's log goes with the process",
                    left,
                )
            elif left:
                log.info(
                    "phasekit: %d committed event(s) wait in the event log for the next relay",
                    left,
                )
        if not self._notifiers_registered:  # registered ones are closed as plugins
            close_notifiers(self._notifiers)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        try:  # the block's own exception is the one to see: a failed save is logged
            self.close()
        except PersistenceError:
            log.exception("phasekit: closing the tracker after an error")

    def __repr__(self) -> str:
        return f"<Tracker {self.spec.name!r} store={type(self.store).__name__}>"


#: The longest idempotency key a change is committed with.
MAX_IDEMPOTENCY_KEY = 200


def _check_idempotency_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidArgumentType(f"idempotency_key must be a string, not {type(key).__name__}")
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidArgument(
            f"idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} characters, not {len(key)}"
        )
    if "\x00" in key:
        raise InvalidArgument("idempotency_key must not contain NUL characters")
    return key


def _phases_match(record: JobRecord, wanted: Mapping[str, str]) -> bool:
    if not wanted:
        return True
    statuses = {p.phase_name: p.status for p in record.phases}
    return all(statuses.get(name) == status for name, status in wanted.items())


def _close_at_exit(ref: weakref.ReferenceType[Tracker]) -> None:
    tracker = ref()
    if tracker is not None and not tracker._closed:
        try:
            tracker.close()
        except Exception:
            log.exception("phasekit: closing a tracker at exit")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _check_now(now: object) -> datetime:
    """``now`` if it is a timezone-aware datetime (what a clock must return)."""
    if not isinstance(now, datetime):
        raise InvalidArgumentType(f"the clock must give a datetime, not {type(now).__name__}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidArgument(f"the clock gave {now.isoformat()}, which has no time zone; use UTC")
    return now


def _could_exist(job_id: str) -> bool:
    """Whether a job can have ``job_id``: one ``create_job`` refuses (e.g. with a NUL) cannot.

    Such an id is not sent to the store, so every store answers it alike (not found).
    """
    try:
        validate_job_id(job_id)
    except ValueError:
        return False
    return True


def _aggregate_event(job: JobState, record: JobRecord, change: Change) -> JobStatusChanged | None:
    """The ``JobStatusChanged`` of a commit that moves the job from ``job`` to ``record``."""
    old_status, old_current = aggregate_of(job)
    if (record.status, record.current_phase) == (old_status, old_current):
        return None
    return JobStatusChanged.build(
        job_id=job.job_id,
        version=record.version,
        at=change.at,
        old_status=old_status,
        new_status=record.status,
        old_current_phase=old_current,
        new_current_phase=record.current_phase,
        progress=record.progress,
    )


def _progress_event(job_id: str, record: JobRecord, change: Change) -> ProgressUpdated:
    after = change.after
    return ProgressUpdated.build(
        job_id=job_id,
        version=record.version,
        at=change.at,
        phase=after.phase_name,
        items_processed=after.items_processed,
        items_total=after.items_total,
        progress=after.progress,
        job_progress=record.progress,
    )


def _progress_events(job: JobState, record: JobRecord, change: Change) -> list[Event]:
    """The events of one committed progress report: its ``ProgressUpdated``, and the
    ``JobStatusChanged`` when the aggregate moved (a rule may read the counters)."""
    aggregate = _aggregate_event(job, record, change)
    progress = _progress_event(job.job_id, record, change)
    return [progress] if aggregate is None else [progress, aggregate]


def _merged_progress_events(
    stored: JobRecord, record: JobRecord, changes: list[Change]
) -> list[Event]:
    """The events of held reports merged into ``stored`` and saved as ``record``."""
    events: list[Event] = [_progress_event(record.job_id, record, c) for c in changes]
    if (record.status, record.current_phase) != (stored.status, stored.current_phase):
        events.append(
            JobStatusChanged.build(
                job_id=record.job_id,
                version=record.version,
                at=changes[-1].at,
                old_status=stored.status,
                new_status=record.status,
                old_current_phase=stored.current_phase,
                new_current_phase=record.current_phase,
                progress=record.progress,
            )
        )
    return events


def _merge(job: JobState, item: tuple[int, HeldReport]) -> Change | None:
    """Apply one held report to ``job`` (as stored now) in memory; None when nothing changes."""
    index, report = item
    phase = job.spec.phase_class(job, index)
    counts = (report.items_processed, report.items_total)
    if counts == (phase.items_processed, phase.items_total):
        return None
    try:
        change = plan_progress(job, phase, *counts, at=report.at)
    except (InvalidTransition, ValueError) as exc:  # finished, or a smaller total, since
        log.warning(
            "phasekit: held progress report on phase %r of job %r dropped: %s",
            phase.phase_name,
            job.job_id,
            exc,
        )
        return None
    apply_unsaved(job, change)
    return change


class _Commits:
    """The ``Committer`` a Tracker hands its jobs: ``phase.start()`` ends up here."""

    __slots__ = ("_tracker",)

    def __init__(self, tracker: Tracker) -> None:
        self._tracker = tracker

    def commit_transition(
        self,
        job: JobState,
        phase: PhaseState,
        trigger: str,
        error: str | None,
        data: Mapping[str, Any],
    ) -> None:
        self._tracker._commit_transition(job, phase, trigger, error, data)

    def commit_progress(
        self, job: JobState, phase: PhaseState, items_processed: int, items_total: int | None
    ) -> None:
        self._tracker._commit_progress(job, phase, items_processed, items_total)

    def refresh(self, job: JobState) -> None:
        self._tracker._refresh(job)
