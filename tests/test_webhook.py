"""The webhook notifier against a real HTTP server on 127.0.0.1, verified as Standard Webhooks."""

from __future__ import annotations

import base64
import inspect
import itertools
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import statemachine.plugins.webhook
import uvicorn
from click.testing import CliRunner
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from statemachine.plugins.webhook import WebhookNotifier
from statemachine.plugins.webhook_attempt import (
    MAX_RETRY_AFTER,
    Watchdog,
    parse_retry_after,
    resolved_blocked_address,
)
from statemachine.plugins.webhook_options import blocked_address
from statemachine.plugins.webhook_signing import message_body, parse_secret, sign

from statemachine import (
    ConfigError,
    DeliveryError,
    EndpointGone,
    InvalidArgument,
    JobDeleted,
    MemoryStore,
    PermanentDeliveryError,
    PhaseChanged,
    PhaseSet,
    Tracker,
    parse_event,
)
from statemachine.cli import cli
from statemachine.relay import NotifierStatus, Relay

KEY = b"s3cr3t-do-not-leak-4f9a-0123456789"  # 34 bytes
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-key-of-thirty-two-bytes!").decode()
TOKEN = "t0ken-do-not-leak-7c21"
NOTIFIERS_DOC = Path(__file__).resolve().parent.parent / "docs" / "notifiers.md"


