"""The ``phasekit`` command line: validate, graph, schema, plugins, demo and jobs."""

from __future__ import annotations

from . import delivery, demo, jobs, plugin_list, serve, spec_commands, watch, webhook_commands  # noqa: F401 (they register on cli and jobs too)
from .app import cli, main
from .spec_commands import schema_json

__all__ = ["cli", "main", "schema_json"]

# The command modules register themselves on ``cli`` when imported.
del delivery, demo, jobs, plugin_list, spec_commands, webhook_commands
