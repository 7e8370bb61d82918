"""Partial FC updates only the sampled rows: of the class centres and of the optimiser state."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import facezoo
from facezoo.config import OptimConfig
from facezoo.train.classifier import ShardedClassifier
from facezoo.train.optim import JointStep, RowOptimizer, build_optimizer
from facezoo.train.trainer import Trainer

from .conftest import TinyFaces

DIM, CLASSES, BATCH = 8, 40, 6


def _step(clf, opt, rows_opt, emb, labels):
    """One training step as the trainer does it: backward, dense step, sampled-rows step, write-back."""
    loss = clf(emb, labels)
    loss.backward()
    sub, rows = clf.sampled, clf.rows
    grad = sub.grad.clone()
    row_opt = rows_opt.load(sub, rows)
    opt.step()
    row_opt.step()
    rows_opt.store(sub, rows)
    opt.zero_grad(set_to_none=True)
    row_opt.zero_grad(set_to_none=True)
    return loss.detach(), grad, rows


def _setup(optim: OptimConfig, rate=0.25, classes=CLASSES):
    torch.manual_seed(0)
    head = facezoo.create_head("arcface", DIM, classes).double()
    clf = ShardedClassifier(head, classes, sample_rate=rate)
    opt = build_optimizer(optim, [head])
    return head, clf, opt, RowOptimizer(opt, head.weight)


def _batch(seed, classes=CLASSES):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, DIM, dtype=torch.float64, generator=g) * 4, torch.randint(
        0, classes, (BATCH,), generator=g
    )


def test_sgd_touches_only_sampled_rows_and_matches_sgd_on_the_sub_matrix():
    cfg = OptimConfig(name="sgd", lr=0.5, momentum=0.9, nesterov=True, weight_decay=0.05)
    head, clf, opt, rows_opt = _setup(cfg)
    _step(clf, opt, rows_opt, *_batch(1))  # a first step fills the momentum of its rows
    w0 = head.weight.detach().clone()
    buf0 = opt.state[head.weight]["momentum_buffer"].clone()
    assert buf0.shape == (CLASSES, DIM)
    emb, labels = _batch(2)
    _, grad, rows = _step(clf, opt, rows_opt, emb, labels)
    assert set(labels.tolist()) <= set(rows.tolist()) and len(rows) == 10  # k = max(int(0.25 * 40), 6)
    out = torch.ones(CLASSES, dtype=torch.bool)
    out[rows] = False
    buf = opt.state[head.weight]["momentum_buffer"]
    assert torch.equal(head.weight.detach()[out], w0[out])  # bit-identical: no decay, no momentum drift
    assert torch.equal(buf[out], buf0[out])
    # torch.optim.SGD on the sub-matrix alone, with those rows' momentum
    p = torch.nn.Parameter(w0[rows].clone())
    ref = torch.optim.SGD([p], lr=0.5, momentum=0.9, nesterov=True, weight_decay=0.05)
    ref.state[p]["momentum_buffer"] = buf0[rows].clone()
    p.grad = grad.clone()
    ref.step()
    torch.testing.assert_close(head.weight.detach()[rows], p.detach(), rtol=0, atol=1e-15)
    torch.testing.assert_close(buf[rows], ref.state[p]["momentum_buffer"], rtol=0, atol=1e-15)
    # and by hand: g = grad + wd w; b = 0.9 b + g; w -= lr (g + 0.9 b)
    g = grad + 0.05 * w0[rows]
    b = 0.9 * buf0[rows] + g
    torch.testing.assert_close(head.weight.detach()[rows], w0[rows] - 0.5 * (g + 0.9 * b), rtol=1e-12, atol=1e-14)


def test_adamw_touches_only_sampled_rows_with_a_shared_step_count():
    cfg = OptimConfig(name="adamw", lr=0.01, weight_decay=0.1)
    head, clf, opt, rows_opt = _setup(cfg)
    _step(clf, opt, rows_opt, *_batch(1))
    w0 = head.weight.detach().clone()
    state0 = {k: v.clone() for k, v in opt.state[head.weight].items()}
    _, grad, rows = _step(clf, opt, rows_opt, *_batch(2))
    out = torch.ones(CLASSES, dtype=torch.bool)
    out[rows] = False
    state = opt.state[head.weight]
    assert float(state["step"]) == 2.0
    assert torch.equal(head.weight.detach()[out], w0[out])
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(state[key][out], state0[key][out])
    p = torch.nn.Parameter(w0[rows].clone())
    ref = torch.optim.AdamW([p], lr=0.01, weight_decay=0.1)
    ref.state[p] = {
        "step": state0["step"].clone(),
        "exp_avg": state0["exp_avg"][rows].clone(),
        "exp_avg_sq": state0["exp_avg_sq"][rows].clone(),
    }
    p.grad = grad.clone()
    ref.step()
    torch.testing.assert_close(head.weight.detach()[rows], p.detach(), rtol=0, atol=1e-15)


def test_sampling_every_row_equals_full_fc():
    """rate * C < batch <= C keeps k = C rows: loss and the SGD step equal full-FC training."""
    cfg = OptimConfig(name="sgd", lr=0.3, momentum=0.9, weight_decay=5e-4)
    classes = 5
    head, clf, opt, rows_opt = _setup(cfg, rate=0.4, classes=classes)
    full_head, full_clf, full_opt, _ = _setup(cfg, rate=1.0, classes=classes)
    for seed in (1, 2):
        emb, labels = _batch(seed, classes)
        loss, _, rows = _step(clf, opt, rows_opt, emb, labels)
        assert torch.equal(rows, torch.arange(classes))
        full_loss = full_clf(emb, labels)
        expected = F.cross_entropy(full_head(emb, labels), labels)
        full_loss.backward()
        full_opt.step()
        full_opt.zero_grad()
        torch.testing.assert_close(loss, full_loss.detach(), rtol=0, atol=1e-12)
        torch.testing.assert_close(loss, expected.detach(), rtol=0, atol=1e-12)
        torch.testing.assert_close(head.weight, full_head.weight, rtol=0, atol=1e-14)
        torch.testing.assert_close(
            opt.state[head.weight]["momentum_buffer"],
            full_opt.state[full_head.weight]["momentum_buffer"],
            rtol=0,
            atol=1e-14,
        )


def test_sample_size_is_host_known_and_keeps_every_positive():
    clf = ShardedClassifier(facezoo.create_head("cosface", DIM, 100), 100, sample_rate=0.1)
    assert clf.num_sampled(6) == 10 and clf.num_sampled(64) == 64 and clf.num_sampled(500) == 100
    for seed in range(5):
        torch.manual_seed(seed)
        labels = torch.randint(0, 100, (64,))
        rows, local = clf.sample(clf.local_labels(labels))
        assert len(rows) == 64 and set(labels.tolist()) <= set(rows.tolist())
        assert torch.equal(rows, rows.sort().values) and torch.equal(rows[local], labels)


def test_an_overflow_in_the_backbone_skips_the_row_update_too():
    """fp16: GradScaler sees main + row optimiser as one; an inf anywhere skips both, as with one optimiser."""
    backbone = torch.nn.Parameter(torch.ones(3))
    head, clf, opt, rows_opt = _setup(OptimConfig(name="sgd", lr=0.5, momentum=0.9))
    main = torch.optim.SGD([{"params": [backbone]}, *opt.param_groups], lr=0.5, momentum=0.9)
    rows_opt = RowOptimizer(main, head.weight)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    scaler.scale(clf(*_batch(1))).backward()
    w0 = head.weight.detach().clone()
    backbone.grad = torch.tensor([1.0, float("inf"), 0.0])
    joint = JointStep(main, rows_opt.load(clf.sampled, clf.rows))
    scaler.unscale_(joint)
    assert clf.sampled.grad.isfinite().all()
    scaler.step(joint)
    rows_opt.store(clf.sampled, clf.rows)
    scaler.update()
    assert torch.equal(head.weight.detach(), w0) and torch.equal(backbone.detach(), torch.ones(3))
    assert scaler.get_scale() == 2.0  # the overflow was counted once


def _losses(history):
    return [row["train/loss"] for row in history if "train/loss" in row]


@pytest.mark.slow
def test_trainer_partial_fc_with_accumulation_resumes_exactly(tiny_cfg, tmp_path):
    """40 classes, rate 0.25, 2 micro-batches of 8: one 16-row sample per step; resume repeats the losses."""
    data = TinyFaces(classes=40, per_class=2)
    opts = ("head.sample_rate=0.25", "grad_accum=2", "epochs=1", "optim.weight_decay=0.01")
    full = Trainer(tiny_cfg(f"output={tmp_path}/a", *opts), dataset=data)
    w0 = full.mode.head.weight.detach().clone()
    first = _losses(full.fit(max_steps=1))
    rows = full.mode.classifier.rows
    assert len(first) == 1 and len(rows) == 16
    out = torch.ones(40, dtype=torch.bool)
    out[rows] = False
    assert torch.equal(full.mode.head.weight.detach()[out], w0[out])
    assert not full.optimizer.state[full.mode.head.weight]["momentum_buffer"][out].any()
    assert full.mode.head.weight.grad is None
    full_losses = _losses(full.fit(max_steps=4))  # the history holds both calls
    part = Trainer(tiny_cfg(f"output={tmp_path}/b", *opts), dataset=data)
    head_part = _losses(part.fit(max_steps=2))
    resumed = Trainer(tiny_cfg(f"output={tmp_path}/b", *opts), dataset=data)
    resumed.resume(tmp_path / "b" / "checkpoint.pt")
    # steps 3 and 4 after the resume: the 4th loss shows the 3rd update (lr from the schedule, restored state)
    assert len(full_losses) == 4 and head_part + _losses(resumed.fit(max_steps=4)) == full_losses
    # fp16 (GradScaler over both optimisers) with gradient clipping runs
    ls = _losses(
        Trainer(tiny_cfg(f"output={tmp_path}/c", *opts, "precision=fp16", "optim.grad_clip=1.0"), dataset=data).fit(
            max_steps=2
        )
    )
    assert len(ls) == 2 and np.isfinite(ls).all()
