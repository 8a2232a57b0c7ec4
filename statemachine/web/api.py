"""The JSON API (jobs, a job, its history) and the Server-Sent Events stream of the event log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..errors import PhaseKitError
from ..runtime import JobStateSchema, job_schema
from ..store import HistoryEvent, JobRecord, LoggedEvent
from .broadcast import EventBroadcaster
from .reading import StoreReader, job_id_from_raw_path

__all__ = [
    "API_JOBS_PREFIX",
    "MAX_LIMIT",
    "BadRequest",
    "event_frame",
    "events_stream",
    "job_endpoint",
    "job_or_404",
    "job_path",
    "jobs_endpoint",
    "page_params",
    "problem",
    "schema_of",
]

API_JOBS_PREFIX = "/api/jobs/"
#: Most jobs one request lists.
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100

_jobs_adapter: TypeAdapter[list[JobStateSchema]] = TypeAdapter(list[JobStateSchema])
_history_adapter: TypeAdapter[list[HistoryEvent]] = TypeAdapter(list[HistoryEvent])


class BadRequest(PhaseKitError):
    """A query parameter or header the API does not accept (400)."""


def problem(status: int, detail: str) -> JSONResponse:
    """An error response: ``{"detail": ...}``."""
    return JSONResponse({"detail": detail}, status_code=status)


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {text[:40]!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be from {low} to {high}, not {value}")
    return value


def _cursor_params(request: Request) -> tuple[datetime, str] | None:
    """``after`` and ``after_id``: the last job of the previous page, or None."""
    at, job_id = request.query_params.get("after"), request.query_params.get("after_id")
    if at is None and job_id is None:
        return None
    if not at or job_id is None:
        raise BadRequest("after and after_id go together: the updated_at and id of a job")
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        raise BadRequest(f"after must be an ISO 8601 time, not {at[:40]!r}") from None
    if when.tzinfo is None:
        raise BadRequest(f"after must have a time zone (…Z or …+00:00), not {at[:40]!r}")
    return when, job_id


def page_params(request: Request) -> dict[str, Any]:
    """``status``, ``spec``, ``limit``, ``offset`` and the keyset cursor (``after`` and
    ``after_id``) of a listing, checked."""
    return {
        "status": request.query_params.get("status") or None,
        "spec": request.query_params.get("spec") or None,
        "limit": _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        "offset": _int_param(request, "offset", 0, 0, 2**62),
        "after": _cursor_params(request),
    }


def job_path(request: Request, prefix: str) -> tuple[str, str | None]:
    """The job id of a request's path after ``prefix``, decoded segment by segment."""
    raw = request.scope.get("raw_path")
    text = (
        raw.decode("latin-1") if isinstance(raw, bytes) and prefix in raw.decode("latin-1") else ""
    )
    if not text:
        # No raw path (or one without the prefix): the decoded path, whose slashes are all
        # taken as the id's, but a last ``/history``.
        text = request.url.path
        job_id, suffix = text.split(prefix, 1)[-1], None
        if job_id.endswith("/history") and prefix == API_JOBS_PREFIX:
            job_id, suffix = job_id.removesuffix("/history"), "history"
        return job_id, suffix
    try:
        return job_id_from_raw_path(text, prefix)
    except UnicodeDecodeError:
        raise BadRequest("the job id in the path is not UTF-8") from None


def schema_of(reader: StoreReader, record: JobRecord) -> JobStateSchema:
    """The API model of a job, with the triggers each phase allows when its phase set is known."""
    spec = reader.phase_set(record)
    return job_schema(record, spec.allowed_triggers if spec is not None else None)


async def job_or_404(reader: StoreReader, job_id: str) -> JobRecord | Response:
    record = await reader.job(job_id)
    if record is None:
        return problem(404, f"no job {job_id[:200]!r}")
    return record


async def jobs_endpoint(request: Request) -> Response:
    """``GET /api/jobs``."""
    reader: StoreReader = request.app.state.reader
    try:
        records = await reader.jobs(**page_params(request))
    except PhaseKitError as exc:
        return problem(400, str(exc))
    schemas = await run_in_threadpool(lambda: [schema_of(reader, r) for r in records])
    return Response(_jobs_adapter.dump_json(schemas), media_type="application/json")


async def job_endpoint(request: Request) -> Response:
    """``GET /api/jobs/{job_id}`` and ``GET /api/jobs/{job_id}/history``."""
    reader: StoreReader = request.app.state.reader
    try:
        job_id, suffix = job_path(request, API_JOBS_PREFIX)
    except BadRequest as exc:
        return problem(400, str(exc))
    found = await job_or_404(reader, job_id)
    if isinstance(found, Response):
        return found
    if suffix == "history":
        events = await reader.history(found.job_id)
        return Response(_history_adapter.dump_json(events), media_type="application/json")
    schema = await run_in_threadpool(schema_of, reader, found)
    return Response(schema.model_dump_json(), media_type="application/json")


def event_frame(logged: LoggedEvent) -> str:
    """One Server-Sent Event: ``id`` the position, ``event`` the type, ``data`` the JSON."""
    event = logged.event
    return f"id: {logged.position}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n"


def _resume_point(request: Request) -> int | None:
    text = request.headers.get("last-event-id") or request.query_params.get("after")
    if text is None or text.strip() == "":
        return None
    try:
        value = int(text.strip())
    except ValueError:
        raise BadRequest(f"Last-Event-ID must be an event position, not {text[:40]!r}") from None
    if value < 0:
        raise BadRequest(f"Last-Event-ID must not be negative, not {value}")
    return value


async def _frames(
    broadcaster: EventBroadcaster, after: int | None, heartbeat: float
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    sub, position, backlog = await run_in_threadpool(broadcaster.subscribe, loop, after)
    try:
        # The position the stream starts at, so a client knows it is connected (and where).
        yield f"retry: 2000\n: connected at {position}\n\n"
        last = position if after is None else after
        if after is not None and after < position:
            if backlog is None:
                backlog = await run_in_threadpool(broadcaster.read_between, after, position)
            for logged in backlog:
                yield event_frame(logged)
                last = logged.position
            last = max(last, position)
        while True:
            try:
                batch = await asyncio.wait_for(sub.queue.get(), heartbeat)
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            if batch is None:
                return
            frames = [event_frame(e) for e in batch if e.position > last]
            if frames:
                last = batch[-1].position
                yield "".join(frames)
    finally:
        broadcaster.unsubscribe(sub)


async def events_stream(request: Request) -> Response:
    """``GET /api/events``: the event log as Server-Sent Events, from now or a resume point."""
    try:
        after = _resume_point(request)
    except BadRequest as exc:
        return problem(400, str(exc))
    broadcaster: EventBroadcaster | None = request.app.state.broadcaster
    if broadcaster is None:
        return problem(404, "this store keeps no event log")
    return StreamingResponse(
        _frames(broadcaster, after, request.app.state.heartbeat),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
