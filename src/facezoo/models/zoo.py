"""Named pretrained recognition models: a name that stands for an installed facezoo model file.

`PRETRAINED.register("name")` decorates a zero-argument function returning the path of the installed facezoo
checkpoint (.pt) for that name, or raising ModelError with the `facezoo models fetch ...` command that installs
it. Everything that takes a model path (load_model, the SDK, eval, export, serve) resolves names through
`resolve`, so a named model works wherever a path does.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from ..registry import Registry, did_you_mean

PRETRAINED: Registry = Registry("pretrained model")


def is_name(model) -> bool:
    """True for a bare registered name (no path separator, no suffix, not an existing file)."""
    return isinstance(model, str) and model in PRETRAINED and not Path(model).exists()


def resolve(model) -> Path:
    """The file behind `model`: a registered name's installed file, or `model` itself as a path.

    A bare word that is neither a file nor a registered name is a ModelError naming the nearest name.
    """
    if is_name(model):
        return Path(PRETRAINED.create(model))
    path = Path(model)
    if not path.exists() and isinstance(model, str) and "/" not in model and not path.suffix:
        names = PRETRAINED.names()
        hint = did_you_mean(model, names) if names else ""
        raise ModelError(
            f"'{model}' is neither a model file nor a pretrained model name.{hint} "
            f"Names: {', '.join(names) or 'none registered'} (facezoo models list)."
        )
    return path


@PRETRAINED.register("dlib_resnet")
def dlib_resnet() -> Path:
    """dlib's face-recognition ResNet (128-d on 150x150 dlib chips), converted by `facezoo models fetch dlib`."""
    from .fetch import locate

    return locate("dlib") / "dlib_resnet.pt"
