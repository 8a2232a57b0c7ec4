"""The ``phasekit`` command line: validate, graph, schema, plugins, demo, jobs, events, relay,
sweep, serve and webhook."""

from __future__ import annotations

# The command modules register on cli and jobs when imported.
from . import (
    delivery,
    demo,
    jobs,
    plugin_list,
    serve,
    spec_commands,
    sweep,
    watch,
    webhook_commands,
)
from .app import cli, main
from .spec_commands import schema_json

__all__ = ["cli", "main", "schema_json"]

# Imported only to register their commands.
del delivery, demo, jobs, plugin_list, serve, spec_commands, sweep, watch, webhook_commands
