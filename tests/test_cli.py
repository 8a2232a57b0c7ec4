"""The ``phasekit`` command line on SQLite files: as a console script, ``python -m``, in-process."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

import pytest
from click.testing import CliRunner

from statemachine.cli import cli, schema_json

REPO = Path(__file__).resolve().parent.parent
BAD_SPEC = """\
phasekit: 1
name: broken
statuses:
  todo: {initial: true}
  doing: {active: true}
  done: {terminal: true, success: true}
transitions:
  - {trigger: start, source: todo, dest: doin}
  - {trigger: finish, source: doing, dest: done, colour: red}
phases:
  - {name: only}
aggregate:
  status:
    - {all: [done], then: done}
    - {otherwise: todo}
"""
WARNED_SPEC = """\
phasekit: 1
name: warned
statuses:
  todo: {initial: true}
  doing: {active: true}
  stuck: {}
  done: {terminal: true, success: true}
transitions:
  - {trigger: start, source: todo, dest: doing}
  - {trigger: finish, source: doing, dest: done}
phases:
  - {name: only}
aggregate:
  status:
    - {all: [done], then: done}
    - {otherwise: todo}
"""
CUSTOM_SPEC = """\
phasekit: 1
name: review
statuses:
  draft: {initial: true}
  in_review: {active: true}
  approved: {terminal: true, success: true}
transitions:
  - {trigger: submit, source: draft, dest: in_review}
  - {trigger: approve, source: in_review, dest: approved}
phases:
  - {name: text}
  - {name: figures}
aggregate:
  status:
    - {all: [approved], then: approved}
    - {any: [in_review, approved], then: in_review}
    - {otherwise: draft}
"""


def _console_script() -> list[str]:
    """The installed ``phasekit`` script: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "phasekit"
    found = str(beside) if beside.exists() else shutil.which("phasekit")
    if found is None:
        pytest.fail("the phasekit console script is not installed (pip install -e .)")
    return [found]


ENTRY_POINTS = {"script": _console_script, "module": lambda: [sys.executable, "-m", "statemachine"]}


