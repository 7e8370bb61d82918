"""Device choice shared by training, evaluation and export."""

from __future__ import annotations

import torch

from .errors import ConfigError


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """auto -> cuda if present, else cpu; 'cuda' under torchrun takes GPU `local_rank`; no silent CPU fallback."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but no CUDA device is available here; use cpu or auto")
    if name == "cuda" and local_rank is not None:
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device '{name}' is not one of auto, cpu, cuda, cuda:N (e.g. --device cpu)") from None
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device
