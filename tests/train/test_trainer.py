import numpy as np
import pytest
import torch

import facezoo
from facezoo.errors import ConfigError, ModelError
from facezoo.train.trainer import Trainer

from .conftest import TinyFaces


def losses(history):
    return [row["train/loss"] for row in history if "train/loss" in row]


def test_training_lowers_the_loss(tiny_cfg):
    t = Trainer(tiny_cfg("epochs=6", "schedule.warmup_epochs=1"), dataset=TinyFaces())
    ls = losses(t.fit())
    assert len(ls) == t.total_steps == 18
    assert np.mean(ls[-3:]) < 0.6 * np.mean(ls[:3])


def test_resume_gives_the_same_losses(tiny_cfg, tmp_path):
    full = losses(Trainer(tiny_cfg(f"output={tmp_path}/a"), dataset=TinyFaces()).fit())
    first = Trainer(tiny_cfg(f"output={tmp_path}/b"), dataset=TinyFaces())
    head_part = losses(first.fit(max_steps=4))  # interrupted mid-epoch (3 steps per epoch)
    second = Trainer(tiny_cfg(f"output={tmp_path}/b"), dataset=TinyFaces())
    second.resume(tmp_path / "b" / "checkpoint.pt")
    assert second.step == 4
    rest = losses(second.fit())
    assert head_part + rest == full  # exact equality on CPU


def test_precisions_and_accumulation_run(tiny_cfg):
    for overrides in (["precision=bf16"], ["precision=fp16"], ["grad_accum=2", "optim.name=adamw", "optim.lr=0.001"]):
        ls = losses(Trainer(tiny_cfg("epochs=1", "optim.grad_clip=1.0", *overrides), dataset=TinyFaces()).fit())
        assert len(ls) == 3 and all(np.isfinite(ls)), overrides


def test_checkpoint_loads_as_a_ready_embedder(tiny_cfg, tmp_path):
    t = Trainer(tiny_cfg("epochs=1"), dataset=TinyFaces(), verbose=False)
    t.fit()
    model = facezoo.load_model(tmp_path / "run" / "model.pt")
    images = torch.from_numpy(np.stack([TinyFaces()[i][0] for i in range(4)]))
    t.backbone.eval()
    with torch.no_grad():
        np.testing.assert_allclose(model(images), t.embedder()(images).numpy(), rtol=0, atol=1e-5)
    assert model.input_size == (32, 32) and not model.module.training
    with pytest.raises(ModelError, match="cannot resume"):
        Trainer(tiny_cfg("epochs=1"), dataset=TinyFaces(), verbose=False).resume(tmp_path / "run" / "model.pt")


def test_corrupt_samples_are_skipped_and_counted(tiny_cfg, capsys):
    Trainer(tiny_cfg("epochs=1"), dataset=TinyFaces(corrupt=range(48))).fit(max_steps=1)
    Trainer(tiny_cfg("epochs=1"), dataset=TinyFaces(corrupt={0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10})).fit()
    out = capsys.readouterr().out
    assert "skipped" in out


def test_batch_larger_than_data_is_a_config_error(tiny_cfg):
    with pytest.raises(ConfigError, match="exceeds"):
        Trainer(tiny_cfg("batch_size=64"), dataset=TinyFaces(), verbose=False)
