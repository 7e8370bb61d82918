"""The torch runtime ("torch"): a facezoo .pt (checkpoint.pt or model.pt) or an EmbedderModule, run eagerly.

Crops travel to the device as uint8 (4x less traffic than float32); the module runs in eval mode under
inference_mode. `module` is the EmbedderModule (backbone + preprocessing) for code that needs the nn.Module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...device import resolve_device
from ...errors import ConfigError
from ..checkpoint import load_module
from ..embedder import Embedder, EmbedderModule, state_digest
from . import RUNTIMES


@RUNTIMES.register("torch")
class TorchEmbedder(Embedder):
    """An EmbedderModule on a torch device behind the Embedder interface."""

    runtime = "torch"
    suffixes = (".pt", ".pth")
    default_for = (".pt", ".pth")
    wraps = (nn.Module,)

    def __init__(self, module: EmbedderModule, device: torch.device, *, name: str = "model", batch_size=None):
        super().__init__(module.meta, str(device), name=name, batch_size=batch_size)
        self.module = module.to(device).eval()
        self._torch_device = device

    @classmethod
    def open(cls, path, device="auto", *, mean=None, std=None, channel_order=None, batch_size=None, name=None):
        """A facezoo checkpoint; explicit preprocessing may only repeat its metadata. device: auto | cpu | cuda[:i]."""
        dev = resolve_device(device)  # before loading: cuda without CUDA fails fast
        module = load_module(path)
        module.meta.check_given(path, mean, std, channel_order)
        return cls(module, dev, name=name or Path(path).name, batch_size=batch_size)

    @classmethod
    def wrap(cls, obj, device="auto", *, batch_size=None) -> TorchEmbedder:
        """An EmbedderModule (switched to eval mode); device "auto" keeps it where its parameters are."""
        if not isinstance(obj, EmbedderModule):
            raise ConfigError(
                f"a torch module to embed with must be an EmbedderModule(backbone, meta) (preprocessing included), "
                f"got {type(obj).__name__}; wrap a bare backbone as facezoo.models.embedder.EmbedderModule(net, meta)."
            )
        if device == "auto":
            dev = next((p.device for p in obj.parameters()), torch.device("cpu"))
        else:
            dev = resolve_device(device)
        return cls(obj, dev, name=obj.meta.backbone, batch_size=batch_size)

    def _forward(self, batch) -> np.ndarray:
        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(batch if batch.flags.writeable else batch.copy())
        with torch.inference_mode():
            return self.module(batch.to(self._torch_device, non_blocking=True)).float().cpu().numpy()

    def _hash_weights(self) -> str:
        return state_digest(self.module.backbone.state_dict())

    def _version(self):
        return tuple((t.data_ptr(), t._version) for t in self.module.backbone.state_dict(keep_vars=True).values())
