"""Random phase sets driven at random on a SQLite store, step by step against a reference model.

The reference model below is written from the documented rules (docs/format.md and the
runtime contract), from the generated dict alone: it shares no code with phasekit.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from statemachine.plugins.sql import SQLStore

from statemachine import (
    ConcurrentUpdateError,
    InvalidTransition,
    JobCreated,
    JobState,
    JobStatusChanged,
    PhaseChanged,
    PhaseRecord,
    ProgressUpdated,
    SpecError,
    Tracker,
    TransitionContext,
    TransitionRejected,
    hookimpl,
    spec_from_dict,
)

from .conftest import Recorder

STATUSES = ["st0", "st1", "st2", "st3", "st4", "st5"]
TRIGGERS = ["go", "halt", "hold", "finish", "drop", "redo"]
PHASES = ["p0", "p1", "p2", "p3"]
JOB_LEVEL = ["mixed", "blocked"]  # overall statuses that are not phase statuses
GUARDS = {"yes": True, "no": False}  # and "flag", which reads the trigger's data
JOBS = ["job-a", "job-b"]
DEFAULT_CAP = 99.0


# -- phase sets, as the dicts a user would write ----------------------------------------------


@st.composite
def phase_sets(draw: st.DrawFn) -> dict[str, Any]:
    """A phase-set dict: flags, transitions (lists, "*", guards, actions), weights, rules."""
    names = STATUSES[: draw(st.integers(2, len(STATUSES)))]
    initial = draw(st.sampled_from(names))
    statuses: dict[str, dict[str, bool]] = {}
    for name in names:
        flags: dict[str, bool] = {"initial": True} if name == initial else {}
        # An initial status that is terminal is legal and odd: drawn now and then.
        terminal = draw(st.integers(0, 3 if name == initial else 1)) == 0
        if terminal:
            flags["terminal"] = True
            if draw(st.booleans()):
                flags["success"] = True
        elif draw(st.booleans()):
            flags["active"] = True
        statuses[name] = flags

    def guard_names() -> list[str]:
        return draw(st.lists(st.sampled_from([*GUARDS, "flag"]), max_size=2, unique=True))

    transitions = []
    for _ in range(draw(st.integers(1, 8))):
        transition: dict[str, Any] = {
            "trigger": draw(st.sampled_from(TRIGGERS)),
            "source": draw(
                st.sampled_from(names)
                | st.lists(st.sampled_from(names), min_size=1, max_size=3)
                | st.just("*")
            ),
            "dest": draw(st.sampled_from(names)),
        }
        if draw(st.integers(0, 3)) == 0:
            transition["conditions"] = guard_names()
        if draw(st.integers(0, 5)) == 0:
            transition["unless"] = guard_names()
        if draw(st.integers(0, 3)) == 0:
            transition["after"] = ["note"]
        transitions.append(transition)

    phases = []
    for name in PHASES[: draw(st.integers(1, len(PHASES)))]:
        phase: dict[str, Any] = {"name": name}
        weight = draw(st.sampled_from([None, 1, 2, 0.5, 3.25, 1000]))
        if weight is not None:
            phase["weight"] = weight
        phases.append(phase)

    results = st.sampled_from(names + JOB_LEVEL)
    some_statuses = st.lists(st.sampled_from(names), min_size=1, max_size=3)
    rules: list[dict[str, Any]] = draw(
        st.lists(
            st.fixed_dictionaries({"any": some_statuses, "then": results})
            | st.fixed_dictionaries({"all": some_statuses, "then": results}),
            max_size=4,
        )
    )
    aggregate: dict[str, Any] = {"status": [*rules, {"otherwise": draw(results)}]}
    if draw(st.booleans()):
        aggregate["current_phase"] = draw(st.lists(some_statuses, min_size=1, max_size=3))

    definition: dict[str, Any] = {
        "phasekit": 1,
        "name": "random",
        "statuses": statuses,
        "transitions": transitions,
        "phases": phases,
        "aggregate": aggregate,
    }
    cap = draw(st.sampled_from([None, 0, 12.5, 50, 99, 100]))
    if cap is not None:
        definition["progress"] = {"cap_until_success": cap}
    return definition


# -- the reference model -------------------------------------------------------------------


@dataclass
class PhaseModel:
    """What a phase should be: the fields of ``PhaseState``."""

    name: str
    status: str
    progress: float = 0.0
    items_processed: int = 0
    items_total: int | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    error: str | None = None
    entered_at: datetime | None = None  # of the status: None until the first change

    def record(self) -> PhaseRecord:
        return PhaseRecord(
            phase_name=self.name,
            status=self.status,
            progress=self.progress,
            items_processed=self.items_processed,
            items_total=self.items_total,
            started_at=self.started_at,
            completed_at=self.completed_at,
            updated_at=self.updated_at,
            error=self.error,
            entered_at=self.entered_at,
        )


@dataclass
class JobModel:
    """What a job should be, and the status changes its history should list."""

    phases: list[PhaseModel]
    created_at: datetime
    version: int = 1
    updated_at: datetime | None = None
    history: list[tuple[int, str, str, str, str, str | None]] = field(default_factory=list)


class Reference:
    """The rules of a phase set, read from its dict."""

    def __init__(self, definition: Mapping[str, Any]) -> None:
        self.flags: dict[str, dict[str, bool]] = definition["statuses"]
        self.initial = next(s for s, f in self.flags.items() if f.get("initial"))
        self.transitions = [
            (
                t["trigger"],
                list(self.flags) if t["source"] == "*" else _as_list(t["source"]),
                t["dest"],
                t.get("conditions", []),
                t.get("unless", []),
                t.get("after", []),
            )
            for t in definition["transitions"]
        ]
        self.phases = [p["name"] for p in definition["phases"]]
        self.weights = [float(p.get("weight", 1)) for p in definition["phases"]]
        self.cap = float(definition.get("progress", {}).get("cap_until_success", DEFAULT_CAP))
        self.rules = definition["aggregate"]["status"]
        groups = definition["aggregate"].get("current_phase")
        if groups is None:
            groups = [
                [
                    s
                    for s, f in self.flags.items()
                    if not f.get("initial") and not f.get("terminal")
                ],
                [s for s, f in self.flags.items() if f.get("terminal") and not f.get("success")],
                [self.initial],
            ]
        self.groups = groups

    def flag(self, status: str, name: str) -> bool:
        return bool(self.flags[status].get(name))

    def allowed(self, status: str) -> list[str]:
        """Triggers declared from ``status``, in the order of their first transition."""
        return list(dict.fromkeys(t[0] for t in self.transitions if status in t[1]))

    def choose(self, status: str, trigger: str, flag: bool) -> tuple[str, int] | str:
        """The (dest, transition index) ``trigger`` takes, else the name of the error."""
        candidates = [
            i for i, t in enumerate(self.transitions) if t[0] == trigger and status in t[1]
        ]
        if not candidates:
            return "invalid"
        guards = {**GUARDS, "flag": flag}
        for i in candidates:
            _, _, dest, conditions, unless, _ = self.transitions[i]
            if all(guards[g] for g in conditions) and not any(guards[g] for g in unless):
                return dest, i
        return "rejected"

    def overall_status(self, statuses: list[str]) -> str:
        present = set(statuses)
        for step in self.rules:
            if "otherwise" in step:
                return str(step["otherwise"])
            if "any" in step and present & set(step["any"]):
                return str(step["then"])
            if "all" in step and present <= set(step["all"]):
                return str(step["then"])
        raise AssertionError("the last rule is otherwise")

    def current_phase(self, statuses: list[str]) -> str | None:
        for group in self.groups:
            for name, status in zip(self.phases, statuses, strict=True):
                if status in group:
                    return name
        return None

    def progress(self, progresses: list[float]) -> float:
        weighted = sum(w * p for w, p in zip(self.weights, progresses, strict=True))
        return min(100.0, max(0.0, weighted / sum(self.weights)))


def _as_list(source: str | list[str]) -> list[str]:
    return [source] if isinstance(source, str) else list(source)


class Plugin(Recorder):
    """Registers the guards and the action phase sets name, and records every notification."""

    def __init__(self) -> None:
        super().__init__()
        self.actions: list[tuple[str, str, str, str]] = []

    @hookimpl
    def register_guards(self) -> dict[str, Any]:
        guards: dict[str, Any] = {name: (lambda ctx, v=v: v) for name, v in GUARDS.items()}
        guards["flag"] = lambda ctx: bool(ctx.data.get("flag"))
        return guards

    @hookimpl
    def register_actions(self) -> dict[str, Any]:
        def note(ctx: TransitionContext) -> None:
            self.actions.append((ctx.job.job_id, ctx.phase.phase_name, ctx.trigger, ctx.dest))

        return {"note": note}


# -- the machine ------------------------------------------------------------------------------


class RandomDriving(RuleBasedStateMachine):
    """A tracker on a SQLite file, its jobs, and the model each step is checked against."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="phasekit-stateful-"))
        self.tracker: Tracker | None = None
        self.plugin = Plugin()
        self.jobs: dict[str, JobState] = {}
        self.stale: dict[str, JobState] = {}
        self.models: dict[str, JobModel] = {}

    @initialize(definition=phase_sets())
    def load_and_create_jobs(self, definition: dict[str, Any]) -> None:
        try:
            spec = spec_from_dict(definition)
        except SpecError:
            assume(False)
        self.ref = Reference(definition)
        self.tracker = Tracker(
            spec,
            store=SQLStore(f"sqlite:///{self.folder / 'jobs.db'}"),
            plugins=[self.plugin],
            load_entrypoints=False,
        )
        for job_id in JOBS:
            before = datetime.now(UTC)
            job = self.tracker.create_job(job_id, metadata={"id": job_id})
            assert before <= job.created_at <= datetime.now(UTC)
            self.jobs[job_id] = job
            self.models[job_id] = JobModel(
                phases=[PhaseModel(name, self.ref.initial) for name in self.ref.phases],
                created_at=job.created_at,
                updated_at=job.created_at,
            )
            [created] = self.plugin.take()
            assert isinstance(created, JobCreated)
            assert (created.version, created.phases) == (1, self.ref.phases)
            assert created.initial_status == self.ref.initial

    def teardown(self) -> None:
        if self.tracker is not None:
            self.tracker.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- rules ---------------------------------------------------------------------------------

    @rule(
        job_id=st.sampled_from(JOBS),
        index=st.integers(0, len(PHASES) - 1),
        pick=st.integers(0, 9),
        any_trigger=st.sampled_from([*TRIGGERS, "nope"]),
        error=st.none() | st.sampled_from(["", "disk full", "quote ' and \\ and %s"]),
        flag=st.booleans(),
    )
    def fire(
        self, *, job_id: str, index: int, pick: int, any_trigger: str, error: str | None, flag: bool
    ) -> None:
        """Mostly a trigger declared from the phase's status; now and then any name at all."""
        job, model = self.jobs[job_id], self.models[job_id]
        phase = model.phases[index % len(model.phases)]
        allowed = self.ref.allowed(phase.status)
        trigger = allowed[pick % len(allowed)] if allowed and pick < 8 else any_trigger
        expected = self.ref.choose(phase.status, trigger, flag)
        old_aggregate = self._aggregate(model)
        noted: list[tuple[str, str, str, str]] = []  # the action's calls, when one runs
        before = datetime.now(UTC)
        try:
            job.phases[phase.name].trigger(trigger, error=error, flag=flag)
        except InvalidTransition:
            assert expected == "invalid"
        except TransitionRejected:
            assert expected == "rejected"
        else:
            assert isinstance(expected, tuple), f"{trigger} from {phase.status}: {expected}"
            dest, transition = expected
            at = self._committed_at(job, before)
            source = phase.status
            phase.started_at = phase.started_at or (at if self.ref.flag(dest, "active") else None)
            phase.completed_at = at if self.ref.flag(dest, "terminal") else None
            phase.updated_at = at
            phase.entered_at = at
            if error is None and not self.ref.flag(dest, "terminal"):
                phase.error = None
            elif error is not None:
                phase.error = error
            if self.ref.flag(dest, "success"):
                phase.progress = 100.0
            phase.status = dest
            model.version += 1
            model.updated_at = at
            model.history.append((model.version, phase.name, trigger, source, dest, error))
            if self.ref.transitions[transition][5]:
                noted = [(job_id, phase.name, trigger, dest)]
            changed = PhaseChanged(
                job_id=job_id,
                version=model.version,
                at=at,
                phase=phase.name,
                trigger=trigger,
                source=source,
                dest=dest,
                error=error,
            )
            events = self.plugin.take()
            assert [e.model_dump(exclude={"event_id"}) for e in events[:1]] == [
                changed.model_dump(exclude={"event_id"})
            ]
            self._check_status_event(events[1:], model, old_aggregate)
        assert self.plugin.actions == noted
        self.plugin.actions.clear()
        assert self.plugin.take() == []

    @rule(
        job_id=st.sampled_from(JOBS),
        index=st.integers(0, len(PHASES) - 1),
        processed=st.integers(-1, 30),
        total=st.none() | st.integers(0, 30) | st.just(-1),
    )
    def report_progress(self, job_id: str, index: int, processed: int, total: int | None) -> None:
        job, model = self.jobs[job_id], self.models[job_id]
        phase = model.phases[index % len(model.phases)]
        known_total = phase.items_total if total is None else total
        before = datetime.now(UTC)
        try:
            job.phases[phase.name].update_progress(processed, total)
        except InvalidTransition:
            assert self.ref.flag(phase.status, "terminal")
        except ValueError:
            assert not self.ref.flag(phase.status, "terminal")
            assert processed < 0 or (known_total is not None and not 0 <= processed <= known_total)
        else:
            assert not self.ref.flag(phase.status, "terminal")
            at = self._committed_at(job, before)
            if known_total == 0:
                phase.progress = self.ref.cap
            elif known_total is not None:
                phase.progress = min(self.ref.cap, 100.0 * processed / known_total)
            phase.items_processed, phase.items_total = processed, known_total
            # A report fixes the time a phase entered its status when it was not kept: the
            # phase's last change, else the job's creation.
            phase.entered_at = phase.entered_at or phase.updated_at or model.created_at
            phase.updated_at = at
            model.version += 1
            model.updated_at = at
            [event] = self.plugin.take()
            assert isinstance(event, ProgressUpdated)
            assert (event.version, event.phase) == (model.version, phase.name)
            assert (event.items_processed, event.items_total) == (processed, known_total)
            assert event.progress == phase.progress
            assert math.isclose(event.job_progress, self._progress(model), abs_tol=1e-9)
        assert self.plugin.take() == []

    @rule(job_id=st.sampled_from(JOBS))
    def restore(self, job_id: str) -> None:
        """The store gives the job back identical, firing no hook; driving goes on with it."""
        assert self.tracker is not None
        live = self.jobs[job_id]
        restored = self.tracker.get_job(job_id)
        assert restored.to_schema() == live.to_schema()
        assert self.plugin.take() == []
        self.stale[job_id] = live
        self.jobs[job_id] = restored

    @rule(job_id=st.sampled_from(JOBS), data=st.data())
    def stale_copy_is_refused(self, job_id: str, data: st.DataObject) -> None:
        """A copy older than the store gets ConcurrentUpdateError and changes nothing."""
        stale = self.stale.get(job_id)
        if stale is None:
            return
        open_phases = [p for p in stale.phases.values() if not p.is_terminal()]
        if stale.version == self.models[job_id].version or not open_phases:
            return
        phase = data.draw(st.sampled_from(open_phases))
        before = stale.to_schema()
        try:
            phase.update_progress(phase.items_processed)
        except ConcurrentUpdateError:
            pass
        else:
            raise AssertionError("a stale copy committed")
        assert stale.to_schema() == before
        assert self.plugin.take() == []

    # -- checks --------------------------------------------------------------------------------

    @invariant()
    def jobs_match_the_model_in_memory_and_in_the_store(self) -> None:
        if self.tracker is None:
            return
        for job_id, job in self.jobs.items():
            model = self.models[job_id]
            # These phase sets declare no deadlines (tests/test_deadlines.py has them).
            expected = [p.record() for p in model.phases]
            assert [p.to_record() for p in job.phases.values()] == expected
            statuses = [p.status for p in model.phases]
            aggregate = self._aggregate(model)
            assert (job.get_overall_status(), job.get_current_phase()) == aggregate
            assert math.isclose(job.get_overall_progress(), self._progress(model), abs_tol=1e-9)
            assert (job.version, job.created_at, job.updated_at) == (
                model.version,
                model.created_at,
                model.updated_at,
            )
            for phase, status in zip(job.phases.values(), statuses, strict=True):
                assert phase.allowed_triggers() == self.ref.allowed(status)
                assert phase.is_terminal() == self.ref.flag(status, "terminal")
                assert phase.is_active() == self.ref.flag(status, "active")

            stored = self.tracker.store.load(job_id)
            assert stored is not None
            assert list(stored.phases) == expected
            assert (stored.version, stored.status, stored.current_phase) == (
                model.version,
                *aggregate,
            )
            assert stored.metadata == {"id": job_id}
            assert math.isclose(stored.progress, self._progress(model), abs_tol=1e-9)

    @invariant()
    def history_is_the_list_of_status_changes(self) -> None:
        if self.tracker is None:
            return
        for job_id, model in self.models.items():
            created, *changes = self.tracker.history(job_id)
            assert isinstance(created, JobCreated) and created.version == 1
            assert [
                (e.version, e.phase, e.trigger, e.source, e.dest, e.error)
                for e in changes
                if isinstance(e, PhaseChanged)
            ] == model.history
            assert len(changes) == len(model.history)

    # -- helpers -------------------------------------------------------------------------------

    def _aggregate(self, model: JobModel) -> tuple[str, str | None]:
        statuses = [p.status for p in model.phases]
        return self.ref.overall_status(statuses), self.ref.current_phase(statuses)

    def _progress(self, model: JobModel) -> float:
        return self.ref.progress([p.progress for p in model.phases])

    def _committed_at(self, job: JobState, before: datetime) -> datetime:
        """The commit's time (the job's new ``updated_at``), checked to fall within the call."""
        at = job.updated_at
        assert before <= at <= datetime.now(UTC)
        return at

    def _check_status_event(
        self, events: list[Any], model: JobModel, old: tuple[str, str | None]
    ) -> None:
        new = self._aggregate(model)
        if new == old:
            assert events == []
            return
        [event] = events
        assert isinstance(event, JobStatusChanged)
        assert event.version == model.version
        assert (event.old_status, event.old_current_phase) == old
        assert (event.new_status, event.new_current_phase) == new


