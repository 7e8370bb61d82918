"""Each distillation loss against its formula, written out here loop by loop in float64 (numpy)."""

import itertools

import numpy as np
import pytest
import torch

from facezoo.errors import ConfigError
from facezoo.train.distill import DISTILL_LOSSES

rng = np.random.default_rng(0)
B, DS, DT = 7, 5, 6
S = rng.normal(size=(B, DS))
T = rng.normal(size=(B, DT))
T_SAME = rng.normal(size=(B, DS))
LABELS = np.array([0, 0, 1, 2, 2, 2, 3])


def make(name, ds=DS, dt=DT, **kw):
    return DISTILL_LOSSES.create(name, student_shape=(ds,), teacher_shape=(dt,), **kw).double()


def value(loss, s, t, labels=LABELS):
    return float(loss(torch.from_numpy(s), torch.from_numpy(t), torch.from_numpy(labels)).detach())


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def huber(x):
    return np.where(np.abs(x) < 1, 0.5 * x**2, np.abs(x) - 0.5)


def test_l2_and_cosine():
    expected = np.mean([np.sum((unit(S)[i] - unit(T_SAME)[i]) ** 2) for i in range(B)])
    assert value(make("l2", dt=DS), S, T_SAME) == pytest.approx(expected, rel=1e-12)
    raw = np.mean([np.sum((S[i] - T_SAME[i]) ** 2) for i in range(B)])
    assert value(make("l2", dt=DS, normalize=False), S, T_SAME) == pytest.approx(raw, rel=1e-12)
    cos = np.mean([1 - S[i] @ T_SAME[i] / np.linalg.norm(S[i]) / np.linalg.norm(T_SAME[i]) for i in range(B)])
    assert value(make("cosine", dt=DS), S, T_SAME) == pytest.approx(cos, rel=1e-12)
    for name in ("l2", "cosine"):
        with pytest.raises(ConfigError, match="compares embeddings entry by entry.*fitnet"):
            make(name)  # 5-d student, 6-d teacher


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_soft_targets_kl_with_temperature_squared():
    cs, ct = np.tanh(rng.normal(size=(B, 9))), np.tanh(rng.normal(size=(B, 9)))
    temperature, s = 3.0, 10.0
    ls, lt = log_softmax(s * cs / temperature), log_softmax(s * ct / temperature)
    kl = [sum(np.exp(lt[i, j]) * (lt[i, j] - ls[i, j]) for j in range(9)) for i in range(B)]
    loss = make("kd", ds=9, dt=9, T=temperature, s=s)
    assert value(loss, cs, ct) == pytest.approx(temperature**2 * np.mean(kl), rel=1e-10)
    x = torch.from_numpy(cs).requires_grad_()
    torch.autograd.gradcheck(lambda z: loss(z, torch.from_numpy(ct), None), (x,))  # the hand-written backward


def test_fitnet_regresses_embeddings_and_pooled_maps():
    loss = make("fitnet")
    w = loss.regressor.weight.detach().numpy()
    assert value(loss, S, T) == pytest.approx(np.mean((S @ w.T - T) ** 2), rel=1e-12)
    maps = DISTILL_LOSSES.create("fitnet", student_shape=(3, 4, 4), teacher_shape=(2, 2, 2)).double()
    xs, xt = rng.normal(size=(B, 3, 4, 4)), rng.normal(size=(B, 2, 2, 2))
    k = maps.regressor.weight.detach().numpy()[:, :, 0, 0]  # (2, 3) 1x1 convolution
    r = np.einsum("oc,bchw->bohw", k, xs)
    pooled = r.reshape(B, 2, 2, 2, 2, 2).mean(axis=(3, 5))  # 4x4 -> 2x2 average
    assert value(maps, xs, xt) == pytest.approx(np.mean((pooled - xt) ** 2), rel=1e-12)
    with pytest.raises(ConfigError, match="pair two feature maps"):
        DISTILL_LOSSES.create("fitnet", student_shape=(3, 4, 4), teacher_shape=(6,))


