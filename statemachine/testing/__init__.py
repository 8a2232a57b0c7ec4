"""Testing with phasekit: a pytest plugin, helpers, and the store conformance suite.

Installed with phasekit, the pytest plugin (``statemachine.testing.plugin``, entry point
``phasekit``) gives every test the fixtures ``clock``, ``phase_set``, ``tracker_plugins``,
``tracker`` and ``webhook_receiver``. This module holds what tests import: ``Clock``,
``assert_history``, ``all_paths``, ``WebhookReceiver`` and, for the authors of store plugins,
``StoreConformance`` and ``StoreOpener``. docs/testing.md shows each in use.
"""

from __future__ import annotations

from .clock import Clock
from .conformance import StoreConformance
from .history import assert_history, describe_change
from .paths import StatusPath, all_paths
from .store_opener import StoreOpener
from .webhooks import Delivery, Rejection, WebhookReceiver, new_secret

__all__ = [
    "Clock",
    "Delivery",
    "Rejection",
    "StatusPath",
    "StoreConformance",
    "StoreOpener",
    "WebhookReceiver",
    "all_paths",
    "assert_history",
    "describe_change",
    "new_secret",
]
