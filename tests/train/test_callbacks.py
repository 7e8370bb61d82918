"""Training events and their plug-ins: order, train.log, metrics.jsonl over a resume, best so far, curves, trackers."""

import io
import json
import re
import sys
import types

import numpy as np
import pytest

from facezoo.data.image import encode_image
from facezoo.data.verification_bin import write_bin
from facezoo.errors import ConfigError
from facezoo.train.callbacks import Callback
from facezoo.train.trainer import Trainer

from .conftest import TinyFaces


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_start(self, trainer):
        self.events.append(("start", trainer.step))

    def on_log(self, trainer, step, values):
        self.events.append(("log", step, sorted(values)))

    def on_checkpoint(self, trainer, step, path):
        self.events.append(("checkpoint", step, path.name))

    def on_epoch_end(self, trainer, epoch):
        self.events.append(("epoch", epoch))

    def on_validation(self, trainer, step, results):
        self.events.append(("val", step, sorted(results)))

    def on_train_end(self, trainer):
        self.events.append(("end", trainer.step))


def tiny_bin(path, n=20):
    data = TinyFaces()
    images = [encode_image(data[i][0], "png") for i in range(2 * n)]
    write_bin(path, images, [i % 2 == 0 for i in range(n)])
    return path


def test_events_arrive_in_order(tiny_cfg, tmp_path):
    rec = Recorder()
    val = tiny_bin(tmp_path / "v.bin")
    Trainer(tiny_cfg("epochs=2", "log_every=2", f"data.val=[{val}]"), dataset=TinyFaces(), callbacks=[rec]).fit()
    keys = ["images_per_s", "loss", "lr"]
    assert rec.events == [
        ("start", 0),
        ("log", 2, keys),
        ("checkpoint", 3, "checkpoint.pt"),
        ("val", 3, ["v"]),
        ("epoch", 0),
        ("log", 4, keys),
        ("log", 6, keys),
        ("checkpoint", 6, "checkpoint.pt"),
        ("val", 6, ["v"]),
        ("epoch", 1),
        ("end", 6),
    ]


def test_train_log_best_so_far_and_curves(tiny_cfg, tmp_path):
    val = tiny_bin(tmp_path / "v.bin")
    t = Trainer(tiny_cfg("epochs=3", f"data.val=[{val}]"), dataset=TinyFaces())
    t.fit()
    run = tmp_path / "run"
    lines = (run / "train.log").read_text().splitlines()
    assert lines[0][:4].isdigit() and "T" in lines[0].split()[0]  # ISO timestamp first
    assert any("step 9/9 loss" in line for line in lines) and any("verification at step 9" in line for line in lines)
    best = json.loads((run / "best.json").read_text())
    vals = [r["val/v"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "val/v" in r]
    assert best["score"] == max(vals) and best["step"] in (3, 6, 9) and (run / "best.pt").is_file()
    # each verification line's "best" includes the step it reports (the best so far, not the one before it)
    shown = [re.search(r"v (\d+\.\d+)% \(best mean (\d+\.\d+)% at step (\d+)\)", x) for x in lines]
    shown = [tuple(float(g) for g in m.groups()) for m in shown if m]
    assert len(shown) == 3
    for i, (_, top, at) in enumerate(shown):
        assert top == max(acc for acc, _, _ in shown[: i + 1]) and at <= 3 * (i + 1)
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_in_training_verification_shows_progress_on_a_terminal(tiny_cfg, tmp_path, monkeypatch):
    val = tiny_bin(tmp_path / "v.bin", n=20)
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    Trainer(tiny_cfg("epochs=1", f"data.val=[{val}]"), dataset=TinyFaces()).fit()
    text = term.getvalue()
    assert "decoding v.bin:" in text and "/40 [" in text  # the set's 40 images decoded once
    assert "embedding verification v:" in text and "img/s" in text  # and embedded at each validation


def test_metrics_jsonl_has_each_step_once_after_a_resume(tiny_cfg, tmp_path):
    Trainer(tiny_cfg("save_every=4"), dataset=TinyFaces()).fit(max_steps=4)
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:  # what a run killed after its checkpoint adds
        f.write('{"step": 5, "train/loss": 1.0}\n{"step": 6, "tra')
    t = Trainer(tiny_cfg("save_every=4"), dataset=TinyFaces())
    t.resume(tmp_path / "run" / "checkpoint.pt")
    t.fit()
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 10))
    Trainer(tiny_cfg("save_every=4"), dataset=TinyFaces()).fit(max_steps=2)  # a new run in the same folder
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


@pytest.fixture
def fake_trackers(monkeypatch):
    calls = []
    run = types.SimpleNamespace(log=lambda values, step: calls.append(("wandb.log", step, sorted(values))))
    run.finish = lambda: calls.append(("wandb.finish",))

    def init(**kw):
        calls.append(("wandb.init", kw["name"], kw["config"]["mode"]))
        return run

    mlflow = types.SimpleNamespace(
        start_run=lambda run_name: calls.append(("mlflow.start", run_name)),
        log_params=lambda p: calls.append(("mlflow.params", p["optim.lr"], p["model.backbone"])),
        log_metrics=lambda m, step: calls.append(("mlflow.metrics", step, sorted(m))),
        end_run=lambda: calls.append(("mlflow.end",)),
    )
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    return calls


def test_trackers_get_config_and_scalars(fake_trackers, tiny_cfg):
    Trainer(tiny_cfg("epochs=1", "log_every=3", "callbacks=[wandb, mlflow]"), dataset=TinyFaces()).fit()
    keys = ["train/images_per_s", "train/loss", "train/lr"]
    assert fake_trackers == [
        ("wandb.init", "run", "conventional"),
        ("mlflow.start", "run"),
        ("mlflow.params", "0.05", "ir18"),
        ("wandb.log", 3, keys),
        ("mlflow.metrics", 3, keys),
        ("wandb.finish",),
        ("mlflow.end",),
    ]


def test_a_tracker_that_is_not_installed_or_unknown_is_a_config_error(tiny_cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import fails
    with pytest.raises(ConfigError, match="pip install mlflow"):
        Trainer(tiny_cfg("callbacks=[mlflow]"), dataset=TinyFaces())
    with pytest.raises(ConfigError, match="unknown callback 'wandbb'. Did you mean 'wandb'"):
        tiny_cfg("callbacks=[wandbb]")


def test_history_matches_metrics_file(tiny_cfg, tmp_path):
    history = Trainer(tiny_cfg("epochs=1"), dataset=TinyFaces()).fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows == history and all(np.isfinite(r["train/loss"]) for r in rows)
