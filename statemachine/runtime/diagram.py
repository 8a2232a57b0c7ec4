"""Diagrams of a phase set: Mermaid ``stateDiagram-v2`` and Graphviz dot, optionally with a job."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..spec import TransitionDef, expand_sources
from ..store import JobRecord
from .job import JobState
from .phaseset import PhaseSet

__all__ = ["to_dot", "to_mermaid"]

_MERMAID_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.,()/+@"
)
#: Class and fill colour of a status a job's phases are in: finished well, finished
#: otherwise, or not finished.
_OCCUPIED = {
    "success": ("occupied_success", "#b6d7a8", "#38761d"),
    "failure": ("occupied_failure", "#ea9999", "#990000"),
    "open": ("occupied", "#ffd966", "#7f6000"),
}


def _kind(spec: PhaseSet, status: str) -> str:
    flags = spec.status_def(status)
    if flags.terminal:
        return "success" if flags.success else "failure"
    return "open"


@dataclass(frozen=True, slots=True)
class _Edge:
    source: str
    dest: str
    label: str


def _label(transition: TransitionDef) -> str:
    """The trigger, with its guards in brackets (``unless`` guards negated with ``!``)."""
    guards = [*transition.conditions, *(f"!{name}" for name in transition.unless)]
    return f"{transition.trigger} [{', '.join(guards)}]" if guards else transition.trigger


def _edges(spec: PhaseSet) -> Iterator[_Edge]:
    """One edge per (source, transition), ``"*"`` expanded to every status."""
    for transition in spec.definition.transitions:
        for source in expand_sources(transition.sources, spec.statuses):
            yield _Edge(source, transition.dest, _label(transition))


def _terminal(spec: PhaseSet) -> list[str]:
    return [name for name, status in spec.definition.statuses.items() if status.terminal]


def _phase_statuses(job: JobState | JobRecord) -> list[tuple[str, str]]:
    """The job's phases and their statuses, in order."""
    if isinstance(job, JobState):
        return [(p.phase_name, p.status) for p in job.phases.values()]
    return [(p.phase_name, p.status) for p in job.phases]


def _job_summary(job: JobState | JobRecord, quote: Callable[[str], str]) -> str:
    """``job ID (status, progress%)``, the id (any printable text) quoted for the format."""
    if isinstance(job, JobState):
        status, progress = job.get_overall_status(), job.get_overall_progress()
    else:
        status, progress = job.status, job.progress
    return f"job {quote(job.job_id)} ({status}, {progress:.1f}%)"


def _note_anchor(spec: PhaseSet, job: JobState | JobRecord, occupied: list[str]) -> str:
    """The status the job's note hangs on: that of the current phase, else the first occupied."""
    current = job.get_current_phase() if isinstance(job, JobState) else job.current_phase
    for phase, status in _phase_statuses(job):
        if phase == current:
            return status
    return occupied[0] if occupied else spec.initial_status


def _deadline_labels(spec: PhaseSet) -> Iterator[tuple[str, str]]:
    """``(status, "⏱ 2h ♥ 5m")`` for each status with a deadline, in declaration order."""
    for name in spec.statuses:
        rule = spec.deadlines.rule(name)
        if rule is not None:
            yield name, rule.short()


def _mermaid_text(text: str) -> str:
    """Text safe inside a Mermaid note: anything but plain characters as ``#code;`` entities."""
    return "".join(c if c in _MERMAID_SAFE else f"#{ord(c)};" for c in text)


