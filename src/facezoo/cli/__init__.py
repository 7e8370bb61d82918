"""The `facezoo` command: one module per subcommand, each a thin shell over a library function.

A command module registers the function that adds its parser, as backbones, heads and detectors register:

    @COMMANDS.register("eval-ijb")
    def register(subparsers): ...   # adds the `eval-ijb` parser and sets func=run

MODULES lists the command modules (the command's name with '-' as '_'), in `facezoo --help` order; a new command is
one module and one entry there.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import FacezooError
from ..registry import Registry

COMMANDS: Registry = Registry("command")
MODULES = (
    "data",
    "train",
    "eval",
    "eval_ijb",
    "eval_megaface",
    "eval_quality",
    "export",
    "bench",
    "models",
    "detect",
    "align",
    "embed",
    "verify",
    "identify",
    "gallery",
    "calibrate",
    "quality",
    "serve",
    "list",
)


def command_names() -> list[str]:
    """The commands of MODULES, in `facezoo --help` order (importing a module registers its command)."""
    for module in MODULES:
        importlib.import_module(f"{__name__}.{module}")
    return [module.replace("_", "-") for module in MODULES]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="facezoo", description="Face recognition: train, evaluate, convert data.")
    parser.add_argument("--version", action="version", version=f"facezoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in command_names():
        COMMANDS.get(name)(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except FacezooError as e:
        print(f"facezoo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facezoo: interrupted", file=sys.stderr)
        return 130
