"""phasekit: declarative phase sets for long-running jobs, on transitions and pluggy."""

from __future__ import annotations

from .aggregate import StatusExplanation
from .configfile import ConfigError
from .context import Action, Guard, TransitionContext
from .errors import (
    ConcurrentUpdateError,
    InvalidTransition,
    JobExists,
    JobNotFound,
    PersistenceError,
    PhaseKitError,
    SpecError,
    SpecIssue,
    SpecMismatch,
    TransitionRejected,
    UnknownPhase,
)
from .events import (
    Event,
    HistoryEvent,
    JobCreated,
    JobStatusChanged,
    PhaseChanged,
    ProgressUpdated,
    TransitionRequest,
    parse_event,
)
from .hookspecs import StoreFactory, Veto, hookimpl
from .job import JobState
from .loading import check_spec, load_spec, parse_spec, spec_from_dict
from .phase import PhaseState, PhaseStatus
from .phaseset import PhaseSet
from .plugin_manager import PluginInfo
from .records import JobRecord, PhaseRecord
from .schemas import JobStateSchema, PhaseStateSchema
from .store import MemoryStore, SpecArchive, Store, list_order, open_store
from .tracker import Tracker

__version__ = "0.1.0"

__all__ = [
    "Action",
    "ConcurrentUpdateError",
    "ConfigError",
    "Event",
    "Guard",
    "HistoryEvent",
    "InvalidTransition",
    "JobCreated",
    "JobExists",
    "JobNotFound",
    "JobRecord",
    "JobState",
    "JobStateSchema",
    "JobStatusChanged",
    "MemoryStore",
    "PersistenceError",
    "PhaseChanged",
    "PhaseKitError",
    "PhaseRecord",
    "PhaseSet",
    "PhaseState",
    "PhaseStateSchema",
    "PhaseStatus",
    "PluginInfo",
    "ProgressUpdated",
    "SpecArchive",
    "SpecError",
    "SpecIssue",
    "SpecMismatch",
    "StatusExplanation",
    "Store",
    "StoreFactory",
    "Tracker",
    "TransitionContext",
    "TransitionRejected",
    "TransitionRequest",
    "UnknownPhase",
    "Veto",
    "__version__",
    "check_spec",
    "hookimpl",
    "list_order",
    "load_spec",
    "open_store",
    "parse_event",
    "parse_spec",
    "spec_from_dict",
]
