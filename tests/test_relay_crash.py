"""Durable delivery survives kill -9: of the committing process, of relay processes, and an
endpoint that is down (DESIGN §7).

A real HTTP receiver on 127.0.0.1 verifies every POST with the ``standardwebhooks`` library
and records what it got; the committing processes and the relays are real subprocesses
(``tests/relay_worker.py`` and the ``phasekit relay`` command) on a SQLite file or a PostgreSQL
schema, with the bundled webhook notifier. Afterwards, for every scenario:

- every event in the store's log reached the receiver at least once, verified;
- deduplicated by ``webhook-id``, the receiver holds exactly the committed events;
- first arrivals are in commit (position) order: per job, and for the notifier as a whole.

The figures (rounds, events, duplicates, timings) are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import base64
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from statemachine.plugins.sql import SQLStore
from statemachine.plugins.webhook import WebhookNotifier

from statemachine import JobState, LoggedEvent, Tracker, load_spec
from statemachine.relay import Relay

from .conftest import StoreTarget
from .relay_worker import step

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
SPEC = load_spec("ingestion")
#: Relay options of every relay here: quick retries, short leases, frequent cursor saves.
OPTIONS: dict[str, Any] = {
    "backoff": 0.05,
    "max_backoff": 0.5,
    "lease": 2.0,
    "save_every": 0.05,
    "idle_wait": 0.2,
    "drain_timeout": 5.0,
}


def _phasekit() -> list[str]:
    beside = Path(sys.executable).parent / "phasekit"
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "statemachine"]


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


# -- the receiver -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One verified POST: the message's id and event, the relay that sent it, and when."""

    webhook_id: str
    job_id: str
    version: int
    type: str
    relay: str
    start: float
    end: float


class Receiver:
    """A Standard Webhooks endpoint: verifies each POST, records it, answers 204.

    ``down(seconds)`` makes it answer 503 (with ``Retry-After`` when given) for a while;
    ``delay`` slows every answer. Requests it could not verify are kept in ``rejected``.
    """

    def __init__(self, secret: str, *, delay: float = 0.0) -> None:
        self.verifier = Webhook(secret)
        self.delay = delay
        self.got: list[Delivery] = []
        self.rejected: list[str] = []
        self.refused = 0  # 503 answers
        self.cut = 0  # requests whose sender died before sending all of the body
        self.retry_after: str | None = None
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._in_flight = 0
        self.most_in_flight = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                receiver.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a relay killed mid-request resets its connection: not a failure here

        self.server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks"

    def down(self, seconds: float, retry_after: str | None = None) -> None:
        with self._lock:
            self._down_until = time.monotonic() + seconds
            self.retry_after = retry_after

    def up(self) -> None:
        with self._lock:
            self._down_until = 0.0

    @property
    def is_down(self) -> bool:
        return time.monotonic() < self._down_until

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        start = time.monotonic()
        with self._lock:
            self._in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self._in_flight)
        try:
            length = int(request.headers.get("Content-Length", 0))
            body = request.rfile.read(length)
            if len(body) < length:  # the sender was killed halfway through: no delivery
                with self._lock:
                    self.cut += 1
                request.close_connection = True
                return
            if self.is_down:
                with self._lock:
                    self.refused += 1
                self._answer(request, 503, self.retry_after)
                return
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                message = self.verifier.verify(body, headers)
                data = message["data"]
                if data["event_id"] != headers["webhook-id"] or message["type"] != data["type"]:
                    raise WebhookVerificationError("the id or type does not match the event")
            except (WebhookVerificationError, KeyError, TypeError, ValueError) as exc:
                with self._lock:
                    self.rejected.append(f"{type(exc).__name__}: {exc} ({len(body)} bytes)")
                self._answer(request, 400)
                return
            if self.delay:
                time.sleep(self.delay)
            delivery = Delivery(
                webhook_id=headers["webhook-id"],
                job_id=data["job_id"],
                version=data["version"],
                type=data["type"],
                relay=headers.get("x-relay", ""),
                start=start,
                end=time.monotonic(),
            )
            with self._lock:
                self.got.append(delivery)
            self._answer(request, 204)
        finally:
            with self._lock:
                self._in_flight -= 1

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, code: int, retry_after: str | None = None) -> None:
        request.send_response(code)
        if retry_after is not None:
            request.send_header("Retry-After", retry_after)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def ids(self) -> list[str]:
        with self._lock:
            return [d.webhook_id for d in self.got]

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self.got)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def receiver(secret: str) -> Iterator[Receiver]:
    found = Receiver(secret)
    try:
        yield found
    finally:
        found.close()


