"""The `facezoo` command: one module per subcommand, each a thin shell over a library function.

Each module in COMMANDS defines `register(subparsers)`, which adds its parser and sets `func=run`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import FacezooError

COMMANDS = (
    "data",
    "train",
    "eval",
    "eval-ijb",
    "eval-megaface",
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
    "serve",
    "list",
)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="facezoo", description="Face recognition: train, evaluate, convert data.")
    parser.add_argument("--version", action="version", version=f"facezoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}").register(sub)
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
