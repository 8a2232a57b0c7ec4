"""A YAML node graph to plain data, with the position of every node and located issues."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import SpecError, SpecIssue
from .compose import MAX_DEPTH, MAX_NODES, AliasNode, FatalYamlError, compose, decode, position

__all__ = [
    "INVALID",
    "Locations",
    "child_path",
    "key_path",
    "read_yaml",
]

#: Issue path -> 1-based (line, column). A sequence item's path points at the item; a mapping
#: entry's path points at its value when that is a scalar and at its key otherwise (where the
#: entry begins); ``key_path(path)`` always points at the key. The root is ``""``.
Locations = dict[str, tuple[int, int]]

_YAML = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_YAML + t for t in ("null", "bool", "int", "float", "str", "timestamp"))
_MAP, _SEQ, _STR, _MERGE = _YAML + "map", _YAML + "seq", _YAML + "str", _YAML + "merge"


class _Invalid:
    """Stands for a node that was reported already; no schema accepts it."""

    def __repr__(self) -> str:
        return "<invalid>"


#: The value of a node that could not be read (its issue is reported); never valid data.
INVALID = _Invalid()


def child_path(path: str, key: str | int) -> str:
    """The issue path of a mapping entry or sequence item under ``path``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def key_path(path: str) -> str:
    """Where ``Locations`` keeps the position of the key of the mapping entry at ``path``."""
    return f"{path}[key]"


def _describe_scalar(node: ScalarNode) -> str:
    kind = node.tag.removeprefix(_YAML)
    names = {"int": "integer", "float": "number", "bool": "boolean", "null": "null"}
    return f"the {names[kind]} {node.value}" if kind in names else f"the {kind} {node.value!r}"


