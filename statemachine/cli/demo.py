"""``phasekit demo``: a simulated ingestion run, shown live and persisted in a store."""

from __future__ import annotations

import logging
import secrets
import shlex
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..hooks import hookimpl
from ..runtime import load_spec
from ..store import JobStatusChanged, PhaseChanged
from ..tracker import Tracker
from .app import DomainError, cli, quiet_stderr_logging
from .output import console, one_line, progress_cell, status_text, timestamp
from .simulation import Worker, plan_jobs
from .stores import DEFAULT_STORE, STORE_ENV, StoreSession

__all__ = ["demo"]

DEMO_SPEC = "ingestion"
DEFAULT_LOG = "phasekit-demo.log"
#: Seconds between two steps of a phase at ``--speed 1``.
BASE_TICK = 0.05
_FEED_LINES = 8


class _Feed:
    """A plugin that turns committed status changes into lines for people."""

    def __init__(self, started: float, echo: Callable[[Text], None] | None) -> None:
        self.started = started
        self.echo = echo
        self.lines: deque[Text] = deque(maxlen=_FEED_LINES)
        self._lock = threading.Lock()

    def _add(self, line: Text) -> None:
        stamped = Text.assemble((f"+{time.monotonic() - self.started:5.2f}s ", "dim"), line)
        with self._lock:
            self.lines.append(stamped)
        if self.echo is not None:
            self.echo(stamped)

    @hookimpl
    def phase_changed(self, event: PhaseChanged) -> None:
        line = Text.assemble(
            (f"{event.job_id:<16} ", "bold"),
            f"{event.phase:<15}",
            status_text(event.source),
            " → ",
            status_text(event.dest),
        )
        if event.error:
            line.append(f"  {event.error}", style="red")
        self._add(line)

    @hookimpl
    def job_status_changed(self, event: JobStatusChanged) -> None:
        if event.new_status != event.old_status:
            self._add(
                Text.assemble(
                    (f"{event.job_id:<16} ", "bold"), "job is now ", status_text(event.new_status)
                )
            )

    def recent(self) -> list[Text]:
        with self._lock:
            return list(self.lines)


def _live_view(workers: list[Worker], feed: _Feed, started: float, out: Console) -> RenderableType:
    """The live display: a bar per job and per phase, then the latest events.

    When a bar per phase would not fit the terminal, each job gets one bar and its current phase.
    """
    width, height = out.size
    phase_count = len(workers[0].job.phases) if workers else 0
    detailed = len(workers) * (1 + phase_count) + _FEED_LINES + 4 <= height
    # Fixed widths: the name, bar, percentage and status always show; the last column
    # (source or item counts) gets what is left of the terminal.
    bar = max(10, min(30, width - 62))
    rest = max(8, width - (16 + bar + 6 + 11 + 4))
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, width=16)
    table.add_column(no_wrap=True, width=bar)
    table.add_column(no_wrap=True, width=6, justify="right")
    table.add_column(no_wrap=True, width=11)
    table.add_column(no_wrap=True, width=rest, overflow="ellipsis")
    for worker in workers:
        job = worker.job
        note = str(job.metadata.get("source", "")) if detailed else job.get_current_phase() or ""
        table.add_row(
            Text(job.job_id, style="bold"),
            ProgressBar(total=100.0, completed=job.get_overall_progress(), width=bar),
            Text(f"{job.get_overall_progress():5.1f}%", style="bold"),
            status_text(job.get_overall_status()),
            Text(note, style="dim"),
        )
        for phase in job if detailed else ():
            items = f"{phase.items_processed:,}/{phase.items_total:,}" if phase.items_total else ""
            table.add_row(
                Text(f"  {phase.phase_name}"),
                ProgressBar(total=100.0, completed=phase.progress, width=bar),
                Text(f"{phase.progress:5.1f}%"),
                status_text(phase.status),
                Text(items, style="dim"),
            )
    elapsed = Text(f"elapsed {time.monotonic() - started:.1f}s", style="dim")
    return Group(table, Text(""), *feed.recent(), Text(""), elapsed)


def _summary(tracker: Tracker, workers: list[Worker]) -> tuple[Table, list[Text]]:
    """One row per job as the store has it now, and a line per failure."""
    table = Table(show_edge=False, pad_edge=False)
    for column in ("job", "status", "phase", "progress", "items", "time"):
        table.add_column(column, no_wrap=True, justify="right" if column == "items" else "left")
    notes = []
    for worker in workers:
        job = tracker.get_job(worker.job.job_id)
        failed = next((p for p in job if p.error), None)
        if worker.error:
            notes.append(Text(f"{job.job_id}: {one_line(worker.error)}", style="red"))
        elif failed is not None:
            notes.append(
                Text(f"{job.job_id} failed in {failed.phase_name}: {failed.error}", style="red")
            )
        table.add_row(
            Text(job.job_id, style="bold"),
            status_text(job.get_overall_status()),
            Text(failed.phase_name if failed else job.get_current_phase() or "-"),
            progress_cell(job.get_overall_progress(), width=10),
            f"{sum(p.items_processed for p in job):,}",
            f"{worker.elapsed:.1f}s",
        )
    return table, notes


