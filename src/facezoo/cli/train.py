"""`facezoo train RECIPE.yaml [key=value ...] [--resume [CHECKPOINT]] [--max-steps N]`."""

from __future__ import annotations

from pathlib import Path

from . import COMMANDS


@COMMANDS.register("train")
def register(sub) -> None:
    p = sub.add_parser("train", help="train a model from a YAML recipe", description=__doc__)
    p.add_argument("recipe", help="YAML recipe, e.g. configs/synthetic_demo.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. optim.lr=0.05 epochs=4")
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="CHECKPOINT",
        help="continue a run exactly: from CHECKPOINT, or from OUTPUT/checkpoint.pt when no path is given",
    )
    p.add_argument("--max-steps", type=int, default=None, help="stop (with a checkpoint) after this many steps")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import load_config
    from ..errors import ConfigError
    from ..train.trainer import Trainer

    if args.max_steps is not None and args.max_steps <= 0:
        raise ConfigError(f"--max-steps must be a positive step count, got {args.max_steps}")
    cfg = load_config(args.recipe, args.overrides)
    trainer = Trainer(cfg)
    if args.resume:
        path = trainer.checkpoint_path if args.resume == "auto" else Path(args.resume)
        if args.resume == "auto" and not path.exists():
            raise ConfigError(f"--resume: no {path} yet; start without --resume or pass a checkpoint path")
        trainer.resume(path)
    trainer.fit(max_steps=args.max_steps)
    trainer.close()
    return 0