# -- a real endpoint -------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Reply:
    """How the receiver answers one request."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    trickle: str | None = None  # "status": the status line a byte at a time; "body": the body
    size: int = 0  # bytes of body, for an answer that is not trickled


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
        reply = receiver.record(Request(headers, body, self.path))
        try:
            if reply.delay:
                receiver.release.wait(reply.delay)
            if reply.trickle == "status":  # the status line and headers, a byte at a time
                self._trickle(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"")
            elif reply.trickle == "body":  # a 200 at once, then its body a byte at a time
                self._trickle(b"", b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            else:
                self._answer(reply)
        except OSError:  # the client hung up
            receiver.hung_up()
            self.close_connection = True
        finally:
            receiver.done()

    def _answer(self, reply: Reply) -> None:
        """Answer with the reply's status and headers, and a body written in 64 KiB chunks."""
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(reply.size))
        self.end_headers()
        receiver = self.server.receiver
        receiver.answer_sent = 0
        chunk = b"x" * 65536
        while receiver.answer_sent < reply.size:
            piece = chunk[: reply.size - receiver.answer_sent]
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
    """A webhook endpoint that records requests and answers as planned in ``replies``."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.replies: list[Reply] = []  # answered in order, then a plain 200
        self.trickle_interval = 0.5  # seconds between the bytes of a trickled answer
        self.answer_sent = 0  # body bytes written so far (one answer with a body at a time)
        self.hangups: list[float] = []  # when (monotonic) the client hung up mid-answer
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = threading.Event()  # cuts every wait short (at teardown)
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

    def record(self, request: Request) -> Reply:
        with self._cond:
            self.requests.append(request)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self._cond.notify_all()
            return self.replies.pop(0) if self.replies else Reply()

    def done(self) -> None:
        with self._cond:
            self.in_flight -= 1

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
        return [r.json["type"] for r in self.requests]

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
    """Builds notifiers (signed with ``SECRET`` unless told otherwise), closed afterwards."""
    made: list[WebhookNotifier] = []

    def make(url: str, **options: Any) -> WebhookNotifier:
        if not options.get("unsigned"):
            options.setdefault("secret", SECRET)
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


def verified(request: Request, secret: str = SECRET) -> Any:
    """The message, as the Standard Webhooks library reads it once it has verified it."""
    return Webhook(secret).verify(request.body, request.headers)


# -- the message -----------------------------------------------------------------------------


def test_every_delivery_verifies_with_the_standard_webhooks_library(
    receiver: Receiver, notifier_factory: Any
) -> None:
    notifier = notifier_factory(receiver.url)
    for version in range(1, 4):
        notifier.phase_changed(phase_event(version=version))
    assert len(receiver.requests) == 3
    for version, request in enumerate(receiver.requests, start=1):
        assert verified(request)["data"]["version"] == version


def test_body_carries_the_event_its_time_and_the_delivery_id(
    receiver: Receiver, notifier_factory: Any
) -> None:
    event = phase_event()
    notifier_factory(receiver.url).phase_changed(event)
    request = receiver.requests[0]
    body = request.json
    assert list(body) == ["type", "timestamp", "data"]
    assert body["type"] == "phase_changed"
    assert body["timestamp"] == event.model_dump(mode="json")["at"]
    assert datetime.fromisoformat(body["timestamp"]) == event.at  # RFC 3339, when it happened
    assert body["data"]["event_id"] == event.event_id == request.headers["webhook-id"]
    assert parse_event(body["data"]) == event
    assert request.body == json.dumps(body, separators=(",", ":")).encode()  # compact


def test_headers_are_the_event_id_the_attempt_time_and_a_json_content_type(
    receiver: Receiver, notifier_factory: Any
) -> None:
    event = phase_event()
    before = int(time.time())
    notifier_factory(receiver.url).phase_changed(event)
    after = int(time.time())
    headers = receiver.requests[0].headers
    assert headers["webhook-id"] == event.event_id
    assert before <= int(headers["webhook-timestamp"]) <= after
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", headers["webhook-signature"])
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == f"phasekit-webhook/{statemachine.__version__}"


def test_a_wrong_secret_or_a_tampered_body_fails_verification(
    receiver: Receiver, notifier_factory: Any
) -> None:
    notifier_factory(receiver.url).phase_changed(phase_event())
    request = receiver.requests[0]
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER_SECRET).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(request.body.replace(b"job-42", b"job-43"), request.headers)


def test_during_a_rotation_every_secret_signs_and_a_receiver_knowing_either_verifies(
    receiver: Receiver, notifier_factory: Any
) -> None:
    notifier_factory(receiver.url, secret=[SECRET, OTHER_SECRET]).phase_changed(phase_event())
    request = receiver.requests[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verified(request, SECRET) == verified(request, OTHER_SECRET)


def test_a_retry_has_the_same_webhook_id_and_body_and_a_new_timestamp(
    receiver: Receiver, notifier_factory: Any
) -> None:
    receiver.replies = [Reply(500)]
    notifier = notifier_factory(receiver.url)
    event = phase_event()
    with pytest.raises(DeliveryError):
        notifier.phase_changed(event)
    first = int(receiver.requests[0].headers["webhook-timestamp"])
    while int(time.time()) == first:  # the timestamp is in whole seconds
        time.sleep(0.02)
    notifier.phase_changed(event)  # what the relay does: the same event again
    retry = receiver.requests[1]
    assert retry.headers["webhook-id"] == receiver.requests[0].headers["webhook-id"]
    assert retry.body == receiver.requests[0].body
    assert int(retry.headers["webhook-timestamp"]) > first
    assert verified(retry)  # signed anew, for the new timestamp


def test_job_deleted_is_delivered(receiver: Receiver, notifier_factory: Any) -> None:
    event = JobDeleted(job_id="job-42", version=7)
    notifier_factory(receiver.url).job_deleted(event)
    assert verified(receiver.requests[0])["type"] == "job_deleted"


def test_unsigned_true_sends_no_signature_header(receiver: Receiver, notifier_factory: Any) -> None:
    notifier = notifier_factory(receiver.url, unsigned=True)
    notifier.phase_changed(phase_event())
    headers = receiver.requests[0].headers
    assert "webhook-signature" not in headers
    assert {"webhook-id", "webhook-timestamp"} <= set(headers)
    assert not notifier.signed


def test_events_filter_skips_other_types_without_sending(
    receiver: Receiver, notifier_factory: Any
) -> None:
    notifier = notifier_factory(receiver.url, events="job_status_changed")
    notifier.phase_changed(phase_event())  # returns: skipped counts as delivered
    assert receiver.requests == []


def test_events_filter_sends_only_the_chosen_types(
    receiver: Receiver, notifier_factory: Any, ingestion: PhaseSet
) -> None:
    notifier = notifier_factory(receiver.url, events=["job_status_changed"])
    with Tracker(ingestion, plugins=[notifier], load_entrypoints=False) as tracker:
        tracker.create_job("j1").phases["discovery"].start()
    assert receiver.event_types() == ["job_status_changed"]


def test_extra_headers_are_sent(receiver: Receiver, notifier_factory: Any) -> None:
    notifier = notifier_factory(receiver.url, headers={"Authorization": f"Bearer {TOKEN}"})
    notifier.phase_changed(phase_event())
    assert receiver.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_header_values_are_sent_without_surrounding_whitespace(
    receiver: Receiver, notifier_factory: Any
) -> None:
    notifier = notifier_factory(receiver.url, headers={"Authorization": f" Bearer\t{TOKEN} \t"})
    notifier.phase_changed(phase_event())
    assert receiver.requests[0].headers["authorization"] == f"Bearer\t{TOKEN}"


# -- answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_a_2xx_answer_is_delivered(status: int, receiver: Receiver, notifier_factory: Any) -> None:
    receiver.replies = [Reply(status)]
    assert notifier_factory(receiver.url).phase_changed(phase_event()) is None


def test_410_raises_endpoint_gone_and_logs_a_warning(
    receiver: Receiver, notifier_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.replies = [Reply(410)]
    with (
        caplog.at_level(logging.WARNING, logger="phasekit.webhook"),
        pytest.raises(EndpointGone, match="HTTP 410"),
    ):
        notifier_factory(receiver.url).phase_changed(phase_event())
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "the endpoint is gone" in caplog.text


def test_429_with_retry_after_raises_a_delivery_error_with_those_seconds(
    receiver: Receiver, notifier_factory: Any
) -> None:
    receiver.replies = [Reply(429, {"Retry-After": "120"})]
    with pytest.raises(DeliveryError, match="HTTP 429") as caught:
        notifier_factory(receiver.url).phase_changed(phase_event())
    assert type(caught.value) is DeliveryError  # retried, not dead-lettered
    assert caught.value.retry_after == 120.0


def test_retry_after_as_an_http_date_is_read_in_seconds(
    receiver: Receiver, notifier_factory: Any
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    receiver.replies = [Reply(503, {"Retry-After": when})]
    with pytest.raises(DeliveryError) as caught:
        notifier_factory(receiver.url).phase_changed(phase_event())
    assert caught.value.retry_after is not None
    assert 55 <= caught.value.retry_after <= 60


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        (" 30 ", 30.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: now
        ("99999999999999999999", MAX_RETRY_AFTER),
        ("soon", None),
        ("-5", None),
        ("1e9", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after_reads_seconds_and_dates_and_ignores_the_rest(
    value: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_raises_a_delivery_error_to_be_retried(
    status: int, receiver: Receiver, notifier_factory: Any
) -> None:
    receiver.replies = [Reply(status)]
    with pytest.raises(DeliveryError, match=f"HTTP {status}") as caught:
        notifier_factory(receiver.url).phase_changed(phase_event())
    assert type(caught.value) is DeliveryError
    assert caught.value.retry_after is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_a_client_error_raises_a_permanent_delivery_error(
    status: int, receiver: Receiver, notifier_factory: Any
) -> None:
    receiver.replies = [Reply(status)]
    with pytest.raises(PermanentDeliveryError, match=f"HTTP {status}") as caught:
        notifier_factory(receiver.url).phase_changed(phase_event())
    assert type(caught.value) is PermanentDeliveryError


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_is_permanent(
    status: int, receiver: Receiver, notifier_factory: Any
) -> None:
    receiver.replies = [Reply(status, {"Location": "/elsewhere"})]
    with pytest.raises(PermanentDeliveryError, match="redirects are not followed"):
        notifier_factory(receiver.url).phase_changed(phase_event())
    assert [r.target for r in receiver.requests] == ["/hooks"]


def test_a_refused_connection_raises_a_delivery_error(
    closed_port_url: str, notifier_factory: Any
) -> None:
    with pytest.raises(DeliveryError, match="ConnectError") as caught:
        notifier_factory(closed_port_url).phase_changed(phase_event())
    assert type(caught.value) is DeliveryError


def test_attempts_from_many_threads_go_one_at_a_time_and_all_arrive(
    receiver: Receiver, notifier_factory: Any
) -> None:
    receiver.replies = [Reply(delay=0.02) for _ in range(8)]
    notifier = notifier_factory(receiver.url)
    threads = [
        threading.Thread(target=notifier.phase_changed, args=(phase_event(version=v),))
        for v in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(verified(r)["data"]["version"] for r in receiver.requests) == list(range(8))
    assert receiver.most_in_flight == 1


# -- deadlines and answers that never end ----------------------------------------------------


def test_an_attempt_has_one_deadline_even_against_an_endpoint_that_trickles(
    receiver: Receiver, notifier_factory: Any
) -> None:
    receiver.replies = [Reply(trickle="status")]  # a byte every 0.5 s, never a whole answer
    notifier = notifier_factory(receiver.url, timeout=1.0)
    began = time.monotonic()
    with pytest.raises(DeliveryError, match="no answer within the 1s deadline") as caught:
        notifier.phase_changed(phase_event(version=1))
    assert time.monotonic() - began < 1.5
    assert type(caught.value) is DeliveryError  # retried by the relay
    assert receiver.wait_for_hangup()
    notifier.phase_changed(phase_event(version=2))  # and the next attempt gets through
    assert len(receiver.requests) == 2


def test_a_trickled_answer_body_is_cut_at_the_deadline_and_its_2xx_still_counts(
    receiver: Receiver, notifier_factory: Any
) -> None:
    receiver.replies = [Reply(trickle="body")]
    notifier = notifier_factory(receiver.url, timeout=1.0)
    began = time.monotonic()
    notifier.phase_changed(phase_event())
    assert time.monotonic() - began < 1.5


def test_a_huge_answer_is_not_read_whole_and_its_2xx_still_counts(
    receiver: Receiver, notifier_factory: Any
) -> None:
    size = 50 * 1024 * 1024
    receiver.replies = [Reply(size=size)]
    notifier_factory(receiver.url).phase_changed(phase_event())
    assert receiver.wait_for_hangup()  # the notifier closed the connection mid-answer...
    print(f"\nthe receiver wrote {receiver.answer_sent:,} of {size:,} bytes")
    assert receiver.answer_sent < size // 2  # ...long before the end (socket buffers hold MBs)


def test_close_cuts_the_delivery_in_flight_and_leaves_no_thread_behind(
    receiver: Receiver, notifier_factory: Any
) -> None:
    receiver.replies = [Reply(delay=5.0)]
    httpx_filters = list(logging.getLogger("httpx").filters)
    notifier = notifier_factory(receiver.url, timeout=10.0)
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            notifier.phase_changed(phase_event(version=1))
        except DeliveryError as exc:
            errors.append(exc)

    in_flight = threading.Thread(target=deliver)
    in_flight.start()
    assert receiver.wait_for(1)  # in flight: the endpoint answers in 5 s
    began = time.monotonic()
    notifier.close()
    in_flight.join(2)
    assert time.monotonic() - began < 1.0
    assert [type(e) for e in errors] == [DeliveryError]
    assert "cut short by close()" in str(errors[0])
    assert not [t for t in threading.enumerate() if notifier.url in t.name]
    assert [f for f in logging.getLogger("httpx").filters if f not in httpx_filters] == []
    with pytest.raises(DeliveryError, match="closed"):
        notifier.phase_changed(phase_event(version=2))
    assert len(receiver.requests) == 1


# -- link-local and metadata addresses -------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "169.254.0.1",
        "[fe80::1]",
        "[fd00:ec2::254]",
        "[::ffff:169.254.169.254]",
        "2852039166",  # 169.254.169.254 as one number
        "0xa9fea9fe",  # and in hex
    ],
)
def test_a_link_local_or_metadata_url_is_refused(host: str) -> None:
    with pytest.raises(InvalidArgument, match=r"link-local.*allow_link_local: true"):
        WebhookNotifier(f"http://{host}/latest/meta-data/", secret=SECRET)


def test_allow_link_local_lets_such_a_url_through() -> None:
    notifier = WebhookNotifier("http://169.254.169.254/hooks", secret=SECRET, allow_link_local=True)
    notifier.close()


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("169.254.169.254", True),
        ("fe80::1%eth0", True),
        ("fd00:ec2::254", True),
        ("fd00:ec2::253", False),
        ("127.0.0.1", False),
        ("::1", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_blocked_addresses_are_the_link_local_and_metadata_ones(
    address: str, blocked: bool
) -> None:
    assert blocked_address(address) is blocked


def test_a_name_that_resolves_to_a_link_local_address_is_refused_before_sending(
    receiver: Receiver, notifier_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = socket.getaddrinfo
    port = int(receiver.url.split(":")[2].split("/")[0])

    def resolver(host: Any, *args: Any, **kwargs: Any) -> Any:  # the system's DNS, rebound
        if host == "metadata.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    notifier = notifier_factory(f"http://metadata.example:{port}/hooks")
    with pytest.raises(PermanentDeliveryError, match=r"169\.254\.169\.254.*allow_link_local"):
        notifier.phase_changed(phase_event())
    assert receiver.requests == []


def test_a_name_is_resolved_with_the_systems_resolver_and_loopback_is_allowed(
    receiver: Receiver, notifier_factory: Any
) -> None:
    assert resolved_blocked_address("localhost", 80, blocked_address) is None
    assert resolved_blocked_address("localhost", 80, lambda a: a == "127.0.0.1") == "127.0.0.1"
    notifier_factory(receiver.url.replace("127.0.0.1", "localhost")).phase_changed(phase_event())
    assert len(receiver.requests) == 1


def test_a_connection_that_reaches_a_blocked_address_is_cut_before_the_request_is_sent(
    receiver: Receiver,
) -> None:
    # The connect-time check, on a real connection: here it is 127.0.0.1 that is refused.
    watchdog = Watchdog("test", blocked=lambda address: address == "127.0.0.1")
    with httpx.Client() as client, watchdog.deadline(5.0), pytest.raises(httpx.TransportError):
        client.post(receiver.url, content=b"{}", extensions={"trace": watchdog.trace})
    assert watchdog.refused == "127.0.0.1"
    time.sleep(0.05)
    assert receiver.requests == []


# -- secrets, credentials and options --------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (KEY.decode(), "must be 'whsec_' followed by base64"),
        (SECRET.replace("whsec_", "whsec-"), "must be 'whsec_' followed by base64"),
        (SECRET[:-8] + "!!" + SECRET[-6:], "not valid base64"),
        ("whsec_" + base64.b64encode(KEY[:16]).decode(), "decodes to 16 bytes"),
        ("whsec_" + base64.b64encode(KEY * 2).decode(), "decodes to 68 bytes"),
        ("", "is empty"),
        (KEY, "must be a string or a list of strings"),
        ([], "empty list"),
        ([OTHER_SECRET, KEY.decode()], r"webhook secret\[1\] must be 'whsec_'"),
    ],
    ids=[
        "no prefix",
        "wrong prefix",
        "bad base64",
        "short",
        "long",
        "empty",
        "bytes",
        "no secrets",
        "one bad in a list",
    ],
)
def test_an_invalid_secret_is_refused_with_a_message_that_does_not_show_it(
    secret: Any, problem: str
) -> None:
    with pytest.raises(InvalidArgument, match=problem) as caught:
        WebhookNotifier("https://example.com/hooks", secret=secret)
    message = str(caught.value)
    assert message.startswith("webhook secret")
    for shown in (SECRET, SECRET[6:], KEY.decode(), SECRET[6:20], KEY.decode()[:16]):
        assert shown not in message


def test_a_secret_without_base64_padding_is_taken() -> None:
    unpadded = "whsec_" + base64.b64encode(KEY).decode().rstrip("=")
    assert parse_secret(unpadded) == KEY


def test_a_secret_is_required_unless_unsigned_is_given() -> None:
    with pytest.raises(InvalidArgument, match=r"secret is required.*unsigned: true"):
        WebhookNotifier("https://example.com/hooks")


def test_a_secret_and_unsigned_together_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="both a secret and unsigned"):
        WebhookNotifier("https://example.com/hooks", secret=SECRET, unsigned=True)


def test_the_secret_itself_is_never_sent_only_the_signature_it_makes(
    receiver: Receiver, notifier_factory: Any
) -> None:
    notifier_factory(receiver.url).phase_changed(phase_event())
    request = receiver.requests[0]
    for secret in (SECRET, SECRET[6:]):
        assert secret.encode() not in request.body
        assert not [value for value in request.headers.values() if secret in value]


def test_secret_never_appears_in_repr_or_logs(
    receiver: Receiver,
    closed_port_url: str,
    notifier_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.replies = [Reply(500), Reply(400)]
    texts: list[str] = []
    for url in (closed_port_url, receiver.url, receiver.url):
        notifier = notifier_factory(url)
        with pytest.raises(DeliveryError) as caught:
            notifier.phase_changed(phase_event())
        texts += [str(caught.value), repr(notifier)]
    assert caplog.records  # the attempts were logged...
    for text in [*texts, caplog.text]:  # ...without the secret
        assert SECRET[6:] not in text


def test_header_values_never_appear_in_repr_or_logs(
    receiver: Receiver,
    closed_port_url: str,
    notifier_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.replies = [Reply(500)]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for url in (closed_port_url, receiver.url):
        notifier = notifier_factory(url, headers=headers)
        with pytest.raises(DeliveryError) as caught:
            notifier.phase_changed(phase_event())
        assert TOKEN not in str(caught.value)
        assert TOKEN not in repr(notifier)
    assert caplog.records
    assert TOKEN not in caplog.text


def test_url_credentials_and_query_are_hidden_from_repr_and_logs(
    receiver: Receiver,
    closed_port_url: str,
    notifier_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.replies = [Reply(500), Reply(trickle="status")]
    texts: list[str] = []
    for url, options in [
        (closed_port_url, {}),  # refused
        (receiver.url, {}),  # HTTP 500
        (receiver.url, {"timeout": 0.3}),  # no answer in time
    ]:
        secret_url = url.replace("http://", "http://user:pa55word@") + "?token=t0k3n"
        notifier = notifier_factory(secret_url, **options)
        with pytest.raises(DeliveryError) as caught:
            notifier.phase_changed(phase_event())
        texts += [str(caught.value), repr(notifier), notifier.url]
    assert "127.0.0.1" in texts[0]  # the errors do name the endpoint
    for text in [*texts, caplog.text]:
        assert "pa55word" not in text
        assert "t0k3n" not in text


def test_neither_phasekit_nor_httpx_logs_the_url_credentials_or_query_string(
    receiver: Receiver, notifier_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    httpx_filters = list(logging.getLogger("httpx").filters)
    receiver.replies = [Reply(500)]
    url = receiver.url.replace("http://", "http://user:pa55word@") + "?token=s3cret"
    notifier = notifier_factory(url)
    with pytest.raises(DeliveryError):
        notifier.phase_changed(phase_event())
    notifier.phase_changed(phase_event())
    notifier.close()
    for request in receiver.requests:  # what the endpoint expects still arrives
        assert request.target == "/hooks?token=s3cret"
        credentials = base64.b64encode(b"user:pa55word").decode()
        assert request.headers["authorization"] == f"Basic {credentials}"
    messages = [record.getMessage() for record in caplog.records]
    assert "HTTP Request: POST http://127.0.0.1:" in "\n".join(messages)  # httpx did log
    assert [m for m in messages if "not delivered: HTTP 500" in m]  # and so did phasekit
    for text in [*messages, caplog.text]:
        assert "pa55word" not in text
        assert "s3cret" not in text
    added = [f for f in logging.getLogger("httpx").filters if f not in httpx_filters]
    assert not added  # close() took its filter off


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


def test_a_config_without_a_secret_is_a_config_error_saying_how_to_make_one() -> None:
    config = {"spec": "ingestion", "notifiers": {"webhook": {"url": "https://example.com/h"}}}
    with pytest.raises(ConfigError, match="phasekit webhook secret"):
        Tracker.from_config(config)


@pytest.mark.parametrize(
    "options",
    [
        {"url": f"ftp://user:{TOKEN}@example.com/hooks?token={TOKEN}", "secret": SECRET},
        {"url": f"https://user:{TOKEN}@example.com/hooks?token={TOKEN}", "timeout": -1},
        {"url": "https://example.com/hooks", "secret": SECRET, "events": ["phase_chnaged"]},
        {"url": "https://example.com/hooks", "secret": SECRET, "headers": {"webhook-id": TOKEN}},
        {"url": "https://example.com/hooks", "secret": SECRET, "headers": {"X": [TOKEN]}},
        {"url": f"https://user:{TOKEN}@169.254.169.254/?token={TOKEN}", "secret": SECRET},
    ],
    ids=["bad scheme", "bad option", "bad event", "reserved header", "not a string", "metadata"],
)
def test_option_errors_never_echo_a_secret_a_credential_or_a_header_value(
    options: dict[str, Any],
) -> None:
    with pytest.raises(ValueError) as caught:
        WebhookNotifier(**options)
    message = str(caught.value)
    assert SECRET[6:] not in message
    assert TOKEN not in message


def test_unknown_event_type_in_filter_is_rejected_naming_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"phase_chnaged.*valid types: job_created, job_deleted"):
        WebhookNotifier("https://example.com/hooks", secret=SECRET, events=["phase_chnaged"])


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("timeout", 0),
        ("timeout", -1),
        ("timeout", "5"),
        ("unsigned", 1),
        ("allow_link_local", "yes"),
    ],
)
def test_invalid_option_is_a_value_error_naming_it(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        WebhookNotifier("https://example.com/hooks", secret=SECRET, **{option: value})


@pytest.mark.parametrize(
    "name",
    [
        "webhook-id",
        "Webhook-Timestamp",
        "WEBHOOK-SIGNATURE",
        "webhook-other",
        "Content-Type",
        "content-length",
        "Transfer-Encoding",
    ],
)
def test_webhook_headers_and_the_body_headers_cannot_be_overridden(name: str) -> None:
    with pytest.raises(InvalidArgument, match="set by phasekit and cannot be replaced"):
        WebhookNotifier("https://example.com/hooks", secret=SECRET, headers={name: "x"})


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
        WebhookNotifier(
            "https://example.com/hooks", secret=SECRET, headers={"Authorization": value}
        )
    message = str(caught.value)
    assert TOKEN not in message
    assert "X-Injected" not in message


# -- driven by a relay, or as a plain plugin -------------------------------------------------


def test_the_notifier_can_be_relayed() -> None:
    assert WebhookNotifier.relayable is True


def test_register_notifiers_offers_the_webhook() -> None:
    assert statemachine.plugins.webhook.register_notifiers() == {"webhook": WebhookNotifier}


@contextmanager
def relayed(
    ingestion: PhaseSet, notifier: WebhookNotifier, commits: Callable[[Tracker], None]
) -> Iterator[Relay]:
    """A relay over a memory store's event log, after ``commits`` ran on a tracker of it."""
    store = MemoryStore()
    with Tracker(ingestion, store=store, load_entrypoints=False) as tracker:
        commits(tracker)
        yield Relay(store, {"webhook": notifier}, options={"backoff": 0.01, "max_backoff": 0.05})


