"""Input from places phasekit does not control: refused with a typed error, nothing written.

Every refusal is checked against the store's tables, read before and after: a refused call
leaves every row as it was. What is accepted comes back exactly as it was given.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from statemachine.plugins.sql import SQLStore

from statemachine import (
    ConfigError,
    JobNotFound,
    JobState,
    PhaseSet,
    SpecError,
    Tracker,
    parse_spec,
)
from statemachine.limits import (
    MAX_COUNT,
    MAX_ERROR_LENGTH,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
)

from .conftest import StoreTarget

Snapshot = dict[str, list[tuple[Any, ...]]]


def snapshot(store: SQLStore) -> Snapshot:
    """Every row of the store's four tables, in primary-key order."""
    tables = store.tables
    with store.engine.connect() as conn:
        return {
            table.name: [
                tuple(row)
                for row in conn.execute(select(table).order_by(*table.primary_key.columns))
            ]
            for table in (tables.jobs, tables.phases, tables.history, tables.specs)
        }


@pytest.fixture
def store(store_target: StoreTarget) -> Iterator[SQLStore]:
    store = store_target.open()
    yield store
    store.close()


@pytest.fixture
def tracker(ingestion: PhaseSet, store: SQLStore) -> Iterator[Tracker]:
    """A tracker on a SQL store that already holds a job, ``kept``, started."""
    with Tracker(ingestion, store=store, load_entrypoints=False) as tracker:
        tracker.create_job("kept", metadata={"a": 1}).phases["discovery"].start()
        yield tracker


