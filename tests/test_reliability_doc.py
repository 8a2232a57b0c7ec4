"""docs/reliability.md names, for every guarantee, tests that exist."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
# `tests/test_x.py::test_name`, or `tests/test_x.py::TestClass::test_name`
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)((?:::\w+)+)`")


def references(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """Every ``(file, (name, ...))`` the text refers to, in order."""
    return [(m[1], tuple(m[2].split("::")[1:])) for m in REFERENCE.finditer(text)]


@cache
def definitions(path: Path) -> dict[str, set[str]]:
    """The module's top-level names (functions, classes, assignments) and each class's members."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names[node.name] = set()
        elif isinstance(node, ast.ClassDef):
            names[node.name] = {
                n.name for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            }
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = set()  # e.g. a state machine's TestCase
    return names


def missing(file: str, names: tuple[str, ...]) -> str | None:
    """Why ``file::names`` does not name a test, or None when it does."""
    path = ROOT / file
    if not path.is_file():
        return f"{file} does not exist"
    found = definitions(path)
    first, *rest = names
    if not first.startswith(("test_", "Test")):
        return f"{file}::{first} is not a test"
    if first not in found:
        return f"{file} has no {first}"
    if rest and rest[0] not in found[first]:
        return f"{file}::{first} has no {rest[0]}"
    return None


def test_every_test_the_page_names_exists() -> None:
    named = references(DOC.read_text(encoding="utf-8"))
    assert len(named) >= 40
    problems = [problem for file, names in named if (problem := missing(file, names))]
    assert problems == []


@pytest.mark.parametrize(
    "section",
    [s.split("\n", 1)[0] for s in DOC.read_text(encoding="utf-8").split("\n## ")[1:]],
)
def test_every_section_names_the_tests_that_prove_it(section: str) -> None:
    text = DOC.read_text(encoding="utf-8").split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    assert references(text), f"section {section!r} names no test"


def test_a_reference_to_a_test_that_does_not_exist_is_caught() -> None:
    # The checks above would pass on a page that names nothing real, were they broken.
    assert missing("tests/test_reliability_doc.py", ("test_no_such_test",))
    assert missing("tests/no_such_file.py", ("test_x",))
    assert missing("tests/test_reliability_doc.py", ("references",))
    assert missing("tests/test_stateful.py", ("TestTrackerAgainstTheReferenceModel",)) is None
    assert references("`tests/test_a.py::TestX::test_y`") == [
        ("tests/test_a.py", ("TestX", "test_y"))
    ]
