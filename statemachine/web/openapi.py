"""The OpenAPI document of the dashboard's API, its schemas taken from the pydantic models."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import TypeAdapter

from .. import __version__
from ..runtime import JobStateSchema
from ..store import Event, HistoryEvent
from .api import DEFAULT_LIMIT, MAX_LIMIT

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"


def _schema(adapter: TypeAdapter[Any], components: dict[str, Any]) -> dict[str, Any]:
    """``adapter``'s JSON Schema with its definitions moved into ``components``."""
    schema = adapter.json_schema(ref_template=_REF, mode="serialization")
    components.update(schema.pop("$defs", {}))
    return schema


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="Problem")}}},
    }


_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "description": "The job id, percent-encoded (a `/` in it as `%2F`).",
    "schema": {"type": "string"},
}


@functools.cache
def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 of ``/api/jobs``, ``/api/jobs/{job_id}``, its history and ``/api/events``."""
    components: dict[str, Any] = {
        "Problem": {
            "type": "object",
            "properties": {"detail": {"type": "string"}},
            "required": ["detail"],
        }
    }
    job = _schema(TypeAdapter(JobStateSchema), components)
    jobs = _schema(TypeAdapter(list[JobStateSchema]), components)
    history = _schema(TypeAdapter(list[HistoryEvent]), components)
    event = _schema(TypeAdapter(Event), components)
    components["Event"] = event
    unauthorized = _error("A token is required: `Authorization: Bearer TOKEN` (or the cookie).")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "phasekit dashboard",
            "version": __version__,
            "description": "Read-only views of a phasekit store: jobs, histories and the "
            "event log as Server-Sent Events.",
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
        "paths": {
            "/api/jobs": {
                "get": {
                    "operationId": "listJobs",
                    "summary": "Jobs, most recently updated first.",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "description": "Only jobs in this overall status.",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "spec",
                            "in": "query",
                            "description": "Only jobs of this phase set (its name).",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_LIMIT,
                                "default": DEFAULT_LIMIT,
                            },
                        },
                        {
                            "name": "offset",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "default": 0},
                        },
                        {
                            "name": "after",
                            "in": "query",
                            "description": "With after_id: list the jobs after the one updated "
                            "at this time (keyset pagination: the last job of the previous page).",
                            "schema": {"type": "string", "format": "date-time"},
                        },
                        {
                            "name": "after_id",
                            "in": "query",
                            "description": "With after: the id of the last job of the "
                            "previous page.",
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The jobs.",
                            "content": {"application/json": {"schema": jobs}},
                        },
                        "400": _error("A parameter out of range."),
                        "401": unauthorized,
                    },
                }
            },
            "/api/jobs/{job_id}": {
                "get": {
                    "operationId": "getJob",
                    "summary": "One job: its aggregate and its phases.",
                    "parameters": [_JOB_ID],
                    "responses": {
                        "200": {
                            "description": "The job.",
                            "content": {"application/json": {"schema": job}},
                        },
                        "404": _error("No such job."),
                        "401": unauthorized,
                    },
                }
            },
            "/api/jobs/{job_id}/history": {
                "get": {
                    "operationId": "getJobHistory",
                    "summary": "The job's creation, then every status change, oldest first.",
                    "parameters": [_JOB_ID],
                    "responses": {
                        "200": {
                            "description": "The history.",
                            "content": {"application/json": {"schema": history}},
                        },
                        "404": _error("No such job."),
                        "401": unauthorized,
                    },
                }
            },
            "/api/events": {
                "get": {
                    "operationId": "streamEvents",
                    "summary": "The event log as Server-Sent Events, from now or a position.",
                    "description": "Each event is `id: POSITION`, `event: TYPE`, `data: JSON` "
                    "(an `Event`). A `Last-Event-ID` header (or `after`) resumes after that "
                    "position; comments (`: heartbeat`) keep the connection open.",
                    "parameters": [
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "schema": {"type": "integer", "minimum": 0},
                        },
                        {
                            "name": "after",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The stream; each `data:` is an Event.",
                            "content": {
                                "text/event-stream": {
                                    "schema": {"type": "string"},
                                    "itemSchema": {"$ref": _REF.format(model="Event")},
                                }
                            },
                        },
                        "400": _error("A Last-Event-ID that is not a position."),
                        "401": unauthorized,
                        "404": _error("The store keeps no event log."),
                    },
                }
            },
        },
    }
