"""The cross-reference rules of a phase set, on raw data and through the loader."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statemachine.errors import SpecError
from statemachine.spec.documents import parse_definition
from statemachine.spec.references import check_references


def base() -> dict[str, Any]:
    """A valid phase set as raw data; each test breaks one rule of a fresh copy."""
    return copy.deepcopy(
        {
            "phasekit": 1,
            "name": "small",
            "statuses": {
                "waiting": {"initial": True},
                "working": {"active": True},
                "done": {"terminal": True, "success": True},
                "failed": {"terminal": True},
            },
            "transitions": [
                {"trigger": "begin", "source": "waiting", "dest": "working"},
                {"trigger": "finish", "source": "working", "dest": "done"},
                {"trigger": "fail", "source": ["waiting", "working"], "dest": "failed"},
            ],
            "phases": [{"name": "fetch"}, {"name": "store"}],
            "aggregate": {
                "status": [
                    {"any": ["failed"], "then": "failed"},
                    {"all": ["done"], "then": "done"},
                    {"any": ["working", "done"], "then": "working"},
                    {"otherwise": "waiting"},
                ],
                "current_phase": [["working"], ["waiting"]],
            },
        }
    )


def codes(data: dict[str, Any]) -> list[str]:
    return [code for code, _, _, _ in check_references(data)]


def the_finding(data: dict[str, Any], code: str) -> tuple[str, str, str, str | None]:
    findings = check_references(data)
    assert [f[0] for f in findings] == [code], findings
    return findings[0]


def test_a_valid_phase_set_has_no_findings() -> None:
    assert check_references(base()) == []


def test_no_initial_status_is_reported_on_statuses() -> None:
    data = base()
    data["statuses"]["waiting"] = {}
    _, message, path, _ = the_finding(data, "no-initial-status")
    assert path == "statuses"
    assert "waiting, working, done, failed" in message


def test_several_initial_statuses_are_named_and_reported_at_the_second() -> None:
    data = base()
    data["statuses"]["failed"]["initial"] = True
    _, message, path, _ = the_finding(data, "several-initial-statuses")
    assert path == "statuses.failed.initial"
    assert "waiting, failed" in message


def test_a_dangling_dest_is_an_unknown_status_with_a_hint() -> None:
    data = base()
    data["transitions"][1]["dest"] = "dnoe"
    _, message, path, hint = the_finding(data, "unknown-status")
    assert (path, hint) == ("transitions[1].dest", "done")
    assert "'dnoe'" in message
    assert "declared: waiting, working, done, failed" in message


def test_an_unknown_source_in_a_list_is_located_at_its_item() -> None:
    data = base()
    data["transitions"][2]["source"] = ["waiting", "wroking"]
    _, _, path, hint = the_finding(data, "unknown-status")
    assert (path, hint) == ("transitions[2].source[1]", "working")


def test_an_unknown_single_source_is_located_at_the_source() -> None:
    data = base()
    data["transitions"][0]["source"] = "nowhere"
    _, _, path, hint = the_finding(data, "unknown-status")
    assert (path, hint) == ("transitions[0].source", None)


def test_a_star_source_is_every_status_not_an_unknown_one() -> None:
    data = base()
    data["transitions"][2]["source"] = "*"
    assert check_references(data) == []


def test_unknown_statuses_in_any_and_all_rules_are_reported() -> None:
    data = base()
    data["aggregate"]["status"][0]["any"] = ["faild"]
    data["aggregate"]["status"][1]["all"] = ["done", "finished"]
    findings = check_references(data)
    assert [(f[0], f[2], f[3]) for f in findings] == [
        ("unknown-status", "aggregate.status[0].any[0]", "failed"),
        ("unknown-status", "aggregate.status[1].all[1]", None),
    ]


def test_unknown_statuses_in_current_phase_groups_are_reported() -> None:
    data = base()
    data["aggregate"]["current_phase"] = [["working", "pausd"]]
    _, _, path, _ = the_finding(data, "unknown-status")
    assert path == "aggregate.current_phase[0][1]"


def test_a_rule_may_give_a_job_level_status_of_its_own() -> None:
    data = base()
    data["aggregate"]["status"][0]["then"] = "partially_failed"
    data["aggregate"]["status"][-1]["otherwise"] = "queued"
    assert check_references(data) == []


def test_a_success_status_must_be_terminal() -> None:
    data = base()
    data["statuses"]["done"]["terminal"] = False
    _, _, path, _ = the_finding(data, "success-not-terminal")
    assert path == "statuses.done.success"


def test_a_status_cannot_be_both_active_and_terminal() -> None:
    data = base()
    data["statuses"]["working"]["terminal"] = True
    _, message, path, _ = the_finding(data, "active-and-terminal")
    assert path == "statuses.working"
    assert "'working'" in message


def test_a_repeated_phase_is_reported_at_the_second_with_the_index_of_the_first() -> None:
    data = base()
    data["phases"].append({"name": "fetch"})
    _, message, path, _ = the_finding(data, "duplicate-phase")
    assert path == "phases[2].name"
    assert "phases[0]" in message


def test_the_same_trigger_from_the_same_source_twice_is_a_duplicate_transition() -> None:
    data = base()
    data["transitions"].append({"trigger": "finish", "source": "working", "dest": "failed"})
    _, message, path, _ = the_finding(data, "duplicate-transition")
    assert path == "transitions[3]"
    assert "transitions[1]" in message


def test_a_duplicate_transition_after_a_star_source_is_reported() -> None:
    data = base()
    data["transitions"][2]["source"] = "*"
    data["transitions"].append({"trigger": "fail", "source": "done", "dest": "waiting"})
    assert codes(data) == ["duplicate-transition"]


def test_a_star_source_after_a_narrower_one_still_fires_from_the_others() -> None:
    data = base()
    data["transitions"].append({"trigger": "finish", "source": "*", "dest": "failed"})
    assert check_references(data) == []


def test_a_guarded_transition_may_be_followed_by_a_fallback() -> None:
    data = base()
    data["transitions"][1]["conditions"] = ["checks_passed"]
    data["transitions"].append({"trigger": "finish", "source": "working", "dest": "failed"})
    assert check_references(data) == []


def test_a_guarded_transition_after_an_unguarded_one_can_never_fire() -> None:
    data = base()
    data["transitions"].append(
        {"trigger": "finish", "source": "working", "dest": "failed", "unless": ["ok"]}
    )
    assert codes(data) == ["duplicate-transition"]


def test_a_trigger_named_like_a_phase_attribute_is_a_reserved_name() -> None:
    data = base()
    data["transitions"][0]["trigger"] = "status"
    _, message, path, _ = the_finding(data, "reserved-name")
    assert path == "transitions[0].trigger"
    assert "PhaseState" in message


def test_a_phase_named_like_a_job_attribute_is_a_reserved_name() -> None:
    data = base()
    data["phases"][1]["name"] = "metadata"
    _, message, path, _ = the_finding(data, "reserved-name")
    assert path == "phases[1].name"
    assert "JobState" in message


def test_a_trigger_may_share_its_name_with_a_status() -> None:
    data = base()
    data["transitions"][0]["trigger"] = "working"
    assert check_references(data) == []


def test_an_otherwise_rule_before_the_end_is_reported() -> None:
    data = base()
    rules = data["aggregate"]["status"]
    rules.insert(1, rules.pop())
    findings = check_references(data)
    assert [(f[0], f[2]) for f in findings] == [
        ("otherwise-not-last", "aggregate.status[1]"),
        ("missing-otherwise", "aggregate.status[3]"),
    ]


def test_rule_keys_set_to_null_count_as_absent() -> None:
    data = base()
    for rule in data["aggregate"]["status"]:
        rule.setdefault("otherwise", None)
    assert check_references(data) == []
    data["aggregate"]["status"][-1] = {"any": ["done"], "then": "done", "otherwise": None}
    assert codes(data) == ["missing-otherwise"]


def test_a_last_rule_that_is_not_otherwise_is_reported() -> None:
    data = base()
    data["aggregate"]["status"].pop()
    _, _, path, _ = the_finding(data, "missing-otherwise")
    assert path == "aggregate.status[2]"


@pytest.mark.parametrize(
    "broken",
    [
        {"statuses": "not a mapping"},
        {"statuses": {"a": 5, 7: {}}},
        {"transitions": [1, "x", None, {"trigger": ["a"], "source": {"x": 1}}]},
        {"transitions": {"trigger": "a"}},
        {"phases": [{"name": 3}, "x", {"name": None}]},
        {"aggregate": [1]},
        {"aggregate": {"status": [None, {"any": "x"}], "current_phase": ["abc", [1, None]]}},
        {"aggregate": {"status": "otherwise", "current_phase": {"a": 1}}},
    ],
)
def test_malformed_parts_are_skipped_for_the_schema_to_report(broken: dict[str, Any]) -> None:
    data = base()
    data.update(broken)
    check_references(data)  # no exception: the schema reports these parts


def test_names_the_schema_rejects_are_not_looked_up_again() -> None:
    data = base()
    data["transitions"][0]["dest"] = "Not A Name"
    assert check_references(data) == []


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.sampled_from(["*", "a"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "trigger", "source", "dest", "name"]), children)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    statuses=_json,
    transitions=_json,
    phases=_json,
    aggregate=_json,
)
def test_any_shape_of_raw_data_is_checked_without_an_exception(
    statuses: object, transitions: object, phases: object, aggregate: object
) -> None:
    data = {"statuses": statuses, "transitions": transitions, "phases": phases}
    data["aggregate"] = aggregate
    for code, message, path, hint in check_references(data):
        assert code and message and isinstance(path, str)
        assert hint is None or isinstance(hint, str)


# -- through the loader --------------------------------------------------------------------

DOCUMENT = """\
phasekit: 1
name: small
statuses:
  waiting: {initial: true}
  working: {active: true, terminal: true}
  done: {success: true}
