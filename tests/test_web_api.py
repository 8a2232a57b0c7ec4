"""The dashboard's JSON API, pages and token on SQLite and PostgreSQL stores (ASGI transport)."""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from pydantic import TypeAdapter
from statemachine.plugins.sql import SQLStore

from statemachine import HistoryEvent, JobStateSchema, PhaseSet, Tracker, parse_spec
from statemachine.web import create_app
from statemachine.web.pages import MERMAID_BUNDLE

from .conftest import StoreTarget

WEIGHTED = """\
phasekit: 1
name: weighted
statuses:
  todo: {initial: true}
  doing: {active: true}
  done: {terminal: true, success: true}
  broken: {terminal: true}
transitions:
  - {trigger: start, source: todo, dest: doing}
  - {trigger: finish, source: doing, dest: done}
  - {trigger: fail, source: [todo, doing], dest: broken}
phases:
  - {name: fetch, weight: 1}
  - {name: crunch, weight: 3}
aggregate:
  status:
    - {any: [broken], then: broken}
    - {all: [done], then: done}
    - {any: [doing, done], then: doing}
    - {otherwise: todo}
"""

HOSTILE = "<script>alert('x')</script>\"&"
ODD_IDS = ["a/b", "with space", "ünï/cødé ✓", "ends/history", "100%", "q?x=1#f", "../up"]


@pytest.fixture
def weighted() -> PhaseSet:
    return parse_spec(WEIGHTED)


@pytest.fixture
def store(store_target: StoreTarget) -> Iterator[SQLStore]:
    opened = store_target.open()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def writer(store_target: StoreTarget, weighted: PhaseSet) -> Iterator[Tracker]:
    with Tracker(weighted, store=store_target.url, store_options=store_target.options) as tracker:
        yield tracker


def get(app: Any, path: str, **kwargs: Any) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
            return await client.get(path, **kwargs)

    return asyncio.run(call())


def job_url(job_id: str, suffix: str = "") -> str:
    return f"/api/jobs/{quote(job_id, safe='')}{suffix}"


MODELS: dict[str, Any] = {
    "/api/jobs": list[JobStateSchema],
    "/api/jobs/{job_id}": JobStateSchema,
    "/api/jobs/{job_id}/history": list[HistoryEvent],
}


def openapi_validate(app: Any, instance: Any, path: str) -> None:
    """``instance`` is what the model ``/openapi.json`` documents for ``path`` accepts, and
    the document's schema is that model's (its definitions among the components)."""
    document = get(app, "/openapi.json").json()
    content = document["paths"][path]["get"]["responses"]["200"]["content"]
    adapter: TypeAdapter[Any] = TypeAdapter(MODELS[path])
    adapter.validate_python(instance)
    expected = adapter.json_schema(
        ref_template="#/components/schemas/{model}", mode="serialization"
    )
    for name, definition in expected.pop("$defs", {}).items():
        assert document["components"]["schemas"][name] == definition
    assert content["application/json"]["schema"] == expected


def test_jobs_are_listed_newest_first_as_job_state_schemas(
    store: SQLStore, writer: Tracker
) -> None:
    for name in ("one", "two", "three"):
        writer.create_job(name)
    writer.fire("one", "fetch", "start")
    response = get(create_app(store), "/api/jobs")
    assert response.status_code == 200
    jobs = [JobStateSchema.model_validate(j) for j in response.json()]
    assert [j.job_id for j in jobs] == ["one", "three", "two"]
    assert jobs[0].phases[0].allowed_triggers == ["finish", "fail"]
    openapi_validate(create_app(store), response.json(), "/api/jobs")


def test_jobs_filter_by_status_and_phase_set_with_limit_and_offset(
    store: SQLStore, writer: Tracker
) -> None:
    for i in range(5):
        writer.create_job(f"job-{i}")
    writer.fire("job-3", "fetch", "start")
    app = create_app(store)
    assert [j["job_id"] for j in get(app, "/api/jobs?status=doing").json()] == ["job-3"]
    assert len(get(app, "/api/jobs?spec=weighted&limit=2").json()) == 2
    assert len(get(app, "/api/jobs?spec=weighted&limit=2&offset=4").json()) == 1
    assert get(app, "/api/jobs?spec=ingestion").json() == []


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "offset=-1"])
def test_a_listing_parameter_out_of_range_is_a_400_saying_which(
    store: SQLStore, query: str
) -> None:
    response = get(create_app(store), f"/api/jobs?{query}")
    assert response.status_code == 400
    assert query.split("=", maxsplit=1)[0] in response.json()["detail"]


