"""Fixtures shared by the SDK tests."""

import pytest
import torch

from facezoo.models.checkpoint import save_checkpoint
from facezoo.models.embedder import ModelMeta

META = ModelMeta(backbone="ir18", backbone_kwargs={"width": 0.25}, embedding_size=32, input_size=(64, 64))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A random tiny IR-18 checkpoint (META: 64x64 input, 32-d), seeded, so every module gets the same weights."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, META, META.build_backbone().state_dict())
    return path
