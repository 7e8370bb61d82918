"""Progress bars for the long evaluation loops (embedding, IJB / MegaFace scoring): tqdm on stderr with counts,
rate and ETA; silent when stderr is not a terminal (logs, pipes, tests) or when the caller turns it off."""

from __future__ import annotations

import sys

from tqdm import tqdm


def bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True) -> tqdm:
    """A tqdm bar (use as a context manager, `.update(n)`); disabled unless `enabled` and stderr is a TTY."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        leave=False,
        dynamic_ncols=True,
        file=sys.stderr,
        disable=None if enabled else True,  # None: tqdm turns itself off when the stream is not a TTY
    )
