"""OpenTelemetry spans of phasekit: one span per phase, from its stored start to its end.

A span is made when a phase enters a terminal status, with explicit start and end times: its
stored ``started_at`` and the change's ``at``. So a phase started by one process and finished
by another is one span, and its parent is the trace context kept in the job's metadata
(W3C ``traceparent``/``tracestate``, put there with ``with_trace_context``) rather than
whatever span happens to be current where the phase ended.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from statemachine import (
    InvalidArgumentType,
    JobCreated,
    JobDeleted,
    PhaseChanged,
    PhaseKitError,
    PhaseSet,
    Store,
    __version__,
    hookimpl,
)

from .job_lookup import FinishedPhase, JobLookup, SeenEvents, nanoseconds, open_store_option

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import Tracer, TracerProvider
    from opentelemetry.util.types import AttributeValue

__all__ = ["OpenTelemetryTracing", "register_notifiers", "with_trace_context"]

#: The instrumentation scope of the spans.
SCOPE = "phasekit"


@hookimpl
def register_notifiers() -> Mapping[str, Callable[..., object]]:
    """The ``opentelemetry`` notifier, for the ``notifiers:`` section of a tracker config."""
    return {"opentelemetry": OpenTelemetryTracing}


def _require_opentelemetry() -> None:
    """Refuse to build the plugin, naming the extra to install, when the API is missing."""
    try:
        import opentelemetry.trace  # noqa: F401, PLC0415 (only this plugin needs it)
    except ImportError:
        raise PhaseKitError(
            "the opentelemetry plugin needs the opentelemetry-api package, which is not "
            "installed: pip install 'phasekit[opentelemetry]'"
        ) from None


def _w3c() -> TextMapPropagator:
    from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
        TraceContextTextMapPropagator,
    )

    return TraceContextTextMapPropagator()


def with_trace_context(
    metadata: Mapping[str, Any] | None = None,
    *,
    context: Context | None = None,
    propagator: TextMapPropagator | None = None,
) -> dict[str, Any]:
    """A copy of ``metadata`` with the current span's trace context in it (``traceparent``).

    Create a job with it (``tracker.create_job(id, metadata=with_trace_context())``) and the
    spans of its phases join the trace of the code that created it, in whichever process
    each phase ends. ``context`` picks another span's context than the current one.
    """
    _require_opentelemetry()
    carrier: dict[str, str] = {}
    (propagator or _w3c()).inject(carrier, context=context)
    return {**(metadata or {}), **carrier}


class OpenTelemetryTracing:
    """Makes a span for each phase that finishes, on a tracer provider, from the hooks.

    ``store`` is the store the events come from (``tracker.store``, or its URL): it gives the
    phase's ``started_at`` and the job's metadata. Spans are named ``<spec>/<phase>``, with
    attributes ``phasekit.spec``, ``phasekit.phase``, ``phasekit.status``, ``phasekit.outcome``,
    ``phasekit.job_id``, ``phasekit.trigger`` and the phase's item counts; a phase that ends
    in a status without the ``success`` flag has status ERROR with the phase's error. The
    parent comes from the job's metadata (W3C trace context, or ``propagator``'s format);
    without one, the span starts a trace of its own.

    Given to a tracker (``plugins=[...]``), spans are made in the committing thread, at most
    once; named under ``notifiers:``, the relay delivers it at least once, and an event
    delivered again makes no second span.
    """

    __slots__ = ("_lookup", "_propagator", "_seen", "_tracer")

    #: The relay can deliver these hooks from a store's event log (they raise only when the
    #: store cannot be read, so the relay tries again).
    relayable: ClassVar[bool] = True

    def __init__(
        self,
        store: Store | str | None = None,
        *,
        specs: Iterable[PhaseSet | str] = (),
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        store_options: Mapping[str, Any] | None = None,
    ) -> None:
        _require_opentelemetry()
        from opentelemetry import trace  # noqa: PLC0415
        from opentelemetry.propagators.textmap import TextMapPropagator  # noqa: PLC0415

        if tracer_provider is not None and not isinstance(tracer_provider, trace.TracerProvider):
            kind = type(tracer_provider).__name__
            raise InvalidArgumentType(
                f"opentelemetry tracer_provider must be a TracerProvider, not {kind}"
            )
        if propagator is not None and not isinstance(propagator, TextMapPropagator):
            kind = type(propagator).__name__
            raise InvalidArgumentType(
                f"opentelemetry propagator must be a TextMapPropagator, not {kind}"
            )
        opened, owned = open_store_option("opentelemetry", store, store_options)
        self._lookup = JobLookup(opened, specs, owns_store=owned)
        provider = tracer_provider or trace.get_tracer_provider()
        self._tracer: Tracer = provider.get_tracer(SCOPE, __version__)
        self._propagator = propagator or _w3c()
        self._seen = SeenEvents()

    # -- hooks -------------------------------------------------------------------------------

    @hookimpl
    def job_created(self, event: JobCreated) -> None:
        self._lookup.remember(event.job_id, event.spec)

    @hookimpl
    def phase_changed(self, event: PhaseChanged) -> None:
        if event.event_id in self._seen:
            return
        finished = self._lookup.finished_phase(event)
        if finished is not None:
            self.record_span(finished)
        self._seen.add(event.event_id)

    @hookimpl
    def job_deleted(self, event: JobDeleted) -> None:
        self._lookup.forget(event.job_id)

    # -- spans -------------------------------------------------------------------------------

    def parent_context(self, metadata: Mapping[str, Any]) -> Context:
        """The trace context kept in a job's metadata; an empty one (a new trace) without."""
        from opentelemetry.context import Context  # noqa: PLC0415

        carrier = {k: v for k, v in metadata.items() if isinstance(v, str)}
        # An explicit empty context: the span currently active here is not the phase's parent.
        return self._propagator.extract(carrier, context=Context())

    def record_span(self, phase: FinishedPhase) -> None:
        """Make and end the span of one finished phase, with its stored times."""
        from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

        attributes: dict[str, AttributeValue] = {
            "phasekit.spec": phase.spec,
            "phasekit.phase": phase.phase,
            "phasekit.status": phase.status,
            "phasekit.outcome": phase.outcome,
            "phasekit.job_id": phase.job_id,
            "phasekit.trigger": phase.trigger,
            "phasekit.items_processed": phase.items_processed,
        }
        if phase.items_total is not None:
            attributes["phasekit.items_total"] = phase.items_total
        if phase.started_at is None:
            attributes["phasekit.never_started"] = True
        end = nanoseconds(phase.completed_at)
        start = end if phase.started_at is None else min(end, nanoseconds(phase.started_at))
        span = self._tracer.start_span(
            f"{phase.spec}/{phase.phase}",
            context=self.parent_context(phase.metadata),
            attributes=attributes,
            start_time=start,
        )
        if not phase.success:
            span.set_status(
                Status(StatusCode.ERROR, phase.error or f"phase ended in status {phase.status}")
            )
        span.end(end_time=end)

    def close(self) -> None:
        """Close a store opened from a URL (the tracer provider is the application's)."""
        self._lookup.close()

    def __repr__(self) -> str:
        return f"<OpenTelemetryTracing store={type(self._lookup.store).__name__}>"
