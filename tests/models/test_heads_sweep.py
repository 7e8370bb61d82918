"""Registry-driven sweep over EVERY registered head: construction, forward, finite backward through the classifier,
state-dict round trip, exact resume (save -> load -> the same next loss), subsets with no target, low precision,
and the chunking / Partial FC support each head claims. Sharded = single-process on 2 and 3 gloo ranks for every
head is tests/train/test_chunked_ce.py (it iterates the same registry). A new head is one file plus its formula
test; this file covers it without edits."""

from __future__ import annotations

import copy

import pytest
import torch

import facezoo
from facezoo.errors import ConfigError
from facezoo.models.heads import HEADS
from facezoo.train.classifier import ShardedClassifier

NAMES = HEADS.names()
IN, D, C, B = 5, 8, 11, 12


def build(name, seed=0):
    torch.manual_seed(seed)
    return facezoo.create_head(name, D, C).double()


def data(step):
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(B, IN, dtype=torch.float64, generator=g) * 3
    return x, torch.randint(0, C, (B,), generator=g)


@pytest.mark.parametrize("name", NAMES)
def test_construct_forward_backward(name):
    head = build(name)
    assert head.name == name.replace("_plus", "") and head.weight.shape[0] == C
    assert f"num_classes={C}" in repr(head)
    x = torch.randn(B, D, dtype=torch.float64) * 4
    labels = torch.randint(0, C, (B,))
    logits = head(x, labels)
    assert logits.shape == (B, C) and torch.isfinite(logits).all()
    x = x.requires_grad_(True)
    loss = ShardedClassifier(head, C)(x, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for key, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), key
    # a subset of class rows holding none of the targets (every label -1): finite logits, nothing to add a margin to
    sub = head.logits(x.detach(), head.weight[:3], torch.full((B,), -1), rows=slice(0, 3))
    assert sub.shape == (B, 3) and torch.isfinite(sub).all()


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    head = build(name).train()
    clf = ShardedClassifier(head, C)
    for step in range(2):  # move the buffers (running statistics, counters) away from their initial values
        clf(torch.randn(B, D, dtype=torch.float64), data(step)[1])
    other = build(name, seed=1)
    other.load_state_dict(head.state_dict())
    for (key, a), b in zip(head.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), key
    x, labels = torch.randn(B, D, dtype=torch.float64), data(3)[1]
    torch.testing.assert_close(other.eval()(x, labels), head.eval()(x, labels), rtol=0, atol=0)


def _train(name, steps, state=None):
    """Linear backbone + head, plain SGD over both, `steps` steps from `state` (or fresh); losses, final state."""
    torch.manual_seed(0)
    backbone = torch.nn.Linear(IN, D).double()
    head = build(name)
    clf = ShardedClassifier(head, C).train()
    if state is not None:
        backbone.load_state_dict(state["backbone"])
        clf.load_full_state_dict(state["head"])
    opt = torch.optim.SGD([*backbone.parameters(), *clf.parameters()], lr=0.01)
    first = 0 if state is None else state["step"]
    losses = []
    for step in range(first, first + steps):
        x, labels = data(step)
        loss = clf(backbone(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    saved = {"backbone": copy.deepcopy(backbone.state_dict()), "head": clf.full_state_dict(), "step": first + steps}
    return losses, saved


@pytest.mark.parametrize("name", NAMES)
def test_resume_repeats_the_next_losses(name):
    """Checkpoints keep each head's buffers and learnable parameters (margins, biases, the kappa module)."""
    straight, end = _train(name, 4)
    head_part, saved = _train(name, 2)
    resumed, end2 = _train(name, 2, copy.deepcopy(saved))
    assert torch.equal(torch.stack(head_part + resumed), torch.stack(straight)), name
    for key, value in end["head"].items():
        assert torch.equal(end2["head"][key], value), key


@pytest.mark.parametrize("name", NAMES)
def test_low_precision_input_gives_float32_logits(name):
    torch.manual_seed(0)
    head = facezoo.create_head(name, D, C).eval()
    x, labels = torch.randn(B, D) * 4, torch.randint(0, C, (B,))
    low = head.logits(x.bfloat16(), head.weight.bfloat16(), labels).detach()
    assert torch.isfinite(low).all()
    if name == "softmax":  # the plain linear head keeps the input's precision (the loss upcasts its logits)
        return
    assert low.dtype == torch.float32  # the margin runs in float32 after a low-precision matmul
    full = head(x, labels).detach()
    assert torch.allclose(low, full, atol=float(full.abs().max()) * 0.05)


@pytest.mark.parametrize("name", NAMES)
def test_support_claims_are_enforced(name):
    head = build(name)
    if head.cannot_chunk:
        with pytest.raises(ConfigError, match=f"head '{name}' cannot split its classes into chunks"):
            ShardedClassifier(head, C, chunk_size=4)
        assert ShardedClassifier(head, C, chunk_size="auto")._chunk(10**6, 10**6) == 0  # auto never chunks it
    else:
        ShardedClassifier(head, C, chunk_size=4)
    if head.cannot_sample:
        with pytest.raises(ConfigError, match="cannot train with Partial FC"):
            ShardedClassifier(head, C, sample_rate=0.5)
    else:
        ShardedClassifier(head, C, sample_rate=0.5)
