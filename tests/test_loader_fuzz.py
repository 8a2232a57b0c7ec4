"""Any input gives a definition or a SpecError, never another exception, and within 1 s.

About 13,000 documents in all: arbitrary text, bytes and YAML-like text from hypothesis,
and a seeded corpus of mutations of the bundled phase sets.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statemachine.errors import SpecError
from statemachine.spec import PhaseSetDef
from statemachine.spec import compose as yamlcompose
from statemachine.spec.documents import definition_from_dict, parse_definition

CONFIG = Path(__file__).resolve().parent.parent / "config"
BUNDLED = [path.read_text(encoding="utf-8") for path in sorted(CONFIG.glob("*.yaml"))]
YAML_SYNTAX = [*"{}[]:,-?&*!|>'\"#%@`~\\ \t\n", "<<: ", "&a ", "*a", "!!str ", "---\n"]
# No wall-clock deadline: on a loaded machine it measures the machine. Each document's parse
# is bounded in this thread's CPU time instead (assert_definition_or_spec_error): threads
# other tests left running do not count.
FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_definition_or_spec_error(document: str | bytes) -> None:
    started = time.thread_time()
    try:
        definition, locations = parse_definition(document, "fuzz.yaml")
    except SpecError as err:
        assert err.issues
        for issue in err.issues:
            assert issue.code and issue.message and issue.filename == "fuzz.yaml"
            assert issue.line is None or (issue.line >= 1 and (issue.column or 0) >= 1)
    else:
        assert isinstance(definition, PhaseSetDef)
        assert all(line >= 1 and column >= 1 for line, column in locations.values())
    # A guard against inputs that blow up (quadratic aliases, deep nesting): a parse takes
    # milliseconds; one that takes a CPU second is a bug, whatever the machine's load.
    elapsed = time.thread_time() - started
    assert elapsed < 1.0, f"{elapsed:.2f} s of CPU for {document[:200]!r}"


@FUZZ
@given(st.text())
def test_any_text(text: str) -> None:
    assert_definition_or_spec_error(text)


@FUZZ
@given(st.binary())
def test_any_bytes(data: bytes) -> None:
    assert_definition_or_spec_error(data)


@FUZZ
@given(st.lists(st.sampled_from([*YAML_SYNTAX, *"abnt01 :\n"]), max_size=150).map("".join))
def test_any_yaml_like_text(text: str) -> None:
    assert_definition_or_spec_error(text)


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from(BUNDLED),
    st.integers(min_value=0),
    st.lists(st.sampled_from([*YAML_SYNTAX, *"xyz_9"]), min_size=1, max_size=6).map("".join),
)
def test_a_bundled_document_with_yaml_syntax_inserted(
    document: str, where: int, fragment: str
) -> None:
    where %= len(document) + 1
    assert_definition_or_spec_error(document[:where] + fragment + document[where:])


_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=10) | st.integers(), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(["phasekit", "name", "statuses", "phases", "x"]), _data))
def test_any_dict(data: dict[str, object]) -> None:
    try:
        definition, _ = definition_from_dict(data)
    except SpecError as err:
        assert err.issues
    else:
        assert isinstance(definition, PhaseSetDef)


# -- the mutation corpus -----------------------------------------------------------------

Mutation = Callable[[random.Random, list[str]], list[str]]


def _delete_line(rng: random.Random, lines: list[str]) -> list[str]:
    del lines[rng.randrange(len(lines))]
    return lines


def _duplicate_line(rng: random.Random, lines: list[str]) -> list[str]:
    i = rng.randrange(len(lines))
    lines.insert(rng.randrange(len(lines) + 1), lines[i])
    return lines


def _swap_lines(rng: random.Random, lines: list[str]) -> list[str]:
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return lines


def _flip_character(rng: random.Random, lines: list[str]) -> list[str]:
    i = rng.randrange(len(lines))
    if lines[i]:
        k = rng.randrange(len(lines[i]))
        char = rng.choice(["\x00", "\u2028", "\ud800", "é", "\t", chr(rng.randrange(32, 127))])
        lines[i] = lines[i][:k] + char + lines[i][k + 1 :]
    return lines


def _insert_syntax(rng: random.Random, lines: list[str]) -> list[str]:
    i = rng.randrange(len(lines))
    k = rng.randrange(len(lines[i]) + 1)
    lines[i] = lines[i][:k] + rng.choice(YAML_SYNTAX) + lines[i][k:]
    return lines


def _reindent(rng: random.Random, lines: list[str]) -> list[str]:
    i = rng.randrange(len(lines))
    lines[i] = lines[i].lstrip() if rng.random() < 0.5 else "  " + lines[i]
    return lines


def _swap_words(rng: random.Random, lines: list[str]) -> list[str]:
    words = " ".join(lines).replace("{", " ").replace(",", " ").split()
    i = rng.randrange(len(lines))
    if words and lines[i].split():
        lines[i] = lines[i].replace(rng.choice(lines[i].split()), rng.choice(words), 1)
    return lines


def _truncate(rng: random.Random, lines: list[str]) -> list[str]:
    text = "\n".join(lines)
    return text[: rng.randrange(len(text) + 1)].split("\n")


def _splice(rng: random.Random, lines: list[str]) -> list[str]:
    other = rng.choice(BUNDLED).splitlines()
    start = rng.randrange(len(other))
    lines[rng.randrange(len(lines)) :] = other[start : start + rng.randrange(1, 6)]
    return lines


MUTATIONS: list[Mutation] = [
    _delete_line,
    _duplicate_line,
    _swap_lines,
    _flip_character,
    _insert_syntax,
    _reindent,
    _swap_words,
    _truncate,
    _splice,
]


def mutants(seed: int, count: int) -> Iterator[str | bytes]:
    """``count`` documents, each a bundled one with one to four random mutations."""
    rng = random.Random(seed)
    for _ in range(count):
        lines = rng.choice(BUNDLED).splitlines() or [""]
        for _ in range(rng.randint(1, 4)):
            lines = rng.choice(MUTATIONS)(rng, lines) or [""]
        text = "\n".join(lines) + "\n"
        if rng.random() < 0.1:  # as bytes, sometimes with a byte that is not UTF-8
            data = text.encode("utf-8", "surrogatepass")
            k = rng.randrange(len(data) + 1)
            yield data[:k] + bytes([rng.randrange(256)]) + data[k:]
        else:
            yield text


@pytest.mark.parametrize("seed", range(6))
def test_mutated_bundled_documents(seed: int) -> None:
    for document in mutants(seed, 1000):
        assert_definition_or_spec_error(document)


def test_mutated_bundled_documents_with_the_pure_python_loader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(yamlcompose, "Loader", yamlcompose.PureLoader)
    for document in mutants(100, 1000):
        assert_definition_or_spec_error(document)
