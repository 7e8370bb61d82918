"""InsightFace's heads against their closed forms (float64): sub-center ArcFace (max over sub-centres, counts and
dropping of the non-dominant ones) and inter-class filtering on the combined-margin heads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import facezoo
from facezoo.errors import ConfigError

from .test_heads import batch, np_cos

D, C, K = 6, 7, 3


def ref_arc(c, m=0.5):
    return np.where(np.arccos(c) + m < np.pi, np.cos(np.arccos(c) + m), c - m * np.sin(m))


def test_subcenter_logits_are_arcface_on_the_closest_subcentre():
    torch.manual_seed(0)
    head = facezoo.create_head("subcenter_arcface", D, C).double().eval()
    assert head.weight.shape == (C, K * D) and head.k == K
    x, labels = batch(seed=2)
    w = head.weight.detach().view(C, K, D)
    sub = np.stack([np_cos(x, w[:, k]) for k in range(K)], axis=2)  # (B, C, K)
    cos = sub.max(axis=2)
    rows = np.arange(len(labels))
    want = 64 * cos
    want[rows, labels.numpy()] = 64 * ref_arc(cos[rows, labels.numpy()])
    weight = head.weight.detach().clone().requires_grad_(True)
    out = head.logits(x, weight, labels)
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-10, atol=1e-10)
    out.sum().backward()
    # only the closest sub-centre of each (sample, class) pair receives gradient
    touched = weight.grad.view(C, K, D).abs().sum(2) > 0
    closest = np.zeros((C, K), bool)
    for c in range(C):
        closest[c, sub[:, c].argmax(axis=1)] = True
    np.testing.assert_array_equal(touched.numpy(), closest)
    xg = x.clone().requires_grad_(True)
    wg = head.weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: head.logits(a, b, labels), (xg, wg))


def planar_head(drop_step):
    """2-D, one class with K = 2 sub-centres at angles 0 and 1.0 (plus a far class)."""
    head = facezoo.create_head("subcenter_arcface", 2, 2, k=2, drop_step=drop_step).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0, math.cos(1.0), math.sin(1.0)], [-1.0, 0.0, -1.0, 0.1]]))
    return head


def at(*angles):
    a = torch.tensor(angles, dtype=torch.float64)
    return torch.stack([a.cos(), a.sin()], 1) * 5.0


def test_subcenter_counts_and_drops_the_non_dominant_subcentre():
    head = planar_head(drop_step=2).train()
    x, labels = at(0.1, 0.2, 0.9), torch.tensor([0, 0, 0])  # two closest to sub-centre 0, one to sub-centre 1
    head(x, labels)
    assert head.hits[0].tolist() == [2, 1] and head.hits[1].tolist() == [0, 0]
    assert head.keep.tolist() == [[1, 1], [1, 1]]  # not yet: drop at the second training forward
    probe = at(0.95)
    before = head.eval()(probe, torch.tensor([1]))[0, 0].detach()
    np.testing.assert_allclose(float(before), 64 * math.cos(0.05), rtol=1e-9)  # the nearby sub-centre 1
    head.train()(x, labels)
    assert head.hits[0].tolist() == [4, 2] and head.keep.tolist() == [[1, 0], [1, 0]]
    after = head.eval()(probe, torch.tensor([1]))[0, 0].detach()
    np.testing.assert_allclose(float(after), 64 * math.cos(0.95), rtol=1e-9)  # only sub-centre 0 is left
    head.train()(x, labels)  # later forwards keep counting but do not drop again
    assert head.keep.tolist() == [[1, 0], [1, 0]] and int(head.steps) == 3
    hits = head.hits.clone()
    head.eval()(x, labels)
    assert torch.equal(head.hits, hits)  # eval mode counts nothing


def test_subcenter_bad_arguments():
    with pytest.raises(ConfigError, match="k="):
        facezoo.create_head("subcenter_arcface", D, C, k=0)
    with pytest.raises(ConfigError, match="drop_step="):
        facezoo.create_head("subcenter_arcface", D, C, drop_step=-1)


@pytest.mark.parametrize("name", ["arcface", "cosface", "combined"])
def test_interclass_filtering_zeroes_high_negatives(name):
    torch.manual_seed(0)
    plain = facezoo.create_head(name, D, C).double().eval()
    filtered = facezoo.create_head(name, D, C, interclass_filtering_threshold=0.3).double().eval()
    cos = np.array([[0.9, 0.5, 0.31, 0.2, -0.4], [0.2, 0.7, 0.1, 0.35, 0.29]])
    labels = torch.tensor([0, 3])  # row 1's target (0.35) is above the threshold: never filtered
    cos_t = torch.tensor(cos, requires_grad=True)
    norms = torch.full((2,), 10.0, dtype=torch.float64)
    out = filtered.margin(cos_t, labels, norms)
    dirty = cos > 0.3
    dirty[np.arange(2), labels.numpy()] = False
    want = plain.margin(torch.tensor(np.where(dirty, 0.0, cos)), labels, norms).detach().numpy()
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-12)
    (g,) = torch.autograd.grad(out.sum(), cos_t)
    assert np.all(g.numpy()[dirty] == 0) and np.all(g.numpy()[~dirty] != 0)
    assert "interclass_filtering_threshold=0.3" in repr(filtered)
    with pytest.raises(ConfigError, match="interclass_filtering_threshold"):
        facezoo.create_head(name, D, C, interclass_filtering_threshold=1.5)
