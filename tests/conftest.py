"""Shared fixtures: bundled phase sets and trackers on the memory store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import statemachine
from statemachine import PhaseSet, Tracker, hookimpl


@pytest.fixture(scope="session")
def ingestion() -> PhaseSet:
    return statemachine.load_spec("ingestion")


class Recorder:
    """A plugin that records every notification it receives, in order."""

    def __init__(self) -> None:
        self.events: list[statemachine.Event] = []

    @hookimpl
    def job_created(self, event: statemachine.JobCreated) -> None:
        self.events.append(event)

    @hookimpl
    def phase_changed(self, event: statemachine.PhaseChanged) -> None:
        self.events.append(event)

    @hookimpl
    def progress_updated(self, event: statemachine.ProgressUpdated) -> None:
        self.events.append(event)

    @hookimpl
    def job_status_changed(self, event: statemachine.JobStatusChanged) -> None:
        self.events.append(event)

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def tracker(ingestion: PhaseSet, recorder: Recorder) -> Iterator[Tracker]:
    with Tracker(ingestion, plugins=[recorder], load_entrypoints=False) as t:
        yield t
