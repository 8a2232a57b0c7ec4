"""What the command line prints: consoles, one-line errors, JSON, and tables of jobs and events."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..limits import format_duration
from ..runtime import JobStateSchema, PhaseStateSchema
from ..store import HistoryEvent, JobDeleted, PhaseChanged

__all__ = [
    "MAX_ERROR_LINE",
    "console",
    "echo_json",
    "error_console",
    "event_table",
    "job_view",
    "jobs_table",
    "one_line",
    "progress_cell",
    "shorten",
    "status_text",
    "timestamp",
]

#: Longest error line printed; hostile input must not flood a terminal.
MAX_ERROR_LINE = 2000

# Colours follow the usual meaning of common status names; a status the table does not
# know is shown plain. Colour is decoration only: every status is also printed as text.
_STATUS_STYLES: Mapping[str, str] = {
    "completed": "green",
    "succeeded": "green",
    "success": "green",
    "done": "green",
    "skipped": "green dim",
    "failed": "bold red",
    "abandoned": "red",
    "partially_failed": "red",
    "cancelled": "magenta",
    "running": "cyan",
    "deploying": "cyan",
    "paused": "yellow",
    "on_hold": "yellow",
    "retrying": "yellow",
    "not_started": "dim",
    "pending": "dim",
}


#: Width of tables written to a file or a pipe, where nobody's terminal limits it.
PIPE_WIDTH = 160


def console() -> Console:
    """A console on standard output; rich decides on colour (a terminal, NO_COLOR, FORCE_COLOR)."""
    out = Console(highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = PIPE_WIDTH
    return out


def error_console() -> Console:
    """A console on standard error."""
    return Console(stderr=True, highlight=False)


def shorten(text: str, limit: int = 80) -> str:
    """``text`` with non-printable characters escaped, cut to ``limit`` characters."""
    escaped = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def one_line(message: str) -> str:
    """A message as one printable line: line breaks become ``; ``, the rest escaped and capped."""
    parts = [part.strip() for part in message.splitlines() if part.strip()]
    return shorten("; ".join(parts), MAX_ERROR_LINE)


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON on standard output (never through rich: no wrapping)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def status_text(status: str | None) -> Text:
    """A status, coloured by what its name usually means."""
    if status is None:
        return Text("-", style="dim")
    return Text(status, style=_STATUS_STYLES.get(status, ""))


def progress_cell(progress: float, width: int = 20) -> RenderableType:
    """A progress bar followed by the percentage."""
    table = Table.grid(padding=(0, 1))
    table.add_row(
        ProgressBar(total=100.0, completed=progress, width=width),
        Text(f"{progress:5.1f}%"),
    )
    return table


def timestamp(at: datetime | None) -> str:
    """A time in UTC to the second, or ``-``."""
    if at is None:
        return "-"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def time_left(deadline: datetime | None, now: datetime | None = None, *, full: bool = True) -> Text:
    """How long until ``deadline`` (``in 1h29m``), or how long it is past (``overdue by 5m``,
    in red); with ``full``, after the deadline itself. ``-`` without one."""
    if deadline is None:
        return Text("-")
    left = round((deadline - (now or datetime.now(UTC))).total_seconds())
    when = f"{timestamp(deadline)} " if full else ""
    if left > 0:
        return Text(f"{when}{'(' if full else ''}in {format_duration(left)}{')' if full else ''}")
    late = f"overdue by {format_duration(-left)}"
    return Text(f"{when}({late})" if full else late, style="red")


def next_deadline(job: JobStateSchema) -> datetime | None:
    """The earliest deadline of the job's phases (None: no phase waits on one)."""
    return min((p.deadline for p in job.phases if p.deadline is not None), default=None)


def _items(phase: PhaseStateSchema) -> str:
    total = "?" if phase.items_total is None else f"{phase.items_total:,}"
    if phase.items_processed == 0 and phase.items_total is None:
        return "-"
    return f"{phase.items_processed:,}/{total}"