# -- places and processes -----------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    if request.param == "sqlite":
        return StoreTarget("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}")
    url, schema = request.getfixturevalue("pg_schema")
    prefix = f"c{secrets.token_hex(3)}_"
    return StoreTarget("postgresql", url, {"schema": schema, "table_prefix": prefix})


class Place:
    """A test's store (``target``), its config files, and the processes it started."""

    def __init__(self, target: StoreTarget, tmp_path: Path, secret: str) -> None:
        self.target = target
        self.tmp_path = tmp_path
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PHASEKIT_DISABLE")},
            "RELAY_SECRET": secret,
        }
        self.processes: list[subprocess.Popen[str]] = []
        self._stores: list[SQLStore] = []
        self._configs = 0

    def store(self) -> SQLStore:
        store = self.target.open()
        self._stores.append(store)
        return store

    def config(
        self,
        url: str,
        *,
        relay: str = "external",
        tag: str = "",
        **options: Any,
    ) -> Path:
        """A tracker config of this store with the webhook notifier; its secret from
        ``${RELAY_SECRET}``; ``tag`` goes in an ``x-relay`` header."""
        webhook: dict[str, Any] = {"url": url, "secret": "${RELAY_SECRET}", "timeout": 5}
        if tag:
            webhook["headers"] = {"x-relay": tag}
        config = {
            "spec": "ingestion",
            "store": self.target.url,
            "store_options": self.target.options,
            "notifiers": {"webhook": webhook},
            "relay": relay,
            "relay_options": {**OPTIONS, **options},
        }
        self._configs += 1
        path = self.tmp_path / f"config-{self._configs}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self, *command: str, name: str) -> subprocess.Popen[str]:
        """A process in the repository's root, its output in files of ``tmp_path``."""
        out = (self.tmp_path / f"{name}.out").open("w")
        err = (self.tmp_path / f"{name}.err").open("w")
        process = subprocess.Popen(
            list(command), cwd=REPO, env=self.env, stdout=out, stderr=err, text=True
        )
        out.close()
        err.close()
        self.processes.append(process)
        return process

    def committer(self, config: Path, seed: int, pause: float) -> subprocess.Popen[str]:
        return self.start(
            sys.executable,
            "-m",
            "tests.relay_worker",
            "commit",
            str(config),
            str(seed),
            str(pause),
            name=f"commit-{seed}",
        )

    def relay(self, config: Path, name: str) -> subprocess.Popen[str]:
        return self.start(*_phasekit(), "relay", "--config", str(config), name=name)

    def run(self, config: Path, *args: str) -> Any:
        """``phasekit relay --config CONFIG ARGS --json``: its JSON answer."""
        run = subprocess.run(
            [*_phasekit(), "relay", "--config", str(config), *args, "--json"],
            cwd=self.tmp_path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, (run.stdout, run.stderr)
        assert "Traceback" not in run.stderr, run.stderr
        return json.loads(run.stdout)

    def finish(self, config: Path, timeout: float = 30.0) -> int:
        """``phasekit relay --once`` until nothing waits (a dead relay's lease expires
        first); how many times it ran."""
        deadline = time.monotonic() + timeout
        runs = 0
        while True:
            runs += 1
            answer = self.run(config, "--once")
            if answer["undelivered"] == 0:
                return runs
            assert time.monotonic() < deadline, answer
            time.sleep(0.3)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        for store in self._stores:
            store.close()


@pytest.fixture
def place(target: StoreTarget, tmp_path: Path, secret: str) -> Iterator[Place]:
    found = Place(target, tmp_path, secret)
    try:
        yield found
    finally:
        found.close()


def wait_for_line(path: Path, line: str, process: subprocess.Popen[str], timeout: float) -> bool:
    """Whether ``process`` wrote ``line`` to ``path`` within ``timeout`` (False if it died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and line in path.read_text().splitlines():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def wait_until(condition: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"not within {timeout} s"
        time.sleep(0.01)
    return time.monotonic() - start


def logged(store: SQLStore) -> list[LoggedEvent]:
    found: list[LoggedEvent] = []
    while batch := store.read_events(found[-1].position if found else 0, limit=1000):
        found.extend(batch)
    return found


class Committer:
    """Commits changes on a few jobs at a time in a thread of the test process (``relay:
    external``: it delivers nothing itself) until stopped."""

    def __init__(self, store: SQLStore, seed: int, pause: float) -> None:
        self.tracker = Tracker(SPEC, store, load_entrypoints=False)
        self.rng = random.Random(seed)
        self.seed = seed
        self.pause = pause
        self.commits = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.failure: BaseException | None = None

    def __enter__(self) -> Committer:
        self._thread.start()
        return self

    def _run(self) -> None:
        active: list[JobState] = []
        made = 0
        try:
            while not self._stop.is_set():
                while len(active) < 4:
                    active.append(self.tracker.create_job(f"t{self.seed}-job-{made}"))
                    made += 1
                job = self.rng.choice(active)
                if not step(self.tracker, job, self.rng):
                    active.remove(job)
                self.commits += 1
                self._stop.wait(self.pause)
        except BaseException as exc:
            self.failure = exc
            raise

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        assert self.failure is None, self.failure

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Outcome:
    """What the receiver got compared to the store's log."""

    events: int
    deliveries: int
    duplicates: int


def check_delivered(store: SQLStore, receiver: Receiver) -> Outcome:
    """Every committed event arrived, verified; deduplicated, exactly the log; first
    arrivals in position order, per job and overall."""
    events = logged(store)
    got = receiver.deliveries()
    assert receiver.rejected == []
    by_id = {e.event.event_id: e for e in events}
    assert len(by_id) == len(events)
    first = list(dict.fromkeys(d.webhook_id for d in got))
    assert set(first) == set(by_id), (
        f"{len(set(by_id) - set(first))} committed event(s) never arrived, "
        f"{len(set(first) - set(by_id))} arrived that are not in the log"
    )
    for delivery in got:
        event = by_id[delivery.webhook_id].event
        assert (delivery.job_id, delivery.version, delivery.type) == (
            event.job_id,
            event.version,
            event.type,
        )
    positions = [by_id[i].position for i in first]
    assert positions == sorted(positions), "first arrivals out of commit order"
    per_job: dict[str, list[int]] = {}
    for i in first:
        per_job.setdefault(by_id[i].event.job_id, []).append(by_id[i].position)
    for job, seen in per_job.items():
        assert seen == sorted(seen), job
    return Outcome(events=len(events), deliveries=len(got), duplicates=len(got) - len(first))


def report(name: str, **figures: Any) -> None:
    shown = ", ".join(f"{k}={v}" for k, v in figures.items())
    print(f"\n[{name}] {shown}")


# -- 1. kill -9 of the committing process ------------------------------------------------------

COMMIT_ROUNDS = 5


@pytest.mark.slow
def test_killing_the_committing_process_loses_no_event_and_invents_none(
    place: Place, receiver: Receiver
) -> None:
    """A tracker with ``relay: thread`` commits on several jobs and is killed (SIGKILL) at a
    random moment, round after round, with deliveries pending; ``phasekit relay --once``
    then delivers the rest."""
    rng = random.Random(20261202)
    # A short lease: each committer's relay thread takes over from the killed one soon.
    config = place.config(receiver.url, relay="thread", lease=0.5)
    started = time.monotonic()
    lived = []
    for round_ in range(COMMIT_ROUNDS):
        committer = place.committer(config, seed=round_, pause=0.002)
        out = place.tmp_path / f"commit-{round_}.out"
        if round_ == 0:
            time.sleep(rng.uniform(0.05, 0.6))  # maybe while it starts or makes its tables
        else:
            assert wait_for_line(out, "ready", committer, timeout=30), (
                place.tmp_path / f"commit-{round_}.err"
            ).read_text()
            time.sleep(rng.uniform(0.2, 1.5))
        assert committer.poll() is None, (place.tmp_path / f"commit-{round_}.err").read_text()
        kill(committer)
        lived.append(round(time.monotonic() - started, 2))
    store = place.store()
    before_finish = len(receiver.ids())
    pending = store.last_position() - len(set(receiver.ids()))
    runs = place.finish(config)
    outcome = check_delivered(store, receiver)
    (status,) = place.run(config, "--status")
    assert (status["lag"], status["dead_letters"]) == (0, 0)
    report(
        f"committer kill -9, {place.target.backend}",
        rounds=COMMIT_ROUNDS,
        events=outcome.events,
        deliveries=outcome.deliveries,
        duplicates=outcome.duplicates,
        delivered_in_process=before_finish,
        requests_cut_short=receiver.cut,
        pending_at_the_end=pending,
        finish_runs=runs,
        seconds=round(time.monotonic() - started, 1),
    )
    assert outcome.events > 100  # the rounds did commit


# -- 2. kill -9 of a relay process mid-delivery -------------------------------------------------

RELAY_ROUNDS = 4


@dataclass
class Segment:
    """The deliveries of one relay process, in the order it made them."""

    relay: str
    positions: list[int]


def segments(receiver: Receiver, store: SQLStore) -> list[Segment]:
    position = {e.event.event_id: e.position for e in logged(store)}
    found: dict[str, Segment] = {}
    for delivery in receiver.deliveries():
        segment = found.setdefault(delivery.relay, Segment(delivery.relay, []))
        segment.positions.append(position[delivery.webhook_id])
    return list(found.values())


@pytest.mark.slow
def test_killing_a_relay_mid_delivery_loses_nothing_and_replays_only_since_its_last_save(
    place: Place, secret: str
) -> None:
    """``phasekit relay`` processes, each killed (SIGKILL) while it delivers to a slow
    receiver, round after round, while commits go on; then one more relay finishes."""
    delay = 0.004
    receiver = Receiver(secret, delay=delay)
    rng = random.Random(7)
    store = place.store()
    started = time.monotonic()
    kills = []
    try:
        with Committer(place.store(), seed=1, pause=0.03) as committer:
            for round_ in range(RELAY_ROUNDS):
                tag = f"relay-{round_}"
                process = place.relay(place.config(receiver.url, tag=tag, lease=1.0), name=tag)
                # Killed once it has delivered for a moment (after the last one's lease ran out).
                wait_until(lambda tag=tag: any(d.relay == tag for d in receiver.deliveries()), 30)
                time.sleep(rng.uniform(0.1, 0.6))
                kill(process)
                kills.append(sum(1 for d in receiver.deliveries() if d.relay == tag))
        commits = committer.commits
        finish = place.config(receiver.url, tag="finish", lease=1.0)
        runs = place.finish(finish)
        outcome = check_delivered(store, receiver)

        # Each relay delivered in position order, once each; the next one began right after
        # the position its predecessor had saved: what it sent again is all the duplicates.
        replayed = []
        reached = 0
        for segment in segments(receiver, store):
            assert segment.positions == sorted(set(segment.positions)), segment.relay
            assert segment.positions[0] <= reached + 1, f"{segment.relay} skipped events"
            replayed.append(max(0, reached - segment.positions[0] + 1))
            reached = max(reached, segment.positions[-1])
        assert sum(replayed) == outcome.duplicates
        # What a killed relay had not saved: at most what it delivers in save_every seconds,
        # and the delivery in flight.
        most = int(OPTIONS["save_every"] / delay) + 2
        assert all(n <= most for n in replayed), (replayed, most)
        report(
            f"relay kill -9, {place.target.backend}",
            rounds=RELAY_ROUNDS,
            commits=commits,
            events=outcome.events,
            deliveries=outcome.deliveries,
            duplicates=outcome.duplicates,
            replayed_per_relay=replayed,
            delivered_per_killed_relay=kills,
            requests_cut_short=receiver.cut,
            finish_runs=runs,
            seconds=round(time.monotonic() - started, 1),
        )
    finally:
        receiver.close()


# -- 3. three relays at once --------------------------------------------------------------------


def test_three_relays_deliver_each_event_once_one_relay_at_a_time(
    place: Place, secret: str
) -> None:
    """Three ``phasekit relay`` processes start at once on one store while commits go on;
    halfway, the one delivering is stopped (SIGTERM) and another takes over."""
    receiver = Receiver(secret, delay=0.002)
    store = place.store()
    started = time.monotonic()
    try:
        with Committer(place.store(), seed=3, pause=0.005) as committer:
            relays = {
                f"relay-{n}": place.relay(place.config(receiver.url, tag=f"relay-{n}"), f"r{n}")
                for n in range(3)
            }
            wait_until(lambda: len(receiver.ids()) > 50, 30)
            time.sleep(1.0)
            counts = Counter(d.relay for d in receiver.deliveries())
            holder, _ = counts.most_common(1)[0]
            relays[holder].terminate()
            assert relays[holder].wait(timeout=20) == 0
            stopped = time.monotonic()
            time.sleep(1.5)
        commits = committer.commits
        wait_until(lambda: len(set(receiver.ids())) >= store.last_position(), 30)
        for process in relays.values():
            process.terminate()
        for process in relays.values():
            assert process.wait(timeout=20) == 0
        outcome = check_delivered(store, receiver)
        counts = Counter(d.relay for d in receiver.deliveries())
        after = [d for d in receiver.deliveries() if d.start > stopped]
        takeover = min(d.start for d in after) - stopped if after else None
        report(
            f"three relays, {place.target.backend}",
            commits=commits,
            events=outcome.events,
            deliveries=outcome.deliveries,
            duplicates=outcome.duplicates,
            per_relay=dict(counts),
            stopped=holder,
            takeover_seconds=round(takeover, 3) if takeover is not None else None,
            most_in_flight=receiver.most_in_flight,
            seconds=round(time.monotonic() - started, 1),
        )
        assert receiver.most_in_flight == 1  # never two deliveries at once: one lease holder
        assert outcome.duplicates == 0  # no relay died: none is sent twice
        assert holder in counts and len(counts) >= 2  # another one took over
        assert takeover is not None and takeover < OPTIONS["lease"]
    finally:
        receiver.close()


# -- 4. the endpoint is down --------------------------------------------------------------------


def test_an_endpoint_down_for_a_while_loses_nothing_and_holds_back_no_other_notifier(
    place: Place, secret: str
) -> None:
    """One receiver answers 503 with ``Retry-After: 1`` for 3 s while a second one is up;
    the second notifier gets every event at once, the first one all of them once it is up."""
    down, up = Receiver(secret), Receiver(secret)
    store = place.store()
    notifiers = {
        "down": WebhookNotifier(down.url, secret, timeout=5),
        "up": WebhookNotifier(up.url, secret, timeout=5),
    }
    relay = Relay(place.store(), notifiers, options=OPTIONS)
    tracker = Tracker(SPEC, store, load_entrypoints=False)
    try:
        down.down(3.0, retry_after="1")
        went_down = time.monotonic()
        relay.start()
        lags = []
        for n in range(6):
            job = tracker.create_job(f"job-{n}")
            job.phases["discovery"].start()
            committed = time.monotonic()
            wanted = {e.event.event_id for e in logged(store)}
            lags.append(wait_until(lambda wanted=wanted: wanted <= set(up.ids()), 5))
            time.sleep(0.2)
        assert down.ids() == []  # still down: nothing got through there
        assert committed - went_down < 3.0
        wait_until(lambda: len(down.ids()) == store.last_position(), 10)
        relay.stop()
        for receiver in (down, up):
            outcome = check_delivered(store, receiver)
            assert outcome.duplicates == 0
        (first,) = [s for s in relay.status() if s.notifier == "down"]
        assert (first.lag, first.dead_letters) == (0, 0)
        report(
            f"endpoint down, {place.target.backend}",
            events=store.last_position(),
            refused_503=down.refused,
            up_lag_max_seconds=round(max(lags), 3),
            down_caught_up_after_seconds=round(down.deliveries()[-1].end - went_down, 2),
        )
        assert max(lags) < 1.0, lags  # the healthy notifier was not held back
        assert 2 <= down.refused <= 6  # about one attempt per Retry-After second
    finally:
        tracker.close()
        relay.close()
        down.close()
        up.close()


def test_after_its_last_attempt_an_event_is_a_dead_letter_and_retry_dead_delivers_it(
    place: Place, receiver: Receiver
) -> None:
    """With ``max_attempts: 2``, events the endpoint refused (503) twice are dead letters,
    listed by ``--status``; once it is up, ``phasekit relay --retry-dead`` delivers them."""
    config = place.config(receiver.url, max_attempts=2, backoff=0.05)
    store = place.store()
    with Tracker(SPEC, store, load_entrypoints=False) as tracker:
        receiver.down(3600)
        job = tracker.create_job("job-dead")
        job.phases["discovery"].start()
        dead = [e.event.event_id for e in logged(store)]
        process = place.relay(config, "relay")
        wait_until(lambda: len(store.dead_letters("webhook")) == len(dead), 30)
        process.terminate()
        assert process.wait(timeout=20) == 0
        assert receiver.refused == 2 * len(dead)
        (status,) = place.run(config, "--status")
        assert (status["dead_letters"], status["lag"]) == (len(dead), 0)
        assert status["last_error"].startswith("DeliveryError: webhook ")

        # The lane went on past them: what is committed now is delivered while they wait.
        receiver.up()
        job.phases["discovery"].complete()
        later = [e.event.event_id for e in logged(store)][len(dead) :]
        assert place.run(config, "--once")["delivered"] == len(later)
        assert receiver.ids() == later
        assert place.run(config, "--retry-dead") == {"webhook": {"delivered": len(dead), "dead": 0}}
        assert receiver.ids() == later + dead
        assert receiver.rejected == []
        (status,) = place.run(config, "--status")
        assert (status["dead_letters"], status["lag"]) == (0, 0)
        assert store.dead_letters() == []
        report(
            f"dead letters, {place.target.backend}",
            dead_letters=len(dead),
            refused_503=receiver.refused,
            delivered_meanwhile=len(later),
            retried=len(dead),
        )
