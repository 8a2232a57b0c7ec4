"""Durable delivery (figure 7): the event log at commit, the relay's throughput and latency,
and an idle relay's CPU, each against its baseline in the same run.

SQLite files live in a temporary folder; PostgreSQL tables in a schema of their own
(``phasekit_bench_…``), dropped with everything in it at the end. The webhook receiver is
``delivery_receiver.py`` in a process of its own; the idle relays run in processes of their
own too (``delivery_idle.py``).
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import itertools
import json
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from statemachine.plugins.sql import SQLStore, store_url
from statemachine.plugins.webhook import WebhookNotifier

from statemachine import Event, PhaseSet, Tracker, __version__
from statemachine.relay import Relay

from .harness import Case, Figure, Settings, Target, batch, interleaved, pause_resume
from .profiles import profile_if_missed

__all__ = ["StoreWithoutLog", "delivery_figures"]

SECTION = "7. Durable delivery"
US = 1e6
MS = 1e3
#: The benchmark's webhook secret (a fixed 32-byte key; it signs nothing outside this run).
SECRET = "whsec_" + base64.b64encode(hashlib.sha256(b"phasekit benchmark").digest()).decode()
KEY = base64.b64decode(SECRET.removeprefix("whsec_"))
ROOT = Path(__file__).resolve().parent.parent
_ids = itertools.count()


class StoreWithoutLog(SQLStore):
    """The SQL store as it was before the event log: a commit writes its history rows only.

    ``_append``, which writes a commit's event rows in its transaction, inserts the history
    rows and nothing else: no event-log row, no numbering (SQLite), no NOTIFY (PostgreSQL).
    The job row, the phase rows and the history rows are written as by ``SQLStore``. The rows
    are still made by ``SQLStore._event_rows``, the log's among them (a few µs of Python).
    """

    def _append(self, cursor: Any, rows: tuple[builtins.list[Any], builtins.list[Any]]) -> None:
        history = rows[0]
        sql = self._writes.insert_history.sql
        if len(history) == 1:  # as SQLStore does: executemany only for several rows
            cursor.execute(sql, history[0])
        elif history:
            cursor.executemany(sql, history)


# -- where the stores live -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Backend:
    """A SQLite folder (a file per table prefix) or a PostgreSQL schema of this run."""

    name: str  # "SQLite" or "PostgreSQL"
    folder: Path | None
    url: str | None
    schema: str | None

    @property
    def key(self) -> str:
        return self.name.lower()

    def url_for(self, prefix: str) -> str:
        if self.folder is not None:
            return f"sqlite:///{self.folder / prefix}.db"
        assert self.url is not None
        return self.url

    def store(self, prefix: str, cls: type[SQLStore] = SQLStore, **options: Any) -> SQLStore:
        return cls(self.url_for(prefix), schema=self.schema, table_prefix=prefix, **options)

    def tracker(self, spec: PhaseSet, prefix: str, **options: Any) -> Tracker:
        store_options = {k: options.pop(k) for k in ("cls", "notify") if k in options}
        store = self.store(prefix, **store_options)
        return Tracker(spec, store=store, load_entrypoints=False, **options)


@contextmanager
def _pg_backend(url: str) -> Iterator[_Backend]:
    """A schema of its own on the PostgreSQL server at ``url``, dropped afterwards."""
    schema = f"phasekit_bench_{secrets.token_hex(4)}"
    engine = create_engine(store_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield _Backend("PostgreSQL", None, url, schema)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


# -- the receiver ----------------------------------------------------------------------------


class _Receiver:
    """``delivery_receiver.py`` in its own process, and a connection to ask it what came."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.delivery_receiver", SECRET],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        port = int(self._process.stdout.readline())
        self.url = f"http://127.0.0.1:{port}/hook"
        self._control = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0)

    def count(self) -> dict[str, int]:
        answer: dict[str, int] = self._control.get("/count").json()
        return answer

    def arrival(self, n: int, timeout: float = 30.0) -> float:
        """When the ``n``-th POST came (monotonic seconds); waits for it."""
        answer = self._control.get("/wait", params={"n": n, "timeout": timeout}).json()
        if answer["at"] is None:
            raise RuntimeError(f"the receiver got {answer['count']} POSTs, not {n}")
        return float(answer["at"])

    def close(self) -> None:
        self._control.close()
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _signature(msg_id: str, timestamp: str, body: bytes) -> str:
    """Standard Webhooks v1, by hand: base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()


def _message(event: Event) -> bytes:
    """The body the webhook notifier sends for ``event`` (compact JSON, ASCII)."""
    data = event.model_dump(mode="json")
    message = {"type": event.type, "timestamp": data["at"], "data": data}
    return json.dumps(message, separators=(",", ":")).encode("ascii")


def _bare_client() -> httpx.Client:
    """One httpx client, one kept-alive connection, the notifier's fixed headers."""
    return httpx.Client(
        timeout=15.0,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        headers={
            "User-Agent": f"phasekit-webhook/{__version__}",
            "Content-Type": "application/json",
        },
    )


