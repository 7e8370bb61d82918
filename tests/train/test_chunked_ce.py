"""Chunked losses: same loss, gradients and head state as the unchunked path, for every head that can chunk.

Also every registered head sharded over 2 and 3 gloo ranks (heads that need other ranks' data: target cosines,
column statistics, global thresholds) against single-process training, full FC and Partial FC (the single process
pinned to the ranks' sampled rows), chunked and not.
"""

import os

import pytest
import torch
import torch.nn.functional as F

import facezoo
from facezoo.errors import ConfigError
from facezoo.models.heads import HEADS
from facezoo.train.classifier import CHUNK_BUDGET, ShardedClassifier, chunk_columns
from facezoo.train.distributed import World, shard_range

NAMES = sorted(HEADS.names())
DIM, IN, CLASSES, BATCH = 8, 5, 11, 12  # 11 classes: chunks of 3 and 4 leave a remainder, 1 and 11 divide
PFC_CLASSES, RATE = 61, 0.25  # Partial FC keeps k = max(int(rate * shard), global batch 12) rows of each shard


def test_every_registered_head_is_covered():
    assert "cifp" in NAMES and "sphereface2" in NAMES
    assert {
        "softmax",
        "normface",
        "cosface",
        "arcface",
        "combined",
        "sphereface",
        "curricularface",
        "magface",
        "adaface",
    } <= set(NAMES)


def test_auto_chunking_follows_the_element_budget():
    assert chunk_columns("auto", 512, 93431) == 0  # 47.8M logits <= 2^26: one piece, no recompute
    assert chunk_columns("auto", 512, 1_000_000) == CHUNK_BUDGET // 512 == 131072  # 10M classes, rate 0.1
    assert chunk_columns("auto", 10, 100, budget=500) == 50
    assert chunk_columns(0, 512, 10**7) == 0 and chunk_columns(4, 12, 11) == 4 and chunk_columns(11, 12, 11) == 0


