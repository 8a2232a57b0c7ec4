"""Diagrams of a phase set: Mermaid ``stateDiagram-v2`` and Graphviz dot, optionally with a job.

``to_mermaid``/``to_dot`` draw a phase's statuses and transitions; ``overview_mermaid``/
``overview_dot`` the whole job: its phases in order with their weights, and the aggregation
rules. Every name ``validate`` accepts draws: in Mermaid each state is declared as
``state "name" as ID``, ID the name itself unless Mermaid would read it as something else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise

from ..spec import TransitionDef, default_current_phase_groups, expand_sources
from ..store import JobRecord
from .job import JobState
from .phaseset import PhaseSet

__all__ = ["overview_dot", "overview_mermaid", "to_dot", "to_mermaid"]

_MERMAID_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.,()/+@"
)
#: Names Mermaid's stateDiagram lexer takes (case-insensitively) for its own where a state id
#: stands, and the ids it gives its own nodes (``root``, the ``[*]`` markers): a status named
#: so is drawn under an alias, ``_`` and the name (no status name starts with ``_``).
_MERMAID_RESERVED = frozenset(
    {
        "accdescr",
        "acctitle",
        "class",
        "classdef",
        "click",
        "default",
        "href",
        "note",
        "root",
        "root_end",
        "root_start",
        "scale",
        "state",
        "statediagram",
        "style",
    }
)
#: The lexer's ``.*direction\s+TB`` rule reads past the end of a line that ends in "direction"
#: (a trigger, an id) into the next, so no id may start with a direction either.
_MERMAID_DIRECTIONS = ("tb", "bt", "rl", "lr")
#: What the overview's note may hold as it is, besides ``_MERMAID_SAFE``: its text is ours.
_NOTE_KEEP = ":'"
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


def _mermaid_ids(spec: PhaseSet) -> dict[str, str]:
    """The Mermaid state id of each status, in declaration order: the name, or ``_name`` for a
    name Mermaid would misread (``note``, ``State``, ``root``, ``tbd``: see above)."""
    return {name: f"_{name}" if _mermaid_reserved(name) else name for name in spec.statuses}


def _mermaid_reserved(name: str) -> bool:
    low = name.lower()
    return low in _MERMAID_RESERVED or low.startswith(_MERMAID_DIRECTIONS)


def _mermaid_text(text: str, keep: str = "") -> str:
    """Text safe inside a Mermaid note: anything but plain characters (and ``keep``) as
    ``#code;`` entities."""
    return "".join(c if c in _MERMAID_SAFE or c in keep else f"#{ord(c)};" for c in text)


def to_mermaid(spec: PhaseSet, job: JobState | JobRecord | None = None) -> str:
    """A Mermaid ``stateDiagram-v2`` of ``spec``; with ``job``, its phases' statuses highlighted.

    Statuses are states (the initial one entered from ``[*]``, terminal ones leading to
    ``[*]``), a status with deadlines showing them under its name (``⏱ 2h ♥ 5m``: timeout,
    heartbeat); each transition is an arrow labelled with its trigger and guards. Each state
    is declared ``state "name" as ID`` first (``state "name<br/>⏱ 2h" as ID`` with deadlines);
    ID is the name unless Mermaid would misread it (``note``, ``State``, ``root``...), then
    ``_name``: the other lines name states by ID.
    """
    ids = _mermaid_ids(spec)
    lines = ["stateDiagram-v2", f"    %% phase set {spec.name}"]
    # Every state declared, in declaration order: its label is the status name whatever its
    # id (the dashboard's diagram.js reads these lines to find each status's node), then its
    # deadlines on a second line of the label. (An "id: text" line would make them a
    # description instead: drawn under a title bar, or in place of an undeclared state's name.)
    deadlines = {name: f"<br/>{_mermaid_text(text)}" for name, text in _deadline_labels(spec)}
    lines.extend(
        f'    state "{name}{deadlines.get(name, "")}" as {id_}' for name, id_ in ids.items()
    )
    lines.append(f"    [*] --> {ids[spec.initial_status]}")
    lines.extend(f"    {ids[e.source]} --> {ids[e.dest]}: {e.label}" for e in _edges(spec))
    lines.extend(f"    {ids[name]} --> [*]" for name in _terminal(spec))
    if job is not None:
        phases = _phase_statuses(job)
        occupied = list(dict.fromkeys(status for _, status in phases))
        for kind, (name, fill, stroke) in _OCCUPIED.items():
            members = [ids[status] for status in occupied if _kind(spec, status) == kind]
            if members:
                lines.append(f"    classDef {name} fill:{fill},stroke:{stroke},stroke-width:2px")
                lines.append(f"    class {','.join(members)} {name}")
        lines.append(f"    note right of {ids[_note_anchor(spec, job, occupied)]}")
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


# -- the overview: the job's phases in order, and the aggregation rules ---------------------


def _number(value: float) -> str:
    """``2`` for 2.0, ``2.5`` for 2.5: a weight or a share as a person writes it."""
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _weights(spec: PhaseSet) -> list[tuple[str, str]]:
    """``(phase, "weight 2 · 40%")`` for each phase, in order: its weight and share of progress."""
    phases = spec.definition.phases
    total = sum(p.weight for p in phases)
    return [
        (p.name, f"weight {_number(p.weight)} · {_number(round(100 * p.weight / total, 1))}%")
        for p in phases
    ]


