"""Static analysis of phase sets: each warning, where it points, and the exact rule check."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from statemachine.errors import SpecIssue
from statemachine.spec import PhaseSetDef
from statemachine.spec.checks import (
    MAX_RULE_CHECKS,
    MAX_STATUS_SETS,
    analyse,
    first_rule,
    reachable_statuses,
    status_set_count,
    status_sets,
)

CONFIG = Path(__file__).resolve().parent.parent / "config"


def phase_set(
    *,
    statuses: dict[str, dict[str, Any]] | None = None,
    transitions: list[dict[str, Any]] | None = None,
    phases: int = 2,
    rules: list[dict[str, Any]] | None = None,
    current_phase: list[list[str]] | None = None,
) -> PhaseSetDef:
    """A small phase set (new -> busy -> done) with the given parts replaced."""
    aggregate: dict[str, Any] = {
        "status": rules if rules is not None else [{"otherwise": "new"}],
    }
    if current_phase is not None:
        aggregate["current_phase"] = current_phase
    return PhaseSetDef.model_validate(
        {
            "phasekit": 1,
            "name": "example",
            "statuses": statuses
            if statuses is not None
            else {"new": {"initial": True}, "busy": {"active": True}, "done": {"terminal": True}},
            "transitions": transitions
            if transitions is not None
            else [
                {"trigger": "start", "source": "new", "dest": "busy"},
                {"trigger": "finish", "source": "busy", "dest": "done"},
            ],
            "phases": [{"name": f"p{i}"} for i in range(phases)],
            "aggregate": aggregate,
        }
    )


def codes(issues: list[SpecIssue]) -> list[tuple[str, str]]:
    return [(issue.code, issue.path) for issue in issues]


def never_firing(defn: PhaseSetDef) -> set[int]:
    return {
        int(issue.path.removeprefix("aggregate.status[").rstrip("]"))
        for issue in analyse(defn)
        if issue.code == "rule-never-fires"
    }


# -- the bundled phase set and the basics -------------------------------------------------


def test_bundled_ingestion_phase_set_has_no_warnings() -> None:
    data = yaml.safe_load((CONFIG / "ingestion.yaml").read_text())
    assert analyse(PhaseSetDef.model_validate(data)) == []


def test_minimal_sound_phase_set_has_no_warnings() -> None:
    assert analyse(phase_set()) == []


def test_every_issue_is_a_warning_named_after_the_file() -> None:
    defn = phase_set(statuses={"new": {"initial": True}, "orphan": {}, "done": {"terminal": True}})
    issues = analyse(defn, filename="jobs.yaml")
    assert issues
    assert {(i.severity, i.filename) for i in issues} == {("warning", "jobs.yaml")}


def test_issue_without_a_known_location_has_no_line_or_column() -> None:
    defn = phase_set(
        statuses={"new": {"initial": True}, "busy": {}, "done": {"terminal": True}, "x": {}}
    )
    issue = next(i for i in analyse(defn, {"statuses.busy": (3, 3)}) if i.path == "statuses.x")
    assert (issue.line, issue.column) == (None, None)


# -- statuses and transitions -------------------------------------------------------------


def test_status_no_transition_leads_to_is_unreachable_and_located() -> None:
    defn = phase_set(
        statuses={
            "new": {"initial": True},
            "busy": {},
            "done": {"terminal": True},
            "archived": {"terminal": True},
        }
    )
    [issue] = analyse(defn, {"statuses.archived": (7, 3)})
    assert (issue.code, issue.path, issue.line, issue.column) == (
        "unreachable-status",
        "statuses.archived",
        7,
        3,
    )
    assert "'archived'" in issue.message and "'new'" in issue.message


def test_status_reached_only_from_an_unreachable_status_is_unreachable() -> None:
    defn = phase_set(
        statuses={"new": {"initial": True}, "busy": {}, "done": {"terminal": True}, "a": {}},
        transitions=[
            {"trigger": "start", "source": "new", "dest": "busy"},
            {"trigger": "finish", "source": ["busy", "a"], "dest": "done"},
            {"trigger": "loop", "source": "a", "dest": "a"},
        ],
    )
    assert codes(analyse(defn)) == [("unreachable-status", "statuses.a")]


def test_star_source_makes_every_status_a_source() -> None:
    defn = phase_set(
        statuses={"new": {"initial": True}, "busy": {}, "done": {"terminal": True}},
        transitions=[
            {"trigger": "start", "source": "*", "dest": "busy"},
            {"trigger": "finish", "source": "busy", "dest": "done"},
        ],
    )
    assert reachable_statuses(defn) == ["new", "busy", "done"]
    assert [i.code for i in analyse(defn)] == ["terminal-has-exit"]


def test_non_terminal_status_without_a_way_out_is_a_dead_end_and_located() -> None:
    defn = phase_set(
        statuses={"new": {"initial": True}, "busy": {}, "done": {}},
    )
    [issue] = analyse(defn, {"statuses.done": (5, 3)})
    assert (issue.code, issue.path, issue.line) == ("dead-end-status", "statuses.done", 5)
    assert "mark it terminal" in issue.message


def test_terminal_status_with_an_explicit_exit_is_reported_at_its_first_transition() -> None:
    defn = phase_set(
        transitions=[
            {"trigger": "start", "source": "new", "dest": "busy"},
            {"trigger": "finish", "source": "busy", "dest": "done"},
            {"trigger": "reopen", "source": "done", "dest": "busy"},
            {"trigger": "reset", "source": ["busy", "done"], "dest": "new"},
        ],
    )
    [issue] = analyse(defn, {"transitions[2]": (9, 5)})
    assert (issue.code, issue.path, issue.line) == ("terminal-has-exit", "transitions[2]", 9)
    assert "reopen" in issue.message and "reset" in issue.message


def test_star_source_leaving_terminal_statuses_is_reported_once_at_that_transition() -> None:
    defn = phase_set(
        statuses={
            "new": {"initial": True},
            "busy": {},
            "done": {"terminal": True},
            "failed": {"terminal": True},
        },
        transitions=[
            {"trigger": "start", "source": "new", "dest": "busy"},
            {"trigger": "finish", "source": "busy", "dest": "done"},
            {"trigger": "fail", "source": "*", "dest": "failed"},
        ],
    )
    [issue] = analyse(defn, {"transitions[2]": (11, 5)})
    assert (issue.code, issue.path, issue.line) == ("terminal-has-exit", "transitions[2]", 11)
    assert "done, failed" in issue.message and "list its sources explicitly" in issue.message


def test_status_with_exits_but_no_way_to_a_terminal_status_cannot_finish() -> None:
    defn = phase_set(
        statuses={"new": {"initial": True}, "busy": {}, "stuck": {}, "done": {"terminal": True}},
        transitions=[
            {"trigger": "start", "source": "new", "dest": "busy"},
            {"trigger": "finish", "source": "busy", "dest": "done"},
            {"trigger": "wedge", "source": "busy", "dest": "stuck"},
            {"trigger": "spin", "source": "stuck", "dest": "stuck"},
        ],
    )
    [issue] = analyse(defn, {"statuses.stuck": (4, 3)})
    assert (issue.code, issue.path, issue.line) == ("cannot-finish", "statuses.stuck", 4)
    assert "(done)" in issue.message


def test_dead_end_status_is_not_also_reported_as_cannot_finish() -> None:
    defn = phase_set(
        statuses={"new": {"initial": True}, "busy": {}, "stuck": {}, "done": {"terminal": True}},
        transitions=[
            {"trigger": "start", "source": "new", "dest": "busy"},
            {"trigger": "finish", "source": "busy", "dest": "done"},
            {"trigger": "wedge", "source": "busy", "dest": "stuck"},
        ],
    )
    assert codes(analyse(defn)) == [("dead-end-status", "statuses.stuck")]


def test_without_terminal_statuses_every_reachable_status_cannot_finish() -> None:
    defn = phase_set(
        statuses={"new": {"initial": True}, "busy": {}},
        transitions=[
            {"trigger": "start", "source": "new", "dest": "busy"},
            {"trigger": "stop", "source": "busy", "dest": "new"},
        ],
    )
    issues = analyse(defn)
    assert codes(issues) == [("cannot-finish", "statuses.new"), ("cannot-finish", "statuses.busy")]
    assert "none is declared" in issues[0].message


def test_current_phase_group_naming_an_unreachable_status_is_reported_and_located() -> None:
    defn = phase_set(
        statuses={"new": {"initial": True}, "busy": {}, "done": {"terminal": True}, "idle": {}},
        transitions=[
            {"trigger": "start", "source": "new", "dest": "busy"},
            {"trigger": "finish", "source": ["busy", "idle"], "dest": "done"},
        ],
        current_phase=[["busy", "idle"], ["new"]],
    )
    path = "aggregate.current_phase[0][1]"
    issue = next(i for i in analyse(defn, {path: (20, 15)}) if i.path == path)
    assert (issue.code, issue.line, issue.column) == ("current-phase-unreachable-status", 20, 15)


# -- aggregation rules --------------------------------------------------------------------


def test_rule_shadowed_by_an_earlier_rule_is_reported_naming_it_and_located() -> None:
    defn = phase_set(
        rules=[
            {"any": ["busy", "done"], "then": "busy"},
            {"any": ["busy"], "then": "busy"},
            {"otherwise": "new"},
        ]
    )
    [issue] = analyse(defn, {"aggregate.status[1]": (30, 7)})
    assert (issue.code, issue.path, issue.line) == ("rule-never-fires", "aggregate.status[1]", 30)
    assert issue.message == (
        "rule 2 (any phase busy -> busy) never fires: "
        "rule 1 (any phase busy or done -> busy) always fires first"
    )


def test_rule_shadowed_by_several_rules_names_each_of_them() -> None:
    defn = phase_set(
        rules=[
            {"any": ["busy"], "then": "busy"},
            {"all": ["new"], "then": "new"},
            {"all": ["busy", "new"], "then": "mixed"},
            {"otherwise": "done"},
        ]
    )
    [issue] = analyse(defn)
    assert issue.path == "aggregate.status[2]"
    assert (
        "rule 1 (any phase busy -> busy) and rule 2 (every phase new -> new) always fire first"
        in (issue.message)
    )


def test_rules_after_otherwise_never_fire() -> None:
    defn = phase_set(rules=[{"otherwise": "new"}, {"any": ["busy"], "then": "busy"}])
    [issue] = analyse(defn)
    assert issue.path == "aggregate.status[1]"
    assert "rule 1 (otherwise -> new) always fires first" in issue.message


def test_rule_naming_only_unreachable_statuses_never_fires() -> None:
    defn = phase_set(
        statuses={
            "new": {"initial": True},
            "busy": {},
            "done": {"terminal": True},
            "lost": {"terminal": True},
        },
        rules=[{"any": ["lost"], "then": "lost"}, {"otherwise": "new"}],
    )
    issue = next(i for i in analyse(defn) if i.code == "rule-never-fires")
    assert issue.path == "aggregate.status[0]"
    assert "none of its statuses (lost) can be reached" in issue.message


def test_rule_needing_more_statuses_than_phases_never_fires_in_a_one_phase_job() -> None:
    # `any busy` is satisfied only by {busy}, which `every phase busy` takes, unless a
    # second phase is elsewhere at the same time.
    rules: list[dict[str, Any]] = [
        {"all": ["busy"], "then": "busy"},
        {"all": ["new"], "then": "new"},
        {"all": ["done"], "then": "done"},
        {"any": ["busy"], "then": "mixed"},
        {"otherwise": "mixed"},
    ]
    issue, otherwise = analyse(phase_set(phases=1, rules=rules))
    assert (issue.path, otherwise.path) == ("aggregate.status[3]", "aggregate.status[4]")
    assert "rule 1 (every phase busy -> busy) always fires first in a job of 1 phase" in (
        issue.message
    )
    assert "could fire only with 2 or more phases" in issue.message
    assert "rule 1 (every phase busy -> busy), rule 2 (every phase new -> new) and rule 3" in (
        otherwise.message
    )
    assert analyse(phase_set(phases=2, rules=rules)) == []


def test_otherwise_needing_three_phases_is_reported_for_a_two_phase_job() -> None:
    rules: list[dict[str, Any]] = [
        {"all": ["new", "busy"], "then": "early"},
        {"all": ["busy", "done"], "then": "late"},
        {"all": ["new", "done"], "then": "odd"},
        {"otherwise": "all_three"},
    ]
    assert never_firing(phase_set(phases=2, rules=rules)) == {3}
    assert never_firing(phase_set(phases=3, rules=rules)) == set()


def test_statuses_no_rule_names_collapse_into_one_within_the_size_bound() -> None:
    defn = phase_set(
        statuses={
            "new": {"initial": True},
            "a": {},
            "b": {},
            "done": {"terminal": True},
        },
        transitions=[
            {"trigger": "go", "source": "new", "dest": "a"},
            {"trigger": "on", "source": "a", "dest": "b"},
            {"trigger": "end", "source": ["a", "b"], "dest": "done"},
        ],
        rules=[
            {"any": ["done"], "then": "done"},
            {"all": ["new"], "then": "new"},
            {"otherwise": "x"},
        ],
    )
    # new and done are named; a and b are stood for by a, the first declared of them.
    assert set(status_sets(defn)) == {
        frozenset({"new"}),
        frozenset({"done"}),
        frozenset({"a"}),
        frozenset({"new", "done"}),
        frozenset({"new", "a"}),
        frozenset({"done", "a"}),
    }
    assert status_set_count(defn) == 6


def test_many_unnamed_statuses_keep_the_rule_check_cheap() -> None:
    names = [f"s{i}" for i in range(60)]
    defn = phase_set(
        statuses={"new": {"initial": True}, **{n: {} for n in names}, "done": {"terminal": True}},
        transitions=[
            {"trigger": "go", "source": "new", "dest": "s0"},
            *(
                {"trigger": f"t{i}", "source": a, "dest": b}
                for i, (a, b) in enumerate(itertools.pairwise([*names, "done"]))
            ),
        ],
        phases=50,
        rules=[{"any": ["done"], "then": "done"}, {"otherwise": "new"}],
    )
    assert status_set_count(defn) == 3
    assert analyse(defn) == []


def test_rule_check_stays_exact_for_few_phases_when_larger_jobs_are_too_many_to_try() -> None:
    names = [f"s{i}" for i in range(17)]
    defn = phase_set(
        statuses={"new": {"initial": True}, **{n: {} for n in names}, "done": {"terminal": True}},
        transitions=[
            *({"trigger": f"go{n}", "source": "new", "dest": n} for n in names),
            {"trigger": "end", "source": names, "dest": "done"},
        ],
        phases=1,
        rules=[
            *({"all": [n], "then": n} for n in names),
            {"any": ["s0"], "then": "mixed"},
            {"any": ["new"], "then": "new"},
            {"otherwise": "done"},
        ],
    )
    [issue] = analyse(defn)
    assert issue.path == "aggregate.status[17]"
    assert issue.message.endswith("rule 1 (every phase s0 -> s0) always fires first")


def test_rule_check_is_skipped_with_one_warning_when_too_many_sets() -> None:
    names = [f"s{i}" for i in range(20)]
    defn = phase_set(
        statuses={"new": {"initial": True}, **{n: {} for n in names}, "done": {"terminal": True}},
        transitions=[
            *({"trigger": f"go{n}", "source": "new", "dest": n} for n in names),
            {"trigger": "end", "source": names, "dest": "done"},
        ],
        phases=20,
        rules=[*({"any": [n], "then": n} for n in names), {"otherwise": "new"}],
    )
    assert status_set_count(defn) > MAX_STATUS_SETS
    [issue] = analyse(defn, {"aggregate.status": (40, 3)})
    assert (issue.code, issue.path, issue.line) == ("check-skipped", "aggregate.status", 40)
    assert "20 reachable statuses" in issue.message


def test_first_rule_reads_any_as_meets_all_as_subset_and_otherwise_as_always() -> None:
    defn = phase_set(
        rules=[
            {"all": ["new", "done"], "then": "quiet"},
            {"any": ["busy"], "then": "busy"},
            {"otherwise": "never"},
        ]
    )
    assert first_rule(defn, frozenset({"new"}), 2) == 0
    assert first_rule(defn, frozenset({"new", "done"}), 2) == 0
    assert first_rule(defn, frozenset({"new", "busy"}), 2) == 1
    assert first_rule(phase_set(rules=[{"otherwise": "x"}]), frozenset({"busy"}), 1) == 0


def test_first_rule_rejects_more_statuses_than_phases() -> None:
    with pytest.raises(ValueError, match="1 phase"):
        first_rule(phase_set(), frozenset({"new", "busy"}), 1)


# -- the rule check agrees with every assignment of statuses to phases ---------------------

STATUS_NAMES = ["s0", "s1", "s2", "s3", "s4"]


@st.composite
def phase_sets(draw: st.DrawFn) -> PhaseSetDef:
    """Small random phase sets whose last rule is ``otherwise``."""
    names = STATUS_NAMES[: draw(st.integers(2, 5))]
    statuses: dict[str, dict[str, Any]] = {n: {"terminal": draw(st.booleans())} for n in names[1:]}
    statuses = {names[0]: {"initial": True}, **statuses}
    some_names = st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)
    transitions = [
        {
            "trigger": f"t{i}",
            "source": draw(some_names | st.just("*")),
            "dest": draw(st.sampled_from(names)),
        }
        for i in range(draw(st.integers(0, 6)))
    ]
    rules: list[dict[str, Any]] = [
        {draw(st.sampled_from(["any", "all"])): draw(some_names), "then": "x"}
        for _ in range(draw(st.integers(0, 5)))
    ]
    return phase_set(
        statuses=statuses,
        transitions=transitions,
        phases=draw(st.integers(1, 4)),
        rules=[*rules, {"otherwise": "y"}],
    )


@settings(max_examples=300, deadline=None)
@given(defn=phase_sets(), data=st.data())
def test_the_rule_that_fires_for_any_assignment_is_never_reported(
    defn: PhaseSetDef, data: st.DataObject
) -> None:
    reachable = reachable_statuses(defn)
    assignment = data.draw(
        st.lists(st.sampled_from(reachable), min_size=len(defn.phases), max_size=len(defn.phases))
    )
    present = frozenset(assignment)
    assert first_rule(defn, present, len(defn.phases)) not in never_firing(defn)


@settings(max_examples=200, deadline=None)
@given(defn=phase_sets())
def test_rules_reported_are_exactly_those_no_assignment_fires(defn: PhaseSetDef) -> None:
    n = len(defn.phases)
    fired = {
        first_rule(defn, frozenset(assignment), n)
        for assignment in itertools.product(reachable_statuses(defn), repeat=n)
    }
    assert never_firing(defn) == set(range(len(defn.aggregate.status))) - fired


def test_a_job_status_one_edit_from_a_declared_status_is_a_near_miss_with_a_hint() -> None:
    defn = phase_set(
        statuses={
            "new": {"initial": True},
            "busy": {"active": True},
            "succeeded": {"terminal": True, "success": True},
        },
        transitions=[
            {"trigger": "start", "source": "new", "dest": "busy"},
            {"trigger": "finish", "source": "busy", "dest": "succeeded"},
        ],
        rules=[{"all": ["succeeded"], "then": "suceeded"}, {"otherwise": "new"}],
    )
    (issue,) = [i for i in analyse(defn) if i.code == "near-miss-status"]
    assert issue.path == "aggregate.status[0].then"
    assert issue.hint == "succeeded"
    assert issue.severity == "warning"


def test_a_job_status_of_its_own_is_no_near_miss() -> None:
    defn = phase_set(rules=[{"any": ["busy"], "then": "partially_done"}, {"otherwise": "new"}])
    assert "near-miss-status" not in {i.code for i in analyse(defn)}


def test_the_rule_check_is_skipped_when_it_would_try_too_many_rules_and_sets() -> None:
    # 12 statuses the rules name and 301 rules: over 4,095 sets x 301 rules, over the limit.
    statuses = {"new": {"initial": True}, **{f"s{i}": {} for i in range(12)}}
    statuses["done"] = {"terminal": True}
    transitions = [{"trigger": f"to{i}", "source": "new", "dest": f"s{i}"} for i in range(12)]
    transitions += [{"trigger": "finish", "source": [f"s{i}" for i in range(12)], "dest": "done"}]
    rules = [{"any": [f"s{i % 12}"], "then": f"r{i}"} for i in range(300)]
    defn = phase_set(
        statuses=statuses, transitions=transitions, phases=12, rules=[*rules, {"otherwise": "new"}]
    )
    (skipped,) = [i for i in analyse(defn) if i.code == "check-skipped"]
    assert "against 301 rules" in skipped.message
    assert MAX_RULE_CHECKS < 4095 * 301
