"""Triplet mode: batch-hard triplet loss against its formula, P x K batches, training, exact resume."""

import numpy as np
import pytest
import torch

from facezoo.errors import ConfigError
from facezoo.train.modes.triplet import batch_hard_triplet_loss

from .conftest import TinyFaces
from .tiny import losses, trainer


@pytest.mark.parametrize("squared", [True, False])
def test_batch_hard_triplet_loss_is_its_formula(squared):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 4))
    y = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3])  # identity 2 has no positive: not an anchor
    u = x / np.linalg.norm(x, axis=1, keepdims=True)

    def d(i, j):
        v = np.sum((u[i] - u[j]) ** 2)
        return v if squared else np.sqrt(v)

    terms = []
    for i in range(9):
        pos = [d(i, j) for j in range(9) if j != i and y[j] == y[i]]
        neg = [d(i, k) for k in range(9) if y[k] != y[i]]
        if pos and neg:
            terms.append(max(0.0, max(pos) - min(neg) + 0.3))
    got = batch_hard_triplet_loss(torch.from_numpy(x), torch.from_numpy(y), margin=0.3, squared=squared)
    assert float(got) == pytest.approx(np.mean(terms), rel=1e-10)
    assert float(batch_hard_triplet_loss(torch.from_numpy(x[:3]), torch.zeros(3, dtype=torch.long))) == 0.0


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
