"""The documentation states what the code does: codes, limits and examples."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import statemachine
from statemachine import spec
from statemachine.spec import documents as loader

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [
    "spec/schema_issues.py",
    "spec/references.py",
    "spec/compose.py",
    "spec/locate.py",
    "spec/documents.py",
]


def _codes_in(*files: str) -> set[str]:
    text = "".join((ROOT / "statemachine" / f).read_text() for f in files)
    return set(re.findall(r'"([a-z]+(?:-[a-z]+)+)"', text))


def _documented_codes(section: str) -> set[str]:
    text = (ROOT / "docs" / "format.md").read_text().split(f"## {section}\n", 1)[1]
    text = text.split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z-]+)` \|", text, re.M))


def test_every_error_code_is_documented() -> None:
    # Issue codes are the hyphenated string literals of the loader's modules.
    assert _codes_in(*SOURCES) == _documented_codes("Error codes")


def test_every_warning_code_is_documented() -> None:
    assert _codes_in("spec/checks.py") == _documented_codes("Warnings")


def test_documented_limits_are_the_enforced_ones() -> None:
    text = (ROOT / "docs" / "format.md").read_text()
    for value, code in [
        (loader.MAX_DOCUMENT_BYTES, "document-too-large"),
        (loader.MAX_NODES, "too-many-nodes"),
        (loader.MAX_DEPTH, "too-deep"),
    ]:
        assert f"| {value:,} " in text or f"| {value} " in text, code
    for value in (spec.MAX_STATUSES, spec.MAX_PHASES, spec.MAX_TRANSITIONS, spec.MAX_NAME_LENGTH):
        assert f"{value:,}" in text


def _yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize("doc", ["README.md", "docs/format.md"])
def test_phase_sets_in_the_docs_are_valid_and_clean(doc: str) -> None:
    blocks = [b for b in _yaml_blocks(ROOT / doc) if b.lstrip().startswith(("phasekit:", "#"))]
    phase_sets = [b for b in blocks if "phasekit: 1" in b]
    assert phase_sets
    for block in phase_sets:
        loaded = statemachine.parse_spec(block, doc)
        assert statemachine.check_spec(loaded) == []


def test_readme_quickstart_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text()
    video = next(b for b in _yaml_blocks(ROOT / "README.md") if b.startswith("# video.yaml"))
    (tmp_path / "video.yaml").write_text(video)
    section = readme.split("### 2. Drive jobs from Python", 1)[1].split("### 3.", 1)[0]
    worker, handler, script = re.findall(r"```python\n(.*?)```", section, re.S)
    monkeypatch.chdir(tmp_path)
    # The by-id patterns first: a worker finds a queued job and drives it, by id.
    with statemachine.Tracker("video.yaml", store="sqlite:///jobs.db") as tracker:
        tracker.create_job("queued-1")
    exec(compile(worker, "README.md", "exec"), {})
    with statemachine.Tracker("video.yaml", store="sqlite:///jobs.db") as tracker:
        transcode = tracker.get_job("queued-1").phases["transcode"]
        assert (transcode.status, transcode.items_processed) == ("done", 60)
        tracker.create_job("queued-2")
    handled: dict[str, Any] = {}
    exec(compile(handler, "README.md", "exec"), handled)

    async def request_twice() -> tuple[Any, Any]:
        first = await handled["start_transcode"]("queued-2", "req-1")
        again = await handled["start_transcode"]("queued-2", "req-1")  # a retried request
        await handled["tracker"].close()
        return first, again

    first, again = asyncio.run(request_twice())
    assert first.phases[1].status == "working" and again.version == first.version
    namespace: dict[str, object] = {}
    exec(compile(script, "README.md", "exec"), namespace)
    job = namespace["job"]
    assert isinstance(job, statemachine.JobState)
    assert job.get_overall_status() == "failed"
    assert job.explain_status().phases == ("transcode",)
    detached = statemachine.load_spec("video.yaml").new_job("upload-1")
    detached.phases["probe"].start()
    detached.phases["probe"].finish()
    assert (
        detached.get_overall_status(),
        detached.get_current_phase(),
        detached.get_overall_progress(),
    ) == ("processing", "transcode", 10.0)


def _phasekit_script() -> Path:
    """The ``phasekit`` script of this interpreter's environment (not whichever is on PATH)."""
    beside = Path(sys.executable).with_name("phasekit")
    return beside if beside.exists() else Path(shutil.which("phasekit") or "phasekit")


def test_readme_validate_transcript_is_what_the_cli_prints(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    video = next(b for b in _yaml_blocks(ROOT / "README.md") if b.startswith("# video.yaml"))
    typo = video.replace("dest: done}", "dest: don}").replace(
        "{name: transcode, weight: 8}", "{name: transcode, wieght: 8}"
    )
    (tmp_path / "video.yaml").write_text(typo)
    result = subprocess.run(
        [str(_phasekit_script()), "validate", "video.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "300"},
    )
    assert result.returncode == 1
    printed = (result.stdout + result.stderr).strip().splitlines()
    transcript = readme.split("With `dest: don` on line 12", 1)[1].split("```console\n", 1)[1]
    expected = transcript.split("```", 1)[0].strip().splitlines()[1:]
    assert printed == expected


def test_the_deadlines_page_crashed_worker_and_test_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = ROOT / "docs/deadlines.md"
    (crawl,) = [b for b in _yaml_blocks(page) if b.startswith("# crawl.yaml")]
    spec = statemachine.parse_spec(crawl, "docs/deadlines.md")
    assert statemachine.check_spec(spec) == []
    (tmp_path / "crawl.yaml").write_text(crawl)
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    (example,) = [b for b in blocks if "crashed" in b or "crawl.db" in b]
    exec(compile(example, "docs/deadlines.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    # Each print is followed by the comment that says what it prints.
    promised = [
        line.split("# ", 1)[1].strip() for line in example.splitlines() if line.startswith("print(")
    ]
    assert printed == promised
    (test_block,) = [b for b in blocks if b.startswith("def test_")]
    namespace: dict[str, Any] = {}
    exec(
        compile(
            "from datetime import UTC, datetime, timedelta\nfrom statemachine import Tracker\n"
            + test_block,
            "docs/deadlines.md",
            "exec",
        ),
        namespace,
    )
    namespace["test_a_silent_crawl_fails_after_its_heartbeat"](tmp_path)


def test_the_readme_shows_the_dashboard_and_the_two_commands_to_see_it() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Watch it live", 1)[1].split("\n## ", 1)[0]
    (commands,) = re.findall(r"```console\n(.*?)```", section, re.S)
    assert [line.split("#")[0].split() for line in commands.strip().splitlines()] == [
        ["phasekit", "demo"],
        ["phasekit", "serve"],
    ]
    images = re.findall(r"\((?:https://[^)\s]*/main/)?(docs/dashboard[\w-]*\.png)\)", section)
    assert sorted(images) == ["docs/dashboard-job.png", "docs/dashboard.png"]
    for image in images:
        assert (ROOT / image).stat().st_size > 10_000, image
    assert "docs/dashboard.png" in section and "docs/dashboard-job.png" in section
