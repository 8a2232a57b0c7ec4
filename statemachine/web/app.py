"""``create_app``: the dashboard as a Starlette application over one store, and its token gate."""

from __future__ import annotations

import functools
import gzip
import hmac
import mimetypes
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import PhaseKitError
from ..spec import bundled_names
from ..store import EventLog, Store
from .api import (
    API_JOBS_PREFIX,
    BadRequest,
    events_stream,
    job_endpoint,
    job_or_404,
    job_path,
    jobs_endpoint,
    page_params,
    problem,
)
from .broadcast import EventBroadcaster
from .openapi import openapi_document
from .pages import document, job_main, jobs_main
from .reading import StoreReader

__all__ = ["TOKEN_COOKIE", "create_app", "end_streams"]

#: The cookie a browser keeps the token in, once it passed ``?token=``.
TOKEN_COOKIE = "phasekit_token"
#: Jobs the list page counts per status (the most recent ones).
COUNT_SCAN = 5000
STATIC = Path(__file__).parent / "static"
#: Where the vendored files are, each stored as ``NAME.gz``.
VENDOR = STATIC / "vendor"
#: A vendored file changes only with its name (``mermaid-12.3.0.min.js``).
VENDOR_CACHE = "public, max-age=31536000, immutable"
PAGE_PREFIX = "/jobs/"


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _html(
    request: Request, title: str, main: str, job_id: str | None = None, *, diagram: bool = False
) -> Response:
    if request.query_params.get("fragment"):
        return HTMLResponse(main)
    page = document(title, main, base=_base(request), job_id=job_id, diagram=diagram)
    return HTMLResponse(page)


async def jobs_page(request: Request) -> Response:
    """``/``: the jobs, filterable by status and phase set, newest first."""
    reader: StoreReader = request.app.state.reader
    try:
        params = page_params(request)
        records = await reader.jobs(**params)
        whole = await reader.counts()
        if whole is None:  # a store that cannot count: the most recent jobs, read
            scanned = await reader.jobs(
                status=None, spec=params["spec"], limit=COUNT_SCAN, offset=0
            )
            counts = Counter(r.status for r in scanned)
            names = {r.spec_name for r in scanned}
            counted_all = len(scanned) < COUNT_SCAN
        else:
            counts = Counter()
            for (spec_name, status), n in whole.items():
                if params["spec"] in (None, spec_name):
                    counts[status] += n
            names = {spec_name for spec_name, _ in whole}
            counted_all = True
    except PhaseKitError as exc:
        return problem(400, str(exc))
    phase_sets = await reader.phase_sets(records)
    main = jobs_main(
        records,
        phase_sets,
        base=_base(request),
        status=params["status"],
        spec=params["spec"],
        counts=counts,
        counted_all=counted_all,
        spec_names=set(bundled_names()) | names,
        limit=params["limit"],
        offset=params["offset"],
        after=params["after"],
        keyset=reader.keyset,
    )
    return _html(request, "jobs", main)


async def job_page(request: Request) -> Response:
    """``/jobs/{job_id}``: one job, its phases, errors, diagram and history."""
    reader: StoreReader = request.app.state.reader
    try:
        job_id, suffix = job_path(request, PAGE_PREFIX)
    except BadRequest as exc:
        return problem(400, str(exc))
    if suffix is not None:
        job_id = f"{job_id}/{suffix}"
    found = await job_or_404(reader, job_id)
    if isinstance(found, Response):
        return found
    history = await reader.history(found.job_id)
    spec = await run_in_threadpool(reader.phase_set, found)
    main = job_main(found, spec, history, base=_base(request))
    return _html(request, found.job_id, main, job_id=found.job_id, diagram=spec is not None)


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


@functools.cache
def _vendored() -> dict[str, Path]:
    """The vendored files by the name they are served under (``NAME`` of ``NAME.gz``)."""
    return {path.name.removesuffix(".gz"): path for path in VENDOR.glob("*.gz")}


