"""Phases and jobs driven through the shared compiled machine."""

from __future__ import annotations

import pytest

import statemachine
from statemachine import (
    InvalidTransition,
    JobStateSchema,
    PhaseKitError,
    PhaseSet,
    TransitionContext,
    TransitionRejected,
    UnknownPhase,
    parse_spec,
)

GUARDED = """
phasekit: 1
name: guarded
statuses:
  todo: {initial: true}
  doing: {active: true}
  done: {terminal: true, success: true}
  blocked: {terminal: true}
transitions:
  - {trigger: start, source: todo, dest: doing, conditions: [has_worker]}
  - {trigger: start, source: todo, dest: blocked, unless: [has_worker]}
  - {trigger: finish, source: doing, dest: done, after: [announce]}
phases:
  - {name: only}
aggregate:
  status:
    - {all: [done], then: done}
    - {otherwise: todo}
"""


def test_every_job_of_a_phase_set_shares_one_machine_with_no_models(ingestion: PhaseSet) -> None:
    jobs = [ingestion.new_job(f"j{i}") for i in range(50)]
    for job in jobs:
        job.phases["discovery"].start()
    assert ingestion.compiled.machine.models == []
    assert all(job.spec.compiled is ingestion.compiled for job in jobs)


def test_machine_has_no_auto_transitions(ingestion: PhaseSet) -> None:
    assert not any(name.startswith("to_") for name in ingestion.compiled.machine.events)


def test_phase_has_one_method_per_declared_trigger(ingestion: PhaseSet) -> None:
    phase = ingestion.new_job("j").phases["loading"]
    for trigger in ("start", "pause", "resume", "complete", "fail"):
        assert callable(getattr(phase, trigger))
    assert not hasattr(phase, "to_failed")


def test_phases_are_ordered_like_the_spec(ingestion: PhaseSet) -> None:
    job = ingestion.new_job("j")
    assert list(job.phases) == ["discovery", "extraction", "transformation", "loading"]


def test_phase_objects_have_no_instance_dict(ingestion: PhaseSet) -> None:
    phase = ingestion.new_job("j").phases["loading"]
    assert not hasattr(phase, "__dict__")


def test_invalid_transition_names_phase_job_status_and_allowed_triggers(
    ingestion: PhaseSet,
) -> None:
    job = ingestion.new_job("job-7")
    phase = job.phases["extraction"]
    phase.start()
    with pytest.raises(InvalidTransition) as info:
        phase.resume()
    message = str(info.value)
    for part in ("job-7", "extraction", "running", "pause", "complete", "fail"):
        assert part in message
    assert info.value.allowed == ("pause", "complete", "fail")


def test_rejected_transition_changes_nothing(ingestion: PhaseSet) -> None:
    job = ingestion.new_job("j")
    phase = job.phases["discovery"]
    before = (phase.to_record(), job.version, job.updated_at)
    with pytest.raises(InvalidTransition):
        phase.complete()
    assert (phase.to_record(), job.version, job.updated_at) == before


def test_unknown_trigger_is_invalid_and_lists_allowed(ingestion: PhaseSet) -> None:
    phase = ingestion.new_job("j").phases["discovery"]
    with pytest.raises(InvalidTransition, match=r"no trigger 'launch'.*start, fail"):
        phase.trigger("launch")


def test_trigger_by_name_carries_an_error(ingestion: PhaseSet) -> None:
    phase = ingestion.new_job("j").phases["discovery"]
    phase.trigger("fail", error="source unreachable")
    assert (phase.status, phase.error) == ("failed", "source unreachable")


def test_may_and_allowed_triggers_follow_the_status(ingestion: PhaseSet) -> None:
    phase = ingestion.new_job("j").phases["discovery"]
    assert phase.allowed_triggers() == ["start", "fail"]
    assert phase.may("start") and not phase.may("resume")
    phase.start()
    assert phase.allowed_triggers() == ["pause", "complete", "fail"]


def test_error_is_cleared_when_phase_reenters_a_non_terminal_status() -> None:
    spec = statemachine.load_spec("ml-training")
    phase = spec.new_job("j").phases["train"]
    phase.start()
    phase.fail("out of memory")
    assert phase.error == "out of memory"
    phase.retry()
    assert (phase.status, phase.error) == ("running", None)