def nested(depth: int) -> dict[str, Any]:
    """Metadata of ``depth`` objects inside one another."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# -- job ids -----------------------------------------------------------------------------------

BAD_IDS = {
    "empty": "",
    "whitespace": " \t ",
    "10k characters": "j" * 10_000,
    "newline": "job\n1",
    "escape codes": "job\x1b[31m1",
    "NUL": "job\x001",
    "line separator": "job\u20281",
    "bidi override": "job\u202e1",
}


@pytest.mark.parametrize("job_id", list(BAD_IDS.values()), ids=list(BAD_IDS))
def test_an_unusable_job_id_is_a_value_error_and_nothing_is_written(
    tracker: Tracker, store: SQLStore, job_id: str
) -> None:
    before = snapshot(store)
    with pytest.raises(ValueError, match="job id"):
        tracker.create_job(job_id)
    assert snapshot(store) == before


@pytest.mark.parametrize("job_id", list(BAD_IDS.values()), ids=list(BAD_IDS))
def test_looking_up_an_unusable_job_id_finds_nothing_on_every_store(
    tracker: Tracker, store: SQLStore, job_id: str
) -> None:
    with pytest.raises(JobNotFound):
        tracker.get_job(job_id)
    assert tracker.history(job_id) == []


@pytest.mark.parametrize("job_id", [42, None, b"job-1", ["job-1"]])
def test_a_job_id_that_is_not_a_string_is_a_type_error_and_nothing_is_written(
    tracker: Tracker, store: SQLStore, job_id: Any
) -> None:
    before = snapshot(store)
    with pytest.raises(TypeError, match="job id must be a string"):
        tracker.create_job(job_id)
    assert snapshot(store) == before


# -- metadata ----------------------------------------------------------------------------------


def circular() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


BAD_METADATA: dict[str, tuple[Any, type[Exception], str]] = {
    "an object": ({"when": object()}, TypeError, "JSON values only"),
    "a set": ({"tags": {"a", "b"}}, TypeError, "JSON values only"),
    "bytes": ({"blob": b"\x00\xff"}, TypeError, "JSON values only"),
    "a tuple key": ({(1, 2): "x"}, TypeError, "JSON object keys are strings"),
    "circular": (circular(), ValueError, "nested more than"),
    "NaN": ({"ratio": math.nan}, ValueError, "JSON cannot hold"),
    "infinity": ({"ratio": [1.0, -math.inf]}, ValueError, "JSON cannot hold"),
    # What JSON would give back changed: refused rather than silently altered.
    "an int key beside its string": ({1: "a", "1": "b"}, TypeError, "key 1 \\(int\\)"),
    "a bool key": ({True: 1}, TypeError, "key True \\(bool\\)"),
    "a tuple value": ({"pair": (1, 2)}, TypeError, r"metadata\['pair'\] is of type tuple"),
    "a lone surrogate": ({"name": "\udc80"}, ValueError, "lone surrogate"),
    "a lone surrogate key": ({"\ud800": 1}, ValueError, "lone surrogate"),
    "not a mapping": ([("a", 1)], TypeError, "must be a mapping"),
    "one byte too large": (
        {"blob": "x" * (MAX_METADATA_BYTES - len('{"blob": ""}') + 1)},
        ValueError,
        "at most",
    ),
    "one level too deep": (nested(MAX_METADATA_DEPTH + 1), ValueError, "nested more than"),
    # Deep enough that the store's JSON readers would refuse it once saved.
    "200 levels deep": (nested(200), ValueError, "nested more than"),
    "100,000 levels deep": (nested(100_000), ValueError, "nested more than"),
}


@pytest.mark.parametrize(
    ("metadata", "error", "says"), list(BAD_METADATA.values()), ids=list(BAD_METADATA)
)
def test_metadata_that_cannot_be_kept_is_refused_and_nothing_is_written(
    tracker: Tracker, store: SQLStore, metadata: Any, error: type[Exception], says: str
) -> None:
    before = snapshot(store)
    with pytest.raises(error, match=says):
        tracker.create_job("job-1", metadata=metadata)
    assert snapshot(store) == before


def test_metadata_at_the_size_and_depth_limits_comes_back_whole_with_its_history(
    tracker: Tracker, store_target: StoreTarget
) -> None:
    large = {"blob": "x" * (MAX_METADATA_BYTES - len('{"blob": ""}'))}
    deep = nested(MAX_METADATA_DEPTH)
    tracker.create_job("large", metadata=large)
    tracker.create_job("deep", metadata=deep)
    fresh = store_target.open()
    try:
        for job_id, metadata in (("large", large), ("deep", deep)):
            record = fresh.load(job_id)
            assert record is not None and record.metadata == metadata
            [created] = fresh.history(job_id)
            assert created.metadata == metadata  # type: ignore[union-attr]
    finally:
        fresh.close()


# -- errors and counts -------------------------------------------------------------------------


def unchanged(job: JobState, tracker: Tracker, store: SQLStore, before: Snapshot) -> None:
    """The job is as it was, in memory and in the store."""
    assert job.to_schema() == tracker.get_job(job.job_id).to_schema()
    assert snapshot(store) == before


def test_an_error_message_over_the_limit_is_refused_and_nothing_changes(
    tracker: Tracker, store: SQLStore
) -> None:
    job = tracker.get_job("kept")
    before = snapshot(store)
    with pytest.raises(ValueError, match="at most"):
        job.phases["discovery"].fail("e" * (MAX_ERROR_LENGTH + 1))
    unchanged(job, tracker, store, before)
    job.phases["discovery"].fail("e" * MAX_ERROR_LENGTH)
    assert tracker.get_job("kept").phases["discovery"].error == "e" * MAX_ERROR_LENGTH


@pytest.mark.parametrize("error", [42, b"disk full", ["disk full"]])
def test_an_error_that_is_not_a_string_is_a_type_error_and_nothing_changes(
    tracker: Tracker, store: SQLStore, error: Any
) -> None:
    job = tracker.get_job("kept")
    before = snapshot(store)
    with pytest.raises(TypeError, match="error must be a string"):
        job.phases["discovery"].fail(error)
    unchanged(job, tracker, store, before)


def test_a_nul_in_an_error_is_refused_on_every_store_writing_nothing(
    tracker: Tracker, store: SQLStore, store_target: StoreTarget
) -> None:
    job = tracker.get_job("kept")
    before = snapshot(store)
    with pytest.raises(ValueError, match="must not contain NUL"):
        job.phases["discovery"].fail("disk\x00full")
    unchanged(job, tracker, store, before)


@pytest.mark.parametrize(
    ("processed", "total"),
    [(MAX_COUNT + 1, None), (0, MAX_COUNT + 1), (10**1000, None)],
    ids=["processed 2**63", "total 2**63", "processed 10**1000"],
)
def test_a_count_beyond_what_a_store_holds_is_a_value_error_and_nothing_changes(
    tracker: Tracker, store: SQLStore, processed: int, total: int | None
) -> None:
    job = tracker.get_job("kept")
    before = snapshot(store)
    with pytest.raises(ValueError, match="at most"):
        job.phases["discovery"].update_progress(processed, total)
    unchanged(job, tracker, store, before)
    job.phases["discovery"].update_progress(MAX_COUNT, MAX_COUNT)
    assert tracker.get_job("kept").phases["discovery"].items_processed == MAX_COUNT


# -- SQL metacharacters ------------------------------------------------------------------------

SQL_TEXT = [
    "'; DROP TABLE x; --",
    "Robert'); DROP TABLE phasekit_jobs;--",
    "\"double\" and 'single' quotes",
    "back\\slash \\' \\\\ \\n",
    "100% %s %(name)s %% %",
    ":name ? $1 @p {0}",
    "ünïcødé 日本語 🚀 e\u0301",
    "*/ /* -- # ;",
]
# Errors and metadata may also hold what a job id may not: line breaks, tabs, invisible
# format characters.
SQL_ERRORS = [*SQL_TEXT, "line one\nline two\r\n\ttabbed \u2028 \u202etxet \u200d \x1b[31m"]


def test_sql_metacharacters_in_every_string_field_round_trip_exactly(
    ingestion: PhaseSet, store: SQLStore, store_target: StoreTarget
) -> None:
    metadata: dict[str, Any] = {text: text for text in SQL_ERRORS}
    metadata["nested"] = {"list": SQL_TEXT, SQL_TEXT[0]: {SQL_TEXT[1]: SQL_TEXT[2]}}
    with Tracker(ingestion, store=store, load_entrypoints=False) as tracker:
        for job_id, error in zip(SQL_TEXT, SQL_ERRORS, strict=False):
            job = tracker.create_job(job_id, metadata=metadata)
            job.phases["extraction"].fail(error)
        last = tracker.get_job(SQL_TEXT[-1])
        last.phases["loading"].fail(SQL_ERRORS[-1])
    fresh = store_target.open()
    try:
        assert len(fresh.list(limit=100)) == len(SQL_TEXT)
        errors = [*zip(SQL_TEXT, SQL_ERRORS, strict=False), (SQL_TEXT[-1], SQL_ERRORS[-1])]
        for job_id, error in errors:
            record = fresh.load(job_id)
            assert record is not None
            assert record.job_id == job_id
            assert record.metadata == metadata
            assert error in [p.error for p in record.phases]
            created, *changes = fresh.history(job_id)
            assert created.job_id == job_id and created.metadata == metadata  # type: ignore[union-attr]
            assert error in [c.error for c in changes]  # type: ignore[union-attr]
    finally:
        fresh.close()


def test_sql_metacharacters_as_a_filter_or_an_unknown_id_find_nothing_and_break_nothing(
    tracker: Tracker, store: SQLStore
) -> None:
    before = snapshot(store)
    for text in SQL_TEXT:
        assert store.list(status=text) == []
        assert store.list(spec=text) == []
        assert store.load(text) is None
        assert store.history(text) == []
    assert snapshot(store) == before


# -- the command line --------------------------------------------------------------------------


def console_script() -> str:
    """The installed ``phasekit`` script: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "phasekit"
    found = str(beside) if beside.exists() else shutil.which("phasekit")
    if found is None:
        pytest.fail("the phasekit console script is not installed (pip install -e .)")
    return found


