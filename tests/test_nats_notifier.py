"""The nats notifier: JetStream publishes on a real NATS server, deduplicated by event id."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nats
import pytest
import statemachine.plugins.nats_notifier as nats_plugin
from nats.js.errors import NotFoundError
from statemachine.plugins.nats_notifier import MSG_ID_HEADER, NatsNotifier

from statemachine import (
    ConfigError,
    DeliveryError,
    Event,
    PermanentDeliveryError,
    PhaseChanged,
    Tracker,
    load_spec,
    parse_event,
)

from .conftest import Recorder

ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


@dataclass(frozen=True)
class Stored:
    """One message as the stream stores it."""

    subject: str
    headers: dict[str, str]
    data: bytes


@dataclass(frozen=True)
class Place:
    """A stream and a subject prefix of this test alone."""

    url: str
    stream: str
    prefix: str

    @property
    def subject(self) -> str:
        """The notifier's subject template under this test's prefix."""
        return f"{self.prefix}.events.{{type}}"


async def _ignore(exc: Exception) -> None:
    """Keep nats-py from logging a refused connection as an error with a traceback."""


def _run(make: Callable[[Any], Coroutine[Any, Any, T]], url: str) -> T:
    """Run ``make(js)`` on a connection of its own, from the test's thread."""

    async def main() -> T:
        client = await nats.connect(
            url,
            connect_timeout=2,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0,
            error_cb=_ignore,
        )
        try:
            return await make(client.jetstream(timeout=5))
        finally:
            await client.close()

    return asyncio.run(main())


def _delete_stream(url: str, name: str) -> None:
    async def delete(js: Any) -> None:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(name)

    _run(delete, url)


@pytest.fixture
def place(nats_url: str) -> Iterator[Place]:
    """A unique stream name and subject prefix; the stream is deleted afterwards."""
    token = uuid.uuid4().hex[:12]
    found = Place(nats_url, f"PHASEKIT_TEST_{token}", f"phasekit_test_{token}")
    yield found
    _delete_stream(nats_url, found.stream)


def stored(place: Place) -> list[Stored]:
    """Every message of the test's stream, oldest first."""

    async def read(js: Any) -> list[Stored]:
        info = await js.stream_info(place.stream)
        messages = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(place.stream, seq)
            messages.append(Stored(msg.subject, dict(msg.headers or {}), msg.data))
        return messages

    return _run(read, place.url)


def consumed(place: Place, count: int) -> list[Event]:
    """``count`` events, as a consumer of the stream reads (and acks) them."""

    async def read(js: Any) -> list[Event]:
        sub = await js.pull_subscribe(f"{place.prefix}.>", stream=place.stream)
        events: list[Event] = []
        while len(events) < count:
            for msg in await sub.fetch(count - len(events), timeout=5):
                events.append(parse_event(msg.data))
                await msg.ack()
        await sub.unsubscribe()
        return events

    return _run(read, place.url)


@pytest.fixture
def notifier(place: Place) -> Iterator[NatsNotifier]:
    """A notifier that makes the test's stream on its first publish."""
    n = NatsNotifier(place.url, place.subject, stream=place.stream, timeout=2)
    yield n
    n.close()


def _event(version: int = 1, job_id: str = "job-1") -> PhaseChanged:
    return PhaseChanged(
        job_id=job_id, version=version, phase="p", trigger="start", source="a", dest="b"
    )


def _deliver(notifier: NatsNotifier, event: Event) -> None:
    """Call the event's hook, as the relay does: by its type, with a keyword."""
    getattr(notifier, event.type)(event=event)


# -- what is sent ----------------------------------------------------------------------------


def test_every_event_is_stored_once_with_its_id_header_and_json(
    notifier: NatsNotifier, place: Place, broker_events: list[Event]
) -> None:
    for event in broker_events:
        _deliver(notifier, event)
    found = stored(place)
    assert len(found) == len(broker_events)
    for message, event in zip(found, broker_events, strict=True):
        assert message.subject == f"{place.prefix}.events.{event.type}"
        assert message.headers[MSG_ID_HEADER] == event.event_id
        assert message.data == event.model_dump_json().encode()
        assert parse_event(message.data) == event


