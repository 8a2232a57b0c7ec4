"""Jobs and their phases, and the planned changes a commit saves and then applies.

``JobState`` holds the immutable record of each phase; ``PhaseState`` is a view of one of them.
A change is planned without touching the job (``plan_transition``, ``plan_progress``), saved by
whoever commits (a ``Committer``: the Tracker), and only then applied. The functions at the end
of this module are the steps a committer takes; they are the only code that changes a job.
These classes share their internals, so they live in one module.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import (
    InvalidArgument,
    InvalidTransition,
    PhaseKitError,
    TransitionRejected,
    UnknownPhase,
    did_you_mean,
)
from ..limits import check_count, check_error
from ..store import JobRecord, PhaseRecord, build_job_record, build_phase_record
from .aggregate import StatusExplanation
from .schemas import JobStateSchema, PhaseStateSchema, job_schema, phase_schema

if TYPE_CHECKING:
    from .phaseset import PhaseSet

__all__ = [
    "Action",
    "Change",
    "Committer",
    "Guard",
    "JobState",
    "PhaseMap",
    "PhaseState",
    "PhaseStatus",
    "TransitionContext",
    "adopt",
    "aggregate_of",
    "apply_committed",
    "apply_unsaved",
    "mark_saved",
    "phase_class",
    "plan_progress",
    "plan_transition",
    "record_after",
    "run_actions",
    "unknown_trigger",
]


@dataclass(frozen=True, slots=True)
class TransitionContext:
    """A transition being decided (for a guard) or just committed (for an action).

    For a guard, ``phase`` and ``job`` are still unchanged; for an action they already show
    ``dest``. ``data`` holds the keyword arguments the trigger was fired with.
    """

    job: JobState
    phase: PhaseState
    trigger: str
    source: str
    dest: str
    error: str | None
    data: Mapping[str, Any]


#: A guard says whether a transition may happen; it must not change anything.
Guard = Callable[[TransitionContext], bool]
#: An action runs after a transition was committed and applied.
Action = Callable[[TransitionContext], None]


# -- phases --------------------------------------------------------------------------------


class PhaseStatus(StrEnum):
    """The statuses of the bundled ``ingestion`` phase set (the default)."""

    NOT_STARTED = "not_started"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


class PhaseState:
    """The state of one phase: status, progress, counters, timestamps and error.

    Each phase set makes a subclass with one method per declared trigger (``phase.start()``),
    so the methods are real attributes that ``dir()`` and editors see. Every change goes
    through the job, which checks it against the phase set and commits it where configured.

    A phase is a view of its job: the job holds the immutable ``PhaseRecord`` of each phase
    (shared with the record its store keeps), and a change replaces the record. The fields
    are read-only, always current, and two views of the same phase of the same job are equal.
    """

    __slots__ = ("_index", "_job")

    def __init__(self, job: JobState, index: int) -> None:
        self._job = job
        self._index = index

    @property
    def phase_name(self) -> str:
        """The phase's name in its phase set."""
        return self._job._phases[self._index].phase_name

    @property
    def status(self) -> str:
        """The current status (a ``PhaseStatus`` value for the default phase set)."""
        return self._job._phases[self._index].status

    @property
    def progress(self) -> float:
        """0.0 to 100.0; capped below 100 until a success status."""
        return self._job._phases[self._index].progress

    @property
    def items_processed(self) -> int:
        """Items processed, as last reported."""
        return self._job._phases[self._index].items_processed

    @property
    def items_total(self) -> int | None:
        """Items to process in all, when known."""
        return self._job._phases[self._index].items_total

    @property
    def started_at(self) -> datetime | None:
        """When the phase first entered an ``active`` status."""
        return self._job._phases[self._index].started_at

    @property
    def completed_at(self) -> datetime | None:
        """When the phase entered a ``terminal`` status."""
        return self._job._phases[self._index].completed_at

    @property
    def updated_at(self) -> datetime | None:
        """When the phase last changed; None until its first change."""
        return self._job._phases[self._index].updated_at

    @property
    def error(self) -> str | None:
        """The error the last trigger carried; cleared on entering a non-terminal status."""
        return self._job._phases[self._index].error

    @property
    def entered_at(self) -> datetime | None:
        """When the phase entered its current status; None until its first transition."""
        return self._job._phases[self._index].entered_at

    @property
    def deadline(self) -> datetime | None:
        """When the phase's status stops waiting (its ``timeout`` or ``heartbeat``), or None.

        Past it, a sweep fires the status's ``on_timeout`` trigger.
        """
        return self._job._phases[self._index].deadline

    @property
    def job(self) -> JobState:
        """The job this phase belongs to."""
        return self._job

    @property
    def weight(self) -> float:
        """The phase's share of the job's progress, from the phase set."""
        return self._job.spec.weight(self.phase_name)

    def trigger(self, name: str, error: str | None = None, **data: Any) -> None:
        """Fire trigger ``name``; ``error`` is recorded on the phase, ``data`` reaches guards."""
        self._job._fire(self, name, error, data)

    def may(self, trigger: str) -> bool:
        """Whether ``trigger`` would succeed now: allowed from this status and its guards pass."""
        return self._job._may(self, trigger)

    def allowed_triggers(self) -> list[str]:
        """Triggers declared from the current status, in declaration order (guards not asked)."""
        return list(self._job.spec.allowed_triggers(self.status))

    def update_progress(self, items_processed: int, items_total: int | None = None) -> None:
        """Record counters; with a known total, progress becomes ``100 * processed / total``."""
        self._job._update_progress(self, items_processed, items_total)

    def heartbeat(self) -> None:
        """Report that work on the phase is alive, without counts: moves its ``heartbeat``
        deadline like a progress report does (the counters stay as they are)."""
        record = self._job._phases[self._index]
        self._job._update_progress(self, record.items_processed, None)

    def is_terminal(self) -> bool:
        """Whether the current status is flagged ``terminal``."""
        return self._job.spec.status_def(self.status).terminal

    def is_active(self) -> bool:
        """Whether the current status is flagged ``active``."""
        return self._job.spec.status_def(self.status).active

    def to_record(self) -> PhaseRecord:
        """An immutable snapshot, as stores keep it."""
        return self._job._phases[self._index]

    def to_schema(self) -> PhaseStateSchema:
        """The phase as a pydantic model, for APIs, with the triggers its status allows."""
        return phase_schema(self.to_record(), self._job.spec.allowed_triggers)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PhaseState):
            return NotImplemented
        return self._job is other._job and self._index == other._index

    def __hash__(self) -> int:
        return hash((id(self._job), self._index))

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.phase_name!r} of job {self._job.job_id!r}: "
            f"{self.status} {self.progress:.1f}%>"
        )


