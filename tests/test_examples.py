"""The examples: the FastAPI service through its test client, the worker as a real process."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from fastapi.testclient import TestClient

from statemachine import Tracker

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load_example(name: str) -> ModuleType:
    """An example script as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # FastAPI resolves the string annotations through it
    spec.loader.exec_module(module)
    return module


create_app = _load_example("fastapi_app").create_app


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'examples.db'}"


@pytest.fixture
def client(store: str) -> Iterator[TestClient]:
    with TestClient(create_app(store=store)) as client:
        yield client


def test_the_service_creates_drives_and_reads_a_job(client: TestClient) -> None:
    created = client.post("/jobs", json={"job_id": "j1", "metadata": {"source": "s3://b"}})
    assert created.status_code == 201
    assert created.json()["status"] == "not_started"

    started = client.post("/jobs/j1/phases/discovery/triggers/start")
    assert started.status_code == 200
    assert started.json()["current_phase"] == "discovery"

    progressed = client.post(
        "/jobs/j1/phases/discovery/progress", json={"items_processed": 5, "items_total": 20}
    )
    assert progressed.json()["phases"][0]["progress"] == 25.0

    failed = client.post("/jobs/j1/phases/discovery/triggers/fail", json={"error": "disk full"})
    assert failed.json()["status"] == "failed"

    job = client.get("/jobs/j1").json()
    assert (job["version"], job["phases"][0]["error"]) == (4, "disk full")
    assert [j["job_id"] for j in client.get("/jobs", params={"status": "failed"}).json()] == ["j1"]
    history = client.get("/jobs/j1/history").json()
    assert [e["type"] for e in history] == ["job_created", "phase_changed", "phase_changed"]


def test_the_service_generates_an_id_when_none_is_given(client: TestClient) -> None:
    created = client.post("/jobs", json={})
    assert created.status_code == 201
    assert created.json()["job_id"].startswith("ingestion-")


@pytest.mark.parametrize(
    "case",
    [
        ("get", "/jobs/ghost", None, 404, "no job 'ghost'"),
        ("post", "/jobs/j1/phases/nope/triggers/start", None, 404, "no phase 'nope'"),
        ("post", "/jobs", {"job_id": "j1"}, 409, "already exists"),
        ("post", "/jobs/j1/phases/discovery/triggers/resume", None, 409, "start, fail"),
        (
            "post",
            "/jobs/j1/phases/discovery/progress",
            {"items_processed": 9, "items_total": 5},
            422,
            "greater than items_total",
        ),
        ("post", "/jobs", {"job_id": "bad\nid"}, 422, "control characters"),
    ],
)
def test_domain_errors_map_to_http_statuses(
    client: TestClient, case: tuple[str, str, object, int, str]
) -> None:
    method, path, body, status, words = case
    client.post("/jobs", json={"job_id": "j1"})
    answer = client.request(method.upper(), path, json=body)
    assert answer.status_code == status
    assert words in answer.json()["detail"]


def test_openapi_documents_the_job_schema(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "JobStateSchema" in spec["components"]["schemas"]
    assert "PhaseStateSchema" in spec["components"]["schemas"]
    read = spec["paths"]["/jobs/{job_id}"]["get"]["responses"]
    assert read["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobStateSchema"
    }


def test_the_worker_runs_a_job_to_completion_in_a_sqlite_store(store: str) -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "worker.py"), store, "--job", "w1", "--items", "300"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "w1: completed"
    with Tracker("ingestion", store=store) as tracker:
        job = tracker.get_job("w1")
        assert job.get_overall_status() == "completed"
        assert [(p.items_processed, p.items_total) for p in job] == [(300, 300)] * 4
        transitions = [getattr(e, "trigger", None) for e in tracker.history("w1")]
    assert transitions == [None, *["start", "complete"] * 4]


def test_the_worker_resumes_a_job_where_it_stopped(store: str) -> None:
    with Tracker("ingestion", store=store) as tracker:
        job = tracker.create_job("w2")
        job.phases["discovery"].start()
        job.phases["discovery"].complete()
        job.phases["extraction"].start()
        job.phases["extraction"].update_progress(40, 100)
        job.phases["extraction"].pause()
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "worker.py"), store, "--job", "w2", "--items", "100"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == "w2: extraction running"
    with Tracker("ingestion", store=store) as tracker:
        triggers = [getattr(e, "trigger", None) for e in tracker.history("w2")]
    assert triggers[4:6] == ["pause", "resume"]
