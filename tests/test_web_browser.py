"""The dashboard in a real browser (Debian's chromium through Playwright): the pages follow
commits of a worker process within a second."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import uvicorn
from statemachine.plugins.sql import SQLStore

from statemachine import Tracker, load_spec
from statemachine.web import create_app

from .conftest import running_in_ci

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

#: Fires the steps read from standard input, one per line; prints the time of each commit.
WORKER = r"""
import json, sys, time
from statemachine import Tracker, load_spec
with Tracker(load_spec("ingestion"), store=sys.argv[1]) as tracker:
    for line in sys.stdin:
        phase, trigger = json.loads(line)
        tracker.fire(sys.argv[2], phase, trigger)
        print(time.time(), flush=True)
"""


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        if running_in_ci():
            pytest.fail("the browser tests need playwright in CI", pytrace=False)
        pytest.skip("the browser tests need playwright (the dev extra)")
    if not Path(CHROMIUM).exists():
        if running_in_ci():
            pytest.fail("the browser tests need chromium in CI", pytrace=False)
        pytest.skip("the browser tests need chromium: apt-get install -y chromium")
    return sync_playwright


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_playwright = _playwright()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with Tracker(load_spec("ingestion"), store=url) as tracker:
        tracker.create_job("live job/ü")
        tracker.create_job("bystander")
    return url


@pytest.fixture
def dashboard(store_url: str) -> Iterator[str]:
    store = SQLStore(store_url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(store),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()


class Worker:
    """A process of its own that fires what it is told on one job."""

    def __init__(self, store_url: str, job_id: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, store_url, job_id],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def fire(self, *step: Any) -> float:
        """Commit ``step``; when it was committed."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(step) + "\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=20) == 0


def test_the_list_and_a_job_page_follow_a_worker_process_within_a_second(
    browser: Any, dashboard: str, store_url: str, tmp_path: Path
) -> None:
    listing = browser.new_page()
    listing.goto(f"{dashboard}/")
    job = browser.new_page()
    job.goto(f"{dashboard}/jobs/{quote('live job/ü', safe='')}")
    for page in (listing, job):
        page.wait_for_function("document.body.dataset.live === '1'", timeout=5000)
    row = "tr.job[data-job-id='live job/ü']"
    assert listing.get_attribute(row, "data-status") == "not_started"
    assert job.get_attribute("#job-status", "data-status") == "not_started"
    listing.screenshot(path=str(tmp_path / "list-before.png"), full_page=True)

    worker = Worker(store_url, "live job/ü")
    delays: list[float] = []
    try:
        committed = worker.fire("discovery", "start")
        job.wait_for_function(
            "document.querySelector('#job-status').dataset.status === 'running'", timeout=1000
        )
        delays.append(time.time() - committed)
        listing.wait_for_function(
            "document.querySelector(\"tr.job[data-job-id='live job/ü']\").dataset.status"
            " === 'running'",
            timeout=1000,
        )
        assert job.get_attribute("tr.phase[data-phase='discovery']", "data-status") == "running"

        committed = worker.fire("discovery", "complete")
        job.wait_for_function(
            "document.querySelector(\"tr.phase[data-phase='discovery'] .bar\")"
            ".dataset.progress === '100.0'",
            timeout=1000,
        )
        delays.append(time.time() - committed)
        # The job's weighted bar: discovery is a quarter of it, and full.
        listing.wait_for_function(
            "document.querySelector(\"tr.job[data-job-id='live job/ü'] .bar\")"
            ".dataset.progress === '25.0'",
            timeout=1000,
        )
        committed = worker.fire("extraction", "start")
        job.wait_for_function("document.querySelectorAll('#history li').length === 4", timeout=1000)
        delays.append(time.time() - committed)
    finally:
        worker.close()
    assert job.inner_text("#job-current") == "extraction"
    assert listing.get_attribute("tr.job[data-job-id='bystander']", "data-status") == (
        "not_started"
    )
    listing.screenshot(path=str(tmp_path / "list-after.png"), full_page=True)
    job.screenshot(path=str(tmp_path / "job-after.png"), full_page=True)
    assert (tmp_path / "job-after.png").stat().st_size > 0
    listing.close()
    job.close()
    print(f"\ncommit → DOM: {', '.join(f'{d * 1000:.0f} ms' for d in delays)}")
    assert max(delays) < 1.0
