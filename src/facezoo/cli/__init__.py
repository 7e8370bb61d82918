"""The `facezoo` command: one module per subcommand, each a thin shell over a library function.

A command module registers the function that adds its parser, as backbones, heads and detectors register:

    @COMMANDS.register("eval-ijb")
    def register(subparsers): ...   # adds the `eval-ijb` parser and sets func=run

MODULES lists the command modules (the command's name with '-' as '_'), in `facezoo --help` order; a new command is
one module and one entry there. Every parser shows option defaults in its help (HelpFormatter); main() turns
FacezooErrors into one line and exit 2, and a closed stdout (`facezoo ... | head`) into a quiet exit.
"""

from __future__ import annotations

import argparse
import importlib
import os
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


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (the command modules' docstrings), and "(default: X)" after every option's help that
    has a default and does not already say what it is (argparse's ArgumentDefaultsHelpFormatter would repeat it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        shown = default not in (None, False, [], argparse.SUPPRESS) and action.option_strings
        if shown and "default" not in text.lower() and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """argparse.ArgumentParser with facezoo's HelpFormatter; sub-command parsers inherit it (argparse builds them
    with the parent's class)."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = Parser(prog="facezoo", description="Face recognition: train, evaluate, convert data.")
    parser.add_argument("--version", action="version", version=f"facezoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in command_names():
        COMMANDS.get(name)(sub)
    return parser


def main(argv=None) -> int:
    """Run one command; 0 on success, 2 with one error line for a FacezooError, 130 on Ctrl-C, 141 (as a shell
    reports SIGPIPE) without a word when the reader of stdout went away."""
    from ..progress import quiet

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with quiet(getattr(args, "quiet", False)):
            code = args.func(args) or 0
        sys.stdout.flush()  # here, so a closed pipe is caught below rather than at the interpreter's exit
        return code
    except FacezooError as e:
        print(f"facezoo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facezoo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 141


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (an in-memory stdout): nothing is left to flush
        pass
