"""What is kept: records of jobs and phases, events, the Store protocol, the memory store.

Plain data and storage: nothing here knows of machines, jobs' behaviour or plugins.
"""

from __future__ import annotations

from .events import (
    EVENT_TYPES,
    Event,
    EventBase,
    HistoryEvent,
    JobCreated,
    JobStatusChanged,
    PhaseChanged,
    ProgressUpdated,
    TransitionRequest,
    parse_event,
)
from .memory import MemoryStore
from .protocol import SpecArchive, Store, StoreFactory, list_order, open_store
from .records import JobRecord, PhaseRecord, build_job_record, build_phase_record

__all__ = [
    "EVENT_TYPES",
    "Event",
    "EventBase",
    "HistoryEvent",
    "JobCreated",
    "JobRecord",
    "JobStatusChanged",
    "MemoryStore",
    "PhaseChanged",
    "PhaseRecord",
    "ProgressUpdated",
    "SpecArchive",
    "Store",
    "StoreFactory",
    "TransitionRequest",
    "build_job_record",
    "build_phase_record",
    "list_order",
    "open_store",
    "parse_event",
]
