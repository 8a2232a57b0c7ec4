"""A FastAPI service on a phasekit AsyncTracker: jobs created, driven and read by id.

Run it with ``uvicorn examples.fastapi_app:app`` (the store comes from ``PHASEKIT_STORE``,
default ``sqlite:///phasekit.db``), then open http://127.0.0.1:8000/docs.

Routes. A job id may hold any character, ``/`` included, and Starlette matches routes on the
decoded path, where an encoded ``%2F`` cannot be told from a separator. So the job id is the
*last* part of every path (a ``{job_id:path}`` parameter, which takes the rest of the path)
and the first segment names the operation: no route can swallow another's URL, and a job
named ``x/history`` is read at ``GET /jobs/x/history``, its history at
``GET /history/x/history``.

    POST   /jobs                                 create a job (201)
    GET    /jobs                                 list jobs, last changed first (query:
                                                 status, phase_status, limit, offset)
    GET    /jobs/{job_id}                        one job
    DELETE /jobs/{job_id}                        delete it, its phases and its history
    GET    /history/{job_id}                     its history, oldest first
    POST   /triggers/{phase}/{trigger}/{job_id}  fire a trigger (body {"error": ...} and
                                                 header Idempotency-Key optional)
    POST   /progress/{phase}/{job_id}            report a phase's item counts

A client percent-encodes the id as one path segment (``quote(job_id, safe="")``): spaces,
``%``, ``?``, ``#`` and non-ASCII characters must be encoded; ``/`` may be sent raw or as
``%2F``, both reach the same job. An id with a ``.`` or ``..`` segment needs those dots
sent as ``%2E``, since clients remove dot segments from a path before sending it.

``phase_status`` is ``PHASE:STATUS``, repeatable, every pair holding:
``?phase_status=discovery:completed&phase_status=extraction:not_started``. The phase set's
phases, triggers and statuses are enums in the OpenAPI document, checked by FastAPI.

``Idempotency-Key`` names a request: the first trigger fired with it on a job is committed
with the key, and any later request with the same key on that job commits nothing and
answers the job as it is now, so a client may retry a request whose answer it lost.

Errors. Every error answer has one body, ``ErrorBody`` (``{"error": kind, "detail":
message, "issues": [...]}``): phasekit's errors, requests that do not match the API
(FastAPI's validation errors, reshaped here, with ``issues`` naming each refused field) and
unknown routes alike. 400: the body could not be read; 404: no such job; 409: the trigger is
not allowed from the phase's status (the message lists the allowed ones), the id is taken, a
concurrent update won, or the job belongs to another phase set; 422: the request does not
match the API, or phasekit refused a value; 503: the store failed and nothing was changed.
"""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from statemachine import (
    AsyncTracker,
    ConcurrentUpdateError,
    HistoryEvent,
    InvalidArgument,
    InvalidArgumentType,
    InvalidTransition,
    JobDeleted,
    JobExists,
    JobNotFound,
    JobStateSchema,
    PersistenceError,
    PhaseKitError,
    SpecMismatch,
    TransitionRejected,
    UnknownPhase,
    load_spec,
)

# Domain errors and the HTTP status each becomes; the first match wins. Any other
# PhaseKitError is a misconfigured service (e.g. a guard no plugin registers): 500.
ERROR_STATUS: tuple[tuple[type[PhaseKitError], int], ...] = (
    (JobNotFound, 404),
    (JobExists, 409),
    (InvalidTransition, 409),
    (TransitionRejected, 409),
    (ConcurrentUpdateError, 409),
    (SpecMismatch, 409),
    (UnknownPhase, 422),
    (InvalidArgument, 422),
    (InvalidArgumentType, 422),
    (PersistenceError, 503),
)


class Issue(BaseModel):
    """One refused part of a request: where it is and why."""

    loc: list[str | int] = Field(description='Where, e.g. ["body", "items_processed"].')
    msg: str
    type: str = Field(description="Pydantic's error type, e.g. greater_than_equal.")


