"""The phase-set format, version 1, as pydantic models: plain data, no engine."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from ..errors import PhaseKitError
from ..limits import MAX_DURATION, parse_duration

__all__ = [
    "DURATION_PATTERN",
    "MAX_NAME_LENGTH",
    "MAX_PHASES",
    "MAX_SOURCE_PAIRS",
    "MAX_STATUSES",
    "MAX_TRANSITIONS",
    "NAME_PATTERN",
    "PHASE_NAME_PATTERN",
    "RESERVED_PHASE_NAMES",
    "RESERVED_TRIGGER_NAMES",
    "AggregateDef",
    "PhaseDef",
    "PhaseSetDef",
    "ProgressDef",
    "StatusDef",
    "StatusRule",
    "TransitionDef",
]

#: Statuses, triggers, guards and actions are identifiers: triggers become methods.
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"
#: Phase names may also use ``-``; they are dictionary keys, never attributes.
PHASE_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]*$"
MAX_NAME_LENGTH = 64
#: Limits that keep loading, checking and storing a phase set cheap (documented in docs/format.md).
MAX_STATUSES = 64
MAX_PHASES = 1000
MAX_TRANSITIONS = 4096
#: Most (trigger, source status) pairs once every source list and ``"*"`` is expanded: what
#: the compiled machine holds, one ``transitions`` object each.
MAX_SOURCE_PAIRS = 4096

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=MAX_NAME_LENGTH)]
PhaseName = Annotated[
    str, StringConstraints(pattern=PHASE_NAME_PATTERN, max_length=MAX_NAME_LENGTH)
]
Source = Annotated[
    str, StringConstraints(pattern=r"^(\*|[A-Za-z][A-Za-z0-9_]*)$", max_length=MAX_NAME_LENGTH)
]
Text = Annotated[str, StringConstraints(max_length=4000)]

#: A duration as text: ``30s``, ``5m``, ``2h``, ``1d``, ``2w`` and combinations (``1h30m``).
DURATION_PATTERN = r"^\s*(?:[0-9]+(?:\.[0-9]+)?\s*[smhdwSMHDW]\s*)+$"


def _check_duration(value: str | float) -> str | float:
    # The document keeps what was written (its fingerprint and the stored copy do too);
    # parse_duration says what is wrong with it, and pydantic locates the node.
    try:
        parse_duration(value)
    except PhaseKitError as exc:
        raise ValueError(str(exc).removeprefix("duration ")) from None
    return value


Duration = Annotated[
    Annotated[str, StringConstraints(pattern=DURATION_PATTERN, max_length=64)]
    | Annotated[float, Field(gt=0, le=MAX_DURATION.total_seconds())],
    AfterValidator(_check_duration),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class StatusDef(_Model):
    """A status a phase can be in, with the flags the runtime and aggregation read."""

    initial: bool = Field(False, description="Phases start here; exactly one status has it.")
    terminal: bool = Field(False, description="Work is over: sets completed_at, blocks progress.")
    success: bool = Field(False, description="Work succeeded: progress shows 100.")
    active: bool = Field(False, description="Work is running: sets started_at on first entry.")
    timeout: Duration | None = Field(
        None,
        description="Longest a phase may stay in this status, from entering it (30s, 5m, 2h, 1d).",
    )
    heartbeat: Duration | None = Field(
        None,
        description="Longest a phase in this status may go without a change or progress report.",
    )
    on_timeout: Name | None = Field(
        None,
        description="The trigger fired when a deadline passes (required with timeout/heartbeat).",
    )
    description: Text | None = None

    @property
    def timeout_after(self) -> timedelta | None:
        """``timeout`` as a ``timedelta``, or None."""
        return None if self.timeout is None else parse_duration(self.timeout)

    @property
    def heartbeat_after(self) -> timedelta | None:
        """``heartbeat`` as a ``timedelta``, or None."""
        return None if self.heartbeat is None else parse_duration(self.heartbeat)

    @property
    def has_deadline(self) -> bool:
        """Whether a phase in this status has a deadline (``timeout`` or ``heartbeat``)."""
        return self.timeout is not None or self.heartbeat is not None


class TransitionDef(_Model):
    """A trigger that moves a phase from one of its sources to ``dest``."""

    trigger: Name
    source: Source | Annotated[list[Source], Field(min_length=1)] = Field(
        description='A status, a list of statuses, or "*" for every status.'
    )
    dest: Name
    conditions: list[Name] = Field(
        default_factory=list, description="Guards (by name) that must all say yes."
    )
    unless: list[Name] = Field(
        default_factory=list, description="Guards (by name) that must all say no."
    )
    after: list[Name] = Field(
        default_factory=list, description="Actions (by name) run after the change is committed."
    )
    description: Text | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        """The source as a tuple; ``("*",)`` stands for every status."""
        return (self.source,) if isinstance(self.source, str) else tuple(self.source)


class PhaseDef(_Model):
    """One phase of a job, in order, with its weight in the job's progress."""

    name: PhaseName
    weight: float = Field(1.0, gt=0, le=1_000_000, description="Share of the job's progress.")
    description: Text | None = None


