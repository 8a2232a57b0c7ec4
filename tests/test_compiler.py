"""The compiled machine: where its transition table alone decides, it answers as driving it does."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, given, settings

import statemachine
from statemachine import PhaseSet, SpecError, spec_from_dict
from tests.test_stateful import phase_sets

BUNDLED = ("ingestion", "ml-training", "deployment")


class _GuardsPass:
    """A stand-in (``statemachine.runtime.machine.StandIn``) whose every guard says yes."""

    def __init__(self, status: str, trigger: str) -> None:
        self.status = status
        self.trigger = trigger
        self.transition = -1

    def check_guard(self, name: str, expect: bool, dest: str) -> bool:
        return True


def _driven(spec: PhaseSet, trigger: str, source: str) -> tuple[bool, str, int]:
    """What the ``transitions`` machine does for ``trigger`` from ``source`` (guards pass)."""
    stand_in = _GuardsPass(source, trigger)
    fired = spec.compiled.drive(stand_in)
    return fired, stand_in.status, stand_in.transition


def _check_table(spec: PhaseSet) -> None:
    compiled = spec.compiled
    definition = spec.definition
    for source in spec.statuses:
        for trigger in spec.triggers:
            fixed = compiled.fixed.get((trigger, source))
            # One entry per declared (transition, source): a source listed twice counts twice.
            candidates = [
                t
                for t in definition.transitions
                if t.trigger == trigger
                for s in (spec.statuses if t.sources == ("*",) else t.sources)
                if s == source
            ]
            if fixed is None:
                # Only where guards decide, or no transition is declared, is there no entry.
                assert len(candidates) != 1 or candidates[0].conditions or candidates[0].unless
                continue
            assert len(candidates) == 1 and not candidates[0].conditions
            assert not candidates[0].unless
            dest, index = fixed
            assert definition.transitions[index] is candidates[0]
            assert _driven(spec, trigger, source) == (True, dest, index)


def test_the_table_answers_as_the_machine_for_the_bundled_phase_sets() -> None:
    for name in BUNDLED:
        _check_table(statemachine.load_spec(name))
    assert statemachine.load_spec("ingestion").compiled.fixed  # every transition is unguarded


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(phase_sets())
def test_the_table_answers_as_the_machine_for_random_phase_sets(definition: dict[str, Any]) -> None:
    try:
        spec = spec_from_dict(definition)
    except SpecError:
        assume(False)
    _check_table(spec)


def test_a_guarded_trigger_is_still_decided_by_the_machine(ingestion: PhaseSet) -> None:
    definition = ingestion.definition.model_dump(mode="json", exclude_defaults=True)
    for transition in definition["transitions"]:
        if transition["trigger"] == "start":
            transition["conditions"] = ["ready"]
    spec = spec_from_dict(definition)
    assert not any(trigger == "start" for trigger, _ in spec.compiled.fixed)
    answers = iter([False, True])
    job = spec.new_job("j", guards={"ready": lambda ctx: next(answers)})
    phase = job.phases["discovery"]
    assert not phase.may("start")
    assert phase.may("start")