@pytest.mark.parametrize("job_id", ODD_IDS)
def test_a_job_with_any_characters_in_its_id_is_reachable_path_encoded(
    store: SQLStore, writer: Tracker, job_id: str
) -> None:
    writer.create_job(job_id)
    writer.fire(job_id, "fetch", "start")
    app = create_app(store)
    response = get(app, job_url(job_id))
    assert response.status_code == 200, response.text
    assert response.json()["job_id"] == job_id
    history = get(app, job_url(job_id, "/history"))
    assert [e["type"] for e in history.json()] == ["job_created", "phase_changed"]
    assert {e["job_id"] for e in history.json()} == {job_id}
    page = get(app, f"/jobs/{quote(job_id, safe='')}")
    assert page.status_code == 200
    assert f"data-job-id='{json_text(job_id)}'" in page.text


def json_text(text: str) -> str:
    """``text`` as the pages write it in a quoted attribute."""
    from html import escape  # noqa: PLC0415

    return escape(text, quote=True)


def test_a_job_id_ending_in_history_is_told_from_the_history_of_its_prefix(
    store: SQLStore, writer: Tracker
) -> None:
    writer.create_job("a")
    writer.create_job("a/history")
    app = create_app(store)
    assert get(app, job_url("a/history")).json()["job_id"] == "a/history"
    history = get(app, job_url("a", "/history")).json()
    assert [e["job_id"] for e in history] == ["a"]
    # Unencoded slashes belong to the id, but for a last /history.
    assert get(app, "/api/jobs/a/history").json()[0]["job_id"] == "a"


def test_history_matches_the_openapi_schema(store: SQLStore, writer: Tracker) -> None:
    writer.create_job("h")
    writer.fire("h", "fetch", "start")
    writer.fire("h", "fetch", "fail", error="disk full")
    app = create_app(store)
    history = get(app, job_url("h", "/history")).json()
    assert history[-1]["error"] == "disk full"
    openapi_validate(app, history, "/api/jobs/{job_id}/history")
    openapi_validate(app, get(app, job_url("h")).json(), "/api/jobs/{job_id}")


def test_an_unknown_job_is_a_404_on_the_api_and_the_page(store: SQLStore) -> None:
    app = create_app(store)
    for path in (job_url("nope"), job_url("nope", "/history"), "/jobs/nope", job_url(" ")):
        response = get(app, path)
        assert response.status_code == 404, path
        assert "no job" in response.json()["detail"]


def test_openapi_describes_every_api_route_and_the_event_stream(store: SQLStore) -> None:
    document = get(create_app(store), "/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/api/jobs",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/history",
        "/api/events",
    }
    stream = document["paths"]["/api/events"]["get"]["responses"]["200"]["content"]
    assert "text/event-stream" in stream
    assert {"JobStateSchema", "PhaseStateSchema", "Event"} <= set(document["components"]["schemas"])


def test_hostile_ids_metadata_and_errors_render_as_text(store: SQLStore, writer: Tracker) -> None:
    job_id = f"x{HOSTILE}"
    writer.create_job(job_id, metadata={"note": HOSTILE, HOSTILE: [HOSTILE]})
    writer.fire(job_id, "fetch", "start")
    writer.fire(job_id, "fetch", "fail", error=f"boom {HOSTILE}")
    app = create_app(store)
    for path in ("/", f"/jobs/{quote(job_id, safe='')}", "/?fragment=1"):
        page = get(app, path)
        assert page.status_code == 200, path
        assert "<script>alert" not in page.text, path
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;&amp;" in page.text, path
        # The only scripts are the dashboard's own (a job page's diagram adds Mermaid's).
        scripts = re.findall(r"<script[^>]*>", page.text)
        assert all(re.fullmatch(r"<script src='/static/[\w./-]+\.js' defer>", s) for s in scripts)
        assert scripts in (
            [],
            [
                f"<script src='/static/{MERMAID_BUNDLE}' defer>",
                "<script src='/static/diagram.js' defer>",
                "<script src='/static/dashboard.js' defer>",
            ],
            ["<script src='/static/dashboard.js' defer>"],
        ), path
    job_page = get(app, f"/jobs/{quote(job_id, safe='')}").text
    assert "boom &lt;script&gt;" in job_page