def test_rkd_distance():
    def psi(x):
        d = {(i, j): np.linalg.norm(x[i] - x[j]) for i in range(B) for j in range(B) if i != j}
        mu = np.mean(list(d.values()))
        return {k: v / mu for k, v in d.items()}

    ps, pt = psi(S), psi(T)
    expected = np.mean([huber(ps[k] - pt[k]) for k in ps])
    assert value(make("rkd_distance"), S, T) == pytest.approx(expected, rel=1e-10)


def test_rkd_angle():
    def cos(x, i, j, k):
        a, b = x[i] - x[j], x[k] - x[j]
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    triplets = [(i, j, k) for i, j, k in itertools.product(range(B), repeat=3) if len({i, j, k}) == 3]
    expected = np.mean([huber(cos(S, *t) - cos(T, *t)) for t in triplets])
    assert value(make("rkd_angle"), S, T) == pytest.approx(expected, rel=1e-10)
    # max_samples bounds the O(n^3) cost: the loss of the first 4 samples
    first = [t for t in triplets if max(t) < 4]
    assert value(make("rkd_angle", max_samples=4), S, T) == pytest.approx(
        np.mean([huber(cos(S, *t) - cos(T, *t)) for t in first]), rel=1e-10
    )


def test_pkt():
    def conditional(x):
        u = unit(x)
        k = np.array([[(u[i] @ u[j] + 1) / 2 for j in range(B)] for i in range(B)])
        return k / k.sum(axis=1, keepdims=True)

    p, q = conditional(S), conditional(T)
    eps = 1e-7
    expected = np.mean([[q[i, j] * np.log((q[i, j] + eps) / (p[i, j] + eps)) for j in range(B)] for i in range(B)])
    assert value(make("pkt"), S, T) == pytest.approx(expected, rel=1e-10)


def test_similarity_preserving():
    def gram(x):
        g = x @ x.T
        return g / np.linalg.norm(g, axis=1, keepdims=True)

    expected = np.sum((gram(S) - gram(T)) ** 2) / B**2
    assert value(make("sp"), S, T) == pytest.approx(expected, rel=1e-10)


def test_ekd_rank_loss_on_critical_pairs():
    fprs, tau, momentum, topk = (0.5, 0.25, 0.1), 0.05, 0.3, 4
    loss = make("ekd", fprs=fprs, tau=tau, momentum=momentum, topk=topk, pos_weight=2.0, neg_weight=1.0)
    loss.train()
    us, ut = unit(S), unit(T)
    pairs = [(i, j) for i in range(B) for j in range(i + 1, B)]
    pos = [p for p in pairs if LABELS[p[0]] == LABELS[p[1]]]
    neg = [p for p in pairs if LABELS[p[0]] != LABELS[p[1]]]

    def thresholds(u):
        sims = sorted((u[i] @ u[j] for i, j in neg), reverse=True)
        return np.array([sims[min(int(np.floor(len(neg) * f)), len(neg) - 1)] for f in fprs])

    a_s, a_t = momentum * thresholds(us), momentum * thresholds(ut)  # running means from 0

    def rank(v, anchors):
        return sum(1 / (1 + np.exp(-(v - a) / tau)) for a in anchors)

    def gap(p):
        i, j = p
        return (rank(us[i] @ us[j], a_s) - rank(ut[i] @ ut[j], a_t)) ** 2

    hardest = sorted(neg, key=lambda p: -(us[p[0]] @ us[p[1]]))[:topk]
    expected = 2.0 * np.mean([gap(p) for p in pos]) + 1.0 * np.mean([gap(p) for p in hardest])
    assert value(loss, S, T) == pytest.approx(expected, rel=1e-9)
    assert np.allclose(loss.student_anchors.numpy(), a_s) and np.allclose(loss.teacher_anchors.numpy(), a_t)
    loss.eval()
    value(loss, S, T)
    assert np.allclose(loss.student_anchors.numpy(), a_s)  # thresholds move in training only


def test_relational_losses_take_embeddings_of_other_sizes_and_have_gradients():
    for name in ("rkd_distance", "rkd_angle", "pkt", "sp", "ekd", "fitnet"):
        loss = make(name)
        x = torch.from_numpy(S).requires_grad_()
        loss(x, torch.from_numpy(T), torch.from_numpy(LABELS)).backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, name
