"""Records and the views of a job's phases."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from statemachine import JobRecord, PhaseRecord, PhaseSet, UnknownPhase
from statemachine.store import build_job_record, build_phase_record

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_phase_record_build_is_the_dataclass_constructor() -> None:
    values = ("extraction", "failed", 42.5, 17, 40, AT, AT, AT, "disk full", AT, AT)
    built = build_phase_record(*values)
    made = PhaseRecord(*values)
    assert built == made and hash(built) == hash(made) and repr(built) == repr(made)
    assert dataclasses.astuple(built) == values
    assert pickle.loads(pickle.dumps(built)) == made
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.status = "running"  # type: ignore[misc]


def test_job_record_build_is_the_dataclass_constructor() -> None:
    phase = PhaseRecord("discovery", "running")
    values = ("j1", "ingestion", "abc", "running", "discovery", 12.5, 3, AT, AT, (phase,), {})
    built = build_job_record(*values)
    made = JobRecord(*values)
    assert built == made and repr(built) == repr(made)
    assert dataclasses.astuple(built) == dataclasses.astuple(made)
    assert built.replace(version=4).version == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.version = 9  # type: ignore[misc]


def test_job_phases_is_an_ordered_live_read_only_mapping(ingestion: PhaseSet) -> None:
    job = ingestion.new_job("j")
    phases = job.phases
    assert isinstance(phases, Mapping)
    assert list(phases) == list(ingestion.phase_names) and len(phases) == 4
    assert "discovery" in phases and "nope" not in phases and 3 not in phases
    discovery = phases["discovery"]
    assert discovery == job.phases["discovery"] and discovery != job.phases["extraction"]
    assert len({discovery, job.phases["discovery"]}) == 1
    assert [p.phase_name for p in phases.values()] == list(ingestion.phase_names)
    assert [p.phase_name for p in job] == list(ingestion.phase_names)
    discovery.start()
    assert phases["discovery"].status == "running" == discovery.status  # views stay current
    assert "'discovery': 'running'" in repr(phases)
    with pytest.raises(KeyError):
        phases["nope"]
    with pytest.raises(UnknownPhase, match="discovery, extraction"):
        job.phase("nope")
    with pytest.raises(AttributeError):
        discovery.status = "failed"  # type: ignore[misc]
    assert ingestion.new_job("j").phases["discovery"] != discovery  # another job's phase


def test_a_new_job_shares_the_phase_sets_initial_records(ingestion: PhaseSet) -> None:
    one, two = ingestion.new_job("a"), ingestion.new_job("b")
    assert one.phases["discovery"].to_record() is two.phases["discovery"].to_record()
    one.phases["discovery"].start()
    assert two.phases["discovery"].status == "not_started"
