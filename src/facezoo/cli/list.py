"""`facezoo list [KIND] [--details]`: the names in each registry (backbones, heads, modes, schedules, ...)."""

from __future__ import annotations

from . import COMMANDS

KINDS = (
    "backbones",
    "heads",
    "modes",
    "samplers",
    "distill_losses",
    "schedules",
    "optimizers",
    "callbacks",
    "augmentations",
    "textures",
    "occluders",
    "detectors",
)


def registries() -> dict:
    """{kind: Registry} for every kind in KINDS, each with all its built-in names registered."""
    from ..augment.occluders import OCCLUDERS
    from ..augment.pipeline import AUGMENTS
    from ..augment.textures import TEXTURES
    from ..data.samplers import SAMPLERS
    from ..models.backbones import BACKBONES
    from ..models.heads import HEADS
    from ..sdk.detect.base import registered
    from ..train.callbacks import CALLBACKS
    from ..train.distill import DISTILL_LOSSES
    from ..train.modes import MODES
    from ..train.optim import OPTIMIZERS
    from ..train.schedules import SCHEDULES

    return {
        "backbones": BACKBONES,
        "heads": HEADS,
        "modes": MODES,
        "samplers": SAMPLERS,
        "distill_losses": DISTILL_LOSSES,
        "schedules": SCHEDULES,
        "optimizers": OPTIMIZERS,
        "callbacks": CALLBACKS,
        "augmentations": AUGMENTS,  # data.augment ops (presets: facezoo.augment.pipeline.PRESETS)
        "textures": TEXTURES,  # facezoo data mask --texture
        "occluders": OCCLUDERS,
        "detectors": registered(),
    }


@COMMANDS.register("list")
def register(sub) -> None:
    p = sub.add_parser("list", help=f"list registered {', '.join(KINDS[:-1])} and {KINDS[-1]}")
    p.add_argument("what", nargs="?", choices=KINDS, default=None, help="one kind only (default: all)")
    p.add_argument(
        "--details",
        action="store_true",
        help="backbones: a table of parameters, GFLOPs at the native input size, input and embedding size, reference",
    )
    p.set_defaults(func=run)


def backbone_table() -> str:
    """Markdown table of every registered backbone's facts (counted on the meta device: no weights, no GPU)."""
    from ..models.backbones import BACKBONES
    from ..models.backbones.facts import describe

    rows = ["| backbone | params | GFLOPs | input | embedding | reference |", "|---|---:|---:|---|---:|---|"]
    for name in BACKBONES.names():
        f = describe(name)
        h, w = f.input_size
        rows.append(
            f"| `{name}` | {f.params / 1e6:.2f}M | {f.gflops:.2f} | {h}x{w} | {f.embedding_size} | {f.reference} |"
        )
    return "\n".join(rows)


def run(args) -> int:
    if args.details:
        if args.what not in (None, "backbones"):
            from ..errors import ConfigError

            raise ConfigError(f"--details lists backbones only; run `facezoo list {args.what}` without it.")
        print(backbone_table())
        return 0
    for kind, registry in registries().items():
        if args.what in (None, kind):
            print(f"{kind}: {' '.join(registry.names())}")
    return 0
