"""The ``phasekit`` command group: exit codes, one-line errors and log output."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

import click

from .. import __version__
from ..errors import PhaseKitError, SpecError
from .output import one_line

__all__ = ["DomainError", "PhasekitGroup", "main", "quiet_stderr_logging", "spec_error_line"]

#: Exit code of a domain error (click uses 2 for usage errors, 1 for ``ClickException``).
EXIT_ERROR = 1

# What a user can cause with input or state (and files that cannot be read or written),
# reported as one line; anything else is a bug in phasekit and keeps its traceback.
_DOMAIN_ERRORS = (PhaseKitError, OSError)


class DomainError(click.ClickException):
    """A domain error, printed as ``error: …`` on one line; exit code 1."""

    exit_code = EXIT_ERROR

    def show(self, file: IO[Any] | None = None) -> None:
        prefix = click.style("error", fg="red", bold=True)
        click.echo(f"{prefix}: {one_line(self.message)}", err=True)


def spec_error_line(exc: SpecError) -> str:
    """A spec error on one line: its first issue, and how many more ``validate`` shows."""
    if not exc.issues:
        return "invalid phase set"
    first = exc.issues[0].format()
    more = len(exc.issues) - 1
    if more:
        first += f" (and {more} more; run `phasekit validate {exc.filename}` for every issue)"
    return first


class PhasekitGroup(click.Group):
    """A group that turns domain errors into one-line messages with exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except SpecError as exc:
            raise DomainError(spec_error_line(exc)) from None
        except BrokenPipeError:
            raise
        except _DOMAIN_ERRORS as exc:
            raise DomainError(str(exc) or type(exc).__name__) from None


class _OneLineFormatter(logging.Formatter):
    """``warning: message: ExcType: exc`` on one line: a log record never prints a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f": {type(exc).__name__}: {exc}"
        return one_line(text)


class _OnceFilter(logging.Filter):
    """Drops a message already shown (plugins load once per manager; a command may build two)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """phasekit's log lines on standard error, as the command line shows them."""


def _install_logging() -> None:
    """phasekit's warnings go to standard error, one line each, never with a traceback."""
    logger = logging.getLogger("phasekit")
    if any(isinstance(h, _StderrHandler) for h in logger.handlers):
        return
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    handler.addFilter(_OnceFilter())
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
    logger.propagate = False


@contextmanager
def quiet_stderr_logging() -> Iterator[None]:
    """Silence phasekit's log lines on standard error for a while (a live display owns it)."""
    handlers = [h for h in logging.getLogger("phasekit").handlers if isinstance(h, _StderrHandler)]
    levels = [h.level for h in handlers]
    for handler in handlers:
        handler.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for handler, level in zip(handlers, levels, strict=True):
            handler.setLevel(level)


def _show_info_logs() -> None:
    """Let phasekit's info lines (a logging notifier's events among them) reach standard error."""
    logger = logging.getLogger("phasekit")
    logger.setLevel(logging.INFO)
    for handler in logger.handlers:
        if isinstance(handler, _StderrHandler):
            handler.setLevel(logging.INFO)


@click.group(cls=PhasekitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="phasekit")
@click.option(
    "-v", "--verbose", is_flag=True, help="Show phasekit's log lines, notifiers' events too."
)
def cli(verbose: bool) -> None:
    """Declarative phase sets for long-running jobs: validate, draw, inspect and drive them."""
    if verbose:
        _show_info_logs()


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: run the command line and exit with its code.

    click itself turns Ctrl-C into "Aborted!" and a closed pipe into a quiet exit.
    """
    _install_logging()
    cli.main(args=list(argv) if argv is not None else None, prog_name="phasekit")
