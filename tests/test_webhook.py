"""The webhook notifier against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import itertools
import json
import logging
import re
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import statemachine.plugins.webhook
from statemachine.plugins.webhook import WebhookNotifier, sign, verify_signature

from statemachine import (
    ConfigError,
    InvalidArgument,
    PhaseChanged,
    PhaseSet,
    Tracker,
    parse_event,
)

SECRET = "s3cr3t-do-not-leak-4f9a"
TOKEN = "t0ken-do-not-leak-7c21"
NOTIFIERS_DOC = Path(__file__).resolve().parent.parent / "docs" / "notifiers.md"


@dataclass(frozen=True)
class Request:
    """One POST the receiver got."""

    headers: dict[str, str]  # lower-case names
    body: bytes
    target: str = ""  # the request target: path and query string

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


class _Server(ThreadingHTTPServer):
    receiver: Receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up on a slow answer is expected here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        receiver = self.server.receiver
        status, delay, trickle = receiver.record(Request(headers, body, self.path))
        if delay:
            receiver.release.wait(delay)
        try:
            if trickle == "status":  # the status line and headers, one byte at a time, forever
                self._trickle(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"")
            elif trickle == "body":  # a 200 at once, then its body one byte at a time
                self._trickle(b"", b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            else:
                self._answer(status, receiver.answer_size)
        except OSError:  # the client hung up
            receiver.hung_up()
            self.close_connection = True

    def _answer(self, status: int, size: int) -> None:
        """Answer ``status`` with a body of ``size`` bytes, written in 64 KiB chunks."""
        self.send_response(status)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        receiver = self.server.receiver
        receiver.answer_sent = 0
        chunk = b"x" * 65536
        while receiver.answer_sent < size:
            piece = chunk[: size - receiver.answer_sent]
            self.wfile.write(piece)
            receiver.answer_sent += len(piece)

    def _trickle(self, slowly: bytes, at_once: bytes) -> None:
        """Write ``at_once``, then ``slowly`` and an endless header or body a byte at a time."""
        receiver = self.server.receiver
        self.wfile.write(at_once)
        for byte in itertools.chain(slowly, itertools.repeat(ord("a"))):
            if receiver.release.wait(receiver.trickle_interval):
                return
            self.wfile.write(bytes([byte]))

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Receiver:
    """A webhook endpoint that records requests and answers with the planned statuses."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.statuses: list[int] = []  # answered in order, then 200
        self.delay = 0.0  # seconds to sleep before answering
        self.trickles: list[str] = []  # answered in order ("status" or "body"), then none
        self.trickle_interval = 0.5  # seconds between the bytes of a trickled answer
        self.answer_size = 0  # bytes of body in each answer that is not trickled
        self.answer_sent = 0  # body bytes written so far (answers with a body, one at a time)
        self.hangups: list[float] = []  # when (monotonic) the client hung up mid-answer
        self.release = threading.Event()  # cuts every sleep short (at teardown)
        self._cond = threading.Condition()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.receiver = self
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def record(self, request: Request) -> tuple[int, float, str | None]:
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()
            status = self.statuses.pop(0) if self.statuses else 200
            return status, self.delay, (self.trickles.pop(0) if self.trickles else None)

    def hung_up(self) -> None:
        with self._cond:
            self.hangups.append(time.monotonic())
            self._cond.notify_all()

    def wait_for_hangup(self, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: bool(self.hangups), timeout)

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.requests) >= count, timeout)

    def event_types(self) -> list[str]:
        return [r.json["event"]["type"] for r in self.requests]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def notifier_factory() -> Iterator[Callable[..., WebhookNotifier]]:
    """Builds notifiers with fast retries for tests, and closes them afterwards."""
    made: list[WebhookNotifier] = []

    def make(url: str, **options: Any) -> WebhookNotifier:
        options.setdefault("backoff", 0.01)
        options.setdefault("max_backoff", 0.05)
        options.setdefault("close_timeout", 2.0)
        notifier = WebhookNotifier(url, **options)
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        notifier.close()


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


def phase_event(job_id: str = "job-42", version: int = 1) -> PhaseChanged:
    return PhaseChanged(
        job_id=job_id,
        version=version,
        phase="extraction",
        trigger="start",
        source="not_started",
        dest="running",
    )


