"""The Tracker and its commit protocol, on the memory store."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

import statemachine
from statemachine import (
    ConcurrentUpdateError,
    HistoryEvent,
    InvalidTransition,
    JobExists,
    JobNotFound,
    JobRecord,
    MemoryStore,
    PersistenceError,
    PhaseKitError,
    PhaseSet,
    Tracker,
    TransitionRejected,
    TransitionRequest,
    Veto,
    hookimpl,
)
from statemachine.progress_hold import HeldReport, ProgressHold

from .conftest import Recorder


class FailingStore(MemoryStore):
    """A memory store whose saves fail, as a disk or a network would."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    def save(
        self, record: JobRecord, *, expected_version: int, events: Sequence[HistoryEvent]
    ) -> None:
        if self.fail:
            raise OSError("disk full")
        super().save(record, expected_version=expected_version, events=events)


def test_create_job_stores_it_and_announces_it(tracker: Tracker, recorder: Recorder) -> None:
    job = tracker.create_job("job-42", metadata={"source": "s3://bucket"})
    assert job.version == 1
    assert tracker.get_job("job-42").to_schema() == job.to_schema()
    assert recorder.types == ["job_created"]
    assert recorder.events[0].metadata == {"source": "s3://bucket"}  # type: ignore[union-attr]


def test_create_job_twice_raises_job_exists(tracker: Tracker) -> None:
    tracker.create_job("dup")
    with pytest.raises(JobExists):
        tracker.create_job("dup")


def test_get_job_of_unknown_id_raises_job_not_found(tracker: Tracker) -> None:
    with pytest.raises(JobNotFound, match="no job 'nope'"):
        tracker.get_job("nope")


def test_metadata_must_be_json_serialisable(tracker: Tracker) -> None:
    with pytest.raises(TypeError, match="metadata holds JSON values only"):
        tracker.create_job("j", metadata={"when": object()})
    with pytest.raises(JobNotFound):
        tracker.get_job("j")


def test_huge_metadata_is_rejected(tracker: Tracker) -> None:
    with pytest.raises(ValueError, match="at most"):
        tracker.create_job("j", metadata={"blob": "x" * 2_000_000})


def test_events_arrive_once_per_change_in_protocol_order(
    tracker: Tracker, recorder: Recorder
) -> None:
    job = tracker.create_job("j")
    phase = job.phases["discovery"]
    phase.start()
    phase.update_progress(items_processed=5, items_total=10)
    phase.pause()
    phase.resume()
    phase.complete()
    assert recorder.types == [
        "job_created",
        "phase_changed",  # start: not_started -> running
        "job_status_changed",  # not_started/discovery -> running/discovery
        "progress_updated",
        "phase_changed",  # pause: aggregate unchanged (running, discovery)
        "phase_changed",  # resume
        "phase_changed",  # complete
        "job_status_changed",  # current phase discovery -> extraction
    ]
    versions = [e.version for e in recorder.events]
    assert versions == [1, 2, 2, 3, 4, 5, 6, 6]


def test_job_status_changed_carries_old_and_new_aggregate(
    tracker: Tracker, recorder: Recorder
) -> None:
    job = tracker.create_job("j")
    job.phases["discovery"].start()
    changed = [e for e in recorder.events if e.type == "job_status_changed"]
    assert len(changed) == 1
    event = changed[0]
    assert (event.old_status, event.new_status) == ("not_started", "running")  # type: ignore[union-attr]
    assert (event.old_current_phase, event.new_current_phase) == ("discovery", "discovery")  # type: ignore[union-attr]


def test_history_lists_creation_and_every_status_change(tracker: Tracker) -> None:
    job = tracker.create_job("j")
    phase = job.phases["extraction"]
    phase.start()
    phase.update_progress(items_processed=1, items_total=2)
    phase.fail("boom")
    history = tracker.history("j")
    assert [e.type for e in history] == ["job_created", "phase_changed", "phase_changed"]
    assert [(e.source, e.dest, e.error) for e in history[1:]] == [  # type: ignore[union-attr]
        ("not_started", "running", None),
        ("running", "failed", "boom"),
    ]