def _trigger_method(trigger: str) -> Any:
    def fire(self: PhaseState, error: str | None = None, **data: Any) -> None:
        self._job._fire(self, trigger, error, data)

    fire.__name__ = fire.__qualname__ = trigger
    fire.__doc__ = f"Fire {trigger!r} on this phase (see ``PhaseState.trigger``)."
    return fire


def phase_class(spec_name: str, triggers: list[str]) -> type[PhaseState]:
    """A ``PhaseState`` subclass with one method per trigger of a phase set."""
    namespace: dict[str, Any] = {"__slots__": (), "__module__": __name__}
    for trigger in triggers:
        namespace[trigger] = _trigger_method(trigger)
    title = "".join(part.capitalize() for part in spec_name.replace("-", "_").split("_"))
    return type(f"{title}PhaseState", (PhaseState,), namespace)


# -- jobs --------------------------------------------------------------------------------


class Committer(Protocol):
    """Whoever makes a job's changes durable (a ``Tracker``); detached jobs have none.

    A tracked job hands every change to its committer, which plans it (``plan_transition``,
    ``plan_progress``), saves it and applies it with the functions at the end of this module.
    """

    def commit_transition(
        self,
        job: JobState,
        phase: PhaseState,
        trigger: str,
        error: str | None,
        data: Mapping[str, Any],
    ) -> None: ...

    def commit_progress(
        self, job: JobState, phase: PhaseState, items_processed: int, items_total: int | None
    ) -> None: ...

    def refresh(self, job: JobState) -> None:
        """Reload ``job`` in place from where its changes are kept."""
        ...


