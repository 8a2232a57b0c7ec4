"""The phase-set format, version 1, as pydantic models: plain data, no engine."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from ..errors import PhaseKitError
from ..limits import MAX_DURATION, parse_duration

__all__ = [
    "DURATION_PATTERN",
    "DURATION_SCHEMA_PATTERN",
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

# The same texts for the JSON Schema, narrowed to what ``parse_duration`` then accepts: space
# around the text may be any whitespace the loader's ``\s`` and ``str.strip`` agree on (spelt
# out, since ECMAScript's ``\s`` is another set), only spaces between the parts and none
# between a number and its unit, and at least one number that is not zero. The 100-year bound
# on text is left to ``phasekit validate``.
_EDGE_SPACE = r"[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_PART = r"[0-9]+(?:\.[0-9]+)?[smhdwSMHDW]"
_NON_ZERO_PART = r"(?:[0-9]*[1-9][0-9]*(?:\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)[smhdwSMHDW]"
#: The JSON Schema's pattern for a duration as text (``DURATION_PATTERN`` less what
#: ``parse_duration`` refuses, other than passing 100 years).
DURATION_SCHEMA_PATTERN = (
    f"^{_EDGE_SPACE}*(?:{_PART} *)*{_NON_ZERO_PART}(?: *{_PART})*{_EDGE_SPACE}*$"
)

# -- the JSON Schema: the models' rules that pydantic does not put in it, said in JSON Schema -
#
# These change only ``PhaseSetDef.model_json_schema()`` (``phasekit schema``), never what the
# loader accepts; tests/test_schema_corpus.py holds the schema and the loader in agreement.

#: A JSON Schema, or part of one, as pydantic hands it to ``json_schema_extra``.
_Schema = dict[str, Any]

#: ``not`` of this rejects numbers at or below zero, and NaN, which passes every comparison.
_NOT_ABOVE_ZERO: _Schema = {"type": "number", "maximum": 0}
#: ``not`` of this rejects numbers below zero, and NaN.
_NOT_AT_LEAST_ZERO: _Schema = {"type": "number", "exclusiveMaximum": 0}


def _present(key: str) -> _Schema:
    """A schema for a mapping that has ``key`` with a value other than null."""
    return {"type": "object", "required": [key], "properties": {key: {"not": {"type": "null"}}}}


def _flag_set(key: str) -> _Schema:
    """A schema for a mapping whose flag ``key`` is ``true``."""
    return {"type": "object", "required": [key], "properties": {key: {"const": True}}}


def _refusing(not_schema: _Schema) -> Callable[[_Schema], None]:
    """Adds ``"not": not_schema`` to a field's schema."""

    def extra(schema: _Schema) -> None:
        schema["not"] = not_schema

    return extra


def _no_reserved_trigger(schema: _Schema) -> None:
    schema["not"] = {"enum": sorted(RESERVED_TRIGGER_NAMES), "$comment": "reserved-name"}


def _no_reserved_phase(schema: _Schema) -> None:
    schema["not"] = {"enum": sorted(RESERVED_PHASE_NAMES), "$comment": "reserved-name"}


def _statuses_schema(schema: _Schema) -> None:
    # pydantic says "keys matching the pattern are statuses" and lets other keys through.
    patterns = schema.pop("patternProperties")
    schema["propertyNames"] = {
        "type": "string",
        "pattern": NAME_PATTERN,
        "maxLength": MAX_NAME_LENGTH,
    }
    schema["additionalProperties"] = patterns[NAME_PATTERN]
    # Some status is initial: not every status is one that is not. ("Exactly one" compares
    # statuses with each other, which is beyond JSON Schema.)
    schema["not"] = {
        "$comment": "no-initial-status",
        "type": "object",
        "additionalProperties": {"not": _flag_set("initial")},
    }


def _source_schema(schema: _Schema) -> None:
    # "*" stands alone: a list of two or more sources holds no "*" (wildcard-in-list).
    listed = next(s for s in schema["anyOf"] if s.get("type") == "array")
    listed["anyOf"] = [
        {"type": "array", "maxItems": 1},
        {"type": "array", "items": {"not": {"const": "*"}}},
    ]
    listed["$comment"] = "wildcard-in-list"


