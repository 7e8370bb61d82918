"""The training-mode seam: a mode added as one class plus a registration trains, checkpoints and resumes exactly."""

import contextlib
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from facezoo.config import load_config
from facezoo.errors import ConfigError, DataError, ModelError
from facezoo.train.modes import MODES, Mode
from facezoo.train.trainer import NonFiniteLoss, Trainer

from .conftest import TinyFaces


@dataclass
class EmaOptions:
    momentum: float = 0.5
    nan_at_step: int = 0  # make the loss NaN at this step (0 = never)


class EmaPrototypes(Mode):
    """A test mode unlike conventional training: learnable class prototypes with a cosine softmax, plus an EMA
    copy of the backbone kept as extra checkpoint state (updated in end_step)."""

    Config = EmaOptions

    def __init__(self, ctx, options):
        super().__init__(ctx, options)
        self.dataset = ctx.open_dataset()
        self.backbone = ctx.build_backbone()
        self.model = ctx.wrap(self.backbone)
        self.prototypes = nn.Linear(ctx.cfg.model.embedding_size, self.dataset.num_classes, bias=False)
        self.ema = ctx.build_backbone()
        self.ema.load_state_dict(self.backbone.state_dict())
        self.calls = 0

    def steps_per_epoch(self):
        return len(self.dataset) // self.ctx.cfg.batch_size

    def batches(self, epoch, start_step):
        return self.ctx.loader(self.dataset, self.ctx.epoch_sampler(len(self.dataset), epoch, start_step))

    def trainable(self):
        return [self.backbone, self.prototypes]

    def loss(self, batch, generator):
        x, labels = self.ctx.prepare(batch, generator)
        emb = nn.functional.normalize(self.model(x), dim=1)
        logits = 16 * emb @ nn.functional.normalize(self.prototypes.weight, dim=1).T
        self.calls += 1
        loss = nn.functional.cross_entropy(logits, labels)
        return loss * float("nan") if self.calls == self.options.nan_at_step else loss

    @torch.no_grad()
    def end_step(self):
        m = self.options.momentum
        for e, p in zip(self.ema.parameters(), self.backbone.parameters()):
            e.mul_(m).add_(p, alpha=1 - m)

    def state_dict(self):
        return {"prototypes": self.prototypes.state_dict(), "ema": self.ema.state_dict(), "calls": self.calls}

    def load_state_dict(self, state):
        self.prototypes.load_state_dict(state["prototypes"])
        self.ema.load_state_dict(state["ema"])
        self.calls = state["calls"]


@pytest.fixture
def ema_mode(monkeypatch):
    monkeypatch.setitem(MODES._table, "ema_test", EmaPrototypes)
    monkeypatch.setitem(MODES._targets, "ema_test", EmaPrototypes)
    return "ema_test"


def losses(history):
    return [row["train/loss"] for row in history if "train/loss" in row]


def test_a_registered_mode_trains_and_resumes_exactly_with_its_extra_state(ema_mode, tiny_cfg, tmp_path):
    opts = ["mode=ema_test", "ema_test.momentum=0.8", "epochs=4"]
    full = Trainer(tiny_cfg(f"output={tmp_path}/a", *opts), dataset=TinyFaces())
    full_losses = losses(full.fit())
    assert np.mean(full_losses[-3:]) < 0.7 * np.mean(full_losses[:3])  # it learns

    part = Trainer(tiny_cfg(f"output={tmp_path}/b", *opts), dataset=TinyFaces())
    head = losses(part.fit(max_steps=5))
    resumed = Trainer(tiny_cfg(f"output={tmp_path}/b", *opts), dataset=TinyFaces())
    resumed.resume(tmp_path / "b" / "checkpoint.pt")
    assert resumed.mode.calls == 5
    assert head + losses(resumed.fit()) == full_losses  # exact, EMA included
    for a, b in zip(full.mode.ema.state_dict().values(), resumed.mode.ema.state_dict().values()):
        assert torch.equal(a, b)
    saved = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    assert saved["mode"] == "ema_test" and saved["ema_test"] == {"momentum": 0.8, "nan_at_step": 0}
    assert "mode_options" not in saved
    assert load_config(tmp_path / "b" / "config.yaml").mode_options == EmaOptions(momentum=0.8)


def test_mode_config_errors_name_the_nearest(ema_mode, tiny_cfg):
    with pytest.raises(ConfigError, match="unknown training mode 'conventinal'. Did you mean 'conventional'"):
        tiny_cfg("mode=conventinal")
    with pytest.raises(ConfigError, match=r"unknown config key 'ema_test.momentun'. Did you mean 'ema_test.momentum'"):
        tiny_cfg("mode=ema_test", "ema_test.momentun=0.3")
    with pytest.raises(
        ConfigError, match="section 'ema_test' holds options of mode ema_test, but mode is conventional"
    ):
        tiny_cfg("ema_test.momentum=0.3")
    with pytest.raises(ConfigError, match="ema_test.momentum: must be a finite number"):
        tiny_cfg("mode=ema_test", "ema_test.momentum=.nan")


