"""The one model loader: `facezoo.load_model(model, device="auto", runtime=None, ...)` -> Embedder.

`model` is any of
  a facezoo .pt (checkpoint.pt or model.pt) or a facezoo ONNX export: preprocessing from its metadata;
  a third-party ONNX file (insightface's w600k_r50.onnx): mean, std and channel_order given, nothing guessed
    (127.5, 127.5, "RGB" for w600k_r50);
  a pretrained model name (`facezoo models list`), resolved by facezoo.models.zoo.resolve;
  an Embedder (returned as it is) or an object a runtime wraps (the torch runtime: an EmbedderModule).
`runtime`: a name in facezoo.models.runtimes.RUNTIMES ("torch", "onnxruntime"); by default the one registered for
the file's suffix (.pt: torch, .onnx: onnxruntime). `device`: "auto" (CUDA when the runtime has it, else CPU),
"cpu" or "cuda[:i]"; CUDA asked for but missing is a ConfigError, never a silent CPU run.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, ModelError
from .embedder import Embedder
from .runtimes import registered, runtime_for
from .zoo import is_name, resolve


def _same_device(a: str, b: str) -> bool:
    full = lambda d: "cuda:0" if d == "cuda" else d
    return full(a) == full(b)


def load_model(
    model,
    device="auto",
    runtime: str | None = None,
    *,
    mean=None,
    std=None,
    channel_order: str | None = None,
    batch_size: int | None = None,
) -> Embedder:
    """An Embedder: `embedder(uint8 (B, H, W, 3) crops, channel_order="RGB")` -> float32 (B, D) raw embeddings.

    mean, std (a float or 3 floats, per channel in the network's order) and channel_order (the network's: "RGB"
    or "BGR"): required for ONNX files without facezoo metadata, else they may only repeat the model's metadata.
    batch_size: crops per forward pass (default 64). See the module doc for model, runtime and device.
    """
    device = str(device)  # a torch.device too
    table = registered()
    if isinstance(model, Embedder):
        if runtime is not None and runtime != model.runtime:
            raise ConfigError(f"{model.name} is a {model.runtime} embedder; runtime '{runtime}' was asked for.")
        if device != "auto" and not _same_device(device, model.device):
            raise ConfigError(
                f"{model.name} runs on {model.device} but device '{device}' was asked for; load it from its file "
                "with that device instead."
            )
        model.meta.check_given(model.name, mean, std, channel_order)
        return model
    for name in table.names():
        cls = table.get(name)
        if cls.wraps and isinstance(model, cls.wraps):
            if runtime is not None and runtime != name:
                raise ConfigError(f"a {type(model).__name__} runs on the '{name}' runtime, not '{runtime}'.")
            embedder = cls.wrap(model, device, batch_size=batch_size)
            embedder.meta.check_given(embedder.name, mean, std, channel_order)
            return embedder
    if not isinstance(model, (str, Path)):
        raise ConfigError(
            "model must be a model file, a pretrained model name (facezoo models list), an Embedder or an "
            f"EmbedderModule; got {type(model).__name__}."
        )
    path = resolve(model)
    if not path.is_file():
        raise ModelError(
            f"{path}: model file not found. Pass a facezoo model.pt / checkpoint.pt, an .onnx file, or a "
            "pretrained model name (facezoo models list)."
        )
    cls = runtime_for(path, runtime)
    name = str(model) if is_name(model) else path.name
    return cls.open(path, device, mean=mean, std=std, channel_order=channel_order, batch_size=batch_size, name=name)
