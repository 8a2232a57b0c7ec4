"""statemachine.testing: the pytest plugin as users load it, its helpers, the conformance suite."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from statemachine.plugins.webhook import WebhookNotifier

import statemachine.testing.plugin
from statemachine import (
    InvalidArgument,
    InvalidArgumentType,
    JobCreated,
    MemoryStore,
    PhaseChanged,
    Store,
    Tracker,
    load_spec,
    parse_spec,
)
from statemachine.testing import (
    Clock,
    StatusPath,
    StoreConformance,
    StoreOpener,
    WebhookReceiver,
    all_paths,
    assert_history,
    new_secret,
)
from statemachine.testing.history import tracker_in_use

from .conftest import StoreTarget

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
TESTING_DOC = ROOT / "docs" / "testing.md"
PLUGINS_DOC = ROOT / "docs" / "writing-plugins.md"
FILE_BLOCK = re.compile(r"<!-- file: (?P<path>\S+) -->\n```\w+\n(?P<body>.*?)```", re.S)
TEST_FILE_BLOCK = re.compile(r"<!-- test file: (?P<name>\S+) -->\n```\w+\n(?P<body>.*?)```", re.S)
OUTPUT_BLOCK = re.compile(r"<!-- output of: (?P<what>[^>]+?) -->\n```text\n(?P<body>.*?)```", re.S)
SQL_STORE = "statemachine.plugins.sql:SQLStore"
CONFORMANCE_TESTS = sorted(n for n in dir(StoreConformance) if n.startswith("test_"))


def tutorial_store_code() -> str:
    """The JSON-lines store module of docs/writing-plugins.md, as the doc has it."""
    blocks = {m["path"]: m["body"] for m in FILE_BLOCK.finditer(PLUGINS_DOC.read_text())}
    return blocks["phasekit-jsonl/phasekit_jsonl.py"]


def doc_outputs(doc: Path) -> dict[str, str]:
    """The ``<!-- output of: ... -->`` blocks of a doc, by what they are the output of."""
    return {m["what"]: m["body"] for m in OUTPUT_BLOCK.finditer(doc.read_text())}


# -- the plugin is loaded the way users get it ---------------------------------------------


def test_the_plugin_is_registered_through_its_pytest11_entry_point(
    pytester: pytest.Pytester,
) -> None:
    config = pytester.parseconfig()
    assert config.pluginmanager.get_plugin("phasekit") is statemachine.testing.plugin
    result = pytester.runpytest("--fixtures")
    for fixture in ("clock", "phase_set", "tracker_plugins", "tracker", "webhook_receiver"):
        assert re.search(
            rf"^{fixture} -- .*statemachine/testing/plugin\.py", result.stdout.str(), re.M
        )


def test_the_plugin_can_be_turned_off_with_p_no_phasekit(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_uses_the_tracker(tracker):\n    pass\n")
    result = pytester.runpytest("-p", "no:phasekit")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'tracker' not found*"])


# -- the examples of docs/testing.md run as written ----------------------------------------


@pytest.fixture(scope="module")
def testing_doc_run(tmp_path_factory: pytest.TempPathFactory) -> pytest.RunResult:
    """Every test file of docs/testing.md, written out and run once by ``python -m pytest``
    in a folder of its own, as a user would run them."""
    folder = tmp_path_factory.mktemp("testing-doc")
    for match in TEST_FILE_BLOCK.finditer(TESTING_DOC.read_text()):
        folder.joinpath(match["name"]).write_text(match["body"])
    started = time.perf_counter()
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--color=no"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return pytest.RunResult(
        ran.returncode,
        ran.stdout.splitlines(),
        ran.stderr.splitlines(),
        time.perf_counter() - started,
    )


def test_every_example_of_the_testing_doc_passes_but_the_failing_one(
    testing_doc_run: pytest.RunResult,
) -> None:
    outcomes = testing_doc_run.parseoutcomes()
    # test_jobs, test_crawl, test_policy, 5 paths, test_webhooks, and the memory store's suite
    # but its cross-process test.
    assert outcomes == {"passed": 9 + len(CONFORMANCE_TESTS) - 1, "failed": 1, "skipped": 1}
    testing_doc_run.stdout.fnmatch_lines(["FAILED test_history_fails.py::*"])


def test_the_history_failure_in_the_testing_doc_is_what_pytest_prints(
    testing_doc_run: pytest.RunResult,
) -> None:
    printed = [line[8:] for line in testing_doc_run.outlines if line.startswith("E       ")]
    message = "\n".join(printed).removeprefix("AssertionError: ")
    assert message + "\n" == doc_outputs(TESTING_DOC)["test_history_fails.py"]


def test_the_conformance_summary_in_the_testing_doc_is_what_pytest_prints(
    testing_doc_run: pytest.RunResult,
) -> None:
    documented = doc_outputs(TESTING_DOC)["test_memory_store.py"].splitlines()
    assert "phasekit store conformance: not applicable" in documented[0]
    testing_doc_run.stdout.fnmatch_lines(
        ["=* phasekit store conformance: not applicable =*", *documented[1:]]
    )


def test_the_ids_all_paths_gives_in_the_testing_doc_are_what_pytest_collects(
    pytester: pytest.Pytester,
) -> None:
    blocks = {m["name"]: m["body"] for m in TEST_FILE_BLOCK.finditer(TESTING_DOC.read_text())}
    pytester.path.joinpath("test_paths.py").write_text(blocks["test_paths.py"])
    result = pytester.runpytest("--collect-only", "-q", "test_paths.py")
    listed = [line for line in result.outlines if line.startswith("test_paths.py::")]
    assert listed == doc_outputs(TESTING_DOC)["test_paths.py --collect-only"].splitlines()


# -- the tracker, clock and phase_set fixtures ---------------------------------------------


def test_the_tracker_fixture_is_closed_when_its_test_ends(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from statemachine import PhaseKitError
        kept = []

        def test_first(tracker):
            kept.append(tracker)
            tracker.create_job("j1")

        def test_second(tracker):
            assert tracker is not kept[0]
            assert tracker.list_jobs() == []  # a fresh store
            with pytest.raises(PhaseKitError):
                kept[0].create_job("j2")
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_the_phase_set_marker_takes_a_path_beside_the_test_a_name_or_a_dict(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "specs").mkdir()
    (pytester.path / "specs" / "two.yaml").write_text(
        (ROOT / "config" / "ml-training.yaml").read_text().replace("ml-training", "two-steps")
    )
    pytester.makepyfile(
        """
        import pytest
        from statemachine import load_spec

        @pytest.mark.phase_set("specs/two.yaml")
        def test_a_file_beside_the_test(tracker):
            assert tracker.spec.name == "two-steps"

        @pytest.mark.phase_set("deployment")
        def test_a_bundled_name(tracker):
            assert tracker.spec.name == "deployment"

        @pytest.mark.phase_set(load_spec("ml-training").definition.model_dump(mode="json"))
        def test_a_dict(tracker):
            assert tracker.spec.name == "ml-training"

        def test_the_default_is_ingestion(tracker, phase_set):
            assert tracker.spec is phase_set and phase_set.name == "ingestion"
        """
    )
    pytester.runpytest("--strict-markers").assert_outcomes(passed=4)


def test_the_clock_moves_by_durations_and_refuses_naive_times() -> None:
    clock = Clock()
    assert clock() == clock.now == datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
    assert clock.advance("1h30m") == datetime(2025, 1, 1, 10, 30, tzinfo=UTC)
    assert clock.advance(timedelta(seconds=5)).second == 5
    assert clock.advance(55) == datetime(2025, 1, 1, 10, 31, tzinfo=UTC)
    assert clock.advance(minutes=4) == datetime(2025, 1, 1, 10, 35, tzinfo=UTC)
    paris = timezone(timedelta(hours=1))
    assert clock.set(datetime(2025, 6, 1, 12, 0, tzinfo=paris)).tzinfo is UTC
    assert clock.now == datetime(2025, 6, 1, 11, 0, tzinfo=UTC)
    with pytest.raises(InvalidArgument, match="no time zone"):
        clock.set(datetime(2025, 1, 1))
    with pytest.raises(InvalidArgument, match="no time zone"):
        Clock(datetime(2025, 1, 1))
    with pytest.raises(InvalidArgumentType, match="one duration"):
        clock.advance()
    with pytest.raises(InvalidArgument, match="longer than zero"):
        clock.advance(-300)


def test_a_tracker_on_the_clock_stamps_every_change_with_it() -> None:
    clock = Clock()
    with Tracker("ingestion", clock=clock, load_entrypoints=False) as tracker:
        job = tracker.create_job("j1")
        clock.advance("10s")
        job.phases["discovery"].trigger("start")
    assert job.created_at == Clock().now
    assert job.phases["discovery"].started_at == clock.now


# -- assert_history ------------------------------------------------------------------------


@pytest.fixture
def driven() -> Iterator[Tracker]:
    """A tracker whose job ``j1`` started discovery, completed it, and failed extraction."""
    with Tracker("ingestion", load_entrypoints=False) as tracker:
        job = tracker.create_job("j1")
        job.phases["discovery"].trigger("start")
        job.phases["discovery"].trigger("complete")
        job.phases["extraction"].trigger("fail", "disk full")
        yield tracker


def test_assert_history_takes_each_form_of_entry(driven: Tracker) -> None:
    assert_history(
        (driven, "j1"),
        [
            ("discovery", "start"),
            "discovery: running -> completed",
            ("extraction", "fail", "disk full"),
        ],
    )
    assert_history(
        driven.history("j1"), ["discovery: start", "discovery: complete", "extraction: fail"]
    )


def test_assert_history_finds_a_job_of_the_tracker_in_use(driven: Tracker) -> None:
    job = driven.get_job("j1")
    with tracker_in_use(driven):
        assert_history(job, ["discovery: start", "discovery: complete", "extraction: fail"])
    with pytest.raises(TypeError, match=r"pass \(tracker, job_id\)"):
        assert_history(job, [])


def test_assert_history_fails_on_a_wrong_error_a_missing_and_an_extra_change(
    driven: Tracker,
) -> None:
    with pytest.raises(AssertionError) as wrong_error:
        assert_history(
            (driven, "j1"),
            ["discovery: start", "discovery: complete", ("extraction", "fail", None)],
        )
    wrong = "  >  3  extraction: fail (error None)  extraction: not_started -> failed (fail, "
    assert wrong + "error 'disk full')" in str(wrong_error.value)
    with pytest.raises(
        AssertionError, match=r"differs at change 3 \(2 expected, 3 in the history\)"
    ):
        assert_history((driven, "j1"), ["discovery: start", "discovery: complete"])


def test_assert_history_refuses_an_entry_it_cannot_read(driven: Tracker) -> None:
    with pytest.raises(TypeError, match="expected history entry 1 is 'start'"):
        assert_history((driven, "j1"), ["start"])
    with pytest.raises(TypeError, match="a list of entries, not one string"):
        assert_history((driven, "j1"), "discovery: start")
    with pytest.raises(TypeError, match="not int"):
        assert_history(42, [])  # type: ignore[arg-type]


# -- all_paths -----------------------------------------------------------------------------

BRANCHING = """
phasekit: 1
name: branching
statuses:
  new: {initial: true}
  checking: {active: true}
  approved: {terminal: true, success: true}
  rejected: {terminal: true}
  withdrawn: {terminal: true}
  archived: {terminal: true}