class PhaseMap(Mapping[str, "PhaseState"]):
    """A job's phases by name, in the phase set's order: a live, read-only view of the job.

    ``job.phases["extraction"]`` is the ``PhaseState`` of that phase; iterating gives the
    names in order, ``values()`` the phases. Views are made on access and cost nothing to
    keep: a job holds only the records of its phases.
    """

    __slots__ = ("_job",)

    def __init__(self, job: JobState) -> None:
        self._job = job

    def __getitem__(self, name: str) -> PhaseState:
        job = self._job
        spec = job.spec
        try:
            index = spec.phase_index(name)
        except KeyError:
            raise UnknownPhase(name, job_id=job.job_id, known=spec.phase_names) from None
        return spec.phase_class(job, index)

    def __iter__(self) -> Iterator[str]:
        return iter(self._job.spec.phase_names)

    def __len__(self) -> int:
        return len(self._job.spec.phase_names)

    def __contains__(self, name: object) -> bool:
        return name in self._job.spec.phase_names

    def __repr__(self) -> str:
        job = self._job
        inner = ", ".join(f"{r.phase_name!r}: {r.status!r}" for r in job._phases)
        return f"<phases of job {job.job_id!r}: {{{inner}}}>"


class JobState:
    """A job of a phase set: ordered phases, metadata, version and the aggregate.

    A detached job (``spec.new_job``) applies changes in memory at once; a tracked job hands
    every change to its tracker, which commits it before the job changes.
    """

    __slots__ = (
        "_actions",
        "_committer",
        "_guards",
        "_phases",
        "_record",
        "_unsaved",
        "created_at",
        "job_id",
        "metadata",
        "spec",
        "updated_at",
        "version",
    )

    def __init__(
        self,
        spec: PhaseSet,
        job_id: str,
        phases: Iterable[PhaseRecord],
        *,
        metadata: Mapping[str, Any],
        version: int,
        created_at: datetime,
        updated_at: datetime,
        guards: Mapping[str, Guard],
        actions: Mapping[str, Action],
        committer: Committer | None = None,
        record: JobRecord | None = None,
    ) -> None:
        self.spec = spec
        self.job_id = job_id
        #: The metadata the job was created with: the job's own copy, for reading (what is
        #: stored is fixed at creation; changing this dict changes nothing stored).
        self.metadata: dict[str, Any] = copy.deepcopy(dict(metadata)) if metadata else {}
        self.version = version
        self.created_at = created_at
        self.updated_at = updated_at
        # The record of each phase, in order; a change replaces the tuple (a tracked job
        # shares it with the record it committed, a new job with the phase set).
        self._phases: tuple[PhaseRecord, ...] = (
            phases if isinstance(phases, tuple) else tuple(phases)
        )
        self._guards = guards
        self._actions = actions
        self._committer = committer
        # A tracked job keeps the record it last committed (the store holds the same object),
        # so a commit builds one new phase record instead of one per phase.
        self._record = record
        self._unsaved = False

    @classmethod
    def from_record(
        cls,
        spec: PhaseSet,
        record: JobRecord,
        *,
        guards: Mapping[str, Guard],
        actions: Mapping[str, Action],
        committer: Committer | None = None,
    ) -> JobState:
        """The job a stored record describes; a tracked job (``committer``) keeps the record."""
        return cls(
            spec,
            record.job_id,
            record.phases,
            metadata=record.metadata,
            version=record.version,
            created_at=record.created_at,
            updated_at=record.updated_at,
            guards=guards,
            actions=actions,
            committer=committer,
            record=record if committer is not None else None,
        )

    # -- lookups -----------------------------------------------------------------------------

    @property
    def phases(self) -> PhaseMap:
        """The phases by name, in the phase set's order (``job.phases["extraction"]``)."""
        return PhaseMap(self)

    def phase(self, name: str) -> PhaseState:
        """The phase ``name``; ``UnknownPhase`` lists the phases when there is none."""
        return self.phases[name]

    def __iter__(self) -> Iterator[PhaseState]:
        cls = self.spec.phase_class
        return (cls(self, index) for index in range(len(self._phases)))

    # -- aggregate ---------------------------------------------------------------------------

    def _statuses(self) -> tuple[str, ...]:
        return tuple([p.status for p in self._phases])

    def get_overall_status(self) -> str:
        """The overall status: the ``then`` of the first aggregation rule that fires."""
        return self.spec.aggregator.outline(self._statuses())[0]

    def get_current_phase(self) -> str | None:
        """The name of the phase work is at, by the phase set's ``current_phase`` groups."""
        return self.spec.aggregator.outline(self._statuses())[1]

    def get_overall_progress(self) -> float:
        """The weighted progress of the phases, 0.0 to 100.0."""
        return self.spec.aggregator.progress([p.progress for p in self._phases])

    def refresh(self) -> None:
        """Reload this job in place as its tracker's store has it now (a tracked job only)."""
        if self._committer is None:
            raise PhaseKitError(
                f"job {self.job_id!r} is detached (spec.new_job): there is no store to reload "
                "it from"
            )
        self._committer.refresh(self)

    def explain_status(self) -> StatusExplanation:
        """Which aggregation rule gives the overall status, and which phases made it fire."""
        return self.spec.aggregator.explain(self._statuses())

    # -- changes -----------------------------------------------------------------------------

    def _fire(
        self, phase: PhaseState, trigger: str, error: str | None, data: Mapping[str, Any]
    ) -> None:
        if self._committer is not None:
            self._committer.commit_transition(self, phase, trigger, error, data)
            return
        change = plan_transition(self, phase, trigger, error, data)
        _apply_detached(self, change)
        run_actions(self, change)

    def _may(self, phase: PhaseState, trigger: str) -> bool:
        compiled = self.spec.compiled
        if (trigger, phase.status) in compiled.fixed:
            return True
        if trigger not in compiled.allowed.get(phase.status, ()):
            return False
        return compiled.drive(_DryRun(self, phase, trigger, None, {}))

    def _update_progress(
        self, phase: PhaseState, items_processed: int, items_total: int | None
    ) -> None:
        if self._committer is not None:
            self._committer.commit_progress(self, phase, items_processed, items_total)
            return
        _apply_detached(self, plan_progress(self, phase, items_processed, items_total))

    def _stored_metadata(self) -> Mapping[str, Any]:
        """The metadata records carry: the committed record's, or a copy of the job's."""
        if self._record is not None:
            return self._record.metadata
        return copy.deepcopy(self.metadata)

    # -- snapshots ---------------------------------------------------------------------------

    def to_record(self) -> JobRecord:
        """An immutable snapshot of the job, as stores keep it."""
        phases = self._phases
        return JobRecord(
            job_id=self.job_id,
            spec_name=self.spec.name,
            spec_fingerprint=self.spec.fingerprint,
            status=self.get_overall_status(),
            current_phase=self.get_current_phase(),
            progress=self.get_overall_progress(),
            version=self.version,
            created_at=self.created_at,
            updated_at=self.updated_at,
            phases=phases,
            metadata=self._stored_metadata(),
        )

    def to_schema(self) -> JobStateSchema:
        """The job as a pydantic model, for APIs and JSON output; each phase lists the
        triggers its status allows."""
        return job_schema(self.to_record(), self.spec.allowed_triggers)

    def __repr__(self) -> str:
        return (
            f"<JobState {self.job_id!r} ({self.spec.name}) {self.get_overall_status()} "
            f"{self.get_overall_progress():.1f}% v{self.version}>"
        )


