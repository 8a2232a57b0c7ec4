"""Every hook: documented, tested, and behaving as docs/hooks.md says."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

import statemachine
from statemachine import (
    MemoryStore,
    PhaseKitError,
    PhaseSet,
    Tracker,
    TransitionContext,
    TransitionRejected,
    TransitionRequest,
    Veto,
    hookimpl,
)
from statemachine.hooks import HOOK_KINDS, HOOK_NAMES
from statemachine.hooks import specs as hookspecs

from .conftest import Recorder

DOCS = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"


def test_hook_names_are_the_contract() -> None:
    assert set(HOOK_NAMES) == {
        "register_stores",
        "register_notifiers",
        "register_guards",
        "register_actions",
        "before_transition",
        "job_created",
        "phase_changed",
        "progress_updated",
        "job_status_changed",
        "job_deleted",
    }


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_is_documented_with_its_arguments(hook: str) -> None:
    args = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert re.search(rf"^## {hook}\({re.escape(args)}\)$", DOCS.read_text(), re.M), (
        f"docs/hooks.md needs a section '## {hook}({args})'"
    )


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_has_a_test(hook: str) -> None:
    assert f"test_hook_{hook}" in globals(), f"tests/test_hooks.py needs test_hook_{hook}"


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_has_a_docstring(hook: str) -> None:
    assert (getattr(hookspecs, hook).__doc__ or "").strip()


def test_hook_names_are_the_declared_hook_specs() -> None:
    declared = {n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "phasekit_spec")}
    assert set(HOOK_NAMES) == declared


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_docstring_states_its_calling_rule(hook: str) -> None:
    doc = getattr(hookspecs, hook).__doc__ or ""
    assert f"{HOOK_KINDS[hook].capitalize()}:" in doc


def test_hook_register_stores(ingestion: PhaseSet) -> None:
    made: list[tuple[str, dict[str, Any]]] = []

    class Scratch:
        @hookimpl
        def register_stores(self) -> dict[str, Any]:
            def factory(url: str, **options: Any) -> MemoryStore:
                made.append((url, options))
                return MemoryStore()

            return {"scratch": factory}

    with Tracker(
        ingestion,
        store="scratch://x",
        store_options={"size": 3},
        plugins=[Scratch()],
        load_entrypoints=False,
    ) as tracker:
        assert isinstance(tracker.store, MemoryStore)
    assert made == [("scratch://x", {"size": 3})]


def test_hook_register_notifiers(ingestion: PhaseSet) -> None:
    seen: list[str] = []

    class Printer:
        def __init__(self, prefix: str) -> None:
            self.prefix = prefix
            self.closed = False

        @hookimpl
        def phase_changed(self, event: statemachine.PhaseChanged) -> None:
            seen.append(f"{self.prefix}:{event.dest}")

        def close(self) -> None:
            seen.append("closed")

    class Registers:
        @hookimpl
        def register_notifiers(self) -> dict[str, Any]:
            return {"printer": Printer}

    tracker = Tracker.from_config(
        {"spec": "ingestion", "notifiers": {"printer": {"prefix": "p"}}},
        plugins=[Registers()],
        load_entrypoints=False,
    )
    tracker.create_job("j").phases["discovery"].start()
    tracker.close()
    assert seen == ["p:running", "closed"]


def test_hook_register_guards(ingestion: PhaseSet) -> None:
    spec = statemachine.parse_spec(
        """
phasekit: 1
name: guarded
statuses: {idle: {initial: true}, busy: {active: true}, done: {terminal: true, success: true}}
transitions:
  - {trigger: start, source: idle, dest: busy, unless: [frozen]}
  - {trigger: finish, source: busy, dest: done}
