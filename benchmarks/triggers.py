"""Trigger cost (figure 1) and hooks that cost nothing when unimplemented (figure 6)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from transitions import Machine

from statemachine import JobCreated, JobStatusChanged, PhaseSet, ProgressUpdated, Tracker, hookimpl

from . import psm
from .baselines import NaivePhase, Unregistered, machine_kwargs, raw_machine
from .harness import Case, Figure, Settings, Target, batch, interleaved, median, pause_resume
from .profiles import profile_if_missed

__all__ = ["hook_figures", "trigger_figures"]

TRIGGER = "1. Trigger cost"
HOOKS = "6. Unimplemented hooks"
US = 1e6  # seconds to microseconds
#: Models registered beside the measured one on the add_model baseline's shared machine.
NEIGHBOURS = 1_000


def _raw(spec: PhaseSet) -> Callable[[], Callable[[int], None]]:
    machine = raw_machine(spec)
    pause, resume = machine.events["pause"].trigger, machine.events["resume"].trigger

    def prepare() -> Callable[[int], None]:
        obj = Unregistered("running")

        def run(n: int) -> None:
            for _ in range(n):
                pause(obj)
                resume(obj)

        return run

    return prepare


def _add_model(spec: PhaseSet) -> Callable[[], Callable[[int], None]]:
    machine = Machine(model=None, **machine_kwargs(spec))
    machine.add_model([NaivePhase(f"p{i}") for i in range(NEIGHBOURS)], initial="running")
    model = NaivePhase("measured")
    machine.add_model(model, initial="running")

    def prepare() -> Callable[[int], None]:
        return pause_resume(model)

    return prepare


def _detached(spec: PhaseSet) -> Callable[[], Callable[[int], None]]:
    def prepare() -> Callable[[int], None]:
        phase = spec.new_job("bench").phases["discovery"]
        phase.trigger("start")

        return pause_resume(phase)

    return prepare


def _tracked(spec: PhaseSet, plugins: list[object]) -> Callable[[], Callable[[int], None]]:
    """A fresh Tracker (memory store) per batch, so the history of one batch is not the next's."""

    def prepare() -> Callable[[int], None]:
        tracker = Tracker(spec, plugins=list(plugins), load_entrypoints=False)
        phase = tracker.create_job("bench").phases["discovery"]
        phase.trigger("start")

        return pause_resume(phase)

    return prepare


def trigger_figures(settings: Settings, spec: PhaseSet) -> list[Figure]:
    """Detached job and Tracker (memory store) against raw transitions and the naive ways."""
    pairs = settings.n(2_000)
    prepared = {
        "raw": _raw(spec),
        "add_model": _add_model(spec),
        "detached": _detached(spec),
        "tracker": _tracked(spec, []),
    }
    cases: dict[str, Case] = {k: batch(p, pairs, 2) for k, p in prepared.items()}
    samples = interleaved(cases, settings.rounds)
    raw = samples["raw"]
    vs_raw = "raw transitions (flyweight)"
    figures = [
        Figure.compare(
            "trigger.raw",
            TRIGGER,
            "raw transitions: `machine.events[name].trigger(obj)`, obj unregistered",
            raw,
            None,
            unit="µs/trigger",
            factor=US,
        ),
        Figure.compare(
            "trigger.add_model",
            TRIGGER,
            f"transitions, one add_model per job ({NEIGHBOURS:,} models): `model.pause()`",
            samples["add_model"],
            raw,
            unit="µs/trigger",
            factor=US,
            baseline_label=vs_raw,
        ),
        Figure.compare(
            "trigger.detached",
            TRIGGER,
            "phasekit detached job (`spec.new_job`): `phase.pause()`",
            samples["detached"],
            raw,
            unit="µs/trigger",
            factor=US,
            baseline_label=vs_raw,
            target=Target("≤ 1.3x raw transitions", "ratio", 1.3),
        ),
        Figure.compare(
            "trigger.tracker",
            TRIGGER,
            "phasekit Tracker, memory store, no plugins: `phase.pause()`",
            samples["tracker"],
            raw,
            unit="µs/trigger",
            factor=US,
            baseline_label=vs_raw,
            target=Target("≤ 2x raw transitions", "ratio", 2.0),
        ),
    ]
    for figure in figures:
        if figure.key in ("trigger.detached", "trigger.tracker"):
            run = prepared[figure.key.split(".")[1]]()
            profile_if_missed(settings, figure, partial(run, 20_000), 40_000, "triggers")
    figures += _psm_figures(settings, spec, samples)
    return figures