def test_the_job_page_shows_weighted_bars_phases_explanation_diagram_and_history(
    store: SQLStore, writer: Tracker
) -> None:
    writer.create_job("w")
    writer.fire("w", "fetch", "start")
    writer.report_progress("w", "fetch", 5, 10)
    writer.fire("w", "fetch", "finish")
    writer.fire("w", "crunch", "start")
    writer.report_progress("w", "crunch", 1, 2)
    page = get(create_app(store), "/jobs/w").text
    # fetch is a quarter of the bar (weight 1 of 4), crunch three quarters.
    assert "style='width:25.000%'" in page
    assert "style='width:75.000%'" in page
    assert "data-progress='62.5'" in page  # (100 * 1 + 50 * 3) / 4
    assert "<td class='num'>3</td>" in page  # crunch's weight
    assert "id='explain'>doing: rule 3" in page
    assert "data-phase='crunch' data-status='doing'" in page
    assert "<li class='state occupied' data-status='doing'" in page
    assert "stateDiagram-v2" in page
    assert page.count("<li data-version=") == 4  # created, and three status changes
    assert "1/2" in page


def test_pages_show_each_deadline_and_the_time_left(store_target: StoreTarget) -> None:
    timed = parse_spec(
        WEIGHTED.replace("name: weighted", "name: timed").replace(
            "doing: {active: true}", "doing: {active: true, heartbeat: 10m, on_timeout: fail}"
        )
    )
    now = datetime.now(UTC)
    clock = [now - timedelta(minutes=15)]
    with Tracker(
        timed, store_target.url, store_options=store_target.options, clock=lambda: clock[0]
    ) as tracker:
        tracker.create_job("late")
        tracker.fire("late", "fetch", "start")  # its heartbeat passed 5 minutes ago
        clock[0] = now - timedelta(minutes=2)
        tracker.create_job("early")
        tracker.fire("early", "crunch", "start")  # 8 minutes left
    store = store_target.open()
    try:
        app = create_app(store)
        page = get(app, "/jobs/early").text
        crunch = page[page.index("data-phase='crunch'") :].split("</tr>")[0]
        assert "<span class='deadline' data-deadline=" in crunch
        assert re.search(r"<span class='left'>in (7m5\ds|8m(\ds)?)</span>", crunch), crunch
        fetch = page[page.index("data-phase='fetch'") :].split("</tr>")[0]
        assert "data-deadline" not in fetch  # todo has no deadline
        listing = get(app, "/").text
        assert "<th>next deadline</th>" in listing
        late = listing[listing.index("data-job-id='late'") :].split("</tr>")[0]
        assert "<span class='deadline overdue'" in late
        assert re.search(r"overdue by (4m5\ds|5m(\ds)?)<", late), late
    finally:
        store.close()


def test_the_list_page_counts_statuses_and_filters(store: SQLStore, writer: Tracker) -> None:
    for i in range(3):
        writer.create_job(f"j{i}")
    writer.fire("j1", "fetch", "start")
    app = create_app(store)
    page = get(app, "/").text
    assert "data-status='todo'>todo <b>2</b>" in page
    assert "data-status='doing'>doing <b>1</b>" in page
    assert page.count("<tr class='job'") == 3
    filtered = get(app, "/?status=doing").text
    assert filtered.count("<tr class='job'") == 1
    assert "<option value='doing' selected>" in filtered
    fragment = get(app, "/?fragment=1").text
    assert not fragment.startswith("<!doctype") and "<table id='jobs'>" in fragment


def test_the_list_pages_by_keyset_and_counts_every_stored_job(
    store: SQLStore, writer: Tracker
) -> None:
    for i in range(8):
        writer.create_job(f"k{i}")
    writer.fire("k0", "fetch", "start")
    app = create_app(store)
    page = get(app, "/?limit=3").text
    # The counts are the whole store's, not the page's.
    assert "data-status='todo'>todo <b>7</b>" in page
    assert "data-status='doing'>doing <b>1</b>" in page
    assert "most recent" not in page
    shown = re.findall(r"<tr class='job' data-job-id='([^']+)'", page)
    everything = [r.job_id for r in store.list(limit=100)]
    pages = [shown]
    while (older := re.search(r"<a href='([^']+)' rel='next'>older</a>", page)) is not None:
        href = html.unescape(older[1])
        assert "after=" in href and "after_id=" in href and "offset" not in href
        page = get(app, href).text
        assert "rel='first'>newest</a>" in page
        pages.append(re.findall(r"<tr class='job' data-job-id='([^']+)'", page))
    assert [len(p) for p in pages] == [3, 3, 2]
    assert [job for p in pages for job in p] == everything
    # The API takes the same cursor.
    last = store.load(everything[2])
    assert last is not None
    query = urlencode({"after": last.updated_at.isoformat(), "after_id": last.job_id})
    listed = get(app, f"/api/jobs?limit=2&{query}").json()
    assert [j["job_id"] for j in listed] == everything[3:5]
    for bad, why in [
        ("after=2026-01-01T00:00:00Z", "after and after_id go together"),
        ("after=soon&after_id=x", "after must be an ISO 8601 time"),
        ("after=2026-01-01T00:00:00&after_id=x", "after must have a time zone"),
    ]:
        refused = get(app, f"/api/jobs?{bad}")
        assert refused.status_code == 400 and why in refused.json()["detail"], bad