def _post(client: httpx.Client, url: str, msg_id: str, body: bytes) -> None:
    """One signed POST with the notifier's headers, its answer read."""
    timestamp = str(int(time.time()))
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": _signature(msg_id, timestamp, body),
    }
    response = client.post(url, content=body, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"the receiver answered {response.status_code}")


# -- 1. commits with the event log -----------------------------------------------------------


def _transitions(tracker: Tracker) -> Callable[[], Callable[[int], None]]:
    """Transitions through ``tracker``: a new job per batch, its first phase paused and resumed."""

    def prepare() -> Callable[[int], None]:
        phase = tracker.create_job(f"bench-{next(_ids)}").phases["discovery"]
        phase.trigger("start")
        return pause_resume(phase)

    return prepare


def _commit_figures(settings: Settings, spec: PhaseSet, backend: _Backend) -> list[Figure]:
    pg = backend.key == "postgresql"
    pairs = settings.n(100 if pg else 200, least=20)
    trackers = {
        "log": backend.tracker(spec, "dlog_"),
        "nolog": backend.tracker(spec, "dnolog_", cls=StoreWithoutLog),
    }
    if pg:
        trackers["nonotify"] = backend.tracker(spec, "dnonotify_", notify=False)
    try:
        cases: dict[str, Case] = {k: batch(_transitions(t), pairs, 2) for k, t in trackers.items()}
        samples = interleaved(cases, settings.rounds)
        baseline = "the same store without the event log (history rows only)"
        figures = [
            Figure.compare(
                f"delivery.commit.{backend.key}",
                SECTION,
                f"{backend.name} store: one transition committed with the event log"
                + (" (and NOTIFY)" if pg else ""),
                samples["log"],
                samples["nolog"],
                unit="µs/commit",
                factor=US,
                baseline_label=baseline,
                target=Target("≤ 1.25x without the log", "ratio", 1.25),
                note=(
                    "Tracker, `phase.pause()`/`resume()`; the log row in the same transaction, "
                    + ("then NOTIFY on the store's channel" if pg else "then numbered")
                ),
            )
        ]
        if pg:
            figures.append(
                Figure.compare(
                    "delivery.commit.postgresql.no_notify",
                    SECTION,
                    "PostgreSQL store: the same, `notify=False` (the log row, no NOTIFY)",
                    samples["nonotify"],
                    samples["nolog"],
                    unit="µs/commit",
                    factor=US,
                    baseline_label=baseline,
                    note="beside the figure above, what NOTIFY adds to a commit",
                )
            )
        profiled = _transitions(trackers["log"])()
        profile_if_missed(
            settings,
            figures[0],
            lambda: profiled(pairs * 5),
            pairs * 10,
            f"{backend.name} store commits with the event log",
        )
        return figures
    finally:
        for tracker in trackers.values():
            tracker.close()


# -- 2. relay throughput ---------------------------------------------------------------------


