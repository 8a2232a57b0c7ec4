"""``EventBase.build`` makes exactly what pydantic's validation and ``model_construct`` make."""

from __future__ import annotations

import copy
import pickle
from datetime import UTC, datetime
from typing import Any

import pytest

from statemachine import JobCreated, JobStatusChanged, PhaseChanged, ProgressUpdated
from statemachine.store.events import EventBase, parse_event

AT = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)

CASES: list[tuple[type[EventBase], dict[str, Any]]] = [
    (
        JobCreated,
        {
            "job_id": "j1",
            "version": 1,
            "at": AT,
            "spec": "ingestion",
            "phases": ["discovery", "extraction"],
            "initial_status": "not_started",
            "metadata": {"source": "s3://bucket", "tags": ["a", "b"]},
        },
    ),
    (
        PhaseChanged,
        {
            "job_id": "j1",
            "version": 2,
            "at": AT,
            "phase": "discovery",
            "trigger": "fail",
            "source": "running",
            "dest": "failed",
            "error": "disk full",
        },
    ),
    (
        ProgressUpdated,
        {
            "job_id": "j1",
            "version": 3,
            "at": AT,
            "phase": "discovery",
            "items_processed": 5,
            "items_total": None,
            "progress": 12.5,
            "job_progress": 3.125,
        },
    ),
    (
        JobStatusChanged,
        {
            "job_id": "j1",
            "version": 4,
            "at": AT,
            "old_status": "not_started",
            "new_status": "running",
            "old_current_phase": None,
            "new_current_phase": "discovery",
            "progress": 0.0,
        },
    ),
]


@pytest.mark.parametrize(("cls", "values"), CASES, ids=[c.__name__ for c, _ in CASES])
def test_build_equals_validation(cls: type[EventBase], values: dict[str, Any]) -> None:
    built = cls.build(**values, event_id="e" * 32)
    validated = cls.model_validate({**values, "event_id": "e" * 32})
    constructed = cls.model_construct(**values, event_id="e" * 32, type=built.type)  # type: ignore[attr-defined]
    for other in (validated, constructed):
        assert built == other
        assert repr(built) == repr(other)
        assert built.model_dump() == other.model_dump()
        assert built.model_dump_json() == other.model_dump_json()
        assert list(built.__dict__) == list(other.__dict__)  # field order, hence JSON order
    assert built.model_fields_set == set(cls.model_fields)
    assert built.model_extra is None
    assert parse_event(built.model_dump_json()) == built
    assert pickle.loads(pickle.dumps(built)) == built
    assert copy.deepcopy(built) == built
    assert built.model_copy(update={"version": 99}).version == 99


@pytest.mark.parametrize(("cls", "values"), CASES, ids=[c.__name__ for c, _ in CASES])
def test_build_fills_defaults_and_stays_frozen(
    cls: type[EventBase], values: dict[str, Any]
) -> None:
    without = {k: v for k, v in values.items() if k != "at"}
    first, second = cls.build(**without), cls.build(**without)
    assert len(first.event_id) == 32 and first.event_id != second.event_id
    assert first.at.tzinfo is not None
    with pytest.raises(Exception, match="frozen"):
        first.job_id = "other"  # type: ignore[misc]


def test_build_mutable_default_is_not_shared() -> None:
    values = dict(CASES[0][1])
    del values["metadata"]
    one, two = JobCreated.build(**values), JobCreated.build(**values)
    assert one.metadata == {} and one.metadata is not two.metadata


def test_build_without_a_required_field_names_it() -> None:
    with pytest.raises(TypeError, match=r"PhaseChanged.build\(\) needs a value for 'trigger'"):
        PhaseChanged.build(
            job_id="j1", version=2, phase="discovery", source="running", dest="failed"
        )
