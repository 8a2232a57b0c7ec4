"""YAML text to a node graph: decoded, parsed safely and composed within limits."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

import yaml
from yaml.composer import Composer, ComposerError
from yaml.events import AliasEvent, StreamEndEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import SpecError, SpecIssue

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_NODES",
    "AliasNode",
    "FatalYamlError",
    "Loader",
    "PureLoader",
    "compose",
    "decode",
    "position",
]

#: Largest document read, in bytes of UTF-8.
MAX_DOCUMENT_BYTES = 1_000_000
#: Most nodes in the document once every alias is expanded, each time it is used: an alias
#: bomb ("billion laughs") stops here, long before it would fill memory.
MAX_NODES = 50_000
#: Deepest nesting of mappings and sequences, aliases expanded.
MAX_DEPTH = 64

# What the YAML 1.1 reader refuses; checked up front so that it is located like any other issue.
_UNPRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


class FatalYamlError(Exception):
    """Reading cannot go on; carries the issue that says why."""

    def __init__(self, code: str, message: str, mark: yaml.Mark | None, path: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.mark, self.path = code, message, mark, path

    def issue(self, filename: str) -> SpecIssue:
        """The issue that says why reading stopped; at the top of the file if not located."""
        line, column = position(self.mark) if self.mark else (1, 1)
        return SpecIssue(self.code, self.message, self.path, line, column, filename=filename)


class AliasNode(Node):
    """A use of an alias; kept apart from its anchor so that each use is counted and located."""

    id: ClassVar[str] = "alias"


class BoundedComposer(Composer):
    """PyYAML's composer, stopping at the depth and node limits and keeping alias uses.

    It also replaces libyaml's own composer, which recurses in C without a limit (a few
    hundred thousand nested brackets crash the interpreter) and forgets where aliases are.
    """

    if TYPE_CHECKING:  # supplied by the parser this composer is mixed with

        def check_event(self, *choices: Any) -> bool: ...
        def peek_event(self) -> Any: ...
        def get_event(self) -> Any: ...

    def __init__(self) -> None:
        Composer.__init__(self)
        self._depth = 0
        self._nodes = 0

    def get_single_node(self) -> Node | None:
        self.get_event()  # STREAM-START
        document = None
        if not self.check_event(StreamEndEvent):
            document = self.compose_document()
        if not self.check_event(StreamEndEvent):
            mark = self.get_event().start_mark
            first = document.start_mark.line + 1 if document is not None else 1
            raise FatalYamlError(
                "multiple-documents",
                f"a phase set is one YAML document; another one starts here (the first "
                f"began on line {first}); remove the '---' separator or split the file",
                mark,
            )
        self.get_event()  # STREAM-END
        return document

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.get_event()
            if event.anchor not in self.anchors:
                raise ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", event.start_mark
                )
            return AliasNode("", self.anchors[event.anchor], event.start_mark, event.end_mark)
        self._nodes += 1
        self._depth += 1
        mark = self.peek_event().start_mark
        if self._depth > MAX_DEPTH:
            raise FatalYamlError("too-deep", f"nested deeper than {MAX_DEPTH} levels", mark)
        if self._nodes > MAX_NODES:
            raise FatalYamlError("too-many-nodes", f"more than {MAX_NODES} YAML nodes", mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class PureLoader(BoundedComposer, yaml.SafeLoader):
    """PyYAML's own safe loader, composing through ``BoundedComposer``."""

    def __init__(self, stream: str) -> None:
        yaml.SafeLoader.__init__(self, stream)
        BoundedComposer.__init__(self)


Loader: type[PureLoader | CLoader] = PureLoader
if yaml.__with_libyaml__:

    class CLoader(BoundedComposer, yaml.CSafeLoader):
        """libyaml's safe parser (fast) feeding ``BoundedComposer``."""

        def __init__(self, stream: str) -> None:
            yaml.CSafeLoader.__init__(self, stream)
            BoundedComposer.__init__(self)

    Loader = CLoader


