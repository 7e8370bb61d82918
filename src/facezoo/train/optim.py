"""Optimisers: construction with optional weight-decay exclusion of BN/PReLU/bias parameters (ndim <= 1);
RowOptimizer, the Partial FC update of sampled class rows only; JointStep, several optimisers as one step.

An optimiser is registered by name, `@OPTIMIZERS.register("name") def f(groups, cfg)`, returning a torch optimizer
over the parameter groups with hyper-parameters from OptimConfig `cfg`; optim.name is checked against OPTIMIZERS.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")


@OPTIMIZERS.register("sgd")
def _sgd(groups, cfg):
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


@OPTIMIZERS.register("adamw")
def _adamw(groups, cfg):
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def _named(modules) -> dict[str, nn.Module]:
    """{part name: module}; a list is named part0, part1, ... (the Trainer passes the mode's named parts)."""
    return dict(modules) if isinstance(modules, dict) else {f"part{i}": m for i, m in enumerate(modules)}


def lr_multiplier(name: str, lr_mult: dict[str, float]) -> float:
    """The multiplier of parameter `name` (part.module.param): the longest matching prefix of lr_mult, else 1."""
    best = max((k for k in lr_mult if name == k or name.startswith(k + ".")), key=len, default=None)
    return 1.0 if best is None else float(lr_mult[best])


def param_groups(modules, weight_decay: float, no_decay_bn_bias: bool, lr_mult: dict | None = None) -> list[dict]:
    """Groups of the trainable parameters of `modules` ({name: module} or a list): weight decay (none for
    BN/PReLU/bias when no_decay_bn_bias) and, with lr_mult, the multiplier the Trainer applies to the lr
    (group["lr_mult"]). Without lr_mult: [decay, no_decay], the layout older checkpoints hold."""
    groups: dict[tuple[bool, float], list] = {}
    for part, module in _named(modules).items():
        for name, p in module.named_parameters():
            if p.requires_grad:
                no_decay = no_decay_bn_bias and p.ndim <= 1
                mult = lr_multiplier(f"{part}.{name}", lr_mult) if lr_mult else 1.0
                groups.setdefault((no_decay, mult), []).append(p)
    groups.setdefault((False, 1.0), [])  # the decay group always comes first (may be empty)
    out = []
    for (no_decay, mult), params in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != 1.0)):
        group = {"params": params, "weight_decay": 0.0 if no_decay else weight_decay}
        if lr_mult:
            group["lr_mult"] = mult
        if params or (not no_decay and mult == 1.0):
            out.append(group)
    return out


def build_optimizer(cfg, modules) -> torch.optim.Optimizer:
    """OptimConfig -> optimiser over the trainable parameters of `modules` ({part name: module} or a list)."""
    groups = param_groups(modules, cfg.weight_decay, cfg.no_decay_bn_bias, getattr(cfg, "lr_mult", None))
    return OPTIMIZERS.create(cfg.name, groups=groups, cfg=cfg)


class RowOptimizer:
    """Partial FC update: main's own rule applied to rows `rows` of `param` only, via a (k, D) leaf `sub`.

    `sub` holds param[rows] and carries the gradient. Each step: load(sub, rows) copies those rows of param's
    optimiser state (SGD momentum_buffer; AdamW exp_avg / exp_avg_sq, plus the shared scalar step) into a
    one-parameter optimiser of main's class and param group (so lr, momentum, nesterov, weight decay are
    main's); after `.optimizer.step()`, store(sub, rows) writes sub and its new state back into those rows.
    Unsampled rows of the weight and of its state are not touched (SGD: no decay, no momentum drift).
    The full (C', D) state stays in main.state[param], so checkpoints and re-sharding see it as usual.
    Rows never sampled have zero state: for SGD without dampening (the only SGD built here) a zero buffer gives
    the same first update as torch's buf = grad. AdamW keeps one step count for the matrix (as SparseAdam does),
    so a row's bias correction uses the matrix's step, not the row's own.
    """

    def __init__(self, main: torch.optim.Optimizer, param: torch.Tensor):
        self.main, self.param = main, param
        self.group()  # fails early if param is not in main
        self.optimizer: torch.optim.Optimizer | None = None

    def group(self) -> dict:
        """param's group in main, looked up each time (load_state_dict replaces the group dicts)."""
        return next(g for g in self.main.param_groups if any(p is self.param for p in g["params"]))

    def _is_rows(self, value, sub: torch.Tensor) -> bool:
        return torch.is_tensor(value) and value.dim() >= 1 and value.shape == sub.shape

    def load(self, sub: torch.Tensor, rows: torch.Tensor) -> torch.optim.Optimizer:
        """Prepare and return the optimiser over [sub] with param's hyper-parameters and state rows."""
        hyper = {k: v for k, v in self.group().items() if k != "params"}
        if self.optimizer is None or self.optimizer.param_groups[0]["params"][0] is not sub:
            self.optimizer = type(self.main)([{"params": [sub], **hyper}])
        else:
            self.optimizer.param_groups[0].update(hyper)  # lr follows the schedule
        full = self.main.state.get(self.param, {})
        self.optimizer.state[sub] = {
            k: v.index_select(0, rows)
            if torch.is_tensor(v) and v.shape == self.param.shape
            else (v.clone() if torch.is_tensor(v) else v)
            for k, v in full.items()
        }
        return self.optimizer

    @torch.no_grad()
    def store(self, sub: torch.Tensor, rows: torch.Tensor) -> None:
        """Write sub and its updated state back into rows of param and main.state[param]; forget them here."""
        new = self.optimizer.state.pop(sub, {})
        full = self.main.state[self.param]
        for key, value in new.items():
            if self._is_rows(value, sub):
                if key not in full:
                    full[key] = torch.zeros_like(self.param, memory_format=torch.contiguous_format)
                full[key].index_copy_(0, rows, value)
            else:
                full[key] = value
        self.param.index_copy_(0, rows, sub)


class JointStep:
    """Optimisers stepped as one: GradScaler unscales and inf-checks all their gradients together, so an overflow
    anywhere skips every update (as with one optimiser), and clipping sees one parameter list.

    Duck-typed to what torch.amp.GradScaler uses: `param_groups`, `step()`; plus `zero_grad()`.
    """

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)
