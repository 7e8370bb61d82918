"""Feature extraction: hand-computed embeddings, on-disk cache keyed by model and data, resume, damaged chunks,
torchrun ranks, and the .bin / pair-set path through evaluate_sets."""

import os
import socket

import numpy as np
import pytest
import torch

from facezoo.errors import ConfigError
from facezoo.eval import features as ft
from facezoo.eval.verification import evaluate_sets, keyed


class Halves(torch.nn.Module):
    """Mean colour of the left and right halves times a scale (6-d): flipping the image swaps the halves."""

    input_size = (4, 4)

    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor([scale]))

    def forward(self, x):
        x = x.float()
        return torch.cat([x[:, :, :2].mean(dim=(1, 2)), x[:, :, 2:].mean(dim=(1, 2))], dim=1) * self.scale


def images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)


def by_hand(imgs, scale=1.0):
    f = imgs.astype(np.float64)
    left, right = f[:, :, :2].mean(axis=(1, 2)), f[:, :, 2:].mean(axis=(1, 2))
    return np.concatenate([left, right], 1) * scale, np.concatenate([right, left], 1) * scale


class Loader:
    """load(start, stop) over fixed images, recording every call; raises for a start listed in `fail`."""

    def __init__(self, imgs, fail=()):
        self.imgs, self.fail, self.calls = imgs, set(fail), []

    def __call__(self, a, b):
        self.calls.append((a, b))
        if a in self.fail:
            raise KeyboardInterrupt(f"killed at row {a}")
        return self.imgs[a:b]


def test_extract_matches_hand_computation_without_cache():
    imgs = images(10)
    e, ef = ft.extract_features(Halves(2.0), "set", 10, Loader(imgs), batch_size=3, chunk=4)
    want, want_flip = by_hand(imgs, 2.0)
    np.testing.assert_allclose(e, want, rtol=1e-6)
    np.testing.assert_allclose(ef, want_flip, rtol=1e-6)
    s, none = ft.extract_features(Halves(2.0), "set", 10, Loader(imgs), chunk=3, combine=True)
    assert none is None
    np.testing.assert_allclose(s, want + want_flip, rtol=1e-6)
    e1, none = ft.extract_features(Halves(), "set", 10, Loader(imgs), flip=False)
    assert none is None and e1.dtype == np.float32
    np.testing.assert_allclose(e1, by_hand(imgs)[0], rtol=1e-6)


def test_resume_after_interruption_computes_only_missing_chunks(tmp_path):
    imgs = images(10)
    model = Halves()
    # chunks [0,3) [3,6) [6,9) [9,10); the loader dies when asked for chunk 2
    with pytest.raises(KeyboardInterrupt):
        ft.extract_features(model, "k", 10, Loader(imgs, fail={6}), chunk=3, cache_dir=tmp_path)
    folder = ft.entry_dir(tmp_path, model, "k", 10, True)
    assert sorted(p.name for p in folder.glob("rows_*.npy")) == [
        "rows_0000000000_0000000003.npy",
        "rows_0000000003_0000000006.npy",
    ]
    assert not list(folder.glob(".*tmp"))  # no half-written chunk left
    again = Loader(imgs)
    e, ef = ft.extract_features(model, "k", 10, again, chunk=3, cache_dir=tmp_path)
    assert again.calls == [(6, 9), (9, 10)]
    ref = ft.extract_features(model, "k", 10, Loader(imgs), chunk=3)
    np.testing.assert_array_equal(e, ref[0])
    np.testing.assert_array_equal(ef, ref[1])
    third = Loader(imgs)
    e2, _ = ft.extract_features(model, "k", 10, third, chunk=3, cache_dir=tmp_path)
    assert third.calls == [] and np.array_equal(e2, e)


def test_cache_entries_differ_by_model_data_and_preprocessing(tmp_path):
    a = Halves(1.0)
    base = ft.entry_dir(tmp_path, a, "lfw.bin:123", 10, True)
    assert ft.entry_dir(tmp_path, Halves(1.0), "lfw.bin:123", 10, True) == base  # same weights, same entry
    assert ft.entry_dir(tmp_path, Halves(3.0), "lfw.bin:123", 10, True).parent != base.parent
    assert ft.entry_dir(tmp_path, a, "lfw.bin:124", 10, True) != base
    assert ft.entry_dir(tmp_path, a, "lfw.bin:123", 10, False) != base
    assert ft.entry_dir(tmp_path, a, "lfw.bin:123", 11, True) != base
    b = Halves(1.0)
    b.input_size = (8, 8)  # another input size is another preprocessing
    assert ft.entry_dir(tmp_path, b, "lfw.bin:123", 10, True).parent != base.parent
    with torch.no_grad():
        a.scale.mul_(2)  # an in-place update (a training step) must not reuse the memoised fingerprint
    assert ft.entry_dir(tmp_path, a, "lfw.bin:123", 10, True).parent != base.parent
    assert ft.model_fingerprint(a) == ft.model_fingerprint(Halves(2.0))


