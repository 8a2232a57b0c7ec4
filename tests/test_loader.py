"""Reading phase-set documents: safe YAML, located errors, every problem at once."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from statemachine.errors import SpecError, SpecIssue
from statemachine.spec import MAX_STATUSES
from statemachine.spec import compose as yamlcompose
from statemachine.spec.documents import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_NODES,
    bundled_names,
    definition_from_dict,
    load_definition,
    parse_definition,
)

CONFIG = Path(__file__).resolve().parent.parent / "config"

VALID = """\
phasekit: 1
name: small
statuses:
  waiting: {initial: true}
  working: {active: true}
  done: {terminal: true, success: true}
transitions:
  - {trigger: begin, source: waiting, dest: working}
  - {trigger: finish, source: working, dest: done}
phases:
  - {name: fetch}
  - {name: store, weight: 2}
aggregate:
  status:
    - {all: [done], then: done}
    - {any: [working, done], then: working}
    - {otherwise: waiting}
"""


def position(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """The 1-based (line, column) where ``needle`` occurs in ``text`` for the n-th time."""
    index = -1
    for _ in range(occurrence):
        index = text.index(needle, index + 1)
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def issues_of(text: str | bytes, filename: str = "doc.yaml") -> list[SpecIssue]:
    with pytest.raises(SpecError) as caught:
        parse_definition(text, filename)
    return caught.value.issues


def the_issue(text: str | bytes, code: str) -> SpecIssue:
    """The one issue of ``text``, which must have ``code``."""
    issues = issues_of(text)
    assert [i.code for i in issues] == [code], issues
    return issues[0]


def at(issue: SpecIssue) -> tuple[int | None, int | None]:
    return issue.line, issue.column


# -- loading -----------------------------------------------------------------------------


def test_the_valid_example_parses() -> None:
    definition, _ = parse_definition(VALID)
    assert definition.name == "small"
    assert definition.initial_status == "waiting"


def test_bundled_ingestion_loads_by_name_and_by_path_to_equal_definitions() -> None:
    by_name, name_locations = load_definition("ingestion")
    by_path, path_locations = load_definition(CONFIG / "ingestion.yaml")
    by_str_path, _ = load_definition(str(CONFIG / "ingestion.yaml"))
    assert by_name == by_path == by_str_path
    assert by_name.name == "ingestion"
    assert name_locations == path_locations


def test_bundled_names_are_the_yaml_files_in_config() -> None:
    assert bundled_names() == sorted(p.stem for p in CONFIG.glob("*.yaml"))
    assert "ingestion" in bundled_names()


@pytest.mark.parametrize("name", bundled_names())
def test_every_bundled_phase_set_loads(name: str) -> None:
    definition, locations = load_definition(name)
    assert locations[""] == (position((CONFIG / f"{name}.yaml").read_text(), "phasekit:"))
    assert definition.phases


def test_an_unknown_bundled_name_lists_the_bundled_ones_with_a_hint() -> None:
    with pytest.raises(SpecError) as caught:
        load_definition("ingestoin")
    (issue,) = caught.value.issues
    assert issue.code == "unknown-phase-set"
    assert issue.hint == "ingestion"
    assert all(name in issue.message for name in bundled_names())


def test_a_missing_file_is_unreadable_and_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as caught:
        load_definition(missing)
    (issue,) = caught.value.issues
    assert issue.code == "unreadable-file"
    assert str(missing) in issue.message
    assert issue.filename == str(missing)


def test_a_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_definition(tmp_path)
    assert [i.code for i in caught.value.issues] == ["unreadable-file"]


def test_a_path_object_is_never_taken_for_a_bundled_name(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_definition(Path("ingestion"))
    assert [i.code for i in caught.value.issues] == ["unreadable-file"]


def test_a_file_gives_the_same_definition_and_locations_as_its_text(tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(VALID, encoding="utf-8")
    assert load_definition(path) == parse_definition(VALID)


def test_issues_from_a_file_carry_its_name(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(VALID.replace("phasekit: 1", "phasekit: 2"), encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_definition(path)
    assert caught.value.issues[0].filename == str(path)
    assert str(caught.value).startswith(f"{path}:1:11: unsupported-version: ")


def test_a_utf8_byte_order_mark_is_accepted() -> None:
    definition, _ = parse_definition(b"\xef\xbb\xbf" + VALID.encode())
    assert definition.name == "small"


# -- locations ---------------------------------------------------------------------------


def test_locations_point_at_scalar_values() -> None:
    _, locations = parse_definition(VALID)
    assert locations["transitions[1].dest"] == position(VALID, "done}")
    assert locations["phases[1].name"] == position(VALID, "store")
    assert locations["aggregate.status[1].then"] == position(VALID, "working}", 2)
    assert locations["aggregate.status[1].any[1]"] == position(VALID, "done]", 2)
    assert locations["statuses.working.active"] == position(VALID, "true}", 2)


def test_locations_point_at_sequence_items() -> None:
    _, locations = parse_definition(VALID)
    assert locations["transitions[1]"] == position(VALID, "{trigger: finish")
    assert locations["aggregate.status[2]"] == position(VALID, "{otherwise")


def test_locations_of_a_mapping_entry_with_a_collection_value_point_at_its_key() -> None:
    _, locations = parse_definition(VALID)
    assert locations["statuses.working"] == position(VALID, "working:")
    assert locations["aggregate"] == position(VALID, "aggregate:")
    assert locations["aggregate.status"] == position(VALID, "status:")


def test_locations_keep_every_key_under_its_path() -> None:
    _, locations = parse_definition(VALID)
    assert locations["statuses.done.success[key]"] == position(VALID, "success")
    assert locations["phases[1].weight[key]"] == position(VALID, "weight")
    assert locations[""] == (1, 1)


def test_current_phase_groups_are_located_item_by_item() -> None:
    _, locations = load_definition("ingestion")
    text = (CONFIG / "ingestion.yaml").read_text()
    assert locations["aggregate.current_phase[0][1]"] == position(text, "paused]\n")


# -- every mistake at once -----------------------------------------------------------------

SEVERAL_MISTAKES = """\
phasekit: 1
name: broken
statuses:
  waiting: {initial: true}
  working: {active: true}
  done: {terminal: true, success: true}
