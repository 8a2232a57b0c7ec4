"""The dashboard in a real browser (Debian's chromium through Playwright): the pages follow
commits of a worker process within a second."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import uvicorn
from statemachine.plugins.sql import SQLStore

from statemachine import Tracker, load_spec, parse_spec
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


@contextmanager
def _serving(store: SQLStore) -> Iterator[str]:
    """The dashboard over ``store`` under uvicorn in a thread of this process; its address."""
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


@pytest.fixture
def dashboard(store_url: str) -> Iterator[str]:
    with _serving(SQLStore(store_url)) as address:
        yield address


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


#: The classes ``to_mermaid`` gives the statuses a job's phases are in.
HIGHLIGHTS = {"occupied", "occupied_success", "occupied_failure"}
LIVE_JOB = "live job/ü"
#: Each drawn state's status and classes, and its box's computed fill.
DRAWN_STATES = """() => Array.from(
    document.querySelectorAll('#diagram-drawing svg g.node[data-status]'),
    g => [g.dataset.status, Array.from(g.classList),
          getComputedStyle(g.querySelector('rect.label-container')).fill])"""


def _job_page(browser: Any, dashboard: str, job_id: str = LIVE_JOB, **context: Any) -> Any:
    page = browser.new_context(**context).new_page()
    page.goto(f"{dashboard}/jobs/{quote(job_id, safe='')}")
    return page


def _drawn(page: Any) -> dict[str, tuple[set[str], str]]:
    """The drawing's states: each status, its node's classes and fill."""
    return {status: (set(classes), fill) for status, classes, fill in page.evaluate(DRAWN_STATES)}


def _highlighted(page: Any) -> set[str]:
    return {status for status, (classes, _) in _drawn(page).items() if classes & HIGHLIGHTS}


def _wait_highlighted(page: Any, *statuses: str, timeout: float = 3.0) -> None:
    """Wait until the drawing highlights exactly ``statuses`` (read from here: the drawing is
    replaced as a whole, and a check inside the page can run while it is half-built)."""
    deadline = time.monotonic() + timeout
    while (seen := _highlighted(page)) != set(statuses):
        assert time.monotonic() < deadline, f"highlighted {sorted(seen)}, not {sorted(statuses)}"
        time.sleep(0.02)


def test_the_job_page_draws_the_phase_diagram_with_the_live_statuses_highlighted(
    browser: Any, dashboard: str
) -> None:
    requested: list[str] = []
    page = browser.new_page()
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{dashboard}/jobs/{quote(LIVE_JOB, safe='')}")
    page.wait_for_selector("#diagram-drawing svg", timeout=10000)
    drawn = _drawn(page)
    assert set(drawn) == set(load_spec("ingestion").statuses)
    assert _highlighted(page) == {"not_started"}
    assert "occupied" in drawn["not_started"][0]
    # Visibly: the fill of to_mermaid's classDef, where the other states have none of it.
    assert drawn["not_started"][1] == "rgb(255, 217, 102)"  # #ffd966
    assert drawn["running"][1] != drawn["not_started"][1]
    # The drawing replaces the source, which is still there, folded.
    assert not page.is_visible("#mermaid")
    assert page.evaluate("document.getElementById('mermaid-source').open") is False
    assert not page.is_visible("ol.states")
    assert page.locator("#diagram svg").count() == 1
    # Mermaid is the package's own file, and it fetches nothing from anywhere else.
    assert any("/static/vendor/mermaid-" in url for url in requested)
    assert all(url.startswith(dashboard) for url in requested), requested
    page.close()


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
  - {name: only}
aggregate:
  status:
    - {all: [done], then: done}
    - {otherwise: queued}
"""


def test_a_status_with_deadlines_is_drawn_with_them_and_highlighted(
    browser: Any, dashboard: str, store_url: str
) -> None:
    with Tracker(parse_spec(TIMED), store=store_url) as tracker:
        tracker.create_job("timed job")
        tracker.fire("timed job", "only", "start")
    page = _job_page(browser, dashboard, "timed job")
    page.wait_for_selector("#diagram-drawing svg", timeout=10000)
    _wait_highlighted(page, "running")
    assert set(_drawn(page)) == {"queued", "running", "done", "failed"}
    running = page.locator("#diagram-drawing g.node[data-status='running']")
    assert "⏱ 2h ♥ 5m" in (running.text_content() or "")
    queued = page.locator("#diagram-drawing g.node[data-status='queued']")
    assert "⏱" not in (queued.text_content() or "")
    # The phase's row says when its heartbeat is due.
    left = page.inner_text("tr.phase[data-phase='only'] .deadline .left")
    assert re.fullmatch(r"in (4m\d+s|5m)", left), left
    page.close()


