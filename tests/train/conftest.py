import numpy as np
import pytest
import torch

from facezoo.config import load_config


class TinyFaces(torch.utils.data.Dataset):
    """`classes` identities, each a fixed random 32x32 pattern; images add per-image noise.

    Indices listed in `corrupt` return None, as a dataset with skip_corrupt=True does for a bad record.
    """

    def __init__(self, classes=6, per_class=8, size=32, corrupt=()):
        rng = np.random.default_rng(0)
        self.protos = rng.integers(0, 256, (classes, size, size, 3))
        self.noise = rng.normal(0, 25, (classes * per_class, size, size, 3))
        self.labels = np.repeat(np.arange(classes), per_class)
        self.num_classes = classes
        self.corrupt = set(corrupt)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        if i in self.corrupt:
            return None
        y = int(self.labels[i])
        return np.clip(self.protos[y] + self.noise[i], 0, 255).astype(np.uint8), y


# a quarter-width IR-18 at 32x32 with ArcFace, 3 epochs of batch 16: the training tests' run
TINY_RUN = [
    "model.backbone=ir18",
    "model.input_size=32",
    "model.embedding_size=32",
    "model.kwargs={width: 0.25}",
    "head.name=arcface",
    "head.kwargs={s: 16, m: 0.2}",
    "batch_size=16",
    "epochs=3",
    "optim.lr=0.05",
    "log_every=1",
    "data.num_workers=0",
    "tensorboard=false",
]


@pytest.fixture
def tiny_cfg(tmp_path):
    def make(*overrides):
        return load_config(
            None,
            [f"output={tmp_path}/run", *TINY_RUN, *overrides],
        )

    return make
