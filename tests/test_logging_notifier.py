"""The logging notifier: one structured line per committed event."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import statemachine.plugins.logging_notifier
from statemachine.plugins.logging_notifier import LoggingNotifier

from statemachine import JobState, PhaseSet, Tracker

LOGGER = "phasekit.events"


@pytest.fixture
def logged(
    ingestion: PhaseSet, caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[JobState, pytest.LogCaptureFixture]]:
    """A job on a tracker with a LoggingNotifier, and the records captured from it."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with Tracker(ingestion, plugins=[LoggingNotifier()], load_entrypoints=False) as tracker:
        job = tracker.create_job("job-42")
        caplog.clear()
        yield job, caplog


def test_each_event_is_one_line_on_phasekit_events(
    logged: tuple[JobState, pytest.LogCaptureFixture],
) -> None:
    job, caplog = logged
    job.phases["discovery"].start()
    assert [r.name for r in caplog.records] == [LOGGER, LOGGER]
    assert [r.event["type"] for r in caplog.records] == ["phase_changed", "job_status_changed"]
    assert all("\n" not in r.getMessage() for r in caplog.records)


def test_phase_change_line_names_job_version_phase_trigger_and_statuses(
    logged: tuple[JobState, pytest.LogCaptureFixture],
) -> None:
    job, caplog = logged
    job.phases["discovery"].start()
    record = caplog.records[0]
    assert record.getMessage() == (
        f"job=job-42 v={job.version} phase_changed phase=discovery start not_started->running"
    )


def test_event_fields_are_in_extra(logged: tuple[JobState, pytest.LogCaptureFixture]) -> None:
    job, caplog = logged
    job.phases["discovery"].start()
    event = caplog.records[0].event
    assert event["type"] == "phase_changed"
    assert event["job_id"] == "job-42"
    assert event["version"] == job.version
    assert (event["phase"], event["trigger"], event["source"], event["dest"]) == (
        "discovery",
        "start",
        "not_started",
        "running",
    )
    assert isinstance(event["at"], str)  # JSON-ready, for JSON log formatters


def test_error_is_quoted_in_the_line(logged: tuple[JobState, pytest.LogCaptureFixture]) -> None:
    job, caplog = logged
    job.phases["discovery"].fail("disk full")
    assert caplog.records[0].getMessage().endswith('not_started->failed error="disk full"')


def test_progress_line_shows_counts_and_progress(
    logged: tuple[JobState, pytest.LogCaptureFixture],
) -> None:
    job, caplog = logged
    job.phases["discovery"].start()
    caplog.clear()
    job.phases["discovery"].update_progress(items_processed=50, items_total=200)
    (record,) = caplog.records
    assert "progress_updated phase=discovery items=50/200 progress=25.0" in record.getMessage()


def test_job_status_line_shows_old_and_new_status(
    logged: tuple[JobState, pytest.LogCaptureFixture],
) -> None:
    job, caplog = logged
    job.phases["discovery"].start()
    assert "job_status_changed status=not_started->running" in caplog.records[1].getMessage()


def test_job_creation_is_logged(ingestion: PhaseSet, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with Tracker(ingestion, plugins=[LoggingNotifier()], load_entrypoints=False) as tracker:
        tracker.create_job("job-7")
    (record,) = caplog.records
    assert record.getMessage().startswith("job=job-7 v=")
    assert "job_created spec=ingestion phases=discovery,extraction" in record.getMessage()


def test_lines_are_logged_at_the_configured_level(
    ingestion: PhaseSet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    notifier = LoggingNotifier(level="warning")
    with Tracker(ingestion, plugins=[notifier], load_entrypoints=False) as tracker:
        tracker.create_job("j1")
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_nothing_is_logged_when_the_level_is_disabled(
    ingestion: PhaseSet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    notifier = LoggingNotifier(level="DEBUG")
    with Tracker(ingestion, plugins=[notifier], load_entrypoints=False) as tracker:
        tracker.create_job("j1").phases["discovery"].start()
    assert caplog.records == []


def test_logger_name_can_be_chosen(ingestion: PhaseSet, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    notifier = LoggingNotifier(logger="myapp.jobs")
    with Tracker(ingestion, plugins=[notifier], load_entrypoints=False) as tracker:
        tracker.create_job("j1")
    assert [r.name for r in caplog.records if "job_created" in r.getMessage()] == ["myapp.jobs"]


@pytest.mark.parametrize(
    ("level", "expected"),
    [("INFO", 20), ("debug", 10), (" Warning ", 30), (40, 40), ("25", 25)],
)
def test_level_accepts_names_and_integers(level: int | str, expected: int) -> None:
    assert LoggingNotifier(level=level).level == expected


@pytest.mark.parametrize("level", ["LOUD", -1, True, 2.5])
def test_bad_level_is_a_value_error_naming_valid_levels(level: object) -> None:
    with pytest.raises(ValueError, match="CRITICAL, ERROR, WARNING, INFO, DEBUG"):
        LoggingNotifier(level=level)  # type: ignore[arg-type]


def test_config_builds_the_logging_notifier(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    config = {"spec": "ingestion", "notifiers": {"logging": {"level": "DEBUG"}}}
    with Tracker.from_config(config) as tracker:
        tracker.create_job("j1")
    assert [(r.name, r.levelno) for r in caplog.records if r.name == LOGGER] == [
        (LOGGER, logging.DEBUG)
    ]


def test_register_notifiers_offers_logging() -> None:
    offered = statemachine.plugins.logging_notifier.register_notifiers()
    assert offered == {"logging": LoggingNotifier}