def position(mark: yaml.Mark | None) -> tuple[int, int] | tuple[None, None]:
    """The 1-based (line, column) of a mark."""
    return (None, None) if mark is None else (mark.line + 1, mark.column + 1)


def _text_position(text: str, index: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def _decode(data: bytes, filename: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[line_start : exc.start].decode("utf-8", "replace")) + 1
        message = f"byte 0x{data[exc.start]:02x} is not valid UTF-8; save the file as UTF-8"
        issue = SpecIssue("invalid-encoding", message, "", line, column, filename=filename)
        raise SpecError([issue]) from None


def _too_large(line: int, column: int, filename: str) -> SpecError:
    message = f"the document is larger than {MAX_DOCUMENT_BYTES} bytes, the most that is read"
    return SpecError(
        [SpecIssue("document-too-large", message, "", line, column, filename=filename)]
    )


def _check_characters(text: str, filename: str) -> None:
    bad = _UNPRINTABLE.search(text)
    if bad is not None:
        char = ord(bad.group())
        line, column = _text_position(text, bad.start())
        if 0xD800 <= char <= 0xDFFF:
            code, message = "invalid-encoding", f"U+{char:04X} is a lone surrogate, not text"
        else:
            code, message = "yaml-syntax", f"the control character U+{char:04X} is not allowed"
        raise SpecError([SpecIssue(code, message, "", line, column, filename=filename)])


def decode(source: str | bytes, filename: str) -> str:
    """The document as text, once its size, encoding and characters are checked.

    A document too large is located where it crosses the limit.
    """
    if isinstance(source, bytes):
        if len(source) > MAX_DOCUMENT_BYTES:
            limit = MAX_DOCUMENT_BYTES
            line_start = source.rfind(b"\n", 0, limit) + 1
            # Columns count characters, as everywhere else; the one that crosses the limit.
            column = len(source[line_start:limit].decode("utf-8", "ignore")) + 1
            raise _too_large(source.count(b"\n", 0, limit) + 1, column, filename)
        text = _decode(source, filename)
    else:
        text = source
        # Four bytes at most per character: only texts near the limit need encoding to measure.
        if len(text) * 4 > MAX_DOCUMENT_BYTES and (
            len(text) > MAX_DOCUMENT_BYTES
            or len(text.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES
        ):
            index = len(
                text.encode("utf-8", "surrogatepass")[:MAX_DOCUMENT_BYTES].decode("utf-8", "ignore")
            )
            raise _too_large(*_text_position(text, index), filename)
    _check_characters(text, filename)
    return text


def compose(text: str, filename: str) -> MappingNode:
    """The root mapping of a one-document YAML text, composed safely and within the limits."""
    loader = Loader(text)
    try:
        root = loader.get_single_node()
        if root is None or (isinstance(root, ScalarNode) and root.tag.endswith(":null")):
            message = "the document is empty; a phase set starts with 'phasekit: 1'"
            raise FatalYamlError("empty-document", message, None)
        if not isinstance(root, MappingNode):
            found = "a list" if isinstance(root, SequenceNode) else "a single value"
            message = f"the document must be a mapping of keys (phasekit, name, ...), found {found}"
            raise FatalYamlError("invalid-type", message, root.start_mark)
        return root
    except FatalYamlError as fatal:
        raise SpecError([fatal.issue(filename)]) from None
    except yaml.MarkedYAMLError as exc:
        line, column = position(exc.problem_mark or exc.context_mark)
        message = ": ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        code = "yaml-syntax"
        if "maximum nesting depth" in message:  # libyaml 0.2.5+ stops at its own depth limit
            code, message = "too-deep", f"nested deeper than {MAX_DEPTH} levels"
        issue = SpecIssue(code, message, "", line, column, filename=filename)
        raise SpecError([issue]) from None
    except yaml.YAMLError as exc:  # a reader error, which decode() should prevent
        issue = SpecIssue("yaml-syntax", str(exc), "", 1, 1, filename=filename)
        raise SpecError([issue]) from None
    finally:
        loader.dispose()