def test_the_same_event_twice_is_stored_once(notifier: NatsNotifier, place: Place) -> None:
    event = _event()
    first = notifier.deliver(event)
    again = notifier.deliver(event)  # a relay's retry after a lost acknowledgement
    assert first is not None and again is not None
    assert not first.duplicate
    assert again.duplicate  # the server dropped it, and said so: delivered
    assert again.seq == first.seq
    assert [m.headers[MSG_ID_HEADER] for m in stored(place)] == [event.event_id]


def test_a_missing_stream_is_created_with_the_subjects_of_every_type(
    notifier: NatsNotifier, place: Place
) -> None:
    notifier.deliver(_event())

    async def subjects(js: Any) -> list[str]:
        return sorted((await js.stream_info(place.stream)).config.subjects)

    assert _run(subjects, place.url) == sorted(
        f"{place.prefix}.events.{kind}" for kind in nats_plugin.EVENT_TYPES
    )


def test_a_stream_deleted_meanwhile_is_created_again(notifier: NatsNotifier, place: Place) -> None:
    notifier.deliver(_event(1))
    _delete_stream(place.url, place.stream)
    notifier.deliver(_event(2))
    assert [parse_event(m.data).version for m in stored(place)] == [2]


def test_a_subject_without_a_placeholder_takes_every_type(
    place: Place, broker_events: list[Event]
) -> None:
    notifier = NatsNotifier(place.url, f"{place.prefix}.all", stream=place.stream)
    try:
        for event in broker_events:
            _deliver(notifier, event)
    finally:
        notifier.close()
    assert {m.subject for m in stored(place)} == {f"{place.prefix}.all"}


def test_events_option_sends_only_the_chosen_types(
    place: Place, broker_events: list[Event]
) -> None:
    notifier = NatsNotifier(
        place.url, place.subject, stream=place.stream, events=["job_created", "job_deleted"]
    )
    try:
        for event in broker_events:
            _deliver(notifier, event)
    finally:
        notifier.close()
    assert [parse_event(m.data).type for m in stored(place)] == ["job_created", "job_deleted"]


def test_deliveries_from_many_threads_all_arrive(notifier: NatsNotifier, place: Place) -> None:
    def send(thread: int) -> None:
        for version in range(1, 51):
            notifier.deliver(_event(version, job_id=f"job-{thread}"))

    threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = [parse_event(m.data) for m in stored(place)]
    assert sorted((e.job_id, e.version) for e in found) == sorted(
        (f"job-{t}", v) for t in range(8) for v in range(1, 51)
    )


# -- failures --------------------------------------------------------------------------------


def test_no_stream_for_the_subject_is_a_permanent_delivery_error(place: Place) -> None:
    notifier = NatsNotifier(place.url, place.subject, timeout=2)  # no stream option
    try:
        with pytest.raises(PermanentDeliveryError, match=r"no JetStream stream takes subject"):
            notifier.phase_changed(event=_event())
    finally:
        notifier.close()


def test_a_stream_that_does_not_take_the_subject_is_a_permanent_delivery_error(
    notifier: NatsNotifier, place: Place
) -> None:
    notifier.deliver(_event())  # the stream now exists, with the notifier's subjects
    other = NatsNotifier(place.url, f"{place.prefix}.elsewhere", stream=place.stream)
    try:
        with pytest.raises(PermanentDeliveryError, match=r"does not take subject"):
            other.phase_changed(event=_event())
    finally:
        other.close()


def test_a_subject_another_stream_takes_is_a_permanent_delivery_error(
    notifier: NatsNotifier, place: Place
) -> None:
    notifier.deliver(_event())  # the test's stream takes the notifier's subjects
    other_stream = f"{place.stream}_OTHER"
    other = NatsNotifier(place.url, place.subject, stream=other_stream)
    try:
        with pytest.raises(PermanentDeliveryError, match=r"subjects overlap"):
            other.phase_changed(event=_event(2))
    finally:
        other.close()
        _delete_stream(place.url, other_stream)


