"""``phasekit jobs watch``: a live view that follows the event log, under a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from statemachine import Tracker, load_spec

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
PHASES = ("discovery", "extraction", "transformation", "loading")


def phasekit(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the command line in a process of its own."""
    done = subprocess.run(
        [sys.executable, "-m", "statemachine", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


class Terminal:
    """A command run under a pseudo-terminal, with everything it printed so far."""

    def __init__(self, *args: str) -> None:
        master, slave = pty.openpty()
        env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
        env.pop("NO_COLOR", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "statemachine", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.raw = b""
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the command ended and closed its side
                return
            if not chunk:
                return
            with self.lock:
                self.raw += chunk

    @property
    def text(self) -> str:
        with self.lock:
            return ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def wait_for(self, pattern: str, timeout: float = 15.0) -> float:
        """Seconds until ``pattern`` (a regex) appears in the output."""
        started = time.monotonic()
        while not re.search(pattern, self.text):
            assert time.monotonic() - started < timeout, self.text[-2000:]
            time.sleep(0.02)
        return time.monotonic() - started

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self.reader.join(timeout=5)
        os.close(self.master)


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with Tracker(load_spec("ingestion"), store=url) as tracker:
        tracker.create_job("w/1 ü")
        tracker.create_job("other")
    return url


@pytest.fixture
def watching(store: str) -> Iterator[Terminal]:
    terminal = Terminal("jobs", "watch", "w/1 ü", "--store", store)
    try:
        yield terminal
    finally:
        terminal.close()


def test_watch_shows_a_change_another_process_commits_and_ends_with_a_summary(
    watching: Terminal, store: str
) -> None:
    watching.wait_for(r"w/1 ü.*not_started")
    watching.wait_for(r"watching for")
    fired = time.monotonic()
    phasekit("jobs", "fire", "w/1 ü", "discovery", "start", "--store", store)
    watching.wait_for(r"discovery\s+not_started → running")
    shown = time.monotonic() - fired
    assert shown < 5  # a CLI process start, the commit, and the watcher's wake-up
    for phase in PHASES:
        if phase != "discovery":
            phasekit("jobs", "fire", "w/1 ü", phase, "start", "--store", store)
        phasekit("jobs", "fire", "w/1 ü", phase, "complete", "--store", store)
    assert watching.process.wait(timeout=15) == 0
    watching.reader.join(timeout=5)
    text = watching.text
    assert "job is now completed" in text
    summary = text.split("Result", 1)[1]
    assert re.search(r"w/1 ü\s+│\s+completed", summary)
    assert "other" not in summary


def test_watch_without_ids_follows_the_running_jobs_and_a_failure_is_in_the_summary(
    store: str,
) -> None:
    phasekit("jobs", "fire", "other", "discovery", "start", "--store", store)
    terminal = Terminal("jobs", "watch", "--store", store)
    try:
        terminal.wait_for(r"other.*running")
        phasekit(
            "jobs", "fire", "other", "discovery", "fail", "--error", "<disk> full", "--store", store
        )
        assert terminal.process.wait(timeout=15) == 0
        terminal.reader.join(timeout=5)
        summary = terminal.text.split("Result", 1)[1]
        assert "other failed in discovery: <disk> full" in summary
        assert "w/1 ü" not in summary  # not started: not watched
    finally:
        terminal.close()


def test_watch_with_nothing_running_says_so(store: str) -> None:
    done = phasekit("jobs", "watch", "--store", store)
    assert "no running jobs" in done.stdout


def test_watch_of_an_unknown_job_is_a_one_line_error(store: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "statemachine", "jobs", "watch", "nope", "--store", store],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error:") and "nope" in done.stderr
