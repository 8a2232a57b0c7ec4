"""Checking a webhook notifier's options, with messages that never echo a credential."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Final

import httpx

from statemachine import (
    InvalidArgument,
    JobCreated,
    JobStatusChanged,
    PhaseChanged,
    ProgressUpdated,
)

from .webhook_signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER

__all__ = [
    "EVENT_TYPES",
    "check_events",
    "check_headers",
    "check_number",
    "check_secret",
    "check_url",
    "display_url",
    "split_credentials",
]

#: The event types a notifier can be limited to with ``events=``.
EVENT_TYPES: Final[frozenset[str]] = frozenset(
    str(cls.model_fields["type"].default)
    for cls in (JobCreated, PhaseChanged, ProgressUpdated, JobStatusChanged)
)

RESERVED_HEADERS = frozenset(
    h.lower() for h in (SIGNATURE_HEADER, EVENT_HEADER, DELIVERY_HEADER, "Content-Type")
)

# RFC 9110: a field name is a token; a field value is visible ASCII, with spaces and tabs
# only inside it. A CR or LF would let a value inject headers; any other control character
# or non-ASCII byte makes httpx or h11 fail at send time with the value in the message.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*")


def display_url(url: httpx.URL) -> str:
    """The URL without credentials or query string, which may carry tokens."""
    port = f":{url.port}" if url.port is not None else ""
    query = "?…" if url.query else ""
    return f"{url.scheme}://{url.host}{port}{url.path}{query}"


def check_url(url: object) -> httpx.URL:
    """The parsed http(s) URL; messages never echo it, as it may hold credentials."""
    if not isinstance(url, str):
        raise InvalidArgument(f"webhook url must be a string, not {type(url).__name__}")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise InvalidArgument("webhook url is not a valid http:// or https:// URL") from None
    if parsed.scheme not in ("http", "https"):
        raise InvalidArgument(
            f"webhook url must use http or https, not {parsed.scheme or 'nothing'!r}"
        )
    if not parsed.host:
        raise InvalidArgument("webhook url has no host")
    return parsed


def check_secret(secret: object) -> bytes | None:
    """The HMAC key as bytes, or None for unsigned deliveries."""
    if secret is None:
        return None
    if not isinstance(secret, str | bytes):
        raise InvalidArgument(f"webhook secret must be a string, not {type(secret).__name__}")
    if not secret:
        raise InvalidArgument("webhook secret is empty; omit it to send unsigned deliveries")
    return secret.encode() if isinstance(secret, str) else secret


def check_events(events: str | Iterable[str] | None) -> frozenset[str] | None:
    """The event types to send (None: all), each one a known type."""
    if events is None:
        return None
    chosen = frozenset([events] if isinstance(events, str) else events)
    unknown = sorted(chosen - EVENT_TYPES)
    if unknown:
        raise InvalidArgument(
            f"unknown event type(s) {', '.join(map(repr, unknown))} in events; "
            f"valid types: {', '.join(sorted(EVENT_TYPES))}"
        )
    return chosen


def split_credentials(url: httpx.URL) -> tuple[httpx.URL, httpx.BasicAuth | None]:
    """The URL without its user and password, and those as Basic auth (None without them)."""
    auth = httpx.BasicAuth(url.username, url.password) if url.username or url.password else None
    return url.copy_with(userinfo=b""), auth


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Extra headers; values are never echoed, as they often carry tokens."""
    checked: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidArgument("webhook headers must map strings to strings")
        if not _HEADER_NAME.fullmatch(name):
            raise InvalidArgument(f"webhook header name {name!r} is not a valid HTTP field name")
        if name.lower() in RESERVED_HEADERS:
            raise InvalidArgument(
                f"webhook header {name!r} is set by phasekit and cannot be replaced"
            )
        checked[name] = _checked_header_value(name, value)
    return checked


def _checked_header_value(name: str, value: str) -> str:
    """``value`` without surrounding spaces, if it is printable ASCII; never echoed."""
    value = value.strip(" \t")  # RFC 9110: surrounding whitespace is not part of a value
    if value and not _HEADER_VALUE.fullmatch(value):
        raise InvalidArgument(
            f"webhook header {name!r} has a control character (such as CR or LF) or a "
            "non-ASCII character in its value (the value is not shown)"
        )
    return value


def check_number(
    name: str, value: object, *, minimum: float, inclusive: bool = True, integer: bool = False
) -> float:
    """A finite number at or above (or, not ``inclusive``, above) ``minimum``."""
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise InvalidArgument(
            f"{name} must be {'an integer' if integer else 'a number'}, not {value!r}"
        )
    if value < minimum or (not inclusive and value == minimum):
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        raise InvalidArgument(f"{name} must be {bound}, not {value!r}")
    return float(value)