phases: [{name: only}]
aggregate: {status: [{all: [done], then: done}, {otherwise: idle}]}
"""
    )
    calls: list[tuple[str, str, str]] = []

    class Guards:
        @hookimpl
        def register_guards(self) -> dict[str, Any]:
            def frozen(ctx: TransitionContext) -> bool:
                calls.append((ctx.source, ctx.dest, ctx.phase.status))
                return bool(ctx.data.get("frozen"))

            return {"frozen": frozen}

    with Tracker(spec, plugins=[Guards()], load_entrypoints=False) as tracker:
        phase = tracker.create_job("j").phases["only"]
        with pytest.raises(TransitionRejected, match="'frozen'"):
            phase.start(frozen=True)
        phase.start()
        assert phase.status == "busy"
    assert calls == [("idle", "busy", "idle")] * 2  # the phase is unchanged while guarded


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "tracked"])
def test_a_guard_cannot_change_the_job_it_decides_on(detached: bool) -> None:
    spec = statemachine.parse_spec(
        """
phasekit: 1
name: sneaky
statuses: {idle: {initial: true}, busy: {active: true}, held: {}, done: {terminal: true}}
transitions:
  - {trigger: start, source: idle, dest: busy}
  - {trigger: hold, source: busy, dest: held}
  - {trigger: finish, source: busy, dest: done, conditions: [meddles]}
phases: [{name: only}]
aggregate: {status: [{all: [done], then: done}, {otherwise: idle}]}
"""
    )

    def meddles(ctx: TransitionContext) -> bool:
        ctx.phase.hold()  # would move the phase under the transition being decided
        return True

    guards = {"meddles": meddles}
    if detached:
        job = spec.new_job("j", guards=guards)
        phase = job.phases["only"]
        phase.start()
        with pytest.raises(PhaseKitError, match="guards decide whether a transition"):
            phase.finish()
        assert phase.status == "busy"
        return

    class Guards:
        @hookimpl
        def register_guards(self) -> dict[str, Any]:
            return guards

    with Tracker(spec, plugins=[Guards()], load_entrypoints=False) as tracker:
        phase = tracker.create_job("j").phases["only"]
        phase.start()
        with pytest.raises(PhaseKitError, match="guards decide whether a transition"):
            phase.finish()
        assert phase.status == "busy"
        assert [e.dest for e in tracker.history("j")[1:]] == ["busy"]  # nothing else committed


def test_hook_register_actions() -> None:
    spec = statemachine.parse_spec(
        """