def test_progress_rejects_negative_counts(ingestion: PhaseSet) -> None:
    phase = ingestion.new_job("j").phases["discovery"]
    phase.start()
    with pytest.raises(ValueError, match="items_processed must be >= 0"):
        phase.update_progress(items_processed=-1)


def test_progress_rejects_processed_beyond_total(ingestion: PhaseSet) -> None:
    phase = ingestion.new_job("j").phases["discovery"]
    phase.start()
    with pytest.raises(ValueError, match="greater than items_total"):
        phase.update_progress(items_processed=11, items_total=10)


def test_progress_with_a_zero_total_shows_the_cap(ingestion: PhaseSet) -> None:
    phase = ingestion.new_job("j").phases["discovery"]
    phase.start()
    phase.update_progress(items_processed=0, items_total=0)
    assert phase.progress == 99.0


def test_progress_keeps_an_earlier_total(ingestion: PhaseSet) -> None:
    phase = ingestion.new_job("j").phases["discovery"]
    phase.start()
    phase.update_progress(items_processed=1, items_total=4)
    phase.update_progress(items_processed=2)
    assert (phase.progress, phase.items_total) == (50.0, 4)


def test_progress_on_a_terminal_phase_is_an_invalid_transition(ingestion: PhaseSet) -> None:
    phase = ingestion.new_job("j").phases["discovery"]
    phase.fail()
    with pytest.raises(InvalidTransition, match="terminal status 'failed'"):
        phase.update_progress(items_processed=1)


def test_progress_counts_must_be_ints(ingestion: PhaseSet) -> None:
    phase = ingestion.new_job("j").phases["discovery"]
    with pytest.raises(TypeError):
        phase.update_progress(items_processed=True)  # type: ignore[arg-type]


def test_unknown_phase_lists_the_phases(ingestion: PhaseSet) -> None:
    job = ingestion.new_job("j")
    with pytest.raises(UnknownPhase, match="no phase 'lo'; phases: discovery, extraction"):
        job.phase("lo")


def test_weighted_progress_uses_phase_weights() -> None:
    spec = statemachine.load_spec("deployment")
    job = spec.new_job("release-1")
    job.phases["build"].start()
    job.phases["build"].succeed()
    assert job.get_overall_progress() == pytest.approx(100 * 2 / 12)


def test_explain_status_names_rule_and_phases(ingestion: PhaseSet) -> None:
    job = ingestion.new_job("j")
    job.phases["extraction"].fail("x")
    explanation = job.explain_status()
    assert explanation.status == "failed"
    assert explanation.rule_index == 0
    assert explanation.phases == ("extraction",)
    assert "any phase failed" in str(explanation)


def test_a_rule_may_name_a_job_level_status() -> None:
    spec = statemachine.load_spec("deployment")
    job = spec.new_job("release-2")
    job.phases["build"].cancel()
    assert job.get_overall_status() == "cancelled"
    job2 = spec.new_job("release-3")
    job2.phases["build"].start()
    job2.phases["build"].pause()
    assert job2.get_overall_status() == "on_hold"


def test_default_current_phase_skips_finished_phases_and_stops_where_the_job_stopped() -> None:
    spec = statemachine.load_spec("deployment")
    job = spec.new_job("r")
    assert job.get_current_phase() == "build"
    job.phases["build"].start()
    job.phases["build"].succeed()
    assert job.get_current_phase() == "test"
    for phase in job.phases.values():
        if phase.status == "pending":
            phase.cancel()
    # Every phase is finished: the current phase is the first that did not succeed.
    assert job.get_current_phase() == "test"


def test_default_current_phase_is_none_when_every_phase_succeeded() -> None:
    spec = statemachine.load_spec("deployment")
    job = spec.new_job("r")
    for phase in job.phases.values():
        phase.start()
        phase.succeed()
    assert job.get_current_phase() is None


