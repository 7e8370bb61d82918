"""Every registered optimizer: built from the config with its weight-decay groups, it minimises, and Partial FC's
row update (RowOptimizer) applies exactly its rule to the sampled rows and leaves the other rows alone."""

import pytest
import torch
from torch import nn

from facezoo.config import OptimConfig
from facezoo.train.optim import OPTIMIZERS, RowOptimizer, build_optimizer

NAMES = OPTIMIZERS.names()
C, D = 7, 4


def _cfg(name, **kw):
    return OptimConfig(**{"name": name, "lr": 0.05, "weight_decay": 0.01, **kw})


@pytest.mark.parametrize("name", NAMES)
def test_groups_take_lr_and_decay_from_the_config(name):
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    model[2].weight.requires_grad_(False)  # frozen: left out
    opt = build_optimizer(_cfg(name, no_decay_bn_bias=True), [model])
    assert isinstance(opt, torch.optim.Optimizer)
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sorted(decay) == sorted(id(p) for p in trainable)  # each trainable parameter once
    assert all(decay[id(p)] == (0.01 if p.ndim > 1 else 0.0) for p in trainable)
    assert all(g["lr"] == 0.05 for g in opt.param_groups)
    plain = build_optimizer(_cfg(name), [model])
    assert {g["weight_decay"] for g in plain.param_groups} == {0.01}


@pytest.mark.parametrize("name", NAMES)
def test_minimises_a_least_squares_problem(name):
    torch.manual_seed(0)
    x, w_true = torch.randn(64, 5), torch.randn(5, 1)
    model = nn.Linear(5, 1, bias=False)
    opt = build_optimizer(_cfg(name, weight_decay=0.0), [model])
    losses = []
    for _ in range(300):
        loss = ((model(x) - x @ w_true) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.01 * losses[0]


def _grads(steps):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(C, D, dtype=torch.float64, generator=g) for _ in range(steps)]


def _row_step(weight, opt, rows_opt, grad, rows):
    """One Partial FC step as the trainer takes it: the dense step (no gradient on the full matrix), then the
    sampled rows' step through RowOptimizer and the write-back."""
    sub = weight.detach()[rows].clone().requires_grad_()
    sub.grad = grad[rows].clone()
    row_opt = rows_opt.load(sub, rows)
    opt.step()
    row_opt.step()
    rows_opt.store(sub, rows)


@pytest.mark.parametrize("name", NAMES)
def test_row_update_with_every_row_sampled_equals_the_dense_update(name):
    torch.manual_seed(0)
    dense, sparse = nn.Linear(D, C, bias=False).double(), nn.Linear(D, C, bias=False).double()
    sparse.load_state_dict(dense.state_dict())
    dense_opt, sparse_opt = build_optimizer(_cfg(name), [dense]), build_optimizer(_cfg(name), [sparse])
    rows_opt = RowOptimizer(sparse_opt, sparse.weight)
    for i, grad in enumerate(_grads(3)):
        dense.weight.grad = grad.clone()
        dense_opt.step()
        perm = torch.randperm(C, generator=torch.Generator().manual_seed(i))  # rows in any order
        _row_step(sparse.weight, sparse_opt, rows_opt, grad, perm)
    torch.testing.assert_close(sparse.weight, dense.weight, rtol=0, atol=1e-12)
    want, got = dense_opt.state[dense.weight], sparse_opt.state[sparse.weight]
    assert sorted(got) == sorted(want)
    for key in want:
        torch.testing.assert_close(torch.as_tensor(got[key]), torch.as_tensor(want[key]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_row_update_leaves_unsampled_rows_and_their_state_untouched(name):
    torch.manual_seed(0)
    lin = nn.Linear(D, C, bias=False).double()
    opt = build_optimizer(_cfg(name), [lin])
    rows_opt = RowOptimizer(opt, lin.weight)
    first, second = _grads(2)
    _row_step(lin.weight, opt, rows_opt, first, torch.arange(C))  # fill every row's state
    w0 = lin.weight.detach().clone()
    s0 = {k: v.clone() for k, v in opt.state[lin.weight].items() if torch.is_tensor(v) and v.shape == w0.shape}
    rows = torch.tensor([5, 1, 4])
    _row_step(lin.weight, opt, rows_opt, second, rows)
    out = torch.ones(C, dtype=torch.bool)
    out[rows] = False
    assert torch.equal(lin.weight.detach()[out], w0[out])  # bit-identical: no decay, no state drift
    assert not torch.equal(lin.weight.detach()[rows], w0[rows])
    for key, before in s0.items():
        assert torch.equal(opt.state[lin.weight][key][out], before[out]), key
