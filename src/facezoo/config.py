"""Typed training configs: dataclasses loaded from YAML recipes plus dotted `key=value` overrides.

Every key is checked at load: an unknown key names the nearest valid one, a wrong type or an out-of-range value
names the key and what it accepts. The resolved config is saved beside every run (config.yaml).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError
from .registry import did_you_mean


@dataclass
class DataConfig:
    train: str = ""  # RecordIO folder or .rec, image folder (one sub-folder per identity), or list file
    val: list[str] = field(default_factory=list)  # verification .bin files checked during and after training
    num_workers: int = -1  # DataLoader workers; -1 = min(16, CPU cores per local rank - 1)
    skip_corrupt: bool = False  # skip and count corrupt samples instead of stopping
    flip: bool = True  # random horizontal flip (p = 0.5), applied on the device
    # where JPEGs are decoded: "cpu" (DataLoader workers) or "gpu" (nvJPEG via torchvision; CUDA devices only:
    # workers then return the encoded bytes and whole batches are decoded on the device)
    decode: Literal["cpu", "gpu"] = "cpu"
    prefetch: bool = (
        True  # CUDA: copy the next batch to the device on a side stream while this one trains; CPU: no effect
    )
    # batch sampler (facezoo list samplers): random (a permutation per epoch) or class_balanced (each class equally
    # likely); modes that sample identities (semi_siamese, triplet) draw P identities x K images instead
    sampler: str = "random"
    # augmentation on the device (facezoo.augment): a preset name (arcface_torch, facex_zoo, randaugment, masked,
    # erasing) or a list of ops and presets, e.g. [arcface_torch, {name: mask, p: 0.3, method: 3d}]; each op's keys
    # are its Options (facezoo list augmentations); validated into typed options at load
    augment: list[Any] | str = field(default_factory=list)


@dataclass
class ModelConfig:
    backbone: str = "ir50"
    embedding_size: int = 512
    input_size: int = 112  # square input; images of another size are resized when loaded for evaluation
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra backbone arguments, e.g. {width: 0.5}
    channel_order: Literal["RGB", "BGR"] = "RGB"
    mean: float = 127.5  # input = (pixel - mean) / std
    std: float = 127.5
    # warm start / fine-tuning (train/warmstart.py): a facezoo model.pt / checkpoint.pt (its preprocessing wins over
    # this section) or a plain backbone state dict .pth (arcface_torch's IResNet names); the backbone is loaded and
    # the head starts fresh for the new classes, unless init_head (a checkpoint.pt over the same classes)
    init_from: str = ""
    init_head: bool = False
    # frozen parameters: name prefixes of the trained parts (backbone.layer1, head, ...) or "bn" (every BatchNorm
    # kept in eval mode with frozen affine)
    freeze: list[str] = field(default_factory=list)
    # FaceX-Zoo's upper-face mode: the network sees the rows of the aligned crop above the nose (kept in model.pt)
    crop_eye: bool = False


@dataclass
class AuxLossConfig:
    """One auxiliary loss beside the head (models/losses): loss += weight * LOSSES[name](**kwargs)(batch)."""

    name: str = ""  # center | focal | triplet
    weight: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {alpha: 0.5} (center), {gamma: 2} (focal)


@dataclass
class HeadConfig:
    name: str = "arcface"
    kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {s: 64, m: 0.5}
    sample_rate: float = 1.0  # Partial FC: fraction of each rank's classes in the softmax (all positives kept)
    # Margin cross-entropy over column chunks of the class centres (online softmax; backward recomputes each
    # chunk), so no (batch x classes) logits are kept: "auto" chunks once batch x classes-per-rank exceeds
    # 2^26 logits (chunks of 2^26 / batch columns; a 93k-class full FC at batch 512 stays one piece, Partial FC
    # over 10M classes is chunked); N > 0: N columns per chunk; 0: never chunk. Same loss and gradients;
    # chunking costs one extra logit matmul in backward.
    chunk_size: int | Literal["auto"] = "auto"
    # auxiliary losses added with their weights, e.g. [{name: center, weight: 0.01, kwargs: {alpha: 0.5}}]
    aux: list[AuxLossConfig] = field(default_factory=list)


@dataclass
class OptimConfig:
    name: str = "sgd"  # a registered optimizer (facezoo list optimizers)
    lr: float = 0.1  # for the reference batch size; not rescaled automatically
    momentum: float = 0.9
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 5e-4
    no_decay_bn_bias: bool = False  # exclude BatchNorm/PReLU parameters and biases (ndim <= 1) from weight decay
    grad_clip: float = 0.0  # max global gradient norm; 0 = off
    # learning-rate multipliers by parameter-name prefix of the trained parts, longest prefix wins, e.g.
    # {backbone: 0.1} to fine-tune the backbone slower than a fresh head
    lr_mult: dict[str, float] = field(default_factory=dict)


@dataclass
class ScheduleConfig:
    name: str = "poly"  # a registered schedule (facezoo list schedules)
    warmup_epochs: float = 0.0  # linear warm-up from 0, stepped per iteration
    power: float = 2.0  # poly: min_lr + (lr - min_lr) * (1 - t)^power after warm-up
    milestones: list[float] = field(default_factory=list)  # step: epochs where lr *= gamma
    gamma: float = 0.1
    min_lr: float = 0.0  # floor: poly and cosine end there, step never goes below it


@dataclass
class Config:
    # training mode (facezoo list modes); its options, if it has any, go in a top-level section named after it,
    # e.g. `mode: semi_siamese` with `semi_siamese: {queue_size: 16384}`
    mode: str = "conventional"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    output: str = "runs/default"
    epochs: int = 20
    batch_size: int = 128  # per process (GPU) per optimiser step, split into grad_accum micro-batches
    grad_accum: int = 1
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = True
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every: int = 50  # optimiser steps between progress lines / TensorBoard points
    val_every: int = 0  # steps between verification runs on data.val; 0 = at the end of each epoch
    save_every: int = 0  # steps between checkpoints; 0 = at the end of each epoch
    tensorboard: bool = True
    # torch.compile the backbone (before DDP wrapping; the classifier stays eager): false, true (mode "default"),
    # or a mode name; compile_backend: "inductor" (GPU speed), "aot_eager" (fast to compile, for checks)
    compile: bool | Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = False
    compile_backend: str = "inductor"
    skip_nonfinite: bool = False  # skip (and count) steps whose loss is NaN/inf instead of stopping; 1 sync per step
    callbacks: list[str] = field(default_factory=list)  # optional trackers: wandb, mlflow (facezoo list callbacks)
    # the selected mode's typed options (its recipe section), filled by load_config; not a YAML key itself
    mode_options: Any = field(default=None, repr=False)

    def validate(self) -> Config:
        """Checks that need more than types: positive sizes, known backbone/head names, divisibility."""
        from .models.backbones import BACKBONES
        from .models.heads import HEADS
        from .models.losses import LOSSES
        from .train.callbacks import CALLBACKS
        from .train.modes import MODES
        from .train.optim import OPTIMIZERS
        from .train.schedules import SCHEDULES

        for key in ("epochs", "batch_size", "grad_accum", "log_every", "model.embedding_size", "model.input_size"):
            if _get(self, key) <= 0:
                raise ConfigError(f"{key} must be positive, got {_get(self, key)}")
        for key, (lo, hi, why) in BOUNDS.items():
            if not lo <= _get(self, key) <= hi:
                raise ConfigError(f"{key} must be in {lo}..{hi} ({why}), got {_get(self, key)}")
        if not DEVICE.fullmatch(self.device):
            raise ConfigError(f"device '{self.device}' is not one of auto, cpu, cuda, cuda:N (e.g. device=cuda:0)")
        for key in ("val_every", "save_every", "optim.weight_decay", "optim.grad_clip", "schedule.warmup_epochs"):
            if _get(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {_get(self, key)}")
        if self.head.chunk_size != "auto" and self.head.chunk_size < 0:
            raise ConfigError(
                f"head.chunk_size must be 'auto', 0 (no chunking) or a positive column count, got "
                f"{self.head.chunk_size}"
            )
        if not self.compile_backend:
            raise ConfigError("compile_backend must name a torch.compile backend, e.g. inductor or aot_eager")
        if self.compile is not False:
            import torch._dynamo

            if self.compile_backend not in torch._dynamo.list_backends(exclude_tags=()):  # debug ones too
                backends = torch._dynamo.list_backends()
                raise ConfigError(
                    f"compile_backend '{self.compile_backend}' is not a torch.compile backend."
                    f"{did_you_mean(self.compile_backend, backends)} Available: {', '.join(backends)}, aot_eager"
                )
        if not 0.0 < self.head.sample_rate <= 1.0:
            raise ConfigError(f"head.sample_rate must be in (0, 1], got {self.head.sample_rate}")
        if self.optim.lr <= 0 or self.model.std <= 0:
            raise ConfigError("optim.lr and model.std must be positive")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"batch_size {self.batch_size} must be divisible by grad_accum {self.grad_accum}")
        if self.model.backbone not in BACKBONES:
            BACKBONES.get(self.model.backbone)  # raises with did-you-mean
        if self.head.name not in HEADS:
            HEADS.get(self.head.name)
        BACKBONES.check_kwargs(self.model.backbone, self.model.kwargs, "model.kwargs")  # names and types
        HEADS.check_kwargs(self.head.name, self.head.kwargs, "head.kwargs")
        for registry, name in ((OPTIMIZERS, self.optim.name), (SCHEDULES, self.schedule.name)):
            registry.get(name)  # an unknown name raises ConfigError with did-you-mean
        if not 0.0 <= self.schedule.min_lr <= self.optim.lr:
            raise ConfigError(f"schedule.min_lr must be in [0, optim.lr = {self.optim.lr}], got {self.schedule.min_lr}")
        floor = MODES.get(self.mode).min_embedding_size
        if self.model.embedding_size < floor:
            raise ConfigError(
                f"model.embedding_size must be >= {floor} for mode {self.mode} (a cosine needs at least 2 dimensions; "
                f"only a scalar-output mode such as quality_regression takes 1), got {self.model.embedding_size}"
            )
        from .data.samplers import SAMPLERS

        SAMPLERS.get(self.data.sampler)
        for key, mult in self.optim.lr_mult.items():
            if not mult >= 0:
                raise ConfigError(f"optim.lr_mult.{key} must be >= 0 (e.g. 0.1), got {mult}")
        if self.model.init_head and not self.model.init_from:
            raise ConfigError("model.init_head=true needs model.init_from (the checkpoint.pt whose head to start from)")
        for name in self.callbacks:
            CALLBACKS.get(name)
        for i, aux in enumerate(self.head.aux):
            if aux.name not in LOSSES:
                try:
                    LOSSES.get(aux.name)
                except ConfigError as e:
                    raise ConfigError(f"head.aux[{i}].name: {e}") from None
            if not aux.weight >= 0:
                raise ConfigError(f"head.aux[{i}].weight must be >= 0 (e.g. 0.01), got {aux.weight}")
            LOSSES.check_kwargs(aux.name, aux.kwargs, f"head.aux[{i}].kwargs")
        self.data.augment = resolve_augment(self.data.augment)
        return self

    def to_dict(self) -> dict:
        """The YAML form: every field, with the mode's options as the section named after the mode."""
        d = dataclasses.asdict(self)
        options = d.pop("mode_options")
        if options is not None:
            d[self.mode] = options
        return d


