"""Runtime registry: what runs an embedder (torch eager, onnxruntime, ...), one module of this package each.

A runtime is a facezoo.models.embedder.Embedder subclass registered with `@RUNTIMES.register("name")` in a module
of this package; `registered()` imports every module here, so adding a runtime (OpenVINO, TensorRT) is one file.
A runtime module imports its library lazily (inside `open`), so listing runtimes needs none of them installed.
The class declares
  suffixes      the file suffixes it can open, e.g. (".onnx",);
  default_for   the suffixes it is chosen for when load_model gets no runtime= (one runtime per suffix);
  wraps         the object types it wraps for load_model(obj) (torch: nn.Module), usually ();
and implements the classmethods
  open(path, device, *, mean, std, channel_order, batch_size, name) -> Embedder
  wrap(obj, device, *, batch_size) -> Embedder                      (when wraps is not empty).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from ...errors import ConfigError, ModelError
from ...registry import Registry

RUNTIMES: Registry = Registry("runtime")


def registered() -> Registry:
    """RUNTIMES with every runtime module of this package imported (so registered)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return RUNTIMES


def runtime_for(path, runtime: str | None = None) -> type:
    """The runtime class for a model file: `runtime` by name, or the one whose default_for has the file's suffix."""
    table = registered()
    suffix = Path(path).suffix.lower()
    if runtime is not None:
        cls = table.get(runtime)
        if suffix not in cls.suffixes:
            raise ConfigError(
                f"{path}: runtime '{runtime}' opens {', '.join(cls.suffixes)} files, not '{suffix or 'no suffix'}'. "
                "Pass a file it opens, or another --runtime."
            )
        return cls
    defaults = {s: name for name in table.names() for s in table.get(name).default_for}
    if suffix in defaults:
        return table.get(defaults[suffix])
    known = ", ".join(f"{s} ({n})" for s, n in sorted(defaults.items()))
    raise ModelError(
        f"{path}: no runtime opens '{suffix or 'no suffix'}' files by default (known: {known}). Rename the file, "
        "or name its runtime (runtime= / --runtime)."
    )
