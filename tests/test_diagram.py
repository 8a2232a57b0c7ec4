"""Diagrams of phase sets: Mermaid and Graphviz text, with and without a job."""

from __future__ import annotations

import statemachine
from statemachine import PhaseSet
from statemachine.runtime import to_dot, to_mermaid

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
    # ⏱ (9201) the timeout, ♥ (9829) the heartbeat, as Mermaid entity codes.
    assert "    busy: #9201; 2h #9829; 5m" in mermaid
    assert "    idle_long: #9201; 1h30m" in mermaid
    assert not any(line.startswith(("    idle:", "    done:")) for line in mermaid)
    dot = to_dot(spec)
    assert '"busy" [label="busy\\n⏱ 2h ♥ 5m"];' in dot
    assert '"idle_long" [label="idle_long\\n⏱ 1h30m"];' in dot
    # With a job: the deadline, then the phases in that status.
    job = spec.new_job("j")
    job.phases["a"].go()
    assert '"busy" [label="busy\\n⏱ 2h ♥ 5m\\n(a)", style="rounded,filled"' in to_dot(spec, job)
    assert "    busy: #9201; 2h #9829; 5m" in to_mermaid(spec, job).splitlines()


def test_a_diagram_without_deadlines_has_no_descriptions(ingestion: PhaseSet) -> None:
    assert "⏱" not in to_dot(ingestion)
    assert not [
        line for line in to_mermaid(ingestion).splitlines() if ": " in line and "-->" not in line
    ]
