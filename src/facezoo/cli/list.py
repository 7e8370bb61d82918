"""`facezoo list [KIND]`: the names in each registry (backbones, heads, modes, schedules, optimizers, ...)."""

from __future__ import annotations

from . import COMMANDS

KINDS = ("backbones", "heads", "modes", "schedules", "optimizers", "callbacks", "detectors")


def registries() -> dict:
    """{kind: Registry} for every kind in KINDS, each with all its built-in names registered."""
    from ..models.backbones import BACKBONES
    from ..models.heads import HEADS
    from ..sdk.detect.base import registered
    from ..train.callbacks import CALLBACKS
    from ..train.modes import MODES
    from ..train.optim import OPTIMIZERS
    from ..train.schedules import SCHEDULES

    return {
        "backbones": BACKBONES,
        "heads": HEADS,
        "modes": MODES,
        "schedules": SCHEDULES,
        "optimizers": OPTIMIZERS,
        "callbacks": CALLBACKS,
        "detectors": registered(),
    }


@COMMANDS.register("list")
def register(sub) -> None:
    p = sub.add_parser("list", help=f"list registered {', '.join(KINDS[:-1])} and {KINDS[-1]}")
    p.add_argument("what", nargs="?", choices=KINDS, default=None, help="one kind only (default: all)")
    p.set_defaults(func=run)


def run(args) -> int:
    for kind, registry in registries().items():
        if args.what in (None, kind):
            print(f"{kind}: {' '.join(registry.names())}")
    return 0
