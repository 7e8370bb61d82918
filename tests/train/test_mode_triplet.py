"""Triplet mode: P x K batches, training, exact resume (the loss's formula: tests/models/test_losses.py)."""

import numpy as np
import pytest

from facezoo.errors import ConfigError

from .conftest import TinyFaces
from .tiny import losses, trainer


def test_triplet_trains_on_p_x_k_batches_and_resumes_exactly(tmp_path):
    data = TinyFaces(classes=8, per_class=6, size=16)
    opts = ["mode=triplet", "triplet.k=4", "epochs=8", "batch_size=8", "optim.lr=0.1"]
    full = trainer(tmp_path / "a", *opts, dataset=data)
    assert full.steps_per_epoch == 4  # 8 identities / 2 per batch
    batch = next(iter(full.mode.batches(0, 0)))
    assert batch["labels"].view(2, 4).unique(dim=1).shape == (2, 1)  # two identities x four images
    history = losses(full.fit())
    assert np.mean(history[-4:]) < 0.6 * np.mean(history[:4])
    part = trainer(tmp_path / "b", *opts, dataset=data)
    head = losses(part.fit(max_steps=5))
    resumed = trainer(tmp_path / "b", *opts, dataset=data)
    resumed.resume(tmp_path / "b" / "checkpoint.pt")
    assert head + losses(resumed.fit()) == history


def test_triplet_batch_must_hold_whole_identities(tmp_path):
    with pytest.raises(ConfigError, match="multiple of the 4 images per identity"):
        trainer(tmp_path, "mode=triplet", "batch_size=10", dataset=TinyFaces(size=16))
    with pytest.raises(ConfigError, match="data.sampler=class_balanced does not apply"):
        trainer(tmp_path, "mode=triplet", "data.sampler=class_balanced", dataset=TinyFaces(size=16))
