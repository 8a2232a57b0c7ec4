"""From a file, text or dict to a compiled phase set, and its static checks."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .checks import analyse
from .errors import SpecError, SpecIssue
from .loader import definition_from_dict, load_definition, parse_definition, source_name
from .phaseset import PhaseSet

__all__ = ["check_spec", "load_phase_set", "load_spec", "parse_spec", "spec_from_dict"]


def load_spec(path_or_name: str | os.PathLike[str]) -> PhaseSet:
    """Load a phase set from a file, or a bundled one by bare name (``"ingestion"``).

    Raises ``SpecError`` listing every problem, each located in the file.
    """
    definition, locations = load_definition(path_or_name)
    return PhaseSet(definition, locations=locations, filename=source_name(path_or_name))


def parse_spec(text: str | bytes, filename: str = "<string>") -> PhaseSet:
    """Parse a phase set from YAML text; ``SpecError`` lists every problem."""
    definition, locations = parse_definition(text, filename)
    return PhaseSet(definition, locations=locations, filename=filename)


def spec_from_dict(data: Mapping[str, Any], filename: str = "<dict>") -> PhaseSet:
    """Build a phase set from already-parsed data (e.g. a definition a store kept)."""
    definition, locations = definition_from_dict(data, filename)
    return PhaseSet(definition, locations=locations, filename=filename)


#: ``load_spec`` under the name the tracker uses internally.
load_phase_set = load_spec


def check_spec(spec: PhaseSet, *, strict: bool = False) -> list[SpecIssue]:
    """Static checks of a phase set: warnings (or, with ``strict``, a ``SpecError``).

    Finds unreachable statuses, statuses with no way out, terminal statuses with
    outgoing transitions and aggregation rules that earlier rules shadow.
    """
    issues = analyse(spec.definition, spec.locations, spec.filename)
    if strict and issues:
        raise SpecError(
            SpecIssue(
                code=i.code,
                message=i.message,
                path=i.path,
                line=i.line,
                column=i.column,
                hint=i.hint,
                severity="error",
                filename=i.filename,
            )
            for i in issues
        )
    return issues
