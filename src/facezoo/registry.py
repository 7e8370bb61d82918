"""Name -> constructor registries (backbones, heads, schedules, ...) with did-you-mean errors."""

from __future__ import annotations

import copy
import difflib
import inspect
import math
import numbers
import types
import typing
from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np

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

    def create(self, name: str, /, **kwargs) -> T:
        """Build `name`; a keyword it does not take, or a value of a type its signature rules out, is a ConfigError
        naming the argument (check_kwargs)."""
        factory = self.get(name)
        self.check_kwargs(name, kwargs)
        return factory(**kwargs)

    def check_kwargs(self, name: str, kwargs: dict, where: str | None = None) -> None:
        """ConfigError for a keyword `name` does not take (naming the nearest it does) or a value whose type its
        signature rules out (e.g. m="abc" for `m: float = 0.5`), before anything is built. where: how the user
        wrote these keywords (e.g. "head.kwargs"), so the message names `head.kwargs.m`.

        Types come from the annotation (int, float, bool, str, unions of them, Optional; an int is a number too).
        Anything else is left to the constructor: only values a signature rules out are refused here, so a
        TypeError raised inside a constructor is never masked.
        """
        self.get(name)
        target = self._targets[name]
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):  # builtins without a signature: let the call decide
            return
        label = (lambda key: f"{where}.{key}") if where else (lambda key: f"{self.kind} '{name}' argument '{key}'")
        open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())
        hints = _type_hints(target)
        for key, value in kwargs.items():
            if key not in params:
                if open_ended:
                    continue
                valid = [p for p in params if p != "self"]
                raise ConfigError(
                    f"{self.kind} '{name}' has no argument '{key}'.{did_you_mean(key, valid)} "
                    f"It takes: {', '.join(valid)}."
                )
            problem = _type_problem(value, hints.get(key, inspect.Parameter.empty), params[key].default)
            if problem:
                default = params[key].default
                shown = "" if default is inspect.Parameter.empty else f" (default {default!r})"
                raise ConfigError(f"{label(key)}: {problem}, got {type(value).__name__} {value!r}{shown}.")

    def info(self, name: str) -> dict:
        """A copy of the facts registered with `name` ({} when none); an unknown name is a ConfigError."""
        self.get(name)
        return copy.deepcopy(self._info[name])

    def names(self) -> list[str]:
        return sorted(self._table)

    def __contains__(self, name: str) -> bool:
        return name in self._table


_SIMPLE = (bool, int, float, str)


def _type_hints(target) -> dict:
    """Resolved annotations of a class's __init__ or a function ({} when they cannot be resolved)."""
    fn = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(fn)
    except Exception:  # forward references to names that do not resolve: check by defaults only
        return {}


def _accepted(annotation) -> tuple[set, bool] | None:
    """(simple types accepted, None accepted) from an annotation; None when it says nothing checkable (none, a
    tuple, a module, Any: an unannotated `input_size=112` may well take (112, 96), so defaults are not types)."""
    if annotation is inspect.Parameter.empty:
        return None
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    members = args or (annotation,)
    simple = {m for m in members if m in _SIMPLE}
    if not simple or len(simple) + (type(None) in members) != len(members):
        return None  # something beyond simple types: the constructor decides
    return simple, type(None) in members


def _type_problem(value, annotation, default) -> str | None:
    """What is wrong with value for a parameter (None if nothing the signature can tell)."""
    rule = _accepted(annotation)
    if rule is None:
        return None
    simple, none_ok = rule
    if value is None:
        return None if (none_ok or default is None) else f"expected {_names(simple)}"
    if isinstance(value, (bool, np.bool_)):
        ok = bool in simple
    elif isinstance(value, numbers.Integral):  # numpy integers too
        ok = int in simple or float in simple
    elif isinstance(value, numbers.Real):
        ok = float in simple
        if ok and not math.isfinite(value):
            return "must be a finite number"
    else:
        ok = str in simple and isinstance(value, str)
    return None if ok else f"expected {_names(simple)}"


def _names(simple: set) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    return " or ".join(names[t] for t in _SIMPLE if t in simple)
