"""Phase-set documents, from YAML or dicts, into validated definitions with located errors."""

from __future__ import annotations

import difflib
import importlib.resources
import os
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from pathlib import Path

from pydantic import ValidationError

from ..errors import SpecError, SpecIssue
from .compose import MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_NODES
from .locate import Locations, child_path, key_path, read_yaml
from .model import PhaseSetDef
from .references import check_references
from .schema_issues import schema_issues

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_NODES",
    "Locations",
    "bundled_names",
    "definition_from_dict",
    "is_bundled_name",
    "load_definition",
    "parse_definition",
    "source_name",
]

# The limits above (MAX_*) are documented where they are enforced, in ``compose``.

#: Issues of the YAML reader that replace the node's value with ``INVALID``.
_REJECTING_CODES = frozenset({"forbidden-tag", "invalid-value"})


def parse_definition(
    text: str | bytes, filename: str = "<string>"
) -> tuple[PhaseSetDef, Locations]:
    """A phase set from YAML text, and where each of its nodes is; else ``SpecError``."""
    data, locations, issues = read_yaml(text, filename)
    return _validate(data, locations, issues, filename), locations


def definition_from_dict(
    data: Mapping[str, object], filename: str = "<dict>"
) -> tuple[PhaseSetDef, Locations]:
    """A phase set from already-parsed data, validated like a document (with no positions)."""
    reader = _PlainData(filename)
    plain = reader.value(data, "", 1)
    if not isinstance(plain, dict):
        message = f"the document must be a mapping of keys, found a {type(data).__name__}"
        raise SpecError([SpecIssue("invalid-type", message, filename=filename)])
    return _validate(plain, {}, reader.issues, filename), {}


def load_definition(path_or_name: str | os.PathLike[str]) -> tuple[PhaseSetDef, Locations]:
    """A phase set from a YAML file, or a bundled one by bare name (``"ingestion"``)."""
    if is_bundled_name(path_or_name):
        name = str(path_or_name)
        names = bundled_names()
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            message = (
                f"no bundled phase set is named {name!r}; bundled: {', '.join(names) or 'none'}; "
                "give a path to load a file"
            )
            hint = close[0] if close else None
            issue = SpecIssue("unknown-phase-set", message, hint=hint, filename=name)
            raise SpecError([issue])
        source: Traversable = _bundled_folder() / f"{name}.yaml"
    else:
        source = Path(path_or_name)
    filename = str(source)
    return parse_definition(_read(source, filename), filename)


def source_name(path_or_name: str | os.PathLike[str]) -> str:
    """The file name issues of ``load_definition(path_or_name)`` carry."""
    if is_bundled_name(path_or_name):
        return str(_bundled_folder() / f"{path_or_name}.yaml")
    return str(path_or_name)


def bundled_names() -> list[str]:
    """The names of the phase sets shipped with phasekit, sorted."""
    folder = _bundled_folder()
    if not folder.is_dir():
        return []
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml") and entry.is_file()
    )


def is_bundled_name(path_or_name: str | os.PathLike[str]) -> bool:
    """Whether ``path_or_name`` names a bundled phase set (``"ingestion"``) rather than a file.

    A bare word is a name; anything with a path separator or a ``.yaml``/``.yml`` suffix, and
    every ``PathLike``, is a file. Every place that takes "a bundled name or a path" asks this.
    """
    if not isinstance(path_or_name, str):
        return False
    separators = {"/", os.sep, os.altsep or "/"}
    has_separator = any(sep in path_or_name for sep in separators)
    return not has_separator and not path_or_name.endswith((".yaml", ".yml"))


def _bundled_folder() -> Traversable:
    return importlib.resources.files("statemachine.config")


def _read(source: Traversable, filename: str) -> bytes:
    # Reading one byte past the limit is enough to report a document that is too large.
    try:
        with source.open("rb") as stream:
            data: bytes = stream.read(MAX_DOCUMENT_BYTES + 1)
            return data
    except OSError as exc:
        raise _unreadable(filename, exc) from None