def run_until(relay: Relay, done: Callable[[NotifierStatus], bool]) -> NotifierStatus:
    """Run the relay until the webhook's status is ``done``; that status."""
    deadline = time.monotonic() + 5
    while not done(status := relay.status()[0]):
        assert time.monotonic() < deadline, status
        relay.run_once()
        time.sleep(0.01)
    return status


def start_a_job(tracker: Tracker) -> None:
    tracker.create_job("job-42").phases["discovery"].start()  # three events


def test_through_the_relay_failed_attempts_are_retried_with_one_webhook_id_until_delivered(
    receiver: Receiver, notifier_factory: Any, ingestion: PhaseSet
) -> None:
    receiver.replies = [Reply(500), Reply(503, {"Retry-After": "0"})]
    notifier = notifier_factory(receiver.url)
    with relayed(ingestion, notifier, lambda t: t.create_job("job-42")) as relay:
        status = run_until(relay, lambda s: s.lag == 0)
    assert (status.dead_letters, status.disabled) == (0, None)
    assert len(receiver.requests) == 3
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    assert [verified(r)["type"] for r in receiver.requests] == ["job_created"] * 3


def test_through_the_relay_a_client_error_dead_letters_the_event_and_the_next_ones_go_on(
    receiver: Receiver, notifier_factory: Any, ingestion: PhaseSet
) -> None:
    receiver.replies = [Reply(400)]
    with relayed(ingestion, notifier_factory(receiver.url), start_a_job) as relay:
        status = run_until(relay, lambda s: s.lag == 0)
    assert (status.dead_letters, status.disabled) == (1, None)
    assert receiver.event_types() == ["job_created", "phase_changed", "job_status_changed"]


