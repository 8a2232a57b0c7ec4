"""Pydantic validation errors of a phase set as spec issues with stable codes."""

from __future__ import annotations

import datetime
import difflib
import types
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .locate import INVALID, child_path
from .model import MAX_NAME_LENGTH, NAME_PATTERN, PHASE_NAME_PATTERN, PhaseSetDef

__all__ = ["SchemaIssue", "schema_issues"]

_NOUNS = {
    "PhaseSetDef": "the phase set",
    "StatusDef": "a status",
    "TransitionDef": "a transition",
    "PhaseDef": "a phase",
    "ProgressDef": "'progress'",
    "AggregateDef": "'aggregate'",
    "StatusRule": "an aggregate rule",
}
_EXPECTED = {
    "string_type": "a string",
    "bool_type": "true or false",
    "int_type": "an integer",
    "float_type": "a number",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_NAME_RULES = {
    NAME_PATTERN: "a name starts with a letter and has only letters, digits and '_'",
    PHASE_NAME_PATTERN: "a phase name starts with a letter and has only letters, digits, '_', '-'",
}
_SOURCE_RULE = "a source is \"*\" or a name that starts with a letter and has letters, digits, '_'"


@dataclass(frozen=True, slots=True)
class SchemaIssue:
    """One schema problem: code, message, path, hint, and whether it is about a mapping key."""

    code: str
    message: str
    path: str
    hint: str | None = None
    about_key: bool = False


@dataclass(frozen=True, slots=True)
class _Error:
    """A pydantic error with its location resolved against the data."""

    parts: tuple[str | int, ...]  # the location without union members' names
    about_key: bool
    union: tuple[str, str] | None  # (path of the union's input, member name) if in a union
    details: ErrorDetails


def schema_issues(exc: ValidationError, data: object) -> list[SchemaIssue]:
    """The issues of ``exc``: one per problem, union members' errors merged sensibly."""
    errors = [_resolve(details, data) for details in exc.errors()]
    issues: dict[tuple[str, str], SchemaIssue] = {}
    for issue in _issues(_pick_union_members(errors, data)):
        issues.setdefault((issue.code, issue.path), issue)
    return list(issues.values())


def _resolve(details: ErrorDetails, data: object) -> _Error:
    parts: list[str | int] = []
    node, about_key, union = data, False, None
    loc = details["loc"]
    for n, part in enumerate(loc):
        found, child = _child(node, part)
        if part == "[key]":
            about_key = True
        elif found:
            parts.append(part)
            node = child
        elif details["type"] == "missing" and n == len(loc) - 1:
            parts.append(part)
        elif isinstance(part, str):
            union = (_path(parts), part)  # the name of the union member that was tried
    return _Error(tuple(parts), about_key, union, details)


def _child(node: object, part: str | int) -> tuple[bool, object]:
    """Whether ``node`` has an item ``part``, and that item."""
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return True, node[part]
    if isinstance(node, dict) and part in node:
        return True, node[part]
    return False, None


def _path(parts: tuple[str | int, ...] | list[str | int]) -> str:
    path = ""
    for part in parts:
        path = child_path(path, part)
    return path


def _fits(member: str, value: object) -> bool:
    if member.startswith("list["):
        return isinstance(value, list)
    if member.startswith("dict["):
        return isinstance(value, dict)
    return not isinstance(value, (list, dict))


def _pick_union_members(errors: list[_Error], data: object) -> list[_Error]:
    """Keeps the errors of the union members that fit the input's kind (list, mapping, scalar).

    When none fits, or a fitting one only rejects the input's type, the union's errors become
    one ``invalid-type`` naming every member.
    """
    kept: list[_Error] = []
    unions: dict[str, list[_Error]] = {}
    for error in errors:
        if error.union is None:
            kept.append(error)
        else:
            unions.setdefault(error.union[0], []).append(error)
    for path, members in unions.items():
        value = _input_at(data, path, members)
        fitting = [
            e
            for e in members
            if e.union and _fits(e.union[1], value) and not _is_type_error_at(e, path)
        ]
        if fitting:
            kept += fitting
            continue
        names = sorted({e.union[1] for e in members if e.union})
        expected = " or ".join(_member_description(name) for name in names)
        first = members[0]
        details: ErrorDetails = {
            "type": "union_type",
            "loc": first.details["loc"],
            "msg": f"expected {expected}",
            "input": value,
        }
        kept.append(_Error(_parts_of(path, first), False, None, details))
    return kept


def _is_type_error_at(error: _Error, path: str) -> bool:
    """Whether the error only says the union's input is not of this member's type."""
    return _path(error.parts) == path and error.details["type"].endswith("_type")


def _parts_of(path: str, error: _Error) -> tuple[str | int, ...]:
    for n in range(len(error.parts) + 1):
        if _path(error.parts[:n]) == path:
            return error.parts[:n]
    return error.parts


def _input_at(data: object, path: str, errors: list[_Error]) -> object:
    node = data
    for part in _parts_of(path, errors[0]):
        node = _child(node, part)[1]
    return node


def _member_description(name: str) -> str:
    if name.startswith("list["):
        return "a list of " + _member_description(name[5:-1]).removeprefix("a ") + "s"
    return "a string" if "str" in name else f"a {name}"


def _issues(errors: list[_Error]) -> Iterator[SchemaIssue]:
    for error in errors:
        details, parts = error.details, error.parts
        path, kind, value = _path(parts), details["type"], details["input"]
        key = parts[-1] if parts else ""
        if _is_duration(parts) and kind != "missing":
            yield SchemaIssue("invalid-duration", _duration_message(details, key, value), path)
        elif kind == "missing":
            model = _model_at(parts[:-1])
            fields = model.model_fields.items() if model else ()
            required = [name for name, field in fields if field.is_required()]
            needs = f"; {_noun(model)} needs {', '.join(required)}" if required else ""
            yield SchemaIssue("missing-key", f"missing required key {key!r}{needs}", path)
        elif kind == "extra_forbidden":
            model = _model_at(parts[:-1])
            allowed = list(model.model_fields) if model else []
            close = difflib.get_close_matches(str(key), allowed, n=1)
            message = f"unknown key {key!r} in {_noun(model)}; allowed keys: {', '.join(allowed)}"
            yield SchemaIssue("unknown-key", message, path, close[0] if close else None, True)
        elif kind == "string_pattern_mismatch":
            rule = _NAME_RULES.get(str((details.get("ctx") or {}).get("pattern")), _SOURCE_RULE)
            message = f"invalid name {value!r}: {rule}"
            yield SchemaIssue("invalid-name", message, path, about_key=error.about_key)
        elif kind == "string_too_long" and _max_length(details) == MAX_NAME_LENGTH:
            message = (
                f"invalid name {_found(value).removeprefix('the string ')}: a name is at most "
                f"{MAX_NAME_LENGTH} characters, this one has {len(value)}"
            )
            yield SchemaIssue("invalid-name", message, path, about_key=error.about_key)
        elif kind == "literal_error" and parts == ("phasekit",):
            message = f"unsupported format version {value!r}; this phasekit reads 'phasekit: 1'"
            yield SchemaIssue("unsupported-version", message, path)
        elif kind in ("too_long", "too_short"):
            yield _size_issue(error, path, value)
        elif kind.endswith("_type") or kind == "is_instance_of":
            expected = _EXPECTED.get(kind) or details["msg"].removeprefix("expected ")
            yield SchemaIssue("invalid-type", f"expected {expected}, found {_found(value)}", path)
        else:
            yield SchemaIssue("invalid-value", _value_message(details, key), path)


_DURATION_KEYS = ("timeout", "heartbeat")
_DURATION_RULE = "write a number of seconds, or 30s, 5m, 2h, 1d, 2w, or a combination like 1h30m"


def _is_duration(parts: tuple[str | int, ...]) -> bool:
    return len(parts) == 3 and parts[0] == "statuses" and parts[2] in _DURATION_KEYS


def _duration_message(details: ErrorDetails, key: str | int, value: object) -> str:
    ctx: dict[str, Any] = dict(details.get("ctx") or {})
    if isinstance(ctx.get("error"), Exception):  # parse_duration's own words
        return f"{key} {ctx['error']}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{key} must be longer than zero and at most 100 years, not {value}"
    return f"{key} must be a duration, not {_found(value)}; {_DURATION_RULE}"


def _max_length(details: ErrorDetails) -> object:
    return dict(details.get("ctx") or {}).get("max_length")


def _size_issue(error: _Error, path: str, value: object) -> SchemaIssue:
    ctx: dict[str, Any] = dict(error.details.get("ctx") or {})
    what = path.rsplit(".", 1)[-1] or "the list"
    if error.details["type"] == "too_long":
        limit, actual = ctx.get("max_length"), ctx.get("actual_length")
        if actual is None and isinstance(value, Sized):  # not every pydantic version says
            actual = len(value)
        return SchemaIssue("too-many", f"too many {what}: {actual}, at most {limit} allowed", path)
    kind = "mapping" if isinstance(value, dict) else "list"
    least = ctx.get("min_length", 1)
    return SchemaIssue("empty-list", f"{what} is an empty {kind}; it needs at least {least}", path)


def _value_message(details: ErrorDetails, key: str | int) -> str:
    ctx: dict[str, Any] = dict(details.get("ctx") or {})
    if isinstance(ctx.get("error"), Exception):
        return str(ctx["error"])
    msg = details["msg"]
    subject = f"{key!r}" if isinstance(key, str) and key else "the value"
    if msg.startswith("Input should"):
        msg = msg.replace("Input should", f"{subject} should", 1)
    return f"{msg}; found {_found(details['input'])}"


def _found(value: object) -> str:
    if value is INVALID:
        return "a value that could not be read"
    if value is None:
        return "null (nothing)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the {'integer' if isinstance(value, int) else 'number'} {value}"
    if isinstance(value, str):
        return f"the string {value[:60]!r}"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"the date {value} (quote it to make it a string)"
    return f"a {type(value).__name__}"


def _noun(model: type[BaseModel] | None) -> str:
    return _NOUNS.get(model.__name__, model.__name__) if model else "this mapping"


def _model_at(parts: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model that validates the mapping at ``parts``, found through the annotations."""
    candidates: list[Any] = [PhaseSetDef]
    for part in parts:
        candidates = [nxt for tp in candidates for nxt in _step(tp, part)]
    models = [model for tp in candidates for model in _models(tp)]
    return models[0] if models else None


def _models(tp: Any) -> Iterator[type[BaseModel]]:
    origin = get_origin(tp)
    if origin is Annotated or origin is Union or origin is types.UnionType:
        for member in get_args(tp)[:1] if origin is Annotated else get_args(tp):
            yield from _models(member)
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        yield tp


def _step(tp: Any, part: str | int) -> Iterator[Any]:
    origin = get_origin(tp)
    if origin is Annotated:
        yield from _step(get_args(tp)[0], part)
    elif origin is Union or origin is types.UnionType:
        for member in get_args(tp):
            yield from _step(member, part)
    elif isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
        if part in tp.model_fields:
            yield tp.model_fields[part].annotation
    elif origin is list and isinstance(part, int):
        yield get_args(tp)[0]
    elif origin is dict and isinstance(part, str):
        yield get_args(tp)[1]