def jobs_table(jobs: Sequence[JobStateSchema]) -> Table:
    """One row per job: id, phase set, status, current phase, progress, version, last update,
    and the time left until the job's next deadline when any job has one."""
    table = Table(title=None, show_edge=False, pad_edge=False)
    columns = ["job", "phase set", "status", "current phase", "progress", "v", "updated"]
    deadlines = [next_deadline(job) for job in jobs]
    timed = any(d is not None for d in deadlines)
    if timed:
        columns.append("next deadline")
    for column in columns:
        table.add_column(column, no_wrap=column in ("progress", "updated", "next deadline"))
    now = datetime.now(UTC)
    for job, deadline in zip(jobs, deadlines, strict=True):
        row: list[RenderableType] = [
            Text(shorten(job.job_id)),
            Text(job.spec),
            status_text(job.status),
            Text(job.current_phase or "-"),
            progress_cell(job.progress, width=12),
            str(job.version),
            timestamp(job.updated_at),
        ]
        if timed:
            row.append(time_left(deadline, now, full=False))
        table.add_row(*row)
    return table


def job_view(
    job: JobStateSchema, allowed: Mapping[str, Sequence[str]] | None = None
) -> RenderableType:
    """A job for people: its aggregate, its metadata, then a table of its phases."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("job", Text(shorten(job.job_id, 200)))
    head.add_row("phase set", Text(job.spec))
    head.add_row("status", status_text(job.status))
    head.add_row("current phase", Text(job.current_phase or "-"))
    head.add_row("progress", progress_cell(job.progress, width=30))
    head.add_row("version", str(job.version))
    head.add_row("created", timestamp(job.created_at))
    head.add_row("updated", timestamp(job.updated_at))
    if (deadline := next_deadline(job)) is not None:
        head.add_row("next deadline", time_left(deadline))
    if job.metadata:
        head.add_row("metadata", Text(shorten(json.dumps(job.metadata, ensure_ascii=False), 300)))

    phases = Table(show_edge=False, pad_edge=False)
    columns = ["phase", "status", "progress", "items", "started", "finished", "error"]
    timed = any(phase.deadline is not None for phase in job.phases)
    if timed:
        columns.insert(6, "deadline")
    for column in columns:
        phases.add_column(column, no_wrap=column in ("progress", "started", "finished"))
    now = datetime.now(UTC)
    if allowed is not None:
        phases.add_column("next")
    for phase in job.phases:
        row: list[RenderableType] = [
            Text(phase.phase_name, style="bold" if phase.phase_name == job.current_phase else ""),
            status_text(phase.status),
            progress_cell(phase.progress, width=12),
            _items(phase),
            timestamp(phase.started_at),
            timestamp(phase.completed_at),
        ]
        if timed:
            row.append(time_left(phase.deadline, now))
        row.append(Text(shorten(phase.error, 120), style="red") if phase.error else Text(""))
        if allowed is not None:
            row.append(Text(", ".join(allowed.get(phase.phase_name, ())) or "-", style="dim"))
        phases.add_row(*row)
    return Group(head, Text(""), phases)


def event_table(events: Iterable[HistoryEvent]) -> Table:
    """A job's history: one row per event, oldest first."""
    table = Table(show_edge=False, pad_edge=False)
    for column in ("v", "at", "event", "phase", "trigger", "change", "error"):
        table.add_column(column, no_wrap=column in ("at", "change"))
    for event in events:
        if isinstance(event, PhaseChanged):
            change = Text.assemble(status_text(event.source), " → ", status_text(event.dest))
            table.add_row(
                str(event.version),
                timestamp(event.at),
                "phase changed",
                Text(event.phase),
                Text(event.trigger),
                change,
                Text(shorten(event.error, 120), style="red") if event.error else Text(""),
            )
        elif isinstance(event, JobDeleted):
            table.add_row(str(event.version), timestamp(event.at), "deleted", "", "", "", "")
        else:
            table.add_row(
                str(event.version),
                timestamp(event.at),
                "created",
                Text(f"{len(event.phases)} phases"),
                "",
                Text.assemble("→ ", status_text(event.initial_status)),
                "",
            )
    return table


@contextmanager
def stop_on_signal() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs (the handlers before it are put
    back after): long-running commands stop cleanly instead of being interrupted mid-work."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
