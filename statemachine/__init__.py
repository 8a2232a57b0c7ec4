"""phasekit: declarative phase sets for long-running jobs, on transitions and pluggy.

This module is the public API: every name in ``__all__`` is supported, and plugins (the
bundled ones in ``statemachine.plugins`` too) import only these. docs/architecture.md maps
the subpackages behind it.
"""

from __future__ import annotations

from .errors import (
    ConcurrentUpdateError,
    InvalidArgument,
    InvalidArgumentType,
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
from .hooks import PluginInfo, Veto, hookimpl
from .runtime import (
    Action,
    Guard,
    JobState,
    JobStateSchema,
    PhaseSet,
    PhaseState,
    PhaseStateSchema,
    PhaseStatus,
    StatusExplanation,
    TransitionContext,
    check_spec,
    load_spec,
    parse_spec,
    spec_from_dict,
)
from .store import (
    Event,
    HistoryEvent,
    JobCreated,
    JobRecord,
    JobStatusChanged,
    MemoryStore,
    PhaseChanged,
    PhaseRecord,
    ProgressUpdated,
    SpecArchive,
    Store,
    StoreFactory,
    TransitionRequest,
    list_order,
    open_store,
    parse_event,
)
from .tracker import Tracker
from .tracker_config import ConfigError

__version__ = "0.1.0"

__all__ = [
    "Action",
    "ConcurrentUpdateError",
    "ConfigError",
    "Event",
    "Guard",
    "HistoryEvent",
    "InvalidArgument",
    "InvalidArgumentType",
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