class Run:
    """A finished ``phasekit`` command: exit code, standard output and standard error."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code = code
        self.out = out
        self.err = err

    def json(self) -> Any:
        return json.loads(self.out)


class Phasekit(Protocol):
    def __call__(
        self,
        *args: str,
        entry: str = "inprocess",
        stdin: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Run: ...


@pytest.fixture
def phasekit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Phasekit:
    """Run ``phasekit ARGS`` in ``tmp_path``.

    ``entry`` is ``script`` (the console script), ``module`` (``python -m statemachine``), or
    ``inprocess`` (click's runner: the same command objects, without a process start).
    """
    for name in ("PHASEKIT_STORE", "PHASEKIT_DISABLE_PLUGIN_AUTOLOAD", "PHASEKIT_DISABLE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)

    def run(
        *args: str,
        entry: str = "inprocess",
        stdin: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Run:
        if entry == "inprocess":
            result = CliRunner().invoke(cli, list(args), input=stdin, env=env)
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                raise result.exception
            return Run(result.exit_code, result.stdout, result.stderr)
        process = subprocess.run(
            [*ENTRY_POINTS[entry](), *args],
            check=False,
            cwd=tmp_path,
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=60,
        )
        assert "Traceback" not in process.stderr, process.stderr
        return Run(process.returncode, process.stdout, process.stderr)

    return run


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def _one_error_line(run: Run) -> str:
    assert run.code == 1, (run.out, run.err)
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("error: ")
    return lines[0]


# -- validate -------------------------------------------------------------------------------


def test_validate_accepts_bundled_names_and_files_with_exit_0(phasekit: Phasekit) -> None:
    run = phasekit(
        "validate", "ingestion", str(REPO / "config" / "deployment.yaml"), entry="script"
    )
    assert run.code == 0, run.err
    assert run.out.splitlines() == ["2 files valid"]


def test_validate_prints_every_error_located_and_exits_1(
    phasekit: Phasekit, tmp_path: Path
) -> None:
    (tmp_path / "bad.yaml").write_text(BAD_SPEC)
    run = phasekit("validate", "bad.yaml", entry="script")
    assert run.code == 1
    assert run.out.splitlines() == [
        "bad.yaml:8:42: unknown-status: transition 'start' goes to 'doin', which is not a "
        "declared status; declared: todo, doing, done (did you mean 'doing'?)",
        "bad.yaml:9:50: unknown-key: unknown key 'colour' in a transition; allowed keys: "
        "trigger, source, dest, conditions, unless, after, description",
        "2 errors, 0 warnings in 1 file",
    ]


def test_validate_warnings_alone_exit_0_but_fail_with_strict(
    phasekit: Phasekit, tmp_path: Path
) -> None:
    (tmp_path / "warned.yaml").write_text(WARNED_SPEC)
    relaxed = phasekit("validate", "warned.yaml")
    assert relaxed.code == 0
    assert relaxed.out.splitlines()[0].startswith("warned.yaml:6:3: unreachable-status: ")
    strict = phasekit("validate", "--strict", "warned.yaml", entry="module")
    assert strict.code == 1
    assert strict.out.splitlines()[-1] == "2 errors, 0 warnings in 1 file"


def test_validate_json_is_a_list_of_issue_dicts(phasekit: Phasekit, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BAD_SPEC)
    (tmp_path / "warned.yaml").write_text(WARNED_SPEC)
    run = phasekit("validate", "--format", "json", "bad.yaml", "warned.yaml")
    assert run.code == 1
    issues = run.json()
    assert isinstance(issues, list)
    assert [(i["file"], i["line"], i["code"], i["severity"]) for i in issues] == [
        ("bad.yaml", 8, "unknown-status", "error"),
        ("bad.yaml", 9, "unknown-key", "error"),
        ("warned.yaml", 6, "unreachable-status", "warning"),
        ("warned.yaml", 6, "dead-end-status", "warning"),
    ]
    assert issues[0]["hint"] == "doing"
    assert issues[0]["path"] == "transitions[0].dest"


def test_validate_reads_standard_input_given_as_dash(phasekit: Phasekit) -> None:
    run = phasekit("validate", "-", stdin=BAD_SPEC)
    assert run.code == 1
    assert run.out.startswith("<stdin>:8:42: unknown-status: ")


@pytest.mark.parametrize(
    "args", [("validate",), ("validate", "--format", "xml", "x.yaml"), ("nonsense",)]
)
def test_usage_errors_exit_2(phasekit: Phasekit, args: tuple[str, ...]) -> None:
    run = phasekit(*args, entry="script")
    assert run.code == 2
    assert "Usage:" in run.err


def test_a_missing_file_is_a_located_error_not_a_crash(phasekit: Phasekit) -> None:
    run = phasekit("validate", "nowhere.yaml")
    assert run.code == 1
    assert run.out.startswith("nowhere.yaml: unreadable-file: ")


# -- graph and schema -----------------------------------------------------------------------


def test_graph_prints_a_mermaid_state_diagram_by_default(phasekit: Phasekit) -> None:
    run = phasekit("graph", "ingestion", entry="script")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0] == "stateDiagram-v2"
    for line in (
        "    [*] --> not_started",
        "    not_started --> running: start",
        "    paused --> failed: fail",
        "    completed --> [*]",
        "    failed --> [*]",
    ):
        assert line in lines


def test_graph_prints_graphviz_dot(phasekit: Phasekit) -> None:
    run = phasekit("graph", "ingestion", "--format", "dot", entry="module")
    assert run.code == 0, run.err
    assert run.out.startswith('digraph "ingestion" {')
    assert '    "not_started" -> "running" [label="start"];' in run.out.splitlines()


def test_graph_of_a_stored_job_highlights_its_statuses(phasekit: Phasekit, store: str) -> None:
    assert (
        phasekit("jobs", "create", "--spec", "ingestion", "--id", "g1", "--store", store).code == 0
    )
    assert phasekit("jobs", "fire", "g1", "discovery", "start", "--store", store).code == 0
    run = phasekit("graph", "--job", "g1", "--store", store, entry="script")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert "    class running,not_started occupied" in lines
    assert "    note right of running" in lines
    assert "        discovery: running" in lines
    dot = phasekit("graph", "ingestion", "--format", "dot", "--job", "g1", "--store", store)
    assert 'fillcolor="#ffd966"' in dot.out
    assert "discovery: running\\l" in dot.out


def test_graph_without_file_or_job_is_a_usage_error(phasekit: Phasekit) -> None:
    run = phasekit("graph")
    assert run.code == 2
    assert "--job" in run.err


def test_schema_prints_the_json_schema_of_the_format(phasekit: Phasekit) -> None:
    run = phasekit("schema", entry="script")
    assert run.code == 0
    schema = run.json()
    assert isinstance(schema, dict)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"phasekit", "statuses", "transitions", "phases", "aggregate"} <= set(
        schema["properties"]
    )
    assert run.out == schema_json()


def test_shipped_schema_file_matches_the_models() -> None:
    shipped = (REPO / "config" / "phasekit.schema.json").read_text(encoding="utf-8")
    assert shipped == schema_json(), (
        "config/phasekit.schema.json is stale; regenerate it with "
        "`phasekit schema > config/phasekit.schema.json`"
    )


# -- plugins --------------------------------------------------------------------------------


def test_plugins_lists_the_bundled_plugins_with_hooks(phasekit: Phasekit) -> None:
    run = phasekit("plugins", "--json", entry="script")
    assert run.code == 0, run.err
    plugins = {p["name"]: p for p in run.json()}
    assert plugins["sql"]["hooks"] == ["register_stores"]
    assert plugins["logging"]["distribution"] == "phasekit"
    assert all(p["error"] is None for p in plugins.values())
    table = phasekit("plugins")
    assert (
        "store schemes: memory (event log), postgresql (event log), sqlite (event log)" in table.out
    )
    assert "logging (relayed)" in table.out
    assert "webhook (relayed)" in table.out


# -- jobs -----------------------------------------------------------------------------------


def test_jobs_create_fire_progress_show_list_history(phasekit: Phasekit, store: str) -> None:
    created = phasekit(
        "jobs", "create", "--spec", "ingestion", "--id", "j1", "--metadata",
        '{"source": "s3://bucket"}', "--store", store, "--json", entry="module",
    )  # fmt: skip
    assert created.code == 0, created.err
    assert created.json()["metadata"] == {"source": "s3://bucket"}

    fired = phasekit("jobs", "fire", "j1", "discovery", "start", "--store", store, entry="script")
    assert fired.code == 0, fired.err
    assert fired.out.startswith("discovery: not_started → running (start); job is running")

    progressed = phasekit(
        "jobs", "progress", "j1", "discovery", "50", "--total", "200", "--store", store, "--json",
        entry="script",
    )  # fmt: skip
    assert progressed.code == 0, progressed.err
    discovery = progressed.json()["phases"][0]
    assert (discovery["items_processed"], discovery["items_total"]) == (50, 200)
    assert discovery["progress"] == 25.0

    failed = phasekit(
        "jobs", "fire", "j1", "discovery", "fail", "--error", "disk full", "--store", store
    )
    assert failed.code == 0, failed.err

    shown = phasekit("jobs", "show", "j1", "--store", store, "--json", entry="script")
    job = shown.json()
    assert isinstance(job, dict)
    assert (job["status"], job["version"]) == ("failed", 4)
    assert job["phases"][0]["error"] == "disk full"
    table = phasekit("jobs", "show", "j1", "--store", store)
    assert "disk full" in table.out
    assert "start, fail" in table.out  # what the next phase allows

    listed = phasekit("jobs", "list", "--store", store, "--json", entry="script")
    assert [j["job_id"] for j in listed.json()] == ["j1"]
    assert phasekit("jobs", "list", "--status", "running", "--store", store, "--json").json() == []

    history = phasekit("jobs", "history", "j1", "--store", store, "--json", entry="script").json()
    assert isinstance(history, list)
    assert [(e["type"], e.get("trigger")) for e in history] == [
        ("job_created", None),
        ("phase_changed", "start"),
        ("phase_changed", "fail"),
    ]
    assert history[2]["error"] == "disk full"
    assert "not_started → running" in phasekit("jobs", "history", "j1", "--store", store).out


def test_jobs_create_without_id_generates_one(phasekit: Phasekit, store: str) -> None:
    run = phasekit("jobs", "create", "--spec", "deployment", "--store", store, "--json")
    assert run.code == 0, run.err
    job_id = run.json()["job_id"]
    assert job_id.startswith("deployment-")
    assert phasekit("jobs", "show", job_id, "--store", store).code == 0


def test_jobs_use_the_store_named_by_phasekit_store(phasekit: Phasekit, store: str) -> None:
    env = {"PHASEKIT_STORE": store}
    assert phasekit("jobs", "create", "--spec", "ingestion", "--id", "e1", env=env).code == 0
    assert [j["job_id"] for j in phasekit("jobs", "list", "--json", env=env).json()] == ["e1"]


def test_jobs_use_a_tracker_config_and_its_notifiers(phasekit: Phasekit, tmp_path: Path) -> None:
    (tmp_path / "review.yaml").write_text(CUSTOM_SPEC)
    (tmp_path / "phasekit.yaml").write_text(
        "spec: review.yaml\nstore: sqlite:///configured.db\nnotifiers:\n  logging: {level: INFO}\n"
    )
    created = phasekit("jobs", "create", "--id", "c1", "--config", "phasekit.yaml", "--json")
    assert created.code == 0, created.err
    assert created.json()["spec"] == "review"
    assert (tmp_path / "configured.db").exists()
    fired = phasekit("jobs", "fire", "c1", "text", "submit", "--config", "phasekit.yaml")
    assert fired.code == 0, fired.err


def test_a_job_is_driven_without_its_yaml_once_the_store_keeps_the_phase_set(
    phasekit: Phasekit, tmp_path: Path, store: str
) -> None:
    (tmp_path / "review.yaml").write_text(CUSTOM_SPEC)
    assert (
        phasekit("jobs", "create", "--spec", "review.yaml", "--id", "r1", "--store", store).code
        == 0
    )
    (tmp_path / "review.yaml").unlink()
    run = phasekit("jobs", "fire", "r1", "figures", "submit", "--store", store, "--json")
    assert run.code == 0, run.err
    assert run.json()["status"] == "in_review"


def test_an_invalid_trigger_is_one_line_naming_the_allowed_triggers(
    phasekit: Phasekit, store: str
) -> None:
    assert (
        phasekit("jobs", "create", "--spec", "ingestion", "--id", "t1", "--store", store).code == 0
    )
    line = _one_error_line(
        phasekit("jobs", "fire", "t1", "discovery", "resume", "--store", store, entry="script")
    )
    assert line == (
        "error: job 't1', phase 'discovery': cannot 'resume' from status 'not_started'; "
        "allowed triggers from 'not_started': start, fail"
    )
    unknown = _one_error_line(
        phasekit("jobs", "fire", "t1", "discovery", "launch", "--store", store)
    )
    assert "has no trigger 'launch'" in unknown
    assert "allowed triggers from 'not_started': start, fail" in unknown
    typo = _one_error_line(phasekit("jobs", "fire", "t1", "discovery", "strat", "--store", store))
    assert "has no trigger 'strat' (did you mean 'start'?)" in typo
    phase_typo = _one_error_line(
        phasekit("jobs", "fire", "t1", "discovry", "start", "--store", store)
    )
    assert "no phase 'discovry' (did you mean 'discovery'?)" in phase_typo


def test_domain_errors_are_one_line_with_exit_1(phasekit: Phasekit, store: str) -> None:
    assert (
        phasekit("jobs", "create", "--spec", "ingestion", "--id", "d1", "--store", store).code == 0
    )
    assert "no job 'ghost'" in _one_error_line(phasekit("jobs", "show", "ghost", "--store", store))
    assert "already exists" in _one_error_line(
        phasekit("jobs", "create", "--spec", "ingestion", "--id", "d1", "--store", store)
    )
    assert "no phase 'nope'" in _one_error_line(
        phasekit("jobs", "fire", "d1", "nope", "start", "--store", store)
    )
    too_many = phasekit(
        "jobs", "progress", "d1", "discovery", "9", "--total", "5", "--store", store
    )
    assert "greater than items_total" in _one_error_line(too_many)
    assert "no store for nosuch://" in _one_error_line(
        phasekit("jobs", "list", "--store", "nosuch://x")
    )
    assert "no bundled phase set" in _one_error_line(
        phasekit("jobs", "create", "--spec", "ingestoin", "--store", store)
    )


@pytest.mark.parametrize(
    "args",
    [
        ("jobs", "fire", "h1", "discovery", "st\x1b[31mart\x07"),
        ("jobs", "fire", "h1", "disc\nov\x7fery", "start"),
        ("jobs", "fire", "h1", "discovery", "x" * 100_000),
        ("jobs", "show", "\x1b]0;pwned\x07"),
        ("jobs", "create", "--spec", "ingestion", "--id", "bad\nid"),
        ("jobs", "create", "--spec", "ingestion", "--metadata", "[" * 100_000),
        ("jobs", "create", "--spec", "ingestion", "--metadata", "not json"),
        ("jobs", "create", "--spec", "ingestion", "--metadata", "[1, 2]"),
        ("jobs", "create", "--spec", "ingestion", "--id", "y" * 100_000),
    ],
    ids=["trigger-escapes", "phase-newline-nul", "huge-trigger", "id-escapes", "id-newline",
         "deep-metadata", "bad-metadata", "list-metadata", "huge-id"],
)  # fmt: skip
def test_hostile_input_gets_a_clean_one_line_error(
    phasekit: Phasekit, store: str, args: tuple[str, ...]
) -> None:
    if args[1] != "create":
        assert (
            phasekit("jobs", "create", "--spec", "ingestion", "--id", "h1", "--store", store).code
            == 0
        )
    line = _one_error_line(phasekit(*args, "--store", store))
    assert line.isprintable()
    assert len(line) < 2100


def test_hostile_input_in_a_real_process_is_one_printable_line(
    phasekit: Phasekit, store: str
) -> None:
    trigger = "\x1b[2J\x1b]0;owned\x07" + "z" * 50_000
    run = phasekit("jobs", "fire", "nobody", "discovery", trigger, "--store", store, entry="script")
    line = _one_error_line(run)
    assert line.isprintable() and len(line) < 2100


def test_counts_beyond_what_a_store_holds_are_usage_errors(phasekit: Phasekit, store: str) -> None:
    run = phasekit("jobs", "progress", "h1", "discovery", str(2**64), "--store", store)
    assert run.code == 2
    assert "PROCESSED" in run.err


# -- demo -----------------------------------------------------------------------------------


def test_demo_runs_jobs_into_sqlite_and_says_how_to_inspect_them(
    phasekit: Phasekit, tmp_path: Path
) -> None:
    demo_store = "sqlite:///demo.db"
    run = phasekit(
        "demo", "--jobs", "3", "--seed", "3", "--speed", "25", "--store", demo_store, entry="module"
    )
    assert run.code == 0, run.err
    assert "\x1b[" not in run.out  # no terminal: plain text
    assert "Inspect the result:" in run.out
    assert f"  phasekit jobs list --store {demo_store}" in run.out.splitlines()
    assert "job is now" in run.out  # status changes are printed as they happen

    jobs = phasekit("jobs", "list", "--store", demo_store, "--json").json()
    assert isinstance(jobs, list) and len(jobs) == 3
    assert {j["status"] for j in jobs} <= {"completed", "failed"}
    assert all(j["metadata"]["seed"] == 3 for j in jobs)
    for job in jobs:
        assert job["job_id"] in run.out
        history = phasekit("jobs", "history", job["job_id"], "--store", demo_store, "--json").json()
        assert isinstance(history, list) and history[0]["type"] == "job_created"
    log = (tmp_path / "phasekit-demo.log").read_text(encoding="utf-8")
    assert "phase_changed" in log and "progress_updated" in log


def test_validate_reports_a_wildcard_inside_a_source_list_without_a_traceback(
    phasekit: Phasekit, tmp_path: Path
) -> None:
    (tmp_path / "wild.yaml").write_text(
        BAD_SPEC.split("transitions:", maxsplit=1)[0]
        + 'transitions:\n  - {trigger: start, source: [todo, "*"], dest: doing}\n'
        + "phases:" + BAD_SPEC.split("phases:", 1)[1]
    )  # fmt: skip
    run = phasekit("validate", "wild.yaml", entry="script")  # asserts no traceback
    assert run.code == 1
    assert "wildcard-in-list" in run.out


@pytest.mark.parametrize(
    "url", ["postgresql+asyncpg://someone@127.0.0.1/test", "sqlite+pysqlcipher:///x.db"]
)
def test_a_store_url_with_another_driver_is_one_line_naming_the_one_to_use(
    phasekit: Phasekit, url: str
) -> None:
    run = phasekit("jobs", "create", "--spec", "ingestion", "--store", url, entry="script")
    assert run.code == 1  # and no traceback (the fixture checks)
    assert "the SQL store drives" in run.err


def test_a_malformed_store_url_is_refused_without_echoing_it(phasekit: Phasekit) -> None:
    for url in ("postgresql:/someone:hunter2@db", "postgresql://someone:hunter2@db:notaport/x"):
        run = phasekit("jobs", "create", "--spec", "ingestion", "--store", url, entry="script")
        assert run.code == 1
        assert "hunter2" not in run.err + run.out


@pytest.mark.parametrize(
    "command",
    [("jobs", "list"), ("jobs", "show", "j1"), ("jobs", "history", "j1"), ("graph", "--job", "j1")],
)
def test_a_read_only_command_never_creates_a_store(
    phasekit: Phasekit, tmp_path: Path, command: tuple[str, ...]
) -> None:
    run = phasekit(*command, "--store", "sqlite:///typo.db", entry="script")
    assert run.code == 1
    assert "no store at typo.db" in run.err
    assert not (tmp_path / "typo.db").exists()


def test_a_stored_phase_set_changed_outside_phasekit_is_refused(
    phasekit: Phasekit, tmp_path: Path
) -> None:

    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    assert (
        phasekit("jobs", "create", "--spec", "ingestion", "--id", "t1", "--store", store).code == 0
    )
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        ((fingerprint, text),) = db.execute("SELECT fingerprint, definition FROM phasekit_specs")
        definition = json.loads(text)
        definition["transitions"].append(
            {"trigger": "skip", "source": "not_started", "dest": "completed"}
        )
        db.execute(
            "UPDATE phasekit_specs SET definition = ? WHERE fingerprint = ?",
            (json.dumps(definition), fingerprint),
        )
    run = phasekit("jobs", "fire", "t1", "discovery", "skip", "--store", store, entry="script")
    assert run.code == 1
    assert "changed outside phasekit" in run.err
    shown = phasekit("jobs", "show", "t1", "--store", store, "--json")
    assert shown.json()["phases"][0]["status"] == "not_started"


def test_jobs_fire_with_an_idempotency_key_commits_once(phasekit: Phasekit, store: str) -> None:
    assert (
        phasekit("jobs", "create", "--spec", "ingestion", "--id", "k", "--store", store).code == 0
    )
    args = ("jobs", "fire", "k", "discovery", "start", "--idempotency-key", "t1", "--store", store)
    first = phasekit(*args, "--json")
    assert first.code == 0, first.err
    assert first.json()["version"] == 2
    again = phasekit(*args)
    assert again.code == 0, again.err
    assert again.out.startswith("nothing changed: idempotency key 't1' was committed before")
    history = phasekit("jobs", "history", "k", "--store", store, "--json").json()
    assert [e["type"] for e in history] == ["job_created", "phase_changed"]


def test_jobs_list_by_phase_status(phasekit: Phasekit, store: str) -> None:
    for job_id in ("a", "b"):
        phasekit("jobs", "create", "--spec", "ingestion", "--id", job_id, "--store", store)
    phasekit("jobs", "fire", "a", "discovery", "start", "--store", store)
    found = phasekit(
        "jobs", "list", "--phase-status", "discovery=running", "--store", store, "--json"
    )
    assert found.code == 0, found.err
    assert [j["job_id"] for j in found.json()] == ["a"]
    none = phasekit(
        "jobs", "list", "--phase-status", "discovery=running", "--phase-status",
        "extraction=running", "--store", store,
    )  # fmt: skip
    assert none.code == 0, none.err
    assert "with discovery=running, extraction=running" in none.out
    bad = phasekit("jobs", "list", "--phase-status", "discovery", "--store", store)
    assert bad.code == 2
    assert "is not PHASE=STATUS" in bad.err


def test_jobs_delete_removes_the_job_and_logs_its_deletion(phasekit: Phasekit, store: str) -> None:
    phasekit("jobs", "create", "--spec", "ingestion", "--id", "gone", "--store", store)
    deleted = phasekit("jobs", "delete", "gone", "--store", store)
    assert deleted.code == 0, deleted.err
    assert deleted.out.strip() == "deleted job gone (it was at version 1)"
    shown = phasekit("jobs", "show", "gone", "--store", store)
    assert shown.code == 1
    assert "no job 'gone'" in shown.err
    again = phasekit("jobs", "delete", "gone", "--store", store)
    assert again.code == 1
    log = phasekit("events", "--store", store, "--json")
    assert [json.loads(line)["event"]["type"] for line in log.out.splitlines()] == [
        "job_created",
        "job_deleted",
    ]
