"""The newer heads against their closed forms (float64): ElasticFace (Arc / Cos and "+"), SphereFace2 (C, A, M;
its bias initialisation; the reference's weighted binary cross-entropy), UniFace (unified cross-entropy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import facezoo
from facezoo.models.heads.context import StepInputs

from .test_heads import batch, np_cos

D, C = 6, 7


def make(name, **kw):
    torch.manual_seed(0)
    return facezoo.create_head(name, D, C, **kw).double()


def softplus(z):
    return np.logaddexp(0.0, z)


# ---- ElasticFace --------------------------------------------------------------------------------------------


def inputs(cos_y):
    cos_y = torch.as_tensor(cos_y, dtype=torch.float64)
    return StepInputs(torch.ones_like(cos_y), cos_y, torch.ones_like(cos_y, dtype=torch.bool))


@pytest.mark.parametrize("name", ["elasticface_arc", "elasticface_cos"])
def test_elastic_logits_use_the_drawn_margins(name):
    head = make(name).train()
    x, labels = batch(seed=1)
    cos = np_cos(x, head.weight)
    rows = np.arange(len(labels))
    cy = cos[rows, labels.numpy()]
    state = head.step_state(inputs(cy))
    m = state["m"].numpy()
    assert np.all(m != (0.5 if "arc" in name else 0.35))  # drawn, not the mean
    out = head.logits(x, head.weight, labels, state).detach().numpy()
    want = 64 * cos
    target = np.cos(np.arccos(cy) + m) if "arc" in name else cy - m  # Arc: the plain form, no threshold
    want[rows, labels.numpy()] = 64 * target
    np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-10)
    eval_state = head.eval().step_state(inputs(cy))  # eval: the mean margin
    assert torch.equal(eval_state["m"], torch.full((len(cy),), 0.5 if "arc" in name else 0.35, dtype=torch.float64))


def test_elastic_draws_are_normal_reproducible_and_resumable():
    head = make("elasticface_arc").train()
    cy = np.zeros(20000)
    first = head.step_state(inputs(cy))["m"].numpy()
    assert abs(first.mean() - 0.5) < 4 * 0.05 / math.sqrt(len(cy)) and abs(first.std() - 0.05) < 0.002
    second = head.step_state(inputs(cy))["m"].numpy()
    assert not np.array_equal(first, second) and int(head.draws) == 2
    again = make("elasticface_arc").train()  # the same seed and count: the same draws (every rank agrees)
    np.testing.assert_array_equal(again.step_state(inputs(cy))["m"].numpy(), first)
    resumed = make("elasticface_arc").train()
    resumed.load_state_dict(again.state_dict())  # draws = 1: the next draw is the second one
    np.testing.assert_array_equal(resumed.step_state(inputs(cy))["m"].numpy(), second)
    other = make("elasticface_arc", seed=1).train()
    assert not np.array_equal(other.step_state(inputs(cy))["m"].numpy(), first)


@pytest.mark.parametrize("name,std", [("elasticface_arc_plus", 0.0175), ("elasticface_cos_plus", 0.025)])
def test_elastic_plus_gives_larger_margins_to_larger_angles(name, std):
    head = make(name).train()
    assert head.plus and head.std == std
    cy = np.array([0.9, -0.2, 0.5, 0.7, 0.1, 0.3])
    m = head.step_state(inputs(cy))["m"].numpy()
    plain = facezoo.create_head(name.replace("_plus", ""), D, C, std=std).double().train()
    drawn = plain.step_state(inputs(cy))["m"].numpy()  # the same generator draws, unsorted
    np.testing.assert_allclose(np.sort(m), np.sort(drawn), rtol=0, atol=0)
    order = np.argsort(-cy)  # largest target cosine first
    assert np.all(np.diff(m[order]) >= 0), "larger target angle, larger margin"


# ---- SphereFace2 ---------------------------------------------------------------------------------------------


def ref_sphereface2_bias(classes, lam=0.7, r=40.0, m=0.4, t=3.0, kind="C"):
    z = lam / ((1 - lam) * (classes - 1))
    if kind == "C":
        ay, ai = r * (2 * 0.5**t - 1 - m), r * (2 * 0.5**t - 1 + m)
    else:
        theta = min(np.pi, np.pi / 2 + m) if kind == "A" else min(np.pi, m * np.pi / 2)
        ay, ai = r * (2 * ((np.cos(theta) + 1) / 2) ** t - 1), r * (2 * 0.5**t - 1)
    return np.log(2 * z) - ai - np.log(1 - z + np.sqrt((1 - z) ** 2 + 4 * z * np.exp(ay - ai)))


def ref_sphereface2_logits(cos, labels, b, kind="C", r=40.0, m=0.4, t=3.0):
    g = lambda c: 2 * ((c + 1) / 2) ** t - 1
    rows = np.arange(len(labels))
    cy = cos[rows, labels]
    if kind == "C":
        z = r * (g(cos) + m) + b
        zy = r * (g(cy) - m) + b
    else:
        theta = np.arccos(np.clip(cy, -1 + 1e-5, 1 - 1e-5))
        theta = theta + m if kind == "A" else theta * m
        z = r * g(cos) + b
        zy = r * g(np.cos(np.clip(theta, 1e-5, 3.14159))) + b
    z = z.copy()
    z[rows, labels] = zy
    return z


@pytest.mark.parametrize("kind", ["C", "A", "M"])
def test_sphereface2_logits_bias_and_loss(kind):
    head = make("sphereface2", margin_type=kind, m=0.4 if kind != "M" else 1.5).eval()
    m = head.m
    b = ref_sphereface2_bias(C, m=m, kind=kind)
    assert float(head.bias().detach()) == pytest.approx(b, rel=1e-12)
    x, labels = batch(seed=2)
    cos = np_cos(x, head.weight)
    z = ref_sphereface2_logits(cos, labels.numpy(), b, kind, m=m)
    np.testing.assert_allclose(head(x, labels).detach().numpy(), z, rtol=1e-10, atol=1e-9)
    target = np.zeros_like(z, bool)
    target[np.arange(len(labels)), labels.numpy()] = True
    per = (50 / 40) * np.where(target, 0.7 * softplus(-z), 0.3 * softplus(z)).sum(1)
    loss = head.loss(x, head.weight, labels)
    np.testing.assert_allclose(loss.detach().numpy(), per, rtol=1e-10)
    # the reference's form: binary cross-entropy weighted lw * C / r * (lambda or 1 - lambda), mean over B x C
    onehot = torch.tensor(target, dtype=torch.float64)
    weight = 50 * C / 40 * torch.where(onehot > 0, 0.7, 0.3)
    ref = F.binary_cross_entropy_with_logits(torch.tensor(z), onehot, weight=weight)
    assert float(loss.detach().mean()) == pytest.approx(float(ref), rel=1e-10)


def test_sphereface2_straight_through_and_exact_gradient():
    cos = np.array([[0.6, -0.3, 0.2], [0.1, 0.8, -0.7]])
    labels = torch.tensor([0, 2])
    norms = torch.ones(2, dtype=torch.float64)
    for st in (True, False):
        head = make("sphereface2", straight_through=st)
        cos_t = torch.tensor(cos, requires_grad=True)
        (g,) = torch.autograd.grad(head.margin(cos_t, labels, norms).sum(), cos_t)
        # straight-through: r; exact: r g'(cos) = r t ((cos + 1) / 2)^(t - 1)
        want = np.full_like(cos, 40.0) if st else 40 * 3 * ((cos + 1) / 2) ** 2
        np.testing.assert_allclose(g.numpy(), want, rtol=1e-12)


def test_sphereface2_and_uniface_gradcheck_and_bias_gradient():
    x, labels = batch(seed=3, norm_range=(5.0, 40.0))
    for name, kw in (("sphereface2", {"straight_through": False}), ("uniface", {})):
        head = make(name, **kw).eval()
        xs = x.clone().requires_grad_(True)
        w = head.weight.detach().clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda a, b, head=head: head.loss(a, b, labels), (xs, w))
        head.beta.grad = None
        head.loss(x, head.weight, labels).sum().backward()
        eps, values = 1e-6, []
        for delta in (eps, -eps):  # central difference in beta
            with torch.no_grad():
                head.beta.add_(delta)
                values.append(float(head.loss(x, head.weight, labels).sum()))
                head.beta.sub_(delta)
        assert float(head.beta.grad) == pytest.approx((values[0] - values[1]) / (2 * eps), rel=1e-6)


# ---- UniFace -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw", [{}, {"lamda": 0.5, "r": 2.0, "m": 0.3}])
def test_uniface_matches_unified_cross_entropy(kw):
    head = make("uniface", **kw).eval()
    s, m, lam, r = 64.0, kw.get("m", 0.4), kw.get("lamda", 1.0), kw.get("r", 1.0)
    b = math.log(C * r * 10)
    assert float(head.bias().detach()) == pytest.approx(b, rel=1e-12)
    x, labels = batch(seed=4)
    cos = np_cos(x, head.weight)
    rows = np.arange(len(labels))
    z = s * cos - b
    z[rows, labels.numpy()] = s * (cos[rows, labels.numpy()] - m) - b
    np.testing.assert_allclose(head(x, labels).detach().numpy(), z, rtol=1e-10, atol=1e-9)
    target = np.zeros_like(z, bool)
    target[rows, labels.numpy()] = True
    want = np.where(target, softplus(-z), lam * softplus(z)).sum(1)
    np.testing.assert_allclose(head.loss(x, head.weight, labels).detach().numpy(), want, rtol=1e-10)


def test_binary_heads_bias_follows_the_class_count_of_every_rank():
    """A shard's head keeps its learned beta; the initial bias uses the classifier's total class count."""
    head = facezoo.create_head("uniface", D, 3).double()
    with torch.no_grad():
        head.beta.fill_(0.25)
    head.bind_classes(12)
    assert float(head.bias().detach()) == pytest.approx(math.log(12 * 10) + 0.25, rel=1e-12)