def test_a_failed_ingestion_jobs_current_phase_is_the_phase_that_failed(
    ingestion: PhaseSet,
) -> None:
    job = ingestion.new_job("j")
    job.phases["discovery"].start()
    job.phases["discovery"].complete()
    job.phases["extraction"].start()
    job.phases["extraction"].fail("disk full")
    assert job.get_overall_status() == "failed"
    assert job.get_current_phase() == "extraction"


def test_an_unknown_phase_is_an_unknown_phase_error_with_a_hint(ingestion: PhaseSet) -> None:
    job = ingestion.new_job("j")
    with pytest.raises(KeyError) as caught:
        job.phases["extractoin"]
    assert isinstance(caught.value, statemachine.UnknownPhase)
    assert "no phase 'extractoin' (did you mean 'extraction'?)" in str(caught.value)


def test_an_unknown_trigger_gets_a_hint(ingestion: PhaseSet) -> None:
    phase = ingestion.new_job("j").phases["discovery"]
    with pytest.raises(
        statemachine.InvalidTransition, match=r"no trigger 'strat' \(did you mean 'start'\?\)"
    ):
        phase.trigger("strat")


def test_job_schema_round_trips_through_json(ingestion: PhaseSet) -> None:
    job = ingestion.new_job("j", metadata={"source": "s3://bucket"})
    job.phases["discovery"].start()
    schema = job.to_schema()
    assert JobStateSchema.model_validate_json(schema.model_dump_json()) == schema
    assert schema.status == "running" and schema.current_phase == "discovery"


def test_guards_choose_between_transitions_of_one_trigger() -> None:
    spec = parse_spec(GUARDED)
    staffed = spec.new_job("a", guards={"has_worker": lambda ctx: True})
    unstaffed = spec.new_job("b", guards={"has_worker": lambda ctx: False})
    staffed.phases["only"].start()
    unstaffed.phases["only"].start()
    assert staffed.phases["only"].status == "doing"
    assert unstaffed.phases["only"].status == "blocked"


def test_a_guard_sees_the_unchanged_phase_and_the_data() -> None:
    seen: list[tuple[str, str, str, object]] = []

    def has_worker(ctx: TransitionContext) -> bool:
        seen.append((ctx.phase.status, ctx.source, ctx.dest, ctx.data.get("worker")))
        return True

    spec = parse_spec(GUARDED)
    spec.new_job("a", guards={"has_worker": has_worker}).phases["only"].start(worker="w1")
    assert seen[0] == ("todo", "todo", "doing", "w1")


def test_a_guard_that_says_no_everywhere_rejects_with_the_guard_named() -> None:
    spec = parse_spec(GUARDED.replace("unless: [has_worker]", "conditions: [has_worker]"))
    job = spec.new_job("a", guards={"has_worker": lambda ctx: False})
    with pytest.raises(TransitionRejected, match="guard 'has_worker' said no"):
        job.phases["only"].start()
    assert job.phases["only"].status == "todo"


def test_a_guarded_trigger_with_no_registered_guard_names_it() -> None:
    job = parse_spec(GUARDED).new_job("a")
    with pytest.raises(PhaseKitError, match=r"needs guard 'has_worker'.*registered guards: none"):
        job.phases["only"].start()


def test_actions_run_after_the_change_with_the_new_status() -> None:
    seen: list[tuple[str, str]] = []
    spec = parse_spec(GUARDED)
    job = spec.new_job(
        "a",
        guards={"has_worker": lambda ctx: True},
        actions={"announce": lambda ctx: seen.append((ctx.phase.status, ctx.source))},
    )
    job.phases["only"].start()
    job.phases["only"].finish()
    assert seen == [("done", "doing")]


def test_job_ids_are_validated(ingestion: PhaseSet) -> None:
    for bad in ("", "   ", "a\x00b", "x" * 256):
        with pytest.raises(ValueError):
            ingestion.new_job(bad)
    with pytest.raises(TypeError):
        ingestion.new_job(42)  # type: ignore[arg-type]


def test_huge_error_messages_are_rejected(ingestion: PhaseSet) -> None:
    phase = ingestion.new_job("j").phases["discovery"]
    with pytest.raises(ValueError, match="at most"):
        phase.fail("x" * 100_000)
    assert phase.status == "not_started"
