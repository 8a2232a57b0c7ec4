"""Phase sets at run time: the compiled machine, jobs and their phases, the aggregate.

Knows the format (``statemachine.spec``) and the records it produces (``statemachine.store``);
nothing here knows of stores, plugins or trackers: a ``Committer`` is whoever saves changes.
"""

from __future__ import annotations

from .aggregate import Aggregator, StatusExplanation
from .diagram import to_dot, to_mermaid
from .job import (
    Action,
    Change,
    Committer,
    Guard,
    JobState,
    PhaseMap,
    PhaseState,
    PhaseStatus,
    TransitionContext,
    adopt,
    aggregate_of,
    apply_committed,
    apply_unsaved,
    mark_saved,
    plan_progress,
    plan_transition,
    record_after,
    run_actions,
    saved_deadline,
    unknown_trigger,
)
from .machine import CompiledMachine
from .phaseset import (
    PhaseSet,
    check_spec,
    load_spec,
    parse_spec,
    spec_from_dict,
    stored_phase_set,
)
from .schemas import JobStateSchema, PhaseStateSchema, job_schema, phase_schema

__all__ = [
    "Action",
    "Aggregator",
    "Change",
    "Committer",
    "CompiledMachine",
    "Guard",
    "JobState",
    "JobStateSchema",
    "PhaseMap",
    "PhaseSet",
    "PhaseState",
    "PhaseStateSchema",
    "PhaseStatus",
    "StatusExplanation",
    "TransitionContext",
    "adopt",
    "aggregate_of",
    "apply_committed",
    "apply_unsaved",
    "check_spec",
    "job_schema",
    "load_spec",
    "mark_saved",
    "parse_spec",
    "phase_schema",
    "plan_progress",
    "plan_transition",
    "record_after",
    "run_actions",
    "saved_deadline",
    "spec_from_dict",
    "stored_phase_set",
    "to_dot",
    "to_mermaid",
    "unknown_trigger",
]
