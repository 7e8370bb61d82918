"""Margin heads against their closed-form formulas (numpy / math, float64), forward and gradient."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import facezoo
from facezoo.errors import ConfigError, ModelError
from facezoo.models.heads import HEADS
from facezoo.models.heads.margin import sphere_psi

NAMES = {"softmax", "normface", "sphereface", "cosface", "arcface", "combined", "curricularface", "magface", "adaface"}
# every registered head; the others have their formula tests in test_heads_<origin>.py, all are in test_heads_sweep.py
ALL = NAMES | {
    "adacos", "adam_softmax", "arcnegface", "circleloss", "mv_softmax", "npcface",  # FaceX-Zoo
    "cifp", "ddl", "scf",  # TFace
    "subcenter_arcface",  # InsightFace
    "elasticface_arc", "elasticface_arc_plus", "elasticface_cos", "elasticface_cos_plus", "sphereface2", "uniface",
}  # fmt: skip
COSINE = sorted(NAMES - {"softmax"})
STATEFUL = {"sphereface", "curricularface", "adaface"}
D, C, B = 6, 7, 5


def make(name: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return facezoo.create_head(name, D, C, **kw).double()


def batch(seed: int = 1, norm_range=(4.0, 130.0)):
    """x (B, D) with row norms spread over norm_range (MagFace clamp, AdaFace z both ways), labels (B,)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=g, dtype=torch.float64)
    norms = torch.empty(B, dtype=torch.float64).uniform_(*norm_range, generator=g)
    x = x / x.norm(dim=1, keepdim=True) * norms[:, None]
    labels = torch.randint(0, C, (B,), generator=g)
    return x, labels


def np_cos(x: torch.Tensor, w: torch.Tensor) -> np.ndarray:
    x, w = x.detach().numpy(), w.detach().numpy()
    xn = x / np.sqrt((x**2).sum(1, keepdims=True))
    wn = w / np.sqrt((w**2).sum(1, keepdims=True))
    return np.clip(xn @ wn.T, -1, 1)


# ---- closed-form target logits (numpy, written from the papers' formulas) ----------------------------------


def ref_arc(c, m, s=64.0, easy=False):
    theta = np.arccos(c)
    if easy:
        return s * np.where(c > 0, np.cos(theta + m), c)
    return s * np.where(theta + m < np.pi, np.cos(theta + m), c - m * np.sin(m))


def ref_lambda(it, base=1000.0, gamma=0.12, power=1.0, lmin=5.0):
    return max(lmin, base * (1 + gamma * it) ** (-power))


def ref_psi(theta, m=4):
    k = np.clip(np.floor(m * theta / np.pi), 0, m - 1)
    return (-1.0) ** k * np.cos(m * theta) - 2 * k