# Ranges that catch a typo before it allocates or overflows: input_size is the square side of the face crops
# (below 16 pixels a backbone's downsampling leaves nothing, above 1024 one image costs gigabytes of activations);
# embedding_size is the feature width (65536 keeps the head's class matrix sane; each mode sets its floor, 2 for a
# cosine, 1 for a scalar output);
# the trainer derives per-step seeds as (seed * 1_000_003 + step) * 1024 + rank, which must fit torch's unsigned
# 64-bit seed: seeds up to 2^32 - 1 do for any realistic step count.
BOUNDS = {
    "model.input_size": (16, 1024, "pixels per side of the face crop; below 16 the backbone has nothing left"),
    "model.embedding_size": (1, 65536, "the feature width"),
    "seed": (0, 2**32 - 1, "per-step seeds seed x 1,000,003 x 1,024 must fit torch's 64-bit seed"),
}
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _get(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _check_type(value, tp, key: str):
    """Return `value` converted to type `tp` (int -> float allowed), or raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):  # a list of sections, e.g. head.aux
        return from_dict(tp, value, prefix=f"{key}.")
    if origin is Literal:
        if value not in typing.get_args(tp):
            choices = typing.get_args(tp)
            raise ConfigError(f"{key}: '{value}' is not one of {list(choices)}.{did_you_mean(value, choices)}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _check_type(value, arg, key)
            except ConfigError:
                pass
        accepted = [
            repr(c)
            for a in typing.get_args(tp)
            for c in (typing.get_args(a) if typing.get_origin(a) is Literal else [])
        ]
        accepted += [a.__name__ for a in typing.get_args(tp) if isinstance(a, type) and a is not type(None)]
        accepted += ["null"] if type(None) in typing.get_args(tp) else []
        raise ConfigError(f"{key}: {value!r} is not accepted; use one of: {', '.join(accepted)}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            value = [value] if isinstance(value, (str, int, float)) else value
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (arg,) = typing.get_args(tp) or (Any,)
        return [_check_type(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, arg = typing.get_args(tp) or (Any, Any)
        return {k: _check_type(v, arg, f"{key}.{k}") for k, v in value.items()}
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{key}: expected null")
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return float(value)
    wrong_bool = (tp is bool) != isinstance(value, bool)
    if wrong_bool or not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass `cls` from a (nested) dict, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "mode_options"]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in hints or key == "mode_options":
            valid = [f"{prefix}{n}" for n in names]
            raise ConfigError(f"unknown config key '{full}'.{did_you_mean(full, valid)} Valid keys: {', '.join(valid)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(tp, value or {}, prefix=f"{full}.")
        else:
            kwargs[key] = _check_type(value, tp, full)
    return cls(**kwargs)


def resolve_augment(spec, where: str = "data.augment") -> list:
    """data.augment as typed options: presets expanded, each op's keys checked against its Options dataclass
    (unknown keys and names name the nearest), values range-checked by the op. Idempotent."""
    from .augment.pipeline import AUGMENTS, PRESETS, expand_presets

    out = []
    for i, item in enumerate(expand_presets(spec)):
        key = f"{where}[{i}]"
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            out.append(item)
            continue
        item = {"name": item} if isinstance(item, str) else item
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ConfigError(f"{key}: expected a preset name or a mapping like {{name: blur, p: 0.2}}, got {item!r}")
        name = item["name"]
        if name not in AUGMENTS:
            raise ConfigError(
                f"{key}: unknown augmentation '{name}'.{did_you_mean(name, [*AUGMENTS.names(), *PRESETS])} "
                f"Ops: {', '.join(AUGMENTS.names())}; presets: {', '.join(PRESETS)}."
            )
        op = AUGMENTS.get(name)
        options = from_dict(op.Options, item, prefix=f"{key}.")
        if not 0.0 <= options.p <= 1.0:
            raise ConfigError(f"{key}.p: a probability in [0, 1], got {options.p}")
        op.check(options, key)
        out.append(options)
    return out


def apply_override(data: dict, item: str) -> None:
    """Apply one `a.b.c=value` override (value parsed as YAML) to a nested dict in place."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key=value, e.g. optim.lr=0.05")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{item}': '{part}' is not a section")
    # kwargs sections take any keys: `head.kwargs.m=0.4`
    node[parts[-1]] = value


