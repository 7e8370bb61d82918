"""TFace's heads against their closed forms (float64): cifp (a literal dense transcription of the formula as the
reference), ddl (numpy histograms and KL, empty sets), scf (log-Bessel against scipy, the vMF likelihood)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import torch
import torch.nn.functional as F

import facezoo
from facezoo.models.heads.confidence import bessel_window, log_bessel_iv
from facezoo.models.heads.context import Batch

D, C, B = 6, 5, 8


def make(name, **kw):
    torch.manual_seed(0)
    return facezoo.create_head(name, D, C, **kw).double().eval()


def problem(seed=0, spread=3.0):
    """x (B, D), labels (B,), class rows W (C, D) spread so rows have misclassified negatives and false positives."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(C, D, generator=g, dtype=torch.float64)
    labels = torch.arange(B) % C
    x = w[labels] * spread + torch.randn(B, D, generator=g, dtype=torch.float64) * 2.5
    return x, labels, w


# ---- CIFP ---------------------------------------------------------------------------------------------------


def ref_cifp(x, w, labels, s=64.0, m=0.35):
    """CIFP logits, written step by step from the formula on dense (B, C) tensors (one process)."""
    xn = F.normalize(x, dim=1)
    cos = (xn @ F.normalize(w, dim=1).t()).clamp(-1, 1)
    cos_fixed = (xn @ F.normalize(w, dim=1).detach().t()).clamp(-1, 1)
    mask = F.one_hot(labels, C).double()
    tmp, tmp_fixed = cos - 2 * mask, cos_fixed - 2 * mask
    rows = torch.arange(len(labels))
    cos_y, cos_y_fixed = cos[rows, labels].unsqueeze(1), cos_fixed[rows, labels].unsqueeze(1)
    target_m = cos_y - m
    far = 1 / (C - 1)
    mis = tmp > cos_y
    far_rank = math.ceil(far * (len(labels) * (C - 1) - int(mis.sum())))
    th = torch.sort((tmp - 2 * mis.double()).flatten().detach(), descending=True).values[far_rank - 1]
    cond = ~mis & (tmp > th)
    neg, neg_fixed = cond * tmp, cond * tmp_fixed
    neg = torch.where(target_m > neg, neg, neg_fixed).pow(2)
    times = (neg > 0).sum(1, keepdim=True).double().clamp(min=1)
    penalty = neg.sum(1, keepdim=True) / times
    out = cos.clone()
    out[rows, labels] = (target_m - (1 + cos_y_fixed) * penalty).squeeze(1)
    return out * s, cond, target_m.detach() > torch.where(cond, tmp, 0.0).detach()


def test_cifp_matches_formula_forward_and_both_gradients():
    head = make("cifp")
    x, labels, w = problem()
    xa, wa = x.clone().requires_grad_(), w.clone().requires_grad_()
    xb, wb = x.clone().requires_grad_(), w.clone().requires_grad_()
    got = head.logits(xa, wa, labels)
    want, chosen, keep = ref_cifp(xb, wb, labels)
    assert chosen.any() and (chosen & keep).any() and (chosen & ~keep).any()  # both gradient paths reached
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-10)
    probe = torch.randn(B, C, dtype=torch.float64)
    (got * probe).sum().backward()
    (want * probe).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(wa.grad, wb.grad, rtol=1e-10, atol=1e-10)
    # no false positive at all (a loose far threshold the misclassified negatives fill): plain CosFace
    cos = np.clip(F.normalize(x, dim=1).numpy() @ F.normalize(w, dim=1).numpy().T, -1, 1)
    easy = make("cifp", far=1e-3).logits(x, w, labels).detach().numpy()
    rows = np.arange(B)
    want = 64 * cos
    want[rows, labels] = 64 * (cos[rows, labels] - 0.35)
    np.testing.assert_allclose(easy, want, rtol=1e-12, atol=1e-10)


def test_cifp_x_gradient_is_the_derivative():
    """The centre is detached in parts of the penalty, the embedding never: d/dx is the exact derivative."""
    head = make("cifp")
    x, labels, w = problem(seed=1)
    x = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: head.logits(a, w, labels), (x,))


def test_cifp_cannot_chunk():
    from facezoo.errors import ConfigError
    from facezoo.train.classifier import ShardedClassifier

    with pytest.raises(ConfigError, match="cannot split its classes into chunks.*sums over every class column"):
        ShardedClassifier(make("cifp"), C, chunk_size=2)


# ---- DDL ----------------------------------------------------------------------------------------------------


def ref_hist(values, mask, bins=1000, bw=0.1):
    t = np.arange(bins) / bins
    h = (np.exp(-0.5 * ((values[mask][:, None] - t) / bw) ** 2)).sum(0)
    return h / h.sum()


def ref_kl(p, q, eps=1e-9):
    return ((p + eps) * (np.log(p + eps) - np.log(q + eps))).sum()


def ref_ddl(x, w, labels, hard_fraction=0.5, threshold=0.0, pk=0.1, nk=0.02, order=0.5):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    wn = w / np.linalg.norm(w, axis=1, keepdims=True)
    pos = (xn * wn[labels]).sum(1)
    sim = xn @ xn.T
    other = labels[:, None] != labels[None, :]
    has_neg = other.any(1)
    neg = np.where(other, sim, -np.inf).max(1)
    hard = np.zeros(len(x), bool)
    hard[np.argsort(np.linalg.norm(x, axis=1), kind="stable")[: int(hard_fraction * len(x))]] = True
    branches = [~hard, hard]
    has_pos = pos > threshold
    loss = 0.0
    for weight, v, ok in ((pk, pos, has_pos), (nk, neg, has_neg)):
        e, h = ok & branches[0], ok & branches[1]
        if e.any() and h.any():
            loss += weight * ref_kl(ref_hist(v, e), ref_hist(v, h))
    for a in branches:
        for b in branches:
            if (has_neg & a).any() and (has_pos & b).any():
                loss += order * (neg[has_neg & a].mean() - pos[has_pos & b].mean())
    return loss