class ProgressDef(_Model):
    """How a phase's counters become its progress."""

    cap_until_success: float = Field(
        99.0, ge=0, le=100, description="Highest progress shown until a success status."
    )


class StatusRule(_Model):
    """One rule of the overall status: ``any``/``all`` with ``then``, or ``otherwise``."""

    any: Annotated[list[Name], Field(min_length=1)] | None = Field(
        None, description="Fires when at least one phase is in one of these statuses."
    )
    all: Annotated[list[Name], Field(min_length=1)] | None = Field(
        None, description="Fires when every phase is in one of these statuses."
    )
    otherwise: Name | None = Field(None, description="Fires always; must be the last rule.")
    then: Name | None = Field(None, description="The overall status when the rule fires.")

    @model_validator(mode="after")
    def _one_condition(self) -> StatusRule:
        given = [k for k in ("any", "all", "otherwise") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a rule needs exactly one of 'any', 'all' or 'otherwise'"
                + (f", got {' and '.join(given)}" if given else "")
            )
        if self.otherwise is not None and self.then is not None:
            raise ValueError("an 'otherwise' rule names its status itself; drop 'then'")
        if self.otherwise is None and self.then is None:
            raise ValueError(f"an '{given[0]}' rule needs 'then'")
        return self

    @property
    def result(self) -> str:
        """The status this rule gives."""
        result = self.otherwise if self.otherwise is not None else self.then
        assert result is not None
        return result

    def describe(self) -> str:
        """The rule as a person would read it."""
        if self.any is not None:
            return f"any phase {' or '.join(self.any)} -> {self.then}"
        if self.all is not None:
            return f"every phase {' or '.join(self.all)} -> {self.then}"
        return f"otherwise -> {self.otherwise}"


class AggregateDef(_Model):
    """How phase statuses become the job's overall status and current phase."""

    status: Annotated[list[StatusRule], Field(min_length=1)] = Field(
        description="Rules tried in order; the first that fires gives the overall status."
    )
    current_phase: list[Annotated[list[Name], Field(min_length=1)]] | None = Field(
        None,
        description=(
            "Groups of statuses tried in order: the current phase is the first phase in a status "
            "of the group. Default: first phase neither initial nor terminal, else first phase "
            "in a terminal status that is not success, else first phase in the initial status."
        ),
    )


class PhaseSetDef(_Model):
    """A phase set: statuses, transitions, ordered phases and aggregation rules."""

    phasekit: Literal[1] = Field(description="Format version (the integer 1).")
    name: PhaseName
    description: Text | None = None
    statuses: Annotated[dict[Name, StatusDef], Field(min_length=1, max_length=MAX_STATUSES)]
    transitions: Annotated[list[TransitionDef], Field(max_length=MAX_TRANSITIONS)]
    phases: Annotated[list[PhaseDef], Field(min_length=1, max_length=MAX_PHASES)]
    progress: ProgressDef = Field(default_factory=ProgressDef)
    aggregate: AggregateDef

    @field_validator("phasekit", mode="before")
    @classmethod
    def _integer_version(cls, value: object) -> object:
        # Literal[1] alone lets True and 1.0 through (they compare equal to 1).
        if isinstance(value, bool | float):
            raise ValueError(f"the format version is the integer 1, not {value!r}")
        return value

    @property
    def initial_status(self) -> str:
        """The one status every phase starts in (the document has been validated)."""
        return next(name for name, s in self.statuses.items() if s.initial)


# -- names a phase set may not use, because the runtime objects already have them ----------

#: Public attributes of ``PhaseState``: a trigger becomes a method of the phase, so it may not
#: shadow one of these (tests keep this list equal to the class's public names).
RESERVED_TRIGGER_NAMES: frozenset[str] = frozenset(
    {
        "allowed_triggers",
        "completed_at",
        "deadline",
        "entered_at",
        "error",
        "heartbeat",
        "is_active",
        "is_terminal",
        "items_processed",
        "items_total",
        "job",
        "may",
        "phase_name",
        "progress",
        "started_at",
        "status",
        "to_record",
        "to_schema",
        "trigger",
        "update_progress",
        "updated_at",
        "weight",
    }
)

#: Public attributes of ``JobState``; phase names are kept clear of them so a phase can be
#: reached as an attribute in a later version without breaking anyone's phase set.
RESERVED_PHASE_NAMES: frozenset[str] = frozenset(
    {
        "created_at",
        "explain_status",
        "get_current_phase",
        "get_overall_progress",
        "get_overall_status",
        "job_id",
        "metadata",
        "phase",
        "phases",
        "refresh",
        "spec",
        "to_record",
        "to_schema",
        "updated_at",
        "version",
    }
)