# -- signing and format ----------------------------------------------------------------------


def test_signature_verifies_with_the_secret(receiver: Receiver, notifier_factory: Any) -> None:
    notifier = notifier_factory(receiver.url, secret=SECRET)
    notifier.phase_changed(phase_event())
    assert receiver.wait_for(1)
    request = receiver.requests[0]
    assert request.headers["x-phasekit-signature"].startswith("sha256=")
    assert verify_signature(SECRET, request.body, request.headers["x-phasekit-signature"])


def test_signature_fails_with_a_wrong_secret(receiver: Receiver, notifier_factory: Any) -> None:
    notifier = notifier_factory(receiver.url, secret=SECRET)
    notifier.phase_changed(phase_event())
    assert receiver.wait_for(1)
    request = receiver.requests[0]
    assert not verify_signature("wrong", request.body, request.headers["x-phasekit-signature"])


def test_signature_fails_for_a_tampered_body(receiver: Receiver, notifier_factory: Any) -> None:
    notifier = notifier_factory(receiver.url, secret=SECRET)
    notifier.phase_changed(phase_event())
    assert receiver.wait_for(1)
    request = receiver.requests[0]
    tampered = request.body.replace(b"job-42", b"job-43")
    assert not verify_signature(SECRET, tampered, request.headers["x-phasekit-signature"])


def test_stale_delivery_fails_verification_with_max_age(
    receiver: Receiver, notifier_factory: Any
) -> None:
    notifier = notifier_factory(receiver.url, secret=SECRET)
    notifier.phase_changed(phase_event())
    assert receiver.wait_for(1)
    request = receiver.requests[0]
    header = request.headers["x-phasekit-signature"]
    assert verify_signature(SECRET, request.body, header, max_age=300)
    later = datetime.now(UTC) + timedelta(minutes=10)
    assert not verify_signature(SECRET, request.body, header, max_age=300, now=later)


def test_headers_name_the_event_and_give_each_delivery_a_unique_id(
    receiver: Receiver, notifier_factory: Any
) -> None:
    notifier = notifier_factory(receiver.url, secret=SECRET)
    for version in range(1, 4):
        notifier.phase_changed(phase_event(version=version))
    assert receiver.wait_for(3)
    ids = [r.headers["x-phasekit-delivery"] for r in receiver.requests]
    assert len(set(ids)) == 3
    for request in receiver.requests:
        assert request.headers["x-phasekit-event"] == "phase_changed"
        assert request.headers["content-type"] == "application/json"


def test_body_carries_the_event_its_time_and_the_delivery_id(
    receiver: Receiver, notifier_factory: Any
) -> None:
    event = phase_event()
    notifier = notifier_factory(receiver.url, secret=SECRET)
    notifier.phase_changed(event)
    assert receiver.wait_for(1)
    request = receiver.requests[0]
    body = request.json
    assert body["delivery_id"] == request.headers["x-phasekit-delivery"]
    assert body["attempt"] == 1
    assert datetime.fromisoformat(body["sent_at"]).tzinfo is not None
    assert body["event"]["type"] == "phase_changed"
    assert parse_event(body["event"]) == event


def test_without_a_secret_deliveries_are_unsigned(
    receiver: Receiver, notifier_factory: Any
) -> None:
    notifier = notifier_factory(receiver.url)
    notifier.phase_changed(phase_event())
    assert receiver.wait_for(1)
    assert "x-phasekit-signature" not in receiver.requests[0].headers


def test_extra_headers_are_sent(receiver: Receiver, notifier_factory: Any) -> None:
    notifier = notifier_factory(receiver.url, headers={"Authorization": "Bearer t0ken"})
    notifier.phase_changed(phase_event())
    assert receiver.wait_for(1)
    assert receiver.requests[0].headers["authorization"] == "Bearer t0ken"


def test_events_filter_sends_only_the_chosen_types(
    receiver: Receiver, notifier_factory: Any, ingestion: PhaseSet
) -> None:
    notifier = notifier_factory(receiver.url, events=["job_status_changed"])
    with Tracker(ingestion, plugins=[notifier], load_entrypoints=False) as tracker:
        tracker.create_job("j1").phases["discovery"].start()
    assert receiver.event_types() == ["job_status_changed"]


