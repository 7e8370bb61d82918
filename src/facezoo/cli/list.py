"""`facezoo list [backbones|heads|modes|schedules|callbacks|detectors]`: the registered names."""

from __future__ import annotations


def _tables():
    from ..models.backbones import BACKBONES
    from ..models.heads import HEADS
    from ..sdk.detect.base import registered
    from ..train.callbacks import CALLBACKS
    from ..train.modes import MODES
    from ..train.schedules import SCHEDULES

    return {
        "backbones": BACKBONES,
        "heads": HEADS,
        "modes": MODES,
        "schedules": SCHEDULES,
        "callbacks": CALLBACKS,
        "detectors": registered(),
    }


def register(sub) -> None:
    p = sub.add_parser(
        "list", help="list registered backbones, heads, training modes, schedules, callbacks and detectors"
    )
    p.add_argument(
        "what", nargs="?", choices=("backbones", "heads", "modes", "schedules", "callbacks", "detectors"), default=None
    )
    p.set_defaults(func=run)


def run(args) -> int:
    for kind, registry in _tables().items():
        if args.what in (None, kind):
            print(f"{kind}: {' '.join(registry.names())}")
    return 0
