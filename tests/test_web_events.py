"""``/api/events`` over a real uvicorn server on 127.0.0.1: commits of other processes, resuming
with Last-Event-ID, fifty clients on one reader, heartbeats."""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from statemachine.plugins.sql import SQLStore

from statemachine.web import EventBroadcaster, create_app

from .conftest import StoreTarget

#: Drives one ingestion job in a process of its own; prints "VERSION TIME" after each commit.
WRITER = r"""
import json, sys, time
from statemachine import Tracker, load_spec
url, options, job_id, steps = sys.argv[1], json.loads(sys.argv[2]), *sys.argv[3:]
steps = json.loads(steps)
with Tracker(load_spec("ingestion"), store=url, store_options=options) as tracker:
    for step in steps:
        if step[0] == "create":
            job = tracker.create_job(job_id)
        elif step[0] == "sleep":
            time.sleep(step[1])
            continue
        else:
            job = tracker.fire(job_id, step[1], step[2])
        print(job.version, time.time(), flush=True)
"""
RUN = [
    ["create"],
    ["fire", "discovery", "start"],
    ["fire", "discovery", "complete"],
    ["fire", "extraction", "start"],
    ["fire", "extraction", "fail"],
]


def write(target: StoreTarget, job_id: str, steps: list[list[Any]]) -> dict[int, float]:
    """Run ``steps`` on job ``job_id`` in another process; when each version was committed."""
    done = subprocess.run(
        [sys.executable, "-c", WRITER, target.url, json.dumps(target.options), job_id,
         json.dumps(steps)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {int(v): float(t) for v, t in (line.split() for line in done.stdout.splitlines())}


@dataclass
class Frame:
    id: int
    event: str
    data: dict[str, Any]
    received: float


@dataclass
class Stream:
    """An SSE client in a thread: every frame and comment it read, as it read them."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    frames: list[Frame] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    status: int | None = None
    stopped: bool = False
    cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        timeout = httpx.Timeout(10.0, read=30.0)
        with (
            httpx.Client(timeout=timeout) as client,
            client.stream("GET", self.url, headers=self.headers) as response,
        ):
            with self.cond:
                self.status = response.status_code
                self.cond.notify_all()
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if self.stopped:
                    return
                with self.cond:
                    if line.startswith(":"):
                        self.comments.append(line[1:].strip())
                    elif line == "" and "data" in fields:
                        self.frames.append(
                            Frame(
                                int(fields["id"]),
                                fields["event"],
                                json.loads(fields["data"]),
                                time.time(),
                            )
                        )
                        fields = {}
                    elif line:
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
                    self.cond.notify_all()

    def wait(self, check: Callable[[Stream], bool], timeout: float = 15.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: check(self), timeout), (
                self.status,
                self.comments[-3:],
                [(f.id, f.event) for f in self.frames],
            )

    def connected(self) -> Stream:
        self.wait(lambda s: any(c.startswith("connected at") for c in s.comments))
        return self

    def until(self, count: int) -> list[Frame]:
        self.wait(lambda s: len(s.frames) >= count)
        return list(self.frames)

    def close(self) -> None:
        self.stopped = True  # the next heartbeat ends the thread
        self.thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def store(store_target: StoreTarget) -> Iterator[SQLStore]:
    opened = store_target.open()
    try:
        yield opened
    finally:
        opened.close()


@dataclass
class Served:
    url: str
    broadcaster: EventBroadcaster


@pytest.fixture
def served(store: SQLStore) -> Iterator[Served]:
    """The dashboard of ``store`` on a free port of 127.0.0.1, heartbeats every 0.2 s."""
    app = create_app(store, heartbeat=0.2)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", app.state.broadcaster)  # type: ignore[attr-defined]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def logged(store: SQLStore, after: int = 0) -> list[tuple[int, str, dict[str, Any]]]:
    return [
        (e.position, e.event.type, e.event.model_dump(mode="json"))
        for e in store.read_events(after, limit=1000)
    ]


def frames_of(frames: list[Frame]) -> list[tuple[int, str, dict[str, Any]]]:
    return [(f.id, f.event, f.data) for f in frames]


def test_a_client_sees_the_commits_of_another_process_with_positions_types_and_json(
    served: Served, store: SQLStore, store_target: StoreTarget
) -> None:
    stream = Stream(f"{served.url}/api/events").connected()
    committed = write(store_target, "remote", RUN)
    expected = logged(store)
    frames = stream.until(len(expected))
    stream.close()
    assert frames_of(frames) == expected
    assert [f.event for f in frames][:3] == ["job_created", "phase_changed", "job_status_changed"]
    # Commit to client: the first frame of each version against the writer's clock.
    first = {}
    for frame in frames:
        first.setdefault(frame.data["version"], frame.received)
    latencies = [first[v] - at for v, at in committed.items()]
    print(
        f"\n{store_target.backend}: commit→SSE client latency median "
        f"{statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
    )
    assert max(latencies) < 1.0


def test_reconnecting_with_last_event_id_gets_exactly_the_missed_events(
    served: Served, store: SQLStore, store_target: StoreTarget
) -> None:
    stream = Stream(f"{served.url}/api/events").connected()
    write(store_target, "r", RUN[:2])
    seen = stream.until(len(logged(store)))
    stream.close()
    last = seen[-1].id
    write(store_target, "r", [["fire", "discovery", "complete"], ["fire", "extraction", "start"]])
    missed = logged(store, last)
    assert missed
    again = Stream(f"{served.url}/api/events", {"Last-Event-ID": str(last)}).connected()
    resumed = again.until(len(missed))
    # Then live, with nothing repeated.
    write(store_target, "r", [["fire", "extraction", "complete"]])
    everything = logged(store, last)
    resumed = again.until(len(everything))
    time.sleep(0.5)
    again.close()
    assert frames_of(again.frames) == everything
    assert frames_of(resumed[: len(missed)]) == missed


def test_after_resumes_from_a_position_older_than_the_dashboard_by_reading_the_store(
    served: Served, store: SQLStore, store_target: StoreTarget
) -> None:
    write(store_target, "old", RUN)  # before any stream: the reader starts after these
    expected = logged(store)
    stream = Stream(f"{served.url}/api/events?after=2").connected()
    frames = stream.until(len(expected) - 2)
    stream.close()
    assert frames_of(frames) == expected[2:]
    assert served.broadcaster.catchup_reads >= 1


def test_fifty_clients_get_every_event_from_one_store_reader(
    served: Served, store: SQLStore, store_target: StoreTarget
) -> None:
    streams = [Stream(f"{served.url}/api/events") for _ in range(50)]
    for stream in streams:
        stream.connected()
    reads_before, started = served.broadcaster.reads, time.monotonic()
    steps = [step for step in RUN if step[0] != "sleep"]
    write(store_target, "shared", steps)
    expected = logged(store)
    try:
        for stream in streams:
            assert frames_of(stream.until(len(expected))) == expected
    finally:
        for stream in streams:
            stream.stopped = True
        for stream in streams:
            stream.close()
    broadcaster = served.broadcaster
    assert broadcaster.followers_started == 1
    assert broadcaster.catchup_reads == 0
    # One read per wake-up of the single reader, not one per client.
    reads = broadcaster.reads - reads_before
    idle_waits = (time.monotonic() - started) / broadcaster.wait
    assert 1 <= reads <= len(steps) + idle_waits + 3, (reads, idle_waits)


def test_an_idle_stream_gets_heartbeat_comments(served: Served) -> None:
    stream = Stream(f"{served.url}/api/events").connected()
    stream.wait(lambda s: s.comments.count("heartbeat") >= 3, timeout=5)
    stream.close()


def test_a_last_event_id_that_is_not_a_position_is_a_400(served: Served) -> None:
    for value in ("x", "-1"):
        response = httpx.get(f"{served.url}/api/events", headers={"Last-Event-ID": value})
        assert response.status_code == 400
        assert "Last-Event-ID" in response.json()["detail"]


def test_the_reader_stops_when_the_last_client_leaves_and_starts_again(
    served: Served, store: SQLStore, store_target: StoreTarget
) -> None:
    stream = Stream(f"{served.url}/api/events").connected()
    stream.close()
    deadline = time.monotonic() + 5
    while served.broadcaster.subscribers:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.5)  # the follower notices within one wait
    again = Stream(f"{served.url}/api/events").connected()
    write(store_target, "later", RUN[:1])
    assert frames_of(again.until(1)) == logged(store)
    again.close()
    assert served.broadcaster.followers_started == 2
