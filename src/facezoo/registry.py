"""Name -> constructor registries (backbones, heads, schedules, ...) with did-you-mean errors."""

from __future__ import annotations

import copy
import difflib
import inspect
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def did_you_mean(name: str, choices) -> str:
    """' Did you mean 'x'?' for the nearest choice, or '' when none is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


class Registry(Generic[T]):
    """A table of named constructors; `register` is a decorator, `create(name, **kw)` builds one.

    Each name may also carry an `info` dict of facts about it (a reference, test settings), read with `info(name)`;
    what its keys mean is up to the registry's users (backbones: see facezoo.models.backbones).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._table: dict[str, Callable[..., T]] = {}
        self._targets: dict[str, Callable] = {}
        self._info: dict[str, dict] = {}

    def register(self, name: str | None = None, *, info: dict | None = None, **defaults) -> Callable:
        """Register a class or factory under `name` (default: its __name__ lower-cased).

        `defaults` are keyword arguments bound at creation, so one class can serve several names
        (e.g. ir50 = IResNet(layers=(3, 4, 14, 3))). `info` is stored, never passed to the constructor.
        """

        def decorator(fn):
            key = name or fn.__name__.lower()
            if key in self._table:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
            self._table[key] = (lambda **kw: fn(**{**defaults, **kw})) if defaults else fn
            self._targets[key] = fn
            self._info[key] = dict(info or {})
            return fn

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._table[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} '{name}'.{did_you_mean(name, self._table)} Available: {', '.join(self.names())}."
            ) from None

    def create(self, name: str, **kwargs) -> T:
        """Build `name`; a keyword it does not take is a ConfigError naming the nearest one it does."""
        factory = self.get(name)
        try:
            params = inspect.signature(self._targets[name]).parameters
        except (TypeError, ValueError):  # builtins without a signature: let the call decide
            params = {}
        if params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            for key in kwargs:
                if key not in params:
                    valid = [p for p in params if p != "self"]
                    raise ConfigError(
                        f"{self.kind} '{name}' has no argument '{key}'.{did_you_mean(key, valid)} "
                        f"It takes: {', '.join(valid)}."
                    )
        return factory(**kwargs)

    def info(self, name: str) -> dict:
        """A copy of the facts registered with `name` ({} when none); an unknown name is a ConfigError."""
        self.get(name)
        return copy.deepcopy(self._info[name])

    def names(self) -> list[str]:
        return sorted(self._table)

    def __contains__(self, name: str) -> bool:
        return name in self._table