phasekit: 1
name: acted
statuses: {idle: {initial: true}, done: {terminal: true, success: true}}
transitions: [{trigger: finish, source: idle, dest: done, after: [celebrate]}]
phases: [{name: only}]
aggregate: {status: [{all: [done], then: done}, {otherwise: idle}]}
"""
    )
    seen: list[tuple[str, int]] = []

    class Actions:
        @hookimpl
        def register_actions(self) -> dict[str, Any]:
            return {"celebrate": lambda ctx: seen.append((ctx.phase.status, ctx.job.version))}

    with Tracker(spec, plugins=[Actions()], load_entrypoints=False) as tracker:
        tracker.create_job("j").phases["only"].finish()
    assert seen == [("done", 2)]  # after the commit: new status, new version


def test_hook_before_transition(ingestion: PhaseSet) -> None:
    requests: list[TransitionRequest] = []

    class Policy:
        @hookimpl
        def before_transition(self, event: TransitionRequest) -> Veto | None:
            requests.append(event)
            return Veto("not today") if event.trigger == "complete" else None

    with Tracker(ingestion, plugins=[Policy()], load_entrypoints=False) as tracker:
        phase = tracker.create_job("j").phases["discovery"]
        phase.start(worker="w1")
        with pytest.raises(TransitionRejected, match="not today"):
            phase.complete()
        assert phase.status == "running"
    assert [(r.trigger, r.source, r.dest) for r in requests] == [
        ("start", "not_started", "running"),
        ("complete", "running", "completed"),
    ]
    assert requests[0].data == {"worker": "w1"}


def test_a_raising_veto_plugin_rejects_the_transition(ingestion: PhaseSet) -> None:
    class Broken:
        @hookimpl
        def before_transition(self, event: TransitionRequest) -> Veto | None:
            raise RuntimeError("policy service down")

    with Tracker(ingestion, plugins=[Broken()], load_entrypoints=False) as tracker:
        phase = tracker.create_job("j").phases["discovery"]
        with pytest.raises(TransitionRejected, match="policy service down"):
            phase.start()
        assert phase.status == "not_started"


@pytest.mark.parametrize("answer", [False, "denied", 0, True])
def test_a_veto_answer_that_is_neither_none_nor_a_veto_rejects_the_transition(
    ingestion: PhaseSet, answer: object
) -> None:
    class Sloppy:
        @hookimpl
        def before_transition(self, event: TransitionRequest) -> object:
            return answer

    with Tracker(ingestion, plugins=[Sloppy()], load_entrypoints=False) as tracker:
        phase = tracker.create_job("j").phases["discovery"]
        with pytest.raises(TransitionRejected, match="not None or a Veto"):
            phase.start()
        assert phase.status == "not_started"
        assert tracker.get_job("j").version == 1  # nothing was committed


@pytest.mark.parametrize("kind", ["wrapper", "hookwrapper"])
def test_a_hook_wrapper_is_refused_at_registration(ingestion: PhaseSet, kind: str) -> None:
    class Wrapping:
        @hookimpl(**{kind: True})
        def before_transition(self, event: TransitionRequest) -> Any:
            return (yield)

    with pytest.raises(PhaseKitError, match=rf"hook wrapper \({kind}=True\)"):
        Tracker(ingestion, plugins=[Wrapping()], load_entrypoints=False)


def test_hook_job_created(tracker: Tracker, recorder: Recorder) -> None:
    tracker.create_job("j", metadata={"k": 1})
    (event,) = recorder.events
    assert isinstance(event, statemachine.JobCreated)
    assert (event.job_id, event.version, event.spec, event.initial_status) == (
        "j",
        1,
        "ingestion",
        "not_started",
    )
    assert event.phases == ["discovery", "extraction", "transformation", "loading"]


def test_hook_phase_changed(tracker: Tracker, recorder: Recorder) -> None:
    tracker.create_job("j").phases["extraction"].fail("no input")
    event = recorder.events[1]
    assert isinstance(event, statemachine.PhaseChanged)
    assert (event.phase, event.trigger, event.source, event.dest, event.error) == (
        "extraction",
        "fail",
        "not_started",
        "failed",
        "no input",
    )
    assert event.at.tzinfo is not None and event.version == 2


def test_hook_progress_updated(tracker: Tracker, recorder: Recorder) -> None:
    phase = tracker.create_job("j").phases["discovery"]
    phase.start()
    phase.update_progress(items_processed=30, items_total=60)
    event = recorder.events[-1]
    assert isinstance(event, statemachine.ProgressUpdated)
    assert (event.items_processed, event.items_total, event.progress, event.job_progress) == (
        30,
        60,
        50.0,
        12.5,
    )


def test_hook_job_status_changed(tracker: Tracker, recorder: Recorder) -> None:
    phase = tracker.create_job("j").phases["discovery"]
    phase.start()
    phase.pause()  # aggregate unchanged: running, discovery
    phase.resume()
    phase.complete()  # current phase moves on
    changes = [e for e in recorder.events if isinstance(e, statemachine.JobStatusChanged)]
    assert [(c.old_current_phase, c.new_current_phase, c.new_status) for c in changes] == [
        ("discovery", "discovery", "running"),
        ("discovery", "extraction", "running"),
    ]
    assert changes[1].progress == 25.0


def test_plugins_get_the_very_events_the_store_logged(tracker: Tracker, recorder: Recorder) -> None:
    job = tracker.create_job("j")
    job.phases["discovery"].start()
    job.phases["discovery"].update_progress(items_processed=1, items_total=2)
    store = tracker.store
    assert isinstance(store, statemachine.EventLog)
    logged = [e.event for e in store.read_events()]
    assert [e.event_id for e in logged] == [e.event_id for e in recorder.events]
    assert logged == recorder.events


def test_hook_job_deleted(tracker: Tracker, recorder: Recorder) -> None:
    tracker.create_job("j").phases["discovery"].start()
    deleted = tracker.delete_job("j")
    assert recorder.events[-1] == deleted
    assert isinstance(deleted, statemachine.JobDeleted)
    assert (deleted.job_id, deleted.version) == ("j", 3)
    with pytest.raises(statemachine.JobNotFound):
        tracker.get_job("j")
    assert tracker.history("j") == []
    with pytest.raises(statemachine.JobNotFound):
        tracker.delete_job("j")
