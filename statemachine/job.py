"""A job: its phases in order, and the aggregate computed from them."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from .aggregate import StatusExplanation
from .changes import Change, plan_progress, plan_transition
from .compiler import Outcome
from .context import Action, Guard, TransitionContext
from .errors import PhaseKitError, UnknownPhase
from .records import JobRecord, PhaseRecord
from .schemas import JobStateSchema

if TYPE_CHECKING:
    from .phase import PhaseState
    from .phaseset import PhaseSet

__all__ = ["Committer", "JobState", "PhaseMap"]


class Committer(Protocol):
    """Whoever makes a job's changes durable (a ``Tracker``); detached jobs have none."""

    def fire(
        self,
        job: JobState,
        phase: PhaseState,
        trigger: str,
        error: str | None,
        data: Mapping[str, Any],
    ) -> None: ...

    def report_progress(
        self, job: JobState, phase: PhaseState, items_processed: int, items_total: int | None
    ) -> None: ...


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
        return job.spec.phase_class(job, job.spec.phase_index(name))

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
        try:
            return self.phases[name]
        except KeyError:
            known = list(self.spec.phase_names)
            raise UnknownPhase(name, job_id=self.job_id, known=known) from None

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

    def _aggregate(self) -> tuple[str, str | None]:
        """The overall status and current phase (from the committed record when it is current)."""
        record = self._record
        if record is not None and not self._unsaved:
            return record.status, record.current_phase
        return self.spec.aggregator.outline(self._statuses())

    def explain_status(self) -> StatusExplanation:
        """Which aggregation rule gives the overall status, and which phases made it fire."""
        return self.spec.aggregator.explain(self._statuses())

    # -- changes -----------------------------------------------------------------------------

    def _fire(
        self, phase: PhaseState, trigger: str, error: str | None, data: Mapping[str, Any]
    ) -> None:
        if self._committer is not None:
            self._committer.fire(self, phase, trigger, error, data)
            return
        change = plan_transition(self, phase, trigger, error, data)
        self._apply(change)
        self._run_actions(change)

    def _may(self, phase: PhaseState, trigger: str) -> bool:
        compiled = self.spec.compiled
        if (trigger, phase.status) in compiled.fixed:
            return True
        if trigger not in compiled.allowed.get(phase.status, ()):
            return False
        return compiled.drive(Outcome(self, phase, trigger, None, {}))

    def _update_progress(
        self, phase: PhaseState, items_processed: int, items_total: int | None
    ) -> None:
        if self._committer is not None:
            self._committer.report_progress(self, phase, items_processed, items_total)
            return
        self._apply(plan_progress(self, phase, items_processed, items_total))

    def _record_after(self, change: Change) -> JobRecord:
        """The job's record as it will be once ``change`` is applied (the job is unchanged)."""
        phases = list(self._phases)
        phases[change.index] = change.after
        aggregator = self.spec.aggregator
        status, current_phase = aggregator.outline(tuple([p.status for p in phases]))
        return JobRecord._build(
            self.job_id,
            self.spec.name,
            self.spec.fingerprint,
            status,
            current_phase,
            aggregator.progress([p.progress for p in phases]),
            self.version + 1,
            self.created_at,
            change.at,  # updated_at
            tuple(phases),
            self._stored_metadata(),
        )

    def _stored_metadata(self) -> Mapping[str, Any]:
        """The metadata records carry: the committed record's, or a copy of the job's."""
        if self._record is not None:
            return self._record.metadata
        return copy.deepcopy(self.metadata)

    def _apply(self, change: Change, *, committed: JobRecord | None = None) -> None:
        """Make a planned change visible; ``committed`` is the record a tracker saved for it."""
        if committed is not None:
            self._phases = committed.phases
            self._record = committed
            self._unsaved = False
        else:
            self._replace_phase(change)
        self.version += 1
        self.updated_at = change.at

    def _apply_unsaved(self, change: Change) -> None:
        """Make a progress change visible that a tracker keeps in memory until its next save."""
        self._replace_phase(change)
        self.updated_at = change.at
        self._unsaved = True

    def _replace_phase(self, change: Change) -> None:
        phases = list(self._phases)
        phases[change.index] = change.after
        self._phases = tuple(phases)

    def _committed(self, record: JobRecord) -> None:
        """Note that ``record`` (the job as it is in memory) was saved."""
        self.version = record.version
        self._phases = record.phases
        self._record = record
        self._unsaved = False

    def _run_actions(self, change: Change) -> None:
        """Run the ``after`` actions of the transition ``change`` made (already applied)."""
        if change.transition is None or change.trigger is None:
            return
        names = self.spec.definition.transitions[change.transition].after
        if not names:
            return
        phase = self.spec.phase_class(self, change.index)
        ctx = TransitionContext(
            job=self,
            phase=phase,
            trigger=change.trigger,
            source=change.source,
            dest=change.after.status,
            error=change.error,
            data=change.data or {},
        )
        for name in names:
            action = self._actions.get(name)
            if action is None:
                known = ", ".join(sorted(self._actions)) or "none"
                raise PhaseKitError(
                    f"phase set {self.spec.name!r}: trigger {change.trigger!r} names action "
                    f"{name!r}, which no plugin registered (registered actions: {known})"
                )
            action(ctx)

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
        """The job as a pydantic model, for APIs and JSON output."""
        return JobStateSchema(
            job_id=self.job_id,
            spec=self.spec.name,
            status=self.get_overall_status(),
            current_phase=self.get_current_phase(),
            progress=self.get_overall_progress(),
            version=self.version,
            metadata=dict(self.metadata),
            created_at=self.created_at,
            updated_at=self.updated_at,
            phases=[p.to_schema() for p in self],
        )

    def __repr__(self) -> str:
        return (
            f"<JobState {self.job_id!r} ({self.spec.name}) {self.get_overall_status()} "
            f"{self.get_overall_progress():.1f}% v{self.version}>"
        )
