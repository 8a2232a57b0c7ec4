"""``StoreOpener``: how to open a store by name, so another process can open the same one."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, final

from statemachine import InvalidArgument, Store, open_store
from statemachine.hooks import PluginManager

__all__ = ["StoreOpener", "open_url"]

_PASSWORD = re.compile(r"(://[^:/@\s']*:)[^@/\s']*@")


def open_url(url: str, **options: Any) -> Store:
    """The store ``url`` names, from the stores the installed plugins register."""
    return open_store(url, PluginManager().stores(), **options)


@final
class StoreOpener:
    """A store factory named by dotted path, with JSON arguments: it opens in any process.

    ``StoreOpener("phasekit_jsonl:JsonLinesStore", "/tmp/jobs.jsonl")`` calls
    ``phasekit_jsonl.JsonLinesStore("/tmp/jobs.jsonl")``; ``StoreOpener.url("jsonl:///...")``
    opens a URL through the installed plugins' ``register_stores``. ``pythonpath`` lists
    folders another process needs on ``sys.path`` to import the factory (the folders of this
    process's ``sys.path`` are passed on too).
    """

    __slots__ = ("args", "factory", "kwargs", "pythonpath")

    def __init__(
        self,
        factory: str,
        /,
        *args: Any,
        pythonpath: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        module, sep, attribute = factory.partition(":")
        if not sep or not module or not attribute:
            raise InvalidArgument(f"a store factory is 'package.module:callable', not {factory!r}")
        try:
            json.dumps([args, kwargs])
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(
                f"the arguments of {factory} must be JSON (they are sent to other processes): {exc}"
            ) from None
        self.factory = factory
        self.args: tuple[Any, ...] = args
        self.kwargs: dict[str, Any] = kwargs
        self.pythonpath: tuple[str, ...] = tuple(str(p) for p in pythonpath)

    @classmethod
    def url(cls, url: str, /, **options: Any) -> StoreOpener:
        """Open ``url`` with the store plugin registered for its scheme."""
        return cls(f"{__name__}:open_url", url, **options)

    def open(self) -> Store:
        """A new store from the factory (each call opens another, as another process would)."""
        module_name, _, attribute = self.factory.partition(":")
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
        store = target(*self.args, **self.kwargs)
        if not isinstance(store, Store):
            raise TypeError(
                f"{self.factory}(...) gave a {type(store).__name__}, which lacks methods of "
                "statemachine.Store (create, load, save, list, history, close)"
            )
        return store

    def to_json(self) -> str:
        """The opener as JSON, for another process's ``from_json``."""
        return json.dumps(
            {
                "factory": self.factory,
                "args": list(self.args),
                "kwargs": self.kwargs,
                "pythonpath": list(self.pythonpath),
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> StoreOpener:
        """The opener ``to_json`` wrote."""
        data: Mapping[str, Any] = json.loads(text)
        return cls(data["factory"], *data["args"], pythonpath=data["pythonpath"], **data["kwargs"])

    def __repr__(self) -> str:
        shown = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        # A URL's password never reaches a test report.
        return _PASSWORD.sub(r"\1***@", f"StoreOpener({self.factory!r}, {', '.join(shown)})")
