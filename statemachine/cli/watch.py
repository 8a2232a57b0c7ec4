"""``phasekit jobs watch``: jobs shown live as the event log says they change, across processes."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..errors import PhaseKitError
from ..runtime import PhaseSet
from ..store import (
    Event,
    EventLog,
    JobCreated,
    JobDeleted,
    JobRecord,
    JobStatusChanged,
    PhaseChanged,
)
from .jobs import jobs
from .output import console, one_line, progress_cell, shorten, status_text, timestamp
from .stores import StoreSession, store_options

__all__ = ["watch"]

_FEED_LINES = 8
#: Running jobs ``watch`` without ids looks at (the most recently updated).
MAX_WATCHED = 200


class _Watched:
    """The jobs watched, as last read from the store, and the latest lines of what happened."""

    def __init__(self, session: StoreSession, follow_new: bool) -> None:
        self.session = session
        self.follow_new = follow_new
        self.records: dict[str, JobRecord] = {}
        self.deleted: set[str] = set()
        self.specs: dict[str, PhaseSet | None] = {}
        self.feed: deque[Text] = deque(maxlen=_FEED_LINES)
        self.started = time.monotonic()
        # The live display draws from its own thread while events are applied.
        self.lock = threading.Lock()

    def spec(self, record: JobRecord) -> PhaseSet | None:
        if record.spec_fingerprint not in self.specs:
            self.specs[record.spec_fingerprint] = self.session.try_spec_for_job(record)
        return self.specs[record.spec_fingerprint]

    def terminal(self, job_id: str) -> bool:
        """Whether the job is done: deleted, or its overall status is a terminal one."""
        if job_id in self.deleted:
            return True
        record = self.records[job_id]
        spec = self.spec(record)
        if spec is None or record.status not in spec.statuses:
            return all(p.completed_at is not None for p in record.phases)
        return spec.status_def(record.status).terminal

    def all_terminal(self) -> bool:
        return all(self.terminal(job_id) for job_id in self.records)

    def apply(self, events: Sequence[Event], echo: Callable[[Text], None] | None) -> None:
        """Reload the jobs ``events`` changed, and note what happened to them."""
        changed: dict[str, None] = {}
        for event in events:
            watched = event.job_id in self.records
            if isinstance(event, JobCreated) and self.follow_new and not watched:
                if len(self.records) < MAX_WATCHED:
                    changed[event.job_id] = None
                    self._note(Text.assemble(_job(event.job_id), "created"), echo)
                continue
            if not watched:
                continue
            changed[event.job_id] = None
            if isinstance(event, PhaseChanged):
                line = Text.assemble(
                    _job(event.job_id),
                    f"{event.phase:<15}",
                    status_text(event.source),
                    " → ",
                    status_text(event.dest),
                )
                if event.error:
                    line.append(f"  {shorten(event.error, 120)}", style="red")
                self._note(line, echo)
            elif isinstance(event, JobStatusChanged) and event.new_status != event.old_status:
                self._note(
                    Text.assemble(_job(event.job_id), "job is now ", status_text(event.new_status)),
                    echo,
                )
            elif isinstance(event, JobDeleted):
                self.deleted.add(event.job_id)
                self._note(Text.assemble(_job(event.job_id), "deleted"), echo)
        for job_id in changed:
            if job_id in self.deleted:
                continue
            record = self.session.store.load(job_id)
            with self.lock:
                if record is not None:
                    self.records[job_id] = record
                elif job_id in self.records:  # deleted since the event
                    self.deleted.add(job_id)

    def snapshot(self) -> tuple[list[tuple[str, JobRecord]], list[Text]]:
        """The jobs and the feed, as they are now."""
        with self.lock:
            return list(self.records.items()), list(self.feed)

    def _note(self, line: Text, echo: Callable[[Text], None] | None) -> None:
        stamped = Text.assemble((f"+{time.monotonic() - self.started:6.2f}s ", "dim"), line)
        with self.lock:
            self.feed.append(stamped)
        if echo is not None:
            echo(stamped)


def _started(watched: _Watched, record: JobRecord) -> bool:
    """Whether any phase of the job has left the initial status."""
    spec = watched.spec(record)
    if spec is None:
        return any(p.started_at is not None for p in record.phases)
    return any(p.status != spec.initial_status for p in record.phases)


def _job(job_id: str) -> Text:
    return Text(f"{shorten(job_id, 24):<24} ", style="bold")


def _view(watched: _Watched, out: Console) -> RenderableType:
    """A bar per job and per phase (one bar per job when that would not fit), then the feed."""
    width, height = out.size
    records, feed = watched.snapshot()
    phases = sum(len(r.phases) for _, r in records)
    detailed = len(records) + phases + _FEED_LINES + 4 <= height
    bar = max(10, min(30, width - 64))
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, width=24, overflow="ellipsis")
    table.add_column(no_wrap=True, width=bar)
    table.add_column(no_wrap=True, width=6, justify="right")
    table.add_column(no_wrap=True, width=12)
    table.add_column(no_wrap=True, overflow="ellipsis")
    for job_id, record in records:
        status = "deleted" if job_id in watched.deleted else record.status
        table.add_row(
            Text(shorten(job_id, 24), style="bold"),
            ProgressBar(total=100.0, completed=record.progress, width=bar),
            Text(f"{record.progress:5.1f}%", style="bold"),
            status_text(status),
            Text(record.current_phase or "", style="dim"),
        )
        for phase in record.phases if detailed else ():
            total = f"{phase.items_total:,}" if phase.items_total is not None else ""
            items = f"{phase.items_processed:,}/{total}" if total else ""
            table.add_row(
                Text(f"  {phase.phase_name}"),
                ProgressBar(total=100.0, completed=phase.progress, width=bar),
                Text(f"{phase.progress:5.1f}%"),
                status_text(phase.status),
                Text(items, style="dim"),
            )
    elapsed = Text(f"watching for {time.monotonic() - watched.started:.1f}s", style="dim")
    return Group(table, Text(""), *feed, Text(""), elapsed)


def _summary(watched: _Watched) -> tuple[Table, list[Text]]:
    table = Table(show_edge=False, pad_edge=False)
    for column in ("job", "status", "phase", "progress", "items", "updated"):
        table.add_column(
            column, no_wrap=column != "job", justify="right" if column == "items" else "left"
        )
    notes = []
    for job_id, record in watched.records.items():
        failed = next((p for p in record.phases if p.error), None)
        if failed is not None:
            notes.append(
                Text(
                    f"{shorten(job_id)} failed in {failed.phase_name}: "
                    f"{one_line(failed.error or '')}",
                    style="red",
                )
            )
        table.add_row(
            Text(shorten(job_id), style="bold"),
            status_text("deleted" if job_id in watched.deleted else record.status),
            Text(failed.phase_name if failed else record.current_phase or "-"),
            progress_cell(record.progress, width=10),
            f"{sum(p.items_processed for p in record.phases):,}",
            timestamp(record.updated_at),
        )
    return table, notes


def _follow(
    log: EventLog, watched: _Watched, echo: Callable[[Text], None] | None, position: int
) -> None:
    """Read the log from ``position`` and apply it until every watched job is terminal."""
    wait: Callable[[int, float], bool] | None = getattr(log, "wait_for_events", None)
    while not watched.all_terminal():
        batch = log.read_events(position, limit=1000)
        if batch:
            position = batch[-1].position
            watched.apply([logged.event for logged in batch], echo)
            continue
        if callable(wait):
            wait(position, 0.5)
        else:
            time.sleep(0.25)


@jobs.command("watch")
@click.argument("job_ids", metavar="[ID]...", nargs=-1)
@store_options
def watch(*, job_ids: tuple[str, ...], store_url: str, config_path: Path | None) -> None:
    """Show jobs live (the given ones, else every running one) until each is finished.

    Without ids: the jobs started and not finished, and those created while it watches.
    Follows the store's event log, so it sees changes any process commits; ends with a summary.
    """
    out = console()
    with StoreSession(store_url, config_path, read_only=True) as session:
        store = session.store
        if not isinstance(store, EventLog):
            raise PhaseKitError(f"store {type(store).__name__} keeps no event log to follow")
        # The position first: a change committed while the jobs load is read again, not lost.
        position = store.last_position()
        watched = _Watched(session, follow_new=not job_ids)
        if job_ids:
            for job_id in dict.fromkeys(job_ids):
                watched.records[job_id] = session.record(job_id)
        else:
            for record in store.list(limit=MAX_WATCHED * 5):
                if len(watched.records) >= MAX_WATCHED:
                    break
                watched.records[record.job_id] = record
                if watched.terminal(record.job_id) or not _started(watched, record):
                    del watched.records[record.job_id]
            if not watched.records:
                out.print(Text(f"no running jobs in {session.store_url}"), soft_wrap=True)
                return
        if out.is_terminal:
            with Live(
                get_renderable=lambda: _view(watched, out),
                console=out,
                refresh_per_second=10,
                transient=False,
            ):
                _follow(store, watched, None, position)
        else:
            _follow(store, watched, lambda line: out.print(line, soft_wrap=True), position)
        table, notes = _summary(watched)
    out.print()
    out.print(Text("Result", style="bold"))
    out.print(table)
    for note in notes:
        out.print(note, soft_wrap=True)