def test_memory_history_is_what_the_plugins_saw_and_cannot_be_changed_through_it(
    tracker: Tracker, recorder: Recorder
) -> None:
    job = tracker.create_job("j", metadata={"tags": ["a"]})
    job.phases["discovery"].start()
    job.phases["discovery"].fail("boom")
    seen = [e for e in recorder.events if e.type in ("job_created", "phase_changed")]
    history = tracker.history("j")
    assert history == seen and [e.event_id for e in history] == [e.event_id for e in seen]
    assert [type(e) for e in history] == [type(e) for e in seen]
    history[0].phases.append("extra")  # type: ignore[union-attr]
    history[0].metadata["tags"].append("b")  # type: ignore[union-attr]
    seen[0].metadata["tags"].append("c")  # type: ignore[union-attr]
    job.metadata["tags"].append("d")
    assert tracker.history("j")[0].metadata == {"tags": ["a"]}  # type: ignore[union-attr]
    assert tracker.history("j")[0].phases == list(job.spec.phase_names)  # type: ignore[union-attr]
    assert tracker.get_job("j").metadata == {"tags": ["a"]}
    job.phases["extraction"].start()  # a commit after the job's copy changed saves the original
    assert tracker.get_job("j").metadata == {"tags": ["a"]}


class Raising:
    @hookimpl
    def phase_changed(self, event: statemachine.PhaseChanged) -> None:
        raise RuntimeError("notifier down")

    @hookimpl
    def job_status_changed(self, event: statemachine.JobStatusChanged) -> None:
        raise RuntimeError("notifier down")


