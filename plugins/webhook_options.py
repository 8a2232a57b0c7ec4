"""Checking a webhook notifier's options, with messages that never echo a credential."""

from __future__ import annotations

import ipaddress
import math
import re
import socket
from collections.abc import Iterable, Mapping
from typing import Final

import httpx

from statemachine import (
    InvalidArgument,
    JobCreated,
    JobDeleted,
    JobStatusChanged,
    PhaseChanged,
    ProgressUpdated,
)

from .webhook_signing import parse_secret

__all__ = [
    "BLOCKED_NETWORKS",
    "EVENT_TYPES",
    "blocked_address",
    "check_events",
    "check_flag",
    "check_headers",
    "check_host",
    "check_number",
    "check_secrets",
    "check_url",
    "display_url",
    "host_address",
    "split_credentials",
]

#: The event types a notifier can be limited to with ``events=``.
EVENT_TYPES: Final[frozenset[str]] = frozenset(
    str(cls.model_fields["type"].default)
    for cls in (JobCreated, PhaseChanged, ProgressUpdated, JobStatusChanged, JobDeleted)
)

#: Headers phasekit sets, which ``headers=`` cannot replace: the body's type and framing, and
#: every ``webhook-*`` name (Standard Webhooks' namespace: the id, timestamp and signature).
RESERVED_HEADERS: Final = frozenset({"content-type", "content-length", "transfer-encoding"})
RESERVED_PREFIX: Final = "webhook-"

#: Link-local networks, where clouds answer with instance credentials (169.254.169.254,
#: fd00:ec2::254): refused unless ``allow_link_local``.
BLOCKED_NETWORKS: Final = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
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


def host_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address a URL's host spells, in any form a resolver takes without asking DNS
    (``169.254.169.254``, ``2852039166``, ``0xa9fea9fe``, ``::ffff:a9fe:a9fe``); None for a name."""
    host = host.split("%", 1)[0].rstrip(".")  # without an IPv6 zone index or a final dot
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, ValueError):
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def blocked_address(address: str) -> bool:
    """Whether an IP address is in one of ``BLOCKED_NETWORKS`` (False for a name)."""
    ip = host_address(address)
    return ip is not None and any(ip in network for network in BLOCKED_NETWORKS)


def check_host(url: httpx.URL, *, allow_link_local: bool) -> None:
    """Refuse a URL whose host is a link-local or metadata address, unless allowed."""
    if not allow_link_local and blocked_address(url.host):
        raise InvalidArgument(
            f"webhook url points at the link-local address {url.host} (where cloud metadata "
            "services answer); set allow_link_local: true if that is really the endpoint"
        )


def check_secrets(secret: object, *, unsigned: bool) -> tuple[bytes, ...]:
    """The HMAC keys, one per secret (a rotation signs with all); none when ``unsigned``."""
    if unsigned:
        if secret is not None:
            raise InvalidArgument("webhook has both a secret and unsigned: true; give one of them")
        return ()
    if secret is None:
        raise InvalidArgument(
            "webhook secret is required (a 'whsec_...' string, or a list of them while "
            "rotating; `phasekit webhook secret` prints a new one); set unsigned: true "
            "to send deliveries without a webhook-signature"
        )
    if isinstance(secret, str):
        return (parse_secret(secret),)
    if not isinstance(secret, list | tuple):
        raise InvalidArgument(
            f"webhook secret must be a string or a list of strings, not {type(secret).__name__}"
        )
    if not secret:
        raise InvalidArgument("webhook secret is an empty list; give at least one secret")
    keys = tuple(parse_secret(s, f"webhook secret[{i}]") for i, s in enumerate(secret))
    return tuple(dict.fromkeys(keys))  # a secret listed twice signs once


def check_flag(name: str, value: object) -> bool:
    """A boolean option; ``1`` or ``"yes"`` are refused rather than guessed at."""
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name} must be true or false, not a {type(value).__name__}")
    return value


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
        if name.lower() in RESERVED_HEADERS or name.lower().startswith(RESERVED_PREFIX):
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
