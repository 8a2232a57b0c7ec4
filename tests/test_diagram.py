"""Diagrams of phase sets: Mermaid and Graphviz text, with and without a job."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import statemachine
from statemachine import PhaseSet
from statemachine.cli import cli
from statemachine.runtime import to_dot, to_mermaid
from statemachine.runtime.diagram import overview_dot, overview_mermaid

GUARDED = """\
phasekit: 1
name: guarded
statuses:
  idle: {initial: true}
  busy: {active: true}
  done: {terminal: true, success: true}
  cancelled: {terminal: true}
transitions:
  - {trigger: go, source: idle, dest: busy, conditions: [has_capacity], unless: [frozen]}
  - {trigger: finish, source: busy, dest: done}
  - {trigger: cancel, source: "*", dest: cancelled}
phases:
  - {name: a}
  - {name: b}
aggregate:
  status:
    - {all: [done], then: done}
    - {otherwise: idle}
"""


def test_mermaid_labels_transitions_with_trigger_and_guards() -> None:
    text = to_mermaid(statemachine.parse_spec(GUARDED))
    assert "    idle --> busy: go [has_capacity, !frozen]" in text.splitlines()


def test_a_star_source_is_drawn_from_every_status() -> None:
    lines = to_mermaid(statemachine.parse_spec(GUARDED)).splitlines()
    for status in ("idle", "busy", "done", "cancelled"):
        assert f"    {status} --> cancelled: cancel" in lines


def test_mermaid_marks_the_initial_and_terminal_statuses(ingestion: PhaseSet) -> None:
    lines = to_mermaid(ingestion).splitlines()
    assert lines[0] == "stateDiagram-v2"
    assert "    [*] --> not_started" in lines
    assert [line for line in lines if line.endswith("--> [*]")] == [
        "    completed --> [*]",
        "    failed --> [*]",
    ]
    assert not any("classDef" in line or "note" in line for line in lines)


def test_mermaid_with_a_job_highlights_occupied_statuses_and_lists_phases(
    ingestion: PhaseSet,
) -> None:
    job = ingestion.new_job("j1")
    job.phases["discovery"].start()
    job.phases["discovery"].complete()
    job.phases["extraction"].start()
    lines = to_mermaid(ingestion, job).splitlines()
    assert "    class completed occupied_success" in lines
    assert "    class running,not_started occupied" in lines
    assert "    classDef occupied fill:#ffd966,stroke:#7f6000,stroke-width:2px" in lines
    start = lines.index("    note right of running")
    assert lines[start + 1 : start + 7] == [
        "        job j1 (running, 25.0%)",
        "        discovery: completed",
        "        extraction: running",
        "        transformation: not_started",
        "        loading: not_started",
        "    end note",
    ]


def test_a_job_record_draws_like_the_job(ingestion: PhaseSet) -> None:
    job = ingestion.new_job("j1")
    job.phases["discovery"].start()
    assert to_mermaid(ingestion, job.to_record()) == to_mermaid(ingestion, job)
    assert to_dot(ingestion, job.to_record()) == to_dot(ingestion, job)


def test_job_ids_cannot_break_out_of_the_mermaid_note(ingestion: PhaseSet) -> None:
    job = ingestion.new_job("x; end note [*] --> hacked %% <b>")
    note = next(line for line in to_mermaid(ingestion, job).splitlines() if "job x" in line)
    assert note == (
        "        job x#59; end note #91;#42;#93; --#62; hacked #37;#37; #60;b#62; "
        "(not_started, 0.0%)"
    )


def test_dot_draws_statuses_transitions_and_end_markers(ingestion: PhaseSet) -> None:
    lines = to_dot(ingestion).splitlines()
    assert lines[0] == 'digraph "ingestion" {'
    assert lines[-1] == "}"
    assert '    "__start" -> "not_started";' in lines
    assert '    "running" -> "paused" [label="pause"];' in lines
    assert '    "completed" [peripheries=2];' in lines
    assert '    "failed" -> "__end";' in lines


def test_finished_statuses_are_coloured_by_success(ingestion: PhaseSet) -> None:
    job = ingestion.new_job("j1")
    job.phases["discovery"].start()
    job.phases["discovery"].complete()
    job.phases["extraction"].fail("disk full")
    mermaid = to_mermaid(ingestion, job).splitlines()
    assert "    class completed occupied_success" in mermaid
    assert "    class failed occupied_failure" in mermaid
    dot = to_dot(ingestion, job)
    assert 'label="failed\\n(extraction)", style="rounded,filled", fillcolor="#ea9999"' in dot


def test_dot_with_a_job_fills_occupied_statuses_and_adds_a_note(ingestion: PhaseSet) -> None:
    job = ingestion.new_job('quote"back\\slash')
    job.phases["discovery"].start()
    text = to_dot(ingestion, job)
    assert '"running" [label="running\\n(discovery)", style="rounded,filled", fillcolor=' in text
    assert 'job quote\\"back\\\\slash (running, 0.0%)\\l' in text
    assert "discovery: running\\l" in text
    assert '"__job" -> "running" [style=dashed, arrowhead=none];' in text


TIMED = (
    GUARDED.replace(", conditions: [has_capacity], unless: [frozen]", "")
    .replace(
        "  busy: {active: true}",
        "  busy: {active: true, timeout: 2h, heartbeat: 5m, on_timeout: cancel}\n"
        "  idle_long: {timeout: 1h30m, on_timeout: cancel}",
    )
    .replace(
        "  - {trigger: finish,",
        "  - {trigger: wait, source: busy, dest: idle_long}\n  - {trigger: finish,",
    )
)


def test_statuses_with_deadlines_are_described_by_them_in_both_formats() -> None:
    spec = statemachine.parse_spec(TIMED)
    mermaid = to_mermaid(spec).splitlines()
    # ⏱ (9201) the timeout, ♥ (9829) the heartbeat, as Mermaid entity codes, on a line of the
    # label under the name (a description line would drop the name or add a title bar).
    assert '    state "busy<br/>#9201; 2h #9829; 5m" as busy' in mermaid
    assert '    state "idle_long<br/>#9201; 1h30m" as idle_long' in mermaid
    assert '    state "idle" as idle' in mermaid
    assert not any(re.match(r"    \w+: ", line) for line in mermaid)
    dot = to_dot(spec)
    assert '"busy" [label="busy\\n⏱ 2h ♥ 5m"];' in dot
    assert '"idle_long" [label="idle_long\\n⏱ 1h30m"];' in dot
    # With a job: the deadline, then the phases in that status.
    job = spec.new_job("j")
    job.phases["a"].go()
    assert '"busy" [label="busy\\n⏱ 2h ♥ 5m\\n(a)", style="rounded,filled"' in to_dot(spec, job)
    assert '    state "busy<br/>#9201; 2h #9829; 5m" as busy' in to_mermaid(spec, job).splitlines()


def test_a_diagram_without_deadlines_has_no_descriptions(ingestion: PhaseSet) -> None:
    assert "⏱" not in to_dot(ingestion)
    assert not [
        line for line in to_mermaid(ingestion).splitlines() if ": " in line and "-->" not in line
    ]


# -- names Mermaid reads as its own -----------------------------------------------------------

#: The nine words of stateDiagram-v2 that broke the drawing as status names (one with deadlines,
#: so it gets a description line), each also a trigger; a job of it occupies them all.
KEYWORDS = """\
phasekit: 1
name: keywords
statuses:
  default: {initial: true}
  state: {active: true, timeout: 2h, heartbeat: 5m, on_timeout: abort}
  note: {}
  class: {}
  classDef: {}
  click: {}
  scale: {}
  stateDiagram: {terminal: true}
  style: {terminal: true, success: true}
