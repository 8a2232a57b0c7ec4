"""Events: what happened to a job, as frozen pydantic models with a ``type`` tag."""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self, cast

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "Event",
    "EventBase",
    "HistoryEvent",
    "JobCreated",
    "JobStatusChanged",
    "PhaseChanged",
    "ProgressUpdated",
    "TransitionRequest",
    "event_adapter",
    "parse_event",
]


def _event_id() -> str:
    # 128 random bits in hex, like ``uuid4().hex``, without building a UUID object.
    return os.urandom(16).hex()


def _now() -> datetime:
    return datetime.now(UTC)


class EventBase(BaseModel):
    """Fields every event has: a unique id, the job, the job's version after it, and when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(default_factory=_event_id, description="Unique id of this event.")
    job_id: str
    version: int = Field(ge=0, description="The job's version once this change is committed.")
    at: AwareDatetime = Field(default_factory=_now)

    @classmethod
    def build(cls, **values: Any) -> Self:
        """The event of values phasekit has already checked, built without validating them again.

        Like ``model_construct``, but the defaults are filled here: ``model_construct``
        inspects a default factory's signature on every call, which costs more than building
        the rest of the event (see benchmarks/RESULTS.md).
        """
        for name, factory, value in _defaults(cls):
            if name not in values:
                values[name] = value if factory is None else factory()
        return cast(Self, cls.model_construct(**values))


# Factories of these events' fields take no argument (none reads the validated data).
_Default = tuple[str, Callable[..., Any] | None, Any]


@functools.cache
def _defaults(cls: type[BaseModel]) -> tuple[_Default, ...]:
    """Each optional field of ``cls``: its name, and its factory or its (immutable) value."""
    found: list[_Default] = []
    for name, field in cls.model_fields.items():
        if field.is_required():
            continue
        factory = field.default_factory
        if factory is None and not isinstance(field.default, str | int | float | bool | None):
            factory = functools.partial(copy.deepcopy, field.default)  # a mutable default
        found.append((name, factory, field.default))
    return tuple(found)


class JobCreated(EventBase):
    """A job was created and stored, every phase in the initial status."""

    type: Literal["job_created"] = "job_created"
    spec: str = Field(description="Name of the job's phase set.")
    phases: list[str] = Field(description="The job's phases, in order.")
    initial_status: str = Field(description="The status every phase starts in.")
    metadata: dict[str, Any] = Field(default_factory=dict)


class PhaseChanged(EventBase):
    """A phase changed status (committed)."""

    type: Literal["phase_changed"] = "phase_changed"
    phase: str
    trigger: str
    source: str
    dest: str
    error: str | None = None


class ProgressUpdated(EventBase):
    """A phase's counters changed (committed)."""

    type: Literal["progress_updated"] = "progress_updated"
    phase: str
    items_processed: int
    items_total: int | None
    progress: float = Field(description="The phase's progress, 0-100.")
    job_progress: float = Field(description="The job's weighted progress, 0-100.")


class JobStatusChanged(EventBase):
    """The aggregate changed: the overall status or the current phase (or both)."""

    type: Literal["job_status_changed"] = "job_status_changed"
    old_status: str
    new_status: str
    old_current_phase: str | None
    new_current_phase: str | None
    progress: float


class TransitionRequest(BaseModel):
    """A transition about to be committed, as ``before_transition`` sees it."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    phase: str
    trigger: str
    source: str
    dest: str
    error: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


Event = Annotated[
    JobCreated | PhaseChanged | ProgressUpdated | JobStatusChanged,
    Field(discriminator="type"),
]
#: Events a store keeps in a job's history.
HistoryEvent = JobCreated | PhaseChanged

event_adapter: TypeAdapter[JobCreated | PhaseChanged | ProgressUpdated | JobStatusChanged] = (
    TypeAdapter(Event)
)


def parse_event(
    data: dict[str, Any] | str | bytes,
) -> JobCreated | PhaseChanged | ProgressUpdated | JobStatusChanged:
    """An event from its JSON form (``event.model_dump_json()``) or the dict of it."""
    if isinstance(data, str | bytes):
        return event_adapter.validate_json(data)
    return event_adapter.validate_python(data)