def ddl_term(head, x, labels):
    return head.batch_loss(Batch.local(head, x, labels))


@pytest.mark.parametrize(
    "case",
    ["mixed", "one identity (no negatives)", "no easy positive above the threshold", "no hard branch"],
)
def test_ddl_batch_term_matches_formula(case):
    x, labels, w = problem(seed=2, spread=1.0)
    kw = {}
    if case == "one identity (no negatives)":
        labels = torch.zeros(B, dtype=torch.long)
    elif case == "no easy positive above the threshold":
        kw = {"positive_threshold": 0.99}
    elif case == "no hard branch":
        kw = {"hard_fraction": 0.0}
    head = make("ddl", **kw)
    with torch.no_grad():
        head.weight.copy_(w)
    got = float(ddl_term(head, x, labels).detach())
    ref_kw = {"threshold": kw.get("positive_threshold", 0.0), "hard_fraction": kw.get("hard_fraction", 0.5)}
    want = ref_ddl(x.numpy(), w.numpy(), labels.numpy(), **ref_kw)
    assert got == pytest.approx(want, rel=1e-10, abs=1e-12)
    assert np.isfinite(got)


def test_ddl_gradcheck_and_margin_is_arcface():
    x, labels, w = problem(seed=2, spread=1.0)
    head = make("ddl")
    arc = make("arcface")
    torch.testing.assert_close(head(x, labels), arc(x, labels))  # same init, same logits
    x = x.clone().requires_grad_(True)
    wt = w.clone().requires_grad_(True)

    def term(a, b):
        batch = Batch(a, labels, labels, a.new_zeros(B), head, b, labels)
        return head.batch_loss(batch)

    assert torch.autograd.gradcheck(term, (x, wt))


# ---- SCF ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("v", [0.0, 0.5, 2.0, 63.0, 255.0])
def test_log_bessel_matches_mpmath_value_and_derivative(v):
    """ln I_v against mpmath at 30 digits (scipy's ive underflows for large orders and small kappa)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 30
    kappa = torch.tensor([1e-3, 0.5, 5.0, 100.0, 1e3, 4e4], dtype=torch.float64, requires_grad=True)
    got = log_bessel_iv(v, kappa, bessel_window(v, 5e4))
    want = [float(mpmath.log(mpmath.besseli(v, k))) for k in kappa.tolist()]
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-13, atol=1e-12)
    (grad,) = torch.autograd.grad(got.sum(), kappa)
    # d/dk ln I_v(k) = I_{v+1}(k) / I_v(k) + v / k
    ratio = [float(mpmath.besseli(v + 1, k) / mpmath.besseli(v, k)) + v / k for k in kappa.tolist()]
    np.testing.assert_allclose(grad.numpy(), ratio, rtol=1e-10)


def test_scf_vmf_term_and_kappa_branch():
    head = make("scf")
    x, labels, w = problem(seed=3)
    with torch.no_grad():
        head.weight.copy_(w)
    kappa = head.kappa(x).detach().numpy()
    cos = (F.normalize(x, dim=1) * F.normalize(w[labels], dim=1)).sum(1).numpy()
    d, v = D, D / 2 - 1
    log_iv = np.log(scipy.special.ive(v, kappa)) + kappa
    want = np.mean(-kappa * cos - v * np.log(kappa) + log_iv + d / 2 * np.log(2 * np.pi))
    term = head.batch_loss(Batch.local(head, x.clone().requires_grad_(True), labels))
    assert float(term.detach()) == pytest.approx(want, rel=1e-10)
    # the kappa module gets the gradient; the embedding and the class centres none (detached)
    xg = x.clone().requires_grad_(True)
    head.batch_loss(Batch.local(head, xg, labels)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.kappa_net.parameters())
    assert xg.grad is None and head.weight.grad is None
    names = [n for n, _ in head.kappa_net.named_parameters()]

    def term_of(*ps):  # the vMF term as a function of the kappa module's parameters
        out = torch.func.functional_call(head.kappa_net, dict(zip(names, ps)), (x,))
        k = 1e-6 + out.squeeze(1).clamp(max=math.log(head.kappa_max)).exp()
        return head.vmf_nll(k, torch.tensor(cos)).mean()

    inputs = tuple(p.detach().clone().requires_grad_(True) for p in head.kappa_net.parameters())
    assert torch.autograd.gradcheck(term_of, inputs)


def test_scf_kappa_clamp_and_undetached_variant():
    head = make("scf", kappa_max=10.0)
    x, labels, _ = problem(seed=4)
    with torch.no_grad():
        head.kappa_net[-1].bias.fill_(50.0)  # exp(50) > kappa_max: clamped, no gradient through the clamp
    kappa = head.kappa(x)
    torch.testing.assert_close(kappa, torch.full_like(kappa, 10.0 + 1e-6))
    head.batch_loss(Batch.local(head, x, labels)).backward()
    assert float(head.kappa_net[-1].bias.grad) == 0.0
    free = make("scf", detach=False)
    xg = x.clone().requires_grad_(True)
    free.batch_loss(Batch.local(free, xg, labels)).backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0  # the term reaches the embedding