transitions:
  - {trigger: state, source: default, dest: state}
  - {trigger: note, source: state, dest: note}
  - {trigger: class, source: note, dest: class}
  - {trigger: classDef, source: class, dest: classDef}
  - {trigger: click, source: classDef, dest: click}
  - {trigger: scale, source: click, dest: scale}
  - {trigger: style, source: scale, dest: style}
  - trigger: abort
    source: [default, state, note, class, classDef, click, scale]
    dest: stateDiagram
phases:
  - {name: state}
  - {name: note}
  - {name: end}
  - {name: style, weight: 2}
aggregate:
  status:
    - {any: [stateDiagram], then: stateDiagram}
    - {all: [style], then: style}
    - {otherwise: default}
"""

#: More names Mermaid misreads: the keywords in other cases, the other words of its lexer
#: (``href``, ``accTitle`` and ``accDescr`` before a description), the ids of its own nodes
#: (``root``, ``root_start``, ``root_end``), a line ending in "direction" before one starting
#: with a direction (its ``.*direction\\s+TB`` rule reads across lines); and Graphviz's words.
TRAPS = """\
phasekit: 1
name: traps
statuses:
  redirection: {initial: true}
  tbd: {}
  Note: {}
  STATE: {active: true, timeout: 1h, on_timeout: direction}
  accTitle: {timeout: 5m, on_timeout: direction}
  accDescr: {heartbeat: 30s, on_timeout: direction}
  HREF: {}
  Default: {}
  ClassDef: {}
  direction: {}
  LR_check: {}
  root: {}
  root_start: {}
  root_end: {}
  node: {}
  edge: {}
  graph: {}
  Digraph: {}
  subgraph: {}
  strict: {}
  done: {terminal: true, success: true}
  failed: {terminal: true}
