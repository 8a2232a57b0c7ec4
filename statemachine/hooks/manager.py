"""The plugin manager of one Tracker: loading plugins, and one typed method per hook."""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from ..errors import PhaseKitError
from ..runtime import Action, Guard
from ..store import (
    JobCreated,
    JobDeleted,
    JobStatusChanged,
    MemoryStore,
    PhaseChanged,
    ProgressUpdated,
    StoreFactory,
    TransitionRequest,
)
from . import specs
from .specs import HOOK_KINDS, PROJECT, Veto, hookimpl

__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "DISABLE_PLUGINS_ENV",
    "HOOK_NAMES",
    "PluginInfo",
    "PluginManager",
]

log = logging.getLogger("phasekit.plugins")

#: Set to any non-empty value to skip plugins installed through entry points.
DISABLE_AUTOLOAD_ENV = "PHASEKIT_DISABLE_PLUGIN_AUTOLOAD"
#: Comma-separated entry-point names of installed plugins not to load.
DISABLE_PLUGINS_ENV = "PHASEKIT_DISABLE_PLUGINS"

#: Every hook phasekit calls, in the order ``statemachine.hooks.specs`` declares them.
HOOK_NAMES: tuple[str, ...] = tuple(HOOK_KINDS)


@dataclass(slots=True)
class PluginInfo:
    """What ``phasekit plugins`` shows about one plugin."""

    name: str
    hooks: list[str] = field(default_factory=list)
    version: str | None = None
    distribution: str | None = None
    error: str | None = None
    source: str = "explicit"  # "builtin", "entry point" or "explicit"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "hooks": self.hooks,
            "source": self.source,
            "error": self.error,
        }


class BuiltinStores:
    """The stores phasekit itself provides, registered with every plugin manager."""

    @hookimpl
    def register_stores(self) -> Mapping[str, StoreFactory]:
        return {"memory": MemoryStore.from_url}


def _disabled_names() -> set[str]:
    raw = os.environ.get(DISABLE_PLUGINS_ENV, "")
    return {name.strip() for name in raw.split(",") if name.strip()}


