"""The web dashboard: a read-only Starlette application over a store (``create_app``).

Needs the ``web`` extra (Starlette, and uvicorn for ``phasekit serve``).
"""

from __future__ import annotations

from .app import create_app, end_streams
from .broadcast import EventBroadcaster

__all__ = ["EventBroadcaster", "create_app", "end_streams"]
