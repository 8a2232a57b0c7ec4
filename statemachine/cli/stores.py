"""The store a command works on, the phase set of a job in it, and trackers over both."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import click

from ..errors import JobNotFound, PhaseKitError, SpecError
from ..hooks import PluginManager
from ..limits import validate_job_id
from ..runtime import PhaseSet, load_spec, stored_phase_set
from ..spec import bundled_names
from ..store import HistoryEvent, JobRecord, SpecArchive, Store, open_store
from ..tracker import Tracker
from ..tracker_config import TrackerConfig, build_notifiers, config_spec, read_config
from .output import shorten

__all__ = [
    "DEFAULT_STORE",
    "STORE_ENV",
    "StoreSession",
    "command_plugins",
    "store_options",
]

DEFAULT_STORE = "sqlite:///phasekit.db"
STORE_ENV = "PHASEKIT_STORE"

F = TypeVar("F", bound=Callable[..., Any])


def store_options(command: F) -> F:
    """``--store URL`` and ``--config FILE``, shared by every command that opens a store."""
    command = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Tracker config (spec, store, notifiers); an explicit --store overrides its store.",
    )(command)
    command = click.option(
        "--store",
        "store_url",
        default=DEFAULT_STORE,
        envvar=STORE_ENV,
        show_default=True,
        show_envvar=True,
        metavar="URL",
        help="Store URL: sqlite:///FILE, postgresql://…, memory://",
    )(command)
    return command


def command_plugins() -> PluginManager:
    """The plugins a Tracker would load: the built-in stores and every entry-point plugin."""
    return PluginManager()


def _store_given_on_command_line() -> bool:
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return True
    return ctx.get_parameter_source("store_url") == click.core.ParameterSource.COMMANDLINE


def _refuse_missing_sqlite_file(store_url: str) -> None:
    """A command that only reads never creates a store: a missing SQLite file is an error."""
    scheme, _, rest = store_url.partition(":///")
    if scheme.split("+", 1)[0] != "sqlite":
        return
    path = rest.partition("?")[0]
    if path and path != ":memory:" and not Path(path).exists():
        raise PhaseKitError(f"no store at {path}")


class StoreSession:
    """An open store, with the config a command was given; close it (or use ``with``)."""

    def __init__(
        self, store_url: str, config_path: Path | None = None, *, read_only: bool = False
    ) -> None:
        self.config: TrackerConfig | None = None
        self.config_base: Path | None = None
        options: dict[str, Any] = {}
        if config_path is not None:
            self.config, self.config_base = read_config(config_path)
            if not _store_given_on_command_line():
                store_url, options = self.config.store, dict(self.config.store_options)
        self.store_url = store_url
        if read_only:
            _refuse_missing_sqlite_file(store_url)
        self.plugins = command_plugins()
        self.store: Store = open_store(store_url, self.plugins.stores(), **options)
        self._tracker: Tracker | None = None

    # -- reading -----------------------------------------------------------------------------

    def record(self, job_id: str) -> JobRecord:
        """The stored job; ``JobNotFound`` if there is none."""
        record = self.store.load(validate_job_id(job_id))
        if record is None:
            raise JobNotFound(shorten(job_id))
        return record

    def history(self, job_id: str) -> list[HistoryEvent]:
        """The job's history; ``JobNotFound`` if there is no such job."""
        self.record(job_id)
        return self.store.history(job_id)

    # -- phase sets --------------------------------------------------------------------------

    def configured_spec(self) -> PhaseSet | None:
        """The phase set the config names, a path read relative to the config file."""
        if self.config is None:
            return None
        return config_spec(self.config, self.config_base)

    def spec_for_new_job(self, spec: str | None) -> PhaseSet:
        """The phase set ``--spec`` names, else the config's."""
        if spec is not None:
            return load_spec(spec)
        configured = self.configured_spec()
        if configured is None:
            raise click.UsageError(
                "give the job's phase set with --spec NAME_OR_FILE (or --config)"
            )
        return configured

    def spec_for_job(self, record: JobRecord, spec: str | None = None) -> PhaseSet:
        """The phase set of a stored job.

        In order: ``--spec``; the definition the store kept under the job's fingerprint;
        the config's phase set of the same name; the bundled phase set of the same name.
        """
        if spec is not None:
            return load_spec(spec)
        if isinstance(self.store, SpecArchive):
            stored = stored_phase_set(self.store, record.spec_fingerprint)
            if stored is not None:
                return stored
        configured = self.configured_spec()
        if configured is not None and configured.name == record.spec_name:
            return configured
        if record.spec_name in bundled_names():
            return load_spec(record.spec_name)
        raise PhaseKitError(
            f"job {shorten(record.job_id)!r} uses phase set {record.spec_name!r}, which the store "
            "does not keep and phasekit does not bundle; pass its file with --spec FILE"
        )

    def try_spec_for_job(self, record: JobRecord, spec: str | None = None) -> PhaseSet | None:
        """``spec_for_job``, or None when the phase set cannot be found or read."""
        try:
            return self.spec_for_job(record, spec)
        except (PhaseKitError, SpecError):
            if spec is not None:
                raise  # the user asked for this one: say what is wrong with it
            return None

    # -- changing ----------------------------------------------------------------------------

    def tracker(self, spec: PhaseSet) -> Tracker:
        """A tracker of ``spec`` on this store, with the config's notifiers attached."""
        if self._tracker is not None:
            raise RuntimeError("a session builds one tracker")
        tracker = Tracker(spec, store=self.store)
        self._tracker = tracker
        if self.config is not None and self.config.notifiers:
            notifiers = build_notifiers(tracker.plugins, self.config.notifiers)
            tracker.use_notifiers(notifiers, self.config.relay, self.config.relay_options)
        return tracker

    def close(self) -> None:
        """Close the tracker (which flushes and closes the store), else the store."""
        if self._tracker is not None:
            self._tracker.close()
        else:
            self.store.close()

    def __enter__(self) -> StoreSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