transitions:
  - {trigger: check, source: new, dest: checking}
  - {trigger: decide, source: checking, dest: approved, conditions: [looks_good]}
  - {trigger: decide, source: checking, dest: rejected}
  - {trigger: fast_track, source: new, dest: approved, conditions: [is_trusted]}
  - {trigger: withdraw, source: "*", dest: withdrawn}
phases:
  - {name: review}
aggregate:
  status:
    - {otherwise: new}
"""


def test_all_paths_of_ingestion_reach_every_status_by_the_fewest_triggers() -> None:
    assert [(p.status, p.triggers) for p in all_paths("ingestion")] == [
        ("not_started", ()),
        ("running", ("start",)),
        ("paused", ("start", "pause")),
        ("completed", ("start", "complete")),
        ("failed", ("fail",)),
    ]
    assert [p.id for p in all_paths(load_spec("ingestion"), include_initial=False)] == [
        "running-via-start",
        "paused-via-start-pause",
        "completed-via-start-complete",
        "failed-via-fail",
    ]


def test_all_paths_follow_wildcards_name_guards_and_leave_unreachable_statuses_out() -> None:
    paths = {p.status: p for p in all_paths(parse_spec(BRANCHING))}
    assert "archived" not in paths
    assert paths["withdrawn"] == StatusPath("withdrawn", ("withdraw",), ("new", "withdrawn"))
    assert paths["approved"].triggers == ("fast_track",)
    assert paths["approved"].guards == ("is_trusted",)
    assert paths["rejected"] == StatusPath(
        "rejected", ("check", "decide"), ("new", "checking", "rejected"), ()
    )


@pytest.mark.parametrize("path", all_paths("deployment"))
def test_walking_a_path_brings_a_phase_to_its_status(path: StatusPath) -> None:
    job = load_spec("deployment").new_job("j1")
    path.walk(job.phases["canary"])
    assert job.phases["canary"].status == path.status


def test_a_paths_id_names_its_status_and_triggers() -> None:
    ids = [p.id for p in all_paths("deployment")]
    assert ids[:2] == ["pending", "running-via-start"]
    assert str(all_paths("deployment")[1]) == "running-via-start"


# -- the webhook receiver ------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as started:
        yield started


def signed_post(
    receiver: WebhookReceiver,
    body: bytes,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
) -> int:
    """POST ``body`` signed by the Standard Webhooks reference library; the status."""
    msg_id = "msg_" + new_secret()[6:18]
    when = datetime.fromtimestamp(timestamp if timestamp is not None else time.time(), UTC)
    signature = Webhook(secret or receiver.secret).sign(msg_id, when, body.decode())
    sent = {
        "Webhook-Id": msg_id,
        "WEBHOOK-TIMESTAMP": str(int(when.timestamp())),
        "webhook-Signature": signature,
    }
    return httpx.post(receiver.url, content=body, headers=sent).status_code


def test_the_receiver_takes_what_the_webhook_notifier_sends_and_the_reference_library_verifies(
    receiver: WebhookReceiver,
) -> None:
    notifier = WebhookNotifier(receiver.url, receiver.secret)
    try:
        notifier.deliver(
            JobCreated(job_id="j1", version=1, spec="s", phases=["a"], initial_status="n")
        )
        notifier.deliver(
            PhaseChanged(job_id="j1", version=2, phase="a", trigger="go", source="n", dest="r")
        )
    finally:
        notifier.close()
    deliveries = receiver.wait_for(2)
    assert [d.type for d in deliveries] == ["job_created", "phase_changed"]
    assert deliveries[1].data["dest"] == "r" and deliveries[1].status == 204
    for delivery in deliveries:
        assert (
            Webhook(receiver.secret).verify(delivery.body, delivery.headers)["type"]
            == delivery.type
        )
        assert delivery.webhook_id == delivery.data["event_id"]


def test_the_receiver_reads_header_names_in_any_case(receiver: WebhookReceiver) -> None:
    assert signed_post(receiver, b'{"type": "ping", "data": {}}') == 204
    assert receiver.received[0].headers["webhook-timestamp"].isdigit()


def test_the_receiver_answers_401_to_a_wrong_secret_a_changed_body_or_a_missing_header(
    receiver: WebhookReceiver,
) -> None:
    assert signed_post(receiver, b"{}", secret=new_secret()) == 401
    msg_id, stamp = "msg_1", str(int(time.time()))
    good = Webhook(receiver.secret).sign(msg_id, datetime.fromtimestamp(int(stamp), UTC), "{}")
    changed = httpx.post(
        receiver.url,
        content=b"{ }",
        headers={"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": good},
    )
    missing = httpx.post(receiver.url, content=b"{}", headers={"webhook-id": msg_id})
    assert (changed.status_code, missing.status_code) == (401, 401)
    assert receiver.received == []
    assert [r.reason for r in receiver.rejected] == [
        "no webhook-signature matches a secret (wrong secret, or body or headers changed)",
        "no webhook-signature matches a secret (wrong secret, or body or headers changed)",
        "no webhook-timestamp header",
    ]


def test_the_receiver_refuses_an_old_timestamp_and_a_wrong_path(receiver: WebhookReceiver) -> None:
    assert signed_post(receiver, b"{}", timestamp=int(time.time()) - 600) == 401
    assert "behind now (tolerance 300s)" in receiver.rejected[0].reason
    lenient = WebhookReceiver(receiver.secret, tolerance=None).start()
    try:
        assert signed_post(lenient, b"{}", timestamp=int(time.time()) - 86400) == 204
        wrong_path = httpx.post(lenient.url + "/elsewhere", content=b"{}")
        assert wrong_path.status_code == 401
        assert lenient.rejected[0].reason == "POST to /webhooks/elsewhere, not /webhooks"
    finally:
        lenient.stop()


def test_during_a_rotation_a_signature_by_any_secret_verifies() -> None:
    old, new = new_secret(), new_secret()
    with WebhookReceiver([new, old]) as rotating:
        assert rotating.secret == new
        assert signed_post(rotating, b"{}", secret=old) == 204
        other = Webhook(new_secret()).sign("m", datetime.now(UTC), "{}")
        both = f"{other} " + Webhook(new).sign("m", datetime.now(UTC), "{}")
        stamp = str(int(time.time()))
        headers = {"webhook-id": "m", "webhook-timestamp": stamp, "webhook-signature": both}
        assert httpx.post(rotating.url, content=b"{}", headers=headers).status_code == 204


def test_fail_next_answers_with_an_error_and_retry_after(receiver: WebhookReceiver) -> None:
    receiver.fail_next(1, status=503, retry_after=2)
    msg_id, stamp = "m1", int(time.time())
    signature = Webhook(receiver.secret).sign(msg_id, datetime.fromtimestamp(stamp, UTC), "{}")
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature,
    }
    answer = httpx.post(receiver.url, content=b"{}", headers=headers)
    assert (answer.status_code, answer.headers.get("Retry-After")) == (503, "2")
    assert receiver.received == [] and len(receiver.attempts) == 1
    assert signed_post(receiver, b"{}") == 204
    assert len(receiver.wait_for(1)) == 1


def test_waiting_too_long_says_what_arrived_and_what_was_rejected(
    receiver: WebhookReceiver,
) -> None:
    signed_post(receiver, b"{}", secret=new_secret())
    with pytest.raises(AssertionError) as waited:
        receiver.wait_for(1, timeout=0.05)
    assert str(waited.value) == (
        "the webhook receiver got 0 of 1 deliveries in 0.05s (types: none); 1 rejected\n"
        "  rejected: no webhook-signature matches a secret (wrong secret, or body or headers "
        "changed)"
    )


def test_a_receiver_refuses_a_secret_that_is_not_base64() -> None:
    with pytest.raises(InvalidArgument, match="not shown"):
        WebhookReceiver("whsec_not base64!")
    assert len(base64.b64decode(new_secret().removeprefix("whsec_"))) == 32


# -- StoreOpener ---------------------------------------------------------------------------


def test_a_store_opener_opens_a_factory_by_dotted_path_or_a_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    for opener in (StoreOpener(SQL_STORE, url), StoreOpener.url(url)):
        again = StoreOpener.from_json(opener.to_json())
        store = again.open()
        assert isinstance(store, Store) and type(store).__name__ == "SQLStore"
        store.close()


def test_a_store_opener_says_what_is_wrong_and_never_shows_a_password() -> None:
    with pytest.raises(InvalidArgument, match=r"'package\.module:callable', not 'SQLStore'"):
        StoreOpener("SQLStore")
    with pytest.raises(InvalidArgument, match="must be JSON"):
        StoreOpener(SQL_STORE, object())
    with pytest.raises(TypeError, match=r"lacks methods of statemachine\.Store"):
        StoreOpener("builtins:dict").open()
    shown = repr(StoreOpener(SQL_STORE, "postgresql://app:s3cret@db:5432/jobs", schema="x"))
    assert shown == f"StoreOpener('{SQL_STORE}', 'postgresql://app:***@db:5432/jobs', schema='x')"


# -- the conformance suite against phasekit's stores and the tutorial's --------------------


class TestMemoryStore(StoreConformance):
    """The memory store: every part of the contract, in one process."""

    multiprocess = False

    @pytest.fixture
    def make_store(self) -> Callable[[], Store]:
        store = MemoryStore()
        return lambda: store


class TestSQLiteStore(StoreConformance):
    """The SQL store on a SQLite file, shared by threads and processes."""

    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> StoreOpener:
        return StoreOpener(SQL_STORE, f"sqlite:///{tmp_path / 'jobs.db'}")


@pytest.mark.postgres
class TestPostgreSQLStore(StoreConformance):
    """The SQL store on PostgreSQL, in the run's schema with a table prefix of its own."""

    @pytest.fixture
    def store_opener(self, pg_target: StoreTarget) -> StoreOpener:
        return StoreOpener(SQL_STORE, pg_target.url, **pg_target.options)


