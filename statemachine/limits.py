"""What phasekit accepts from its users, and the checks that refuse the rest.

Each check raises ``TypeError`` (wrong type) or ``ValueError`` (out of bounds) saying what was
given and what is allowed, before anything is changed or stored. docs/reliability.md lists
these limits beside the tests that hold them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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
    "nesting",
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
    return error


def check_count(name: str, value: object) -> int:
    """Return ``value`` if it is a count a store can hold: an int from 0 to ``MAX_COUNT``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentType(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise InvalidArgument(f"{name} must be >= 0, got {value}")
    if value > MAX_COUNT:
        raise InvalidArgument(f"{name} must be at most {MAX_COUNT:,} (2**63 - 1)")
    return value


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
    """A private, plain copy of ``metadata`` if it is JSON within the size and depth limits."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidArgumentType(f"metadata must be a mapping, not {type(metadata).__name__}")
    too_deep = f"metadata is nested more than {MAX_METADATA_DEPTH} levels deep"
    try:
        encoded = json.dumps(metadata, allow_nan=False)
    except RecursionError:
        raise InvalidArgument(too_deep) from None
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentType(f"metadata must be JSON-serialisable: {exc}") from None
    if len(encoded) > MAX_METADATA_BYTES:
        raise InvalidArgument(
            f"metadata is {len(encoded):,} bytes as JSON; at most {MAX_METADATA_BYTES:,} are kept"
        )
    result: dict[str, Any] = json.loads(encoded)
    if nesting(result)[1] > MAX_METADATA_DEPTH:
        raise InvalidArgument(too_deep)
    return result