transitions:
  - {trigger: begin, source: waiting, dest: working}
  - {trigger: begin, source: waiting, dest: done}
phases:
  - {name: version}
aggregate:
  status:
    - {otherwise: waiting}
    - {all: [done], then: done}
"""


def position(needle: str, occurrence: int = 1) -> tuple[int, int]:
    index = -1
    for _ in range(occurrence):
        index = DOCUMENT.index(needle, index + 1)
    line_start = DOCUMENT.rfind("\n", 0, index) + 1
    return DOCUMENT.count("\n", 0, index) + 1, index - line_start + 1


def test_reference_errors_from_a_document_are_located() -> None:
    with pytest.raises(SpecError) as caught:
        parse_definition(DOCUMENT, "small.yaml")
    found = {(i.code, i.path): (i.line, i.column) for i in caught.value.issues}
    assert found == {
        ("active-and-terminal", "statuses.working"): position("working:"),
        ("success-not-terminal", "statuses.done.success"): position("true}", 3),
        ("duplicate-transition", "transitions[1]"): position("{trigger: begin", 2),
        ("reserved-name", "phases[0].name"): position("version"),
        ("otherwise-not-last", "aggregate.status[0]"): position("{otherwise"),
        ("missing-otherwise", "aggregate.status[1]"): position("{all"),
    }


WILDCARD_IN_LIST = """\
phasekit: 1
name: wild
statuses:
  todo: {initial: true}
  running: {active: true}
  failed: {terminal: true}
transitions:
  - {trigger: start, source: todo, dest: running}
  - {trigger: fail, source: [running, "*"], dest: failed}
phases:
  - {name: only}
aggregate:
  status:
    - {any: [failed], then: failed}
    - {otherwise: todo}
"""


def test_a_wildcard_inside_a_source_list_is_a_located_error() -> None:
    with pytest.raises(SpecError) as caught:
        parse_definition(WILDCARD_IN_LIST, "wild.yaml")
    (issue,) = caught.value.issues
    assert (issue.code, issue.path) == ("wildcard-in-list", "transitions[1].source[1]")
    line = WILDCARD_IN_LIST.splitlines()[8]
    assert (issue.line, issue.column) == (9, line.index('"*"') + 1)  # the "*" itself
    assert 'write source: "*" alone, or list the statuses' in issue.message


def test_a_wildcard_alone_is_every_status() -> None:
    data = base()
    data["transitions"][2]["source"] = "*"
    assert "wildcard-in-list" not in codes(data)
