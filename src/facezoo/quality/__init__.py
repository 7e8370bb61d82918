"""Face image quality: how useful a face crop is for recognition, as one number per crop (higher = better).

    q = facezoo.quality.create_quality("sdd_fiqa", model="runs/q/model.pt")   # or "baseline", "magface_norm"
    q.score(crops)                      # uint8 (N, H, W, 3) RGB aligned crops -> (N,) float64

Methods (facezoo.quality.methods, one file each): baseline (image statistics, no model), magface_norm (the
embedding norm of a MagFace model; of any model, weaker), sdd_fiqa (a regressor trained on SDD-FIQA pseudo-labels:
facezoo.quality.labels, the quality_regression training mode). Evaluation: facezoo.quality.erc (error-versus-reject
curves) and facezoo.quality.evaluate (`facezoo eval-quality`). A spec "NAME" or "NAME:MODEL" names a method on
the command line (parse_quality).
"""

from __future__ import annotations


def list_quality() -> list[str]:
    """The registered quality method names."""
    from .methods import registered

    return registered().names()


def create_quality(name: str, **kwargs):
    """Build a registered quality method, e.g. create_quality("magface_norm", model="magface.pt", device="cpu")."""
    from .methods import registered

    return registered().create(name, **kwargs)


def parse_quality(spec, model=None, **kwargs):
    """A quality method from a spec: "NAME" or "NAME:MODEL" (e.g. "sdd_fiqa:runs/q/model.pt"), or a QualityMethod
    (returned as it is). `model` is used by methods that need one when the spec names none (eval-quality and the
    SDK pass their recognition model, so "magface_norm" alone means its norm); kwargs (device, batch_size) go to
    methods that need a model."""
    from ..errors import ConfigError
    from .base import QualityMethod
    from .methods import registered

    if isinstance(spec, QualityMethod):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"quality must be a method name or 'NAME:MODEL' (e.g. sdd_fiqa:q.pt), got {spec!r}.")
    name, _, path = spec.strip().partition(":")
    table = registered()
    if not table.info(name).get("needs_model"):
        if path:
            raise ConfigError(f"quality method '{name}' takes no model; use '{name}' alone.")
        return table.create(name)
    chosen = path or model
    if chosen is None:
        raise ConfigError(f"quality method '{name}' needs a model: '{name}:MODEL' (a .pt or .onnx file).")
    return table.create(name, model=chosen, **kwargs)


__all__ = ["create_quality", "list_quality", "parse_quality"]
