"""DevicePrefetcher: same batches, same order, clean exhaustion, worker errors surface at the right batch.

CPU runs the pass-through. The CUDA path runs the same ordering loop (`_one_ahead`) with stage = copy on a
side stream and hand_over = wait_stream + record_stream; that loop is checked here with recording functions:
batch k is handed over (main stream waits on the side stream) before batch k+1 is staged, and k+1 is staged
before k is yielded. The copies themselves are value-preserving .to(device) calls, so on CUDA the yielded
batches hold the same values in the same order (reasoned; no GPU here).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from facezoo.data.loader import Collate
from facezoo.data.prefetch import DevicePrefetcher, _one_ahead
from facezoo.errors import DataError


class Faces(Dataset):
    """Image i is filled with i, label 10 * i; index `bad` raises DataError like a corrupt record."""

    def __init__(self, n: int, bad: int | None = None):
        self.n, self.bad = n, bad

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.bad:
            raise DataError(f"train.rec: key {i}: truncated at offset 123")
        return np.full((4, 3, 3), i, np.uint8), 10 * i


def loader(n=10, batch=3, workers=0, bad=None):
    return DataLoader(Faces(n, bad), batch_size=batch, shuffle=False, num_workers=workers, collate_fn=Collate((4, 3)))


def test_cpu_same_batches_same_order():
    base = list(loader())
    got = list(DevicePrefetcher(loader(), "cpu"))
    assert len(got) == len(base) == 4
    for a, b in zip(got, base):
        assert torch.equal(a["images"], b["images"]) and torch.equal(a["labels"], b["labels"])
        assert a["skipped"] == b["skipped"] == 0
        assert a["images"].device.type == "cpu"
    assert [int(x) for b in got for x in b["labels"]] == [10 * i for i in range(10)]


def test_len_and_exhaustion_and_second_pass():
    pf = DevicePrefetcher(loader(), "cpu")
    assert len(pf) == 4
    it = iter(pf)
    assert sum(1 for _ in it) == 4
    with pytest.raises(StopIteration):
        next(it)
    assert [b["labels"][0].item() for b in pf] == [0, 30, 60, 90]  # a new pass starts over


def test_no_len_when_loader_has_none():
    pf = DevicePrefetcher(iter([{"images": torch.zeros(1), "labels": torch.zeros(1)}]), "cpu")
    with pytest.raises(TypeError):
        len(pf)


def test_transform_runs_on_cpu_path():
    pf = DevicePrefetcher(loader(6, 3), "cpu", transform=lambda b: {**b, "labels": b["labels"] + 1})
    assert [b["labels"].tolist() for b in pf] == [[1, 11, 21], [31, 41, 51]]


@pytest.mark.parametrize("workers", [0, 1])
def test_worker_exception_propagates_after_good_batches(workers):
    seen = []
    with pytest.raises(DataError, match="key 7: truncated"):
        for batch in DevicePrefetcher(loader(10, 3, workers=workers, bad=7), "cpu"):
            seen.append(batch["labels"].tolist())
    assert seen == [[0, 10, 20], [30, 40, 50]]  # the batch holding index 7 is the one that fails


def _recorded(n: int, fail_at: int | None = None):
    """Run _one_ahead over n items with recording stage/hand_over; returns (log, yielded, error)."""
    log, out = [], []

    def source():
        for i in range(n):
            if i == fail_at:
                raise DataError(f"worker failed on batch {i}")
            log.append(f"fetch {i}")
            yield i

    def stage(i):
        log.append(f"stage {i}")
        return i

    def hand_over(i):
        log.append(f"hand {i}")
        return i

    error = None
    try:
        for i in _one_ahead(source(), stage, hand_over):
            log.append(f"yield {i}")
            out.append(i)
    except DataError as e:
        error = e
    return log, out, error


def test_one_ahead_order():
    log, out, error = _recorded(3)
    assert out == [0, 1, 2] and error is None
    assert log == [
        "fetch 0",
        "stage 0",
        "hand 0",
        "fetch 1",
        "stage 1",
        "yield 0",  # main waits for batch 0, then batch 1 is put in flight
        "hand 1",
        "fetch 2",
        "stage 2",
        "yield 1",
        "hand 2",
        "yield 2",
    ]


def test_one_ahead_empty_and_single():
    assert _recorded(0)[1] == []
    log, out, _ = _recorded(1)
    assert out == [0] and log == ["fetch 0", "stage 0", "hand 0", "yield 0"]


def test_one_ahead_error_after_previous_batch():
    log, out, error = _recorded(5, fail_at=2)
    assert out == [0, 1]
    assert "worker failed on batch 2" in str(error)
    assert log[-1] == "yield 1"  # batch 1 reached the consumer before the error


def test_one_ahead_error_on_first_batch():
    log, out, error = _recorded(3, fail_at=0)
    assert out == [] and log == [] and "batch 0" in str(error)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_on_device_equal():  # runs only where a GPU is present
    base = list(loader())
    got = list(
        DevicePrefetcher(DataLoader(Faces(10), batch_size=3, collate_fn=Collate((4, 3)), pin_memory=True), "cuda")
    )
    for a, b in zip(got, base):
        assert a["images"].is_cuda and a["labels"].is_cuda
        assert torch.equal(a["images"].cpu(), b["images"]) and torch.equal(a["labels"].cpu(), b["labels"])
