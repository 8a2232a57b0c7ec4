"""Tracker configuration files: a phase set, a store URL and the notifiers to attach.

``Tracker.from_config`` and the CLI's ``--config`` both read a file with ``read_config`` and
wire it with ``config_spec`` and ``attach_notifiers``, so the two cannot disagree.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import PhaseKitError, did_you_mean
from .hooks import PluginManager
from .limits import nesting, parse_duration
from .runtime import PhaseSet, load_spec
from .spec import MAX_DEPTH, MAX_NODES, is_bundled_name

__all__ = [
    "RELAY_MODES",
    "ConfigError",
    "TrackerConfig",
    "attach_notifiers",
    "build_notifiers",
    "close_notifiers",
    "config_spec",
    "expand_env",
    "read_config",
]

#: Where notifiers named in a config are delivered from: a relay thread of the tracker's
#: process, ``phasekit relay`` processes, or nowhere.
RELAY_MODES = ("thread", "external", "off")
RelayMode = Literal["thread", "external", "off"]

log = logging.getLogger("phasekit")

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(PhaseKitError, ValueError):
    """A tracker configuration is invalid (unknown key, missing variable, bad value)."""


class TrackerConfig(BaseModel):
    """What ``Tracker.from_config`` reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: str = Field(description="A bundled phase-set name or a path to a phase-set file.")
    store: str = Field("memory://", description="Store URL: memory://, sqlite:///…, postgresql://…")
    store_options: dict[str, Any] = Field(default_factory=dict)
    notifiers: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    progress_interval: float | None = Field(
        None, ge=0, description="Persist a phase's progress at most this often (seconds)."
    )
    relay: RelayMode | None = Field(
        None,
        description="Deliver the notifiers from the event log in a thread of this process "
        "(thread, the default), from `phasekit relay` processes (external), or not (off).",
    )
    relay_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Retries, leases and waits of the relay (statemachine.relay.RelayOptions).",
    )
    sweep_every: str | float | None = Field(
        None,
        description="Run the deadline sweep in a thread of this process this often (30s, 5m).",
    )

    @field_validator("sweep_every")
    @classmethod
    def _duration(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            try:
                parse_duration(value, "sweep_every")
            except PhaseKitError as exc:
                raise ValueError(str(exc)) from None
        return value


def expand_env(value: Any, *, where: str = "") -> Any:
    """Replace ``${VAR}`` (or ``${VAR:-default}``) in every string of ``value``."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{where or 'config'}: environment variable {name} is not set")

        return _VAR.sub(substitute, value)
    if isinstance(value, Mapping):
        return {
            k: expand_env(v, where=f"{where}.{k}" if where else str(k)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [expand_env(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _check_size(raw: object, name: str) -> None:
    """Refuse a config that is too deep or too large once its aliases are expanded.

    Every value is visited once per alias use by ``expand_env`` and the checks after it, so
    an alias bomb of a few hundred bytes would otherwise keep a process busy for minutes or
    hours. Phase sets have the same limits.
    """
    count, depth = nesting(raw, max_values=MAX_NODES)
    if count > MAX_NODES:
        raise ConfigError(f"{name}: more than {MAX_NODES} values once aliases are expanded")
    if depth >= MAX_DEPTH:
        raise ConfigError(f"{name}: nested deeper than {MAX_DEPTH} levels")


def read_config(
    source: str | os.PathLike[str] | Mapping[str, Any],
) -> tuple[TrackerConfig, Path | None]:
    """Parse a config file or dict; relative spec paths are resolved against the file's folder."""
    base: Path | None = None
    if isinstance(source, Mapping):
        raw: Any = dict(source)
        name = "<config>"
    else:
        path = Path(source)
        name = str(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{name}: not valid YAML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"{name}: nested deeper than {MAX_DEPTH} levels") from None
        base = path.parent
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name}: a config is a mapping with keys spec, store, notifiers")
    _check_size(raw, name)
    try:
        config = TrackerConfig.model_validate(expand_env(raw))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{name}: {problems}") from None
    return config, base


def config_spec(config: TrackerConfig, base: Path | None) -> PhaseSet:
    """The phase set a config names: a bundled name, or a path relative to the config's folder."""
    if base is not None and not is_bundled_name(config.spec):
        return load_spec(str((base / config.spec).resolve()))
    return load_spec(config.spec)


def build_notifiers(
    plugins: PluginManager, notifiers: Mapping[str, Mapping[str, Any] | None]
) -> dict[str, object]:
    """Build each notifier a config names, with its options; by name.

    Every name is checked before any notifier is built; one that fails to build closes
    those built before it.
    """
    if not notifiers:
        return {}
    factories = plugins.notifiers()
    for name in notifiers:
        if name not in factories:
            raise ConfigError(
                f"unknown notifier {name!r}{did_you_mean(name, factories)}; known notifiers: "
                f"{', '.join(sorted(factories)) or 'none'}"
            )
    built: dict[str, object] = {}
    try:
        for name, options in notifiers.items():
            try:
                built[name] = factories[name](**(options or {}))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"notifier {name!r}: {exc}") from None
    except BaseException:
        close_notifiers(built)
        raise
    return built


def close_notifiers(notifiers: Mapping[str, object]) -> None:
    """Call ``close()`` on each notifier that has one; a failure is logged, the rest go on."""
    for name, notifier in notifiers.items():
        closer = getattr(notifier, "close", None)
        if callable(closer):
            try:
                closer()
            except Exception:
                log.exception("phasekit notifier %r failed to close", name)


def attach_notifiers(
    plugins: PluginManager, notifiers: Mapping[str, Mapping[str, Any] | None]
) -> None:
    """Build each notifier a config names and register it as an in-process plugin."""
    for name, notifier in build_notifiers(plugins, notifiers).items():
        plugins.register(notifier, name=f"notifier:{name}")
