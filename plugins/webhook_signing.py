"""Standard Webhooks v1 messages: the body, the headers, the secrets and the signatures."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from statemachine import InvalidArgument

__all__ = [
    "ID_HEADER",
    "MAX_SECRET_BYTES",
    "MIN_SECRET_BYTES",
    "SECRET_PREFIX",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "message_body",
    "parse_secret",
    "sign",
]

# Standard Webhooks names its headers in lower case; HTTP field names are case-insensitive.
#: The message id: the event's ``event_id``, the same on every attempt (the idempotency key).
ID_HEADER: Final = "webhook-id"
#: Integer Unix seconds of the attempt, signed, so a receiver can refuse old captures.
TIMESTAMP_HEADER: Final = "webhook-timestamp"
#: ``v1,<base64 HMAC-SHA256>`` per secret, space-separated.
SIGNATURE_HEADER: Final = "webhook-signature"

#: Every secret is written ``whsec_<base64 of the key bytes>``.
SECRET_PREFIX: Final = "whsec_"
MIN_SECRET_BYTES: Final = 24
MAX_SECRET_BYTES: Final = 64


def parse_secret(secret: object, name: str = "webhook secret") -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret; an error names ``name``, never the secret."""
    if not isinstance(secret, str):
        raise InvalidArgument(f"{name} must be a string, not {type(secret).__name__}")
    if not secret:
        raise InvalidArgument(f"{name} is empty (an unset environment variable?)")
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidArgument(
            f"{name} must be {SECRET_PREFIX!r} followed by base64 (the value is not shown); "
            "`phasekit webhook secret` prints a new one"
        )
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        # Strict base64 (no stray characters), with the padding some tools leave off.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(
            f"{name} is not valid base64 after {SECRET_PREFIX!r} (the value is not shown)"
        ) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise InvalidArgument(
            f"{name} decodes to {len(key)} bytes; a key has {MIN_SECRET_BYTES} to "
            f"{MAX_SECRET_BYTES} bytes (`phasekit webhook secret` prints a new one)"
        )
    return key


def message_body(event_type: str, data: Mapping[str, Any]) -> bytes:
    """The exact bytes POSTed: ``{"type", "timestamp", "data"}`` as compact JSON.

    ``data`` is the event's JSON form; its ``at`` (RFC 3339, when the change happened) is
    the message's ``timestamp``. The bytes are made once and signed as they are sent.
    """
    message = {"type": event_type, "timestamp": data["at"], "data": data}
    # ASCII, non-ASCII characters escaped: any text encodes, a lone surrogate in a job's
    # metadata too, and every receiver reads the same bytes whatever its default encoding.
    return json.dumps(message, separators=(",", ":")).encode("ascii")


def sign(keys: Iterable[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64>`` for each key, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for key in keys
    )
