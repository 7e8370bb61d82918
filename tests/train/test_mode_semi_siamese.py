"""Semi-siamese mode: one micro-batch's loss against the method written out here, training, exact resume with queue
and gallery network, the non-finite guard on the queue, and 2 gloo ranks equal to one process."""

import numpy as np
import pytest
import torch

from facezoo.errors import ConfigError, ModelError
from facezoo.train.modes.semi_siamese import margin_logits

from .conftest import TinyFaces
from .tiny import losses, spawn, trainer

SHALLOW = {"classes": 24, "per_class": 2, "size": 16}  # two images per identity
SST = ["mode=semi_siamese", "semi_siamese.queue_size=64", "semi_siamese.momentum=0.9"]


def test_margins():
    cos = torch.tensor([[0.5, 0.2], [0.1, -0.3]], dtype=torch.float64)
    target = torch.tensor([0, 1])
    am = margin_logits(cos, target, "am", 30.0, 0.35)
    assert torch.allclose(am, 30 * torch.tensor([[0.15, 0.2], [0.1, -0.65]], dtype=torch.float64))
    arc = margin_logits(cos, target, "arc", 2.0, 0.5)
    expected = [[np.cos(np.arccos(0.5) + 0.5), 0.2], [0.1, np.cos(np.arccos(-0.3) + 0.5)]]
    assert torch.allclose(arc, 2 * torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("mask", [True, False])
def test_one_micro_batch_is_the_method(tmp_path, mask):
    opts = [*SST, f"semi_siamese.mask_same_identity={mask}", "data.flip=false"]
    t = trainer(tmp_path, *opts, dataset=TinyFaces(**SHALLOW))
    m = t.mode
    batch = next(iter(m.batches(0, 0)))
    y = batch["labels"][0::2]
    m.ptr = 60  # the batch's 8 positions wrap around the end of the 64-long queue
    m.queue_labels[[3, 10]] = y[[0, 5]]  # earlier entries of two of the batch's identities
    queue, labels_q = m.queue.clone().double(), m.queue_labels.clone()
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    got = m.loss(batch, torch.Generator().manual_seed(0))

    torch.random.set_rng_state(state)
    x, _ = m.ctx.prepare(batch, torch.Generator().manual_seed(0))
    x1, x2 = x[0::2], x[1::2]
    with torch.no_grad():
        p = torch.nn.functional.normalize(m.model(torch.cat([x1, x2])), dim=1).double()
        g = torch.nn.functional.normalize(m.gallery(torch.cat([x1, x2])), dim=1).double()
    n = len(y)
    where = [(60 + i) % 64 for i in range(n)]
    total = 0.0
    for probe, gallery in ((p[:n], g[n:]), (p[n:], g[:n])):  # p1 vs g2, then the swap p2 vs g1
        q = queue.clone()
        q[where] = gallery
        lab = labels_q.clone()
        lab[where] = y
        for i in range(n):
            logits = []
            for j in range(64):
                c = float(probe[i] @ q[j])
                if j == where[i]:
                    logits.append(30 * (c - 0.35))
                elif mask and lab[j] == y[i]:
                    continue  # an earlier gallery feature of the same identity is no negative
                else:
                    logits.append(30 * c)
            logits = np.array(logits)
            k = int(np.sum([j < where[i] and not (mask and lab[j] == y[i]) for j in range(64)]))
            total += np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[k]
    assert float(got.detach()) == pytest.approx(total / (2 * n), rel=1e-5)
    # then one side was enqueued at those positions, with its labels, and the pointer moved on
    assert m.ptr == (60 + n) % 64 and torch.equal(m.queue_labels[where], y)
    written = m.queue[where].double()
    assert torch.allclose(written, g[:n], atol=1e-6) or torch.allclose(written, g[n:], atol=1e-6)


def test_trains_and_resumes_exactly_with_queue_and_gallery(tmp_path):
    opts = [*SST, "epochs=6", "optim.lr=0.1"]
    full = trainer(tmp_path / "a", *opts, dataset=TinyFaces(**SHALLOW))
    history = losses(full.fit())
    assert len(history) == 18 and np.mean(history[-3:]) < 0.8 * np.mean(history[:3])
    part = trainer(tmp_path / "b", *opts, dataset=TinyFaces(**SHALLOW))
    head = losses(part.fit(max_steps=7))
    resumed = trainer(tmp_path / "b", *opts, dataset=TinyFaces(**SHALLOW))
    resumed.resume(tmp_path / "b" / "checkpoint.pt")
    assert head + losses(resumed.fit()) == history
    assert torch.equal(resumed.mode.queue, full.mode.queue) and resumed.mode.ptr == full.mode.ptr
    for a, b in zip(full.mode.gallery.state_dict().values(), resumed.mode.gallery.state_dict().values()):
        assert torch.equal(a, b)
    other = trainer(tmp_path / "b", *SST[:1], "semi_siamese.queue_size=32", dataset=TinyFaces(**SHALLOW))
    with pytest.raises(ModelError, match="semi_siamese.queue_size"):
        other.resume(tmp_path / "b" / "checkpoint.pt")


def test_a_non_finite_gallery_batch_is_not_enqueued(tmp_path):
    m = trainer(tmp_path, *SST, dataset=TinyFaces(**SHALLOW)).mode
    before = m.queue.clone()
    bad = torch.full((8, 16), float("nan"))
    m._enqueue(bad, bad, torch.arange(8), torch.arange(8))
    assert torch.equal(m.queue, before) and (m.queue_labels[:8] == -1).all()


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="queue_size=4 is smaller than the 8 identities"):
        trainer(tmp_path, *SST[:1], "semi_siamese.queue_size=4", dataset=TinyFaces(**SHALLOW))
    with pytest.raises(ConfigError, match="multiple of the 2 images per identity"):
        trainer(tmp_path, *SST, "batch_size=15", dataset=TinyFaces(**SHALLOW))
    with pytest.raises(ConfigError, match="'am', 'arc'"):
        trainer(tmp_path, *SST, "semi_siamese.margin=cos", dataset=TinyFaces(**SHALLOW))


def _ranks(rank, world_size, out, opts):
    t = trainer(out, *opts, f"batch_size={16 // world_size}", dataset=TinyFaces(**SHALLOW))
    history = losses(t.fit())
    if rank == 0:
        torch.save({"losses": history, "backbone": t.backbone.state_dict(), "queue": t.mode.queue}, f"{out}/r.pt")


def test_two_gloo_ranks_equal_one_process(tmp_path):
    """Same global batch (P identities per rank x 2 ranks), BatchNorm held (per-rank statistics would differ), no
    flips: the gathered queue, the losses and the weights agree with one process."""
    opts = [*SST, "epochs=2", "model.freeze=[bn]", "data.flip=false"]
    spawn(_ranks, 2, str(tmp_path / "two"), opts)
    two = torch.load(tmp_path / "two" / "r.pt")
    one = trainer(tmp_path / "one", *opts, "batch_size=16", dataset=TinyFaces(**SHALLOW))
    history = losses(one.fit())
    assert len(history) == 6 and np.allclose(two["losses"], history, rtol=1e-4)
    for k, v in one.backbone.state_dict().items():
        assert torch.allclose(two["backbone"][k], v, atol=1e-5), k
    # the queue columns of a step are one process's columns in rank order: the same set of features
    assert torch.allclose(two["queue"].sum(0), one.mode.queue.sum(0), atol=1e-4)