@pytest.fixture(scope="class")
def tutorial_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The folder of docs/writing-plugins.md's ``phasekit_jsonl.py``, importable meanwhile."""
    folder = tmp_path_factory.mktemp("tutorial")
    (folder / "phasekit_jsonl.py").write_text(tutorial_store_code())
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        yield folder
    sys.modules.pop("phasekit_jsonl", None)


class TestTutorialJsonLinesStore(StoreConformance):
    """The JSON-lines store of docs/writing-plugins.md, shared by threads and processes."""

    @pytest.fixture
    def store_opener(self, tmp_path: Path, tutorial_module: Path) -> StoreOpener:
        path = str(tmp_path / "jobs.jsonl")
        return StoreOpener("phasekit_jsonl:JsonLinesStore", path, pythonpath=[str(tutorial_module)])


def test_the_tutorial_test_module_passes_as_the_doc_says(pytester: pytest.Pytester) -> None:
    blocks = {m["path"]: m["body"] for m in FILE_BLOCK.finditer(PLUGINS_DOC.read_text())}
    pytester.path.joinpath("phasekit_jsonl.py").write_text(
        blocks["phasekit-jsonl/phasekit_jsonl.py"]
    )
    (pytester.path / "tests").mkdir()
    test_file = pytester.path / "tests" / "test_jsonl_store.py"
    test_file.write_text(blocks["phasekit-jsonl/tests/test_jsonl_store.py"])
    pytester.syspathinsert()  # as `pip install -e ./phasekit-jsonl` would
    result = pytester.runpytest("-p", "no:cacheprovider", "tests")
    # Not applicable: the list filters (2 tests), idempotency keys (1), delete (2), the event
    # log (3), the spec archive (1).
    result.assert_outcomes(passed=len(CONFORMANCE_TESTS) - 9, skipped=9)
    result.stdout.fnmatch_lines(
        [
            "*phasekit store conformance: not applicable*",
            "JsonLinesStore.list takes no spec=*",
            "JsonLinesStore.list takes no phase_status=*",
            "JsonLinesStore keeps no idempotency keys*",
            "JsonLinesStore has no delete(*",
            "JsonLinesStore keeps no event log*",
            "JsonLinesStore is no SpecArchive*",
        ]
    )