@pytest.mark.parametrize("position", ["first", "last"])
def test_a_raising_notifier_reaches_neither_caller_nor_state_nor_other_plugins(
    ingestion: PhaseSet, position: str, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    plugins = [Raising(), recorder] if position == "first" else [recorder, Raising()]
    with Tracker(ingestion, plugins=plugins, load_entrypoints=False) as tracker:
        job = tracker.create_job("j")
        job.phases["discovery"].start()
        assert job.phases["discovery"].status == "running"
        assert tracker.get_job("j").phases["discovery"].status == "running"
    assert recorder.types == ["job_created", "phase_changed", "job_status_changed"]
    assert "notifier down" in caplog.text
    assert "Raising" in caplog.text


class Policy:
    @hookimpl
    def before_transition(self, event: TransitionRequest) -> Veto | None:
        if event.phase == "loading" and event.trigger == "start":
            return Veto("loading waits for the maintenance window")
        return None


def test_a_veto_rejects_with_its_reason_and_changes_nothing(
    ingestion: PhaseSet, recorder: Recorder
) -> None:
    with Tracker(ingestion, plugins=[Policy(), recorder], load_entrypoints=False) as tracker:
        job = tracker.create_job("j")
        with pytest.raises(TransitionRejected, match="maintenance window") as info:
            job.phases["loading"].start()
        assert "Policy" in (info.value.rejected_by or "")
        assert job.phases["loading"].status == "not_started"
        assert job.version == 1
        assert tracker.get_job("j").version == 1
        assert len(tracker.history("j")) == 1
        job.phases["discovery"].start()  # other transitions still pass
    assert recorder.types == ["job_created", "phase_changed", "job_status_changed"]


def test_every_veto_plugin_is_asked(ingestion: PhaseSet) -> None:
    asked: list[str] = []

    class Ask:
        def __init__(self, name: str, veto: bool) -> None:
            self.name, self.veto = name, veto

        @hookimpl
        def before_transition(self, event: TransitionRequest) -> Veto | None:
            asked.append(self.name)
            return Veto(f"{self.name} says no") if self.veto else None

    plugins = [Ask("a", True), Ask("b", False), Ask("c", True)]
    with (
        Tracker(ingestion, plugins=plugins, load_entrypoints=False) as tracker,
        pytest.raises(TransitionRejected) as info,
    ):
        tracker.create_job("j").phases["discovery"].start()
    assert sorted(asked) == ["a", "b", "c"]
    assert "a says no" in info.value.reason and "c says no" in info.value.reason


def test_a_store_failure_leaves_the_job_exactly_as_before(
    ingestion: PhaseSet, recorder: Recorder
) -> None:
    store = FailingStore()
    with Tracker(ingestion, store=store, plugins=[recorder], load_entrypoints=False) as tracker:
        job = tracker.create_job("j")
        before = job.to_schema()
        store.fail = True
        with pytest.raises(PersistenceError, match="disk full"):
            job.phases["discovery"].start()
        with pytest.raises(PersistenceError):
            job.phases["discovery"].update_progress(items_processed=3)
        assert job.to_schema() == before
        store.fail = False
        job.phases["discovery"].start()  # the job is still usable
        assert tracker.get_job("j").phases["discovery"].status == "running"
    assert recorder.types == ["job_created", "phase_changed", "job_status_changed"]


def test_a_stale_writer_gets_concurrent_update_error(tracker: Tracker) -> None:
    tracker.create_job("j")
    first, second = tracker.get_job("j"), tracker.get_job("j")
    first.phases["discovery"].start()
    with pytest.raises(ConcurrentUpdateError, match=r"expected version 1.*version 2"):
        second.phases["discovery"].start()
    assert second.phases["discovery"].status == "not_started"
    fresh = tracker.get_job("j")
    assert fresh.phases["discovery"].status == "running"


def test_many_threads_driving_one_job_lose_nothing(tracker: Tracker) -> None:
    job = tracker.create_job("j")
    for phase in job.phases.values():
        phase.start()
        phase.update_progress(items_processed=0, items_total=10_000)
    errors: list[BaseException] = []

    def work(name: str) -> None:
        phase = job.phases[name]
        try:
            for _ in range(250):
                with locks[name]:
                    phase.update_progress(items_processed=phase.items_processed + 1)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    locks = {name: threading.Lock() for name in job.phases}
    threads = [threading.Thread(target=work, args=(name,)) for name in job.phases for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stored = tracker.get_job("j")
    assert [p.items_processed for p in stored.phases.values()] == [500] * 4
    assert stored.version == job.version == 1 + 4 + 4 + 2000


def test_threads_firing_the_same_trigger_commit_it_once(tracker: Tracker) -> None:
    job = tracker.create_job("j")
    phase = job.phases["discovery"]
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        try:
            phase.start()
            outcomes.append("ok")
        except InvalidTransition:
            outcomes.append("invalid")

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["invalid"] * 7 + ["ok"]
    assert len(tracker.history("j")) == 2


def test_unknown_store_scheme_names_the_known_ones(ingestion: PhaseSet) -> None:
    with pytest.raises(PhaseKitError, match=r"no store for redis:// URLs; known schemes: .*memory"):
        Tracker(ingestion, store="redis://localhost", load_entrypoints=False)


def test_spec_guards_must_be_registered_at_construction() -> None:
    spec = statemachine.parse_spec(
        """
phasekit: 1
name: g
statuses: {a: {initial: true}, b: {terminal: true, success: true}}
transitions: [{trigger: go, source: a, dest: b, conditions: [ready]}]
phases: [{name: p}]
aggregate: {status: [{otherwise: a}]}
"""
    )
    with pytest.raises(PhaseKitError, match="guards 'ready' that no plugin registers"):
        Tracker(spec, load_entrypoints=False)

    class Guards:
        @hookimpl
        def register_guards(self) -> dict[str, statemachine.Guard]:
            return {"ready": lambda ctx: ctx.data.get("ok") is True}

    with Tracker(spec, plugins=[Guards()], load_entrypoints=False) as tracker:
        job = tracker.create_job("j")
        with pytest.raises(TransitionRejected, match="guard 'ready' said no"):
            job.phases["p"].go()
        job.phases["p"].go(ok=True)
        assert job.phases["p"].status == "b"


def test_a_misspelled_hook_is_an_error_naming_it(ingestion: PhaseSet) -> None:
    class Typo:
        @hookimpl
        def phase_change(self, event: object) -> None: ...

    with pytest.raises(PhaseKitError, match=r"'phase_change'.*did you mean 'phase_changed'"):
        Tracker(ingestion, plugins=[Typo()], load_entrypoints=False)


def test_progress_coalescing_saves_at_most_once_per_interval(
    ingestion: PhaseSet, recorder: Recorder
) -> None:
    with Tracker(
        ingestion, plugins=[recorder], progress_interval=3600, load_entrypoints=False
    ) as tracker:
        job = tracker.create_job("j")
        phase = job.phases["discovery"]
        phase.start()
        for n in range(1, 101):
            phase.update_progress(items_processed=n, items_total=200)
        assert phase.items_processed == 100  # memory is current
        assert tracker.get_job("j").phases["discovery"].items_processed == 1  # one save
        assert recorder.types.count("progress_updated") == 1
        phase.pause()  # a status change saves the pending counters with it
        stored = tracker.get_job("j").phases["discovery"]
        assert (stored.status, stored.items_processed) == ("paused", 100)


def test_close_flushes_coalesced_progress(ingestion: PhaseSet, recorder: Recorder) -> None:
    store = MemoryStore()
    tracker = Tracker(
        ingestion, store=store, plugins=[recorder], progress_interval=3600, load_entrypoints=False
    )
    job = tracker.create_job("j")
    phase = job.phases["discovery"]
    phase.start()
    phase.update_progress(items_processed=1, items_total=10)
    phase.update_progress(items_processed=7)
    tracker.close()
    record = store.load("j")
    assert record is not None and record.phases[0].items_processed == 7
    assert recorder.types.count("progress_updated") == 2


def test_a_closed_tracker_refuses_changes(ingestion: PhaseSet) -> None:
    tracker = Tracker(ingestion, load_entrypoints=False)
    job = tracker.create_job("j")
    tracker.close()
    with pytest.raises(PhaseKitError, match="closed"):
        job.phases["discovery"].start()


def test_list_jobs_filters_by_overall_status(tracker: Tracker) -> None:
    tracker.create_job("a")
    tracker.create_job("b").phases["discovery"].start()
    tracker.create_job("c").phases["discovery"].fail("x")
    assert [j.job_id for j in tracker.list_jobs(status="running")] == ["b"]
    assert {j.job_id for j in tracker.list_jobs()} == {"a", "b", "c"}
    assert len(tracker.list_jobs(limit=2)) == 2


def test_from_config_reads_environment_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("PHASEKIT_TEST_STORE", "memory://")
    with Tracker.from_config({"spec": "ingestion", "store": "${PHASEKIT_TEST_STORE}"}) as tracker:
        assert isinstance(tracker.store, MemoryStore)


def test_from_config_names_a_missing_variable() -> None:
    with pytest.raises(PhaseKitError, match="PHASEKIT_SURELY_UNSET is not set"):
        Tracker.from_config({"spec": "ingestion", "store": "${PHASEKIT_SURELY_UNSET}"})


def test_from_config_rejects_unknown_notifiers() -> None:
    with pytest.raises(PhaseKitError, match="unknown notifier 'pager'"):
        Tracker.from_config({"spec": "ingestion", "notifiers": {"pager": {}}})


def test_list_jobs_pages_over_jobs_of_this_phase_set_only(ingestion: PhaseSet) -> None:
    store = MemoryStore()
    other = statemachine.load_spec("deployment")
    with (
        Tracker(ingestion, store=store, load_entrypoints=False) as mine,
        Tracker(other, store=store, load_entrypoints=False) as theirs,
    ):
        for i in range(5):
            mine.create_job(f"mine-{i}")
            theirs.create_job(f"theirs-{i}")
        first = [j.job_id for j in mine.list_jobs(limit=3)]
        rest = [j.job_id for j in mine.list_jobs(limit=3, offset=3)]
    assert len(first) == 3 and len(rest) == 2
    assert sorted(first + rest) == [f"mine-{i}" for i in range(5)]


class StoreWithoutSpecFilter(MemoryStore):
    """A store whose ``list`` has only the protocol's parameters."""

    def list(  # type: ignore[override]
        self, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[JobRecord]:
        return super().list(status=status, limit=limit, offset=offset)


def test_list_jobs_filters_by_phase_set_on_stores_without_the_spec_filter(
    ingestion: PhaseSet,
) -> None:
    store = StoreWithoutSpecFilter()
    other = statemachine.load_spec("deployment")
    with (
        Tracker(ingestion, store=store, load_entrypoints=False) as mine,
        Tracker(other, store=store, load_entrypoints=False) as theirs,
    ):
        for i in range(4):
            theirs.create_job(f"theirs-{i}")
            mine.create_job(f"mine-{i}")
        first = [j.job_id for j in mine.list_jobs(limit=3)]
        rest = [j.job_id for j in mine.list_jobs(limit=3, offset=3)]
    assert len(first) == 3 and len(rest) == 1
    assert sorted(first + rest) == [f"mine-{i}" for i in range(4)]


def test_an_action_that_raises_leaves_the_change_committed_and_announced(
    recorder: Recorder,
) -> None:
    spec = statemachine.parse_spec(
        """
phasekit: 1
name: a
statuses: {a: {initial: true}, b: {terminal: true, success: true}}
transitions: [{trigger: go, source: a, dest: b, after: [page]}]
phases: [{name: p}]
aggregate: {status: [{otherwise: a}]}
"""
    )

    class Actions:
        @hookimpl
        def register_actions(self) -> dict[str, statemachine.Action]:
            def page(ctx: statemachine.TransitionContext) -> None:
                raise RuntimeError("pager unreachable")

            return {"page": page}

    with Tracker(spec, plugins=[Actions(), recorder], load_entrypoints=False) as tracker:
        job = tracker.create_job("j")
        with pytest.raises(RuntimeError, match="pager unreachable"):
            job.phases["p"].go()
        assert job.phases["p"].status == "b"  # an action runs after the commit: it cannot undo it
        assert tracker.get_job("j").phases["p"].status == "b"
    assert recorder.types == ["job_created", "phase_changed", "job_status_changed"]


def test_installed_plugins_load_through_their_entry_points(
    ingestion: PhaseSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PHASEKIT_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("PHASEKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    with Tracker(ingestion) as tracker:
        loaded = {i.name: i for i in tracker.plugin_info() if i.source == "entry point"}
    assert {"logging", "webhook", "sql"} <= set(loaded)
    assert loaded["sql"].hooks == ["register_stores"]
    assert loaded["sql"].distribution == "phasekit"


def test_disable_plugins_skips_the_named_entry_points(
    ingestion: PhaseSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PHASEKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("PHASEKIT_DISABLE_PLUGINS", "webhook, logging")
    with Tracker(ingestion) as tracker:
        names = {i.name for i in tracker.plugin_info()}
    assert "sql" in names
    assert not names & {"webhook", "logging"}


def test_disable_plugins_never_drops_a_plugin_passed_explicitly(
    ingestion: PhaseSet, monkeypatch: pytest.MonkeyPatch, recorder: Recorder
) -> None:
    monkeypatch.setenv("PHASEKIT_DISABLE_PLUGINS", "audit")
    with Tracker(ingestion, plugins=[recorder], load_entrypoints=False) as tracker:
        tracker.plugins.register(recorder.__class__(), name="audit")
        tracker.create_job("j").phases["discovery"].start()
        assert "audit" in {i.name for i in tracker.plugin_info()}
    assert recorder.types == ["job_created", "phase_changed", "job_status_changed"]


def test_disable_autoload_skips_every_entry_point(
    ingestion: PhaseSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHASEKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    with pytest.raises(PhaseKitError, match="no store for sqlite:// URLs; known schemes: memory"):
        Tracker(ingestion, store="sqlite:///never.db")


@pytest.mark.parametrize(
    ("job_id", "metadata", "kind"),
    [
        ("", None, ValueError),
        ("x" * 300, None, ValueError),
        (42, None, TypeError),
        ("ok", {"when": object()}, TypeError),
    ],
)
def test_argument_errors_are_phasekit_errors_and_builtin_ones(
    tracker: Tracker, job_id: Any, metadata: Any, kind: type[Exception]
) -> None:
    with pytest.raises(kind) as caught:
        tracker.create_job(job_id, metadata=metadata)
    assert isinstance(caught.value, PhaseKitError)
    wanted = (
        statemachine.InvalidArgument if kind is ValueError else statemachine.InvalidArgumentType
    )
    assert isinstance(caught.value, wanted)


def test_a_lone_surrogate_is_refused_alike_by_the_memory_store(tracker: Tracker) -> None:
    # The SQL stores cannot encode it; every store gets the same answer before it is asked.
    with pytest.raises(ValueError, match="lone surrogate"):
        tracker.create_job("j", metadata={"name": "\udc80"})
    phase = tracker.create_job("k").phases["discovery"]
    with pytest.raises(ValueError, match="lone surrogate"):
        phase.fail("bad \udc80 error")
    assert phase.status == "not_started"


def test_listing_bounds_are_checked_alike_on_every_store(tracker: Tracker, tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="limit must be >= 0"):
        tracker.store.list(limit=-1)
    with pytest.raises(ValueError, match="offset must be >= 0"):
        tracker.list_jobs(offset=-5)
    with Tracker("ingestion", store=f"sqlite:///{tmp_path / 'jobs.db'}") as on_sqlite:
        with pytest.raises(ValueError, match=r"limit must be at most"):
            on_sqlite.list_jobs(limit=10**20)
        with pytest.raises(ValueError, match=r"limit must be from 0 to"):
            on_sqlite.store.list(limit=10**20)
        with pytest.raises(ValueError, match=r"limit must be from 0 to"):
            on_sqlite.store.list(limit=-1)


def test_a_closed_tracker_creates_no_job(ingestion: PhaseSet) -> None:
    tracker = Tracker(ingestion, load_entrypoints=False)
    tracker.close()
    with pytest.raises(PhaseKitError, match="closed"):
        tracker.create_job("late")
    assert len(tracker.store) == 0  # type: ignore[arg-type]


def test_progress_save_times_are_kept_for_one_interval_not_for_every_job() -> None:
    spec = statemachine.load_spec("ingestion")
    hold = ProgressHold(0.05, lambda: None)

    def first_report(job_id: str) -> HeldReport:
        return HeldReport(spec.new_job(job_id), 0, 1, 10, datetime.now(UTC))

    assert not any(hold.hold_or_save(first_report(f"a{i}")) for i in range(1000))  # all saved
    time.sleep(0.1)  # every save above is now older than the interval
    assert not any(hold.hold_or_save(first_report(f"b{i}")) for i in range(1000))
    assert hold.jobs_remembered < 1100