def test_non_finite_loss_stops_before_any_checkpoint_or_is_skipped(ema_mode, tiny_cfg, tmp_path):
    t = Trainer(tiny_cfg(f"output={tmp_path}/a", "mode=ema_test", "ema_test.nan_at_step=2", "log_every=3"), TinyFaces())
    with pytest.raises(NonFiniteLoss, match="non-finite at step 2.*skip_nonfinite=true"):
        t.fit()
    assert not (tmp_path / "a" / "checkpoint.pt").exists()  # the first save (step 3) refused the NaN weights
    opts = ["mode=ema_test", "ema_test.nan_at_step=2", "skip_nonfinite=true"]
    t = Trainer(tiny_cfg(f"output={tmp_path}/b", *opts), dataset=TinyFaces())
    history = t.fit()
    assert t.skipped_nonfinite == 1 and any(row.get("train/nonfinite_skipped") == 1 for row in history)
    assert all(torch.isfinite(p).all() for p in t.backbone.parameters())


def test_resume_refuses_another_backbone_or_optimizer_and_explains_a_new_batch(tiny_cfg, tmp_path):
    out = f"output={tmp_path}/a"
    Trainer(tiny_cfg(out, "epochs=1"), dataset=TinyFaces()).fit()
    ckpt = tmp_path / "a" / "checkpoint.pt"
    for change, key in (("model.backbone=ir34", "model.backbone=ir18"), ("optim.name=adamw", "optim.name=sgd")):
        with pytest.raises(ModelError, match=f"trained with {key}"):
            Trainer(tiny_cfg(out, change), dataset=TinyFaces()).resume(ckpt)
    with pytest.raises(ModelError, match="trained with 6 classes, the data has 7"):
        Trainer(tiny_cfg(out), dataset=TinyFaces(classes=7)).resume(ckpt)
    t = Trainer(tiny_cfg(out, "batch_size=8", "epochs=1"), dataset=TinyFaces())
    t.resume(ckpt)
    plan = "\n".join(t.plan())
    assert "the global batch changed (16 x 1 -> 8 x 1)" in plan and "not an exact resume" in plan
    assert "nothing left to train" not in plan  # 3 steps done, 6 per epoch at batch 8
    t = Trainer(tiny_cfg(out, "epochs=1"), dataset=TinyFaces())
    t.resume(ckpt)
    assert "nothing left to train; raise epochs=" in "\n".join(t.plan())


def test_max_steps_is_the_plan_and_eta_target(tiny_cfg, capsys):
    Trainer(tiny_cfg("epochs=3"), dataset=TinyFaces()).fit(max_steps=2)
    out = capsys.readouterr().out
    assert "2 steps to step 2 of 9" in out
    assert "step 2/2 loss" in out


def test_output_that_is_a_file_is_a_config_error(tiny_cfg, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        Trainer(tiny_cfg(f"output={tmp_path}/f"), dataset=TinyFaces())


def test_disk_full_during_a_checkpoint_is_one_error_and_keeps_the_last_one(tiny_cfg, tmp_path, monkeypatch):
    """ENOSPC inside torch.save (which reports it as a RuntimeError about stream positions) is a DataError naming
    the file and the cause; the previous checkpoint stays whole and no temp file is left."""
    import errno

    from facezoo.models import checkpoint

    t = Trainer(tiny_cfg(), dataset=TinyFaces(), verbose=False)
    t.fit(max_steps=1)
    files = [t.output / "model.pt", t.checkpoint_path]
    before = [f.read_bytes() for f in files]
    real = checkpoint.atomic_write

    @contextlib.contextmanager
    def full_disk(path, mode="wb"):
        with real(path, mode) as f:

            class Full:
                def __getattr__(self, name):
                    return getattr(f, name)

                def write(self, data):
                    raise OSError(errno.ENOSPC, "No space left on device")

            yield Full()

    monkeypatch.setattr(checkpoint, "atomic_write", full_disk)
    with pytest.raises(DataError, match=r"model.pt: cannot write \(No space left on device\); free space"):
        t.save()  # model.pt is written first
    monkeypatch.undo()
    assert [f.read_bytes() for f in files] == before
    assert not list(t.output.glob(".*.tmp"))


def test_stale_temp_files_of_a_killed_run_are_removed(tiny_cfg, tmp_path):
    (tmp_path / "run").mkdir()
    litter = tmp_path / "run" / ".checkpoint.pt.x1y2.tmp"
    litter.write_bytes(b"half a checkpoint")
    keep = tmp_path / "run" / "notes.txt"
    keep.write_text("mine")
    Trainer(tiny_cfg(), dataset=TinyFaces(), verbose=False)
    assert not litter.exists() and keep.exists()