@functools.cache
def _vendored_bytes(name: str) -> bytes:
    return _vendored()[name].read_bytes()


async def vendored(request: Request) -> Response:
    """``/static/vendor/{name}``: a vendored file, stored gzip-compressed in the package
    (Mermaid is 5.5 MB as it is, 1.6 MB compressed). A browser that accepts gzip gets the
    stored bytes as they are; any other client gets them decompressed. A vendored file
    changes only with its name (``mermaid-12.3.0.min.js``), so it is cached for a year."""
    name = request.path_params["name"]
    if name not in _vendored():  # only known names reach the cache
        return problem(404, f"no vendored file {name[:200]!r}")
    packed = _vendored_bytes(name)
    headers = {"Cache-Control": VENDOR_CACHE, "Vary": "Accept-Encoding"}
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(packed, media_type=media_type, headers=headers)
    return Response(gzip.decompress(packed), media_type=media_type, headers=headers)


class TokenGate:
    """Lets a request through with ``Authorization: Bearer TOKEN`` or the token cookie; a
    browser's ``?token=TOKEN`` sets the cookie (HttpOnly) and is redirected without it."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if (scheme.lower() == "bearer" and self._matches(credentials.strip())) or self._matches(
            request.cookies.get(TOKEN_COOKIE)
        ):
            await self.app(scope, receive, send)
            return
        if self._matches(request.query_params.get("token")):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            # The path as sent (still encoded): a job id's %2F must stay one.
            raw = scope.get("raw_path")
            path = raw.decode("latin-1").partition("?")[0] if raw else quote(request.url.path)
            target = path + (f"?{urlencode(rest)}" if rest else "")
            response: Response = RedirectResponse(target, status_code=303)
            response.set_cookie(
                TOKEN_COOKIE,
                self.token.decode(),
                path=str(scope.get("root_path") or "/"),
                httponly=True,
                samesite="strict",
            )
        else:
            response = JSONResponse(
                {"detail": "a token is required: Authorization: Bearer TOKEN"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        await response(scope, receive, send)


def create_app(store: Store, *, token: str | None = None, heartbeat: float = 15.0) -> ASGIApp:
    """The dashboard over ``store``, an ASGI application (mount it in a host's app).

    It only reads the store and keeps nothing of its own but the phase sets it has read, so
    it survives restarts and runs beside any number of workers. One thread per application
    follows the event log for every ``/api/events`` stream. With ``token``, every request
    needs ``Authorization: Bearer TOKEN`` (or the cookie ``?token=TOKEN`` sets); else 401.
    ``heartbeat``: seconds between the comments that keep an idle stream open.
    """
    if token is not None and not token:
        raise ValueError("token must not be empty")
    broadcaster = EventBroadcaster(store) if isinstance(store, EventLog) else None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if broadcaster is not None:
            broadcaster.close()

    app = Starlette(
        routes=[
            Route("/", jobs_page),
            Route("/jobs/{job_id:path}", job_page),
            Route("/api/jobs", jobs_endpoint),
            Route(API_JOBS_PREFIX + "{job_id:path}", job_endpoint),
            Route("/api/events", events_stream),
            Route("/openapi.json", openapi),
            Route("/static/vendor/{name}", vendored),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
    )
    app.state.reader = StoreReader(store)
    app.state.broadcaster = broadcaster
    app.state.heartbeat = heartbeat
    if token is None:
        return app
    return TokenGate(app, token)


def end_streams(app: ASGIApp) -> None:
    """End every open event stream of a dashboard ``create_app`` made: a server that shuts
    down waits for open responses, and a stream would never end by itself."""
    inner = app.app if isinstance(app, TokenGate) else app
    if isinstance(inner, Starlette) and isinstance(inner.state.broadcaster, EventBroadcaster):
        inner.state.broadcaster.close()