def _psm_figures(
    settings: Settings, spec: PhaseSet, samples: dict[str, list[float]]
) -> list[Figure]:
    label = f"python-statemachine 3.x (`{psm.PSM_REQUIREMENT}`), one machine per phase"
    if not settings.psm:
        return [_unavailable("trigger.psm", label, "skipped (--no-psm)")]
    try:
        python = psm.ensure_venv()
        out = psm.probe(python, spec, "trigger", settings.rounds, settings.n(500))
    except psm.PsmUnavailable as exc:
        return [_unavailable("trigger.psm", label, f"unavailable: {exc}")]
    version = out["versions"]["python-statemachine"]
    label = f"python-statemachine {version} (own virtualenv): `sm.send(name)`"
    own = Figure.compare(
        "trigger.psm",
        TRIGGER,
        label,
        out["psm"],
        out["raw"],
        unit="µs/trigger",
        factor=US,
        baseline_label="raw transitions, in the same virtualenv",
        note="measured in a subprocess; its ratio is against raw transitions in that process",
    )
    # Both ratios are against raw transitions in their own process: their quotient compares
    # phasekit with python-statemachine without comparing two processes' clocks directly.
    detached = [d / r for d, r in zip(samples["detached"], samples["raw"], strict=True)]
    vs = Figure(
        key="trigger.detached_vs_psm",
        section=TRIGGER,
        label="phasekit detached job vs python-statemachine",
        value=median(samples["detached"]) * US,
        unit="µs/trigger",
        spread=(min(samples["detached"]) * US, max(samples["detached"]) * US),
        baseline=f"python-statemachine {version}",
        baseline_value=own.value,
        ratio=median(detached) / (own.ratio or 1.0),
        note="ratio of the two ratios against raw transitions",
    )
    return [own, vs]


def _unavailable(key: str, label: str, why: str) -> Figure:
    return Figure(
        key=key,
        section=TRIGGER,
        label=label,
        value=float("nan"),
        unit="µs/trigger",
        spread=(float("nan"), float("nan")),
        note=why,
    )


class CreatedOnly:
    """A plugin implementing ``job_created`` only: no other hook has an implementation."""

    def __init__(self) -> None:
        self.created = 0

    @hookimpl
    def job_created(self, event: JobCreated) -> None:
        self.created += 1


class PhaseChangedNoop:
    """A plugin implementing ``phase_changed`` (doing nothing): the price of a wanted hook."""

    @hookimpl
    def phase_changed(self, event: object) -> None:
        pass


def _count_notification_events(run: Callable[[], None]) -> int:
    """How many ``JobStatusChanged``/``ProgressUpdated`` events ``run`` builds."""
    built = 0
    classes = (JobStatusChanged, ProgressUpdated)

    def counting(original: Callable[..., object]) -> Callable[..., object]:
        def construct(*args: object, **kwargs: object) -> object:
            nonlocal built
            built += 1
            return original(*args, **kwargs)

        return construct

    try:
        for cls in classes:
            # The bound classmethod, shadowed on the class itself for the run.
            cls.model_construct = counting(cls.model_construct)  # type: ignore[method-assign, assignment]
        run()
    finally:
        for cls in classes:
            if "model_construct" in vars(cls):
                delattr(cls, "model_construct")
    return built


def hook_figures(settings: Settings, spec: PhaseSet) -> list[Figure]:
    """Tracker with a plugin that implements only ``job_created`` against one with none."""
    pairs = settings.n(2_000)
    only_created = _tracked(spec, [CreatedOnly()])
    cases: dict[str, Case] = {
        "none": batch(_tracked(spec, []), pairs, 2),
        "none_again": batch(_tracked(spec, []), pairs, 2),
        "job_created": batch(only_created, pairs, 2),
        "phase_changed": batch(_tracked(spec, [PhaseChangedNoop()]), pairs, 2),
    }
    samples = interleaved(cases, settings.rounds)
    noise = Figure.compare(
        "hooks.noise",
        HOOKS,
        "noise band: Tracker without plugins, measured twice (A/A)",
        samples["none_again"],
        samples["none"],
        unit="µs/trigger",
        factor=US,
        baseline_label="Tracker without plugins",
    )
    # Equal within noise: the ratio lies in the A/A band, or within 5% of 1.
    low, high = noise.ratio_spread or (1.0, 1.0)
    band = max(0.05, abs(high - 1.0), abs(1.0 - low))
    # Functional check beside the timing: with such a plugin, no notification event is built.
    built = _count_notification_events(lambda: only_created()(50))
    figures = [
        noise,
        Figure.compare(
            "hooks.job_created_only",
            HOOKS,
            "Tracker with a plugin implementing only `job_created`",
            samples["job_created"],
            samples["none"],
            unit="µs/trigger",
            factor=US,
            baseline_label="Tracker without plugins",
            target=Target(f"= 1.0x within noise (±{band:.0%})", "ratio", 1.0 + band),
            note=(
                f"{built} JobStatusChanged/ProgressUpdated events built in 100 triggers "
                "(none is wanted)"
            ),
        ),
        Figure.compare(
            "hooks.phase_changed_noop",
            HOOKS,
            "Tracker with a no-op `phase_changed` plugin (for scale: a wanted hook)",
            samples["phase_changed"],
            samples["none"],
            unit="µs/trigger",
            factor=US,
            baseline_label="Tracker without plugins",
        ),
    ]
    run = only_created()
    profile_if_missed(settings, figures[1], partial(run, 20_000), 40_000, "triggers")
    return figures