def test_with_a_token_every_request_needs_it(store: SQLStore, writer: Tracker) -> None:
    writer.create_job("t")
    app = create_app(store, token="s3cret")
    for path in ("/", "/api/jobs", job_url("t"), "/openapi.json", "/static/dashboard.js"):
        denied = get(app, path)
        assert denied.status_code == 401, path
        assert denied.headers["www-authenticate"] == "Bearer"
        assert get(app, path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert get(app, path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert get(app, path, headers={"Cookie": "phasekit_token=s3cret"}).status_code == 200
    assert get(app, "/?token=wrong").status_code == 401


MERMAID_SHA256 = "336df803d87a38b70a01e736e666c8f7601d2ce42f5e47c8fafe5d721074b9a3"


def test_vendored_mermaid_is_served_compressed_to_browsers_and_plain_to_others(
    store: SQLStore,
) -> None:
    app = create_app(store)
    path = f"/static/{MERMAID_BUNDLE}"
    packed = get(app, path, headers={"Accept-Encoding": "gzip, deflate, br"})
    plain = get(app, path, headers={"Accept-Encoding": "identity"})
    for response in (packed, plain):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/javascript")
        assert "immutable" in response.headers["cache-control"]
        assert response.headers["vary"] == "Accept-Encoding"
        # httpx decodes the gzip body: both are the file the vendor README names, unchanged.
        assert hashlib.sha256(response.content).hexdigest() == MERMAID_SHA256
    assert packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) < len(packed.content) / 3
    assert "content-encoding" not in plain.headers
    assert get(app, "/static/vendor/missing.js").status_code == 404


def test_a_browser_passes_the_token_once_and_keeps_it_in_an_http_only_cookie(
    store: SQLStore,
) -> None:
    app = create_app(store, token="s3cret")
    response = get(app, "/?status=doing&token=s3cret")
    assert response.status_code == 303
    assert response.headers["location"] == "/?status=doing"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("phasekit_token=s3cret;")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie


def test_the_dashboard_changes_nothing_in_the_store(store: SQLStore, writer: Tracker) -> None:
    writer.create_job("r")
    before = json.dumps(writer.get_job("r").to_schema().model_dump(mode="json"))
    app = create_app(store)
    for path in ("/", "/jobs/r", "/api/jobs", job_url("r"), job_url("r", "/history")):
        assert get(app, path).status_code == 200
    assert json.dumps(writer.get_job("r").to_schema().model_dump(mode="json")) == before
    assert store.last_position() == 1


def test_mounted_in_a_host_app_its_links_script_and_cookie_follow_the_mount(
    store: SQLStore, writer: Tracker
) -> None:
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.routing import Mount  # noqa: PLC0415

    writer.create_job("m/1")
    host = Starlette(routes=[Mount("/dash", create_app(store, token="k"))])
    auth = {"Authorization": "Bearer k"}
    page = get(host, "/dash/", headers=auth).text
    assert "href='/dash/jobs/m%2F1'" in page
    assert "<script src='/dash/static/dashboard.js' defer>" in page
    assert get(host, "/dash/static/dashboard.js", headers=auth).status_code == 200
    assert get(host, "/dash/jobs/m%2F1", headers=auth).status_code == 200
    assert get(host, "/dash/api/jobs/m%2F1/history", headers=auth).json()[0]["job_id"] == "m/1"
    redirect = get(host, "/dash/jobs/m%2F1?token=k")
    assert redirect.status_code == 303
    assert redirect.headers["location"] == "/dash/jobs/m%2F1"
    assert "Path=/dash" in redirect.headers["set-cookie"]
