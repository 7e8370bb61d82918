"""The non-finite guard in every mode: a NaN loss stops training before any checkpoint holds it, or, with
skip_nonfinite, the step is skipped and counted and every trained and extra state stays finite."""

import numpy as np
import pytest
import torch

from facezoo.train.trainer import NonFiniteLoss

from .conftest import TinyFaces
from .tiny import trainer

MODES = {
    "conventional": [],
    "triplet": ["mode=triplet"],
    "semi_siamese": ["mode=semi_siamese", "semi_siamese.queue_size=64"],
    "multi_dataset": ["mode=multi_dataset", "multi_dataset.sets={a: {batch_size: 8}, b: {batch_size: 8}}"],
    "quality_regression": ["mode=quality_regression", "model.embedding_size=1"],  # + its labels (options())
}


def options(mode, tmp_path):
    """MODES[mode], with a labels.npy of one value per image for quality_regression."""
    if mode != "quality_regression":
        return MODES[mode]
    np.save(tmp_path / "labels.npy", np.random.default_rng(0).random(len(dataset(mode))))
    return [*MODES[mode], f"quality_regression.labels={tmp_path / 'labels.npy'}"]


def dataset(mode):
    if mode == "multi_dataset":
        return {"a": TinyFaces(size=16), "b": TinyFaces(classes=4, size=16)}
    return TinyFaces(classes=12, per_class=4, size=16)


def poison(monkeypatch, t, at_call: int):
    """Make the mode's loss NaN at its at_call-th micro-batch (the real loss still runs: queues, buffers)."""
    original, calls = t.mode.loss, [0]

    def loss(batch, generator):
        calls[0] += 1
        value = original(batch, generator)
        return value * float("nan") if calls[0] == at_call else value

    monkeypatch.setattr(t.mode, "loss", loss)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_stops_at_a_nan_or_skips_it(mode, tmp_path, monkeypatch):
    t = trainer(tmp_path / "stop", *options(mode, tmp_path), "log_every=3", dataset=dataset(mode))
    poison(monkeypatch, t, 2)
    with pytest.raises(NonFiniteLoss, match=f"non-finite at step 2 \\(mode {mode}"):
        t.fit()
    ckpt = tmp_path / "stop" / "checkpoint.pt"  # an epoch may end (and save) before step 2, never after it
    assert not ckpt.exists() or torch.load(ckpt, weights_only=True)["train"]["step"] < 2

    t = trainer(tmp_path / "skip", *options(mode, tmp_path), "skip_nonfinite=true", dataset=dataset(mode))
    poison(monkeypatch, t, 2)
    t.fit()
    assert t.skipped_nonfinite == 1
    tensors = [p for m in t.mode.parts().values() for p in m.state_dict().values()]
    tensors += [v for v in t.mode.state_dict().values() if torch.is_tensor(v)]
    assert all(torch.isfinite(v.float()).all() for v in tensors if v.is_floating_point())
