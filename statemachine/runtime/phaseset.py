"""A loaded phase set: its definition, compiled once, the factory of its jobs, and loading it."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ..errors import PersistenceError, SpecError, SpecIssue, SpecMismatch
from ..limits import validate_job_id
from ..spec import (
    PhaseSetDef,
    StatusDef,
    analyse,
    definition_from_dict,
    load_definition,
    parse_definition,
    source_name,
)
from ..store import JobRecord, PhaseRecord, SpecArchive, build_job_record
from .aggregate import Aggregator
from .deadlines import Deadlines
from .job import Action, Committer, Guard, JobState, PhaseState, phase_class
from .machine import CompiledMachine

__all__ = [
    "PhaseSet",
    "check_spec",
    "load_spec",
    "parse_spec",
    "spec_from_dict",
    "stored_phase_set",
]

_EMPTY: Mapping[str, Any] = {}


class PhaseSet:
    """A validated phase set compiled into one shared ``transitions`` machine.

    Every job of the phase set is resolved against the same machine; the phase set holds
    everything derived from the definition (trigger table, flags, aggregation) once.
    """

    def __init__(
        self,
        definition: PhaseSetDef,
        *,
        locations: Mapping[str, tuple[int, int]] | None = None,
        filename: str = "<string>",
    ) -> None:
        self.definition = definition
        self.locations: Mapping[str, tuple[int, int]] = locations or {}
        self.filename = filename
        self.name = definition.name
        self.fingerprint = _fingerprint(definition)
        self.compiled = CompiledMachine(definition)
        self.aggregator = Aggregator(definition)
        #: The statuses' deadlines (``timeout``, ``heartbeat``); falsy when there are none.
        self.deadlines = Deadlines(definition)
        self.initial_status = definition.initial_status
        self.progress_cap = definition.progress.cap_until_success
        self.triggers: tuple[str, ...] = tuple(
            dict.fromkeys(t.trigger for t in definition.transitions)
        )
        self.statuses: tuple[str, ...] = tuple(definition.statuses)
        self.phase_names: tuple[str, ...] = tuple(p.name for p in definition.phases)
        self._weights = {p.name: p.weight for p in definition.phases}
        self._index = {name: i for i, name in enumerate(self.phase_names)}
        self.phase_class: type[PhaseState] = phase_class(definition.name, list(self.triggers))
        self._trigger_set = frozenset(self.triggers)
        # Every new job starts from the same phase records (immutable, so shared).
        self._initial_phases = tuple(
            PhaseRecord(phase_name=name, status=self.initial_status) for name in self.phase_names
        )
        statuses = [self.initial_status] * len(self.phase_names)
        self._initial_aggregate = (
            self.aggregator.status(statuses),
            self.aggregator.current_phase(statuses),
        )

    # -- lookups used on hot paths -----------------------------------------------------------

    def allowed_triggers(self, status: str) -> tuple[str, ...]:
        """Triggers declared from ``status`` (by source alone), in declaration order."""
        return self.compiled.allowed.get(status, ())

    def has_trigger(self, trigger: str) -> bool:
        return trigger in self._trigger_set

    def status_def(self, status: str) -> StatusDef:
        return self.definition.statuses[status]

    def weight(self, phase: str) -> float:
        return self._weights[phase]

    def phase_index(self, phase: str) -> int:
        return self._index[phase]

    @property
    def guard_names(self) -> set[str]:
        """Every guard the transitions reference."""
        return {g for t in self.definition.transitions for g in (*t.conditions, *t.unless)}

    @property
    def action_names(self) -> set[str]:
        """Every action the transitions reference."""
        return {a for t in self.definition.transitions for a in t.after}

    # -- jobs --------------------------------------------------------------------------------

    def initial_record(
        self,
        job_id: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        at: datetime | None = None,
    ) -> JobRecord:
        """The record of a new job: every phase in the initial status, version 1."""
        now = at or datetime.now(UTC)
        status, current_phase = self._initial_aggregate
        phases = self._initial_phases
        if self.deadlines.rule(self.initial_status) is not None:  # "picked up within 1h"
            deadline = self.deadlines.next_deadline(self.initial_status, now, now)
            phases = tuple(replace(p, deadline=deadline) for p in phases)
        return build_job_record(
            validate_job_id(job_id),
            self.name,
            self.fingerprint,
            status,
            current_phase,
            0.0,  # progress
            1,  # version
            now,  # created_at
            now,  # updated_at
            phases,
            dict(metadata or _EMPTY),
        )

    def new_job(
        self,
        job_id: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        guards: Mapping[str, Guard] | None = None,
        actions: Mapping[str, Action] | None = None,
    ) -> JobState:
        """A detached job in memory: no tracker, no store, no hooks."""
        record = self.initial_record(job_id, metadata)
        now = record.created_at
        return JobState(
            self,
            record.job_id,
            record.phases,
            metadata=metadata or _EMPTY,
            version=1,
            created_at=now,
            updated_at=now,
            guards=guards or _EMPTY,
            actions=actions or _EMPTY,
        )

    def restore(
        self,
        record: JobRecord,
        *,
        guards: Mapping[str, Guard] | None = None,
        actions: Mapping[str, Action] | None = None,
        committer: Committer | None = None,
    ) -> JobState:
        """Rebuild a job from a stored record; no callbacks or hooks run.

        Phases the phase set gained since the record was written start in the initial status.
        A phase or status the phase set no longer has raises ``SpecMismatch``.
        """
        by_name = {p.phase_name: p for p in record.phases}
        unknown_phases = [name for name in by_name if name not in self._index]
        unknown_statuses = sorted(
            {p.status for p in record.phases if p.status not in self.definition.statuses}
        )
        if unknown_phases or unknown_statuses:
            problems = []
            if unknown_phases:
                problems.append(f"phases {', '.join(map(repr, unknown_phases))}")
            if unknown_statuses:
                problems.append(f"statuses {', '.join(map(repr, unknown_statuses))}")
            raise SpecMismatch(
                f"job {record.job_id!r} holds {' and '.join(problems)} that phase set "
                f"{self.name!r} (phases: {', '.join(self.phase_names)}; statuses: "
                f"{', '.join(self.statuses)}) cannot represent"
            )
        phases = tuple(
            by_name.get(name) or self._initial_phases[i] for i, name in enumerate(self.phase_names)
        )
        if record.spec_fingerprint != self.fingerprint:
            # Kept under another version of the phase set: its deadlines are this version's.
            phases = self._with_deadlines(phases, record.created_at)
        if phases != record.phases:
            record = record.replace(phases=phases)
        return JobState.from_record(
            self, record, guards=guards or _EMPTY, actions=actions or _EMPTY, committer=committer
        )

    def _with_deadlines(
        self, phases: tuple[PhaseRecord, ...], created_at: datetime
    ) -> tuple[PhaseRecord, ...]:
        """``phases`` with the deadlines this phase set gives them, from their timestamps."""
        deadlines = self.deadlines
        changed = []
        for phase in phases:
            deadline = deadlines.of_record(phase, created_at)
            changed.append(
                phase if deadline == phase.deadline else replace(phase, deadline=deadline)
            )
        return tuple(changed)

    def __repr__(self) -> str:
        return (
            f"<PhaseSet {self.name!r}: {len(self.statuses)} statuses, "
            f"{len(self.triggers)} triggers, {len(self.phase_names)} phases>"
        )


def _fingerprint(definition: PhaseSetDef) -> str:
    """A short, stable hash of everything that defines the phase set's behaviour."""
    canonical = json.dumps(
        definition.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# -- loading --------------------------------------------------------------------------------------


def load_spec(path_or_name: str | os.PathLike[str]) -> PhaseSet:
    """Load a phase set from a file, or a bundled one by bare name (``"ingestion"``).

    Raises ``SpecError`` listing every problem, each located in the file.
    """
    definition, locations = load_definition(path_or_name)
    return PhaseSet(definition, locations=locations, filename=source_name(path_or_name))


def parse_spec(text: str | bytes, filename: str = "<string>") -> PhaseSet:
    """Parse a phase set from YAML text; ``SpecError`` lists every problem."""
    definition, locations = parse_definition(text, filename)
    return PhaseSet(definition, locations=locations, filename=filename)


def spec_from_dict(data: Mapping[str, Any], filename: str = "<dict>") -> PhaseSet:
    """Build a phase set from already-parsed data (e.g. a definition a store kept)."""
    definition, locations = definition_from_dict(data, filename)
    return PhaseSet(definition, locations=locations, filename=filename)


def check_spec(spec: PhaseSet, *, strict: bool = False) -> list[SpecIssue]:
    """Static checks of a phase set: warnings (or, with ``strict``, a ``SpecError``).

    Finds unreachable statuses, statuses with no way out, terminal statuses with
    outgoing transitions and aggregation rules that earlier rules shadow.
    """
    issues = analyse(spec.definition, spec.locations, spec.filename)
    if strict and issues:
        raise SpecError(
            SpecIssue(
                code=i.code,
                message=i.message,
                path=i.path,
                line=i.line,
                column=i.column,
                hint=i.hint,
                severity="error",
                filename=i.filename,
            )
            for i in issues
        )
    return issues


def stored_phase_set(archive: SpecArchive, fingerprint: str) -> PhaseSet | None:
    """The phase set a store keeps under ``fingerprint``, or None; checked against it.

    A kept definition whose own fingerprint differs was changed outside phasekit: driving jobs
    with it could fire transitions their phase set never had, so it is refused.
    """
    definition = archive.recall_spec(fingerprint)
    if definition is None:
        return None
    spec = spec_from_dict(definition, filename=f"<stored phase set {fingerprint}>")
    if spec.fingerprint != fingerprint:
        raise PersistenceError(
            f"the store keeps phase set {spec.name!r} under fingerprint {fingerprint}, but that "
            f"definition's fingerprint is {spec.fingerprint}: it was changed outside phasekit; "
            "pass the phase set's file instead"
        )
    return spec
