"""Checkpoints: weights plus the metadata needed to use them, written atomically, loaded without pickled code.

Layout (a dict saved with torch.save, read back with weights_only=True so loading runs no code):
  format "facezoo-checkpoint", version 1, facezoo (writer's version),
  meta      ModelMeta as a dict (backbone name and kwargs, input size, channel order, mean/std, template),
  backbone  state dict,
  head      {name, kwargs, num_classes, state} or None (deployment files leave it out),
  config    the resolved training config (dict) or None,
  train     {step, epoch, optimizer, scaler, ...} or None (present in resumable checkpoints).
The head's class centres and optimiser state are stored whole (not per rank), so a run can resume elsewhere.
Load a checkpoint for inference with facezoo.load_model (facezoo.models.loader).
"""

from __future__ import annotations

import errno
from pathlib import Path

import torch

from ..errors import DataError, FacezooError, ModelError
from ..io import atomic_write
from .embedder import EmbedderModule, ModelMeta

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
    try:
        with atomic_write(path) as f:
            torch.save(payload, f)
    except (OSError, RuntimeError) as e:
        # torch.save reports a failed write as RuntimeError("... unexpected pos ..."), the OSError as its context
        cause = e if isinstance(e, OSError) else e.__context__
        if not isinstance(cause, OSError):
            raise
        full = cause.errno in (errno.ENOSPC, errno.EDQUOT)
        advice = "free space on that disk (or write elsewhere: output=DIR)" if full else "check the folder"
        raise DataError(
            f"{path}: cannot write ({cause.strerror or cause}); {advice} and run again (training: --resume continues "
            "from the last checkpoint written). An existing file there is unchanged."
        ) from None


def _unreadable(path: Path, e: Exception) -> ModelError:
    """The error for a file torch.load refuses. torch's own message for a pickle that holds code objects advises
    weights_only=False, i.e. running that code: never pass it on."""
    text = str(e)
    if "weights_only" in text or "Weights only" in text:
        return ModelError(
            f"{path}: not a facezoo checkpoint: it holds pickled Python objects (classes or functions), which a "
            "facezoo checkpoint never does and which facezoo does not load (unpickling can run code). Pass the "
            "model.pt or checkpoint.pt a facezoo training run wrote, or a facezoo .onnx export."
        )
    first = text.strip().splitlines()[0][:200] if text.strip() else ""
    return ModelError(
        f"{path}: not a readable checkpoint, truncated or not a torch file ({type(e).__name__}: {first})."
    )


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read and check a facezoo checkpoint; ModelError naming the file and the fix when it is not one.

    The meta is validated (ModelMeta.from_dict) and the backbone state must be a dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found. Pass the model.pt or checkpoint.pt a training run wrote.")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated, foreign or hostile files
        raise _unreadable(path, e) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ModelError(
            f"{path}: not a facezoo checkpoint. For a bare state dict (e.g. arcface_torch backbone.pth) use "
            "facezoo.create_backbone(name).load_state_dict(torch.load(path))."
        )
    version = ckpt.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise ModelError(f"{path}: written by a newer facezoo (format {version!r}); upgrade facezoo.")
    if "meta" not in ckpt:
        raise ModelError(f"{path}: the checkpoint has no model metadata ('meta'); re-save it with facezoo.")
    ModelMeta.from_dict(ckpt["meta"], where=str(path))
    state = ckpt.get("backbone")
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise ModelError(f"{path}: the checkpoint's 'backbone' is not a state dict of tensors; re-save it.")
    return ckpt


def load_module(path, map_location="cpu") -> EmbedderModule:
    """The checkpoint's backbone with its weights and preprocessing, in eval mode (ModelError when they do not fit)."""
    ckpt = load_checkpoint(path, map_location)
    meta = ModelMeta.from_dict(ckpt["meta"], where=str(path))
    try:
        backbone = meta.build_backbone()
    except (FacezooError, TypeError, ValueError) as e:
        raise ModelError(f"{path}: its metadata names a backbone facezoo cannot build: {e}") from None
    try:
        backbone.load_state_dict(ckpt["backbone"])
    except RuntimeError as e:
        raise ModelError(f"{path}: weights do not fit backbone '{meta.backbone}': {str(e)[:300]}") from None
    return EmbedderModule(backbone, meta).eval()
