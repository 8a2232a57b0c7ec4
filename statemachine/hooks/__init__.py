"""Plugins: the hooks phasekit calls (``specs``) and the manager that loads and calls them."""

from __future__ import annotations

from .manager import (
    DISABLE_AUTOLOAD_ENV,
    DISABLE_PLUGINS_ENV,
    HOOK_NAMES,
    PluginInfo,
    PluginManager,
)
from .specs import HOOK_KINDS, PROJECT, Veto, hookimpl, hookspec

__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "DISABLE_PLUGINS_ENV",
    "HOOK_KINDS",
    "HOOK_NAMES",
    "PROJECT",
    "PluginInfo",
    "PluginManager",
    "Veto",
    "hookimpl",
    "hookspec",
]
