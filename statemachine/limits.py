"""What phasekit accepts from its users, and the checks that refuse the rest.

Each check raises ``TypeError`` (wrong type) or ``ValueError`` (out of bounds) saying what was
given and what is allowed, before anything is changed or stored. docs/reliability.md lists
these limits beside the tests that hold them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from .errors import InvalidArgument, InvalidArgumentType

__all__ = [
    "MAX_COUNT",
    "MAX_ERROR_LENGTH",
    "MAX_JOB_ID_LENGTH",
    "MAX_METADATA_BYTES",
    "MAX_METADATA_DEPTH",
    "check_count",
    "check_error",
    "check_metadata",
    "check_page",
    "format_duration",
    "nesting",
    "parse_duration",
    "validate_job_id",
]

#: Longest job id (characters).
MAX_JOB_ID_LENGTH = 255
#: Longest error message a trigger may carry (characters).
MAX_ERROR_LENGTH = 65_536
#: Largest ``items_processed`` or ``items_total``: what a store's 64-bit integer column holds.
MAX_COUNT = 2**63 - 1
#: Largest metadata, as JSON (bytes).
MAX_METADATA_BYTES = 1_000_000
#: Deepest metadata: objects and arrays inside one another, the metadata itself included.
#: Stores and events read JSON back with bounded recursion, so deeper metadata would be saved
#: and then fail to load.
MAX_METADATA_DEPTH = 64


def validate_job_id(job_id: object) -> str:
    """Return ``job_id`` if it is a usable id: a non-empty printable string, not too long."""
    if not isinstance(job_id, str):
        raise InvalidArgumentType(f"job id must be a string, not {type(job_id).__name__}")
    if not job_id or not job_id.strip():
        raise InvalidArgument("job id must not be empty")
    if len(job_id) > MAX_JOB_ID_LENGTH:
        raise InvalidArgument(f"job id is {len(job_id):,} characters; at most {MAX_JOB_ID_LENGTH}")
    if not job_id.isprintable():
        raise InvalidArgument(f"job id {job_id!r} contains control characters")
    return job_id


def check_error(error: object) -> str | None:
    """Return the error message a trigger carries, if it is one phasekit keeps."""
    if error is None:
        return None
    if not isinstance(error, str):
        raise InvalidArgumentType(f"error must be a string, not {type(error).__name__}")
    if len(error) > MAX_ERROR_LENGTH:
        raise InvalidArgument(
            f"error message is {len(error):,} characters; at most {MAX_ERROR_LENGTH:,} are kept"
        )
    _check_text(error, "error message")
    if "\x00" in error:  # PostgreSQL text cannot hold it: refused on every store alike
        raise InvalidArgument("error message must not contain NUL characters")
    return error


def check_count(name: str, value: object, *, minimum: int = 0) -> int:
    """Return ``value`` if it is a count a store can hold: an int from ``minimum`` (0 unless
    told) to ``MAX_COUNT``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentType(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise InvalidArgument(f"{name} must be >= {minimum}, got {value}")
    if value > MAX_COUNT:
        raise InvalidArgument(f"{name} must be at most {MAX_COUNT:,} (2**63 - 1)")
    return value


def check_page(limit: object, offset: object) -> tuple[int, int]:
    """``limit`` and ``offset`` of a listing, if each is an int from 0 to ``MAX_COUNT``."""
    return check_count("limit", limit), check_count("offset", offset)


def nesting(value: object, *, max_values: int | None = None) -> tuple[int, int]:
    """How many values (mapping keys included) and how many levels of containers ``value`` has.

    A scalar has depth 0, ``{"a": 1}`` depth 1. The walk is iterative (no recursion limit)
    and, with ``max_values``, stops as soon as the count passes it, so data that repeats
    itself through aliases is measured in bounded time.
    """
    count, deepest, todo = 0, 0, [(value, 0)]
    while todo:
        item, depth = todo.pop()
        count += 1
        if max_values is not None and count > max_values:
            break
        if isinstance(item, Mapping):
            deepest = max(deepest, depth + 1)
            todo.extend((child, depth + 1) for pair in item.items() for child in pair)
        elif isinstance(item, list | tuple):
            deepest = max(deepest, depth + 1)
            todo.extend((child, depth + 1) for child in item)
    return count, deepest


def check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """A private, plain copy of ``metadata`` if JSON keeps it exactly, within the limits.

    JSON has objects with string keys, arrays, strings, finite numbers, booleans and null;
    anything it would change on the way (a tuple into a list, ``1`` and ``True`` keys into
    strings, NaN, a lone surrogate that UTF-8 cannot encode) is refused, so what a store gives
    back equals what was given.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidArgumentType(f"metadata must be a mapping, not {type(metadata).__name__}")
    _check_json(metadata)
    encoded = json.dumps(metadata, allow_nan=False)
    if len(encoded) > MAX_METADATA_BYTES:
        raise InvalidArgument(
            f"metadata is {len(encoded):,} bytes as JSON; at most {MAX_METADATA_BYTES:,} are kept"
        )
    result: dict[str, Any] = json.loads(encoded)
    return result


def _check_json(metadata: Mapping[str, Any]) -> None:
    """Refuse a value of ``metadata`` that JSON would not give back as it is."""
    todo: list[tuple[object, str, int]] = [(metadata, "metadata", 1)]
    seen = 0
    while todo:
        value, where, depth = todo.pop()
        seen += 1
        if seen > MAX_METADATA_BYTES:  # each value takes a byte of JSON at least
            raise InvalidArgument(
                f"metadata holds more than {MAX_METADATA_BYTES:,} values; "
                f"at most {MAX_METADATA_BYTES:,} bytes of JSON are kept"
            )
        if isinstance(value, Mapping | list) and depth > MAX_METADATA_DEPTH:
            raise InvalidArgument(f"metadata is nested more than {MAX_METADATA_DEPTH} levels deep")
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidArgumentType(
                        f"{where} has the key {key!r} ({type(key).__name__}); JSON object keys "
                        "are strings, so it would come back changed"
                    )
                _check_text(key, f"a key of {where}")
                todo.append((item, f"{where}[{key!r}]", depth + 1))
        elif isinstance(value, list):
            todo.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, where)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidArgument(f"{where} is {value}, which JSON cannot hold")
        elif value is not None and not isinstance(value, int):  # bool is an int
            raise InvalidArgumentType(
                f"{where} is of type {type(value).__name__}; metadata holds JSON values only "
                "(dict, list, str, int, float, bool, None)"
            )


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(
            f"{where} holds a lone surrogate ({text!r}), which UTF-8 cannot encode"
        ) from None


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: The longest duration phasekit takes (100 years), so that every time it adds stays valid.
MAX_DURATION = timedelta(days=36_525)


def parse_duration(value: object, what: str = "duration") -> timedelta:
    """A duration: a number of seconds, a ``timedelta``, or text like ``30s``, ``5m``, ``2h``,
    ``1d``, ``2w`` and their combinations (``1h30m``). Zero and negative durations are refused.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise InvalidArgumentType(f"{what} must be a duration like 30s, 5m or 2h, not {value!r}")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        parts = _DURATION_PART.findall(text)
        if not text or "".join(n + u for n, u in parts) != text.replace(" ", ""):
            raise InvalidArgument(
                f"{what} {value[:40]!r} is not a duration; write a number of seconds, or "
                "30s, 5m, 2h, 1d, 2w, or a combination like 1h30m"
            )
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise InvalidArgumentType(
            f"{what} must be a duration like 30s, 5m or 2h, not {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidArgument(f"{what} must be longer than zero, not {value!r}")
    if seconds > MAX_DURATION.total_seconds():
        raise InvalidArgument(f"{what} must be at most 100 years, not {value!r}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta | float) -> str:
    """A duration as the text ``parse_duration`` reads: ``90`` seconds is ``1m30s``.

    Whole days, hours, minutes and seconds, largest first; a fraction of a second is kept
    (``0.5s``). Weeks are written as days (``14d``), which reads more plainly.
    """
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds <= 0:
        return "0s"
    whole = int(seconds)
    fraction = round(seconds - whole, 6)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    if whole or fraction or not parts:
        parts.append(f"{whole + fraction:g}s")
    return "".join(parts)
