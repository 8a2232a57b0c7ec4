"""Names a phase set may not use, because the runtime objects already have them."""

from __future__ import annotations

__all__ = ["RESERVED_PHASE_NAMES", "RESERVED_TRIGGER_NAMES"]

#: Public attributes of ``PhaseState``: a trigger becomes a method of the phase, so it may not
#: shadow one of these (tests keep this list equal to the class's public names).
RESERVED_TRIGGER_NAMES: frozenset[str] = frozenset(
    {
        "allowed_triggers",
        "completed_at",
        "error",
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
        "spec",
        "to_record",
        "to_schema",
        "updated_at",
        "version",
    }
)