def test_the_list_page_does_not_load_mermaid(browser: Any, dashboard: str) -> None:
    requested: list[str] = []
    page = browser.new_page()
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{dashboard}/")
    page.wait_for_function("document.body.dataset.live === '1'", timeout=5000)
    assert requested and not any("mermaid" in url or "diagram.js" in url for url in requested)
    page.close()


def test_the_drawing_follows_transitions_another_tracker_commits_without_a_reload(
    browser: Any, dashboard: str, store_url: str
) -> None:
    page = _job_page(browser, dashboard)
    page.wait_for_function("document.body.dataset.live === '1'", timeout=5000)
    page.wait_for_selector("#diagram-drawing svg", timeout=10000)
    page.evaluate("window.sameDocument = true")
    with Tracker(load_spec("ingestion"), store=store_url) as other:
        other.fire(LIVE_JOB, "discovery", "start")
        _wait_highlighted(page, "not_started", "running")
        other.fire(LIVE_JOB, "discovery", "pause")
        # No phase is running any more: the highlight moved from running to paused.
        _wait_highlighted(page, "not_started", "paused")
        other.fire(LIVE_JOB, "discovery", "resume")
        other.fire(LIVE_JOB, "discovery", "complete")
        _wait_highlighted(page, "not_started", "completed")
    drawn = _drawn(page)
    assert "occupied_success" in drawn["completed"][0]
    assert drawn["completed"][1] == "rgb(182, 215, 168)"  # #b6d7a8
    assert page.evaluate("window.sameDocument") is True
    assert page.locator("#diagram svg").count() == 1
    assert page.get_attribute("#diagram-drawing", "data-statuses") == (
        "completed not_started not_started not_started"
    )
    page.close()


def test_progress_alone_keeps_the_drawing_and_redraws_the_note_later(
    browser: Any, dashboard: str, store_url: str
) -> None:
    page = _job_page(browser, dashboard)
    page.wait_for_function("document.body.dataset.live === '1'", timeout=5000)
    with Tracker(load_spec("ingestion"), store=store_url) as other:
        other.fire(LIVE_JOB, "discovery", "start")
        _wait_highlighted(page, "not_started", "running")
        page.evaluate("document.getElementById('diagram-drawing').dataset.mark = 'kept'")
        other.report_progress(LIVE_JOB, "discovery", 50, 100)
        page.wait_for_function(
            "document.querySelector('#job-progress').dataset.progress === '12.5'", timeout=3000
        )
        # The page moved; the drawing is the one drawn before (no redraw per progress event).
        assert page.get_attribute("#diagram-drawing", "data-mark") == "kept"
        page.wait_for_function(
            "document.querySelector('#diagram-drawing').textContent.includes('12.5%')",
            timeout=5000,
        )
    assert page.get_attribute("#diagram-drawing", "data-mark") is None
    page.close()


def test_without_javascript_the_mermaid_source_stays_visible(browser: Any, dashboard: str) -> None:
    page = _job_page(browser, dashboard, java_script_enabled=False)
    assert page.is_visible("#mermaid")
    assert page.inner_text("#mermaid").startswith("stateDiagram-v2")
    assert "class not_started occupied" in page.inner_text("#mermaid")
    assert page.is_visible("ol.states li.occupied[data-status='not_started']")
    assert page.locator("#diagram svg").count() == 0
    page.close()


def test_when_mermaid_does_not_load_the_source_stays_and_the_page_still_follows(
    browser: Any, dashboard: str, store_url: str
) -> None:
    context = browser.new_context()
    context.route("**/static/vendor/**", lambda route: route.abort())
    page = context.new_page()
    page.goto(f"{dashboard}/jobs/{quote(LIVE_JOB, safe='')}")
    page.wait_for_function("document.body.dataset.live === '1'", timeout=5000)
    with Tracker(load_spec("ingestion"), store=store_url) as other:
        other.fire(LIVE_JOB, "discovery", "start")
    page.wait_for_function(
        "document.querySelector('#job-status').dataset.status === 'running'", timeout=3000
    )
    assert page.is_visible("#mermaid")
    assert "class running,not_started occupied" in page.inner_text("#mermaid")
    assert page.locator("#diagram svg").count() == 0
    page.close()