# -- planning and committing a change ------------------------------------------------------------


@dataclass(slots=True)
class Change:
    """A planned change to one phase: its status before, the phase after, and the cause.

    Built on every trigger, so it is a plain slotted class; nothing mutates it once planned.
    """

    index: int
    source: str
    after: PhaseRecord
    at: datetime
    trigger: str | None = None
    transition: int | None = None
    error: str | None = None
    data: Mapping[str, Any] | None = None


def plan_transition(
    job: JobState,
    phase: PhaseState,
    trigger: str,
    error: str | None,
    data: Mapping[str, Any],
    *,
    at: datetime | None = None,
) -> Change:
    """Check ``trigger`` (source status, guards) and compute the phase it leads to at ``at``
    (now by default).

    Raises ``InvalidTransition`` or ``TransitionRejected``; changes nothing either way.
    """
    spec = job.spec
    status = phase.status
    compiled = spec.compiled
    fixed = compiled.fixed.get((trigger, status))
    if fixed is None and trigger not in compiled.allowed.get(status, ()):
        raise _invalid(job, phase, trigger)
    error = check_error(error)
    if fixed is not None:
        dest, transition = fixed
    else:  # guards decide: drive the machine on a stand-in
        dry_run = _DryRun(job, phase, trigger, error, data)
        if not compiled.drive(dry_run):
            raise TransitionRejected(
                job_id=job.job_id,
                phase=phase.phase_name,
                trigger=trigger,
                reason="; ".join(dry_run.rejected) or "no transition's guards passed",
            )
        dest, transition = dry_run.status, dry_run.transition
    flags = spec.status_def(dest)
    now = at or datetime.now(UTC)
    index = phase._index
    before = job._phases[index]
    after = build_phase_record(
        before.phase_name,
        dest,
        100.0 if flags.success else before.progress,  # progress
        before.items_processed,
        before.items_total,
        before.started_at or (now if flags.active else None),  # started_at
        now if flags.terminal else None,  # completed_at
        now,  # updated_at
        error if error is not None else (before.error if flags.terminal else None),
        now,  # entered_at
        spec.deadlines.next_deadline(dest, now, now),  # deadline
    )
    return Change(
        index=index,
        source=status,
        after=after,
        at=now,
        trigger=trigger,
        transition=transition,
        error=error,
        data=data,
    )


