"""``phasekit jobs``: list, show, create, fire triggers on, report progress of and delete
stored jobs."""

from __future__ import annotations

import inspect
import json
import uuid
from pathlib import Path
from shlex import quote
from typing import Any

import click
from rich.text import Text

from ..errors import InvalidArgument, InvalidTransition, PhaseKitError, UnknownPhase
from ..limits import MAX_COUNT, MAX_JOB_ID_LENGTH
from ..runtime import JobState, PhaseState, job_schema, unknown_trigger
from .app import cli
from .output import (
    console,
    echo_json,
    event_table,
    job_view,
    jobs_table,
    progress_cell,
    shorten,
    status_text,
)
from .stores import DEFAULT_STORE, StoreSession, store_options

__all__ = ["jobs"]

#: Largest ``--metadata`` argument read (the tracker's own limit is checked afterwards).
MAX_METADATA_ARGUMENT = 2_000_000

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
_spec_option = click.option(
    "--spec",
    metavar="NAME_OR_FILE",
    help="The job's phase set, when the store does not keep it and none is bundled by its name.",
)


@cli.group()
def jobs() -> None:
    """Inspect and drive jobs in a store (default sqlite:///phasekit.db, or $PHASEKIT_STORE)."""


@jobs.command("list")
@click.option("--status", metavar="STATUS", help="Only jobs in this overall status.")
@click.option(
    "--phase-status",
    "phase_statuses",
    metavar="PHASE=STATUS",
    multiple=True,
    help="Only jobs whose PHASE is in STATUS (repeat for several; all must hold).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="At most this many jobs, most recently updated first.",
)
@store_options
@_json_option
def list_jobs(
    *,
    status: str | None,
    phase_statuses: tuple[str, ...],
    limit: int,
    store_url: str,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """List jobs, most recently updated first."""
    wanted: dict[str, str] = {}
    for pair in phase_statuses:
        phase, sep, wanted_status = pair.partition("=")
        if not sep or not phase or not wanted_status:
            raise click.BadParameter(
                f"{shorten(pair)!r} is not PHASE=STATUS (e.g. extraction=not_started)",
                param_hint="--phase-status",
            )
        wanted[phase] = wanted_status
    with StoreSession(store_url, config_path, read_only=True) as session:
        if wanted:
            if "phase_status" not in inspect.signature(session.store.list).parameters:
                raise PhaseKitError(
                    f"store {type(session.store).__name__} cannot filter jobs by phase status"
                )
            records = session.store.list(  # type: ignore[call-arg]
                status=status, phase_status=wanted, limit=limit
            )
        else:
            records = session.store.list(status=status, limit=limit)
    schemas = [job_schema(r) for r in records]
    if as_json:
        echo_json([s.model_dump(mode="json") for s in schemas])
        return
    out = console()
    if not schemas:
        where = f" in status {shorten(status)!r}" if status else ""
        if wanted:
            where += " with " + ", ".join(f"{p}={v}" for p, v in wanted.items())
        out.print(Text(f"no jobs{where} in {session.store_url}"), soft_wrap=True)
        return
    out.print(jobs_table(schemas))


@jobs.command("show")
@click.argument("job_id", metavar="ID")
@_spec_option
@store_options
@_json_option
def show_job(
    *, job_id: str, spec: str | None, store_url: str, config_path: Path | None, as_json: bool
) -> None:
    """Show a job: its aggregate and every phase, with the triggers each phase allows next."""
    with StoreSession(store_url, config_path, read_only=True) as session:
        record = session.record(job_id)
        phase_set = session.try_spec_for_job(record, spec)
    schema = job_schema(record, phase_set.allowed_triggers if phase_set is not None else None)
    if as_json:
        echo_json(schema.model_dump(mode="json"))
        return
    allowed = None
    if phase_set is not None:
        allowed = {p.phase_name: phase_set.allowed_triggers(p.status) for p in record.phases}
    console().print(job_view(schema, allowed))


def _parse_metadata(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    if len(text) > MAX_METADATA_ARGUMENT:
        raise InvalidArgument(
            f"--metadata is {len(text):,} characters; at most {MAX_METADATA_ARGUMENT:,}"
        )
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidArgument("--metadata is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"--metadata is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"--metadata must be a JSON object, not {type(value).__name__}")
    return value


@jobs.command("create")
@click.option("--spec", metavar="NAME_OR_FILE", help="Bundled phase-set name or YAML file.")
@click.option("--id", "job_id", metavar="ID", help="Job id (default: generated).")
@click.option("--metadata", metavar="JSON", help='A JSON object, e.g. \'{"source": "s3://b"}\'.')
@store_options
@_json_option
def create_job(
    *,
    spec: str | None,
    job_id: str | None,
    metadata: str | None,
    store_url: str,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Create a job, every phase in the initial status."""
    data = _parse_metadata(metadata)
    with StoreSession(store_url, config_path) as session:
        phase_set = session.spec_for_new_job(spec)
        tracker = session.tracker(phase_set)
        job = tracker.create_job(job_id or f"{phase_set.name}-{uuid.uuid4().hex[:8]}", data)
        schema = job.to_schema()
    if as_json:
        echo_json(schema.model_dump(mode="json"))
        return
    out = console()
    out.print(
        Text.assemble(
            "created job ",
            (shorten(schema.job_id, MAX_JOB_ID_LENGTH), "bold"),
            f" ({phase_set.name}: {', '.join(phase_set.phase_names)})",
        ),
        soft_wrap=True,
    )
    first = phase_set.phase_names[0]
    triggers = phase_set.allowed_triggers(phase_set.initial_status)
    if triggers:
        where = "" if session.store_url == DEFAULT_STORE else f" --store {quote(session.store_url)}"
        command = f"phasekit jobs fire {quote(schema.job_id)} {first} {triggers[0]}{where}"
        out.print(Text(f"next: {command}", style="dim"), soft_wrap=True)


def _phase(job: JobState, name: str) -> PhaseState:
    """The phase ``name`` of ``job``; ``UnknownPhase`` quotes at most a short prefix of it."""
    if name not in job.phases:
        raise UnknownPhase(shorten(name), job_id=job.job_id, known=list(job.phases))
    return job.phases[name]


def _summary(job: JobState) -> Text:
    current = job.get_current_phase()
    return Text.assemble(
        "job is ",
        status_text(job.get_overall_status()),
        f", current phase {current}" if current else "",
        f", {job.get_overall_progress():.1f}% (version {job.version})",
    )


@jobs.command("fire")
@click.argument("job_id", metavar="ID")
@click.argument("phase_name", metavar="PHASE")
@click.argument("trigger", metavar="TRIGGER")
@click.option("--error", metavar="MSG", help="Error message the trigger records on the phase.")
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="Commit the change once: a repeated call with this key changes nothing.",
)
@_spec_option
@store_options
@_json_option
def fire(
    *,
    job_id: str,
    phase_name: str,
    trigger: str,
    error: str | None,
    idempotency_key: str | None,
    spec: str | None,
    store_url: str,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Fire TRIGGER on PHASE of job ID, as in ``phasekit jobs fire job-1 extraction start``."""
    with StoreSession(store_url, config_path) as session:
        record = session.record(job_id)
        tracker = session.tracker(session.spec_for_job(record, spec))
        job = tracker.get_job(record.job_id)
        phase = _phase(job, phase_name)
        if not tracker.spec.has_trigger(trigger):
            raise InvalidTransition(
                job_id=job.job_id,
                phase=phase.phase_name,
                trigger=shorten(trigger),
                status=phase.status,
                allowed=phase.allowed_triggers(),
                reason=unknown_trigger(tracker.spec.name, shorten(trigger), tracker.spec.triggers),
            )
        source = phase.status
        # By id: another writer committing meanwhile means a re-plan, not an error.
        job = tracker.fire(
            record.job_id, phase.phase_name, trigger, error=error, idempotency_key=idempotency_key
        )
        phase = job.phases[phase.phase_name]
        schema = job.to_schema()
        summary = _summary(job)
    if as_json:
        echo_json(schema.model_dump(mode="json"))
        return
    if job.version == record.version:  # the key was committed before: nothing changed
        console().print(
            Text.assemble(
                f"nothing changed: idempotency key {shorten(idempotency_key or '')!r} was "
                "committed before; ",
                summary,
            ),
            soft_wrap=True,
        )
        return
    console().print(
        Text.assemble(
            (phase.phase_name, "bold"),
            ": ",
            status_text(source),
            " → ",
            status_text(phase.status),
            f" ({trigger}); ",
            summary,
        ),
        soft_wrap=True,
    )


@jobs.command("progress")
@click.argument("job_id", metavar="ID")
@click.argument("phase_name", metavar="PHASE")
@click.argument("processed", metavar="PROCESSED", type=click.IntRange(0, MAX_COUNT))
@click.option(
    "--total", type=click.IntRange(0, MAX_COUNT), help="Items in the phase, if known (or changed)."
)
@_spec_option
@store_options
@_json_option
def progress(
    *,
    job_id: str,
    phase_name: str,
    processed: int,
    total: int | None,
    spec: str | None,
    store_url: str,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Report PROCESSED items done in a phase (progress is processed/total, capped until done)."""
    with StoreSession(store_url, config_path) as session:
        record = session.record(job_id)
        tracker = session.tracker(session.spec_for_job(record, spec))
        phase_name = _phase(tracker.get_job(record.job_id), phase_name).phase_name
        job = tracker.report_progress(record.job_id, phase_name, processed, total)
        phase = job.phases[phase_name]
        schema = job.to_schema()
        summary = _summary(job)
    if as_json:
        echo_json(schema.model_dump(mode="json"))
        return
    total_text = "?" if phase.items_total is None else f"{phase.items_total:,}"
    out = console()
    out.print(
        Text.assemble(
            (phase.phase_name, "bold"), f": {phase.items_processed:,}/{total_text} items; ", summary
        ),
        soft_wrap=True,
    )
    out.print(progress_cell(phase.progress, width=30))


@jobs.command("delete")
@click.argument("job_id", metavar="ID")
@_spec_option
@store_options
@_json_option
def delete(
    *, job_id: str, spec: str | None, store_url: str, config_path: Path | None, as_json: bool
) -> None:
    """Delete job ID: its row, its phases and its history (the deletion stays in the event log)."""
    with StoreSession(store_url, config_path, read_only=True) as session:
        record = session.record(job_id)
        tracker = session.tracker(session.spec_for_job(record, spec))
        deleted = tracker.delete_job(record.job_id)
    if as_json:
        echo_json(deleted.model_dump(mode="json"))
        return
    click.echo(f"deleted job {shorten(record.job_id)} (it was at version {record.version})")


@jobs.command("history")
@click.argument("job_id", metavar="ID")
@store_options
@_json_option
def history(job_id: str, store_url: str, config_path: Path | None, as_json: bool) -> None:
    """Show a job's history: its creation, then every status change, oldest first."""
    with StoreSession(store_url, config_path, read_only=True) as session:
        events = session.history(job_id)
    if as_json:
        echo_json([e.model_dump(mode="json") for e in events])
        return
    console().print(event_table(events))