# The tutorial's first store, which the suite caught: its _TIMES lacked two timestamps, and it
# read the file once, when it opened, so it compared versions with a stale copy.
FIRST_TIMES = '_TIMES = ("created_at", "updated_at", "started_at", "completed_at")\n'
RE_READING = (
    "            file.seek(self.read_up_to)\n"
    "            for line in file.read().splitlines():\n"
    "                self._read(json.loads(line))\n"
)
READ_ONCE = '''

class FirstJsonLinesStore(JsonLinesStore):
    """Reads the file when it opens, and never again."""

    def __init__(self, path):
        super().__init__(path)
        try:
            with open(path, "rb") as lines:
                for line in lines:
                    self._read(json.loads(line))
        except FileNotFoundError:
            pass
'''


def first_tutorial_store() -> str:
    code = tutorial_store_code()
    times = next(line for line in code.splitlines(keepends=True) if line.startswith("_TIMES"))
    assert RE_READING in code
    return code.replace(times, FIRST_TIMES).replace(RE_READING, "") + READ_ONCE


def test_the_suite_fails_the_tutorials_first_store_as_the_doc_shows(
    pytester: pytest.Pytester,
) -> None:
    pytester.path.joinpath("first_jsonl.py").write_text(first_tutorial_store())
    pytester.makepyfile(
        test_first_store="""
        import pytest
        from statemachine.testing import StoreConformance, StoreOpener

        class TestJsonLinesStore(StoreConformance):
            @pytest.fixture
            def store_opener(self, tmp_path):
                return StoreOpener("first_jsonl:FirstJsonLinesStore", str(tmp_path / "jobs.jsonl"))
        """
    )
    pytester.syspathinsert()
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "gives_back or across_processes")
    result.assert_outcomes(failed=2)
    shown = PLUGINS_DOC.read_text().split("## Testing a store plugin", 1)[1]
    times, lost = re.findall(r"```text\n(.*?)```", shown, re.S)
    # The name of the subclass is what the doc's test class would print.
    output = result.stdout.str().replace("FirstJsonLinesStore", "JsonLinesStore")
    for block in (times, lost):
        for line in block.splitlines():
            assert line in output


