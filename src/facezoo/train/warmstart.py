"""Warm start and fine-tuning for every mode: weights from model.init_from, frozen parts, and a loaded teacher.

model.init_from is a facezoo model.pt / checkpoint.pt, or a plain backbone state dict (.pth, e.g. arcface_torch's
backbone.pth: facezoo's IResNet parameter names are arcface_torch's). A facezoo file carries its ModelMeta, which
wins over the recipe's model section (each change printed as a note); a value the recipe sets explicitly that
disagrees is a ConfigError. A plain state dict uses the recipe's model section and must fit it exactly.
The head starts fresh (new classes) unless model.init_head, which takes a checkpoint.pt's head over the same
classes (the mode checks: train/modes/parts.py).

model.freeze: parameter-name prefixes of the mode's named parts ("backbone.layer1", "head") stop training;
"bn" holds every BatchNorm in eval mode (running statistics, no update) with its affine frozen.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, ModelError
from ..models.checkpoint import FORMAT, load_checkpoint
from ..models.embedder import ModelMeta, channel_values

# ModelConfig field -> ModelMeta attribute, the preprocessing and architecture a source file decides
META_FIELDS = {
    "backbone": "backbone",
    "kwargs": "backbone_kwargs",
    "embedding_size": "embedding_size",
    "input_size": "input_size",
    "channel_order": "channel_order",
    "mean": "mean",
    "std": "std",
    "crop_eye": "crop_eye",  # a full-crop network cannot take the upper face, nor the reverse
}


@dataclass
class Source:
    """A weights file read once: the backbone state dict, its ModelMeta (None for a plain state dict) and, for a
    resumable checkpoint.pt, the mode that wrote it and that mode's state (heads, queues)."""

    path: Path
    backbone: dict
    meta: ModelMeta | None = None
    mode: str | None = None
    mode_state: dict | None = None


def read_source(path) -> Source:
    """The weights at `path`: a facezoo checkpoint, or a plain state dict of tensors (a "module." prefix of a
    DDP-wrapped save is removed). ModelError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model.init_from={path}: not found; give a facezoo model.pt/checkpoint.pt or a backbone .pth")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise ModelError(
            f"model.init_from={path}: not a readable torch file ({type(e).__name__}: {str(e)[:200]})"
        ) from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        ckpt = load_checkpoint(path)
        train = ckpt.get("train") or {}
        return Source(
            path, ckpt["backbone"], ModelMeta.from_dict(ckpt["meta"]), train.get("mode"), train.get("mode_state")
        )
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise ModelError(
            f"model.init_from={path}: neither a facezoo checkpoint nor a state dict of tensors (a backbone.pth as "
            "arcface_torch saves it)"
        )
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return Source(path, obj)


def _explicit(cfg, key: str) -> bool:
    """Whether model.<key> was set by the recipe or an override (load_config records the keys it saw); for a Config
    built in code, whether it differs from the default."""
    given = getattr(cfg, "given", None)
    if given is not None:
        return f"model.{key}" in given
    return getattr(cfg.model, key) != getattr(type(cfg.model)(), key)


def resolve_meta(cfg, source: Source | None) -> tuple[ModelMeta, list[str]]:
    """The run's ModelMeta and notes: the recipe's, or a facezoo source's (written back into cfg.model, so the
    saved config says what was trained). Calibrated thresholds are dropped: they belong to the source weights."""
    if source is None or source.meta is None:
        return ModelMeta.from_config(cfg.model), []
    meta = ModelMeta.from_dict({**source.meta.to_dict(), "thresholds": {}})
    notes = []
    for key, attr in META_FIELDS.items():
        theirs = getattr(meta, attr)
        if key == "input_size":
            h, w = theirs
            if h != w:
                raise ConfigError(f"model.init_from={source.path}: input {h}x{w} is not square; facezoo trains squares")
            theirs = h
        theirs = dict(theirs) if key == "kwargs" else theirs
        ours = getattr(cfg.model, key)
        if key in ("mean", "std"):  # one float or three (per channel) in the metadata, one float in a recipe
            if channel_values(ours) == channel_values(theirs):
                continue
            if len(set(channel_values(theirs))) == 1:
                theirs = channel_values(theirs)[0]
        elif ours == theirs:
            continue
        if _explicit(cfg, key):
            raise ConfigError(
                f"model.{key}={ours!r} but model.init_from={source.path} was trained with {theirs!r}; remove "
                f"model.{key} from the recipe (the source's value is used) or start from another file"
            )
        if not isinstance(theirs, tuple):  # per-channel values live in the run's metadata only
            setattr(cfg.model, key, theirs)
        notes.append(f"note: model.{key} = {theirs!r} from {source.path} (the recipe's default was {ours!r})")
    return meta, notes


def load_backbone(backbone: nn.Module, source: Source) -> None:
    """Copy the source's backbone weights into `backbone` (strict); ModelError naming the file and the fix."""
    try:
        backbone.load_state_dict(source.backbone)
    except RuntimeError as e:
        raise ModelError(
            f"model.init_from={source.path}: the weights do not fit this backbone ({str(e)[:300]}); set "
            "model.backbone, model.embedding_size and model.kwargs to the source's architecture"
        ) from None


