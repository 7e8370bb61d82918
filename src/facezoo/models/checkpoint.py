"""Checkpoints: weights plus the metadata needed to use them, written atomically, loaded without pickled code.

Layout (a dict saved with torch.save, read back with weights_only=True so loading runs no code):
  format "facezoo-checkpoint", version 1, facezoo (writer's version),
  meta      ModelMeta as a dict (backbone name and kwargs, input size, channel order, mean/std, template),
  backbone  state dict,
  head      {name, kwargs, num_classes, state} or None (deployment files leave it out),
  config    the resolved training config (dict) or None,
  train     {step, epoch, optimizer, scaler, ...} or None (present in resumable checkpoints).
The head's class centres and optimiser state are stored whole (not per rank), so a run can resume elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelError
from ..io import atomic_write
from .embedder import Embedder, ModelMeta

FORMAT = "facezoo-checkpoint"
VERSION = 1


def save_checkpoint(
    path, meta: ModelMeta, backbone_state: dict, head: dict | None = None, train: dict | None = None, config=None
):
    """Write a checkpoint atomically (temp file, fsync, rename): an interrupted save never corrupts `path`."""
    from .. import __version__

    payload = {
        "format": FORMAT,
        "version": VERSION,
        "facezoo": __version__,
        "meta": meta.to_dict(),
        "backbone": backbone_state,
        "head": head,
        "config": config,
        "train": train,
    }
    with atomic_write(path) as f:
        torch.save(payload, f)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read and check a facezoo checkpoint; ModelError naming the file and the fix when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found. Pass the model.pt or checkpoint.pt a training run wrote.")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise ModelError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:200]}).") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ModelError(
            f"{path}: not a facezoo checkpoint. For a bare state dict (e.g. arcface_torch backbone.pth) use "
            "facezoo.create_backbone(name).load_state_dict(torch.load(path))."
        )
    if ckpt.get("version", 0) > VERSION:
        raise ModelError(f"{path}: written by a newer facezoo (format {ckpt['version']}); upgrade facezoo.")
    return ckpt


def load_model(path, map_location="cpu") -> Embedder:
    """A ready embedder (eval mode): uint8 (B, H, W, 3) RGB -> raw embeddings, preprocessing from metadata."""
    ckpt = load_checkpoint(path, map_location)
    meta = ModelMeta.from_dict(ckpt["meta"])
    backbone = meta.build_backbone()
    try:
        backbone.load_state_dict(ckpt["backbone"])
    except RuntimeError as e:
        raise ModelError(f"{path}: weights do not fit backbone '{meta.backbone}': {str(e)[:300]}") from None
    return Embedder(backbone, meta).eval()