def test_the_cross_process_test_asks_for_an_opener_or_a_declaration(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from statemachine import MemoryStore
        from statemachine.testing import StoreConformance

        class TestUndeclared(StoreConformance):
            @pytest.fixture
            def make_store(self):
                store = MemoryStore()
                return lambda: store

        class TestNothingSaid(StoreConformance):
            pass
        """
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "-k", "across_processes or unknown_job_is_none"
    )
    result.assert_outcomes(passed=1, failed=1, errors=2)
    result.stdout.fnmatch_lines(
        [
            "TestUndeclared cannot start other processes on MemoryStore: override the "
            "store_opener fixture to return a StoreOpener (how another process opens the same "
            "store), or declare `multiprocess = False` on TestUndeclared if MemoryStore keeps "
            "jobs for one process only",
        ]
    )
    result.stdout.fnmatch_lines(["*TestNothingSaid does not say how to open the store*"])


def test_a_store_that_loses_updates_between_threads_fails_saying_how_many(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import time

        import pytest
        from statemachine import ConcurrentUpdateError, MemoryStore
        from statemachine.testing import StoreConformance

        class CheckThenSleep(MemoryStore):
            # Compares the versions, lets other threads run, then writes over what is there.

            def save(self, record, *, expected_version, events, **options):
                current = self.load(record.job_id)
                if current.version != expected_version:
                    raise ConcurrentUpdateError(
                        record.job_id,
                        expected_version=expected_version,
                        actual_version=current.version,
                    )
                time.sleep(0.001)
                now = self.load(record.job_id).version
                super().save(record, expected_version=now, events=events, **options)

        class TestRacy(StoreConformance):
            multiprocess = False
            increments = 10

            @pytest.fixture
            def make_store(self):
                store = CheckThenSleep()
                return lambda: store
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "across_threads")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "4 threads each added 1 to a counter 10 times*updates were lost. "
            "CheckThenSleep.save must*"
        ]
    )


def test_the_suite_covers_every_method_of_the_store_protocol() -> None:
    names = " ".join(CONFORMANCE_TESTS)
    duties = ("create", "load", "save", "list", "history", "delete", "event_log", "restored")
    for duty in (*duties, "idempotency_key", "phase_set", "across_threads", "across_processes"):
        assert duty in names, duty
    assert len(CONFORMANCE_TESTS) == 24