def to_mermaid(spec: PhaseSet, job: JobState | JobRecord | None = None) -> str:
    """A Mermaid ``stateDiagram-v2`` of ``spec``; with ``job``, its phases' statuses highlighted.

    Statuses are states (the initial one entered from ``[*]``, terminal ones leading to
    ``[*]``), a status with deadlines described by them (``⏱ 2h ♥ 5m``: timeout, heartbeat);
    each transition is an arrow labelled with its trigger and guards.
    """
    lines = ["stateDiagram-v2", f"    %% phase set {spec.name}"]
    lines.append(f"    [*] --> {spec.initial_status}")
    lines.extend(f"    {e.source} --> {e.dest}: {e.label}" for e in _edges(spec))
    lines.extend(f"    {name} --> [*]" for name in _terminal(spec))
    lines.extend(f"    {name}: {_mermaid_text(label)}" for name, label in _deadline_labels(spec))
    if job is not None:
        phases = _phase_statuses(job)
        occupied = list(dict.fromkeys(status for _, status in phases))
        for kind, (name, fill, stroke) in _OCCUPIED.items():
            members = [status for status in occupied if _kind(spec, status) == kind]
            if members:
                lines.append(f"    classDef {name} fill:{fill},stroke:{stroke},stroke-width:2px")
                lines.append(f"    class {','.join(members)} {name}")
        lines.append(f"    note right of {_note_anchor(spec, job, occupied)}")
        lines.append(f"        {_job_summary(job, _mermaid_text)}")
        lines.extend(f"        {phase}: {status}" for phase, status in phases)
        lines.append("    end note")
    return "\n".join(lines) + "\n"


def _dot_string(text: str) -> str:
    """A double-quoted dot string (JSON escaping is a subset dot understands)."""
    return json.dumps(text, ensure_ascii=False)


def to_dot(spec: PhaseSet, job: JobState | JobRecord | None = None) -> str:
    """A Graphviz ``digraph`` of ``spec``; with ``job``, its phases' statuses filled in colour."""
    terminal = _terminal(spec)
    phases = _phase_statuses(job) if job is not None else []
    in_status: dict[str, list[str]] = {}
    for phase, status in phases:
        in_status.setdefault(status, []).append(phase)
    lines = [
        f"digraph {_dot_string(spec.name)} {{",
        "    rankdir=LR;",
        '    node [shape=box, style="rounded", fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
        '    "__start" [shape=point, width=0.15, label=""];',
    ]
    if terminal:
        lines.append(
            '    "__end" [shape=doublecircle, width=0.1, label="", style=filled, fillcolor=black];'
        )
    deadlines = dict(_deadline_labels(spec))
    for name in spec.statuses:
        attributes = []
        if name in terminal:
            attributes.append("peripheries=2")
        label = f"{name}\n{deadlines[name]}" if name in deadlines else name
        if name in in_status:
            label = f"{label}\n({', '.join(in_status[name])})"
        if label != name:
            attributes.append(f"label={_dot_string(label)}")
        if name in in_status:
            attributes += [
                'style="rounded,filled"',
                f'fillcolor="{_OCCUPIED[_kind(spec, name)][1]}"',
            ]
        suffix = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"    {_dot_string(name)}{suffix};")
    lines.append(f'    "__start" -> {_dot_string(spec.initial_status)};')
    lines.extend(
        f"    {_dot_string(e.source)} -> {_dot_string(e.dest)} [label={_dot_string(e.label)}];"
        for e in _edges(spec)
    )
    lines.extend(f'    {_dot_string(name)} -> "__end";' for name in terminal)
    if job is not None:
        # \l ends a left-justified line in a dot label.
        text = "".join(
            f"{line}\\l"
            for line in [_job_summary(job, _escape_dot_label), *(f"{p}: {s}" for p, s in phases)]
        )
        lines.append(
            f'    "__job" [shape=note, style=filled, fillcolor="#fff2cc", label="{text}"];'
        )
        anchor = _note_anchor(spec, job, list(in_status))
        lines.append(f'    "__job" -> {_dot_string(anchor)} [style=dashed, arrowhead=none];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _escape_dot_label(text: str) -> str:
    """Text for a raw dot label: quotes and backslashes escaped, control characters dropped."""
    cleaned = "".join(c for c in text if c.isprintable())
    return cleaned.replace("\\", "\\\\").replace('"', '\\"')