def ref_magface_m(a, l_a=10.0, u_a=110.0, l_m=0.45, u_m=0.8):
    a = np.clip(a, l_a, u_a)
    return (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m


def expected_logits(name, head, x, labels):
    """Full (B, C) expected logits from the formula, for a head in eval mode (state as it is)."""
    w = head.weight
    if name == "softmax":
        return x.detach().numpy() @ w.detach().numpy().T
    c = np_cos(x, w)
    rows, y = np.arange(B), labels.numpy()
    cy = c[rows, y]
    out = 64.0 * c
    norms = np.sqrt((x.detach().numpy() ** 2).sum(1))
    if name == "normface":
        return out
    if name == "cosface":
        tgt = 64.0 * (cy - 0.35)
    elif name == "arcface":
        tgt = ref_arc(cy, 0.5)
    elif name == "combined":
        tgt = 64.0 * (np.cos(1.0 * np.arccos(cy) + 0.3) - 0.2)
    elif name == "sphereface":
        lam = ref_lambda(int(head.iteration))
        tgt = 64.0 * (lam * cy + ref_psi(np.arccos(cy))) / (1 + lam)
    elif name == "curricularface":
        t = float(head.t)
        bound = np.cos(np.arccos(cy) + 0.5)
        out = 64.0 * np.where(c > bound[:, None], c * (t + c), c)
        tgt = ref_arc(cy, 0.5)
    elif name == "magface":
        tgt = ref_arc(cy, ref_magface_m(norms))
    elif name == "adaface":
        a = np.clip(norms, 0.001, 100)
        z = np.clip(0.333 * (a - float(head.batch_mean)) / (float(head.batch_std) + 1e-3), -1, 1)
        theta = np.arccos(np.clip(cy, -1 + 1e-3, 1 - 1e-3))
        tgt = 64.0 * (np.cos(np.clip(theta - 0.4 * z, 1e-3, np.pi - 1e-3)) - (0.4 + 0.4 * z))
    else:
        raise AssertionError(name)
    out = out.copy()
    out[rows, y] = tgt
    return out


# ---- registry -----------------------------------------------------------------------------------------------


def test_registry_names_and_unknown_name():
    assert set(HEADS.names()) == ALL
    assert set(facezoo.list_heads()) == ALL
    with pytest.raises(ConfigError, match="Did you mean 'arcface'"):
        facezoo.create_head("arcfce", D, C)


def test_bad_hparams_and_shapes_raise_facezoo_errors():
    with pytest.raises(ConfigError, match="s="):
        facezoo.create_head("cosface", D, C, s=0)
    with pytest.raises(ConfigError, match="argument 'm': expected an integer, got float 2.5"):
        facezoo.create_head("sphereface", D, C, m=2.5)  # the registry's kwarg type check
    with pytest.raises(ConfigError, match="m="):
        facezoo.create_head("sphereface", D, C, m=0)  # the head's own range check
    with pytest.raises(ConfigError, match="num_classes"):
        facezoo.create_head("arcface", D, 0)
    head = make("arcface")
    with pytest.raises(ModelError, match=f"\\(batch, {D}\\)"):
        head(torch.zeros(2, D + 1, dtype=torch.float64), torch.zeros(2, dtype=torch.long))


def test_weight_and_repr():
    head = facezoo.create_head("arcface", 64, 1000, m=0.4)
    assert head.weight.shape == (1000, 64) and isinstance(head.weight, torch.nn.Parameter)
    assert abs(head.weight.std().item() - 0.01) < 0.001
    assert "m=0.4" in repr(head) and "s=64.0" in repr(head)


# ---- forward against the formula ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NAMES))
def test_forward_matches_formula(name):
    head = make(name).eval()
    if name == "curricularface":
        head.t.fill_(0.3)
    if name == "sphereface":
        head.iteration.fill_(50)
    if name == "adaface":
        head.batch_mean.fill_(40.0)
        head.batch_std.fill_(30.0)
    x, labels = batch()
    got = head(x, labels).detach().numpy()
    np.testing.assert_allclose(got, expected_logits(name, head, x, labels), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(NAMES))
def test_regularizer(name):
    head = make(name)
    x, _ = batch()
    reg = head.regularizer(x)
    assert reg.shape == ()
    if name != "magface":
        assert float(reg) == 0.0


def test_magface_margin_and_regularizer_values():
    head = make("magface")
    norms = torch.tensor([10.0, 60.0, 110.0, 5.0, 200.0], dtype=torch.float64)
    np.testing.assert_allclose(head.margin_of(norms).numpy(), [0.45, 0.625, 0.8, 0.45, 0.8], atol=1e-12)
    x = torch.zeros(3, D, dtype=torch.float64)
    x[:, 0] = torch.tensor([10.0, 60.0, 110.0])
    g = [a / 110**2 + 1 / a for a in (10.0, 60.0, 110.0)]
    assert float(head.regularizer(x)) == pytest.approx(35.0 * sum(g) / 3, rel=1e-12)


def test_sphereface_psi_in_each_interval():
    # midpoints of [k pi/4, (k+1) pi/4]: cos(4 theta) = 0 so psi = -2k; ends: psi(0) = 1, psi(pi) = -7
    thetas = [0.0, math.pi / 8, math.pi / 4, 3 * math.pi / 8, 5 * math.pi / 8, 7 * math.pi / 8, math.pi]
    want = [1.0, 0.0, -1.0, -2.0, -4.0, -6.0, -7.0]
    c = torch.tensor([math.cos(t) for t in thetas], dtype=torch.float64)
    np.testing.assert_allclose(sphere_psi(c, 4).numpy(), want, atol=1e-9)
    grid = torch.linspace(0, math.pi, 2001, dtype=torch.float64)
    psi = sphere_psi(grid.cos(), 4).numpy()
    assert np.all(np.diff(psi) <= 1e-12), "psi must be non-increasing in theta"


def test_sphereface_lambda_schedule():
    head = make("sphereface").train()
    x, labels = batch()
    for n in (1, 2, 3):
        head(x, labels)
        assert int(head.iteration) == n
        assert float(head.current_lambda()) == pytest.approx(1000.0 / (1 + 0.12 * n), rel=1e-12)
    head.eval()
    head(x, labels)
    assert int(head.iteration) == 3, "eval mode must not advance the schedule"
    head.iteration.fill_(10_000)  # 1000 / 1201 < 5: floor at lambda_min
    assert float(head.current_lambda()) == 5.0


def test_curricularface_t_update_and_use_in_same_step():
    # 2-D hand-made case: class 0 at angle 0, class 1 at 0.3, class 2 at 2.0; x at angle 0.2 (target 0)
    head = facezoo.create_head("curricularface", 2, 3).double().train()
    angles = torch.tensor([0.0, 0.3, 2.0], dtype=torch.float64)
    with torch.no_grad():
        head.weight.copy_(torch.stack([angles.cos(), angles.sin()], 1))
    x = torch.tensor([[math.cos(0.2), math.sin(0.2)]], dtype=torch.float64) * 3.0
    out = head(x, torch.tensor([0])).detach().numpy()[0]
    t1 = 0.01 * math.cos(0.2)  # t0 = 0: updated before use
    assert float(head.t) == pytest.approx(t1, rel=1e-12)
    c1, c2 = math.cos(0.1), math.cos(1.8)
    assert c1 > math.cos(0.2 + 0.5) > c2  # class 1 hard, class 2 easy
    np.testing.assert_allclose(out, [64 * math.cos(0.7), 64 * c1 * (t1 + c1), 64 * c2], rtol=1e-12)
    head(x, torch.tensor([0]))
    assert float(head.t) == pytest.approx(0.99 * t1 + 0.01 * math.cos(0.2), rel=1e-12)
    # rows without a target in the subset do not move t; eval mode does not either
    t2 = float(head.t)
    head(x, torch.tensor([-1]))
    head.eval()
    head(x, torch.tensor([0]))
    assert float(head.t) == t2


def test_adaface_hand_made_batch():
    head = facezoo.create_head("adaface", 2, 2, h=1.0, t_alpha=1.0).double().train()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    a = np.array([10.0, 20.0, 30.0, 40.0])
    th = 0.02  # small target angle: with z = +1 the angle 0.0447 - 0.4 clips at eps
    thetas = np.array([1.0, 1.2, 0.9, th])
    x = torch.tensor(np.stack([np.cos(thetas), np.sin(thetas)], 1) * a[:, None])
    out = head(x, torch.zeros(4, dtype=torch.long)).detach().numpy()
    mu, sigma = 25.0, math.sqrt((15**2 + 5**2 + 5**2 + 15**2) / 3)  # unbiased std
    assert float(head.batch_mean) == pytest.approx(mu) and float(head.batch_std) == pytest.approx(sigma)
    z = np.array([-1.0, -5 / (sigma + 1e-3), 5 / (sigma + 1e-3), 1.0])  # +-15/12.9 clipped to +-1
    m = 0.4
    theta_c = np.arccos(np.clip(np.cos(thetas), -1 + 1e-3, 1 - 1e-3))
    ang = np.clip(theta_c - m * z, 1e-3, np.pi - 1e-3)
    assert ang[3] == 1e-3
    np.testing.assert_allclose(out[:, 0], 64 * (np.cos(ang) - (m + m * z)), rtol=1e-10)
    np.testing.assert_allclose(out[:, 1], 64 * np.sin(thetas), rtol=1e-10)
    # momentum: a second batch moves the stats by t_alpha of the way
    head2 = facezoo.create_head("adaface", 2, 2).double().train()
    head2(x, torch.zeros(4, dtype=torch.long))
    assert float(head2.batch_mean) == pytest.approx(0.99 * 20 + 0.01 * mu)
    assert float(head2.batch_std) == pytest.approx(0.99 * 100 + 0.01 * sigma)


# ---- gradients ----------------------------------------------------------------------------------------------


def target_grad(head, c: np.ndarray, norms=None) -> np.ndarray:
    """d(target logit)/d(target cos) by autograd through head.margin, one sample per row, target column 0."""
    cos = torch.tensor(np.stack([c, np.full_like(c, -0.9)], 1), requires_grad=True)
    n = torch.full((len(c),), 30.0, dtype=torch.float64) if norms is None else norms
    out = head.margin(cos, torch.zeros(len(c), dtype=torch.long), n)
    (g,) = torch.autograd.grad(out[:, 0].sum(), cos)
    assert torch.all(g[:, 1] == 0), "the target logit must not depend on other columns"
    return g[:, 0].numpy()


THETAS = np.array([0.3, 0.9, 1.5, 2.2, 2.5, 2.9])  # 2.9 > pi - 0.5: ArcFace threshold region


def test_arcface_gradient_exact_and_straight_through():
    c = np.cos(THETAS)
    want = np.where(np.pi > THETAS + 0.5, 64 * np.sin(THETAS + 0.5) / np.sin(THETAS), 64.0)
    np.testing.assert_allclose(target_grad(make("arcface"), c), want, rtol=1e-9)
    st = make("arcface", straight_through=True)
    np.testing.assert_allclose(target_grad(st, c), 64.0, rtol=1e-12)
    x, labels = batch()
    exact = make("arcface")(x, labels)
    np.testing.assert_allclose(st(x, labels).detach().numpy(), exact.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_other_target_gradients_closed_form():
    c, th = np.cos(THETAS), THETAS
    np.testing.assert_allclose(target_grad(make("cosface"), c), 64.0, rtol=1e-12)
    np.testing.assert_allclose(target_grad(make("normface"), c), 64.0, rtol=1e-12)
    comb = 64 * 1.0 * np.sin(1.0 * th + 0.3) / np.sin(th)
    np.testing.assert_allclose(target_grad(make("combined"), c), comb, rtol=1e-9)
    sph = make("sphereface").eval()
    sph.iteration.fill_(100)
    lam = ref_lambda(100)
    k = np.floor(4 * th / np.pi)
    dpsi = (-1.0) ** k * 4 * np.sin(4 * th) / np.sin(th)  # d cos(4 theta) / d cos = 4 sin(4 theta) / sin(theta)
    np.testing.assert_allclose(target_grad(sph, c), 64 * (lam + dpsi) / (1 + lam), rtol=1e-9)
    # MagFace at a = 60 (m = 0.625); and d/da = -s sin(theta + m) m'(a) inside [l_a, u_a]
    mag = make("magface")
    norms = torch.full((len(c),), 60.0, dtype=torch.float64, requires_grad=True)
    ok = th + 0.625 < np.pi
    want = np.where(ok, 64 * np.sin(th + 0.625) / np.sin(th), 64.0)
    np.testing.assert_allclose(target_grad(mag, c, norms.detach()), want, rtol=1e-9)
    cos = torch.tensor(np.stack([c, c], 1))
    out = mag.margin(cos, torch.zeros(len(c), dtype=torch.long), norms)
    (ga,) = torch.autograd.grad(out[:, 0].sum(), norms)
    want_a = np.where(ok, -64 * np.sin(th + 0.625) * 0.35 / 100, -64 * (np.sin(0.625) + 0.625 * np.cos(0.625)) * 0.0035)
    np.testing.assert_allclose(ga.numpy(), want_a, rtol=1e-9)
    # AdaFace (eval, mu=30, sigma=100 -> z = 0 at a = 30): d/dc = s sin(theta)/sin(theta) = s; norms get no gradient
    ada = make("adaface").eval()
    ada.batch_mean.fill_(30.0)
    np.testing.assert_allclose(target_grad(ada, c), 64.0, rtol=1e-9)
    ada.batch_mean.fill_(10.0)  # z = 0.333 * 20 / 100.001
    z = 0.333 * 20 / 100.001
    np.testing.assert_allclose(target_grad(ada, c), 64 * np.sin(th - 0.4 * z) / np.sin(th), rtol=1e-9)
    n = torch.full((len(c),), 30.0, dtype=torch.float64, requires_grad=True)
    cos = torch.tensor(np.stack([c, c], 1), requires_grad=True)
    ada.margin(cos, torch.zeros(len(c), dtype=torch.long), n).sum().backward()
    assert cos.grad is not None and (n.grad is None or torch.all(n.grad == 0)), "AdaFace detaches the norms"


def test_curricularface_negative_gradient():
    head = make("curricularface").eval()
    head.t.fill_(0.2)
    cy = math.cos(1.2)  # cos(theta_y + m) = cos(1.7) < 0
    negs = np.array([0.5, -0.5, 0.0, -0.2])  # > cos(1.7) ~ -0.129 except -0.5 and -0.2
    cos = torch.tensor([[cy, *negs]], requires_grad=True)
    out = head.margin(cos, torch.tensor([0]), torch.tensor([30.0], dtype=torch.float64))
    (g,) = torch.autograd.grad(out[0, 1:].sum(), cos)
    hard = negs > math.cos(1.7)
    np.testing.assert_allclose(g[0, 1:].numpy(), np.where(hard, 64 * (0.2 + 2 * negs), 64.0), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(NAMES))
def test_gradcheck(name):
    head = make(name).eval()  # eval: state fixed between the numerical evaluations
    x, labels = batch(seed=3, norm_range=(15.0, 95.0))  # away from MagFace's clamp corners
    w = head.weight.detach().clone().requires_grad_(True)
    if name == "adaface":  # norms are detached by design: check d/dcos with norms held fixed
        norms = x.norm(dim=1)
        cos = torch.tensor(np_cos(x, w), requires_grad=True)
        assert torch.autograd.gradcheck(lambda c: head.margin(c, labels, norms), (cos,))
        return
    x = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: head.logits(a, b, labels), (x, w))


# ---- shape of the margin over theta ---------------------------------------------------------------------------


def arc_target_curve(m=0.5, **kw):
    head = make("arcface", m=m, **kw)
    theta = np.linspace(0, np.pi, 3001)
    c = torch.tensor(np.cos(theta))
    cos = torch.stack([c, torch.zeros_like(c)], 1)
    t = head.margin(cos, torch.zeros(len(c), dtype=torch.long), torch.ones(len(c), dtype=torch.float64))[:, 0]
    return theta, t.numpy()


@pytest.mark.parametrize("m", [0.5, 0.8])
def test_arcface_monotonic_with_threshold(m):
    theta, t = arc_target_curve(m)
    assert np.all(np.diff(t) <= 1e-9), "target logit must be non-increasing in theta"
    region = theta >= np.pi - m + 1e-9
    np.testing.assert_allclose(t[region], 64 * (np.cos(theta[region]) - m * np.sin(m)), rtol=1e-9, atol=1e-9)
    # atol: at cos = 1 exactly, sin is floored at 1e-6 (finite gradient), moving the logit by <= s*sin(m)*1e-6
    np.testing.assert_allclose(t[~region], 64 * np.cos(theta[~region] + m), rtol=1e-9, atol=1e-4)


def test_arcface_easy_margin_only_where_cos_positive():
    theta, t = arc_target_curve(0.5, easy_margin=True)
    pos = np.cos(theta) > 0
    np.testing.assert_allclose(t[pos], 64 * np.cos(theta[pos] + 0.5), rtol=1e-9, atol=1e-4)
    np.testing.assert_allclose(t[~pos], 64 * np.cos(theta[~pos]), rtol=1e-12, atol=1e-12)


# ---- the subset (shard / Partial FC) interface ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NAMES))
def test_subset_rows_match_full_columns(name):
    head = make(name).eval()
    x, _ = batch(seed=5)
    labels = torch.tensor([0, 3, 6, 2, 5])
    rows = torch.tensor([5, 0, 4, 2])  # classes 3 and 6 missing: labels -1 for samples 1 and 2
    position = {int(r): i for i, r in enumerate(rows)}
    sub_labels = torch.tensor([position.get(int(y), -1) for y in labels])
    assert sub_labels.tolist() == [1, -1, -1, 3, 0]
    full = head(x, labels).detach()
    sub = head.logits(x, head.weight[rows], sub_labels).detach()
    if name == "curricularface":
        # target absent from the subset: its cos(theta_y + m) is unknown, so that row gets plain s*cos
        have = sub_labels >= 0
        torch.testing.assert_close(sub[have], full[:, rows][have], rtol=1e-12, atol=1e-12)
        cos = torch.tensor(np_cos(x, head.weight[rows]))
        torch.testing.assert_close(sub[~have], 64 * cos[~have], rtol=1e-12, atol=1e-12)
    else:
        torch.testing.assert_close(sub, full[:, rows], rtol=1e-12, atol=1e-12)
    if name in {"sphereface", "adaface"}:  # state updates do not depend on which rows are present
        a, b = copy.deepcopy(head).train(), copy.deepcopy(head).train()
        torch.testing.assert_close(b.logits(x, b.weight[rows], sub_labels), a(x, labels)[:, rows])


def test_subset_gradient_matches_full():
    head = make("arcface")
    x, _ = batch(seed=6)
    labels = torch.tensor([0, 3, 6, 2, 5])
    rows = torch.tensor([5, 0, 4, 2])
    sub_labels = torch.tensor([1, -1, -1, 3, 0])
    probe = torch.randn(B, len(rows), dtype=torch.float64)
    x1 = x.clone().requires_grad_(True)
    (head(x1, labels)[:, rows] * probe).sum().backward()
    x2 = x.clone().requires_grad_(True)
    (head.logits(x2, head.weight[rows], sub_labels) * probe).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-10, atol=1e-12)


# ---- state, modes and precision ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_state_in_buffers_updated_only_in_training(name):
    head = make(name)
    x, labels = batch()
    before = {k: v.clone() for k, v in head.state_dict().items() if k != "weight"}
    assert before, "stateful heads keep their state in buffers"
    head.eval()(x, labels)
    assert all(torch.equal(head.state_dict()[k], v) for k, v in before.items())
    head.train()(x, labels)
    assert any(not torch.equal(head.state_dict()[k], v) for k, v in before.items())


@pytest.mark.parametrize("name", COSINE)
def test_low_precision_input_gives_float32_logits(name):
    head = facezoo.create_head(name, D, C).eval()
    x, labels = batch()
    ref = head(x.float(), labels)
    low = head.logits(x.bfloat16(), head.weight.bfloat16(), labels)
    assert low.dtype == torch.float32
    assert torch.allclose(low, ref, atol=64 * 0.05)