def test_through_the_relay_410_dead_letters_the_event_and_disables_the_notifier(
    receiver: Receiver, notifier_factory: Any, ingestion: PhaseSet
) -> None:
    receiver.replies = [Reply(410)]
    with relayed(ingestion, notifier_factory(receiver.url), start_a_job) as relay:
        status = run_until(relay, lambda s: s.disabled is not None)
        relay.run_once()
    assert status.dead_letters == 1
    assert "HTTP 410" in status.disabled
    assert len(receiver.requests) == 1  # nothing more is sent to an endpoint that is gone


def test_unreachable_endpoint_never_fails_a_transition(
    closed_port_url: str,
    notifier_factory: Any,
    ingestion: PhaseSet,
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = notifier_factory(closed_port_url)
    with (
        caplog.at_level(logging.ERROR, logger="phasekit"),
        Tracker(ingestion, plugins=[notifier], load_entrypoints=False) as tracker,
    ):
        job = tracker.create_job("j1")
        job.phases["discovery"].start()
        assert tracker.get_job("j1").phases["discovery"].status == "running"
    assert "failed in hook phase_changed" in caplog.text  # as a plain plugin: logged, not retried
    assert "ConnectError" in caplog.text


def test_as_a_plain_plugin_events_arrive_in_commit_order(
    receiver: Receiver, notifier_factory: Any, ingestion: PhaseSet
) -> None:
    notifier = notifier_factory(receiver.url)
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
    first, *rest = [verified(r)["data"]["version"] for r in receiver.requests]
    assert rest == [first + 1, first + 1, first + 2]  # one commit: one version, two events


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
    assert receiver.wait_for(3)
    assert receiver.event_types() == ["job_created", "phase_changed", "job_status_changed"]
    for request in receiver.requests:
        assert verified(request)


# -- phasekit webhook secret -----------------------------------------------------------------


def test_phasekit_webhook_secret_prints_a_new_secret_that_the_notifier_and_the_standard_take(
    receiver: Receiver, notifier_factory: Any
) -> None:
    printed = [CliRunner().invoke(cli, ["webhook", "secret"]) for _ in range(2)]
    assert [result.exit_code for result in printed] == [0, 0]
    first, second = (result.output.strip() for result in printed)
    assert first != second
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", first)
    assert len(parse_secret(first)) == 32
    notifier_factory(receiver.url, secret=first).phase_changed(phase_event())
    assert verified(receiver.requests[0], first)

    as_json = CliRunner().invoke(cli, ["webhook", "secret", "--json"])
    assert as_json.exit_code == 0
    assert len(parse_secret(json.loads(as_json.output)["secret"])) == 32


# -- docs/notifiers.md -----------------------------------------------------------------------


def _webhook_section() -> str:
    return NOTIFIERS_DOC.read_text().split("\n## webhook\n", 1)[1].split("\n## ", 1)[0]


def test_the_documented_options_are_the_notifiers_options() -> None:
    table = _webhook_section().split("| option |", 1)[1].split("\n\n", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", table, re.M)
    parameters = list(inspect.signature(WebhookNotifier).parameters)
    assert documented == parameters


def test_the_documented_code_example_delivers_through_the_relay(
    receiver: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = NOTIFIERS_DOC.read_text().split("\nor in code:\n", 1)[1]
    found = re.search(r"```python\n(.*?)```", text, re.S)
    assert found is not None
    code = found[1].replace("https://ops.example/hooks/phasekit", receiver.url)
    code = code.replace("    ...\n", '    tracker.create_job("job-42")\n')
    monkeypatch.setenv("PHASEKIT_WEBHOOK_SECRET", SECRET)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="phasekit.events"):
        exec(compile(code, str(NOTIFIERS_DOC), "exec"), {})
    assert [verified(r)["data"]["job_id"] for r in receiver.requests] == ["job-42"]
    assert "job_created" in caplog.text  # and the logging notifier had it too


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1, in a thread; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


def test_the_documented_receiver_takes_a_real_delivery_once_and_refuses_forgeries_and_replays(
    notifier_factory: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    section = _webhook_section().split("### Receiving deliveries", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None
    monkeypatch.setenv("PHASEKIT_WEBHOOK_SECRET", SECRET)
    namespace: dict[str, Any] = {}
    exec(compile(found[1], str(NOTIFIERS_DOC), "exec"), namespace)
    event = phase_event()
    with serving(namespace["app"]) as base:
        url = f"{base}/hooks/phasekit"
        capsys.readouterr()
        notifier = notifier_factory(url)
        notifier.phase_changed(event)
        assert capsys.readouterr().out == "phase_changed job-42 1\n"  # handled
        notifier.phase_changed(event)  # a retry: the same webhook-id
        assert capsys.readouterr().out == ""  # acknowledged, not handled again

        with pytest.raises(PermanentDeliveryError, match="HTTP 401"):
            notifier_factory(url, secret=OTHER_SECRET).phase_changed(phase_event(version=2))
        body = message_body(event.type, event.model_dump(mode="json"))
        now = int(time.time())

        def post(body: bytes, msg_id: str, timestamp: int, signed: bytes) -> int:
            headers = {
                "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign([KEY], msg_id, timestamp, signed),
                "content-type": "application/json",
            }
            return httpx.post(url, content=body, headers=headers).status_code

        tampered = body.replace(b"job-42", b"job-43")
        assert post(tampered, "new-id-1", now, body) == 401  # tampered with
        assert post(body, "new-id-2", now - 600, body) == 401  # a capture ten minutes old
        assert post(body, "new-id-3", now, body) == 204  # the control: well signed, fresh
        assert capsys.readouterr().out == "phase_changed job-42 1\n"
