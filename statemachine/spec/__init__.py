"""The phase-set format: its models, reading YAML with locations, and the checks on it.

Plain data only: nothing here knows of machines, jobs, stores or plugins.
"""

from __future__ import annotations

from .checks import analyse
from .compose import MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_NODES
from .documents import (
    bundled_names,
    definition_from_dict,
    is_bundled_name,
    load_definition,
    parse_definition,
    source_name,
)
from .locate import Locations
from .model import (
    MAX_NAME_LENGTH,
    MAX_PHASES,
    MAX_SOURCE_PAIRS,
    MAX_STATUSES,
    MAX_TRANSITIONS,
    NAME_PATTERN,
    PHASE_NAME_PATTERN,
    RESERVED_PHASE_NAMES,
    RESERVED_TRIGGER_NAMES,
    AggregateDef,
    PhaseDef,
    PhaseSetDef,
    ProgressDef,
    StatusDef,
    StatusRule,
    TransitionDef,
)
from .rules import WILDCARD, Condition, default_current_phase_groups, expand_sources, first_firing

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_NAME_LENGTH",
    "MAX_NODES",
    "MAX_PHASES",
    "MAX_SOURCE_PAIRS",
    "MAX_STATUSES",
    "MAX_TRANSITIONS",
    "NAME_PATTERN",
    "PHASE_NAME_PATTERN",
    "RESERVED_PHASE_NAMES",
    "RESERVED_TRIGGER_NAMES",
    "WILDCARD",
    "AggregateDef",
    "Condition",
    "Locations",
    "PhaseDef",
    "PhaseSetDef",
    "ProgressDef",
    "StatusDef",
    "StatusRule",
    "TransitionDef",
    "analyse",
    "bundled_names",
    "default_current_phase_groups",
    "definition_from_dict",
    "expand_sources",
    "first_firing",
    "is_bundled_name",
    "load_definition",
    "parse_definition",
    "source_name",
]