@dataclass
class _Converter:
    """Turns a composed node graph into dicts, lists and scalars, recording positions."""

    filename: str
    constructor: SafeConstructor = field(default_factory=SafeConstructor)
    issues: list[SpecIssue] = field(default_factory=list)
    locations: Locations = field(default_factory=dict)
    nodes: int = 0
    open_nodes: set[int] = field(default_factory=set)
    merging: set[int] = field(default_factory=set)
    reported: set[tuple[str, int | None, int | None]] = field(default_factory=set)

    def issue(self, code: str, message: str, path: str, mark: yaml.Mark | None) -> None:
        """Reports an issue once, however many times an alias makes its node be read."""
        line, column = position(mark)
        if (code, line, column) not in self.reported:
            self.reported.add((code, line, column))
            self.issues.append(SpecIssue(code, message, path, line, column, filename=self.filename))

    def value(self, node: Node, path: str, depth: int, alias: yaml.Mark | None) -> object:
        """The data of ``node``; ``alias`` is the outermost alias use being expanded, if any."""
        if isinstance(node, AliasNode):
            return self.value(node.value, path, depth, alias or node.start_mark)
        where = alias or node.start_mark
        self.count(where, path)
        if depth > MAX_DEPTH:
            raise FatalYamlError("too-deep", f"nested deeper than {MAX_DEPTH} levels", where, path)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if node.tag not in (_MAP, _SEQ):
            self.forbidden_tag(node, path)
            return INVALID
        if id(node) in self.open_nodes:
            message = "this alias refers to a node that contains it (a recursive alias)"
            raise FatalYamlError("recursive-alias", message, where, path)
        self.open_nodes.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [
                    self.value(item, self.place(child_path(path, i), item), depth + 1, alias)
                    for i, item in enumerate(node.value)
                ]
            assert isinstance(node, MappingNode)
            return self.mapping(node, path, depth, alias)
        finally:
            self.open_nodes.discard(id(node))

    def place(self, path: str, node: Node) -> str:
        """Records where the node at ``path`` is written and returns ``path``."""
        line, column = position(node.start_mark)
        if line is not None and column is not None:
            self.locations[path] = (line, column)
        return path

    def scalar(self, node: ScalarNode, path: str) -> object:
        if node.tag not in _SCALAR_TAGS:
            self.forbidden_tag(node, path)
            return INVALID
        try:
            return SafeConstructor.yaml_constructors[node.tag](self.constructor, node)
        except Exception:  # any failure to read a scalar is the document's fault
            kind = node.tag.removeprefix(_YAML)
            message = f"cannot read {node.value[:40]!r} as a YAML {kind}"
            self.issue("invalid-value", message, path, node.start_mark)
            return INVALID

    def forbidden_tag(self, node: Node, path: str) -> None:
        tag = node.tag.replace(_YAML, "!!")
        message = (
            f"the YAML tag {tag!r} is not allowed: a phase set holds only plain mappings, "
            "lists, strings, numbers, booleans and nulls"
        )
        self.issue("forbidden-tag", message, path, node.start_mark)

    def count(self, where: yaml.Mark | None, path: str) -> None:
        """Counts one node of the expanded document, stopping at the limit."""
        self.nodes += 1
        if self.nodes > MAX_NODES:
            message = f"more than {MAX_NODES} YAML nodes once aliases are expanded"
            raise FatalYamlError("too-many-nodes", message, where, path)

    def entries(
        self, node: MappingNode, path: str, depth: int, alias: yaml.Mark | None
    ) -> list[tuple[Node, Node, bool]]:
        """The (key, value, merged) entries of a mapping, ``<<`` merge keys resolved as YAML 1.1."""
        if depth > MAX_DEPTH:
            message = f"merge keys '<<' nested deeper than {MAX_DEPTH} levels"
            raise FatalYamlError("too-deep", message, alias or node.start_mark, path)
        if id(node) in self.merging:
            message = "a merge key '<<' refers to the mapping that contains it"
            raise FatalYamlError("recursive-alias", message, alias or node.start_mark, path)
        self.merging.add(id(node))
        try:
            merged: list[tuple[Node, Node, bool]] = []
            own: list[tuple[Node, Node, bool]] = []
            for key, value in node.value:
                self.count(alias or key.start_mark, path)
                if not (isinstance(key, ScalarNode) and key.tag == _MERGE):
                    own.append((key, value, False))
                    continue
                target = _target(value)
                sources = target.value if isinstance(target, SequenceNode) else [value]
                for source in sources:
                    mapping = _target(source)
                    if isinstance(mapping, MappingNode) and mapping.tag == _MAP:
                        inner = self.entries(mapping, path, depth + 1, alias or source.start_mark)
                        merged += [(k, v, True) for k, v, _ in _effective(inner)]
                    else:
                        message = "a merge key '<<' takes an alias of a mapping, or a list of them"
                        merge_path = child_path(path, "<<")
                        self.issue("invalid-type", message, merge_path, source.start_mark)
            return merged + own
        finally:
            self.merging.discard(id(node))

    def mapping(
        self, node: MappingNode, path: str, depth: int, alias: yaml.Mark | None
    ) -> dict[str, object]:
        result: dict[str, object] = {}
        seen: dict[str, tuple[Node, bool]] = {}
        for key_node, value_node, merged in self.entries(node, path, depth, alias):
            key = self.key(key_node, path)
            if key is None:
                continue
            entry = child_path(path, key)
            if key in seen:
                first, first_merged = seen[key]
                if not (merged or first_merged):
                    line = first.start_mark.line + 1
                    message = f"duplicate key {key!r}: it is already set on line {line}"
                    self.issue("duplicate-key", message, entry, key_node.start_mark)
                if merged or not first_merged:
                    continue  # the first key wins, and a key of the mapping's own over a merged one
            seen[key] = (key_node, merged)
            self.place(key_path(entry), key_node)
            shown = _target(value_node)
            self.place(entry, value_node if isinstance(shown, ScalarNode) else key_node)
            result[key] = self.value(value_node, entry, depth + 1, alias)
        return result

    def key(self, node: Node, path: str) -> str | None:
        """The key as a string, or ``None`` once it is reported as not a string."""
        target = _target(node)
        if isinstance(target, ScalarNode) and target.tag == _STR:
            return str(target.value)
        if isinstance(target, ScalarNode) and target.tag in _SCALAR_TAGS:
            found = _describe_scalar(target)
            message = f"keys must be strings, found {found}; quote it: '{target.value}'"
        elif isinstance(target, ScalarNode):
            self.forbidden_tag(target, key_path(path))
            return None
        else:
            kind = "a list" if isinstance(target, SequenceNode) else "a mapping"
            message = f"keys must be strings, found {kind}"
        self.issue("invalid-key", message, key_path(path), node.start_mark)
        return None


def _target(node: Node) -> Node:
    while isinstance(node, AliasNode):
        node = node.value
    return node


def _effective(entries: list[tuple[Node, Node, bool]]) -> list[tuple[Node, Node, bool]]:
    """The entries a mapping ends up with: its own keys over merged ones, else the first."""
    chosen: dict[object, tuple[Node, Node, bool]] = {}
    for key, value, merged in entries:
        target = _target(key)
        name = target.value if isinstance(target, ScalarNode) else id(target)
        if name not in chosen or (chosen[name][2] and not merged):
            chosen[name] = (key, value, merged)
    return list(chosen.values())


def read_yaml(
    source: str | bytes, filename: str
) -> tuple[dict[str, object], Locations, list[SpecIssue]]:
    """Reads one YAML mapping safely: its data, where each node is, and the issues found.

    Raises ``SpecError`` when reading cannot go on (syntax, encoding, limits); the issues
    returned are those it could read past (duplicate keys, forbidden tags, ...).
    """
    root = compose(decode(source, filename), filename)
    converter = _Converter(filename)
    converter.place("", root)
    try:
        data = converter.value(root, "", 1, None)
    except FatalYamlError as fatal:
        raise SpecError([*converter.issues, fatal.issue(filename)]) from None
    if not isinstance(data, dict):  # the root mapping itself carried a forbidden tag
        raise SpecError(converter.issues)
    return data, converter.locations, converter.issues