#: A policy a host might add in front of the dashboard: scripts from the dashboard only, and
#: no eval; inline styles allowed (Mermaid's SVG and the pages' bars have them).
POLICY = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'"


def test_the_diagram_draws_under_a_policy_without_unsafe_eval(browser: Any, dashboard: str) -> None:
    def with_policy(route: Any) -> None:
        response = route.fetch()
        route.fulfill(
            response=response,
            headers={**response.headers, "content-security-policy": POLICY},
        )

    page = browser.new_page()
    page.add_init_script(
        "window.violations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.violations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    page.route("**/jobs/**", with_policy)
    page.goto(f"{dashboard}/jobs/{quote(LIVE_JOB, safe='')}")
    page.wait_for_selector("#diagram-drawing svg", timeout=10000)
    page.wait_for_function("document.body.dataset.live === '1'", timeout=5000)
    assert _highlighted(page) == {"not_started"}
    assert page.evaluate("window.violations") == []
    page.close()


#: A folder to copy the demo's screenshots to (the README's are made so: docs/).
SCREENSHOTS = "PHASEKIT_SCREENSHOTS"


def test_the_dashboard_follows_the_demo_and_shows_its_jobs_as_the_readme_does(
    browser: Any, tmp_path: Path
) -> None:
    """``phasekit demo`` and ``phasekit serve`` on its store, the README's two commands: the
    pages show the demo's jobs as they run, and what they show is the README's screenshot."""
    url = f"sqlite:///{tmp_path / 'phasekit.db'}"
    demo = subprocess.Popen(
        [
            *(sys.executable, "-m", "statemachine", "demo", "--jobs", "4", "--speed", "0.3"),
            *("--seed", "7", "--store", url, "--log", str(tmp_path / "demo.log")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    shots = {"list": tmp_path / "dashboard.png", "job": tmp_path / "dashboard-job.png"}
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "phasekit.db").exists() or len(_jobs_in(url)) < 4:
            assert demo.poll() is None and time.monotonic() < deadline, "the demo made no jobs"
            time.sleep(0.05)
        with _serving(SQLStore(url)) as address:
            listing = browser.new_page(viewport={"width": 1200, "height": 640})
            listing.goto(f"{address}/")
            listing.wait_for_function("document.body.dataset.live === '1'", timeout=5000)
            # Taken once a job is a quarter through (the others behind it, most likely).
            listing.wait_for_function(
                "Array.from(document.querySelectorAll(\"tr.job[data-status='running']\"))"
                ".some(row => parseFloat(row.querySelector('.bar').dataset.progress) >= 25)",
                timeout=15000,
                polling=100,
            )
            listing.screenshot(path=str(shots["list"]), full_page=True)
            running = listing.get_attribute("tr.job[data-status='running']", "data-job-id")
            assert running is not None
            job = browser.new_page(viewport={"width": 1200, "height": 640})
            job.goto(f"{address}/jobs/{quote(running, safe='')}")
            job.wait_for_selector("#diagram-drawing svg", timeout=10000)
            assert job.inner_text("#job-id") == running
            job.screenshot(path=str(shots["job"]), full_page=True)
            _, errors = demo.communicate(timeout=90)
            assert demo.returncode == 0, errors
            # The list followed the demo to its end without a reload: every job finished.
            listing.wait_for_function(
                "Array.from(document.querySelectorAll('tr.job')).length === 4 && "
                "Array.from(document.querySelectorAll('tr.job')).every("
                "row => ['completed', 'failed'].includes(row.dataset.status))",
                timeout=5000,
                polling=100,
            )
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert all(path.stat().st_size > 10_000 for path in shots.values())
    if folder := os.environ.get(SCREENSHOTS):
        for path in shots.values():
            shutil.copyfile(path, Path(folder) / path.name)


def _jobs_in(url: str) -> list[str]:
    store = SQLStore(url)
    try:
        return [r.job_id for r in store.list(limit=10)]
    finally:
        store.close()