def load_module(path, device) -> tuple[nn.Module, Source]:
    """A facezoo model file as (its backbone in eval mode with frozen parameters on `device`, the Source: metadata
    and, for a checkpoint.pt, its mode state): a teacher."""
    source = read_source(path)
    if source.meta is None:
        raise ModelError(
            f"{path}: a plain state dict has no preprocessing metadata; give a facezoo model.pt or checkpoint.pt"
        )
    module = source.meta.build_backbone()
    load_backbone(module, source)
    module.requires_grad_(False)
    return module.to(device).eval(), source


# ---- freezing ------------------------------------------------------------------------------------------------
def _stay_eval(self, mode: bool = True):
    """train() of a frozen BatchNorm: it stays in eval mode (running statistics) whatever the caller asks."""
    return nn.Module.train(self, False)


def hold_batchnorm(module: nn.Module) -> int:
    """Every BatchNorm in `module` kept in eval mode with frozen affine; returns how many."""
    count = 0
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.requires_grad_(False)
            m.train = types.MethodType(_stay_eval, m)  # survives the Trainer's and the verifier's .train()
            m.eval()
            count += 1
    return count


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def freeze(parts: dict[str, nn.Module], spec: list[str], strict: bool = True) -> None:
    """Apply model.freeze to the named parts (idempotent). strict: a prefix matching no parameter of any part is a
    ConfigError naming the parts and their top-level modules (a typo would otherwise train everything)."""
    prefixes = [s for s in spec if s != "bn"]
    matched = set()
    for part, module in parts.items():
        for name, p in module.named_parameters():
            hit = [q for q in prefixes if _matches(f"{part}.{name}", q)]
            if hit:
                p.requires_grad_(False)
                matched.update(hit)
        if "bn" in spec:
            hold_batchnorm(module)
    missing = [q for q in prefixes if q not in matched]
    if strict and missing:
        names = [f"{part}.{child}" for part, m in parts.items() for child, _ in m.named_children()] or list(parts)
        raise ConfigError(
            f"model.freeze: {missing} match no parameter; prefixes are part names and module paths, e.g. "
            f"{', '.join(list(parts) + names[:12])}, or 'bn' for every BatchNorm"
        )


def check_lr_mult(parts: dict[str, nn.Module], lr_mult: dict[str, float]) -> None:
    """optim.lr_mult keys must name some trainable parameter's prefix (ConfigError otherwise)."""
    names = [f"{part}.{n}" for part, m in parts.items() for n, _ in m.named_parameters()]
    for key in lr_mult:
        if not any(_matches(n, key) for n in names):
            raise ConfigError(
                f"optim.lr_mult.{key}: no parameter of this mode's parts ({', '.join(parts)}) is under it"
            )
