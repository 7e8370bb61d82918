"""The new CNN families train through the unchanged Trainer (margin head, Partial FC) and deploy from model.pt."""

from __future__ import annotations

import pytest
import torch

from facezoo.config import load_config
from facezoo.models.backbones import BACKBONES
from facezoo.models.checkpoint import load_model
from facezoo.train.trainer import Trainer

from ..train.conftest import TinyFaces


@pytest.mark.parametrize("name, head", [("ghostnet", "arcface"), ("resnest50", "curricularface")])
def test_family_trains_with_partial_fc_and_deploys(name, head, tmp_path):
    torch.manual_seed(0)
    kwargs = {k: v for k, v in BACKBONES.info(name)["test_kwargs"].items() if k != "input_size"}
    cfg = load_config(
        None,
        [
            f"output={tmp_path}/run",
            f"model.backbone={name}",
            "model.input_size=32",
            "model.embedding_size=32",
            f"model.kwargs={kwargs}".replace("(", "[").replace(")", "]"),
            f"head.name={head}",
            "head.sample_rate=0.5",
            "batch_size=16",
            "epochs=1",
            "optim.lr=0.05",
            "log_every=1",
            "data.num_workers=0",
            "tensorboard=false",
        ],
    )
    trainer = Trainer(cfg, dataset=TinyFaces(classes=8))
    before = {k: v.detach().clone() for k, v in trainer.backbone.state_dict().items()}
    history = trainer.fit(max_steps=2)
    losses = [row["train/loss"] for row in history if "train/loss" in row]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    after = trainer.backbone.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    embedder = load_model(tmp_path / "run" / "model.pt")
    out = embedder(torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8))
    assert out.shape == (2, 32) and torch.isfinite(out).all()