def test_new_model_does_not_read_old_features(tmp_path):
    imgs = images(5)
    ft.extract_features(Halves(1.0), "k", 5, Loader(imgs), cache_dir=tmp_path)
    calls = Loader(imgs)
    e, _ = ft.extract_features(Halves(5.0), "k", 5, calls, cache_dir=tmp_path)
    assert calls.calls == [(0, 5)]
    np.testing.assert_allclose(e, by_hand(imgs, 5.0)[0], rtol=1e-6)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_shape"])
def test_damaged_chunk_is_recomputed(tmp_path, damage):
    imgs = images(10)
    model = Halves()
    ref = ft.extract_features(model, "k", 10, Loader(imgs), chunk=4, cache_dir=tmp_path)
    path = ft.entry_dir(tmp_path, model, "k", 10, True) / "rows_0000000004_0000000008.npy"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a numpy file")
    else:
        np.save(path, np.zeros((2, 3, 6), np.float32))
    messages = []
    calls = Loader(imgs)
    e, ef = ft.extract_features(model, "k", 10, calls, chunk=4, cache_dir=tmp_path, log=messages.append)
    assert calls.calls == [(4, 8)]
    assert any(path.name in m for m in messages)
    np.testing.assert_array_equal(e, ref[0])
    np.testing.assert_array_equal(ef, ref[1])


def test_unfingerprintable_embedder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="--no-cache"):
        ft.extract_features(lambda x: x.float().mean((1, 2)), "k", 2, Loader(images(2)), cache_dir=tmp_path)

    class Fn:
        fingerprint = "my-model-v1"

        def __call__(self, x):
            return x.float().mean((1, 2))

    e, _ = ft.extract_features(Fn(), "k", 2, Loader(images(2)), cache_dir=tmp_path)
    assert (tmp_path / "my-model-v1").is_dir() and e.shape == (2, 3)


def test_evaluate_sets_through_the_cache_embeds_once(tmp_path):
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (40, 4, 4, 3), dtype=np.uint8)
    issame = rng.random(20) < 0.5

    class Counting(Halves):
        forwards = 0

        def forward(self, x):
            Counting.forwards += 1
            return super().forward(x)

    sets = {"toy": keyed(lambda size: (imgs, issame), "toy-set-v1")}
    plain = evaluate_sets({"m": Counting()}, sets, nfolds=2)
    Counting.forwards = 0
    first = evaluate_sets({"m": Counting()}, sets, nfolds=2, cache_dir=tmp_path)
    assert Counting.forwards > 0
    Counting.forwards = 0
    second = evaluate_sets({"m": Counting()}, sets, nfolds=2, cache_dir=tmp_path)
    assert Counting.forwards == 0  # every embedding came from the cache
    for r in (first, second):
        assert r["m"]["toy"]["accuracy"] == plain["m"]["toy"]["accuracy"]
        assert r["m"]["toy"]["xnorm"] == pytest.approx(plain["m"]["toy"]["xnorm"], rel=1e-12)


# ------------------------------------------------------------------------------------------- torchrun ranks
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank, world_size, port, cache, report):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    loader = Loader(images(11))
    e, ef = ft.extract_features(Halves(), "dist", 11, loader, chunk=3, cache_dir=cache)
    np.savez(f"{report}{rank}.npz", e=e, ef=ef, calls=np.asarray(loader.calls))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    os._exit(0)  # see tests/train/test_classifier: skip gloo's occasionally aborting interpreter teardown


def test_two_gloo_ranks_split_chunks_and_match_one_process(tmp_path):
    report = f"{tmp_path}/r"
    torch.multiprocessing.spawn(_rank, args=(2, _free_port(), str(tmp_path / "cache"), report), nprocs=2)
    ref = ft.extract_features(Halves(), "dist", 11, Loader(images(11)), chunk=3)
    got = [np.load(f"{report}{r}.npz") for r in range(2)]
    # chunks [0,3) [3,6) [6,9) [9,11): rank 0 takes 0 and 2, rank 1 takes 1 and 3
    assert got[0]["calls"].tolist() == [[0, 3], [6, 9]]
    assert got[1]["calls"].tolist() == [[3, 6], [9, 11]]
    for g in got:
        np.testing.assert_array_equal(g["e"], ref[0])
        np.testing.assert_array_equal(g["ef"], ref[1])