HOSTILE_ARGUMENTS = {
    "trigger with escape codes": ("kept", "discovery", "\x1b[2J\x1b]0;owned\x07complete"),
    "trigger of 100k characters": ("kept", "discovery", "c" * 100_000),
    "phase with control characters": ("kept", "disc\x08\x7f\rovery", "complete"),
    "phase of 100k characters": ("kept", "p" * 100_000, "complete"),
    "job id with escape codes": ("ke\x1b[8mpt", "discovery", "complete"),
    "job id of 100k characters": ("k" * 100_000, "discovery", "complete"),
}


@pytest.mark.parametrize("arguments", list(HOSTILE_ARGUMENTS.values()), ids=list(HOSTILE_ARGUMENTS))
def test_hostile_arguments_to_jobs_fire_exit_1_with_one_clean_line_and_write_nothing(
    ingestion: PhaseSet, tmp_path: Path, arguments: tuple[str, str, str]
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = SQLStore(url)
    with Tracker(ingestion, store=store, load_entrypoints=False) as tracker:
        tracker.create_job("kept").phases["discovery"].start()
        store = SQLStore(url)
        before = snapshot(store)
        run = subprocess.run(
            [console_script(), "jobs", "fire", *arguments, "--store", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
        assert snapshot(store) == before
        store.close()
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    [line] = run.stderr.splitlines()
    assert line.startswith("error: ")
    assert line.isprintable() and len(line) < 2100


# -- YAML that tries to build objects ----------------------------------------------------------

OBJECT_TAGS = [
    '!!python/object/apply:os.system ["touch {marker}"]',
    '!!python/object/new:os.system ["touch {marker}"]',
    "!!python/name:os.system",
    "!!python/module:os",
    '!!python/object/apply:subprocess.check_call [["touch", "{marker}"]]',
    "!!python/object:statemachine.Tracker {{spec: ingestion}}",
]


@pytest.mark.parametrize("tag", OBJECT_TAGS)
def test_a_phase_set_that_tries_to_build_an_object_is_refused_and_nothing_runs(
    tmp_path: Path, tag: str
) -> None:
    marker = tmp_path / "ran"
    document = f"""\
phasekit: 1
name: {tag.format(marker=marker)}
statuses: {{todo: {{initial: true}}, done: {{terminal: true}}}}
transitions: [{{trigger: finish, source: todo, dest: done}}]
phases: [{{name: only}}]
aggregate: {{status: [{{otherwise: todo}}]}}
"""
    with pytest.raises(SpecError) as caught:
        parse_spec(document)
    assert [i.code for i in caught.value.issues] == ["forbidden-tag"]
    assert not marker.exists()


@pytest.mark.parametrize("tag", OBJECT_TAGS)
def test_a_tracker_config_that_tries_to_build_an_object_is_refused_and_nothing_runs(
    tmp_path: Path, tag: str
) -> None:
    marker = tmp_path / "ran"
    config = tmp_path / "phasekit.yaml"
    config.write_text(f"spec: ingestion\nstore: {tag.format(marker=marker)}\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Tracker.from_config(config, load_entrypoints=False)
    assert not marker.exists()


def test_a_tracker_config_that_is_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    lines = ["spec: ingestion", "store_options: {}", "a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    config = tmp_path / "phasekit.yaml"
    config.write_text("\n".join(lines) + "\n")  # 9**9 strings once expanded, in 700 bytes
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="once aliases are expanded"):
        Tracker.from_config(config, load_entrypoints=False)
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("depth", [100, 600])
def test_a_tracker_config_nested_too_deep_is_refused(tmp_path: Path, depth: int) -> None:
    config = tmp_path / "phasekit.yaml"
    config.write_text("spec: ingestion\nstore_options: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(ConfigError, match="nested deeper than"):
        Tracker.from_config(config, load_entrypoints=False)