def test_a_server_that_is_down_raises_delivery_error_at_once(refused_port: int) -> None:
    notifier = NatsNotifier(f"nats://127.0.0.1:{refused_port}", timeout=5)
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryError, match=r"Connect call failed") as caught:
            notifier.phase_changed(event=_event())
    finally:
        notifier.close()
    assert time.monotonic() - started < 2
    assert not isinstance(caught.value, PermanentDeliveryError)  # the relay retries it


def test_a_server_that_never_answers_raises_delivery_error_within_the_timeout(
    silent_port: int,
) -> None:
    notifier = NatsNotifier(f"nats://127.0.0.1:{silent_port}", timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryError, match=r"no answer within 0.5s"):
            notifier.phase_changed(event=_event())
        assert time.monotonic() - started < 1.5
    finally:
        notifier.close()


def test_the_password_is_in_no_repr_error_or_log_line(
    refused_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    notifier = NatsNotifier(f"nats://phasekit:s3cret@127.0.0.1:{refused_port}")
    try:
        with pytest.raises(DeliveryError) as caught:
            notifier.phase_changed(event=_event())
    finally:
        notifier.close()
    assert notifier.url == f"nats://127.0.0.1:{refused_port}"
    shown = [repr(notifier), str(caught.value), repr(caught.value), caplog.text]
    assert not [text for text in shown if "s3cret" in text]


def test_a_token_in_the_url_is_not_shown(refused_port: int) -> None:
    notifier = NatsNotifier(f"nats://t0ken@127.0.0.1:{refused_port}")
    try:
        with pytest.raises(DeliveryError) as caught:
            notifier.phase_changed(event=_event())
    finally:
        notifier.close()
    assert "t0ken" not in repr(notifier) + str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": ""}, r"nats url must be a non-empty string"),
        ({"url": "http://127.0.0.1:4222"}, r"nats url must start with nats://"),
        ({"url": "nats://u:s3cret@127.0.0.1:port"}, r"nats url is not a valid URL"),
        ({"subject": "phasekit.{job_id}"}, r"unknown placeholder\(s\) \{job_id\}.*job id"),
        ({"subject": "phasekit.*"}, r"nats subject 'phasekit.\*' is not a subject"),
        ({"subject": "phasekit..events"}, r"is not a subject"),
        ({"subject": "phase kit.{type}"}, r"is not a subject"),
        ({"stream": "has.dot"}, r"nats stream 'has.dot' is not a stream name"),
        ({"timeout": -1}, r"nats timeout must be a finite number > 0"),
        ({"timeout": "5"}, r"nats timeout must be a number"),
        ({"events": "phase"}, r"nats events: unknown event type\(s\) 'phase'"),
    ],
)
def test_an_invalid_option_is_a_value_error_naming_it(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        NatsNotifier(**options)  # type: ignore[arg-type]
    assert "s3cret" not in str(caught.value)


def test_the_subject_of_each_type_replaces_the_placeholder() -> None:
    notifier = NatsNotifier(subject="ops.{type}.phasekit")
    assert notifier.subject_for("phase_changed") == "ops.phase_changed.phasekit"
    notifier.close()


def test_after_close_a_delivery_raises_and_no_thread_is_left(place: Place) -> None:
    notifier = NatsNotifier(place.url, place.subject, stream=place.stream)
    notifier.deliver(_event())
    loops = [t for t in threading.enumerate() if t.name.startswith("phasekit-nats")]
    assert loops
    notifier.close()
    assert not any(t.is_alive() for t in loops)
    with pytest.raises(DeliveryError, match=r"closed"):
        notifier.phase_changed(event=_event(2))
    notifier.close()  # a second close does nothing


def test_a_notifier_never_used_starts_no_thread() -> None:
    before = {t.name for t in threading.enumerate()}
    notifier = NatsNotifier()
    notifier.close()
    assert {t.name for t in threading.enumerate()} == before


@pytest.mark.skipif(shutil.which("nats-server") is None, reason="needs the nats-server binary")
def test_deliveries_resume_once_a_restarted_server_answers(
    refused_port: int, tmp_path: Path
) -> None:
    url = f"nats://127.0.0.1:{refused_port}"

    def start() -> subprocess.Popen[bytes]:
        server = subprocess.Popen(
            ["nats-server", "-a", "127.0.0.1", "-p", str(refused_port), "-js", "-sd",
             str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                _run(lambda js: js.account_info(), url)
                break
            except Exception:
                time.sleep(0.05)
        return server

    notifier = NatsNotifier(url, "restart.{type}", stream="RESTART", timeout=1)
    server = start()
    try:
        notifier.deliver(_event(1))
        server.terminate()
        server.wait(10)
        with pytest.raises(DeliveryError):
            notifier.deliver(_event(2))
        server = start()
        notifier.deliver(_event(3))  # connects again
        versions = [parse_event(m.data).version for m in stored(Place(url, "RESTART", ""))]
        assert versions == [1, 3]
    finally:
        notifier.close()
        server.terminate()
        server.wait(10)


# -- in a tracker, and as a plugin ------------------------------------------------------------


def test_a_tracker_sends_every_event_of_a_job(
    notifier: NatsNotifier, place: Place, recorder: Recorder
) -> None:
    plugins = [recorder, notifier]
    with Tracker(load_spec("ingestion"), plugins=plugins, load_entrypoints=False) as tracker:
        job = tracker.create_job("job-42")
        job.phases["discovery"].start()
        job.phases["discovery"].update_progress(items_processed=5, items_total=10)
        job.phases["discovery"].complete()
        job.phases["extraction"].start()
        job.phases["extraction"].fail("disk full")
    assert consumed(place, len(recorder.events)) == recorder.events
    assert {"job_created", "phase_changed", "progress_updated", "job_status_changed"} == {
        e.type for e in recorder.events
    }
    assert "closed" in repr(notifier)  # closed with the tracker


def test_a_config_names_the_nats_notifier_and_every_event_arrives(place: Place) -> None:
    options = {"url": place.url, "subject": place.subject, "stream": place.stream}
    with Tracker.from_config({"spec": "ingestion", "notifiers": {"nats": options}}) as tracker:
        job = tracker.create_job("job-7")
        job.phases["discovery"].start()
        version = job.version
    # Delivered in the committing thread, or by the relay from the event log: wait for it.
    found = consumed(place, 3)
    assert [e.type for e in found] == ["job_created", "phase_changed", "job_status_changed"]
    assert found[-1].version == version


def test_a_bad_option_in_a_config_names_the_notifier_and_the_option() -> None:
    config = {"spec": "ingestion", "notifiers": {"nats": {"subject": "jobs.{job_id}"}}}
    with pytest.raises(ConfigError, match=r"notifier 'nats': nats subject 'jobs.\{job_id\}'"):
        Tracker.from_config(config)


def test_the_plugin_registers_the_nats_notifier_under_its_entry_point() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entry = pyproject["project"]["entry-points"]["phasekit"]["nats"]
    assert entry == "statemachine.plugins.nats_notifier"
    assert nats_plugin.register_notifiers() == {"nats": NatsNotifier}
    assert NatsNotifier.relayable is True


MISSING_DRIVER = """\
import sys
sys.modules["nats"] = None  # as if nats-py were not installed
from statemachine import PhaseKitError
from statemachine.plugins import nats_notifier
assert nats_notifier.register_notifiers() == {"nats": nats_notifier.NatsNotifier}
try:
    nats_notifier.NatsNotifier()
except PhaseKitError as exc:
    print(exc)
"""


def test_without_nats_py_the_notifier_names_the_extra() -> None:
    result = subprocess.run(
        [sys.executable, "-c", MISSING_DRIVER], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "pip install 'phasekit[nats]'" in result.stdout


# -- without a server, and in CI --------------------------------------------------------------


def run_pytest_without_nats(port: int, *, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PHASEKIT_NATS_URL"] = f"nats://phasekit:s3cret@127.0.0.1:{port}"  # nobody answers
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_nats_notifier.py", "-k",
         "test_the_same_event_twice_is_stored_once", "-p", "no:cacheprovider", "-q", "-rs"],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_without_a_server_nats_tests_are_skipped_saying_how_to_enable_them(
    refused_port: int,
) -> None:
    result = run_pytest_without_nats(refused_port, ci=False)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "set PHASEKIT_NATS_URL=nats://host:port" in result.stdout
    assert (
        "NATS tests skipped: no NATS server with JetStream answered on "
        f"nats://127.0.0.1:{refused_port}"
    ) in result.stdout
    assert "s3cret" not in result.stdout


def test_in_ci_a_nats_test_without_a_server_fails_the_run(refused_port: int) -> None:
    result = run_pytest_without_nats(refused_port, ci=True)
    assert result.returncode == 1, result.stdout
    assert "NATS tests must run in CI: no NATS server with JetStream answered" in result.stdout
    assert "NATS tests failed, as CI requires them" in result.stdout
    assert "skipped" not in result.stdout


@pytest.mark.skipif(shutil.which("nats-server") is None, reason="needs the nats-server binary")
def test_services_sh_starts_a_nats_server_when_none_answers_and_stops_it_at_exit(
    refused_port: int, redis_url: str
) -> None:
    result = subprocess.run(
        ["bash", "-c", f'set -euo pipefail; source "{ROOT / ".ci" / "services.sh"}"; '
         'echo "url=$PHASEKIT_NATS_URL"'],
        check=False, capture_output=True, text=True, timeout=120,
        env={**os.environ, "CI": "true", "PHASEKIT_REDIS_URL": redis_url,
             "PHASEKIT_NATS_URL": f"nats://phasekit:s3cret@127.0.0.1:{refused_port}"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "started for this run" in result.stdout
    assert "s3cret" not in result.stdout + result.stderr
    url = result.stdout.split("url=")[1].strip()
    with pytest.raises(Exception, match=r"no servers|Connect call failed"):  # stopped at exit
        _run(lambda js: js.account_info(), url)


# -- docs/notifiers.md -----------------------------------------------------------------------

NOTIFIERS_DOC = ROOT / "docs" / "notifiers.md"


def _nats_section() -> str:
    return NOTIFIERS_DOC.read_text().split("\n## nats\n", 1)[1].split("\n## ", 1)[0]


def test_the_documented_options_are_the_notifiers_options() -> None:
    table = _nats_section().split("| option |", 1)[1].split("\n\n", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", table, re.M)
    assert documented == list(inspect.signature(NatsNotifier).parameters)


def test_the_documented_consumer_handles_each_event_once_and_acknowledges_it(
    notifier: NatsNotifier,
    place: Place,
    broker_events: list[Event],
    capsys: pytest.CaptureFixture[str],
) -> None:
    section = _nats_section().split("### Consuming", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None
    namespace: dict[str, Any] = {"__name__": "consumer"}
    exec(compile(found[1], str(NOTIFIERS_DOC), "exec"), namespace)
    consume = namespace["consume"]
    for event in broker_events:
        _deliver(notifier, event)
    _deliver(notifier, broker_events[1])  # the relay sent it again: dropped by the server
    capsys.readouterr()
    seen = asyncio.run(consume(place.url, place.stream, "billing", f"{place.prefix}.>"))
    handled = capsys.readouterr().out.splitlines()
    assert handled == [f"{e.type} {e.job_id} {e.version}" for e in broker_events]
    assert seen == {e.event_id for e in broker_events}
    assert asyncio.run(consume(place.url, place.stream, "billing", f"{place.prefix}.>")) == set()
