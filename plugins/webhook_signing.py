"""Webhook signatures: the headers phasekit sends, and how a receiver checks them."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = ["DELIVERY_HEADER", "EVENT_HEADER", "SIGNATURE_HEADER", "sign", "verify_signature"]

#: ``sha256=<hex>``: HMAC-SHA256 of the exact body bytes, keyed with the secret.
SIGNATURE_HEADER: Final = "X-Phasekit-Signature"
#: The event's type, e.g. ``phase_changed``.
EVENT_HEADER: Final = "X-Phasekit-Event"
#: The delivery's id: the same on every retry of one delivery, unique across deliveries.
DELIVERY_HEADER: Final = "X-Phasekit-Delivery"


def sign(secret: str | bytes, body: bytes) -> str:
    """The ``X-Phasekit-Signature`` value of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | bytes,
    body: bytes,
    header: str | None,
    *,
    max_age: float | timedelta | None = None,
    now: datetime | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and, given ``max_age``, is that fresh."""
    # Freshness is judged on the signed ``sent_at`` (set per attempt), so a captured delivery
    # cannot be replayed once max_age has passed; within the window, receivers de-duplicate
    # on the delivery id.
    if not header:
        return False
    expected = sign(secret, body).encode()
    if not hmac.compare_digest(expected, header.strip().encode("utf-8", "replace")):
        return False
    if max_age is None:
        return True
    if now is not None and now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    limit = max_age.total_seconds() if isinstance(max_age, timedelta) else float(max_age)
    try:
        sent_at = datetime.fromisoformat(json.loads(body)["sent_at"])
    except (ValueError, KeyError, TypeError):  # a signed body without a usable sent_at
        return False
    if sent_at.tzinfo is None:
        return False
    return abs(((now or datetime.now(UTC)) - sent_at).total_seconds()) <= limit