def _problem(seed=0, classes=CLASSES):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, IN, dtype=torch.float64, generator=g) * 3
    labels = torch.randint(0, classes, (BATCH,), generator=g)
    labels[:3] = torch.tensor([0, classes - 1, classes // 2])  # first and last chunk hold targets
    return x, labels


def _run(name, chunk, steps=2, sample_rate=1.0, classes=CLASSES):
    """`steps` forward/backward passes through Linear backbone + ShardedClassifier; loss, grads, buffers."""
    torch.manual_seed(0)
    backbone = torch.nn.Linear(IN, DIM).double()
    head = facezoo.create_head(name, DIM, classes).double()
    clf = ShardedClassifier(head, classes, sample_rate=sample_rate, chunk_size=chunk)
    out = []
    for step in range(steps):
        x, labels = _problem(step, classes)
        backbone.zero_grad()
        head.weight.grad = None
        emb = backbone(x)
        emb.retain_grad()
        torch.manual_seed(100 + step)  # the same Partial FC sample for every chunk size
        loss = clf(emb, labels)
        loss.backward()
        weight_grad = head.weight.grad if sample_rate == 1.0 else clf.sampled.grad
        out.append(
            {
                "loss": loss.detach(),
                "emb": emb.grad,
                "weight": weight_grad.clone(),
                "backbone": backbone.weight.grad.clone(),
                "params": {k: p.grad.clone() for k, p in head.named_parameters() if k != "weight"},
                "buffers": {k: v.clone() for k, v in head.named_buffers()},
            }
        )
        for p in head.parameters():
            p.grad = None
    return out


@pytest.mark.parametrize("name", NAMES)
def test_chunked_equals_unchunked(name):
    ref = _run(name, 0)
    if HEADS.get(name)(embedding_size=DIM, num_classes=CLASSES).cannot_chunk:
        with pytest.raises(ConfigError, match="cannot split its classes into chunks"):
            _run(name, 3)
        assert torch.equal(_run(name, "auto")[0]["loss"], ref[0]["loss"])  # auto never chunks it
        return
    for chunk in (1, 3, 4, 11 - 1):
        got = _run(name, chunk)
        for r, g in zip(ref, got):
            assert torch.allclose(g["loss"], r["loss"], rtol=0, atol=1e-10), chunk
            for key in ("emb", "weight", "backbone"):
                assert torch.allclose(g[key], r[key], rtol=1e-12, atol=1e-10), (chunk, key)
            for key, value in r["params"].items():  # learnable biases, the kappa module
                assert torch.allclose(g["params"][key], value, rtol=1e-12, atol=1e-10), (chunk, key)
            for key, value in r["buffers"].items():  # state updated once per step, not once per chunk
                assert torch.equal(g["buffers"][key], value), (chunk, key)


@pytest.mark.parametrize("name", ["arcface", "curricularface", "adaface", "adacos", "sphereface2", "subcenter_arcface"])
def test_chunked_equals_unchunked_with_partial_fc(name):
    ref = _run(name, 0, sample_rate=RATE, classes=PFC_CLASSES)
    got = _run(name, 5, sample_rate=RATE, classes=PFC_CLASSES)
    assert ref[0]["weight"].shape[0] == 15  # int(0.25 * 61) = 15 of 61 rows sampled
    for r, g in zip(ref, got):
        assert torch.allclose(g["loss"], r["loss"], rtol=0, atol=1e-10)
        for key in ("emb", "weight", "backbone"):
            assert torch.allclose(g[key], r[key], rtol=1e-12, atol=1e-10), key


def test_state_is_updated_exactly_once_per_step():
    """After 3 chunked steps: SphereFace counted 3 iterations; CurricularFace's t is the hand-computed EMA."""
    sphere = _run("sphereface", 2, steps=3)
    assert int(sphere[-1]["buffers"]["iteration"]) == 3
    torch.manual_seed(0)
    backbone = torch.nn.Linear(IN, DIM).double()
    w = F.normalize(facezoo.create_head("curricularface", DIM, CLASSES).double().weight.detach(), dim=1)
    t = torch.zeros((), dtype=torch.float64)
    got = _run("curricularface", 3, steps=2)
    for step in range(2):
        x, labels = _problem(step)
        cos_y = (F.normalize(backbone(x).detach(), dim=1) * w[labels]).sum(1)
        t = 0.99 * t + 0.01 * cos_y.mean()
        assert torch.allclose(got[step]["buffers"]["t"], t, atol=1e-12)
        # the second step's weights are the same (no optimiser here), so the EMA uses the same w


def test_chunked_peak_memory_is_smaller():
    """Autograd keeps no (B, C') tensor of the chunked path: the saved tensors are O(B D + C' D)."""
    torch.manual_seed(0)
    classes, batch = 4000, 64
    head = facezoo.create_head("arcface", DIM, classes)
    emb = torch.randn(batch, DIM, requires_grad=True)
    labels = torch.randint(0, classes, (batch,))
    sizes = {}
    for chunk in (0, 256):
        saved = []

        def pack(t, saved=saved):
            saved.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            ShardedClassifier(head, classes, chunk_size=chunk)(emb, labels)
        sizes[chunk] = max(saved)
    assert sizes[0] >= batch * classes  # the unchunked path keeps (B, C') probabilities
    assert sizes[256] <= classes * DIM  # the chunked one keeps nothing larger than the weight


# ---- gloo ranks -----------------------------------------------------------------------------------------------


def _cases():
    """(name, chunk, rate) of every registered head: chunk 2 only where the head can chunk."""
    for rate in (1.0, RATE):
        for name in NAMES:
            can_chunk = not HEADS.get(name)(embedding_size=DIM, num_classes=CLASSES).cannot_chunk
            for chunk in (0, 2) if can_chunk else (0,):
                yield name, chunk, rate


def _shard_state(head, state, start, end):
    return {k: v[start:end] if k in head.class_rows else v for k, v in state.items()}


def _outcome(clf, head, backbone, loss, rate, start):
    return {
        "loss": loss.detach(),
        "backbone_grad": backbone.weight.grad.clone(),
        "row_grad": head.weight.grad if rate == 1.0 else clf.sampled.grad,
        "rows": None if rate == 1.0 else clf.rows + start,
        "params": {k: p.grad for k, p in head.named_parameters() if k != "weight"},
        "buffers": {k: v.clone() for k, v in head.named_buffers()},
        "state": clf.full_state_dict(),  # every rank's per-class rows gathered: independent of the world size
    }


def _worker(rank, world_size, tmp):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world_size)
    s = torch.load(f"{tmp}/setup.pt")
    b = BATCH // world_size
    results = {}
    for name, chunk, rate in _cases():
        classes = CLASSES if rate == 1.0 else PFC_CLASSES
        start, end = shard_range(classes, rank, world_size)
        x, y = s[classes]["x"][rank * b : (rank + 1) * b], s[classes]["labels"][rank * b : (rank + 1) * b]
        backbone = torch.nn.Linear(IN, DIM).double()
        backbone.load_state_dict(s["backbone"])
        ddp = torch.nn.parallel.DistributedDataParallel(backbone)
        head = facezoo.create_head(name, DIM, end - start).double()
        head.load_state_dict(_shard_state(head, s[classes]["heads"][name], start, end))
        clf = ShardedClassifier(head, classes, World(rank, world_size), sample_rate=rate, chunk_size=chunk)
        torch.manual_seed(7)  # the same sample for both chunk sizes
        loss = clf(ddp(x), y)
        loss.backward()
        results[name, chunk, rate] = _outcome(clf, head, backbone, loss, rate, start)
    torch.save(results, f"{tmp}/rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)  # see test_classifier: skip gloo's occasionally aborting interpreter teardown


def _reference(name, s, classes, rate, rows=None):
    """Single-process training of the same step; Partial FC pinned to the ranks' sampled rows."""
    backbone = torch.nn.Linear(IN, DIM).double()
    backbone.load_state_dict(s["backbone"])
    head = facezoo.create_head(name, DIM, classes).double()
    head.load_state_dict(s[classes]["heads"][name])
    clf = ShardedClassifier(head, classes, sample_rate=rate, chunk_size=0)
    if rows is not None:
        clf._take(rows, len(rows))
        clf._pinned = True
    loss = clf(backbone(s[classes]["x"]), s[classes]["labels"])
    loss.backward()
    return _outcome(clf, head, backbone, loss, rate, 0)


def _close(a, b):
    return torch.allclose(a.double(), b.double(), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("world_size", [2, 3])
def test_sharded_chunked_and_partial_fc_equal_single_process(tmp_path, world_size):
    torch.manual_seed(0)
    s = {"backbone": torch.nn.Linear(IN, DIM).double().state_dict()}
    for classes in (CLASSES, PFC_CLASSES):
        x, labels = _problem(3, classes)
        heads = {name: facezoo.create_head(name, DIM, classes).double().state_dict() for name in NAMES}
        s[classes] = {"heads": heads, "x": x, "labels": labels}
    torch.save(s, tmp_path / "setup.pt")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.multiprocessing.spawn(_worker, args=(world_size, str(tmp_path)), nprocs=world_size)
    outs = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world_size)]
    for case in _cases():
        name, _, rate = case
        classes = CLASSES if rate == 1.0 else PFC_CLASSES
        rows = None if rate == 1.0 else torch.cat([o[case]["rows"] for o in outs])
        if rows is not None:
            assert len(rows) == BATCH * world_size < classes  # k = global batch rows per shard, not all
        ref = _reference(name, s, classes, rate, rows)
        class_rows = HEADS.get(name)(embedding_size=DIM, num_classes=CLASSES).class_rows
        assert _close(torch.cat([o[case]["row_grad"] for o in outs]), ref["row_grad"]), case
        for out in outs:
            assert torch.allclose(out[case]["loss"], ref["loss"], rtol=0, atol=1e-10), case
            assert _close(out[case]["backbone_grad"], ref["backbone_grad"]), case
            for key, grad in ref["params"].items():  # parameters every rank holds whole: biases, kappa module
                assert _close(out[case]["params"][key], grad), (case, key)
        for out in outs:
            assert ref["state"].keys() == out[case]["state"].keys(), case
            for key, value in ref["state"].items():
                assert _close(out[case]["state"][key], value), (case, key)
        for key, value in ref["buffers"].items():  # running statistics, counters, per-class buffers
            if key in class_rows:
                assert torch.equal(torch.cat([o[case]["buffers"][key] for o in outs]), value), (case, key)
            else:
                for out in outs:
                    assert _close(out[case]["buffers"][key], value), (case, key)
