"""Progress bars for every long loop (evaluation, calibration, enrolment, data synth / pack / unpack / prepare, SDK
commands over folders): tqdm on stderr with counts, rate and ETA.

A bar is silent when stderr is not a terminal (logs, pipes, tests), when the caller passes enabled=False, or inside
`quiet()` (the CLI's --quiet wraps the whole command in it). One helper, so every loop looks and behaves alike.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator

from tqdm import tqdm

_quiet = [False]  # set only by quiet(); a list so the context manager can restore it


@contextlib.contextmanager
def quiet(on: bool = True) -> Iterator[None]:
    """Silence every bar opened inside the block (on=False: leave them as they are)."""
    before = _quiet[0]
    _quiet[0] = before or bool(on)
    try:
        yield
    finally:
        _quiet[0] = before


def bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True, initial: int = 0) -> tqdm:
    """A tqdm bar (use as a context manager, `.update(n)`); shown only when `enabled`, outside quiet() and when
    stderr is a TTY. total None: counts and rate without an ETA."""
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        leave=False,
        dynamic_ncols=True,
        file=sys.stderr,
        disable=True if (not enabled or _quiet[0]) else None,  # None: tqdm turns itself off when not a TTY
    )


def track(iterable: Iterable, total: int | None, desc: str, unit: str = "it", enabled: bool = True) -> Iterator:
    """The items of `iterable`, one bar step each."""
    with bar(total, desc, unit, enabled) as pbar:
        for item in iterable:
            yield item
            pbar.update(1)


def counted(fn: Callable, pbar: tqdm) -> Callable:
    """fn, advancing `pbar` by one after each call (for loops that live inside a callee, e.g. a writer's load)."""

    def call(*args, **kwargs):
        out = fn(*args, **kwargs)
        pbar.update(1)
        return out

    return call
