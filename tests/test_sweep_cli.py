"""Deadlines from the command line: ``phasekit sweep``, and the deadlines ``jobs list`` and
``jobs show`` print, as subprocesses against SQLite and PostgreSQL stores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from statemachine import PhaseSet, Tracker, parse_spec

from .conftest import StoreTarget

TIMED = """\
phasekit: 1
name: timed
statuses:
  queued: {initial: true}
  running: {active: true, timeout: 2h, heartbeat: 5m, on_timeout: fail}
  done: {terminal: true, success: true}
  failed: {terminal: true}
transitions:
  - {trigger: start, source: queued, dest: running}
  - {trigger: finish, source: running, dest: done}
  - {trigger: fail, source: [queued, running], dest: failed}
phases:
  - {name: fetch}
  - {name: crunch}
aggregate:
  status:
    - {any: [failed], then: failed}
    - {all: [done], then: done}
    - {any: [running, done], then: running}
    - {otherwise: queued}
"""


@pytest.fixture
def timed() -> PhaseSet:
    return parse_spec(TIMED)


@pytest.fixture
def config(tmp_path: Path, store_target: StoreTarget) -> Path:
    (tmp_path / "timed.yaml").write_text(TIMED)
    path = tmp_path / "phasekit.yaml"
    path.write_text(
        yaml.safe_dump(
            {"spec": "timed.yaml", "store": store_target.url, "store_options": store_target.options}
        )
    )
    return path


def phasekit(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "statemachine", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def started(store_target: StoreTarget, spec: PhaseSet, job_id: str, ago: timedelta) -> None:
    """A job whose ``fetch`` phase started running ``ago`` before now."""
    at = datetime.now(UTC) - ago
    store = store_target.open()
    with Tracker(spec, store, clock=lambda: at) as tracker:
        tracker.create_job(job_id)
        tracker.fire(job_id, "fetch", "start")
    store.close()


def history(store_target: StoreTarget, spec: PhaseSet, job_id: str) -> list[Any]:
    store = store_target.open()
    with Tracker(spec, store) as tracker:
        events = tracker.history(job_id)
    store.close()
    return events


def test_sweep_fires_the_overdue_phases_once_and_prints_what_it_did(
    config: Path, store_target: StoreTarget, timed: PhaseSet
) -> None:
    started(store_target, timed, "stale", ago=timedelta(hours=3))
    started(store_target, timed, "fresh", ago=timedelta(minutes=1))

    report = json.loads(phasekit("sweep", "--config", str(config), "--json").stdout)
    assert report["fired"] == 1
    (change,) = report["changes"]
    assert (change["job_id"], change["phase"], change["trigger"]) == ("stale", "fetch", "fail")
    assert (change["source"], change["dest"]) == ("running", "failed")
    assert "missed in status running" in change["error"]
    last = history(store_target, timed, "stale")
    failed = [e for e in last if getattr(e, "trigger", None) == "fail"]
    assert len(failed) == 1 and failed[0].error == change["error"]

    # Nothing is due any more: a second sweep fires nothing, in words this time.
    again = phasekit("sweep", "--config", str(config))
    assert again.stdout.splitlines()[-1] == "fired 0 phase(s) past their deadline"
    assert all(getattr(e, "trigger", None) != "fail" for e in history(store_target, timed, "fresh"))


def test_sweep_every_keeps_sweeping_until_interrupted(
    config: Path, store_target: StoreTarget, timed: PhaseSet
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "statemachine", "sweep", "--config", str(config), "--every", "0.2s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "250", "NO_COLOR": "1"},
    )
    try:
        # Made overdue after the sweeping process started: a later sweep of it finds it.
        time.sleep(0.5)
        started(store_target, timed, "later", ago=timedelta(hours=3))
        deadline = time.monotonic() + 20
        while not any(
            getattr(e, "trigger", None) == "fail" for e in history(store_target, timed, "later")
        ):
            assert time.monotonic() < deadline, "the sweeping process never fired the phase"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "sweeping every 0.2s" in err
    assert "later" in out and "fired 1 phase(s) past their deadline" in out
    assert "Traceback" not in err


def test_sweep_refuses_a_memory_store_and_a_bad_interval(tmp_path: Path) -> None:
    (tmp_path / "timed.yaml").write_text(TIMED)
    memory = tmp_path / "memory.yaml"
    memory.write_text(yaml.safe_dump({"spec": "timed.yaml", "store": "memory://"}))
    refused = phasekit("sweep", "--config", str(memory), check=False)
    assert refused.returncode == 1
    assert "memory://" in refused.stderr and "sweep_every" in refused.stderr
    assert "Traceback" not in refused.stderr

    bad = phasekit("sweep", "--config", str(memory), "--every", "soon", check=False)
    assert bad.returncode == 1
    assert "--every 'soon' is not a duration" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("store_target", ["sqlite"], indirect=True)
def test_jobs_list_and_show_print_each_deadline_and_the_time_left(
    store_target: StoreTarget, timed: PhaseSet
) -> None:
    started(store_target, timed, "late", ago=timedelta(hours=3))
    started(store_target, timed, "early", ago=timedelta(minutes=1))
    url = store_target.url

    listing = phasekit("jobs", "list", "--store", url).stdout
    assert "next deadline" in listing
    rows = {
        line.split()[0]: line
        for line in listing.splitlines()
        if line.split()[:1] in (["late"], ["early"])
    }
    assert "overdue by" in rows["late"]
    assert " in 3m" in rows["early"] or " in 4m" in rows["early"]  # heartbeat of 5m, 1m ago

    shown = phasekit("jobs", "show", "early", "--store", url).stdout
    assert "next deadline" in shown and "deadline" in shown
    (fetch,) = [line for line in shown.splitlines() if line.lstrip().startswith("fetch")]
    assert "(in " in fetch
    (crunch,) = [line for line in shown.splitlines() if line.lstrip().startswith("crunch")]
    assert "(in " not in crunch and "overdue" not in crunch  # queued: no deadline

    (job,) = [
        j
        for j in json.loads(phasekit("jobs", "list", "--store", url, "--json").stdout)
        if j["job_id"] == "late"
    ]
    fetch_json = next(p for p in job["phases"] if p["phase_name"] == "fetch")
    deadline = datetime.fromisoformat(fetch_json["deadline"])
    entered = datetime.fromisoformat(fetch_json["entered_at"])
    assert deadline - entered == timedelta(minutes=5)  # the heartbeat comes before the timeout
