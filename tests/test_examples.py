"""The FastAPI example on the AsyncTracker: through its test client, and against its OpenAPI."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python.asgi import shutdown_lifespans

from statemachine import PhaseKitError, Tracker

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    """An example script as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


create_app = load_example("fastapi_app").create_app

# Ids a web client cannot put in a path as they are: separators, spaces, escapes, non-ASCII,
# and names of the other routes' segments.
HOSTILE_IDS = [
    "a/b",
    "a b",
    "ünïcødé ✓ 日本",
    "100%",
    "%2F",
    "what?#frag",
    "x/history",
    "/leading/and/trailing/",
    "a/../b",
    "..",
    "+plus&amp;=",
]


def encoded(job_id: str) -> str:
    """``job_id`` as one path segment: every reserved character escaped, dots too."""
    return quote(job_id, safe="").replace(".", "%2E")


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'examples.db'}"


class Client:
    """A blocking client of an ASGI app over httpx's ASGI transport, its lifespan running.

    Not Starlette's TestClient: that one percent-decodes the path twice (``%252F`` reaches
    the app as ``/``), where a server decodes it once, as httpx's transport does.
    """

    def __init__(self, portal: BlockingPortal, http: httpx.AsyncClient) -> None:
        self._portal = portal
        self._http = http

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._portal.call(functools.partial(self._http.request, method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[Client]:
    """``app`` started (its lifespan entered) on an event loop of its own, and a client of it."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
    ):
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://app")
        try:
            yield Client(portal, http)
        finally:
            portal.call(http.aclose)


@pytest.fixture
def client(store: str) -> Iterator[Client]:
    with serving(create_app(store=store)) as client:
        yield client


def test_the_service_creates_drives_and_reads_a_job(client: Client) -> None:
    created = client.post("/jobs", json={"job_id": "j1", "metadata": {"source": "s3://b"}})
    assert created.status_code == 201
    assert created.json()["status"] == "not_started"
    assert created.json()["phases"][0]["allowed_triggers"] == ["start", "fail"]

    started = client.post("/triggers/discovery/start/j1")
    assert started.status_code == 200
    assert started.json()["current_phase"] == "discovery"
    assert started.json()["phases"][0]["allowed_triggers"] == ["pause", "complete", "fail"]

    progressed = client.post(
        "/progress/discovery/j1", json={"items_processed": 5, "items_total": 20}
    )
    assert progressed.json()["phases"][0]["progress"] == 25.0

    failed = client.post("/triggers/discovery/fail/j1", json={"error": "disk full"})
    assert failed.json()["status"] == "failed"

    job = client.get("/jobs/j1").json()
    assert (job["version"], job["phases"][0]["error"]) == (4, "disk full")
    assert [j["job_id"] for j in client.get("/jobs", params={"status": "failed"}).json()] == ["j1"]
    history = client.get("/history/j1").json()
    assert [e["type"] for e in history] == ["job_created", "phase_changed", "phase_changed"]


def test_the_service_generates_an_id_when_none_is_given(client: Client) -> None:
    created = client.post("/jobs", json={})
    assert created.status_code == 201
    assert created.json()["job_id"].startswith("ingestion-")


@pytest.mark.parametrize("job_id", HOSTILE_IDS)
def test_any_job_id_is_reachable_on_every_route_percent_encoded(
    client: Client, job_id: str
) -> None:
    assert client.post("/jobs", json={"job_id": job_id}).status_code == 201
    path = encoded(job_id)
    assert client.get(f"/jobs/{path}").json()["job_id"] == job_id
    assert client.post(f"/triggers/discovery/start/{path}").json()["job_id"] == job_id
    reported = client.post(f"/progress/discovery/{path}", json={"items_processed": 1})
    assert reported.json()["phases"][0]["items_processed"] == 1
    assert [e["job_id"] for e in client.get(f"/history/{path}").json()] == [job_id] * 2
    assert client.delete(f"/jobs/{path}").json()["job_id"] == job_id
    assert client.get(f"/jobs/{path}").status_code == 404


@pytest.mark.parametrize("job_id", ["a/b", "x/history", "/leading/and/trailing/", "ü/ß z"])
def test_a_slash_in_a_job_id_may_also_be_sent_raw(client: Client, job_id: str) -> None:
    client.post("/jobs", json={"job_id": job_id})
    raw = quote(job_id, safe="/")  # only what a URL cannot hold (spaces, non-ASCII) escaped
    assert client.get(f"/jobs/{raw}").json()["job_id"] == job_id
    assert client.post(f"/triggers/discovery/start/{raw}").status_code == 200
    assert len(client.get(f"/history/{raw}").json()) == 2
    assert client.delete(f"/jobs/{raw}").status_code == 200


def test_a_job_named_like_another_route_is_not_that_route(client: Client) -> None:
    client.post("/jobs", json={"job_id": "j"})
    client.post("/jobs", json={"job_id": "j/history"})
    assert client.get("/jobs/j/history").json()["job_id"] == "j/history"
    assert client.get("/history/j").json()[0]["job_id"] == "j"
    assert client.get("/history/j/history").json()[0]["job_id"] == "j/history"


def test_a_repeated_idempotency_key_commits_nothing(client: Client) -> None:
    client.post("/jobs", json={"job_id": "j1"})
    key = {"Idempotency-Key": "request-7"}
    first = client.post("/triggers/discovery/start/j1", headers=key)
    again = client.post("/triggers/discovery/start/j1", headers=key)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    # The key names the request, not the trigger: another trigger under it commits nothing.
    other = client.post("/triggers/discovery/fail/j1", headers=key, json={"error": "x"})
    assert other.json() == first.json()
    assert [e["type"] for e in client.get("/history/j1").json()] == [
        "job_created",
        "phase_changed",
    ]
    # Without the key, repeating the start is refused: the phase is running now.
    assert client.post("/triggers/discovery/start/j1").status_code == 409


def test_an_idempotency_key_is_kept_per_job(client: Client) -> None:
    for job_id in ("j1", "j2"):
        client.post("/jobs", json={"job_id": job_id})
        started = client.post(
            f"/triggers/discovery/start/{job_id}", headers={"Idempotency-Key": "same"}
        )
        assert started.json()["phases"][0]["status"] == "running"


def test_delete_removes_the_job_and_its_history(client: Client) -> None:
    client.post("/jobs", json={"job_id": "j1"})
    client.post("/triggers/discovery/start/j1")
    deleted = client.delete("/jobs/j1")
    assert deleted.status_code == 200
    assert (deleted.json()["type"], deleted.json()["version"]) == ("job_deleted", 3)
    assert client.get("/jobs/j1").status_code == 404
    assert client.get("/history/j1").status_code == 404
    assert client.delete("/jobs/j1").json()["error"] == "JobNotFound"
    assert client.post("/jobs", json={"job_id": "j1"}).status_code == 201  # the id is free


def test_list_filters_by_phase_status_every_pair_holding(client: Client) -> None:
    for job_id in ("new", "discovering", "extracting"):
        client.post("/jobs", json={"job_id": job_id})
    client.post("/triggers/discovery/start/discovering")
    for trigger in ("start", "complete"):
        client.post(f"/triggers/discovery/{trigger}/extracting")
    client.post("/triggers/extraction/start/extracting")

    def ids(**params: Any) -> list[str]:
        answer = client.get("/jobs", params=params)
        assert answer.status_code == 200, answer.json()
        return sorted(job["job_id"] for job in answer.json())

    assert ids(phase_status="discovery:not_started") == ["new"]
    assert ids(phase_status="extraction:not_started") == ["discovering", "new"]
    assert ids(phase_status=["extraction:not_started", "discovery:running"]) == ["discovering"]
    assert ids(phase_status=["discovery:completed", "extraction:running"]) == ["extracting"]
    assert ids(phase_status="loading:not_started", status="running") == [
        "discovering",
        "extracting",
    ]
    assert len(ids(phase_status="loading:not_started", limit=2)) == 2
    assert len(ids(phase_status="loading:not_started", limit=2, offset=2)) == 1


@pytest.mark.parametrize(
    ("params", "status", "error", "words"),
    [
        ({"phase_status": "extraction"}, 422, "RequestValidationError", "should match pattern"),
        ({"phase_status": "extractoin:running"}, 422, "UnknownPhase", "did you mean"),
        ({"phase_status": "extraction:runing"}, 422, "InvalidArgument", "no status 'runing'"),
        (
            {"phase_status": ["extraction:running", "extraction:paused"]},
            422,
            "InvalidArgument",
            "names phase 'extraction' twice",
        ),
        ({"status": "done"}, 422, "RequestValidationError", "'not_started', 'running'"),
        ({"limit": 0}, 422, "RequestValidationError", "greater than or equal to 1"),
    ],
)
def test_a_bad_list_filter_is_a_422_naming_what_is_valid(
    client: Client, params: dict[str, Any], status: int, error: str, words: str
) -> None:
    answer = client.get("/jobs", params=params)
    assert (answer.status_code, answer.json()["error"]) == (status, error)
    assert words in answer.json()["detail"]


@pytest.mark.parametrize(
    "case",
    [
        ("get", "/jobs/ghost", None, 404, "JobNotFound", "no job 'ghost'"),
        ("post", "/triggers/discovery/start/ghost", None, 404, "JobNotFound", "no job 'ghost'"),
        ("get", "/history/ghost", None, 404, "JobNotFound", "no job 'ghost'"),
        ("delete", "/jobs/ghost", None, 404, "JobNotFound", "no job 'ghost'"),
        ("post", "/jobs", {"job_id": "j1"}, 409, "JobExists", "already exists"),
        ("post", "/triggers/discovery/resume/j1", None, 409, "InvalidTransition", "start, fail"),
        (
            "post",
            "/progress/discovery/j1",
            {"items_processed": 9, "items_total": 5},
            422,
            "InvalidArgument",
            "greater than items_total",
        ),
        ("post", "/jobs", {"job_id": "bad\nid"}, 422, "InvalidArgument", "control characters"),
        ("post", "/jobs", {"job_id": ""}, 422, "InvalidArgument", "must not be empty"),
    ],
)
def test_domain_errors_map_to_http_statuses(
    client: Client, case: tuple[str, str, object, int, str, str]
) -> None:
    method, path, body, status, error, words = case
    client.post("/jobs", json={"job_id": "j1"})
    answer = client.request(method.upper(), path, json=body)
    assert (answer.status_code, answer.json()["error"]) == (status, error)
    assert words in answer.json()["detail"]
    assert answer.json()["issues"] == []


def test_a_request_that_does_not_match_the_api_gets_the_same_error_body(
    client: Client,
) -> None:
    client.post("/jobs", json={"job_id": "j1"})
    answer = client.post("/progress/discovery/j1", json={"items_processed": -1})
    assert answer.status_code == 422
    assert answer.json() == {
        "error": "RequestValidationError",
        "detail": "body.items_processed: Input should be greater than or equal to 0",
        "issues": [
            {
                "loc": ["body", "items_processed"],
                "msg": "Input should be greater than or equal to 0",
                "type": "greater_than_equal",
            }
        ],
    }
    unknown = client.post("/triggers/discovery/explode/j1")
    assert unknown.json()["issues"][0]["loc"] == ["path", "trigger"]
    long_key = client.post("/triggers/discovery/start/j1", headers={"Idempotency-Key": "k" * 201})
    assert long_key.json()["issues"][0]["loc"] == ["header", "Idempotency-Key"]
    assert client.get("/nowhere").json() == {
        "error": "HTTPException",
        "detail": "Not Found",
        "issues": [],
    }


def test_openapi_documents_every_error_as_the_error_body(client: Client) -> None:
    spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in str(spec["paths"])
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            assert "422" in answers, (method, path)
            for code, answer in answers.items():
                if code.startswith(("4", "5")):
                    assert answer["content"]["application/json"]["schema"] == error
    read = spec["paths"]["/jobs/{job_id}"]["get"]["responses"]
    assert read["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobStateSchema"
    }
    fire = spec["paths"]["/triggers/{phase}/{trigger}/{job_id}"]["post"]["parameters"]
    assert fire[0]["schema"]["enum"] == ["discovery", "extraction", "transformation", "loading"]
    assert "allowed_triggers" in spec["components"]["schemas"]["PhaseStateSchema"]["properties"]


def test_the_store_comes_from_phasekit_store(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHASEKIT_STORE", store)
    with serving(create_app()) as client:
        client.post("/jobs", json={"job_id": "from-env"})
    with Tracker("ingestion", store=store) as tracker:
        assert tracker.get_job("from-env").version == 1


def test_the_tracker_opens_at_startup_and_closes_at_shutdown(store: str) -> None:
    app = create_app(store=store)
    with serving(app):
        tracker = app.state.tracker
        assert "AsyncTracker" in repr(tracker)
    with pytest.raises(PhaseKitError, match="closed"):
        asyncio.run(tracker.get_job("any"))


# -- the OpenAPI document holds: schemathesis -----------------------------------------------

CONFORMANCE = [not_a_server_error, status_code_conformance, response_schema_conformance]
POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
EXAMPLES_PER_RUN = 30
SEEDED = ["seed/ü 1", "seed 2", "seed%3"]
ONLY_AN_ID = {"GET /jobs/{job_id}", "DELETE /jobs/{job_id}", "GET /history/{job_id}"}


def _seed(store: str) -> None:
    """Jobs the fixed-id runs drive: one fresh, one running, one finished."""
    with Tracker("ingestion", store=store) as tracker:
        for job_id in SEEDED:
            tracker.create_job(job_id)
        tracker.fire(SEEDED[1], "discovery", "start")
        for phase in tracker.spec.phase_names:
            tracker.fire(SEEDED[2], phase, "start")
            tracker.fire(SEEDED[2], phase, "complete")


def _conforms(strategy: SearchStrategy[schemathesis.Case], statuses: list[int]) -> None:
    """Send the cases ``strategy`` generates, validate each answer, note its status code."""

    @settings(
        max_examples=EXAMPLES_PER_RUN,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        statuses.append(case.call_and_validate(checks=CONFORMANCE).status_code)

    check()


def test_the_service_answers_as_its_openapi_document_says(store: str) -> None:
    """Every operation, with data generated to match its schema and not to, and on jobs that
    exist: no 5xx, no undocumented status code, every body as its response schema says."""
    _seed(store)
    app = create_app(store=store)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # Deleting last, so the fixed-id runs of the other operations find their jobs.
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()),
        key=lambda operation: operation.method == "delete",
    )
    statuses: dict[str, list[int]] = {}
    try:
        for operation in operations:
            # Any text is a job id: a request to an operation with nothing but an id is valid.
            modes = [POSITIVE] if operation.label in ONLY_AN_ID else [POSITIVE, NEGATIVE]
            strategies = [operation.as_strategy(mode) for mode in modes]
            if "{job_id}" in operation.path:
                strategies += [
                    operation.as_strategy(path_parameters={"job_id": job_id}) for job_id in SEEDED
                ]
            for strategy in strategies:
                _conforms(strategy, statuses.setdefault(operation.label, []))
    finally:
        shutdown_lifespans()  # closes the app's AsyncTracker
    assert len(statuses) == 7
    for label, answered in statuses.items():
        assert len(answered) >= EXAMPLES_PER_RUN, label
        assert any(200 <= status < 300 for status in answered), label  # not only errors
