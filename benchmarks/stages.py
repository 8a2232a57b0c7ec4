"""Jobs of the ingestion phase set at one stage each, driven through the API: the templates
that the bulk-loaded figures copy (rows exactly as phasekit writes them)."""

from __future__ import annotations

from statemachine import JobState

__all__ = [
    "completed",
    "discovery_running",
    "extraction_paused",
    "extraction_running",
    "failed",
    "loading_running",
    "not_started",
]


def not_started(job: JobState) -> None:
    """Every phase in its initial status: nothing to do."""


def discovery_running(job: JobState) -> None:
    job.phases["discovery"].start()


def extraction_running(job: JobState) -> None:
    job.phases["discovery"].start()
    job.phases["discovery"].complete()
    job.phases["extraction"].start()
    job.phases["extraction"].update_progress(50, 200)


def extraction_paused(job: JobState) -> None:
    extraction_running(job)
    job.phases["extraction"].pause()


def loading_running(job: JobState) -> None:
    for name in ("discovery", "extraction", "transformation"):
        job.phases[name].start()
        job.phases[name].complete()
    job.phases["loading"].start()


def completed(job: JobState) -> None:
    for phase in job.phases.values():
        phase.start()
        phase.complete()


def failed(job: JobState) -> None:
    job.phases["discovery"].start()
    job.phases["discovery"].complete()
    job.phases["extraction"].start()
    job.phases["extraction"].fail("disk full")