def _throughput_figure(
    settings: Settings, spec: PhaseSet, backend: _Backend, receiver: _Receiver
) -> Figure:
    count = settings.n(1000, least=250)
    tracker = backend.tracker(spec, "dtp_")
    store = tracker.store
    assert isinstance(store, SQLStore)
    phase = tracker.create_job(f"bench-{next(_ids)}").phases["discovery"]
    phase.trigger("start")
    paused = False
    while store.last_position() < count:
        phase.resume() if paused else phase.pause()
        paused = not paused
    logged = store.read_events(0, limit=count * 2)
    count = len(logged)
    messages = [(e.event.event_id, _message(e.event)) for e in logged]
    notifier = WebhookNotifier(receiver.url, secret=SECRET)
    client = _bare_client()
    relays: list[Relay] = []
    before = receiver.count()

    def through_relay() -> Callable[[int], None]:
        relay = Relay(store, {f"webhook-{next(_ids)}": notifier})  # a new cursor, at 0
        relays.append(relay)

        def run(n: int) -> None:
            delivered = relay.run_once()
            if delivered != n:
                raise RuntimeError(f"the relay delivered {delivered} events, not {n}")

        return run

    def bare() -> Callable[[int], None]:
        def run(n: int) -> None:
            url, post = receiver.url, _post
            for msg_id, body in messages:
                post(client, url, msg_id, body)

        return run

    try:
        cases: dict[str, Case] = {"relay": batch(through_relay, count), "bare": batch(bare, count)}
        samples = interleaved(cases, settings.rounds)
        received = receiver.count()
        expected = before["count"] + 2 * count * settings.rounds
        if received["count"] != expected or received["bad"] != before["bad"]:
            raise RuntimeError(f"the receiver got {received}, expected {expected} POSTs")
        rates = {k: [1.0 / s for s in v] for k, v in samples.items()}
        figure = Figure.compare(
            f"delivery.relay.{backend.key}",
            SECTION,
            f"{backend.name} store: relay throughput, `Relay(...).run_once()` to a webhook",
            rates["relay"],
            rates["bare"],
            unit="requests/s",
            baseline_label="a bare httpx loop POSTing the same signed bodies",
            target=Target("≥ 0.8x the bare httpx loop", "ratio", 0.8, at_most=False),
            note=(
                f"{count:,} committed events per batch, one POST each, to a stdlib "
                "ThreadingHTTPServer in another process (HTTP/1.1 keep-alive); the relay reads "
                "the log and saves its cursor, the loop sends bodies made beforehand"
            ),
        )
        profile_if_missed(
            settings,
            figure,
            lambda: through_relay()(count),
            count,
            f"events delivered by the relay ({backend.name})",
        )
        return figure
    finally:
        for relay in relays:
            relay.stop()
        client.close()
        notifier.close()
        tracker.close()


# -- 3. commit to delivery latency -----------------------------------------------------------