def _invalid(job: JobState, phase: PhaseState, trigger: str) -> InvalidTransition:
    spec = job.spec
    unknown = not spec.has_trigger(trigger)
    return InvalidTransition(
        job_id=job.job_id,
        phase=phase.phase_name,
        trigger=trigger,
        status=phase.status,
        allowed=spec.allowed_triggers(phase.status),
        reason=unknown_trigger(spec.name, trigger, spec.triggers) if unknown else None,
    )


def unknown_trigger(spec_name: str, trigger: str, triggers: Sequence[str]) -> str:
    """Why a trigger the phase set does not declare fails, with its triggers and a hint."""
    return (
        f"phase set {spec_name!r} has no trigger {trigger!r}{did_you_mean(trigger, triggers)} "
        f"(its triggers: {', '.join(triggers)})"
    )


def plan_progress(
    job: JobState,
    phase: PhaseState,
    items_processed: int,
    items_total: int | None,
    *,
    at: datetime | None = None,
) -> Change:
    """Compute the phase after a progress report at ``at`` (now by default); the rules of
    DESIGN's progress section. A report is the phase's heartbeat: it moves the deadline a
    ``heartbeat`` gives."""
    spec = job.spec
    if spec.status_def(phase.status).terminal:
        raise InvalidTransition(
            job_id=job.job_id,
            phase=phase.phase_name,
            trigger="update_progress",
            status=phase.status,
            allowed=spec.allowed_triggers(phase.status),
            reason=(
                f"progress reports and heartbeats cannot change a phase in terminal status "
                f"{phase.status!r}"
            ),
        )
    processed = check_count("items_processed", items_processed)
    total = phase.items_total if items_total is None else check_count("items_total", items_total)
    if total is not None and processed > total:
        raise InvalidArgument(
            f"items_processed ({processed}) is greater than items_total ({total})"
        )
    if total is None:
        progress = phase.progress
    else:
        cap = spec.progress_cap
        progress = cap if total == 0 else min(cap, 100.0 * processed / total)
    now = at or datetime.now(UTC)
    before = job._phases[phase._index]
    # A phase kept without the time it entered its status (an initial phase, or a row of an
    # earlier store version) gets the best stand-in its timestamps give, once: kept from
    # here on, so the status's timeout does not move with each report.
    entered = before.entered_at or before.updated_at or job.created_at
    after = build_phase_record(
        before.phase_name,
        before.status,
        progress,
        processed,
        total,
        before.started_at,
        before.completed_at,
        now,  # updated_at
        before.error,
        entered,
        # The status's timeout still counts from entering it; a heartbeat from now.
        spec.deadlines.next_deadline(before.status, entered, now) if spec.deadlines else None,
    )
    return Change(index=phase._index, source=phase.status, after=after, at=now)