class PluginManager:
    """A pluggy manager with phasekit's hooks, isolated notifications and typed calls.

    Notification hooks call each implementation on its own: an exception is logged with the
    plugin's name and goes no further. With no implementation of a hook, ``wants(hook)`` is
    False and the caller need not even build the event.
    """

    def __init__(
        self,
        plugins: Iterable[object] = (),
        *,
        builtins: Iterable[tuple[str, object]] = (("phasekit.builtin", BuiltinStores()),),
        load_entrypoints: bool = True,
    ) -> None:
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(specs)
        self._infos: dict[str, PluginInfo] = {}
        self._impls: dict[str, tuple[Any, ...]] = {}
        #: How a coroutine an implementation returned is awaited. A Tracker cannot await:
        #: the coroutine is closed and logged. An AsyncTracker sets it to await the result.
        self.awaiter: Callable[[Any], Any] | None = None
        for name, plugin in builtins:
            self._register(plugin, name, PluginInfo(name=name, source="builtin"))
        if load_entrypoints and not os.environ.get(DISABLE_AUTOLOAD_ENV):
            self._load_entrypoints()
        for plugin in plugins:
            self.register(plugin)

    # -- registration ------------------------------------------------------------------------

    def _load_entrypoints(self) -> None:
        seen: set[str] = set()
        # Disabling applies to installed plugins only: a plugin object a program passes to
        # ``Tracker(plugins=...)`` is what the program asked for, so it is always registered.
        disabled = _disabled_names()
        for ep in importlib.metadata.entry_points(group=PROJECT):
            if ep.name in seen or ep.name in disabled or self._pm.has_plugin(ep.name):
                continue
            seen.add(ep.name)
            dist = ep.dist
            info = PluginInfo(
                name=ep.name,
                source="entry point",
                distribution=dist.name if dist else None,
                version=dist.version if dist else None,
            )
            try:
                plugin = ep.load()
                self._register(plugin, ep.name, info)
            except Exception as exc:  # a broken plugin is reported, never fatal
                info.error = f"{type(exc).__name__}: {exc}"
                self._infos[ep.name] = info
                log.warning("phasekit plugin %r could not be loaded: %s", ep.name, info.error)

    def _register(self, plugin: object, name: str | None, info: PluginInfo) -> str:
        registered = self._pm.register(plugin, name=name)
        assert registered is not None  # phasekit blocks no name
        try:
            self._check_hooks(plugin, registered)
        except PhaseKitError:
            self._pm.unregister(name=registered)
            raise
        info.name = registered
        info.hooks = sorted(h.name for h in self._pm.get_hookcallers(plugin) or ())
        self._infos[registered] = info
        self._impls.clear()
        return registered

    def _check_hooks(self, plugin: object, name: str) -> None:
        """Refuse hook implementations phasekit would never call.

        A name that is not a phasekit hook is a typo, usually. A hook wrapper
        (``wrapper=True`` or ``hookwrapper=True``) wraps a call of all implementations at
        once, which phasekit never makes: it calls each implementation on its own, so that one
        plugin's failure cannot reach the others.
        """
        for impl in self._pm.get_hookcallers(plugin) or ():
            for hookimpl_ in impl.get_hookimpls():
                if hookimpl_.plugin is plugin and (hookimpl_.wrapper or hookimpl_.hookwrapper):
                    kind = "wrapper=True" if hookimpl_.wrapper else "hookwrapper=True"
                    raise PhaseKitError(
                        f"plugin {name!r} implements {impl.name!r} as a hook wrapper "
                        f"({kind}), which phasekit does not call: it calls each implementation "
                        "on its own; implement the hook as a plain function (use "
                        "tryfirst/trylast to order it)"
                    )
        for attr in dir(plugin):
            try:
                value = getattr(plugin, attr)
            except Exception:  # a property that fails is not a hook
                continue
            if not hasattr(value, f"{PROJECT}_impl") or attr in HOOK_NAMES:
                continue
            close = difflib.get_close_matches(attr, HOOK_NAMES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PhaseKitError(
                f"plugin {name!r} implements {attr!r}, which is not a phasekit hook{hint} "
                f"(hooks: {', '.join(HOOK_NAMES)})"
            )

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register ``plugin``; a misspelled hook name raises ``PhaseKitError`` naming it."""
        name = name or getattr(plugin, "name", None) or _default_name(plugin)
        try:
            return self._register(plugin, name, PluginInfo(name=name))
        except ValueError as exc:  # pluggy: same name or same object twice
            raise PhaseKitError(f"cannot register plugin {name!r}: {exc}") from None
        except pluggy.PluginValidationError as exc:
            raise PhaseKitError(f"plugin {name!r} is invalid: {exc}") from None

    def unregister(self, name: str) -> None:
        self._pm.unregister(name=name)
        self._infos.pop(name, None)
        self._impls.clear()

    def plugin_info(self) -> list[PluginInfo]:
        """Every plugin registered or tried, with its hooks and any load error."""
        return list(self._infos.values())

    def get_plugin(self, name: str) -> object | None:
        return self._pm.get_plugin(name)

    # -- calling -----------------------------------------------------------------------------

    def _implementations(self, hook: str) -> tuple[Any, ...]:
        impls = self._impls.get(hook)
        if impls is None:
            caller = getattr(self._pm.hook, hook)
            # pluggy's own order: last registered first, tryfirst/trylast respected (wrappers
            # are refused at registration).
            impls = tuple(reversed(caller.get_hookimpls()))
            self._impls[hook] = impls
        return impls

    def wants(self, hook: str) -> bool:
        """Whether any plugin implements ``hook``."""
        return bool(self._implementations(hook))

    def _settle(self, impl: Any, hook: str, result: Any) -> Any:
        """``result``, awaited when it is a coroutine (``async def`` implementations)."""
        if not inspect.isawaitable(result):
            return result
        if self.awaiter is not None:
            return self.awaiter(result)
        close = getattr(result, "close", None)
        if callable(close):
            close()
        raise PhaseKitError(
            f"plugin {impl.plugin_name!r} implements {hook} as a coroutine, which a Tracker "
            "cannot await; use an AsyncTracker, or a plain function"
        )

    def _call_each(self, hook: str, kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
        results: list[tuple[str, Any]] = []
        for impl in self._implementations(hook):
            try:
                result = self._settle(
                    impl, hook, impl.function(*[kwargs[a] for a in impl.argnames])
                )
            except Exception:
                log.exception("phasekit plugin %r failed in hook %s", impl.plugin_name, hook)
                continue
            if result is not None:
                results.append((impl.plugin_name, result))
        return results

    def _collect(self, hook: str, kind: str, check: Callable[[object], bool]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        owner: dict[str, str] = {}
        for plugin_name, mapping in self._call_each(hook, {}):
            if not isinstance(mapping, Mapping):
                log.error("phasekit plugin %r: %s must return a mapping", plugin_name, hook)
                continue
            for key, value in mapping.items():
                if not check(value):
                    raise PhaseKitError(f"plugin {plugin_name!r}: {kind} {key!r} is not callable")
                if key in merged:
                    raise PhaseKitError(
                        f"{kind} {key!r} is registered twice, by plugins {owner[key]!r} "
                        f"and {plugin_name!r}"
                    )
                merged[key] = value
                owner[key] = plugin_name
        return merged

    def stores(self) -> dict[str, StoreFactory]:
        return self._collect("register_stores", "store scheme", callable)

    def notifiers(self) -> dict[str, Callable[..., object]]:
        return self._collect("register_notifiers", "notifier", callable)

    def guards(self) -> dict[str, Guard]:
        return self._collect("register_guards", "guard", callable)

    def actions(self) -> dict[str, Action]:
        return self._collect("register_actions", "action", callable)

    def before_transition(self, event: TransitionRequest) -> list[tuple[str, Veto]]:
        """Ask every implementation; the vetoes, with the plugin that gave each.

        Fail closed: a plugin that raises, or answers anything but None or a ``Veto``, is
        taken as a veto, so a policy with a bug cannot let every transition through.
        """
        vetoes: list[tuple[str, Veto]] = []
        for impl in self._implementations("before_transition"):
            try:
                result = self._settle(
                    impl,
                    "before_transition",
                    impl.function(*[{"event": event}[a] for a in impl.argnames]),
                )
            except Exception as exc:
                log.exception("phasekit plugin %r failed in before_transition", impl.plugin_name)
                result = Veto(f"plugin raised {type(exc).__name__}: {exc}")
            if result is None:
                continue
            if not isinstance(result, Veto):
                log.error(
                    "phasekit plugin %r answered before_transition with %r, not None or a Veto; "
                    "taken as a veto",
                    impl.plugin_name,
                    result,
                )
                result = Veto(f"plugin answered {result!r}, not None or a Veto")
            vetoes.append((impl.plugin_name, result))
        return vetoes

    def job_created(self, event: JobCreated) -> None:
        self._call_each("job_created", {"event": event})

    def phase_changed(self, event: PhaseChanged) -> None:
        self._call_each("phase_changed", {"event": event})

    def progress_updated(self, event: ProgressUpdated) -> None:
        self._call_each("progress_updated", {"event": event})

    def job_status_changed(self, event: JobStatusChanged) -> None:
        self._call_each("job_status_changed", {"event": event})

    def job_deleted(self, event: JobDeleted) -> None:
        self._call_each("job_deleted", {"event": event})


def _default_name(plugin: object) -> str:
    base = getattr(plugin, "__name__", None) or type(plugin).__name__
    return f"{base}-{id(plugin):x}" if not isinstance(plugin, type) else base
