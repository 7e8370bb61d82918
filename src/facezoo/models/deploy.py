"""Deployment re-parameterisation: fuse a backbone's train-time branches and record it in the model metadata.

A backbone opts in by defining `reparameterize() -> dict`: it fuses itself in place (the same function in eval
mode, e.g. RepVGG's three branches -> one 3x3 conv) and returns the constructor keywords that build the fused
layout (RepVGG: {"deploy": True}). Recording them in meta.backbone_kwargs makes a checkpoint saved from the fused
model rebuild the fused layout on load (load_model -> meta.build_backbone).
"""

from __future__ import annotations

from .embedder import EmbedderModule


def reparameterize(embedder: EmbedderModule) -> bool:
    """Fuse `embedder`'s backbone in place if it can be; True when it was fused (or already was)."""
    fuse = getattr(embedder.backbone, "reparameterize", None)
    if not callable(fuse):
        return False
    embedder.eval()  # fusion folds the BN running statistics: the result equals the eval-mode model
    embedder.meta.backbone_kwargs = {**embedder.meta.backbone_kwargs, **(fuse() or {})}
    return True