def _rules(spec: PhaseSet, job: JobRecord | None) -> list[str]:
    """The aggregation rules as lines of a note: which rule gives the job's status, how the
    current phase is chosen, how progress adds up; with ``job``, which rule fires now."""
    definition = spec.definition
    lines = ["overall status: the first rule that fires"]
    lines.extend(
        f"  {number}. {rule.describe()}"
        for number, rule in enumerate(definition.aggregate.status, start=1)
    )
    if definition.aggregate.current_phase is not None:
        groups = [set(group) for group in definition.aggregate.current_phase]
    else:
        groups = [set(group) for group in default_current_phase_groups(definition)]
    ordered = [[s for s in spec.statuses if s in group] for group in groups]
    lines.append(
        "current phase: the first phase in "
        + ", else in ".join(" or ".join(group) for group in ordered if group)
    )
    lines.append(
        "progress: the phases' weighted mean, each at most "
        f"{_number(spec.progress_cap)}% until a success status"
    )
    if job is not None:
        lines.append(f"now: {spec.aggregator.explain([p.status for p in job.phases])}")
    return lines


def _as_record(job: JobState | JobRecord) -> JobRecord:
    return job.to_record() if isinstance(job, JobState) else job


def _phase_kind(spec: PhaseSet, status: str) -> str | None:
    """How a phase in ``status`` is coloured in the overview: not at all before it starts."""
    return None if status == spec.initial_status else _kind(spec, status)


def overview_mermaid(spec: PhaseSet, job: JobState | JobRecord | None = None) -> str:
    """A Mermaid ``stateDiagram-v2`` of the whole job: its phases left to right, in order, each
    with its weight and share of the progress, and a note with the aggregation rules.

    With ``job``, each phase also shows its status and progress, coloured once it has left
    the initial status, and the note says which rule gives the job's status now.
    """
    record = _as_record(job) if job is not None else None
    ids = {name: f"p{index}" for index, name in enumerate(spec.phase_names)}
    lines = [
        "stateDiagram-v2",
        f"    %% phase set {spec.name}: its phases in order, and the aggregation rules",
        "    direction LR",
    ]
    lines.extend(f'    state "{name}" as {id_}' for name, id_ in ids.items())
    order = list(ids.values())
    lines.extend(f"    {a} --> {b}" for a, b in pairwise(order))
    lines.extend(f"    {ids[name]}: {_mermaid_text(text)}" for name, text in _weights(spec))
    if record is not None:
        lines.extend(
            f"    {ids[p.phase_name]}: {_mermaid_text(f'{p.status} · {p.progress:.1f}%')}"
            for p in record.phases
        )
        for kind, (name, fill, stroke) in _OCCUPIED.items():
            members = [
                ids[p.phase_name] for p in record.phases if _phase_kind(spec, p.status) == kind
            ]
            if members:
                lines.append(f"    classDef {name} fill:{fill},stroke:{stroke},stroke-width:2px")
                lines.append(f"    class {','.join(members)} {name}")
    lines.append(f"    note right of {order[-1]}")
    if record is not None:
        lines.append(f"        {_job_summary(record, _mermaid_text)}")
    # Inside a note only a line that starts with "end note" ends it: ours start with a word.
    lines.extend(
        f"        {_mermaid_text(line.strip(), keep=_NOTE_KEEP)}" for line in _rules(spec, record)
    )
    lines.append("    end note")
    return "\n".join(lines) + "\n"


def overview_dot(spec: PhaseSet, job: JobState | JobRecord | None = None) -> str:
    """A Graphviz ``digraph`` of the whole job: its phases left to right, in order, each with
    its weight and share of the progress, and a note with the aggregation rules; with ``job``,
    each phase's status and progress too, filled in colour once it has left the initial status."""
    record = _as_record(job) if job is not None else None
    phases = {p.phase_name: p for p in record.phases} if record is not None else {}
    lines = [
        f"digraph {_dot_string(spec.name)} {{",
        "    rankdir=LR;",
        '    node [shape=box, style="rounded", fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
    ]
    for name, text in _weights(spec):
        label = f"{name}\n{text}"
        attributes = []
        phase = phases.get(name)
        if phase is not None:
            label += f"\n{phase.status} · {phase.progress:.1f}%"
            kind = _phase_kind(spec, phase.status)
            if kind is not None:
                attributes += ['style="rounded,filled"', f'fillcolor="{_OCCUPIED[kind][1]}"']
        lines.append(
            f"    {_dot_string(name)} [{', '.join([f'label={_dot_string(label)}', *attributes])}];"
        )
    names = list(spec.phase_names)
    lines.extend(f"    {_dot_string(a)} -> {_dot_string(b)};" for a, b in pairwise(names))
    note = [_job_summary(record, _escape_dot_label)] if record is not None else []
    note += [_escape_dot_label(line) for line in _rules(spec, record)]
    text = "".join(f"{line}\\l" for line in note)
    lines.append(f'    "__rules" [shape=note, style=filled, fillcolor="#fff2cc", label="{text}"];')
    lines.append(f'    {_dot_string(names[-1])} -> "__rules" [style=dashed, arrowhead=none];')
    lines.append("}")
    return "\n".join(lines) + "\n"