def documented_receiver() -> Callable[[bytes, dict[str, str]], int]:
    """``handle`` from the receiver snippet of docs/notifiers.md, keyed with ``SECRET``."""
    section = NOTIFIERS_DOC.read_text().split("### Verifying a delivery (receiver side)", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None
    namespace: dict[str, Any] = {}
    exec(compile(found[1], str(NOTIFIERS_DOC), "exec"), namespace)
    namespace["SECRET"] = SECRET.encode()
    handle: Callable[[bytes, dict[str, str]], int] = namespace["handle"]
    return handle


def test_the_documented_receiver_takes_a_real_delivery_once_and_refuses_forgeries_and_replays(
    receiver: Receiver, notifier_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    handle = documented_receiver()
    notifier = notifier_factory(receiver.url, secret=SECRET)
    notifier.phase_changed(phase_event())
    assert receiver.wait_for(1)
    request = receiver.requests[0]
    headers = {name.title(): value for name, value in request.headers.items()}
    capsys.readouterr()

    assert handle(request.body, headers) == 200
    assert capsys.readouterr().out == "phase_changed job-42 1\n"  # handled
    assert handle(request.body, headers) == 200
    assert capsys.readouterr().out == ""  # the same delivery again: acknowledged, not handled

    tampered = request.body.replace(b"job-42", b"job-43")
    assert handle(tampered, headers) == 401
    forged = {**headers, "X-Phasekit-Signature": sign("a guess", request.body)}
    assert handle(request.body, forged) == 401

    # A capture of an older delivery, signed with the right secret: refused as stale.
    old = request.json
    old["delivery_id"] = "0" * 32
    old["sent_at"] = (datetime.now(UTC) - timedelta(minutes=10)).isoformat().replace("+00:00", "Z")
    body = json.dumps(old, separators=(",", ":")).encode()
    assert handle(body, {**headers, "X-Phasekit-Signature": sign(SECRET, body)}) == 401
    assert capsys.readouterr().out == ""


# -- retries -----------------------------------------------------------------------------------


def test_server_error_is_retried_until_delivered(receiver: Receiver, notifier_factory: Any) -> None:
    receiver.statuses = [500, 500]
    notifier = notifier_factory(receiver.url, secret=SECRET)
    notifier.phase_changed(phase_event())
    assert notifier.wait_idle(5)
    assert len(receiver.requests) == 3
    assert (notifier.delivered, notifier.retried, notifier.failed) == (1, 2, 0)
    assert len({r.headers["x-phasekit-delivery"] for r in receiver.requests}) == 1
    assert [r.json["attempt"] for r in receiver.requests] == [1, 2, 3]
    for request in receiver.requests:  # each attempt is signed anew
        assert verify_signature(SECRET, request.body, request.headers["x-phasekit-signature"])


def test_too_many_requests_is_retried(receiver: Receiver, notifier_factory: Any) -> None:
    receiver.statuses = [429]
    notifier = notifier_factory(receiver.url)
    notifier.phase_changed(phase_event())
    assert notifier.wait_idle(5)
    assert (notifier.delivered, notifier.retried) == (1, 1)


def test_client_error_is_not_retried(receiver: Receiver, notifier_factory: Any) -> None:
    receiver.statuses = [400]
    notifier = notifier_factory(receiver.url)
    notifier.phase_changed(phase_event())
    assert notifier.wait_idle(5)
    assert len(receiver.requests) == 1
    assert (notifier.delivered, notifier.retried, notifier.failed) == (0, 0, 1)


def test_retries_stop_after_max_retries(receiver: Receiver, notifier_factory: Any) -> None:
    receiver.statuses = [503] * 10
    notifier = notifier_factory(receiver.url, max_retries=3)
    notifier.phase_changed(phase_event())
    assert notifier.wait_idle(5)
    assert len(receiver.requests) == 4
    assert (notifier.failed, notifier.retried) == (1, 3)


def test_refused_connection_is_retried_then_counted_as_failed(
    closed_port_url: str, notifier_factory: Any
) -> None:
    notifier = notifier_factory(closed_port_url, max_retries=2)
    notifier.phase_changed(phase_event())
    assert notifier.wait_idle(5)
    assert (notifier.delivered, notifier.retried, notifier.failed) == (0, 2, 1)


# -- answers and deadlines ---------------------------------------------------------------------


def test_a_huge_answer_is_not_read_whole_and_its_2xx_still_counts(
    receiver: Receiver, notifier_factory: Any
) -> None:
    size = 50 * 1024 * 1024
    receiver.answer_size = size
    notifier = notifier_factory(receiver.url)
    notifier.phase_changed(phase_event())
    assert notifier.wait_idle(5)
    assert notifier.delivered == 1
    assert receiver.wait_for_hangup()  # the notifier closed the connection mid-answer...
    print(f"\nthe receiver wrote {receiver.answer_sent:,} of {size:,} bytes")
    assert receiver.answer_sent < size // 2  # ...long before the end (socket buffers hold MBs)


def test_an_attempt_has_one_deadline_even_against_an_endpoint_that_trickles(
    receiver: Receiver, notifier_factory: Any
) -> None:
    receiver.trickles = ["status"]  # one byte every 0.5 s, never a whole answer
    notifier = notifier_factory(receiver.url, timeout=1.0, max_retries=1)
    began = time.monotonic()
    notifier.phase_changed(phase_event(version=1))
    notifier.phase_changed(phase_event(version=2))
    assert notifier.wait_idle(5)
    elapsed = time.monotonic() - began
    assert elapsed < 3.0
    assert (notifier.delivered, notifier.retried, notifier.failed) == (2, 1, 0)
    assert [r.json["event"]["version"] for r in receiver.requests] == [1, 1, 2]
    assert receiver.wait_for_hangup()
    assert receiver.hangups[0] - began < 3.0


def test_a_trickled_answer_body_is_cut_at_the_deadline_and_its_2xx_still_counts(
    receiver: Receiver, notifier_factory: Any
) -> None:
    receiver.trickles = ["body"]
    notifier = notifier_factory(receiver.url, timeout=1.0)
    began = time.monotonic()
    notifier.phase_changed(phase_event(version=1))
    notifier.phase_changed(phase_event(version=2))
    assert notifier.wait_idle(5)
    assert time.monotonic() - began < 3.0
    assert (notifier.delivered, notifier.retried, notifier.failed) == (2, 0, 0)


def test_a_timed_out_attempt_is_logged_as_such(
    receiver: Receiver, notifier_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.trickles = ["status"]
    receiver.trickle_interval = 0.2  # never long enough for a read timeout
    notifier = notifier_factory(receiver.url, timeout=0.5, max_retries=0)
    with caplog.at_level(logging.WARNING, logger="phasekit.webhook"):
        notifier.phase_changed(phase_event())
        assert notifier.wait_idle(5)
    assert notifier.failed == 1
    assert "failed after 1 attempts: no answer within the 0.5s timeout" in caplog.text


# -- never in the caller's way -----------------------------------------------------------------


def _median_transition_seconds(tracker: Tracker, jobs: int = 10) -> float:
    """Time 20 transitions (start and complete of one phase in each of 10 jobs)."""
    created = [tracker.create_job(f"job-{i}") for i in range(jobs)]
    durations: list[float] = []
    for job in created:
        for trigger in ("start", "complete"):
            began = time.perf_counter()
            job.phases["discovery"].trigger(trigger)
            durations.append(time.perf_counter() - began)
    return statistics.median(durations)


def test_slow_endpoint_adds_no_latency_to_transitions(
    receiver: Receiver, notifier_factory: Any, ingestion: PhaseSet
) -> None:
    receiver.delay = 2.0
    with Tracker(ingestion, load_entrypoints=False) as plain:
        without = _median_transition_seconds(plain)
    notifier = notifier_factory(receiver.url, secret=SECRET, close_timeout=0.2)
    with Tracker(ingestion, plugins=[notifier], load_entrypoints=False) as tracker:
        with_webhook = _median_transition_seconds(tracker)
    print(
        f"\nmedian transition: {without * 1e6:.0f} µs without a webhook, "
        f"{with_webhook * 1e6:.0f} µs with a webhook that answers in 2 s"
    )
    assert with_webhook < 0.05


def test_unreachable_endpoint_never_fails_a_transition(
    closed_port_url: str, notifier_factory: Any, ingestion: PhaseSet
) -> None:
    notifier = notifier_factory(closed_port_url, max_retries=1)
    with Tracker(ingestion, plugins=[notifier], load_entrypoints=False) as tracker:
        job = tracker.create_job("j1")
        job.phases["discovery"].start()
        job.phases["discovery"].complete()
        assert tracker.get_job("j1").phases["discovery"].status == "completed"


def test_close_waits_for_pending_deliveries(receiver: Receiver, notifier_factory: Any) -> None:
    notifier = notifier_factory(receiver.url)
    for version in range(1, 6):
        notifier.phase_changed(phase_event(version=version))
    notifier.close()
    assert len(receiver.requests) == 5
    assert notifier.delivered == 5
    assert notifier.pending == 0


def test_close_returns_within_close_timeout_and_counts_what_it_abandons(
    receiver: Receiver, notifier_factory: Any
) -> None:
    receiver.delay = 5.0
    notifier = notifier_factory(receiver.url, close_timeout=1.0)
    notifier.phase_changed(phase_event(version=1))
    assert receiver.wait_for(1)  # the first delivery hangs in flight
    notifier.phase_changed(phase_event(version=2))
    began = time.perf_counter()
    notifier.close()
    elapsed = time.perf_counter() - began
    assert 0.9 < elapsed < 2.0
    assert notifier.abandoned == 2  # the queued delivery and the one in flight
    assert notifier.pending == 0


def test_close_cuts_the_delivery_in_flight_counts_it_and_leaves_no_thread_behind(
    receiver: Receiver, notifier_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.delay = 5.0
    notifier = notifier_factory(receiver.url, timeout=10.0, close_timeout=0.5)
    notifier.phase_changed(phase_event(version=1))
    assert receiver.wait_for(1)  # in flight: the endpoint answers in 5 s
    notifier.phase_changed(phase_event(version=2))
    began = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="phasekit.webhook"):
        notifier.close()
    elapsed = time.perf_counter() - began
    assert elapsed < 1.5
    ours = [t for t in threading.enumerate() if notifier.url in t.name]
    assert not ours
    assert notifier.stats() == {
        "delivered": 0,
        "failed": 0,
        "dropped": 0,
        "retried": 0,
        "abandoned": 2,  # the queued delivery and the one in flight
        "pending": 0,
    }
    assert "abandoned 2 deliveries (1 queued, 1 in flight)" in caplog.text
    receiver.release.set()
    time.sleep(0.2)
    assert notifier.stats()["abandoned"] == 2  # and nothing is counted later


def test_events_after_close_are_dropped(receiver: Receiver, notifier_factory: Any) -> None:
    notifier = notifier_factory(receiver.url)
    notifier.close()
    notifier.phase_changed(phase_event())
    assert notifier.dropped == 1
    assert receiver.requests == []


def test_full_queue_drops_the_oldest_delivery_and_counts_it(
    receiver: Receiver, notifier_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.delay = 10.0
    notifier = notifier_factory(receiver.url, queue_size=2)
    notifier.phase_changed(phase_event(version=1))
    assert receiver.wait_for(1)  # version 1 is in flight; the queue holds what follows
    with caplog.at_level(logging.WARNING, logger="phasekit.webhook"):
        for version in (2, 3, 4):
            notifier.phase_changed(phase_event(version=version))
    assert notifier.dropped == 1
    assert "dropped the oldest delivery" in caplog.text
    receiver.release.set()
    assert notifier.wait_idle(5)
    assert [r.json["event"]["version"] for r in receiver.requests] == [1, 3, 4]
    assert notifier.delivered == 3


# -- secrets and options -----------------------------------------------------------------------


def test_secret_never_appears_in_repr_or_logs(
    receiver: Receiver,
    closed_port_url: str,
    notifier_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.statuses = [500, 400]
    refused = notifier_factory(closed_port_url, secret=SECRET, max_retries=1)
    refusing = notifier_factory(receiver.url, secret=SECRET)
    for notifier in (refused, refusing):
        notifier.phase_changed(phase_event())
        assert notifier.wait_idle(5)
        notifier.close()
        assert SECRET not in repr(notifier)
    assert caplog.records  # the failures were logged...
    assert SECRET not in caplog.text  # ...without the secret


def test_url_credentials_and_query_are_hidden_from_repr_and_logs(
    closed_port_url: str, notifier_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = closed_port_url.replace("http://", "http://user:pa55word@") + "?token=t0k3n"
    notifier = notifier_factory(url, max_retries=0)
    notifier.phase_changed(phase_event())
    assert notifier.wait_idle(5)
    for text in (repr(notifier), notifier.url, caplog.text):
        assert "pa55word" not in text
        assert "t0k3n" not in text


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hooks",
        "example.com/hooks",
        "http://",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "data:text/plain,hello",
        "gopher://example.com/hooks",
        "ws://example.com/hooks",
    ],
)
def test_url_must_be_http_or_https(url: str) -> None:
    with pytest.raises(ValueError, match="webhook url"):
        WebhookNotifier(url, secret=SECRET)


def test_a_config_whose_webhook_url_is_not_http_is_a_config_error_naming_the_notifier() -> None:
    config = {"spec": "ingestion", "notifiers": {"webhook": {"url": "file:///etc/passwd"}}}
    with pytest.raises(ConfigError, match="notifier 'webhook': webhook url must use http"):
        Tracker.from_config(config)


def test_header_values_never_appear_in_repr_or_logs(
    receiver: Receiver,
    closed_port_url: str,
    notifier_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.statuses = [500, 400]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    refused = notifier_factory(closed_port_url, headers=headers, max_retries=1)
    refusing = notifier_factory(receiver.url, headers=headers)
    for notifier in (refused, refusing):
        notifier.phase_changed(phase_event())
        assert notifier.wait_idle(5)
        notifier.close()
        assert TOKEN not in repr(notifier)
    assert caplog.records
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    "options",
    [
        {"url": f"ftp://user:{SECRET}@example.com/hooks?token={TOKEN}"},
        {"url": f"https://user:{SECRET}@example.com/hooks?token={TOKEN}", "timeout": -1},
        {"url": "https://example.com/hooks", "secret": SECRET, "events": ["phase_chnaged"]},
        {"url": "https://example.com/hooks", "headers": {"X-Phasekit-Signature": SECRET}},
        {"url": "https://example.com/hooks", "headers": {"Authorization": [TOKEN]}},
    ],
    ids=["bad scheme", "bad option", "bad event", "reserved header", "header not a string"],
)
def test_option_errors_never_echo_a_secret_a_credential_or_a_header_value(
    options: dict[str, Any],
) -> None:
    with pytest.raises(ValueError) as caught:
        WebhookNotifier(**options)
    message = str(caught.value)
    assert SECRET not in message
    assert TOKEN not in message


def test_the_secret_itself_is_never_sent_only_the_signature_it_makes(
    receiver: Receiver, notifier_factory: Any
) -> None:
    notifier = notifier_factory(receiver.url, secret=SECRET)
    notifier.phase_changed(phase_event())
    assert receiver.wait_for(1)
    request = receiver.requests[0]
    assert SECRET.encode() not in request.body
    assert not [value for value in request.headers.values() if SECRET in value]


def test_unknown_event_type_in_filter_is_rejected_naming_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"phase_chnaged.*valid types: job_created"):
        WebhookNotifier("https://example.com/hooks", events=["phase_chnaged"])


@pytest.mark.parametrize(
    ("option", "value"),
    [("timeout", 0), ("max_retries", -1), ("queue_size", 0), ("max_retries", 1.5)],
)
def test_invalid_option_is_a_value_error_naming_it(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        WebhookNotifier("https://example.com/hooks", **{option: value})


def test_signature_header_cannot_be_overridden() -> None:
    with pytest.raises(ValueError, match="X-Phasekit-Signature"):
        WebhookNotifier("https://example.com/hooks", headers={"X-Phasekit-Signature": "x"})


@pytest.mark.parametrize(
    "value",
    [
        f"Bearer {TOKEN}\r\nX-Injected: 1",
        f"Bearer {TOKEN}\nX-Injected: 1",
        f"Bearer {TOKEN}\rX-Injected: 1",
        f"Bearer {TOKEN}\n",
        f"Bearer\x00{TOKEN}",
        f"Bearer {TOKEN}\x1b",
        f"Bearer {TOKEN}\x7f",
        f"Bearer {TOKEN}\x85",
        f"Bearer {TOKEN}\u2028",
    ],
    ids=["CRLF", "LF", "CR", "trailing LF", "NUL", "ESC", "DEL", "C1 NEL", "U+2028"],
)
def test_a_header_value_with_a_control_character_is_refused_naming_the_header_not_the_value(
    value: str,
) -> None:
    with pytest.raises(InvalidArgument, match="webhook header 'Authorization'") as caught:
        WebhookNotifier("https://example.com/hooks", headers={"Authorization": value})
    message = str(caught.value)
    assert TOKEN not in message
    assert "X-Injected" not in message


def test_header_values_are_sent_without_surrounding_whitespace(
    receiver: Receiver, notifier_factory: Any
) -> None:
    notifier = notifier_factory(receiver.url, headers={"Authorization": f" Bearer\t{TOKEN} \t"})
    notifier.phase_changed(phase_event())
    assert notifier.wait_idle(5)
    assert notifier.delivered == 1
    assert receiver.requests[0].headers["authorization"] == f"Bearer\t{TOKEN}"


def test_neither_phasekit_nor_httpx_logs_the_url_credentials_or_query_string(
    receiver: Receiver, notifier_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    httpx_filters = list(logging.getLogger("httpx").filters)
    receiver.statuses = [500]  # a retry, so phasekit logs too
    url = receiver.url.replace("http://", "http://user:pa55word@") + "?token=s3cret"
    notifier = notifier_factory(url, max_retries=1)
    notifier.phase_changed(phase_event())
    assert notifier.wait_idle(5)
    notifier.close()
    assert (notifier.delivered, notifier.retried) == (1, 1)
    for request in receiver.requests:  # what the endpoint expects still arrives
        assert request.target == "/hooks?token=s3cret"
        credentials = base64.b64encode(b"user:pa55word").decode()
        assert request.headers["authorization"] == f"Basic {credentials}"
    messages = [record.getMessage() for record in caplog.records]
    assert "HTTP Request: POST http://127.0.0.1:" in "\n".join(messages)  # httpx did log
    assert [m for m in messages if "retrying" in m]  # and so did phasekit
    for text in [*messages, caplog.text]:
        assert "pa55word" not in text
        assert "s3cret" not in text
    added = [f for f in logging.getLogger("httpx").filters if f not in httpx_filters]
    assert not added  # close() took its filter off


# -- through a tracker -------------------------------------------------------------------------


def test_tracker_events_arrive_in_commit_order(
    receiver: Receiver, notifier_factory: Any, ingestion: PhaseSet
) -> None:
    notifier = notifier_factory(receiver.url, secret=SECRET)
    with Tracker(ingestion, plugins=[notifier], load_entrypoints=False) as tracker:
        job = tracker.create_job("job-42")
        job.phases["discovery"].start()
        job.phases["discovery"].update_progress(items_processed=5, items_total=10)
    assert receiver.event_types() == [
        "job_created",
        "phase_changed",
        "job_status_changed",
        "progress_updated",
    ]
    first, *rest = [r.json["event"]["version"] for r in receiver.requests]
    assert rest == [first + 1, first + 1, first + 2]  # one commit: one version, two events


def test_tracker_close_delivers_what_is_pending(
    receiver: Receiver, notifier_factory: Any, ingestion: PhaseSet
) -> None:
    notifier = notifier_factory(receiver.url)
    tracker = Tracker(ingestion, plugins=[notifier], load_entrypoints=False)
    tracker.create_job("j1")
    tracker.close()
    assert notifier.delivered == 1
    assert notifier.pending == 0


def test_config_builds_the_webhook_with_the_secret_from_the_environment(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHASEKIT_TEST_SECRET", SECRET)
    config = {
        "spec": "ingestion",
        "notifiers": {"webhook": {"url": receiver.url, "secret": "${PHASEKIT_TEST_SECRET}"}},
    }
    with Tracker.from_config(config) as tracker:
        tracker.create_job("j1").phases["discovery"].start()
    assert receiver.event_types() == ["job_created", "phase_changed", "job_status_changed"]
    for request in receiver.requests:
        assert verify_signature(SECRET, request.body, request.headers["x-phasekit-signature"])


def test_register_notifiers_offers_the_webhook() -> None:
    assert statemachine.plugins.webhook.register_notifiers() == {"webhook": WebhookNotifier}