RandomDriving.TestCase.settings = settings(
    max_examples=250,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
TestTrackerAgainstTheReferenceModel = RandomDriving.TestCase


def test_the_reference_model_reads_the_bundled_phase_set_like_phasekit() -> None:
    """The model's rules agree with phasekit on a known phase set (a check of the model)."""
    definition: dict[str, Any] = {
        "phasekit": 1,
        "name": "known",
        "statuses": {
            "todo": {"initial": True},
            "doing": {"active": True},
            "done": {"terminal": True, "success": True},
        },
        "transitions": [
            {"trigger": "go", "source": "todo", "dest": "doing"},
            {"trigger": "finish", "source": "*", "dest": "done"},
        ],
        "phases": [{"name": "a"}, {"name": "b", "weight": 3}],
        "aggregate": {
            "status": [
                {"all": ["done"], "then": "done"},
                {"any": ["doing", "done"], "then": "busy"},
                {"otherwise": "todo"},
            ]
        },
    }
    ref = Reference(definition)
    assert ref.choose("todo", "go", False) == ("doing", 0)
    assert ref.choose("doing", "go", False) == "invalid"
    assert ref.allowed("todo") == ["go", "finish"]
    assert ref.overall_status(["done", "todo"]) == "busy"
    assert ref.current_phase(["done", "todo"]) == "b"
    assert ref.progress([100.0, 0.0]) == 25.0
    job = spec_from_dict(definition).new_job("j")
    job.phases["a"].finish()
    assert (job.get_overall_status(), job.get_current_phase(), job.get_overall_progress()) == (
        "busy",
        "b",
        25.0,
    )
