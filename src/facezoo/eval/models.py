"""The model an evaluation runs: a facezoo checkpoint (.pt) or an ONNX file (.onnx, run by onnxruntime)."""

from __future__ import annotations

from pathlib import Path

import torch


def load_embedder(path, device: torch.device):
    """uint8 (B, H, W, 3) RGB -> (B, D) embedder for `path`, preprocessing from its metadata.

    .onnx files run in onnxruntime on the matching provider (the SDK's onnx_providers: a GPU device without
    onnxruntime's CUDA provider is an error, not a silent CPU run); files without facezoo metadata are refused
    with the fix (OnnxEmbedder explains it). Anything else is loaded as a facezoo checkpoint and moved to
    `device` in eval mode.
    """
    if Path(path).suffix.lower() == ".onnx":
        from ..export.onnx import OnnxEmbedder
        from ..sdk.embed import onnx_providers

        providers, _ = onnx_providers(str(device))
        return OnnxEmbedder(path, providers=providers)
    from .. import load_model

    return load_model(path).to(device).eval()