class _DryRun:
    """The stand-in a guarded trigger is driven on (``CompiledMachine.drive``).

    It carries what guards need (the real job and phase, the trigger's data), answers the
    machine's guard callbacks with the job's guards, and collects what the dry run learns:
    the destination, the transition that fired, the guards that said no.
    """

    __slots__ = ("data", "error", "job", "phase", "rejected", "status", "transition", "trigger")

    def __init__(
        self,
        job: JobState,
        phase: PhaseState,
        trigger: str,
        error: str | None,
        data: Mapping[str, Any],
    ) -> None:
        self.status = phase.status  # the machine reads and writes this attribute
        self.job = job
        self.phase = phase
        self.trigger = trigger
        self.error = error
        self.data = data
        self.transition = -1
        self.rejected: list[str] = []

    def check_guard(self, name: str, expect: bool, dest: str) -> bool:
        guards = self.job._guards
        guard = guards.get(name)
        if guard is None:
            known = ", ".join(sorted(guards)) or "none"
            raise PhaseKitError(
                f"phase set {self.job.spec.name!r}: trigger {self.trigger!r} needs guard "
                f"{name!r}, which no plugin registered (registered guards: {known})"
            )
        # A guard sees the job as it is, through a copy it cannot change: a guard that fired
        # a trigger itself would otherwise move the phase under the transition being decided.
        job = _read_only_copy(self.job)
        ctx = TransitionContext(
            job=job,
            phase=job.spec.phase_class(job, self.phase._index),
            trigger=self.trigger,
            source=self.phase.status,
            dest=dest,
            error=self.error,
            data=self.data,
        )
        if bool(guard(ctx)) is expect:
            return True
        self.rejected.append(f"guard {name!r} {'said no' if expect else 'said yes (unless)'}")
        return False


class _ReadOnly:
    """The committer of the copy of a job a guard sees: every change is refused."""

    __slots__ = ()

    def refresh(self, job: JobState) -> None:
        raise PhaseKitError("a guard cannot reload the job it decides on")

    def commit_transition(
        self,
        job: JobState,
        phase: PhaseState,
        trigger: str,
        error: str | None,
        data: Mapping[str, Any],
    ) -> None:
        raise PhaseKitError(
            f"job {job.job_id!r}, phase {phase.phase_name!r}: a guard fired {trigger!r}; guards "
            "decide whether a transition may happen and cannot change the job"
        )

    def commit_progress(
        self, job: JobState, phase: PhaseState, items_processed: int, items_total: int | None
    ) -> None:
        raise PhaseKitError(
            f"job {job.job_id!r}, phase {phase.phase_name!r}: a guard reported progress; guards "
            "decide whether a transition may happen and cannot change the job"
        )


_READ_ONLY = _ReadOnly()


