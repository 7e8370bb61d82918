"""Backbone registry: every family module (one file) registers its names into BACKBONES.

A backbone maps a normalised float batch (B, 3, H, W) to embeddings (B, embedding_size), not L2-normalised.
Common constructor keywords: embedding_size=512, input_size=112 (int or (H, W)), dropout=0.0; it checks its
input with `check_input` and exposes `input_size` ((H, W)) and `embedding_size`.

A registration binds the defaults that make the name (its native input size and embedding size among them) and
carries `info` (see Registry.register):
    BACKBONES.register("ir50", info={"reference": "...", "test_kwargs": {"width": 0.125, "input_size": 32}},
                       layers=(3, 4, 14, 3))(IResNet)
  reference    the paper and the seed's source the layout follows (printed by `facezoo list backbones --details`)
  test_kwargs  keywords for a small, fast build of the same code (lower width, input or depth) that the
               registry-driven tests in tests/models/test_backbone_zoo.py use for forward, backward and ONNX
               export; full-size parameter counts are checked on the meta device.
Facts (parameters, GFLOPs) are computed in facts.py.
"""

from __future__ import annotations

import torch

from ...errors import ConfigError, ModelError
from ...registry import Registry

BACKBONES = Registry("backbone")


def as_hw(input_size, minimum: int = 16) -> tuple[int, int]:
    """Normalise `input_size` (int or (H, W)) to a (H, W) tuple of ints >= `minimum`."""
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        hw = (input_size, input_size)
    elif isinstance(input_size, (tuple, list)) and len(input_size) == 2:
        hw = tuple(input_size)
    else:
        raise ConfigError(f"backbone input_size must be an int or (H, W), got {input_size!r}; e.g. input_size=112.")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in hw):
        raise ConfigError(
            f"backbone input_size {input_size!r} is invalid: both sides must be ints >= {minimum} "
            f"(112 or (112, 96) are usual)."
        )
    return hw  # type: ignore[return-value]


def check_positive(**values) -> None:
    """Raise ConfigError naming the first keyword whose value is not a positive int."""
    for key, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"backbone {key} must be a positive int, got {v!r}.")


def check_multiplier(model: str, **values) -> None:
    """Raise ConfigError naming the first keyword whose value is not a positive number (a width or depth factor)."""
    for key, v in values.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
            raise ConfigError(f"{model} {key} must be a positive multiplier (e.g. 1.0 or 0.25), got {v!r}.")


def check_layers(model: str, layers, stages: int = 4, key: str = "layers") -> tuple[int, ...]:
    """`layers` as a tuple of `stages` block counts >= 1, or a ConfigError naming `key`."""
    ok = isinstance(layers, (tuple, list)) and len(layers) == stages
    if not (ok and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in layers)):
        raise ConfigError(f"{model} {key} must be {stages} block counts >= 1, got {layers!r}.")
    return tuple(layers)


def check_dropout(p) -> float:
    """Return `p` as a float, or raise ConfigError unless it is a probability in [0, 1)."""
    if not isinstance(p, (int, float)) or not 0.0 <= float(p) < 1.0:
        raise ConfigError(f"backbone dropout must be a probability in [0, 1), got {p!r}.")
    return float(p)


def check_input(x: torch.Tensor, input_size: tuple[int, int], model: str) -> None:
    """Raise ModelError unless x is (B, 3, H, W) with (H, W) == input_size (skipped while tracing for export)."""
    if torch.jit.is_tracing():
        return
    if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != tuple(input_size):
        h, w = input_size
        raise ModelError(
            f"{model} expects input (B, 3, {h}, {w}), got {tuple(x.shape)}; align/resize faces to {h}x{w} "
            f"or build the backbone with input_size=({x.shape[-2]}, {x.shape[-1]})."
        )


from . import (  # noqa: E402,F401  (registers the families)
    attention,
    cbam,
    dlib_resnet,
    efficientnet,
    fbnet,
    ghostnet,
    hrnet,
    iresnet,
    lightcnn,
    mobilefacenet,
    repvgg,
    resnest,
    resnet,
    rexnet,
    sphere,
    swin,
    tf_nas,
    vit,
)

__all__ = ["BACKBONES", "as_hw", "check_dropout", "check_input", "check_layers", "check_multiplier", "check_positive"]
