"""facezoo: a PyTorch toolbox for face recognition (train, evaluate, convert data).

Public API: create_backbone, list_backbones, create_head, list_heads, load_model.
"""

__version__ = "0.1.0"


def create_backbone(name: str, **kwargs):
    """Build a registered backbone by name, e.g. create_backbone("ir50", embedding_size=512)."""
    from .models.backbones import BACKBONES

    return BACKBONES.create(name, **kwargs)


def list_backbones() -> list[str]:
    from .models.backbones import BACKBONES

    return BACKBONES.names()


def create_head(name: str, embedding_size: int, num_classes: int, **hparams):
    """Build a registered margin head by name, e.g. create_head("arcface", 512, 93431, s=64, m=0.5)."""
    from .models.heads import HEADS

    return HEADS.create(name, embedding_size=embedding_size, num_classes=num_classes, **hparams)


def list_heads() -> list[str]:
    from .models.heads import HEADS

    return HEADS.names()


def load_model(model, device="auto", runtime=None, *, mean=None, std=None, channel_order=None, batch_size=None):
    """A ready Embedder from a facezoo .pt, a facezoo or third-party .onnx, a pretrained model name or an object.

    embedder(uint8 (B, H, W, 3) crops, channel_order="RGB") -> float32 (B, D) raw embeddings; runtime "torch" |
    "onnxruntime" | ... (default by file type); device "auto" | "cpu" | "cuda[:i]". See facezoo.models.loader.
    """
    from .models.loader import load_model as _load

    return _load(model, device, runtime, mean=mean, std=std, channel_order=channel_order, batch_size=batch_size)


__all__ = ["__version__", "create_backbone", "create_head", "list_backbones", "list_heads", "load_model"]