transitions:
  - {trigger: direction, source: redirection, dest: tbd}
  - {trigger: direction, source: tbd, dest: Note}
  - {trigger: go, source: Note, dest: STATE, conditions: [state], unless: [direction]}
  - {trigger: go, source: STATE, dest: accTitle}
  - {trigger: go, source: accTitle, dest: accDescr}
  - {trigger: go, source: accDescr, dest: HREF}
  - {trigger: go, source: HREF, dest: Default}
  - {trigger: go, source: Default, dest: ClassDef}
  - {trigger: go, source: ClassDef, dest: direction}
  - {trigger: direction, source: direction, dest: LR_check}
  - {trigger: go, source: LR_check, dest: root}
  - {trigger: go, source: root, dest: root_start}
  - {trigger: go, source: root_start, dest: root_end}
  - {trigger: go, source: root_end, dest: node}
  - {trigger: go, source: node, dest: edge}
  - {trigger: go, source: edge, dest: graph}
  - {trigger: go, source: graph, dest: Digraph}
  - {trigger: go, source: Digraph, dest: subgraph}
  - {trigger: go, source: subgraph, dest: strict}
  - {trigger: go, source: strict, dest: done}
  - {trigger: direction, source: [STATE, accTitle, accDescr], dest: failed}
phases:
  - {name: p-1}
  - {name: end}
  - {name: note}
aggregate:
  status:
    - {any: [failed], then: failed}
    - {all: [done], then: done}
    - {otherwise: redirection}
"""


def keywords_job(spec: PhaseSet) -> statemachine.JobState:
    """A job of ``KEYWORDS`` whose phases are in ``state``, ``stateDiagram``, ``default`` and
    ``style``: every kind of highlight, the note on ``state``."""
    job = spec.new_job("job; end note")
    job.phases["state"].trigger("state")
    job.phases["note"].trigger("abort")
    for trigger in ("state", "note", "class", "classDef", "click", "scale", "style"):
        job.phases["style"].trigger(trigger)
    return job


def traps_job(spec: PhaseSet) -> statemachine.JobState:
    """A job of ``TRAPS`` whose phases are in ``tbd``, ``redirection`` and ``failed``."""
    job = spec.new_job("traps")
    job.phases["p-1"].trigger("direction")
    job.phases["note"].trigger("direction")
    job.phases["note"].trigger("direction")
    return job


def _declared(text: str) -> dict[str, str]:
    """The ``state "status" as id`` lines of a Mermaid source (``state "status<br/>…" as id``
    with deadlines): each status's id."""
    found = (
        re.fullmatch(r'    state "([\w-]+)(?:<br/>[^"]*)?" as (\w+)', line)
        for line in text.splitlines()
    )
    return {m[1]: m[2] for m in found if m}


