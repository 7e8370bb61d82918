"""Worker sizing against (cores, LOCAL_WORLD_SIZE) pairs, the cgroup quota parser and the encoded-bytes collate."""

from __future__ import annotations

import pytest
import torch

from facezoo.data import loader
from facezoo.data.loader import EncodedCollate, available_cores, default_workers, local_world_size


@pytest.fixture
def machine(monkeypatch):
    """machine(cores, local_world_size=None, quota=None): fake affinity mask, torchrun env and cgroup quota."""

    def set_(cores: int, lws: str | None = None, quota: int | None = None):
        monkeypatch.setattr(loader.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
        monkeypatch.setattr(loader, "_cgroup_cpus", lambda: quota)
        if lws is None:
            monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
        else:
            monkeypatch.setenv("LOCAL_WORLD_SIZE", lws)

    return set_


# (cores, LOCAL_WORLD_SIZE, expected): cores // ranks - 1, capped at 16, at least 0.
CASES = [
    (2, None, 1),  # this dev machine: one worker, one core for the loop
    (1, None, 0),  # a single core: the main process loads
    (16, None, 15),  # one GPU on a 16-core machine
    (64, None, 16),  # 63 would be free; the cap is 16
    (16, "8", 1),  # 8 ranks share 16 cores: 2 each, one for the loop
    (16, "4", 3),
    (8, "8", 0),  # one core per rank
    (12, "2", 5),
    (128, "8", 15),  # 16 per rank
    (96, "8", 11),  # 12 per rank
    (512, "2", 16),  # 256 per rank, capped
    (24, "8", 2),
    (4, "8", 0),  # more ranks than cores: never negative
]


@pytest.mark.parametrize("cores, lws, expected", CASES)
def test_default_workers_by_cores_and_local_ranks(machine, cores, lws, expected):
    machine(cores, lws)
    assert default_workers(-1) == expected
    assert default_workers() == expected


def test_explicit_request_is_kept(machine):
    machine(16, "8")
    assert default_workers(0) == 0
    assert default_workers(5) == 5
    assert default_workers(32) == 32  # an explicit number is not capped


def test_cap_argument(machine):
    machine(64, None)
    assert default_workers(-1, cap=8) == 8
    assert default_workers(-1, cap=100) == 63


def test_cgroup_quota_limits_cores(machine):
    machine(64, None, quota=4)
    assert available_cores() == 4
    assert default_workers() == 3


@pytest.mark.parametrize(
    "text, expected",
    [
        ("150000 100000\n", 2),  # 1.5 CPUs -> 2
        ("400000 100000\n", 4),
        ("50000 100000\n", 1),
        ("max 100000\n", None),
        ("", None),
        ("garbage\n", None),
        ("100000 0\n", None),
    ],
)
def test_cgroup_cpu_max_parsing(tmp_path, text, expected):
    path = tmp_path / "cpu.max"
    path.write_text(text)
    assert loader._cgroup_cpus(str(path)) == expected


def test_cgroup_file_missing(tmp_path):
    assert loader._cgroup_cpus(str(tmp_path / "none")) is None


@pytest.mark.parametrize("value, expected", [(None, 1), ("4", 4), ("1", 1), ("0", 1), ("abc", 1), ("-2", 1)])
def test_local_world_size(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", value)
    assert local_world_size() == expected


def test_encoded_collate_drops_skipped_samples():
    samples = [(b"\xff\xd8\xffAAA", 3), None, (b"\x89PNG\r\n\x1a\nB", 7), None, (b"C", 0)]
    batch = EncodedCollate()(samples)
    assert batch["encoded"] == [b"\xff\xd8\xffAAA", b"\x89PNG\r\n\x1a\nB", b"C"]
    assert batch["labels"].dtype == torch.int64
    assert batch["labels"].tolist() == [3, 7, 0]
    assert batch["skipped"] == 2


def test_encoded_collate_all_skipped():
    batch = EncodedCollate()([None, None])
    assert batch["encoded"] == [] and batch["labels"].shape == (0,) and batch["skipped"] == 2
