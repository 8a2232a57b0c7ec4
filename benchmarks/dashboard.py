"""The dashboard (figure 10): the job list over many stored jobs, and how soon a connected
browser shows a commit.

The store holds 100,000 jobs (10,000 with ``--quick``). Their rows are phasekit's own: a few
template jobs are created and driven through a Tracker (one per state), then their job and
phase rows are copied in bulk, with only the id and the job's ``updated_at`` changed (one
second apart, so "newest first" is one order with no ties): ``INSERT … SELECT`` over
``generate_series`` on PostgreSQL, ``executemany`` on SQLite; the templates are deleted.
``count(*)`` checks the jobs, the phases and the jobs per status, and every page measured
must list its 100 jobs.

The app is ``create_app(store)`` served by uvicorn on 127.0.0.1 in a thread of this process;
requests are made with one kept-alive ``httpx.Client`` from the main thread, so each figure
includes the HTTP round trip. The browser is headless Chromium through Playwright; the
commits come from a Tracker in a process of its own.

SQLite files live in a temporary folder; PostgreSQL tables in a schema of their own
(``phasekit_bench_…``), dropped with everything in it at the end.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import psycopg
from sqlalchemy import event
from statemachine.plugins.sql import SQLStore

from statemachine import JobState, PhaseSet, load_spec

from . import stages
from .databases import (
    STORE_PREFIX,
    Database,
    StoreTables,
    libpq_url,
    pg_schema,
    pg_unusable,
    sqlite_database,
)
from .harness import Case, Figure, Settings, Target, batch, interleaved, median
from .machine import pg_server_version

__all__ = ["dashboard_figures"]

SECTION = "10. Dashboard"
MS = 1e3
PAGE = 100  # the list's default page
FULL_JOBS = 100_000
QUICK_JOBS = 10_000
DEPTH = 0.9  # the deep page starts after this share of the jobs
FULL_COMMITS = 30
QUICK_COMMITS = 10
WARM_COMMITS = 3  # first commits, not counted: the worker's store opens, the page warms up
#: Seconds between a commit shown and the next commit (random, so the reader is caught at
#: any point of its wait).
SPACING = (0.2, 0.6)
#: How long a commit may take to show before the run says the page did not follow.
SHOW_TIMEOUT = 5.0
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: The templates' clock; copy ``i`` was last updated at ``NEWEST - i`` seconds.
TEMPLATES_AT = datetime(2020, 1, 1, tzinfo=UTC)
NEWEST = TEMPLATES_AT + timedelta(days=2)
LIVE_JOB = "live-dashboard-job"


# -- the templates: one job per state (benchmarks/stages.py) -------------------------------


KINDS: tuple[Callable[[JobState], None], ...] = (
    stages.not_started,
    stages.discovery_running,
    stages.extraction_running,
    stages.extraction_paused,
    stages.completed,
    stages.failed,
)


def job_id(i: int) -> str:
    return f"job-{i:06d}"


# -- loading ----------------------------------------------------------------------------------


_Tables = StoreTables


def _copy_sqlite(db: Database, t: _Tables, jobs: int) -> None:
    """The templates' rows copied with ``executemany``, in one transaction, templates deleted."""
    conn = sqlite3.connect(db.store_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        names = ", ".join(t.job_columns)
        templates = {
            row[0]: list(row)
            for row in conn.execute(f"SELECT {names} FROM {t.jobs} WHERE job_id LIKE 'tpl-%'")
        }
        phase_names = ", ".join(t.phase_columns)
        phases: dict[str, list[list[Any]]] = {}
        for row in conn.execute(
            f"SELECT {phase_names} FROM {t.phases} WHERE job_id LIKE 'tpl-%' "
            "ORDER BY job_id, position"
        ):
            phases.setdefault(row[0], []).append(list(row))
        updated = t.job_columns.index("updated_at")

        def job_rows() -> Iterator[list[Any]]:
            for i in range(jobs):
                row = list(templates[f"tpl-{i % len(KINDS)}"])
                row[0] = job_id(i)
                # As UTCDateTime writes it: UTC text to the microsecond.
                row[updated] = (NEWEST - timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S.%f")
                yield row

        def phase_rows() -> Iterator[list[Any]]:
            for i in range(jobs):
                for template in phases[f"tpl-{i % len(KINDS)}"]:
                    yield [job_id(i), *template[1:]]

        marks = ", ".join("?" * len(t.job_columns))
        phase_marks = ", ".join("?" * len(t.phase_columns))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(f"INSERT INTO {t.jobs} ({names}) VALUES ({marks})", job_rows())
        conn.executemany(
            f"INSERT INTO {t.phases} ({phase_names}) VALUES ({phase_marks})", phase_rows()
        )
        for table in (t.events, t.history, t.phases, t.jobs):
            conn.execute(f"DELETE FROM {table} WHERE job_id LIKE 'tpl-%'")
        conn.execute("COMMIT")
    finally:
        conn.close()


def _copy_pg(db: Database, t: _Tables, jobs: int) -> None:
    """The templates' rows copied with ``INSERT … SELECT`` over ``generate_series``, one per
    table and template; templates deleted; ``VACUUM ANALYZE`` as autovacuum would soon."""
    with psycopg.connect(libpq_url(db.store_url), autocommit=True) as conn:
        job_rest = [c for c in t.job_columns if c != "job_id"]
        job_values = ", ".join(
            "%(newest)s::timestamptz - seq.i * interval '1 second'"
            if c == "updated_at"
            else f"t.{c}"
            for c in job_rest
        )
        phase_rest = [c for c in t.phase_columns if c != "job_id"]
        with conn.transaction():
            for k in range(len(KINDS)):
                params = {"k": k, "last": jobs - 1, "step": len(KINDS), "template": f"tpl-{k}"}
                series = (
                    "FROM generate_series(%(k)s::int, %(last)s::int, %(step)s::int) AS seq(i), "
                    "{table} AS t WHERE t.job_id = %(template)s"
                )
                new_id = "'job-' || lpad(seq.i::text, 6, '0')"
                conn.execute(
                    f"INSERT INTO {t.jobs} (job_id, {', '.join(job_rest)}) "
                    f"SELECT {new_id}, {job_values} " + series.format(table=t.jobs),
                    {**params, "newest": NEWEST},
                )
                conn.execute(
                    f"INSERT INTO {t.phases} (job_id, {', '.join(phase_rest)}) "
                    f"SELECT {new_id}, {', '.join(f't.{c}' for c in phase_rest)} "
                    + series.format(table=t.phases),
                    params,
                )
            for table in (t.events, t.history, t.phases, t.jobs):
                conn.execute(f"DELETE FROM {table} WHERE job_id LIKE 'tpl-%%'")
        for table in (t.jobs, t.phases):
            conn.execute(f"VACUUM ANALYZE {table}")


def _count(db: Database, sql: str) -> list[tuple[Any, ...]]:
    if db.backend == "sqlite":
        conn = sqlite3.connect(db.store_url.removeprefix("sqlite:///"))
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    with psycopg.connect(libpq_url(db.store_url)) as pg:
        return pg.execute(sql).fetchall()


def load(db: Database, spec: PhaseSet, jobs: int) -> str:
    """Fill the store with ``jobs`` copies of the templates and check the counts; what was
    loaded, in a line."""
    started = time.perf_counter()
    statuses: list[str] = []
    tracker = db.tracker(spec, clock=lambda: TEMPLATES_AT)
    try:
        for k, make in enumerate(KINDS):
            job = tracker.create_job(f"tpl-{k}")
            make(job)
            statuses.append(job.get_overall_status())
    finally:
        tracker.close()
    t = _Tables(db)
    (_copy_sqlite if db.backend == "sqlite" else _copy_pg)(db, t, jobs)
    seconds = time.perf_counter() - started
    expected = Counter(statuses[i % len(KINDS)] for i in range(jobs))
    found_jobs = _count(db, f"SELECT count(*) FROM {t.jobs}")[0][0]
    found_phases = _count(db, f"SELECT count(*) FROM {t.phases}")[0][0]
    phases = jobs * len(spec.phase_names)
    if (found_jobs, found_phases) != (jobs, phases):
        raise RuntimeError(f"loaded {found_jobs:,} jobs and {found_phases:,} phases, not {jobs:,}")
    per_status = dict(_count(db, f"SELECT status, count(*) FROM {t.jobs} GROUP BY status"))
    if per_status != dict(expected):
        raise RuntimeError(f"loaded jobs per status {per_status}, not {dict(expected)}")
    shares = ", ".join(f"{n:,} {s}" for s, n in sorted(expected.items()))
    return f"{jobs:,} jobs ({shares}) and {phases:,} phases, loaded in {seconds:.1f} s"


# -- the server -------------------------------------------------------------------------------


@contextmanager
def _served(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on 127.0.0.1 in a thread; its base URL."""
    import uvicorn  # noqa: PLC0415 - the web extra, checked by the section

    from statemachine.web import end_streams  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, name="bench-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        end_streams(app)  # open event streams would hold the shutdown
        server.should_exit = True
        thread.join(timeout=10)


# -- 1. the job list ------------------------------------------------------------------------


def _older_link(page: str) -> dict[str, str]:
    """The query of a list page's "older" link (``rel='next'``)."""
    found = re.search(r"<a href='([^']*)' rel='next'>older</a>", page)
    if found is None:
        raise RuntimeError("the list page has no 'older' link")
    query = parse_qs(urlsplit(unescape(found.group(1))).query)
    return {name: values[0] for name, values in query.items()}


def _rows(page: str) -> list[str]:
    """The job ids a list page shows, in order."""
    return re.findall(r"<tr class='job' data-job-id='([^']*)'", page)


def _plan(store: SQLStore, call: Callable[[], object]) -> str:
    """The plan of the statement ``call`` sends (captured as the store sends it), on a line."""
    sent: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", note)
    try:
        call()
    finally:
        event.remove(store.engine, "before_cursor_execute", note)
    statement, parameters = sent[-1]
    sqlite = store.engine.dialect.name == "sqlite"
    with store.engine.connect() as conn:
        prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
        rows = conn.exec_driver_sql(prefix + statement, parameters).all()
    if sqlite:
        return "; ".join(str(r[-1]) for r in rows)
    lines = (re.sub(r"\s*\(cost=[^)]*\)", "", str(r[0])).strip() for r in rows)
    return "; ".join(line.removeprefix("->").strip() for line in lines if line)


def _get(
    client: httpx.Client, path: str, params: dict[str, Any]
) -> Callable[[], Callable[[int], None]]:
    def prepare() -> Callable[[int], None]:
        def run(n: int) -> None:
            for _ in range(n):
                response = client.get(path, params=params)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {path} {params}: {response.status_code}")

        return run

    return prepare


def _calls(call: Callable[[], object]) -> Callable[[], Callable[[int], None]]:
    def prepare() -> Callable[[int], None]:
        def run(n: int) -> None:
            for _ in range(n):
                call()

        return run

    return prepare


def list_figures(
    settings: Settings, db: Database, store: SQLStore, base: str, *, jobs: int, loaded: str
) -> list[Figure]:
    """The first page (HTML and API) against the store calls it needs; the counts; a page
    deep in the store by keyset and by offset, against the first."""
    name = "SQLite" if db.backend == "sqlite" else "PostgreSQL"
    depth = int(jobs * DEPTH)
    reps = settings.n(4, least=2)
    with httpx.Client(base_url=base, timeout=60) as client:
        # The "older" link of the page that ends at the depth: the cursor a reader follows.
        before = client.get("/", params={"offset": depth - PAGE, "limit": PAGE})
        keyset = {"limit": PAGE, **_older_link(before.text)}
        if set(keyset) != {"limit", "after", "after_id"}:
            raise RuntimeError(f"the 'older' link is not a keyset cursor: {keyset}")
        offset = {"limit": PAGE, "offset": depth}
        # What every case must show: the page's 100 jobs, the deep page the same by either way.
        first = [job_id(i) for i in range(PAGE)]
        deep = [job_id(i) for i in range(depth, depth + PAGE)]
        checks = {
            "GET /": (_rows(client.get("/").text), first),
            "GET /api/jobs": ([j["job_id"] for j in client.get("/api/jobs").json()], first),
            "GET /?after=": (_rows(client.get("/", params=keyset).text), deep),
            "GET /api/jobs?after=": (
                [j["job_id"] for j in client.get("/api/jobs", params=keyset).json()],
                deep,
            ),
            "GET /api/jobs?offset=": (
                [j["job_id"] for j in client.get("/api/jobs", params=offset).json()],
                deep,
            ),
            "store.list": ([r.job_id for r in store.list(limit=PAGE)], first),
        }
        for what, (shown, wanted) in checks.items():
            if shown != wanted:
                raise RuntimeError(
                    f"{what} listed {len(shown)} jobs ({shown[:2]}…), not the {len(wanted)} "
                    f"expected ({wanted[:2]}…)"
                )
        counted = store.count_jobs()
        if sum(counted.values()) != jobs:
            raise RuntimeError(f"count_jobs() counted {sum(counted.values()):,}, not {jobs:,}")

        def list_and_count() -> None:
            store.list(limit=PAGE)
            store.count_jobs()

        cases: dict[str, Case] = {
            "store list": batch(_calls(lambda: store.list(limit=PAGE)), reps),
            "store list+count": batch(_calls(list_and_count), reps),
            "store count": batch(_calls(store.count_jobs), reps),
            "page": batch(_get(client, "/", {}), reps),
            "api": batch(_get(client, "/api/jobs", {"limit": PAGE}), reps),
            "api keyset": batch(_get(client, "/api/jobs", keyset), reps),
            "api offset": batch(_get(client, "/api/jobs", offset), reps),
            "page keyset": batch(_get(client, "/", keyset), reps),
        }
        for case in cases.values():  # warm-up: connections opened, statements cached
            case()
        samples = interleaved(cases, settings.rounds)
    plans = {
        "count": _plan(store, store.count_jobs),
        "first": _plan(store, lambda: store.list(limit=PAGE)),
        "keyset": _plan(
            store,
            lambda: store.list(
                limit=PAGE,
                after=(datetime.fromisoformat(keyset["after"]), keyset["after_id"]),
            ),
        ),
        "offset": _plan(store, lambda: store.list(limit=PAGE, offset=depth)),
    }
    served = (
        "uvicorn on 127.0.0.1 in a thread of this process, one kept-alive httpx.Client, "
        f"{reps} requests per batch, {settings.rounds} interleaved rounds"
    )
    target = Target("≤ 100 ms (median)", "value", 100.0)
    page = Figure.compare(
        f"dashboard.page.{db.backend}",
        SECTION,
        f"{name}: GET / (the job list: first {PAGE} of {jobs:,} jobs, counts per status)",
        samples["page"],
        samples["store list+count"],
        unit="ms",
        factor=MS,
        baseline_label=f"`store.list(limit={PAGE})` + `store.count_jobs()`, direct",
        target=target,
    )
    page.note = (
        f"{served}; the web layer (HTTP, the thread hops, phase sets, HTML) adds "
        f"{page.value - (page.baseline_value or 0.0):,.1f} ms to the two store calls the page "
        f"makes; {loaded}"
    )
    api = Figure.compare(
        f"dashboard.api.{db.backend}",
        SECTION,
        f"{name}: GET /api/jobs?limit={PAGE} (first page, JSON)",
        samples["api"],
        samples["store list"],
        unit="ms",
        factor=MS,
        baseline_label=f"`store.list(limit={PAGE})`, direct",
        target=target,
    )
    api.note = (
        f"the same server; the API adds {api.value - (api.baseline_value or 0.0):,.1f} ms "
        "(HTTP, the pydantic models with each phase's allowed triggers, JSON) to the store "
        f"call. The store's plan: {plans['first']}"
    )
    count = Figure.compare(
        f"dashboard.count.{db.backend}",
        SECTION,
        f"{name}: `store.count_jobs()` (the page's counts: a GROUP BY over all {jobs:,} jobs)",
        samples["store count"],
        samples["store list"],
        unit="ms",
        factor=MS,
        baseline_label=f"`store.list(limit={PAGE})`, direct",
    )
    count.note = (
        f"grows with the store: {count.value / jobs * 1000 * 1000:,.0f} µs per 1,000 stored "
        "jobs, on every load of the list page and every live redraw of it (each event, at "
        f"most every 100 ms, per open page). Plan: {plans['count']}"
    )
    keyset_api = Figure.compare(
        f"dashboard.keyset.{db.backend}",
        SECTION,
        f"{name}: GET /api/jobs?after=…&after_id=… (keyset page at depth {depth:,})",
        samples["api keyset"],
        samples["api"],
        unit="ms",
        factor=MS,
        baseline_label="GET /api/jobs, the first page",
        target=Target(
            "≤ 1.25x the first page (docs: a deep page costs what the first does)", "ratio", 1.25
        ),
        note=(
            "the cursor is the 'older' link of the HTML page that ends at that depth; the page "
            f"lists the same {PAGE} jobs as offset={depth:,} (checked). Plan: {plans['keyset']}"
        ),
    )
    offset_api = Figure.compare(
        f"dashboard.offset.{db.backend}",
        SECTION,
        f"{name}: GET /api/jobs?offset={depth:,} (the same page by offset)",
        samples["api offset"],
        samples["api"],
        unit="ms",
        factor=MS,
        baseline_label="GET /api/jobs, the first page",
        note=f"offset walks the {depth:,} jobs it skips. Plan: {plans['offset']}",
    )
    keyset_page = Figure.compare(
        f"dashboard.keyset.page.{db.backend}",
        SECTION,
        f"{name}: GET /?after=…&after_id=… (the 'older' link at depth {depth:,}, HTML)",
        samples["page keyset"],
        samples["page"],
        unit="ms",
        factor=MS,
        baseline_label="GET /, the first page",
        note="both pages also count every job (count_jobs), which the depth does not change",
    )
    return [page, api, count, keyset_api, offset_api, keyset_page]


# -- 2. commit → visible in a browser --------------------------------------------------------

#: Fires the steps read from standard input on one job; prints the version and the time
#: (``time.time()``) when each commit returned.
WORKER = r"""
import json, sys, time
from statemachine import Tracker, load_spec
from statemachine.plugins.sql import SQLStore
url, schema, prefix, job_id = sys.argv[1:5]
store = SQLStore(url, schema=schema or None, table_prefix=prefix)
with Tracker(load_spec("ingestion"), store=store, load_entrypoints=False) as tracker:
    print("ready", flush=True)
    for line in sys.stdin:
        step = json.loads(line)
        if step[0] == "progress":
            job = tracker.report_progress(job_id, "discovery", step[1], 1000)
        else:
            job = tracker.fire(job_id, "discovery", step[0])
        print(job.version, time.time(), flush=True)
"""

#: Installed in the page before its scripts: when the page first shows each version of the
#: job (``#job-version``, read on every change of ``<main>``), when the next animation frame
#: came after it, and when the page's EventSource got the job's first event of a version.
INIT = """
(() => {
  const JOB = __JOB__;
  window.__seen = {}; window.__frame = {}; window.__arrived = {};
  const Original = window.EventSource;
  if (Original) {
    const Wrapped = function (url, options) {
      const source = new Original(url, options);
      for (const type of ["job_created", "phase_changed", "progress_updated",
                          "job_status_changed", "job_deleted"]) {
        source.addEventListener(type, (e) => {
          const now = Date.now();
          try {
            const data = JSON.parse(e.data);
            if (data.job_id === JOB && !(data.version in window.__arrived)) {
              window.__arrived[data.version] = now;
            }
          } catch (err) { /* not ours */ }
        });
      }
      return source;
    };
    Wrapped.prototype = Original.prototype;
    window.EventSource = Wrapped;
  }
  document.addEventListener("DOMContentLoaded", () => {
    const main = document.getElementById("main");
    const note = () => {
      const shown = document.getElementById("job-version");
      if (!shown) { return; }
      const version = shown.textContent.trim();
      if (version in window.__seen) { return; }
      window.__seen[version] = Date.now();
      requestAnimationFrame(() => { window.__frame[version] = Date.now(); });
    };
    note();
    new MutationObserver(note).observe(main, { childList: true, subtree: true });
  });
})();
"""


class _Worker:
    """A process of its own with a Tracker on the store, firing what it is told."""

    def __init__(self, db: Database, job: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, db.store_url, db.schema or "", STORE_PREFIX, job],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the worker process did not start")

    def fire(self, step: list[Any]) -> tuple[int, float]:
        """Commit ``step``; the job's version and when the commit returned (``time.time()``)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(step) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline().split()
        if len(line) != 2:
            raise RuntimeError(f"the worker process failed (exit code {self.process.poll()})")
        return int(line[0]), float(line[1])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


class _EventClient:
    """An SSE client (httpx, streaming ``GET /api/events``) in a thread: when it read the
    first event of each version of one job (``time.time()``)."""

    def __init__(self, base: str, job: str) -> None:
        self.heard: dict[int, float] = {}
        self.connected = False
        self.error: BaseException | None = None
        self._job = job
        self._cond = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, args=(f"{base}/api/events",), name="bench-sse", daemon=True
        )
        self._thread.start()

    def _run(self, url: str) -> None:
        try:
            timeout = httpx.Timeout(10.0, read=None)
            with httpx.Client(timeout=timeout) as client, client.stream("GET", url) as response:
                for line in response.iter_lines():
                    now = time.time()
                    if line.startswith(": connected"):
                        with self._cond:
                            self.connected = True
                            self._cond.notify_all()
                    elif line.startswith("data: "):
                        data = json.loads(line.removeprefix("data: "))
                        if data.get("job_id") == self._job:
                            with self._cond:
                                self.heard.setdefault(int(data["version"]), now)
                                self._cond.notify_all()
        except Exception as exc:  # the stream ends with the server; an error is reported
            self.error = exc
        finally:
            with self._cond:
                self._cond.notify_all()

    def wait_connected(self, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.connected or self.error, timeout):
                raise RuntimeError("the SSE client did not connect")
        if self.error is not None:
            raise RuntimeError(f"the SSE client failed: {self.error}")

    def wait(self, version: int, timeout: float) -> float:
        with self._cond:
            self._cond.wait_for(lambda: version in self.heard or self.error, timeout)
            if version not in self.heard:
                raise RuntimeError(f"the SSE client did not get version {version}: {self.error}")
            return self.heard[version]


def _step(k: int) -> list[Any]:
    """The ``k``-th commit on the running discovery phase: progress, pause, resume, …"""
    return [["progress", k], ["pause"], ["resume"]][k % 3]


def _unavailable(backend: str, label: str, why: str) -> Figure:
    return Figure(
        key=f"skipped.dashboard.{label}.{backend}",
        section=SECTION,
        label=label,
        value=float("nan"),
        unit="",
        spread=(float("nan"), float("nan")),
        note=why,
    )


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401, PLC0415
    except ImportError:
        return "unavailable: playwright is not installed (the dev extra)"
    if not Path(CHROMIUM).exists():
        return f"unavailable: no chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(slots=True)
class _Live:
    """Per counted commit, seconds from its return: the page showed it (the DOM), the next
    animation frame after that, the SSE client read it, the page's EventSource got it."""

    dom: list[float] = field(default_factory=list)
    frame: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    status_change: list[bool] = field(default_factory=list)  # pause/resume, not progress
    fetches: list[float] = field(default_factory=list)  # the fragment fetches, ms


def _drive(db: Database, base: str, commits: int) -> _Live | str:
    """Open the job's page, commit from another process, note when each commit shows; or
    why it could not be measured."""
    from playwright.sync_api import Error as PlaywrightError  # noqa: PLC0415
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    rng = random.Random(10)
    live = _Live()
    with ExitStack() as stack:
        sse = _EventClient(base, LIVE_JOB)
        worker = _Worker(db, LIVE_JOB)
        stack.callback(worker.close)
        try:
            playwright = stack.enter_context(sync_playwright())
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except PlaywrightError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return f"unavailable: chromium did not start: {first}"
        stack.callback(browser.close)
        page = browser.new_page()
        page.add_init_script(INIT.replace("__JOB__", json.dumps(LIVE_JOB)))
        page.goto(f"{base}/jobs/{quote(LIVE_JOB, safe='')}")
        page.wait_for_function("document.body.dataset.live === '1'", timeout=20_000)
        sse.wait_connected(10)
        for k in range(WARM_COMMITS + commits):
            time.sleep(rng.uniform(*SPACING))
            step = _step(k)
            version, committed = worker.fire(step)
            try:
                page.wait_for_function(
                    f"window.__frame['{version}'] !== undefined",
                    timeout=SHOW_TIMEOUT * 1000,
                    polling=20,
                )
            except PlaywrightError:
                shown = page.inner_text("#job-version")
                return (
                    f"failed: the page showed version {shown}, not {version}, "
                    f"{SHOW_TIMEOUT:g} s after its commit"
                )
            heard = sse.wait(version, SHOW_TIMEOUT)
            seen_at, frame_at, arrived_at = page.evaluate(
                f"[window.__seen['{version}'], window.__frame['{version}'], "
                f"window.__arrived['{version}'] ?? null]"
            )
            if k < WARM_COMMITS:
                continue
            live.dom.append(seen_at / MS - committed)
            live.frame.append(frame_at / MS - committed)
            live.floor.append(heard - committed)
            live.status_change.append(step[0] != "progress")
            if arrived_at is not None:
                live.arrived.append(arrived_at / MS - committed)
        live.fetches = page.evaluate(
            "performance.getEntriesByType('resource')"
            ".filter(e => e.name.includes('fragment=1')).map(e => e.duration)"
        )
    return live


def live_figures(settings: Settings, db: Database, spec: PhaseSet, base: str) -> list[Figure]:
    """Commit (another process) → the job page's DOM shows it, against an SSE client."""
    name = "SQLite" if db.backend == "sqlite" else "PostgreSQL"
    label = f"{name}: commit → visible in a browser (job page, `#job-version` swapped in)"
    missing = _browser_missing()
    if missing is not None:
        return [_unavailable(db.backend, label, missing)]
    commits = QUICK_COMMITS if settings.quick else FULL_COMMITS
    tracker = db.tracker(spec)
    try:
        tracker.create_job(LIVE_JOB)
        tracker.fire(LIVE_JOB, "discovery", "start")
    finally:
        tracker.close()
    live = _drive(db, base, commits)
    if isinstance(live, str):
        return [_unavailable(db.backend, label, live)]
    limit = 300.0 if db.backend == "sqlite" else 100.0
    sse = "an SSE client (httpx, GET /api/events) reading the same event"
    dom = _median_ratio(
        Figure.compare(
            f"dashboard.live.{db.backend}",
            SECTION,
            label,
            live.dom,
            live.floor,
            unit="ms",
            factor=MS,
            baseline_label=sse,
            target=Target(f"p50 ≤ {limit:.0f} ms", "value", limit),
        )
    )
    wakes = (
        f"LISTEN/NOTIFY on the store's channel ({store_channel(db)})"
        if db.backend == "postgresql"
        else "polling: another process's commits are seen by the reader's backoff "
        "(10 ms doubling to 250 ms while the log is idle)"
    )
    dom.note = (
        f"{commits} commits (after {WARM_COMMITS} not counted) by a Tracker in another process "
        "on the running discovery phase (progress, pause, resume in turn), "
        f"{SPACING[0]:g}-{SPACING[1]:g} s apart (random), each after the last was shown; from "
        "the commit's return (`time.time()` in the worker) to the page's `#job-version` "
        "showing it (a MutationObserver on `<main>`, `Date.now()`); p90 "
        f"{_pct(live.dom, 0.9) * MS:,.0f} ms, SSE floor p90 {_pct(live.floor, 0.9) * MS:,.0f} "
        f"ms. The dashboard's reader is woken by {wakes}. In the page, the EventSource got "
        f"the event {median(live.arrived) * MS:,.0f} ms after the commit (median); then "
        "dashboard.js waits 100 ms (`schedule()`) before it fetches the fragment (median "
        f"fetch {median(live.fetches):,.0f} ms, {len(live.fetches)} fetches) and swaps it in. "
        "uvicorn, the SSE client and Playwright's driver share this process; Chromium and "
        "the worker are processes of their own, on the same 2 cores"
    )
    changes = [f for f, c in zip(live.frame, live.status_change, strict=True) if c]
    progress = [f for f, c in zip(live.frame, live.status_change, strict=True) if not c]
    frame = _median_ratio(
        Figure.compare(
            f"dashboard.live.frame.{db.backend}",
            SECTION,
            f"{name}: commit → the next animation frame after the swap (painted)",
            live.frame,
            live.floor,
            unit="ms",
            factor=MS,
            baseline_label=sse,
        )
    )
    frame.note = (
        "a requestAnimationFrame callback asked for when the version appeared: the page's "
        "thread was free to paint. Median "
        f"{median(changes) * MS:,.0f} ms for the {len(changes)} status changes (pause, "
        "resume: diagram.js redraws the Mermaid diagram at once, on the page's thread) and "
        f"{median(progress) * MS:,.0f} ms for the {len(progress)} progress reports (the "
        "drawing is kept, redrawn 2 s later)"
    )
    return [dom, frame]


def _median_ratio(figure: Figure) -> Figure:
    """The ratio of the medians: a floor of a few milliseconds makes each commit's own
    quotient mostly noise."""
    base = figure.baseline_value
    figure.ratio = figure.value / base if base else None
    figure.ratio_spread = None
    return figure


def store_channel(db: Database) -> str | None:
    """The NOTIFY channel the dashboard's store listens on (None on SQLite)."""
    store = SQLStore(db.store_url, schema=db.schema, table_prefix=STORE_PREFIX)
    try:
        return store.channel
    finally:
        store.close()


# -- the section ----------------------------------------------------------------------------


def backend_figures(settings: Settings, spec: PhaseSet, db: Database) -> list[Figure]:
    """Load the store, serve it, measure the list and the live page."""
    from statemachine.web import create_app  # noqa: PLC0415

    jobs = QUICK_JOBS if settings.quick else FULL_JOBS
    loaded = load(db, spec, jobs)
    print(f"   {db.backend}: {loaded}", file=sys.stderr, flush=True)
    store = SQLStore(db.store_url, schema=db.schema, table_prefix=STORE_PREFIX)
    try:
        if db.backend == "postgresql" and store.channel is None:
            raise RuntimeError("the PostgreSQL store has no NOTIFY channel: no LISTEN to measure")
        app = create_app(store)
        with _served(app) as base:
            figures = list_figures(settings, db, store, base, jobs=jobs, loaded=loaded)
            figures += live_figures(settings, db, spec, base)
    finally:
        store.close()
    return figures


def dashboard_figures(settings: Settings, machine: dict[str, str]) -> list[Figure]:
    """Every dashboard figure on SQLite, and on PostgreSQL when its server answers."""
    try:
        import uvicorn  # noqa: F401, PLC0415

        import statemachine.web  # noqa: F401, PLC0415
    except ImportError as exc:
        return [_unavailable("all", "dashboard figures", f"unavailable: the web extra: {exc}")]
    spec = load_spec("ingestion")
    figures: list[Figure] = []
    with (
        tempfile.TemporaryDirectory(prefix="phasekit-bench-") as folder,
        sqlite_database(Path(folder)) as db,
    ):
        figures += backend_figures(settings, spec, db)
    skipped = pg_unusable(settings.pg_url)
    if skipped is not None:
        return [*figures, _unavailable("postgresql", "PostgreSQL dashboard figures", skipped)]
    assert settings.pg_url is not None
    machine["PostgreSQL server"] = pg_server_version(settings.pg_url)
    with pg_schema(settings.pg_url) as db:
        figures += backend_figures(settings, spec, db)
    return figures