class ErrorBody(BaseModel):
    """What every error answer carries, request validation errors included."""

    error: str = Field(
        description="The phasekit exception's class name (JobNotFound, InvalidTransition, "
        "...), RequestValidationError for a request that does not match the API, or "
        "HTTPException (e.g. no such route)."
    )
    detail: str = Field(description="What happened and, where known, what would be valid.")
    issues: list[Issue] = Field(
        default_factory=list, description="Each refused field of a RequestValidationError."
    )


class NewJob(BaseModel):
    """A job to create; without an id, one is generated."""

    job_id: str | None = Field(None, description="Any printable text, up to 255 characters.")
    metadata: dict[str, Any] = Field(default_factory=dict)


class Fire(BaseModel):
    """A trigger's optional error message (recorded on the phase, e.g. with ``fail``)."""

    error: str | None = None


class Progress(BaseModel):
    """A progress report: items done so far, and the phase's total when known."""

    items_processed: int = Field(ge=0)
    items_total: int | None = Field(None, ge=0)


_ERROR_MEANING = {
    400: "The body could not be read (e.g. it is not UTF-8 text).",
    404: "No job with this id.",
    409: "Not possible now: the trigger is not allowed from the phase's status, the id is "
    "taken, a concurrent update won, or the job belongs to another phase set.",
    422: "The request does not match this API, or phasekit refused a value (issues lists "
    "each refused field of a request that does not match the API).",
    503: "The store failed; nothing was changed.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that answers these error statuses and 422, all ErrorBody.

    Every route documents 422 with ErrorBody, so FastAPI adds no HTTPValidationError of its
    own: this app reshapes request validation errors into ErrorBody.
    """
    return {
        code: {"model": ErrorBody, "description": _ERROR_MEANING[code]}
        for code in sorted({*codes, 422})
    }


def get_tracker(request: Request) -> AsyncTracker:
    """The application's tracker (opened at startup, closed at shutdown)."""
    tracker: AsyncTracker = request.app.state.tracker
    return tracker


TrackerDep = Annotated[AsyncTracker, Depends(get_tracker)]
PhaseStatusPair = Annotated[str, Field(pattern=r"^[^:]+:[^:]+$")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Names this request: a repeated key on the job commits nothing and "
        "answers the job as it is now.",
    ),
]


def _error(status: int, kind: str, detail: str, issues: list[Issue] | None = None) -> JSONResponse:
    body = ErrorBody(error=kind, detail=detail, issues=issues or [])
    return JSONResponse(status_code=status, content=body.model_dump(mode="json"))


async def domain_error(request: Request, exc: Exception) -> JSONResponse:
    """A phasekit error as its HTTP status and an ErrorBody."""
    code = next((code for kind, code in ERROR_STATUS if isinstance(exc, kind)), 500)
    return _error(code, type(exc).__name__, str(exc))


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's request validation error, as an ErrorBody (422)."""
    assert isinstance(exc, RequestValidationError)
    issues = [
        Issue(
            loc=[part for part in e.get("loc", ()) if isinstance(part, str | int)],
            msg=e["msg"],
            type=e["type"],
        )
        for e in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(map(str, i.loc))}: {i.msg}" for i in issues)
    return _error(422, "RequestValidationError", detail or "invalid request", issues)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's HTTP errors (no such route, method not allowed) as an ErrorBody."""
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, "HTTPException", str(exc.detail))


