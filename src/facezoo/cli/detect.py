"""Placeholder for `facezoo detect` while it is being written; replaced by its real module."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("detect", help="(being written)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import ConfigError

    raise ConfigError("`facezoo detect` is not written yet.")
