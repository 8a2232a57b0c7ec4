"""The plugins built in docs/writing-plugins.md install and work as the tutorial says."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "writing-plugins.md"
FILE_BLOCK = re.compile(r"<!-- file: (?P<path>\S+) -->\n```\w+\n(?P<body>.*?)```", re.S)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tutorial's two packages, written out from the doc and pip-installed into a folder."""
    root = tmp_path_factory.mktemp("tutorial")
    for match in FILE_BLOCK.finditer(DOC.read_text()):
        target = root / match["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(match["body"])
    site = root / "site"
    for package in ("phasekit-counter", "phasekit-jsonl"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(site),
                str(root / package),
            ],
            check=True,
        )
    return site


def run(site: Path, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("PHASEKIT_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )


def test_the_tutorial_packages_are_found_through_their_entry_points(
    site: Path, tmp_path: Path
) -> None:
    result = run(
        site,
        "import json, statemachine;"
        "t = statemachine.Tracker('ingestion');"
        "print(json.dumps([i.to_dict() for i in t.plugin_info()]))",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["counter"]["distribution"] == "phasekit-counter"
    assert plugins["counter"]["hooks"] == ["register_notifiers"]
    assert plugins["jsonl"]["hooks"] == ["register_stores"]
    assert plugins["jsonl"]["error"] is None


def test_the_counter_notifier_works_from_a_config(site: Path, tmp_path: Path) -> None:
    code = (
        "from statemachine import Tracker\n"
        "t = Tracker.from_config({'spec': 'ingestion', 'notifiers': "
        "{'counter': {'finished': ['failed']}}})\n"
        "job = t.create_job('j1')\n"
        "job.phases['discovery'].start()\n"
        "job.phases['extraction'].fail('boom')\n"
        "t.close()\n"
    )
    result = run(site, code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "phase changes: {'running': 1, 'failed': 1}; finished jobs: 1" in result.stdout


def test_the_jsonl_store_keeps_jobs_across_processes(site: Path, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    first = run(
        site,
        "from statemachine import Tracker\n"
        f"with Tracker('ingestion', store='jsonl://{path}') as t:\n"
        "    p = t.create_job('j1').phases['discovery']\n"
        "    p.start(); p.update_progress(items_processed=3, items_total=4); p.complete()\n",
        tmp_path,
    )
    assert first.returncode == 0, first.stderr
    second = run(
        site,
        "from statemachine import Tracker\n"
        f"with Tracker('ingestion', store='jsonl://{path}') as t:\n"
        "    job = t.get_job('j1')\n"
        "    print(job.phases['discovery'].status, job.get_current_phase(), job.version)\n"
        "    print([e.type for e in t.history('j1')])\n",
        tmp_path,
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [
        "completed extraction 4",
        "['job_created', 'phase_changed', 'phase_changed']",
    ]
