"""What is kept: records of jobs and phases, events, the Store protocol, the memory store.

Plain data and storage: nothing here knows of machines, jobs' behaviour or plugins.
"""

from __future__ import annotations

from .events import (
    EVENT_TYPES,
    HISTORY_TYPES,
    Event,
    EventBase,
    HistoryEvent,
    JobCreated,
    JobDeleted,
    JobStatusChanged,
    LoggedEvent,
    PhaseChanged,
    ProgressUpdated,
    TransitionRequest,
    parse_event,
)
from .memory import MemoryStore
from .protocol import (
    DeadLetter,
    DeadlineIndex,
    DuePhase,
    EventLog,
    JobCounter,
    RelayCursor,
    RelayLedger,
    SpecArchive,
    Store,
    StoreFactory,
    list_cursor,
    list_order,
    open_store,
)
from .records import JobRecord, PhaseRecord, build_job_record, build_phase_record

__all__ = [
    "EVENT_TYPES",
    "HISTORY_TYPES",
    "DeadLetter",
    "DeadlineIndex",
    "DuePhase",
    "Event",
    "EventBase",
    "EventLog",
    "HistoryEvent",
    "JobCounter",
    "JobCreated",
    "JobDeleted",
    "JobRecord",
    "JobStatusChanged",
    "LoggedEvent",
    "MemoryStore",
    "PhaseChanged",
    "PhaseRecord",
    "ProgressUpdated",
    "RelayCursor",
    "RelayLedger",
    "SpecArchive",
    "Store",
    "StoreFactory",
    "TransitionRequest",
    "build_job_record",
    "build_phase_record",
    "list_cursor",
    "list_order",
    "open_store",
    "parse_event",
]
