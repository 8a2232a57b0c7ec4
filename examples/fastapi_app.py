"""A FastAPI service embedding a phasekit Tracker: create jobs, fire triggers, report progress.

Run it with ``uvicorn examples.fastapi_app:app`` (the store comes from ``PHASEKIT_STORE``,
default ``sqlite:///phasekit.db``), then open http://127.0.0.1:8000/docs.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from statemachine import (
    ConcurrentUpdateError,
    InvalidTransition,
    JobExists,
    JobNotFound,
    JobStateSchema,
    PersistenceError,
    PhaseKitError,
    SpecMismatch,
    Tracker,
    TransitionRejected,
    UnknownPhase,
)

# Domain errors and the HTTP status each becomes; the first match wins.
ERROR_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (JobNotFound, 404),
    (UnknownPhase, 404),
    (JobExists, 409),
    (InvalidTransition, 409),
    (TransitionRejected, 409),
    (ConcurrentUpdateError, 409),
    (SpecMismatch, 409),
    (PersistenceError, 503),
    (ValueError, 422),
    (TypeError, 422),
    (PhaseKitError, 400),
)


class NewJob(BaseModel):
    """A job to create; without an id, one is generated."""

    job_id: str | None = Field(None, max_length=255)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Fire(BaseModel):
    """A trigger's optional error message (recorded on the phase, e.g. with ``fail``)."""

    error: str | None = None


class Progress(BaseModel):
    """A progress report: items done so far, and the phase's total when known."""

    items_processed: int = Field(ge=0)
    items_total: int | None = Field(None, ge=0)


class ErrorBody(BaseModel):
    """What every error answer carries."""

    detail: str
    error: str = Field(description="The phasekit exception's class name.")


def get_tracker(request: Request) -> Tracker:
    """The application's tracker (opened at startup, closed at shutdown)."""
    tracker: Tracker = request.app.state.tracker
    return tracker


TrackerDep = Annotated[Tracker, Depends(get_tracker)]


def create_app(spec: str = "ingestion", store: str | None = None) -> FastAPI:
    """The service for one phase set on one store (default: ``$PHASEKIT_STORE``)."""
    store_url = store or os.environ.get("PHASEKIT_STORE", "sqlite:///phasekit.db")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with Tracker(spec, store=store_url) as tracker:
            app.state.tracker = tracker
            yield

    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorBody} for code in (404, 409, 422, 503)
    }
    app = FastAPI(title="phasekit jobs", lifespan=lifespan, responses=errors)

    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        code = next(code for kind, code in ERROR_STATUS if isinstance(exc, kind))
        body = ErrorBody(detail=str(exc), error=type(exc).__name__)
        return JSONResponse(status_code=code, content=body.model_dump())

    for kind, _ in ERROR_STATUS:
        app.add_exception_handler(kind, domain_error)

    @app.post("/jobs", status_code=201)
    def create_job(new: NewJob, tracker: TrackerDep) -> JobStateSchema:
        """Create a job, every phase in the initial status."""
        job_id = new.job_id or f"{tracker.spec.name}-{uuid.uuid4().hex[:8]}"
        return tracker.create_job(job_id, metadata=new.metadata).to_schema()

    @app.get("/jobs")
    def list_jobs(
        tracker: TrackerDep,
        job_status: Annotated[str | None, Query(alias="status")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[JobStateSchema]:
        """Jobs, most recently updated first."""
        return [job.to_schema() for job in tracker.list_jobs(status=job_status, limit=limit)]

    @app.get("/jobs/{job_id}")
    def read_job(job_id: str, tracker: TrackerDep) -> JobStateSchema:
        """One job: its overall status, current phase, progress and phases."""
        return tracker.get_job(job_id).to_schema()

    @app.post("/jobs/{job_id}/phases/{phase}/triggers/{trigger}")
    def fire(
        job_id: str, phase: str, trigger: str, tracker: TrackerDep, body: Fire | None = None
    ) -> JobStateSchema:
        """Fire a trigger on a phase (409 with the allowed triggers when it is not allowed)."""
        job = tracker.get_job(job_id)
        job.phase(phase).trigger(trigger, error=body.error if body else None)
        return job.to_schema()

    @app.post("/jobs/{job_id}/phases/{phase}/progress")
    def report_progress(
        job_id: str, phase: str, report: Progress, tracker: TrackerDep
    ) -> JobStateSchema:
        """Report a phase's item counts."""
        job = tracker.get_job(job_id)
        job.phase(phase).update_progress(report.items_processed, report.items_total)
        return job.to_schema()

    @app.get("/jobs/{job_id}/history")
    def history(job_id: str, tracker: TrackerDep) -> list[dict[str, Any]]:
        """The job's creation and every status change, oldest first."""
        tracker.get_job(job_id)  # 404 for a job that does not exist
        return [event.model_dump(mode="json") for event in tracker.history(job_id)]

    return app


app = create_app()