def load_config(path=None, overrides: list[str] = ()) -> Config:
    """Load a YAML recipe (or defaults when path is None), apply overrides, validate."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(
                f"{path}: recipe not found. Recipes ship in configs/ (e.g. configs/synthetic_demo.yaml)."
            ) from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
    for item in overrides:
        apply_override(data, item)
    try:
        cfg = _with_mode_options(data).validate()
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None
    cfg.given = frozenset(_dotted_keys(data))  # what the recipe set explicitly (not a field: not saved)
    return cfg


def _dotted_keys(data: dict, prefix: str = ""):
    for key, value in data.items() if isinstance(data, dict) else ():
        yield f"{prefix}{key}"
        yield from _dotted_keys(value, f"{prefix}{key}.")


def _with_mode_options(data: dict) -> Config:
    """Config from `data`, the section named after the selected mode parsed into that mode's Config dataclass.

    A section for another registered mode is an error (it would be ignored); so is a section for a mode that takes
    no options.
    """
    from .train.modes import MODES

    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping, got {data!r}")
    data = dict(data)
    sections = {name: data.pop(name) for name in list(data) if name in MODES}
    cfg = from_dict(Config, data)
    mode = MODES.get(cfg.mode)
    for name in sections:
        if name != cfg.mode:
            raise ConfigError(
                f"section '{name}' holds options of mode {name}, but mode is {cfg.mode}; set mode={name} or remove "
                f"the section"
            )
    options_cls = getattr(mode, "Config", None)
    if options_cls is None:
        if sections.get(cfg.mode):
            raise ConfigError(f"mode {cfg.mode} takes no options; remove the '{cfg.mode}' section")
        return cfg
    cfg.mode_options = from_dict(options_cls, sections.get(cfg.mode) or {}, prefix=f"{cfg.mode}.")
    return cfg


def save_config(cfg: Config, path) -> None:
    from .io import atomic_write

    with atomic_write(path, "w") as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
