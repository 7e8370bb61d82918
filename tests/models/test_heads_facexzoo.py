"""FaceX-Zoo's heads against their closed forms (numpy, float64): adacos, adam_softmax, arcnegface, circleloss,
mv_softmax, npcface. Cosine matrices are built by hand to reach every branch (theta + m > pi, hard negatives
present and absent, margins outside [0, 1], empty target sets); gradients by closed form and gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import facezoo
from facezoo.models.heads.context import Batch

from .test_heads import batch, np_cos

D, C = 6, 7


def make(name, **kw):
    torch.manual_seed(0)
    return facezoo.create_head(name, D, C, **kw).double().eval()


def ref_arc(c, m):
    """ArcFace target cosine, threshold variant."""
    return np.where(np.arccos(c) + m < np.pi, np.cos(np.arccos(c) + m), c - m * np.sin(m))


def cos_matrix():
    """(4, 5) cosines, targets [0, 1, 2, 4]: row 0 easy with one hard negative, row 1 with theta_y + 0.5 > pi,
    row 2 a negative target cosine, row 3 no hard negative."""
    cos = np.array(
        [
            [0.80, 0.75, -0.30, 0.10, 0.20],
            [0.40, -0.95, -0.20, 0.30, -0.60],
            [0.10, 0.50, -0.40, 0.35, 0.60],
            [-0.50, -0.40, -0.70, -0.60, 0.95],
        ]
    )
    return cos, np.array([0, 1, 2, 4])


def run_margin(head, cos, labels, norms=None):
    """head.margin on a hand-made cosine matrix (its own step state): logits and the cosine leaf."""
    cos_t = torch.tensor(cos, requires_grad=True)
    n = torch.full((len(cos),), 20.0, dtype=torch.float64) if norms is None else norms
    return head.margin(cos_t, torch.tensor(labels), n), cos_t


def grad_of(out, cos_t):
    (g,) = torch.autograd.grad(out.sum(), cos_t)
    return g.numpy()


def onehot(cos, labels):
    mask = np.zeros_like(cos, dtype=bool)
    mask[np.arange(len(labels)), labels] = True
    return mask


@pytest.mark.parametrize("name", ["adacos", "adam_softmax", "mv_softmax", "npcface"])
def test_gradcheck(name):
    """Where the gradient is the formula's derivative: with the step state held fixed (NPCFace's m_i is detached).
    ArcNegFace's and CircleLoss's weights are detached functions of cos itself: their gradients are checked in
    closed form below instead."""
    head = make(name)
    x, labels = batch(seed=3, norm_range=(5.0, 50.0))
    state = head.resolve_state(head.cosines(x, head.weight).detach(), labels, x.norm(dim=1), None)
    x = x.clone().requires_grad_(True)
    w = head.weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: head.logits(a, b, labels, state), (x, w))


# ---- AdaCos -------------------------------------------------------------------------------------------------


def test_adacos_fixed_scale_and_eval():
    head = make("adacos", dynamic=False).train()
    cos, labels = cos_matrix()
    out, _ = run_margin(head, cos, labels)
    np.testing.assert_allclose(out.detach().numpy(), math.sqrt(2) * math.log(C - 1) * cos, rtol=1e-12)
    assert int(head.steps) == 0


def ref_adacos_scale(cos, labels, s_old):
    rows = np.arange(len(labels))
    other = ~onehot(cos, labels)
    b_avg = (np.exp(s_old * cos) * other).sum() / len(labels)
    theta = np.sort(np.arccos(np.clip(cos[rows, labels], -1 + 1e-7, 1 - 1e-7)))
    med = theta[(len(theta) - 1) // 2]  # the lower median of an even count, as torch.median
    return math.log(b_avg) / math.cos(min(math.pi / 4, med))


def test_adacos_dynamic_scale_follows_the_batch():
    head = make("adacos").train()
    cos, labels = cos_matrix()
    s0 = math.sqrt(2) * math.log(C - 1)
    s1 = ref_adacos_scale(cos, labels, s0)  # target angles median ~ acos(0.8) < pi/4 and large ones
    out, cos_t = run_margin(head, cos, labels)
    assert float(head.s) == pytest.approx(s1, rel=1e-12) and int(head.steps) == 1
    np.testing.assert_allclose(out.detach().numpy(), s1 * cos, rtol=1e-12)
    np.testing.assert_allclose(grad_of(out, cos_t), s1, rtol=1e-12)  # s is detached
    # second step: s_old is the adapted s; a batch of large target angles (median > pi/4: capped)
    easy = np.full((4, 5), -0.2)
    easy[np.arange(4), labels] = [0.1, 0.2, 0.3, 0.6]
    assert np.sort(np.arccos([0.1, 0.2, 0.3, 0.6]))[1] > math.pi / 4
    run_margin(head, easy, labels)
    s2 = ref_adacos_scale(easy, labels, s1)
    assert float(head.s) == pytest.approx(s2, rel=1e-12)
    # eval: s fixed; a call whose targets are all absent (empty set) leaves s as it was
    head.eval()
    out, _ = run_margin(head, cos, labels)
    np.testing.assert_allclose(out.detach().numpy(), s2 * cos, rtol=1e-12)
    head.train()
    run_margin(head, cos, np.array([-1, -1, -1, -1]))
    assert float(head.s) == pytest.approx(s2, rel=1e-12)


# ---- AdaM-Softmax -------------------------------------------------------------------------------------------


def test_adam_softmax_margins_clamped_and_regulariser():
    head = make("adam_softmax", s=30.0, lamda=70.0)
    assert head.weight.shape == (C, D + 1)
    margins = head.weight[:, D].detach().numpy()
    assert np.all((margins >= 0.3) & (margins <= 0.4))  # U(0.3, 0.4) initialisation
    with torch.no_grad():
        head.weight[:, D] = torch.tensor([0.35, -0.2, 1.5, 0.3, 0.4, 0.32, 0.38], dtype=torch.float64)
    x, labels = batch(seed=4)
    labels = torch.tensor([0, 1, 2, 3, 1])
    w = head.weight.detach()
    m = np.clip(w[:, D].numpy(), 0, 1)  # -0.2 -> 0, 1.5 -> 1
    c = np_cos(x, w[:, :D])
    want = 30 * c
    rows = np.arange(len(labels))
    want[rows, labels.numpy()] = 30 * (c[rows, labels.numpy()] - m[labels.numpy()])
    weight = head.weight.clone().detach().requires_grad_(True)
    out = head.logits(x, weight, labels)
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-10, atol=1e-12)
    out[rows, labels].sum().backward()
    # d target logit / d margin = -s inside [0, 1]; no gradient through the clamp outside
    counts = np.bincount(labels.numpy(), minlength=C)
    np.testing.assert_allclose(weight.grad[:, D].numpy(), -30 * counts * ((m > 0) & (m < 1)), atol=1e-12)
    reg = head.batch_loss(Batch.local(head, x, labels))
    assert float(reg.detach()) == pytest.approx(70 * (1 - m.mean()), rel=1e-12)
    head.weight.grad = None
    reg.backward()
    np.testing.assert_allclose(head.weight.grad[:, D].numpy(), -70 / C * ((m > 0) & (m < 1)), atol=1e-12)


# ---- ArcNegFace ---------------------------------------------------------------------------------------------


def test_arcnegface_matches_formula_and_gradient():
    head = make("arcnegface")
    cos, labels = cos_matrix()
    out, cos_t = run_margin(head, cos, labels)
    rows = np.arange(len(labels))
    a = ref_arc(cos[rows, labels], 0.5)  # row 1: theta_y + m > pi -> cos - m sin(m)
    assert np.arccos(cos[1, 1]) + 0.5 > np.pi
    t = 1.2 * np.exp(-((cos - a[:, None]) ** 2) / 2.0)
    want = 64 * (t * cos + t - 1)
    want[rows, labels] = 64 * a
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-12)
    g = grad_of(out, cos_t)
    theta = np.arccos(cos[rows, labels])
    da = np.where(theta + 0.5 < np.pi, np.sin(theta + 0.5) / np.sin(theta), 1.0)
    want_g = 64 * t  # the weights are detached
    want_g[rows, labels] = 64 * da
    np.testing.assert_allclose(g, want_g, rtol=1e-9)


# ---- CircleLoss ---------------------------------------------------------------------------------------------


def test_circleloss_matches_formula_and_detached_weights():
    head = make("circleloss")
    cos, labels = cos_matrix()
    out, cos_t = run_margin(head, cos, labels)
    m, gamma = 0.25, 256.0
    a_n = np.maximum(0, cos + m)  # cos < -m gives a_n = 0 (e.g. -0.95, -0.6, -0.7)
    want = gamma * a_n * (cos - m)
    rows = np.arange(len(labels))
    cy = cos[rows, labels]
    a_p = np.maximum(0, 1 + m - cy)
    want[rows, labels] = gamma * a_p * (cy - (1 - m))
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-12)
    assert (a_n == 0).any()
    want_g = gamma * a_n
    want_g[rows, labels] = gamma * a_p
    np.testing.assert_allclose(grad_of(out, cos_t), want_g, rtol=1e-12)


# ---- MV-Softmax ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["am", "arc"])
def test_mv_softmax_matches_formula(variant):
    head = make("mv_softmax", variant=variant)
    m, t, s = (0.35 if variant == "am" else 0.5), 0.2, 32.0
    cos, labels = cos_matrix()
    out, cos_t = run_margin(head, cos, labels)
    rows = np.arange(len(labels))
    cy = cos[rows, labels]
    if variant == "am":
        bound, target = cy - m, np.where(cy > m, cy - m, cy)  # row 2: cos_y = -0.4 < m: no margin
    else:
        theta = np.arccos(cy)
        bound, target = np.cos(theta + m), np.where(cy > 0, np.cos(theta + m), cy)
    hard = cos > bound[:, None]
    want = s * np.where(hard, (t + 1) * cos + t, cos)
    want[rows, labels] = s * target
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-12)
    negatives = ~onehot(cos, labels)
    assert (hard & negatives).any() and (~hard & negatives).any()
    g = grad_of(out, cos_t)
    np.testing.assert_allclose(g[negatives], s * np.where(hard, t + 1, 1.0)[negatives], rtol=1e-12)


# ---- NPCFace ------------------------------------------------------------------------------------------------


def test_npcface_matches_formula_and_gradient():
    head = make("npcface")
    cos, labels = cos_matrix()
    out, cos_t = run_margin(head, cos, labels)
    s, m, m0, m1, t, a = 64.0, 0.5, 0.4, 0.2, 1.1, 0.2
    rows = np.arange(len(labels))
    cy = cos[rows, labels]
    theta = np.arccos(cy)
    bound = np.cos(theta + m)
    negatives = ~onehot(cos, labels)
    hard = (cos > bound[:, None]) & negatives
    mean = (cos * hard).sum(1) / np.maximum(hard.sum(1), 1)
    assert hard[0].any() and not hard[3].any()  # row 3: no hard negative, m_i = m0
    m_i = m0 + m1 * mean
    want = s * np.where(cos > bound[:, None], t * cos + a, cos)
    want[rows, labels] = s * np.where(cy > 0, np.cos(theta + m_i), cy)
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-12)
    g = grad_of(out, cos_t)
    np.testing.assert_allclose(g[negatives], s * np.where(hard, t, 1.0)[negatives], rtol=1e-12)
    dt = np.where(cy > 0, np.sin(theta + m_i) / np.sin(theta), 1.0)  # m_i detached
    np.testing.assert_allclose(g[rows, labels], s * dt, rtol=1e-9)


def test_forward_on_embeddings_uses_the_same_formulas():
    """head(x, y) = margin(np_cos(x, W)) for every head here (the embedding path, not only hand cosines)."""
    x, labels = batch(seed=7)
    for name in ("arcnegface", "circleloss", "mv_softmax", "npcface"):
        head = make(name)
        cos = np_cos(x, head.weight)
        want, _ = run_margin(head, cos, labels.numpy())
        np.testing.assert_allclose(head(x, labels).detach().numpy(), want.detach().numpy(), rtol=1e-10, atol=1e-10)
