"""Auxiliary losses against their closed forms (float64): centre loss and its centre update, focal loss on the
margin softmax, batch-hard triplet loss; their recipe wiring (head.aux), checkpointing, and 2 gloo ranks equal to
one process."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import facezoo
from facezoo.config import AuxLossConfig, load_config
from facezoo.errors import ConfigError, ModelError
from facezoo.models.heads.context import Batch
from facezoo.models.losses import LOSSES
from facezoo.models.losses.triplet import triplet_loss
from facezoo.train.classifier import ShardedClassifier
from facezoo.train.distributed import World, shard_range

D, C, B = 6, 5, 10


def make(name, **kw):
    return LOSSES.create(name, embedding_size=D, num_classes=C, **kw).double()


def problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=g, dtype=torch.float64) * 2
    labels = torch.tensor([0, 0, 1, 2, 2, 2, 3, 1, 4, 0])  # repeated classes, one singleton (4)
    return x, labels


def test_registry_and_bad_arguments():
    assert LOSSES.names() == ["center", "focal", "triplet"]
    with pytest.raises(ConfigError, match="Did you mean 'center'"):
        LOSSES.create("centre", embedding_size=D, num_classes=C)
    with pytest.raises(ConfigError, match="has no argument 'gama'.*Did you mean 'gamma'"):
        make("focal", gama=2)
    with pytest.raises(ConfigError, match="alpha="):
        make("center", alpha=2.0)
    with pytest.raises(ConfigError, match="margin="):
        make("triplet", margin=-1)


# ---- centre loss --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [False, True])
def test_center_loss_value_gradient_and_update(normalize):
    loss_fn = make("center", alpha=0.5, normalize=normalize).train()
    g = torch.Generator().manual_seed(9)
    start = torch.randn(C, D, generator=g, dtype=torch.float64)
    loss_fn.centers.copy_(start)
    x, labels = problem()
    x = x.requires_grad_(True)
    value = loss_fn(Batch.local(None, x, labels))
    xn = F.normalize(x, dim=1).detach().numpy() if normalize else x.detach().numpy()
    c = start.numpy()
    want = 0.5 * ((xn - c[labels.numpy()]) ** 2).sum(1).mean()
    assert float(value.detach()) == pytest.approx(want, rel=1e-12)
    value.backward()
    if not normalize:  # d/dx_i = (x_i - c_{y_i}) / B
        np.testing.assert_allclose(x.grad.numpy(), (xn - c[labels.numpy()]) / B, rtol=1e-12)
    # the paper's update: delta c_j = sum_{y_i = j} (c_j - x_i) / (1 + n_j), c_j -= alpha delta c_j
    new = c.copy()
    for j in range(C):
        members = labels.numpy() == j
        delta = (c[j] - xn[members]).sum(0) / (1 + members.sum())
        new[j] = c[j] - 0.5 * delta
    np.testing.assert_allclose(loss_fn.centers.numpy(), new, rtol=1e-12, atol=1e-14)
    after = loss_fn.centers.clone()
    loss_fn.eval()(Batch.local(None, x.detach(), labels))
    assert torch.equal(loss_fn.centers, after)  # eval mode: no update


# ---- focal loss ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 2.0, 0.5])
def test_focal_loss_on_the_margin_softmax(gamma):
    torch.manual_seed(0)
    head = facezoo.create_head("cosface", D, C).double()
    x, labels = problem()
    clf = ShardedClassifier(copy.deepcopy(head), C, aux=[{"name": "focal", "weight": 1.0, "kwargs": {"gamma": gamma}}])
    xa = x.clone().requires_grad_(True)
    got = clf(xa, labels)
    xb = x.clone().requires_grad_(True)
    logits = head(xb, labels)
    logp = F.log_softmax(logits, dim=1)[torch.arange(B), labels]
    ce = -logp.mean()
    focal = (-((1 - logp.exp()) ** gamma) * logp).mean()
    torch.testing.assert_close(got, ce + focal, rtol=1e-12, atol=1e-12)
    if gamma == 0:
        torch.testing.assert_close(focal, ce)
    got.backward()
    (ce + focal).backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)


def test_focal_needs_a_softmax_head():
    with pytest.raises(ConfigError, match="aux loss 'focal'.*sphereface2"):
        ShardedClassifier(facezoo.create_head("sphereface2", D, C), C, aux=[{"name": "focal"}])


# ---- triplet loss -------------------------------------------------------------------------------------------


def ref_triplet(x, labels, margin=0.2, squared=True):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    d = ((xn[:, None] - xn[None]) ** 2).sum(2)
    d = d if squared else np.sqrt(d)
    losses = []
    for i in range(len(x)):
        pos = [d[i, j] for j in range(len(x)) if j != i and labels[j] == labels[i]]
        neg = [d[i, j] for j in range(len(x)) if labels[j] != labels[i]]
        if pos and neg:
            losses.append(max(0.0, max(pos) - min(neg) + margin))
    return float(np.mean(losses)) if losses else 0.0


@pytest.mark.parametrize("squared", [True, False])
def test_triplet_batch_hard_matches_brute_force(squared):
    x, labels = problem(1)
    got = triplet_loss(x, labels, margin=0.2, squared=squared)
    assert float(got) == pytest.approx(ref_triplet(x.numpy(), labels.numpy(), squared=squared), rel=1e-12)
    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: triplet_loss(a, labels, 0.5, squared), (xg,))
    # no anchor with both a positive and a negative (every label distinct; every label equal): 0, finite gradient
    for lab in (torch.arange(B), torch.zeros(B, dtype=torch.long)):
        xe = x.clone().requires_grad_(True)
        empty = triplet_loss(xe, lab)
        empty.backward()
        assert float(empty.detach()) == 0.0 and torch.isfinite(xe.grad).all()
    module = make("triplet", margin=0.3, squared=squared)
    torch.testing.assert_close(module(Batch.local(None, x, labels)), triplet_loss(x, labels, 0.3, squared))


# ---- wiring: classifier, recipe, checkpoints ------------------------------------------------------------------

AUX = [
    AuxLossConfig("center", 0.01, {"alpha": 0.5}),
    AuxLossConfig("focal", 0.5, {"gamma": 2.0}),
    AuxLossConfig("triplet", 0.1, {"margin": 0.2}),
]


def test_classifier_adds_weighted_aux_losses_and_checkpoints_them():
    torch.manual_seed(0)
    head = facezoo.create_head("arcface", D, C).double()
    ref_head = copy.deepcopy(head)
    clf = ShardedClassifier(head, C, aux=AUX).double()
    assert [a.name for a in clf.aux] == ["center", "focal", "triplet"] and clf.aux_weights == [0.01, 0.5, 0.1]
    x, labels = problem(2)
    loss = clf(x, labels)
    logits = ref_head(x, labels)
    per = F.cross_entropy(logits, labels, reduction="none")
    batch = Batch.local(ref_head, x, labels, per)
    centre, focal, triplet = (make(a.name, **a.kwargs) for a in AUX)
    want = per.mean() + 0.01 * centre(batch) + 0.5 * focal(batch) + 0.1 * triplet(batch)
    torch.testing.assert_close(loss, want, rtol=1e-12, atol=1e-12)
    assert not torch.equal(clf.aux[0].centers, torch.zeros(C, D, dtype=torch.float64))  # updated in training
    state = clf.full_state_dict()
    assert torch.equal(state["aux.0.centers"], clf.aux[0].centers) and "weight" in state
    fresh = ShardedClassifier(facezoo.create_head("arcface", D, C).double(), C, aux=AUX).double()
    fresh.load_full_state_dict(state)
    assert torch.equal(fresh.aux[0].centers, clf.aux[0].centers)
    x2, _ = problem(3)
    torch.testing.assert_close(fresh(x2, labels), clf(x2, labels), rtol=0, atol=0)  # the same next loss
    bare = {k: v for k, v in state.items() if not k.startswith("aux.")}
    with pytest.raises(ModelError, match="no state for auxiliary loss 0 \\('center'\\)"):
        fresh.load_full_state_dict(bare)
    with pytest.raises(ConfigError, match="weight=-1.0 must be >= 0"):
        ShardedClassifier(facezoo.create_head("arcface", D, C), C, aux=[{"name": "center", "weight": -1}])


def test_recipe_builds_the_aux_list():
    cfg = load_config(None, ["head.aux=[{name: center, weight: 0.01, kwargs: {alpha: 0.3}}, {name: triplet}]"])
    assert cfg.head.aux == [AuxLossConfig("center", 0.01, {"alpha": 0.3}), AuxLossConfig("triplet", 1.0, {})]
    clf = ShardedClassifier.from_config(facezoo.create_head("arcface", D, C), C, None, cfg.head)
    assert [a.name for a in clf.aux] == ["center", "triplet"] and clf.aux[0].alpha == 0.3
    with pytest.raises(ConfigError, match="head.aux\\[0\\].name: unknown auxiliary loss 'centre'.*'center'"):
        load_config(None, ["head.aux=[{name: centre}]"])
    with pytest.raises(ConfigError, match="unknown config key 'head.aux\\[0\\].wieght'.*'head.aux\\[0\\].weight'"):
        load_config(None, ["head.aux=[{name: center, wieght: 1}]"])


# ---- 2 gloo ranks = one process ---------------------------------------------------------------------------------

IN, CLASSES, BATCH = 4, 7, 12


def _run(clf, backbone, x, labels):
    loss = clf(backbone(x), labels)
    loss.backward()
    inner = backbone.module if hasattr(backbone, "module") else backbone
    return {"loss": loss.detach(), "backbone": inner.weight.grad.clone(), "head": clf.head.weight.grad.clone()}


def _worker(rank, world_size, tmp):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world_size)
    s = torch.load(f"{tmp}/setup.pt")
    start, end = shard_range(CLASSES, rank, world_size)
    b = BATCH // world_size
    backbone = torch.nn.Linear(IN, D).double()
    backbone.load_state_dict(s["backbone"])
    ddp = torch.nn.parallel.DistributedDataParallel(backbone)
    head = facezoo.create_head("arcface", D, end - start).double()
    clf = ShardedClassifier(head, CLASSES, World(rank, world_size), aux=AUX).double()
    clf.load_full_state_dict(s["state"])
    out = _run(clf, ddp, s["x"][rank * b : (rank + 1) * b], s["labels"][rank * b : (rank + 1) * b])
    out["state"] = clf.full_state_dict()  # gathered: every rank holds the full centres
    torch.save(out, f"{tmp}/rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)  # see tests/train/test_classifier.py: skip gloo's occasionally aborting teardown


def test_aux_losses_on_two_ranks_equal_one_process(tmp_path):
    torch.manual_seed(0)
    backbone = torch.nn.Linear(IN, D).double()
    clf = ShardedClassifier(facezoo.create_head("arcface", D, CLASSES).double(), CLASSES, aux=AUX).double()
    with torch.no_grad():
        clf.aux[0].centers.normal_()
    x = torch.randn(BATCH, IN, dtype=torch.float64) * 3
    labels = torch.tensor([0, 0, 1, 5, 6, 6, 3, 1, 4, 2, 5, 0])
    setup = {"backbone": backbone.state_dict(), "state": clf.full_state_dict(), "x": x, "labels": labels}
    torch.save(setup, tmp_path / "setup.pt")
    ref = _run(clf, backbone, x, labels)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.multiprocessing.spawn(_worker, args=(2, str(tmp_path)), nprocs=2)
    outs = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for out in outs:
        torch.testing.assert_close(out["loss"], ref["loss"], rtol=0, atol=1e-10)
        torch.testing.assert_close(out["backbone"], ref["backbone"], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(out["state"]["aux.0.centers"], clf.aux[0].centers, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.cat([o["head"] for o in outs]), ref["head"], rtol=1e-10, atol=1e-10)