@contextmanager
def _events_logged_to(path: Path) -> Iterator[None]:
    """phasekit's log lines (the logging notifier's too) go to ``path``, not to the terminal."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("phasekit")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with quiet_stderr_logging():
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def _attach_logging_notifier(tracker: Tracker) -> bool:
    """Attach the bundled ``logging`` notifier, as a config's ``notifiers:`` would."""
    factory = tracker.plugins.notifiers().get("logging")
    if factory is None:
        return False
    tracker.plugins.register(factory(level="INFO"), name="notifier:logging")
    return True


def _run(
    out: Console, tracker: Tracker, workers: list[Worker], feed: _Feed, started: float
) -> None:
    """Start the workers and wait for them, showing progress live on a terminal."""
    for worker in workers:
        worker.start()
    if out.is_terminal:
        with Live(
            get_renderable=lambda: _live_view(workers, feed, started, out),
            console=out,
            refresh_per_second=12,
            transient=False,
        ):
            while any(w.is_alive() for w in workers):
                time.sleep(0.05)
    for worker in workers:
        worker.join()


def _inspect_hint(out: Console, store_url: str, workers: list[Worker]) -> None:
    if store_url.startswith("memory:"):
        out.print(
            Text("The memory store ended with the demo; use --store sqlite:///FILE to keep it.")
        )
        return
    store = shlex.quote(store_url)
    first = workers[0].job.job_id
    failed = next((w.job.job_id for w in workers if w.job.get_overall_status() == "failed"), first)
    out.print()
    out.print(Text("Inspect the result:", style="bold"))
    for command in (
        f"phasekit jobs list --store {store}",
        f"phasekit jobs show {first} --store {store}",
        f"phasekit jobs history {failed} --store {store}",
        f"phasekit graph --job {failed} --store {store}",
    ):
        out.print(Text(f"  {command}"), soft_wrap=True)


@cli.command()
@click.option(
    "--jobs",
    "job_count",
    type=click.IntRange(1, 50),
    default=3,
    show_default=True,
    help="How many jobs run at once.",
)
@click.option(
    "--store",
    "store_url",
    default=DEFAULT_STORE,
    envvar=STORE_ENV,
    show_default=True,
    show_envvar=True,
    metavar="URL",
    help="Where the jobs are kept.",
)
@click.option(
    "--speed",
    type=click.FloatRange(0.1, 1000.0),
    default=1.0,
    show_default=True,
    help="Higher is faster (2 halves every wait).",
)
@click.option(
    "--seed", type=int, help="Decides item counts, pauses and failures (default: random)."
)
@click.option(
    "--failures/--no-failures", default=True, show_default=True, help="Allow one failure."
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_LOG,
    show_default=True,
    help="File the logging notifier writes events to.",
)
def demo(
    *,
    job_count: int,
    store_url: str,
    speed: float,
    seed: int | None,
    failures: bool,
    log_path: Path,
) -> None:
    """Run a simulated ingestion of several jobs at once, with live progress, into a store."""
    if seed is None:
        seed = secrets.randbelow(10_000)
    out = console()
    spec = load_spec(DEMO_SPEC)
    run = secrets.token_hex(3)
    plans = plan_jobs(spec, job_count, seed=seed, prefix=f"demo-{run}", failures=failures)
    stop = threading.Event()
    started = time.monotonic()
    echo = None if out.is_terminal else (lambda line: out.print(line, soft_wrap=True))
    feed = _Feed(started, echo)
    out.print(
        Text.assemble(
            ("phasekit demo", "bold"),
            f": {job_count} {spec.name} job{'s' if job_count != 1 else ''} → {store_url} "
            f"(seed {seed}, speed {speed:g}; started {timestamp(_now())})",
        ),
        soft_wrap=True,
    )
    with _events_logged_to(log_path), StoreSession(store_url) as session:
        tracker = session.tracker(spec)
        logged = _attach_logging_notifier(tracker)
        tracker.plugins.register(feed, name="demo-feed")
        workers = []
        for plan in plans:
            job = tracker.create_job(
                plan.job_id, metadata={"source": plan.source, "demo": True, "seed": seed}
            )
            workers.append(Worker(job, plan, tick=BASE_TICK / speed, stop=stop))
        try:
            _run(out, tracker, workers, feed, started)
        except KeyboardInterrupt:
            stop.set()
            for worker in workers:
                worker.join()
            raise
        out.print()
        out.print(Text("Result", style="bold"))
        table, notes = _summary(tracker, workers)
        out.print(table)
        for note in notes:
            out.print(note)
    where = f"events logged to {log_path}" if logged else "no logging notifier installed"
    out.print(
        Text(f"{where}; rerun this exact run with --seed {seed}", style="dim"), soft_wrap=True
    )
    _inspect_hint(out, store_url, workers)
    broken = [w for w in workers if w.error]
    if broken:
        raise DomainError(
            f"{len(broken)} job(s) stopped on an unexpected error; first: {broken[0].error}"
        )


def _now() -> datetime:
    return datetime.now(UTC)