def _unreadable(filename: str, exc: OSError) -> SpecError:
    reason = exc.strerror or str(exc)
    message = f"cannot read {filename}: {reason}"
    return SpecError([SpecIssue("unreadable-file", message, filename=filename)])


def _validate(
    data: dict[str, object], locations: Locations, issues: list[SpecIssue], filename: str
) -> PhaseSetDef:
    """Validates the data against the schema and the reference rules, raising every issue."""
    definition: PhaseSetDef | None = None
    schema: list[SpecIssue] = []
    try:
        definition = PhaseSetDef.model_validate(data)
    except ValidationError as exc:
        for found in schema_issues(exc, data):
            where = _locate(locations, found.path, found.about_key)
            schema.append(
                SpecIssue(
                    found.code, found.message, found.path, *where, found.hint, filename=filename
                )
            )
    references = [
        SpecIssue(code, message, path, *_locate(locations, path), hint, filename=filename)
        for code, message, path, hint in check_references(data)
    ]
    everything = _without_echoes(issues, schema, references)
    if everything or definition is None:
        raise SpecError(everything)
    return definition


def _without_echoes(
    read: list[SpecIssue], schema: list[SpecIssue], references: list[SpecIssue]
) -> list[SpecIssue]:
    """Every issue, less the echoes of one already reported for the same node.

    A value the YAML reader rejected is not valid for the schema either, nor for anything
    below it; a name the schema rejected is not looked up among the statuses.
    """
    rejected = [issue.path for issue in read if issue.code in _REJECTING_CODES]
    schema = [i for i in schema if not any(_is_below(i.path, p) for p in rejected)]
    seen = {issue.path for issue in schema}
    references = [
        i
        for i in references
        if i.path not in seen and not any(_is_below(i.path, p) for p in rejected)
    ]
    return [*read, *schema, *references]


def _is_below(path: str, ancestor: str) -> bool:
    return path == ancestor or (
        path.startswith(ancestor) and (not ancestor or path[len(ancestor)] in ".[")
    )


def _locate(
    locations: Locations, path: str, about_key: bool = False
) -> tuple[int | None, int | None]:
    """The position of the node at ``path``, or of its nearest ancestor that has one."""
    if about_key and key_path(path) in locations:
        return locations[key_path(path)]
    while True:
        if path in locations:
            return locations[path]
        if not path:
            return None, None
        cut = max(path.rfind("."), path.rfind("["))
        path = path[: max(cut, 0)]


class _PlainData:
    """Python data as plain dicts and lists, bounded like a document is."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.issues: list[SpecIssue] = []
        self.nodes = 0
        self.open: set[int] = set()

    def fail(self, code: str, message: str, path: str) -> SpecError:
        return SpecError([*self.issues, SpecIssue(code, message, path, filename=self.filename)])

    def value(self, value: object, path: str, depth: int) -> object:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail("too-many-nodes", f"more than {MAX_NODES} nodes", path)
        if depth > MAX_DEPTH:
            raise self.fail("too-deep", f"nested deeper than {MAX_DEPTH} levels", path)
        if not isinstance(value, (Mapping, list, tuple)):
            return value
        if id(value) in self.open:
            raise self.fail("recursive-alias", "the data contains itself", path)
        self.open.add(id(value))
        try:
            if not isinstance(value, Mapping):
                return [self.value(v, child_path(path, i), depth + 1) for i, v in enumerate(value)]
            result: dict[str, object] = {}
            for key, item in value.items():
                if isinstance(key, str):
                    result[key] = self.value(item, child_path(path, key), depth + 1)
                else:
                    message = f"keys must be strings, found the {type(key).__name__} {key!r}"
                    issue = SpecIssue(
                        "invalid-key", message, key_path(path), filename=self.filename
                    )
                    self.issues.append(issue)
            return result
        finally:
            self.open.discard(id(value))
