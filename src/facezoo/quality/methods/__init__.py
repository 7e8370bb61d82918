"""Quality methods by name: QUALITY.create(name, **kw); `facezoo quality list` shows them.

A method is one module here: a facezoo.quality.base.QualityMethod subclass registered with
`@QUALITY.register("name")`. `registered()` imports every module of this package, so adding one is one file.
"""

from __future__ import annotations

import importlib
import pkgutil

from ...registry import Registry

QUALITY: Registry = Registry("quality method")


def registered() -> Registry:
    """QUALITY with every method module of this package imported (so registered)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return QUALITY