def _percentile(values: Sequence[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _latency_figures(
    settings: Settings, spec: PhaseSet, backend: _Backend, receiver: _Receiver
) -> list[Figure]:
    samples_each = settings.n(120, least=25)
    pg = backend.key == "postgresql"
    notifier = WebhookNotifier(receiver.url, secret=SECRET)
    start = receiver.count()["count"]  # before the relay starts delivering
    relayed = backend.tracker(spec, "dlat_", notifiers={"webhook": notifier}, relay="thread")
    direct = backend.tracker(spec, "dlatbase_")
    client = _bare_client()
    rng = random.Random(7)
    try:
        relayed_phase = relayed.create_job(f"bench-{next(_ids)}").phases["discovery"]
        direct_job = direct.create_job(f"bench-{next(_ids)}")
        direct_phase = direct_job.phases["discovery"]
        relayed_phase.trigger("start")
        direct_phase.trigger("start")
        store = relayed.store
        assert isinstance(store, SQLStore)
        seen = start + store.last_position()  # the relay delivers JobCreated and the start
        receiver.arrival(seen)
        body = _message(direct.history(direct_job.job_id)[-1])
        times: dict[str, list[float]] = {"relay": [], "direct": []}
        warm_up = 3
        for i in range(warm_up + samples_each):
            trigger = "pause" if i % 2 == 0 else "resume"
            order = ("relay", "direct") if i % 2 == 0 else ("direct", "relay")
            for kind in order:
                time.sleep(rng.uniform(0.01, 0.06))  # the relay idle, at any point of its wait
                if kind == "relay":
                    relayed_phase.trigger(trigger)
                    committed = time.monotonic()
                else:
                    direct_phase.trigger(trigger)
                    committed = time.monotonic()
                    _post(client, receiver.url, f"direct-{next(_ids)}", body)
                seen += 1
                latency = receiver.arrival(seen) - committed
                if i >= warm_up:
                    times[kind].append(latency)
        got = receiver.count()
        posted = warm_up + samples_each  # by the direct path
        if got["bad"] or got["count"] != start + store.last_position() + posted:
            raise RuntimeError(f"the receiver got {got}, not one POST per event and direct POST")
    finally:
        client.close()
        relayed.close()  # stops the relay, closes the notifier
        direct.close()
    limit = 50.0 if pg else 250.0
    wake = "LISTEN/NOTIFY" if pg else "this process's own commits wake it"
    figures = []
    for q in (50, 90):
        relay_q = _percentile(times["relay"], q) * MS
        direct_q = _percentile(times["direct"], q) * MS
        figures.append(
            Figure(
                key=f"delivery.latency.{backend.key}.p{q}",
                section=SECTION,
                label=f"{backend.name} store: commit to webhook received, p{q} (`relay: thread`)",
                value=relay_q,
                unit="ms",
                spread=(min(times["relay"]) * MS, max(times["relay"]) * MS),
                baseline="an httpx POST to the receiver right after the commit",
                baseline_value=direct_q,
                ratio=relay_q / direct_q,
                target=Target(f"p{q} ≤ {limit:g} ms", "value", limit) if q == 50 else None,
                note=(
                    f"{samples_each} commits each, interleaved, 10-60 ms apart; from the commit's "
                    f"return to the receiver having read the POST; the relay waits by {wake}"
                    if q == 50
                    else ""
                ),
            )
        )
    return figures


# -- 4. idle relay CPU -----------------------------------------------------------------------


def _idle_figures(
    settings: Settings, backends: Sequence[_Backend], receiver: _Receiver
) -> list[Figure]:
    seconds = 5.0
    repeats = 1 if settings.quick else 3
    prefix = "didle_"
    for backend in backends:  # the tables exist before the clock starts
        store = backend.store(prefix)
        store.last_position()
        store.close()
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeats):
        processes = {}
        for backend in backends:
            for mode in ("relay", "sleep"):
                argv = [
                    sys.executable,
                    "-m",
                    "benchmarks.delivery_idle",
                    mode,
                    backend.url_for(prefix),
                    prefix,
                    backend.schema or "-",
                    str(seconds),
                    receiver.url,
                    SECRET,
                ]
                processes[(backend.key, mode)] = subprocess.Popen(
                    argv, cwd=ROOT, stdout=subprocess.PIPE, text=True
                )
        for where, process in processes.items():
            out, _ = process.communicate(timeout=120)
            if process.returncode != 0:
                raise RuntimeError(f"the idle {where} process exited with {process.returncode}")
            found = json.loads(out.strip().splitlines()[-1])
            results.setdefault(where, []).append(100.0 * found["cpu"] / found["wall"])
    figures = []
    for backend in backends:
        relay, sleep = results[(backend.key, "relay")], results[(backend.key, "sleep")]
        figures.append(
            Figure(
                key=f"delivery.idle.{backend.key}",
                section=SECTION,
                label=f"{backend.name} store: CPU of an idle relay (`Relay.start()`, one notifier)",
                value=statistics.median(relay),
                unit="% of a core",
                spread=(min(relay), max(relay)),
                baseline="the same process sleeping (store and notifier made, no relay)",
                baseline_value=statistics.median(sleep),
                target=Target("< 1% of a core", "value", 1.0),
                note=(
                    f"`time.process_time()` of a process running only the relay, over "
                    f"{seconds:g} s, {repeats} run(s)"
                    + (
                        "; the server's own CPU is not counted"
                        if backend.key == "postgresql"
                        else ""
                    )
                ),
            )
        )
    return figures


# -- the section -----------------------------------------------------------------------------


def _skipped(label: str, why: str) -> Figure:
    return Figure(
        key=f"skipped.{label}",
        section=SECTION,
        label=label,
        value=float("nan"),
        unit="",
        spread=(float("nan"), float("nan")),
        note=why,
    )


def delivery_figures(settings: Settings, spec: PhaseSet, pg_skipped: str | None) -> list[Figure]:
    """Every figure of the section; PostgreSQL's when reachable (``pg_skipped`` says why not)."""
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="phasekit-bench-")))
        backends = [_Backend("SQLite", folder, None, None)]
        if pg_skipped is None:
            assert settings.pg_url is not None
            backends.append(stack.enter_context(_pg_backend(settings.pg_url)))
        receiver = _Receiver()
        stack.callback(receiver.close)
        commits: list[Figure] = []
        relays: list[Figure] = []
        latencies: list[Figure] = []
        for backend in backends:
            commits += _commit_figures(settings, spec, backend)
            relays.append(_throughput_figure(settings, spec, backend, receiver))
            latencies += _latency_figures(settings, spec, backend, receiver)
        idle = _idle_figures(settings, backends, receiver)
    skipped = [] if pg_skipped is None else [_skipped("PostgreSQL delivery figures", pg_skipped)]
    return commits + relays + latencies + idle + skipped