transitions:
  - {trigger: begin, source: waiting, dest: working}
  - {trigger: finish, source: working, dest: dnoe}
  - {trigger: status, source: working, dest: done}
  - trigger: retry
    source: done
    dest: working
    conditons: [allowed]
phases:
  - {name: fetch}
  - {name: store}
  - {name: fetch}
aggregate:
  status:
    - {all: [done], then: done}
    - {any: [working], then: working}
"""


def test_several_independent_mistakes_are_reported_together_and_located() -> None:
    text = SEVERAL_MISTAKES
    issues = {i.code: i for i in issues_of(text, "broken.yaml")}
    assert set(issues) == {
        "unknown-key",
        "unknown-status",
        "duplicate-phase",
        "reserved-name",
        "missing-otherwise",
    }
    unknown_key = issues["unknown-key"]
    assert (unknown_key.path, at(unknown_key)) == (
        "transitions[3].conditons",
        position(text, "conditons"),
    )
    assert unknown_key.hint == "conditions"
    dangling = issues["unknown-status"]
    assert (dangling.path, at(dangling)) == ("transitions[1].dest", position(text, "dnoe"))
    assert dangling.hint == "done"
    duplicate = issues["duplicate-phase"]
    assert (duplicate.path, at(duplicate)) == ("phases[2].name", position(text, "fetch", 2))
    reserved = issues["reserved-name"]
    assert (reserved.path, at(reserved)) == ("transitions[2].trigger", position(text, "status,"))
    otherwise = issues["missing-otherwise"]
    assert (otherwise.path, at(otherwise)) == ("aggregate.status[1]", position(text, "{any"))


def test_str_of_the_error_has_one_file_line_column_code_message_line_per_issue() -> None:
    with pytest.raises(SpecError) as caught:
        parse_definition(SEVERAL_MISTAKES, "broken.yaml")
    lines = str(caught.value).splitlines()
    assert len(lines) == len(caught.value.issues) == 5
    for line, issue in zip(lines, caught.value.issues, strict=True):
        assert re.fullmatch(r"broken\.yaml:\d+:\d+: [a-z-]+: .+", line)
        assert line.startswith(f"broken.yaml:{issue.line}:{issue.column}: {issue.code}: ")
    assert "(did you mean 'conditions'?)" in str(caught.value)


def test_issues_are_sorted_by_position() -> None:
    issues = issues_of(SEVERAL_MISTAKES)
    places = [(i.line or 0, i.column or 0) for i in issues]
    assert places == sorted(places)


def test_a_schema_error_and_a_reference_error_in_one_transition_are_both_reported() -> None:
    text = VALID.replace("dest: done}", "dest: gone, after: x}")
    codes = sorted(i.code for i in issues_of(text))
    assert codes == ["invalid-type", "unknown-status"]


# -- schema errors -------------------------------------------------------------------------


def test_a_missing_key_is_located_at_the_mapping_that_lacks_it() -> None:
    text = VALID.replace(
        "{trigger: finish, source: working, dest: done}", "{trigger: finish, source: working}"
    )
    issue = the_issue(text, "missing-key")
    assert issue.path == "transitions[1].dest"
    assert at(issue) == position(text, "{trigger: finish")
    assert "'dest'" in issue.message
    assert "trigger, source, dest" in issue.message


def test_a_missing_top_level_key_is_named() -> None:
    text = VALID.replace("name: small\n", "")
    issue = the_issue(text, "missing-key")
    assert issue.path == "name"
    assert at(issue) == (1, 1)


def test_an_unknown_key_lists_the_allowed_keys_and_is_located_at_the_key() -> None:
    text = VALID.replace("{name: store, weight: 2}", "{name: store, wieght: 2}")
    issue = the_issue(text, "unknown-key")
    assert (issue.path, at(issue), issue.hint) == (
        "phases[1].wieght",
        position(text, "wieght"),
        "weight",
    )
    assert "name, weight, description" in issue.message


def test_an_invalid_status_name_is_located_at_the_key() -> None:
    text = VALID.replace("  done: {terminal", "  all done: {terminal")
    issues = issues_of(text)
    names = [i for i in issues if i.code == "invalid-name"]
    assert len(names) == 1
    assert at(names[0]) == position(text, "all done")
    assert "starts with a letter" in names[0].message


def test_an_invalid_trigger_name_says_what_names_may_look_like() -> None:
    text = VALID.replace("trigger: begin", "trigger: 'begin now'")
    issue = the_issue(text, "invalid-name")
    assert issue.path == "transitions[0].trigger"
    assert at(issue) == position(text, "'begin now'")
    assert "letters, digits and '_'" in issue.message


def test_a_phase_name_may_use_dashes_but_not_spaces() -> None:
    parse_definition(VALID.replace("{name: fetch}", "{name: fetch-all}"))
    issue = the_issue(VALID.replace("{name: fetch}", "{name: fetch all}"), "invalid-name")
    assert "'-'" in issue.message


def test_another_format_version_is_unsupported() -> None:
    issue = the_issue(VALID.replace("phasekit: 1", "phasekit: 2"), "unsupported-version")
    assert (issue.path, at(issue)) == ("phasekit", (1, 11))
    assert "phasekit: 1" in issue.message


def test_more_statuses_than_the_limit_are_too_many() -> None:
    extra = "".join(f"  extra{i}: {{}}\n" for i in range(MAX_STATUSES))
    text = VALID.replace("transitions:\n", extra + "transitions:\n")
    issue = the_issue(text, "too-many")
    assert issue.path == "statuses"
    assert str(MAX_STATUSES) in issue.message


def test_an_empty_phase_list_is_empty() -> None:
    text = VALID.replace("  - {name: fetch}\n  - {name: store, weight: 2}\n", "").replace(
        "phases:\n", "phases: []\n"
    )
    issue = the_issue(text, "empty-list")
    assert (issue.path, at(issue)) == ("phases", position(text, "phases"))


def test_a_flag_of_the_wrong_type_says_what_was_found_and_expected() -> None:
    text = VALID.replace("{active: true}", "{active: 'yes'}")
    issue = the_issue(text, "invalid-type")
    assert (issue.path, at(issue)) == ("statuses.working.active", position(text, "'yes'"))
    assert issue.message == "expected true or false, found the string 'yes'"


def test_a_source_of_the_wrong_type_names_both_accepted_forms() -> None:
    text = VALID.replace("source: waiting", "source: 7")
    issue = the_issue(text, "invalid-type")
    assert issue.path == "transitions[0].source"
    assert "a string or a list of strings" in issue.message
    assert "the integer 7" in issue.message


def test_a_wrong_item_in_a_source_list_is_located_at_the_item() -> None:
    text = VALID.replace("source: waiting", "source: [waiting, 7]")
    issue = the_issue(text, "invalid-type")
    assert (issue.path, at(issue)) == ("transitions[0].source[1]", position(text, "7]"))


def test_a_negative_weight_is_an_invalid_value() -> None:
    text = VALID.replace("weight: 2", "weight: -2")
    issue = the_issue(text, "invalid-value")
    assert (issue.path, at(issue)) == ("phases[1].weight", position(text, "-2"))
    assert "greater than 0" in issue.message


def test_a_rule_with_two_conditions_is_an_invalid_value() -> None:
    text = VALID.replace("{all: [done], then: done}", "{all: [done], any: [done], then: done}")
    issue = the_issue(text, "invalid-value")
    assert issue.path == "aggregate.status[0]"
    assert "exactly one of 'any', 'all' or 'otherwise'" in issue.message


def test_a_quoted_number_is_not_a_number() -> None:
    issue = the_issue(VALID.replace("weight: 2", "weight: '2'"), "invalid-type")
    assert issue.message == "expected a number, found the string '2'"


# -- the YAML itself ---------------------------------------------------------------------


def test_a_duplicate_key_is_reported_at_the_second_with_the_line_of_the_first() -> None:
    text = VALID.replace("  done: {terminal", "  working: {}\n  done: {terminal")
    issue = the_issue(text, "duplicate-key")
    assert (issue.path, at(issue)) == ("statuses.working", position(text, "working:", 2))
    assert f"line {position(text, 'working:')[0]}" in issue.message


def test_a_key_that_is_not_a_string_is_an_invalid_key() -> None:
    text = VALID.replace("  done: {terminal", "  1: {}\n  done: {terminal")
    issue = the_issue(text, "invalid-key")
    assert at(issue) == position(text, "1: {}")
    assert "quote it" in issue.message


def test_a_boolean_looking_key_must_be_quoted() -> None:
    issue = the_issue(
        VALID.replace("  done: {terminal", "  on: {}\n  done: {terminal"), "invalid-key"
    )
    assert "boolean" in issue.message


def test_a_list_as_a_key_is_an_invalid_key_not_a_crash() -> None:
    text = VALID.replace("  done: {terminal", "  ? [a]\n  : {}\n  done: {terminal")
    issue = the_issue(text, "invalid-key")
    assert at(issue) == position(text, "[a]")


def test_a_python_object_tag_is_forbidden_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = VALID.replace("name: small", f'name: !!python/object/apply:os.system ["touch {marker}"]')
    issue = the_issue(text, "forbidden-tag")
    assert (issue.path, at(issue)) == ("name", position(text, "!!python"))
    assert not marker.exists()


def test_a_custom_tag_is_forbidden() -> None:
    text = VALID.replace("{name: fetch}", "{name: !secret fetch}")
    issue = the_issue(text, "forbidden-tag")
    assert (issue.path, at(issue)) == ("phases[0].name", position(text, "!secret"))
    assert "'!secret'" in issue.message


def test_a_set_tag_is_forbidden() -> None:
    the_issue(VALID.replace("then: done}", "then: !!set {a}}"), "forbidden-tag")


def test_a_scalar_that_cannot_be_read_as_its_tag_is_an_invalid_value() -> None:
    text = VALID.replace("weight: 2", "weight: !!int two")
    issue = the_issue(text, "invalid-value")
    assert (issue.path, at(issue)) == ("phases[1].weight", position(text, "!!int"))


def test_an_integer_too_long_to_convert_is_an_invalid_value() -> None:
    the_issue(VALID.replace("weight: 2", "weight: " + "9" * 5000), "invalid-value")


def test_a_syntax_error_is_located_at_the_problem() -> None:
    text = VALID.replace("{name: fetch}", "{name: fetch")
    issue = the_issue(text, "yaml-syntax")
    assert issue.line == position(text, "  - {name: store")[0]
    assert issue.column is not None


def test_a_tab_used_for_indentation_is_a_syntax_error() -> None:
    the_issue(VALID.replace("  status:\n", "\tstatus:\n"), "yaml-syntax")


def test_an_undefined_alias_is_a_syntax_error() -> None:
    text = VALID.replace("then: done}", "then: *nowhere}")
    issue = the_issue(text, "yaml-syntax")
    assert at(issue) == position(text, "*nowhere")
    assert "nowhere" in issue.message


def test_invalid_utf8_is_located_at_the_bad_byte() -> None:
    data = VALID.replace("name: small", "name: sm\xe9ll").encode("latin-1")
    issue = the_issue(data, "invalid-encoding")
    assert at(issue) == position(VALID, "all")  # the byte right after "name: sm"
    assert "0xe9" in issue.message


def test_a_lone_surrogate_in_text_is_an_invalid_encoding() -> None:
    text = VALID.replace("name: small", "name: s\ud800")
    issue = the_issue(text, "invalid-encoding")
    assert at(issue) == position(text, "\ud800")


def test_a_control_character_is_a_syntax_error_located_where_it_is() -> None:
    text = VALID.replace("name: small", "name: sm\x07ll")
    issue = the_issue(text, "yaml-syntax")
    assert at(issue) == position(text, "\x07")


@pytest.mark.parametrize("text", ["", "   \n", "# just a comment\n", "---\n", "~\n"])
def test_an_empty_document_is_reported(text: str) -> None:
    issue = the_issue(text, "empty-document")
    assert at(issue) == (1, 1)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_a_document_that_is_not_a_mapping_is_an_invalid_type(text: str) -> None:
    issue = the_issue(text, "invalid-type")
    assert (issue.path, at(issue)) == ("", (1, 1))


def test_two_documents_in_one_file_are_refused_at_the_second() -> None:
    text = VALID + "---\nname: other\n"
    issue = the_issue(text, "multiple-documents")
    assert at(issue) == position(text, "---")


def test_anchors_and_aliases_share_values() -> None:
    text = VALID.replace("  waiting: {initial: true}", "  waiting: &start {initial: true}").replace(
        "then: done}", "then: done, x: *start}"
    )
    assert the_issue(text, "unknown-key").path == "aggregate.status[0].x"


def test_merge_keys_share_flags_and_own_keys_win() -> None:
    text = VALID.replace(
        "  done: {terminal: true, success: true}", "  done: &end {terminal: true, success: true}"
    ).replace("transitions:", "  broken: {<<: *end, success: false}\ntransitions:")
    definition, locations = parse_definition(text)
    assert definition.statuses["broken"].terminal
    assert not definition.statuses["broken"].success
    assert locations["statuses.broken.terminal"] == position(text, "true", 3)


def test_a_merge_of_something_other_than_a_mapping_is_an_invalid_type() -> None:
    text = VALID.replace("{initial: true}", "{initial: true, <<: [1]}")
    issue = the_issue(text, "invalid-type")
    assert at(issue) == position(text, "1]")


# -- limits --------------------------------------------------------------------------------

ALIAS_BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{chr(c)}: &{chr(c)} [{','.join([f'*{chr(c - 1)}'] * 9)}]"
            for c in range(ord("b"), ord("j"))
        ),
    ]
)


def test_an_alias_bomb_is_rejected_fast_as_too_many_nodes() -> None:
    started = time.perf_counter()
    issue = the_issue(ALIAS_BOMB, "too-many-nodes")
    assert time.perf_counter() - started < 1.0
    assert str(MAX_NODES) in issue.message
    assert issue.line is not None
    assert ALIAS_BOMB.splitlines()[issue.line - 1][issue.column - 1 :].startswith("*")  # type: ignore[operator]


def test_a_document_with_too_many_plain_nodes_is_rejected() -> None:
    text = "[" + "a, " * (MAX_NODES + 1) + "]"
    issue = the_issue(text, "too-many-nodes")
    assert issue.line == 1


def test_a_document_over_the_size_limit_is_rejected_as_text_and_as_bytes() -> None:
    text = "# " + "x" * MAX_DOCUMENT_BYTES + "\n"
    assert the_issue(text, "document-too-large").line == 1
    assert the_issue(text.encode(), "document-too-large").line == 1


def test_a_file_over_the_size_limit_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"#" * (MAX_DOCUMENT_BYTES * 3))
    with pytest.raises(SpecError) as caught:
        load_definition(path)
    assert [i.code for i in caught.value.issues] == ["document-too-large"]


def test_nesting_deeper_than_the_limit_is_too_deep() -> None:
    text = "a: " + "[" * (MAX_DEPTH + 10) + "]" * (MAX_DEPTH + 10) + "\n"
    issue = the_issue(text, "too-deep")
    assert issue.line == 1


def test_nesting_that_only_aliases_make_too_deep_is_too_deep() -> None:
    half = MAX_DEPTH // 2 + 2
    text = f"a: &a {'[' * half}x{']' * half}\nb: {'[' * half}*a{']' * half}\n"
    issue = the_issue(text, "too-deep")
    assert issue.line == 2


def test_hundreds_of_thousands_of_nested_brackets_do_not_crash() -> None:
    the_issue("[" * (MAX_DOCUMENT_BYTES - 1), "too-deep")
    the_issue("[" * 300_000 + "]" * 300_000, "too-deep")


def test_an_alias_inside_its_own_anchor_is_a_recursive_alias() -> None:
    text = "a: &a [1, *a]\n"
    issue = the_issue(text, "recursive-alias")
    assert at(issue) == position(text, "*a")


def test_a_merge_of_its_own_mapping_is_a_recursive_alias() -> None:
    the_issue("a: &a {x: 1, <<: *a}\n", "recursive-alias")


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML is built without libyaml")
def test_libyaml_parses_when_it_is_available() -> None:
    assert issubclass(yamlcompose.Loader, yaml.CSafeLoader)


def test_the_pure_python_loader_reads_like_libyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [(CONFIG / f"{name}.yaml").read_text() for name in bundled_names()]
    with_libyaml = [parse_definition(text) for text in texts]
    bombed = issues_of(ALIAS_BOMB)
    monkeypatch.setattr(yamlcompose, "Loader", yamlcompose.PureLoader)
    assert [parse_definition(text) for text in texts] == with_libyaml
    assert issues_of(ALIAS_BOMB) == bombed


# -- from a dict ---------------------------------------------------------------------------


def test_a_dict_gives_the_same_definition_and_no_positions() -> None:
    definition, locations = definition_from_dict(yaml.safe_load(VALID))
    assert definition == parse_definition(VALID)[0]
    assert locations == {}


@pytest.mark.parametrize("mode", ["python", "json"])
@pytest.mark.parametrize("name", bundled_names())
def test_a_dumped_definition_reads_back_equal(name: str, mode: str) -> None:
    definition, _ = load_definition(name)
    assert definition_from_dict(definition.model_dump(mode=mode))[0] == definition


def test_a_dict_is_validated_like_a_document_without_positions() -> None:
    data = yaml.safe_load(SEVERAL_MISTAKES)
    with pytest.raises(SpecError) as caught:
        definition_from_dict(data, "stored")
    issues = caught.value.issues
    assert {i.code for i in issues} == {i.code for i in issues_of(SEVERAL_MISTAKES)}
    assert {(i.line, i.column, i.filename) for i in issues} == {(None, None, "stored")}


def test_a_dict_with_a_key_that_is_not_a_string_is_an_invalid_key() -> None:
    with pytest.raises(SpecError) as caught:
        definition_from_dict({"phasekit": 1, 3: "x"})  # type: ignore[dict-item]
    assert "invalid-key" in {i.code for i in caught.value.issues}


def test_a_dict_that_contains_itself_is_refused_not_a_crash() -> None:
    data: dict[str, object] = {"phasekit": 1}
    data["name"] = data
    with pytest.raises(SpecError) as caught:
        definition_from_dict(data)
    assert [i.code for i in caught.value.issues] == ["recursive-alias"]


def test_a_dict_nested_too_deep_is_too_deep() -> None:
    deep: object = "x"
    for _ in range(MAX_DEPTH * 20):
        deep = [deep]
    with pytest.raises(SpecError) as caught:
        definition_from_dict({"phasekit": 1, "name": deep})
    assert [i.code for i in caught.value.issues] == ["too-deep"]


@pytest.mark.parametrize("version", ["true", "1.0"])
def test_format_version_must_be_the_integer_one(version: str) -> None:
    text = (
        (Path(__file__).resolve().parent.parent / "config" / "ingestion.yaml")
        .read_text()
        .replace("phasekit: 1", f"phasekit: {version}")
    )
    with pytest.raises(SpecError) as info:
        parse_definition(text, "v.yaml")
    assert [(i.code, i.path) for i in info.value.issues] == [("invalid-value", "phasekit")]


def test_a_forbidden_tag_on_the_root_mapping_is_reported() -> None:
    the_issue("!:\n::", "forbidden-tag")
