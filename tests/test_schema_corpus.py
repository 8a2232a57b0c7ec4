"""The JSON Schema and ``phasekit validate`` agree over a corpus of good and broken phase sets.

``tests/schema_corpus/`` holds phase sets named by what the two should say of them:

- ``valid-*``: both accept it;
- ``invalid-*``: both refuse it, since the schema can say what is wrong;
- ``crossref-*``: ``phasekit validate`` refuses what JSON Schema cannot say, only with the codes
  docs/format.md lists under "What the schema cannot check", at the paths it gives.

Each file starts with a comment saying what it holds, then a ``# codes:`` line with the error
codes ``phasekit validate`` reports for it (none for a valid file). Whatever its name says, a
file the schema refuses must be refused by ``phasekit validate`` too, and a file only
``phasekit validate`` refuses must be refused for documented reasons alone.

The schema is checked by the real ``check-jsonschema`` CLI, which reads YAML itself, over every
file in one call; a CI run without it fails, a local one skips.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from statemachine.cli.spec_commands import SCHEMA_ID
from statemachine.errors import PhaseKitError
from statemachine.limits import parse_duration
from statemachine.spec import StatusDef
from statemachine.spec.model import DURATION_SCHEMA_PATTERN

from .conftest import running_in_ci

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "schema_corpus"
SCHEMA = ROOT / "config" / "phasekit.schema.json"
FORMAT_DOC = ROOT / "docs" / "format.md"
BUNDLED = sorted((ROOT / "config").glob("*.yaml"))
KINDS = ("valid", "invalid", "crossref")
MODELINE = f"# yaml-language-server: $schema={SCHEMA_ID}"
#: The one documented rule no committed file shows: a valid document over 1,000,000 bytes is
#: written at test time instead.
TOO_LARGE = "crossref-document-too-large.yaml"


@dataclass(frozen=True)
class Verdict:
    """What the schema and ``phasekit validate`` said of one file."""

    schema_errors: list[str]  # check-jsonschema's messages; empty when it accepts the file
    errors: list[tuple[str, str]]  # (code, path) of each error phasekit validate reports

    @property
    def codes(self) -> set[str]:
        return {code for code, _ in self.errors}


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.yaml"))


def documented_rules() -> dict[str, list[str]]:
    """Code -> path globs of the table under "What the schema cannot check"."""
    text = FORMAT_DOC.read_text(encoding="utf-8")
    section = text.split("### What the schema cannot check\n", 1)[1]
    section = re.split(r"\n#{1,3} ", section, maxsplit=1)[0]
    rows = re.findall(r"^\| `([a-z]+(?:-[a-z]+)*)` \| ([^|]+) \|", section, re.M)
    return {code: re.findall(r"`([^`]+)`", paths) for code, paths in rows}


def is_documented(code: str, path: str, rules: dict[str, list[str]]) -> bool:
    return any(
        re.fullmatch(re.escape(glob).replace(r"\*", ".*"), path) for glob in rules.get(code, [])
    )


def expected_codes(path: Path) -> set[str]:
    header = path.read_bytes().decode("utf-8", "replace").splitlines()[:3]
    for line in header:
        if line.startswith("# codes:"):
            return set(line.removeprefix("# codes:").split())
    return set()


def check_jsonschema() -> str:
    beside = Path(sys.executable).parent / "check-jsonschema"
    found = str(beside) if beside.exists() else shutil.which("check-jsonschema")
    if found is None:
        why = "check-jsonschema is not installed (pip install -e '.[dev]')"
        if running_in_ci():
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    return found


def run_check_jsonschema(files: list[Path]) -> dict[str, list[str]]:
    """File -> check-jsonschema's errors for it (parse errors included)."""
    run = subprocess.run(
        [check_jsonschema(), "--schemafile", str(SCHEMA), "-o", "json", *map(str, files)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"check-jsonschema did not report (exit {run.returncode}):\n{run.stderr}")
    errors: dict[str, list[str]] = {}
    for error in report["errors"]:
        errors.setdefault(error["filename"], []).append(f"{error['path']}: {error['message']}")
    for error in report["parse_errors"]:
        errors.setdefault(error["filename"], []).append(f"parse error: {error['message']}")
    assert (run.returncode == 0) == (not errors), run.stderr
    return errors


def run_validate(files: list[Path]) -> dict[str, list[tuple[str, str]]]:
    """File -> (code, path) of each error ``phasekit validate`` reports for it."""
    run = subprocess.run(
        [sys.executable, "-m", "statemachine", "validate", "--format", "json", *map(str, files)],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode in (0, 1), run.stderr
    errors: dict[str, list[tuple[str, str]]] = {}
    for issue in json.loads(run.stdout):
        if issue["severity"] == "error":
            errors.setdefault(issue["file"], []).append((issue["code"], issue["path"]))
    return errors


def too_large_document(folder: Path) -> Path:
    """A phase set the schema accepts, over 1,000,000 bytes (long phase descriptions)."""
    base = (CORPUS / "valid-base.yaml").read_text(encoding="utf-8")
    phases = "".join(f"  - {{name: p{i}, description: {'x' * 4000}}}\n" for i in range(260))
    path = folder / TOO_LARGE
    path.write_text(
        "# a phase set over 1,000,000 bytes\n# codes: document-too-large\n"
        + base.replace("phases:\n", "phases:\n" + phases, 1),
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Verdict]:
    """File name -> verdict, for the corpus, the bundled phase sets and the large document."""
    files = [
        *corpus_files(),
        *BUNDLED,
        too_large_document(tmp_path_factory.mktemp("schema-corpus")),
    ]
    schema = run_check_jsonschema(files)
    validate = run_validate(files)
    return {
        path.name: Verdict(schema.get(str(path), []), validate.get(str(path), [])) for path in files
    }


def test_the_corpus_is_large_and_holds_every_kind() -> None:
    names = [path.name for path in corpus_files()]
    assert len(names) >= 80
    assert all(name.startswith(tuple(f"{kind}-" for kind in KINDS)) for name in names)
    for kind in KINDS:
        assert sum(name.startswith(f"{kind}-") for name in names) >= 15, kind
    broken = [path for path in corpus_files() if not path.name.startswith("valid-")]
    assert all(expected_codes(path) for path in broken), "every broken file says its codes"


@pytest.mark.parametrize("name", [path.name for path in corpus_files()] + [TOO_LARGE])
def test_the_schema_and_validate_agree(name: str, verdicts: dict[str, Verdict]) -> None:
    verdict = verdicts[name]
    path = CORPUS / name
    expected = {"document-too-large"} if name == TOO_LARGE else expected_codes(path)
    schema_refuses = bool(verdict.schema_errors)
    said = f"schema: {verdict.schema_errors or 'accepts'}; validate: {verdict.errors or 'accepts'}"
    # The rules, whatever the file is named.
    if schema_refuses:
        assert verdict.errors, f"the schema refuses what phasekit validate accepts: {said}"
    elif verdict.errors:
        rules = documented_rules()
        undocumented = [e for e in verdict.errors if not is_documented(*e, rules)]
        assert not undocumented, (
            f"phasekit validate refuses, the schema accepts, for reasons docs/format.md does not "
            f"list under 'What the schema cannot check': {undocumented}; {said}"
        )
    # What the file's name and header say.
    kind = name.split("-", 1)[0]
    assert verdict.codes == expected, said
    if kind == "valid":
        assert not schema_refuses, said
    elif kind == "invalid":
        assert schema_refuses, f"the schema should refuse this file: {said}"
    else:
        assert not schema_refuses, f"a crossref file must be valid to the schema: {said}"


def test_every_rule_the_schema_cannot_check_is_shown_by_a_file(
    verdicts: dict[str, Verdict],
) -> None:
    shown = {
        code
        for name, verdict in verdicts.items()
        if name.startswith("crossref-")
        for code in verdict.codes
    }
    assert set(documented_rules()) == shown


def test_the_documented_rules_are_error_codes() -> None:
    text = FORMAT_DOC.read_text(encoding="utf-8")
    codes_section = text.split("## Error codes\n", 1)[1].split("\n## ", 1)[0]
    error_codes = set(re.findall(r"^\| `([a-z-]+)` \|", codes_section, re.M))
    rules = documented_rules()
    assert len(rules) >= 10
    assert set(rules) <= error_codes
    assert all(rules.values()), "every row gives the paths it is reported at"


@pytest.mark.parametrize("path", BUNDLED, ids=[path.name for path in BUNDLED])
def test_bundled_phase_sets_name_the_schema_and_pass_it(
    path: Path, verdicts: dict[str, Verdict]
) -> None:
    assert path.read_text(encoding="utf-8").splitlines()[0] == MODELINE
    assert verdicts[path.name] == Verdict([], [])


def test_the_schemas_id_is_where_the_repository_serves_it_and_the_docs_give_it() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["$id"] == SCHEMA_ID
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    repository = project["urls"]["Repository"].removeprefix("https://github.com/")
    served = f"https://raw.githubusercontent.com/{repository}/main/{SCHEMA.relative_to(ROOT)}"
    assert served == SCHEMA_ID
    text = FORMAT_DOC.read_text(encoding="utf-8")
    assert "example.invalid" not in text
    assert MODELINE in text


def test_the_docs_show_the_vs_code_set_up() -> None:
    section = FORMAT_DOC.read_text(encoding="utf-8").split("### Editor set-up\n", 1)[1]
    settings = json.loads(re.findall(r"```json\n(.*?)```", section, re.S)[0])
    assert settings["yaml.schemas"] == {SCHEMA_ID: ["*.phase.yaml", "phasesets/*.yaml"]}


#: Characters durations are made of, and near misses: other whitespace, a BOM, a stray letter.
_DURATION_CHARACTERS = "0123456789.smhdwSMHDW \t\n\u3000\x1c\ufeffx"


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=_DURATION_CHARACTERS, min_size=1, max_size=12))
def test_the_schemas_duration_pattern_accepts_what_the_loader_does(text: str) -> None:
    # The pattern uses no class whose meaning differs between Python's re and ECMAScript.
    schema_accepts = re.fullmatch(DURATION_SCHEMA_PATTERN, text) is not None
    try:
        StatusDef.model_validate({"timeout": text, "on_timeout": "expire"})
        loader_accepts = True
    except ValidationError:
        loader_accepts = False
    if schema_accepts and not loader_accepts:  # only the 100-year bound is left to validate
        with pytest.raises(PhaseKitError, match="at most 100 years"):
            parse_duration(text)
    else:
        assert schema_accepts == loader_accepts
