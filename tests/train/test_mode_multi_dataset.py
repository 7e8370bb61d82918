"""Multi-dataset mode: one backbone, a head per set (its own classes, head, s, m, batch share), per-set losses in
the log, exact resume, and 2 gloo ranks (every head sharded) equal to one process."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facezoo.errors import ConfigError, ModelError

from .conftest import TinyFaces
from .tiny import losses, spawn, trainer

SETS = "multi_dataset.sets={a: {batch_size: 8}, b: {batch_size: 8, weight: 0.5, head: {name: cosface, kwargs: {s: 8, m: 0.1}}}}"  # noqa: E501
OPTS = ["mode=multi_dataset", SETS]


def data():
    return {"a": TinyFaces(classes=6, per_class=8, size=16), "b": TinyFaces(classes=5, per_class=4, size=16)}


def test_the_loss_is_the_weighted_sum_of_each_sets_margin_softmax(tmp_path):
    t = trainer(tmp_path, *OPTS, "data.flip=false", dataset=data())
    m = t.mode
    assert [p.num_classes for p in m.heads.values()] == [6, 5]
    assert m.heads["b"].head.s == 8 and m.heads["a"].head.s == 16  # set b's own head; a takes the head section
    batch = next(iter(m.batches(0, 0)))
    assert batch["sizes"] == [8, 8]
    got = m.loss(batch, torch.Generator())
    x, labels = m.ctx.prepare(batch, torch.Generator())
    with torch.no_grad():
        e = m.model(x)
    expected = 0.0
    for (_name, part), rows, weight in zip(m.heads.items(), (slice(0, 8), slice(8, 16)), (1.0, 0.5)):
        logits = part.head(e[rows], labels[rows])  # the head's own full-FC logits
        expected += weight * F.cross_entropy(logits, labels[rows])
    assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)


def test_trains_logs_each_set_and_resumes_exactly(tmp_path, capsys):
    opts = [*OPTS, "epochs=4"]
    full = trainer(tmp_path / "a", *opts, dataset=data())
    assert full.steps_per_epoch == 6  # set a: 48 / 8; set b (20 images, 2 steps) cycles
    history = full.fit()
    assert "loss/a" in capsys.readouterr().out
    for key in ("train/loss/a", "train/loss/b"):
        per_set = losses(history, key)
        assert len(per_set) == 24 and np.mean(per_set[-4:]) < 0.7 * np.mean(per_set[:4]), key
    total = np.array(losses(history))
    per = {k: np.array(losses(history, f"train/loss/{k}")) for k in "ab"}
    assert np.allclose(total, per["a"] + 0.5 * per["b"])
    part = trainer(tmp_path / "b", *opts, dataset=data())
    head = losses(part.fit(max_steps=7))
    resumed = trainer(tmp_path / "b", *opts, dataset=data())
    resumed.resume(tmp_path / "b" / "checkpoint.pt")
    assert head + losses(resumed.fit()) == losses(history)
    other = trainer(tmp_path / "b", "mode=multi_dataset", "multi_dataset.sets={a: {batch_size: 16}}", dataset=data())
    with pytest.raises(ModelError, match="trained on sets"):
        other.resume(tmp_path / "b" / "checkpoint.pt")


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="add up to 12, batch_size is 16; set batch_size=12"):
        sets = "multi_dataset.sets={a: {batch_size: 8}, b: {batch_size: 4}}"
        trainer(tmp_path, "mode=multi_dataset", sets, dataset=data())
    with pytest.raises(ConfigError, match="unknown head 'arcfce'. Did you mean 'arcface'"):
        trainer(tmp_path, "mode=multi_dataset", "multi_dataset.sets={a: {batch_size: 16, head: {name: arcfce}}}")
    with pytest.raises(ConfigError, match="sets.a.bach_size'. Did you mean 'multi_dataset.sets.a.batch_size"):
        trainer(tmp_path, "mode=multi_dataset", "multi_dataset.sets={a: {bach_size: 16}}")
    with pytest.raises(ConfigError, match="sets.a.train is empty"):
        trainer(tmp_path, "mode=multi_dataset", "multi_dataset.sets={a: {batch_size: 16}}")


def _ranks(rank, world_size, out, opts):
    sets = "multi_dataset.sets={a: {batch_size: 4}, b: {batch_size: 4, weight: 0.5, head: {name: cosface, kwargs: {s: 8, m: 0.1}}}}"  # noqa: E501
    t = trainer(out, *opts, sets, "batch_size=8", dataset=data())
    history = t.fit()
    heads = t.mode.state_dict()["heads"]  # every rank: the sharded class centres are gathered
    if rank == 0:
        torch.save(
            {
                "losses": [losses(history, k) for k in ("train/loss", "train/loss/a", "train/loss/b")],
                "backbone": t.backbone.state_dict(),
                "heads": heads,
            },
            f"{out}/r.pt",
        )


def test_two_gloo_ranks_equal_one_process(tmp_path):
    """Each set's classes split over the ranks (6 -> 3 + 3, 5 -> 3 + 2), each rank half of every set's share; both
    runs start from one checkpoint's backbone and heads (model.init_head: a fresh head's random rows would depend on
    the shard sizes); with BatchNorm held and no flips the logged global losses, the backbone and every head agree."""
    trainer(tmp_path / "init", *OPTS, "epochs=1", dataset=data(), verbose=False).fit(max_steps=1)
    start = [f"model.init_from={tmp_path / 'init' / 'checkpoint.pt'}", "model.init_head=true"]
    opts = ["mode=multi_dataset", "epochs=1", "model.freeze=[bn]", "data.flip=false", *start]
    spawn(_ranks, 2, str(tmp_path / "two"), opts)
    two = torch.load(tmp_path / "two" / "r.pt")
    one = trainer(tmp_path / "one", *opts, SETS, dataset=data())
    history = one.fit()
    for got, key in zip(two["losses"], ("train/loss", "train/loss/a", "train/loss/b")):
        assert len(got) == 6 and np.allclose(got, losses(history, key), rtol=1e-3), key  # float summation order
    for k, v in one.backbone.state_dict().items():
        assert torch.allclose(two["backbone"][k], v, atol=1e-4), k
    for name, saved in one.mode.state_dict()["heads"].items():
        assert torch.allclose(two["heads"][name]["state"]["weight"], saved["state"]["weight"], atol=1e-4), name