def test_the_keyword_phase_sets_are_valid() -> None:
    for text in (KEYWORDS, TRAPS):
        spec = statemachine.parse_spec(text)
        assert not [i for i in statemachine.check_spec(spec) if i.severity == "error"]


def test_every_state_is_declared_with_its_name_as_label_in_declaration_order(
    ingestion: PhaseSet,
) -> None:
    lines = to_mermaid(ingestion).splitlines()
    declared = _declared("\n".join(lines))
    assert declared == {name: name for name in ingestion.statuses}
    assert list(declared) == list(ingestion.statuses)
    # Declared before any other line names a state.
    assert lines[2 : 2 + len(declared)] == [f'    state "{n}" as {n}' for n in ingestion.statuses]


def test_mermaid_keywords_are_drawn_under_an_alias_everywhere_a_state_is_named() -> None:
    spec = statemachine.parse_spec(KEYWORDS)
    text = to_mermaid(spec, keywords_job(spec))
    lines = text.splitlines()
    assert _declared(text) == {name: f"_{name}" for name in spec.statuses}
    assert "    [*] --> _default" in lines
    # Triggers are labels, free text after the colon: they stay as they are.
    assert "    _default --> _state: state" in lines
    assert "    _class --> _classDef: classDef" in lines
    assert "    _style --> [*]" in lines
    assert '    state "state<br/>#9201; 2h #9829; 5m" as _state' in lines
    assert "    class _stateDiagram occupied_failure" in lines
    assert "    class _style occupied_success" in lines
    assert "    class _state,_default occupied" in lines
    assert "    note right of _state" in lines
    # No line names a state by a bare keyword.
    named = re.compile(
        r"^    (?:\[\*\] --> )?(\w+)(?: -->|:)|^    class (\S+) |^    note right of (\w+)$"
    )
    for line in lines:
        match = named.match(line)
        if match:
            for group in filter(None, match.groups()):
                assert all(part.startswith("_") for part in group.split(",")), line


def test_names_mermaid_misreads_in_any_case_are_aliased_and_the_rest_are_not() -> None:
    spec = statemachine.parse_spec(TRAPS)
    ids = _declared(to_mermaid(spec))
    aliased = {name for name, id_ in ids.items() if id_ != name}
    assert aliased == {
        "tbd",
        "Note",
        "STATE",
        "accTitle",
        "accDescr",
        "HREF",
        "Default",
        "ClassDef",
        "LR_check",
        "root",
        "root_start",
        "root_end",
    }
    assert all(ids[name] == f"_{name}" for name in aliased)
    # "direction" alone is no keyword (only before a direction, which no id starts with), nor
    # are Graphviz's words Mermaid's; in dot every name is quoted anyway.
    assert ids["direction"] == "direction"
    assert ids["node"] == "node"
    assert '    "subgraph" -> "strict" [label="go"];' in to_dot(spec).splitlines()


# -- the overview ------------------------------------------------------------------------------


def test_the_overview_draws_the_phases_in_order_with_weights_and_the_rules() -> None:
    spec = statemachine.load_spec("deployment")
    lines = overview_mermaid(spec).splitlines()
    assert lines[0] == "stateDiagram-v2"
    assert "    direction LR" in lines
    assert _declared("\n".join(lines)) == {
        "build": "p0",
        "test": "p1",
        "staging": "p2",
        "canary": "p3",
        "production": "p4",
    }
    assert [line for line in lines if "-->" in line] == [
        "    p0 --> p1",
        "    p1 --> p2",
        "    p2 --> p3",
        "    p3 --> p4",
    ]
    # Weights 2, 3, 1, 2, 4 of 12: the share of each in the job's progress.
    assert "    p0: weight 2 #183; 16.7#37;" in lines
    assert "    p1: weight 3 #183; 25#37;" in lines
    start = lines.index("    note right of p4")
    assert lines[start + 1 : start + 4] == [
        "        overall status: the first rule that fires",
        "        1. any phase failed -#62; failed",
        "        2. any phase cancelled -#62; cancelled",
    ]
    assert (
        "        current phase: the first phase in running or paused, else in failed or "
        "cancelled, else in pending"
    ) in lines
    assert lines[-1] == "    end note"
    assert not any("class" in line for line in lines)


