"""Events: what happened to a job, as frozen pydantic models with a ``type`` tag."""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self, cast

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "EVENT_TYPES",
    "HISTORY_TYPES",
    "Event",
    "EventBase",
    "HistoryEvent",
    "JobCreated",
    "JobDeleted",
    "JobStatusChanged",
    "LoggedEvent",
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

        What ``model_construct`` makes (every field in ``__dict__`` in declaration order, all
        of them in ``model_fields_set``, no extra, no private values), in a third of its time:
        ``model_construct`` looks every field's aliases up and inspects a default factory's
        signature on every call, which cost more than the rest of a commit (see
        benchmarks/RESULTS.md). tests/test_events.py holds the two to the same result.

        Events of one class share one ``model_fields_set`` (the names of all their fields):
        pydantic copies it before changing it (``model_copy``), and a frozen event never does.
        """
        layout, fields_set = _layout(cls)
        fields = {
            name: values[name] if name in values else default if factory is None else factory()
            for name, factory, default in layout
        }
        event = cls.__new__(cls)
        _setattr(event, "__dict__", fields)
        _setattr(event, "__pydantic_fields_set__", fields_set)
        _setattr(event, "__pydantic_extra__", None)
        _setattr(event, "__pydantic_private__", None)
        return event


_setattr = object.__setattr__
# Factories of these events' fields take no argument (none reads the validated data).
_Field = tuple[str, Callable[[], Any] | None, Any]


@functools.cache
def _layout(cls: type[BaseModel]) -> tuple[tuple[_Field, ...], set[str]]:
    """Each field of ``cls`` in order (its name, and its default's factory or value), and
    the set of all their names.

    A required field's factory raises ``TypeError``: ``build`` needs a value for it.
    """
    found: list[_Field] = []
    for name, field in cls.model_fields.items():
        factory = field.default_factory
        if field.is_required():
            factory = functools.partial(_missing, cls, name)
        elif factory is None and not isinstance(field.default, str | int | float | bool | None):
            factory = functools.partial(copy.deepcopy, field.default)  # a mutable default
        found.append((name, cast("Callable[[], Any] | None", factory), field.default))
    return tuple(found), set(cls.model_fields)


def _missing(cls: type[BaseModel], name: str) -> Any:
    raise TypeError(f"{cls.__name__}.build() needs a value for {name!r}")


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


class JobDeleted(EventBase):
    """A job was deleted: its rows are gone, this event and the event log remain."""

    type: Literal["job_deleted"] = "job_deleted"


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
    JobCreated | PhaseChanged | ProgressUpdated | JobStatusChanged | JobDeleted,
    Field(discriminator="type"),
]
"""Every event a notification hook receives, told apart by its ``type``."""

#: Events a store keeps in a job's history.
HistoryEvent = JobCreated | PhaseChanged | JobDeleted
#: The classes of ``HistoryEvent``, for ``isinstance``.
HISTORY_TYPES = (JobCreated, PhaseChanged, JobDeleted)

#: The event class of each ``type`` tag.
EVENT_TYPES: dict[str, type[EventBase]] = {
    cls.model_fields["type"].default: cls
    for cls in (JobCreated, PhaseChanged, ProgressUpdated, JobStatusChanged, JobDeleted)
}

event_adapter: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: dict[str, Any] | str | bytes) -> Event:
    """An event from its JSON form (``event.model_dump_json()``) or the dict of it."""
    if isinstance(data, str | bytes):
        return event_adapter.validate_json(data)
    return event_adapter.validate_python(data)


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event as an event log holds it: at ``position``, which grows in commit order."""

    position: int
    event: Event