def create_app(spec: str = "ingestion", store: str | None = None) -> FastAPI:
    """The service for one phase set on one store (default: ``$PHASEKIT_STORE``)."""
    store_url = store or os.environ.get("PHASEKIT_STORE", "sqlite:///phasekit.db")
    phase_set = load_spec(spec)
    # The phase set's names as enums, so the OpenAPI document lists them and FastAPI checks them.
    phase_name = Literal[phase_set.phase_names]  # type: ignore[name-defined]
    trigger_name = Literal[phase_set.triggers]  # type: ignore[name-defined]
    status_name = Literal[phase_set.statuses]  # type: ignore[name-defined]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncTracker(phase_set, store_url) as tracker:
            app.state.tracker = tracker
            yield

    app = FastAPI(title=f"phasekit jobs: {phase_set.name}", lifespan=lifespan)
    app.add_exception_handler(PhaseKitError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)

    @app.post("/jobs", status_code=201, responses=errors(400, 409, 503))
    async def create_job(new: NewJob, tracker: TrackerDep) -> JobStateSchema:
        """Create a job, every phase in the initial status."""
        job_id = new.job_id if new.job_id is not None else f"{phase_set.name}-{uuid.uuid4().hex}"
        return (await tracker.create_job(job_id, metadata=new.metadata)).to_schema()

    @app.get("/jobs", responses=errors(503))
    async def list_jobs(
        tracker: TrackerDep,
        job_status: Annotated[
            status_name | None, Query(alias="status", description="Overall status.")
        ] = None,
        phase_status: Annotated[
            list[PhaseStatusPair] | None,
            Query(
                description="PHASE:STATUS, repeatable: only jobs whose every named phase is "
                "in the status named (e.g. extraction:not_started).",
            ),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[JobStateSchema]:
        """Jobs, most recently updated first."""
        wanted: dict[str, str] = {}
        for pair in phase_status or ():
            phase, _, status = pair.partition(":")
            if wanted.setdefault(phase, status) != status:
                raise InvalidArgument(f"phase_status names phase {phase!r} twice")
        jobs = await tracker.list_jobs(
            status=job_status, phase_status=wanted, limit=limit, offset=offset
        )
        return [job.to_schema() for job in jobs]

    @app.get("/jobs/{job_id:path}", responses=errors(404, 409, 503))
    async def read_job(job_id: str, tracker: TrackerDep) -> JobStateSchema:
        """One job: its overall status, current phase, progress and phases."""
        return (await tracker.get_job(job_id)).to_schema()

    @app.delete("/jobs/{job_id:path}", responses=errors(404, 409, 503))
    async def delete_job(job_id: str, tracker: TrackerDep) -> JobDeleted:
        """Delete a job, its phases and its history; the deletion's event."""
        return await tracker.delete_job(job_id)

    @app.get("/history/{job_id:path}", responses=errors(404, 409, 503))
    async def history(
        job_id: str, tracker: TrackerDep
    ) -> list[Annotated[HistoryEvent, Field(discriminator="type")]]:
        """The job's creation and every status change, oldest first."""
        await tracker.get_job(job_id)  # 404 for a job that does not exist
        return await tracker.history(job_id)

    @app.post("/triggers/{phase}/{trigger}/{job_id:path}", responses=errors(400, 404, 409, 503))
    async def fire(
        phase: phase_name,
        trigger: trigger_name,
        job_id: str,
        *,
        tracker: TrackerDep,
        idempotency_key: IdempotencyKey = None,
        body: Fire | None = None,
    ) -> JobStateSchema:
        """Fire a trigger on a phase (409 with the allowed triggers when it is not allowed)."""
        job = await tracker.fire(
            job_id,
            phase,
            trigger,
            error=body.error if body else None,
            idempotency_key=idempotency_key,
        )
        return job.to_schema()

    @app.post("/progress/{phase}/{job_id:path}", responses=errors(400, 404, 409, 503))
    async def report_progress(
        phase: phase_name, job_id: str, report: Progress, tracker: TrackerDep
    ) -> JobStateSchema:
        """Report a phase's item counts (409 once the phase is in a terminal status)."""
        job = await tracker.report_progress(
            job_id, phase, report.items_processed, report.items_total
        )
        return job.to_schema()

    return app


app = create_app()