def test_the_overview_of_a_job_shows_each_phase_and_the_rule_that_fires() -> None:
    spec = statemachine.load_spec("deployment")
    job = spec.new_job("d1")
    job.phases["build"].trigger("start")
    job.phases["build"].trigger("succeed")
    job.phases["test"].trigger("start")
    lines = overview_mermaid(spec, job).splitlines()
    assert "    p0: succeeded #183; 100.0#37;" in lines
    assert "    p1: running #183; 0.0#37;" in lines
    assert "    class p0 occupied_success" in lines
    # A phase still in the initial status is not coloured.
    assert "    class p1 occupied" in lines
    assert "        job d1 (deploying, 16.7%)" in lines
    assert lines[-2] == (
        "        now: deploying: rule 5 (any phase running or succeeded -#62; deploying) "
        "fired because of build, test"
    )
    assert overview_mermaid(spec, job.to_record()) == overview_mermaid(spec, job)
    dot = overview_dot(spec, job)
    assert '"build" [label="build\\nweight 2 · 16.7%\\nsucceeded · 100.0%", style=' in dot
    assert '"staging" [label="staging\\nweight 1 · 8.3%\\npending · 0.0%"];' in dot
    assert "\\l  5. any phase running or succeeded -> deploying\\l" in dot
    assert '    "production" -> "__rules" [style=dashed, arrowhead=none];' in dot


def test_the_overview_of_phases_named_like_keywords_uses_its_own_ids() -> None:
    spec = statemachine.parse_spec(KEYWORDS)
    text = overview_mermaid(spec)
    assert _declared(text) == {"state": "p0", "note": "p1", "end": "p2", "style": "p3"}
    assert "    p3: weight 2 #183; 40#37;" in text.splitlines()
    dot = overview_dot(spec).splitlines()
    assert '    "state" -> "note";' in dot
    assert "current phase: the first phase in state" in overview_dot(spec)


def test_phasekit_graph_overview_prints_it_for_a_file_and_for_a_stored_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PHASEKIT_STORE", raising=False)
    runner = CliRunner()
    spec = statemachine.load_spec("deployment")
    run = runner.invoke(cli, ["graph", "deployment", "--overview"])
    assert run.exit_code == 0, run.output
    assert run.stdout == overview_mermaid(spec)
    run = runner.invoke(cli, ["graph", "deployment", "--overview", "--format", "dot"])
    assert run.stdout == overview_dot(spec)
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    with statemachine.Tracker(spec, store=store) as tracker:
        tracker.create_job("d1")
        tracker.fire("d1", "build", "start")
    run = runner.invoke(cli, ["graph", "--overview", "--job", "d1", "--store", store])
    assert run.exit_code == 0, run.output
    assert "    p0: running #183; 0.0#37;" in run.stdout.splitlines()
    assert "        job d1 (deploying, 0.0%)" in run.stdout.splitlines()
    # Without --overview, the same job's phase diagram, as before.
    run = runner.invoke(cli, ["graph", "--job", "d1", "--store", store])
    assert "    note right of running" in run.stdout.splitlines()


def test_phasekit_graph_draws_a_phase_set_of_keywords_from_stdin() -> None:
    run = CliRunner().invoke(cli, ["graph", "-"], input=KEYWORDS)
    assert run.exit_code == 0, run.output
    assert run.stdout == to_mermaid(statemachine.parse_spec(KEYWORDS))
    assert '    state "classDef" as _classDef' in run.stdout.splitlines()
