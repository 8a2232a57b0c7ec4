"""Every limit in docs/format.md: a document at the limit loads, one past it is a located error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from statemachine import PhaseSet, SpecError, SpecIssue, load_spec, parse_spec, spec_from_dict
from statemachine.spec import (
    MAX_NAME_LENGTH,
    MAX_PHASES,
    MAX_SOURCE_PAIRS,
    MAX_STATUSES,
    MAX_TRANSITIONS,
)
from statemachine.spec.documents import MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_NODES


def phase_set(
    *, statuses: int = 3, transitions: int = 1, phases: int = 1, tail: str = "", name: str = "x"
) -> str:
    """A valid phase set of the given sizes; ``tail`` is appended under ``aggregate:``."""
    status_lines = ["  s0: {initial: true}", "  s1: {terminal: true, success: true}"]
    status_lines += [f"  s{i}: {{}}" for i in range(2, statuses)]
    transition_lines = [f"  - {{trigger: t{i}, source: s0, dest: s1}}" for i in range(transitions)]
    phase_lines = [f"  - {{name: p{i}}}" for i in range(phases)]
    return "\n".join(
        [
            "phasekit: 1",
            f"name: {name}",
            "statuses:",
            *status_lines,
            "transitions:" if transition_lines else "transitions: []",
            *transition_lines,
            "phases:",
            *phase_lines,
            "aggregate:",
            "  status:",
            "    - {all: [s1], then: s1}",
            "    - {otherwise: s0}",
            tail,
        ]
    )


def issues_of(document: str | bytes) -> list[SpecIssue]:
    with pytest.raises(SpecError) as caught:
        parse_spec(document, "limits.yaml")
    return caught.value.issues


def only_issue(document: str | bytes, code: str) -> SpecIssue:
    """The one issue of ``document``; it must have ``code`` and a position."""
    issues = issues_of(document)
    assert [i.code for i in issues] == [code], issues
    issue = issues[0]
    assert issue.filename == "limits.yaml"
    assert issue.line is not None and issue.column is not None
    return issue


def line_and_column(text: str, index: int) -> tuple[int, int]:
    """The 1-based position of character ``index`` of ``text``."""
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def at(issue: SpecIssue) -> tuple[int | None, int | None]:
    return issue.line, issue.column


# -- document size ---------------------------------------------------------------------------


def padded(size: int, fill: str = "x") -> str:
    """A valid phase set of exactly ``size`` bytes of UTF-8: a comment of ``fill`` fills it up."""
    base = phase_set() + "# "
    room = size - len(base.encode()) - 1
    width = len(fill.encode())
    return base + fill * (room // width) + "x" * (room % width) + "\n"


@pytest.mark.parametrize("fill", ["x", "é"])
def test_a_document_of_exactly_the_size_limit_loads(fill: str) -> None:
    text = padded(MAX_DOCUMENT_BYTES, fill)
    assert len(text.encode()) == MAX_DOCUMENT_BYTES
    assert isinstance(parse_spec(text), PhaseSet)
    assert isinstance(parse_spec(text.encode()), PhaseSet)


@pytest.mark.parametrize("form", ["text", "bytes"])
@pytest.mark.parametrize("fill", ["x", "é"])
def test_one_byte_over_the_size_limit_is_located_at_the_character_that_crosses_it(
    fill: str, form: str
) -> None:
    text = padded(MAX_DOCUMENT_BYTES + 1, fill)
    crossing = len(text.encode()[:MAX_DOCUMENT_BYTES].decode("utf-8", "ignore"))
    issue = only_issue(text if form == "text" else text.encode(), "document-too-large")
    assert at(issue) == line_and_column(text, crossing)
    assert f"{MAX_DOCUMENT_BYTES}" in issue.message


def test_a_file_one_byte_over_the_size_limit_is_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(padded(MAX_DOCUMENT_BYTES), encoding="utf-8")
    assert isinstance(load_spec(path), PhaseSet)
    text = padded(MAX_DOCUMENT_BYTES + 1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    [issue] = caught.value.issues
    assert (issue.code, issue.filename) == ("document-too-large", str(path))
    assert at(issue) == line_and_column(text, MAX_DOCUMENT_BYTES)


# -- YAML nodes ----------------------------------------------------------------------------


def expanded_nodes(text: str) -> int:
    """Nodes of a document as PyYAML composes it, each use of an alias counted again."""

    def count(node: Node) -> int:
        if isinstance(node, MappingNode):
            return 1 + sum(count(k) + count(v) for k, v in node.value)
        if isinstance(node, SequenceNode):
            return 1 + sum(count(item) for item in node.value)
        return 1

    root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert root is not None
    return count(root)


def with_nodes(total: int) -> str:
    """A valid phase set of ``total`` nodes: its last current-phase group makes up the count."""

    def document(group: int) -> str:
        return phase_set(tail="  current_phase:\n    - [" + ", ".join(["s0"] * group) + "]\n")

    group = total - expanded_nodes(document(1)) + 1
    text = document(group)
    assert expanded_nodes(text) == total
    return text


def test_a_document_of_exactly_the_node_limit_loads() -> None:
    assert isinstance(parse_spec(with_nodes(MAX_NODES)), PhaseSet)


def test_one_node_over_the_limit_is_located_at_that_node() -> None:
    text = with_nodes(MAX_NODES + 1)
    issue = only_issue(text, "too-many-nodes")
    assert at(issue) == line_and_column(text, text.rindex("s0"))  # the last node of all
    assert f"{MAX_NODES}" in issue.message


def with_aliased_nodes(total: int) -> str:
    """A valid phase set of ``total`` nodes once expanded: its anchored group is used again last."""

    def document(items: int, odd: bool) -> str:
        anchored = ", ".join(["s0"] * items)
        groups = f"    - &many [{anchored}]\n    - [s0{', s1' if odd else ''}]\n    - *many\n"
        return phase_set(tail="  current_phase:\n" + groups)

    base = expanded_nodes(document(1, False))
    items, odd = divmod(total - base, 2)
    text = document(1 + items, bool(odd))
    assert expanded_nodes(text) == total
    return text


def test_every_use_of_an_alias_counts_toward_the_node_limit() -> None:
    assert isinstance(parse_spec(with_aliased_nodes(MAX_NODES)), PhaseSet)
    text = with_aliased_nodes(MAX_NODES + 1)
    issue = only_issue(text, "too-many-nodes")
    assert at(issue) == line_and_column(text, text.index("*many"))


# -- nesting depth ---------------------------------------------------------------------------


def nested(depth: int) -> str:
    """A document whose deepest node, a scalar in nested lists, is at ``depth``.

    The root mapping is at depth 1 and each node inside a mapping or a list one deeper.
    """
    lists = depth - 2  # the root, then the description's value is the outermost list
    return phase_set() + "description: " + "[" * lists + "deep" + "]" * lists + "\n"


def test_nesting_at_exactly_the_depth_limit_is_not_too_deep() -> None:
    codes = [i.code for i in issues_of(nested(MAX_DEPTH))]
    assert codes == ["invalid-type"]  # a description is text: the only problem is the type


def test_one_level_past_the_depth_limit_is_located_at_the_deepest_node() -> None:
    text = nested(MAX_DEPTH + 1)
    issue = only_issue(text, "too-deep")
    assert at(issue) == line_and_column(text, text.index("deep"))
    assert f"{MAX_DEPTH}" in issue.message


def test_data_nested_one_level_past_the_depth_limit_is_too_deep() -> None:
    def data(depth: int) -> dict[str, object]:
        value: object = "deep"
        for _ in range(depth - 2):
            value = [value]
        document: dict[str, object] = yaml.safe_load(phase_set())
        document["description"] = value
        return document

    with pytest.raises(SpecError) as at_limit:
        spec_from_dict(data(MAX_DEPTH))
    assert [i.code for i in at_limit.value.issues] == ["invalid-type"]
    with pytest.raises(SpecError) as past:
        spec_from_dict(data(MAX_DEPTH + 1))
    [issue] = past.value.issues
    assert issue.code == "too-deep"
    assert issue.path == "description" + "[0]" * (MAX_DEPTH - 1)


# -- statuses, phases, transitions -----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "limit"),
    [("statuses", MAX_STATUSES), ("phases", MAX_PHASES), ("transitions", MAX_TRANSITIONS)],
)
def test_a_list_at_its_limit_loads_and_one_more_item_is_too_many(key: str, limit: int) -> None:
    spec = parse_spec(phase_set(**{key: limit}))
    sizes = {
        "statuses": len(spec.statuses),
        "phases": len(spec.phase_names),
        "transitions": len(spec.definition.transitions),
    }
    assert sizes[key] == limit
    text = phase_set(**{key: limit + 1})
    issue = only_issue(text, "too-many")
    assert issue.path == key
    assert at(issue) == line_and_column(text, text.index(f"\n{key}:") + 1)
    assert f"{limit + 1}, at most {limit}" in issue.message


# -- name length -----------------------------------------------------------------------------

NAMED = {
    # where a name goes: (what to replace in the document, with what; the issue's path)
    "phase set": ("name: x", "name: {n}", "name"),
    "status": ("  s2: {}", "  {n}: {{}}", "statuses.{n}"),
    "trigger": ("trigger: t0", "trigger: {n}", "transitions[0].trigger"),
    "phase": ("name: p0", "name: {n}", "phases[0].name"),
    "job-level status": ("then: s1", "then: {n}", "aggregate.status[0].then"),
    "guard": ("dest: s1}", "dest: s1, conditions: [{n}]}}", "transitions[0].conditions[0]"),
}


@pytest.mark.parametrize("place", list(NAMED))
def test_a_name_of_the_longest_length_loads_and_one_character_more_is_invalid(
    place: str,
) -> None:
    old, new, path = NAMED[place]
    longest, too_long = "n" * MAX_NAME_LENGTH, "n" * (MAX_NAME_LENGTH + 1)
    parse_spec(phase_set().replace(old, new.format(n=longest), 1))
    text = phase_set().replace(old, new.format(n=too_long), 1)
    issue = only_issue(text, "invalid-name")
    assert issue.path == path.format(n=too_long)
    assert at(issue) == line_and_column(text, text.index(too_long))
    assert f"{MAX_NAME_LENGTH}" in issue.message


# -- what the compiled machine holds ------------------------------------------------------------


def _star_transitions(count: int) -> str:
    text = phase_set(statuses=MAX_STATUSES, transitions=0)
    lines = "\n".join(f'  - {{trigger: t{i}, source: "*", dest: s1}}' for i in range(count))
    return text.replace("transitions: []", "transitions:\n" + lines)


def test_sources_expanded_up_to_the_pair_limit_compile() -> None:
    spec = parse_spec(_star_transitions(MAX_SOURCE_PAIRS // MAX_STATUSES))
    assert sum(len(spec.compiled.allowed[s]) for s in spec.statuses) == MAX_SOURCE_PAIRS


def test_sources_expanded_past_the_pair_limit_are_too_many_sources() -> None:
    # 65 transitions from "*" among 64 statuses: 4,160 (trigger, status) pairs to compile.
    issue = only_issue(_star_transitions(MAX_SOURCE_PAIRS // MAX_STATUSES + 1), "too-many-sources")
    assert issue.path == "transitions"
    assert "4,160 (trigger, status) pairs" in issue.message
