"""``phasekit serve``: a read-only command that runs the dashboard under uvicorn."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from statemachine import Tracker, load_spec
from statemachine.cli import cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.db"
    with Tracker(load_spec("ingestion"), store=f"sqlite:///{path}") as tracker:
        tracker.create_job("served/one")
    return path


@pytest.fixture
def server(db: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "statemachine", "serve", "--store", f"sqlite:///{db}",
         "--port", str(port), "--token", "t0ken"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"{url}/api/jobs", timeout=1)
            break
        except httpx.TransportError:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "phasekit serve did not answer"
            time.sleep(0.1)
    try:
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_serve_refuses_a_missing_sqlite_file_without_creating_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    result = CliRunner().invoke(cli, ["serve", "--store", f"sqlite:///{missing}"])
    assert result.exit_code == 1
    assert f"no store at {missing}" in result.output
    assert not missing.exists()


def test_serve_answers_on_127_0_0_1_with_the_token_and_stops_on_ctrl_c_with_a_stream_open(
    server: tuple[subprocess.Popen[str], str],
) -> None:
    process, url = server
    assert httpx.get(f"{url}/api/jobs").status_code == 401
    jobs = httpx.get(f"{url}/api/jobs", headers={"Authorization": "Bearer t0ken"})
    assert [j["job_id"] for j in jobs.json()] == ["served/one"]
    page = httpx.get(f"{url}/jobs/served%2Fone?token=t0ken", follow_redirects=True)
    assert page.status_code == 200 and "served/one" in page.text
    with httpx.stream(
        "GET", f"{url}/api/events", headers={"Authorization": "Bearer t0ken"}
    ) as stream:
        assert stream.status_code == 200
        next(stream.iter_lines())
        process.send_signal(signal.SIGINT)
        started = time.monotonic()
        process.wait(timeout=10)
    assert time.monotonic() - started < 6
    out, err = process.communicate()
    assert f"phasekit dashboard on {url}/" in out
    assert "Traceback" not in err and "ERROR" not in err, err


def test_serve_binds_127_0_0_1_and_port_8750_by_default() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert "[default: 127.0.0.1]" in result.output
    assert "default: 8750" in result.output