def _status_rules_schema(schema: _Schema) -> None:
    # One 'otherwise' rule; that it comes last is beyond JSON Schema (otherwise-not-last).
    schema["contains"] = {
        "type": "object",
        "required": ["otherwise"],
        "properties": {"otherwise": {"type": "string"}},
    }
    schema["minContains"] = 1
    schema["maxContains"] = 1
    schema["$comment"] = "missing-otherwise, otherwise-not-last: exactly one 'otherwise' rule"


def _status_flags_schema(schema: _Schema) -> None:
    deadline: _Schema = {"anyOf": [_present("timeout"), _present("heartbeat")]}
    schema["allOf"] = [
        {
            "$comment": "success-not-terminal",
            "if": _flag_set("success"),
            "then": _flag_set("terminal"),
        },
        {
            "$comment": "active-and-terminal",
            "not": {"allOf": [_flag_set("active"), _flag_set("terminal")]},
        },
        {"$comment": "missing-on-timeout", "if": deadline, "then": _present("on_timeout")},
        {"$comment": "on-timeout-without-deadline", "if": _present("on_timeout"), "then": deadline},
    ]


def _rule_shapes_schema(schema: _Schema) -> None:
    def shape(title: str, given: dict[str, str]) -> _Schema:
        properties: _Schema = {
            key: ({"type": given[key]} if key in given else {"type": "null"})
            for key in ("any", "all", "otherwise", "then")
        }
        return {"title": title, "type": "object", "required": list(given), "properties": properties}

    schema["oneOf"] = [
        shape("any rule", {"any": "array", "then": "string"}),
        shape("all rule", {"all": "array", "then": "string"}),
        shape("otherwise rule", {"otherwise": "string"}),
    ]


def _check_duration(value: str | float) -> str | float:
    # The document keeps what was written (its fingerprint and the stored copy do too);
    # parse_duration says what is wrong with it, and pydantic locates the node.
    try:
        parse_duration(value)
    except PhaseKitError as exc:
        raise ValueError(str(exc).removeprefix("duration ")) from None
    return value


Duration = Annotated[
    Annotated[
        str,
        StringConstraints(pattern=DURATION_PATTERN, max_length=64),
        WithJsonSchema({"type": "string", "pattern": DURATION_SCHEMA_PATTERN, "maxLength": 64}),
    ]
    | Annotated[
        float,
        Field(gt=0, le=MAX_DURATION.total_seconds()),
        WithJsonSchema(
            {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": MAX_DURATION.total_seconds(),
                "not": _NOT_ABOVE_ZERO,
            }
        ),
    ],
    AfterValidator(_check_duration),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class StatusDef(_Model):
    """A status a phase can be in, with the flags the runtime and aggregation read."""

    model_config = ConfigDict(json_schema_extra=_status_flags_schema)

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

    trigger: Name = Field(
        description="Becomes a method of every phase: not a PhaseState attribute's name.",
        json_schema_extra=_no_reserved_trigger,
    )
    source: Source | Annotated[list[Source], Field(min_length=1)] = Field(
        description='A status, a list of statuses, or "*" (alone) for every status.',
        json_schema_extra=_source_schema,
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

    name: PhaseName = Field(
        description="Unique among the phases; not a JobState attribute's name.",
        json_schema_extra=_no_reserved_phase,
    )
    weight: float = Field(
        1.0,
        gt=0,
        le=1_000_000,
        description="Share of the job's progress.",
        json_schema_extra=_refusing(_NOT_ABOVE_ZERO),
    )
    description: Text | None = None


class ProgressDef(_Model):
    """How a phase's counters become its progress."""

    cap_until_success: float = Field(
        99.0,
        ge=0,
        le=100,
        description="Highest progress shown until a success status.",
        json_schema_extra=_refusing(_NOT_AT_LEAST_ZERO),
    )


class StatusRule(_Model):
    """One rule of the overall status: ``any``/``all`` with ``then``, or ``otherwise``."""

    model_config = ConfigDict(json_schema_extra=_rule_shapes_schema)

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
        description=(
            "Rules tried in order; the first that fires gives the overall status. The last "
            "rule, and only it, is {otherwise: STATUS}."
        ),
        json_schema_extra=_status_rules_schema,
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
    statuses: Annotated[dict[Name, StatusDef], Field(min_length=1, max_length=MAX_STATUSES)] = (
        Field(
            description="Status name -> flags, in order; exactly one status is initial.",
            json_schema_extra=_statuses_schema,
        )
    )
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