def _read_only_copy(job: JobState) -> JobState:
    """The job as it is now, sharing its immutable records, with every change refused."""
    copy_ = JobState(
        job.spec,
        job.job_id,
        job._phases,
        metadata={},
        version=job.version,
        created_at=job.created_at,
        updated_at=job.updated_at,
        guards=job._guards,
        actions=job._actions,
        committer=_READ_ONLY,
    )
    copy_.metadata = job.metadata  # the job's own read copy: not deep-copied per guard call
    return copy_


# -- the steps of a commit, in order: plan (above), record_after, save (the committer's),
# -- apply_committed, run_actions. Only these functions change a job.


def aggregate_of(job: JobState) -> tuple[str, str | None]:
    """The job's overall status and current phase (the committed record's when current)."""
    record = job._record
    if record is not None and not job._unsaved:
        return record.status, record.current_phase
    return job.spec.aggregator.outline(job._statuses())


def record_after(job: JobState, change: Change) -> JobRecord:
    """The job's record as it will be once ``change`` is applied (the job is unchanged)."""
    phases = list(job._phases)
    phases[change.index] = change.after
    spec = job.spec
    aggregator = spec.aggregator
    status, current_phase = aggregator.outline(tuple([p.status for p in phases]))
    return build_job_record(
        job.job_id,
        spec.name,
        spec.fingerprint,
        status,
        current_phase,
        aggregator.progress([p.progress for p in phases]),
        job.version + 1,
        job.created_at,
        change.at,  # updated_at
        tuple(phases),
        job._stored_metadata(),
    )


def apply_committed(job: JobState, change: Change, record: JobRecord) -> None:
    """Make a planned change visible once ``record`` (from ``record_after``) is saved."""
    job._phases = record.phases
    job._record = record
    job._unsaved = False
    job.version += 1
    job.updated_at = change.at


def saved_deadline(job: JobState, index: int) -> datetime | None:
    """The deadline the store keeps for phase ``index`` (the last committed record's), which
    reports held in memory have not moved; None when unknown or when it has none."""
    record = job._record
    return record.phases[index].deadline if record is not None else None


def apply_unsaved(job: JobState, change: Change) -> None:
    """Make a progress change visible that a committer keeps in memory until its next save."""
    _replace_phase(job, change)
    job.updated_at = change.at
    job._unsaved = True


def adopt(job: JobState, current: JobState) -> None:
    """Make ``job`` what ``current`` (the same job, loaded later) is: a reload in place."""
    job._phases = current._phases
    job._record = current._record
    job._unsaved = False
    job.version = current.version
    job.updated_at = current.updated_at


def mark_saved(job: JobState, record: JobRecord) -> None:
    """Note that ``record`` (the job as it is in memory, unsaved changes included) was saved."""
    job.version = record.version
    job._phases = record.phases
    job._record = record
    job._unsaved = False


def run_actions(job: JobState, change: Change) -> None:
    """Run the ``after`` actions of the transition ``change`` made (already applied)."""
    if change.transition is None or change.trigger is None:
        return
    spec = job.spec
    names = spec.definition.transitions[change.transition].after
    if not names:
        return
    ctx = TransitionContext(
        job=job,
        phase=spec.phase_class(job, change.index),
        trigger=change.trigger,
        source=change.source,
        dest=change.after.status,
        error=change.error,
        data=change.data or {},
    )
    actions = job._actions
    for name in names:
        action = actions.get(name)
        if action is None:
            known = ", ".join(sorted(actions)) or "none"
            raise PhaseKitError(
                f"phase set {spec.name!r}: trigger {change.trigger!r} names action "
                f"{name!r}, which no plugin registered (registered actions: {known})"
            )
        action(ctx)


def _apply_detached(job: JobState, change: Change) -> None:
    """Apply a change to a job no committer saves (``spec.new_job``)."""
    _replace_phase(job, change)
    job.version += 1
    job.updated_at = change.at


def _replace_phase(job: JobState, change: Change) -> None:
    phases = list(job._phases)
    phases[change.index] = change.after
    job._phases = tuple(phases)
