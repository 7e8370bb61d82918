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


def load_model(path, map_location="cpu"):
    """Load a facezoo checkpoint, or a named pretrained model (e.g. "dlib_resnet", see `facezoo models list`), as a
    ready embedder (preprocessing from its metadata)."""
    from .models.checkpoint import load_model as _load
    from .models.zoo import resolve

    return _load(resolve(path), map_location=map_location)


__all__ = ["__version__", "create_backbone", "create_head", "list_backbones", "list_heads", "load_model"]
