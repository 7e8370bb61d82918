import torch

from facezoo.data.loader import Collate, EpochBatchSampler
from facezoo.data.transforms import normalize


def test_normalize_layout_flip_and_bgr():
    imgs = torch.arange(2 * 2 * 3 * 3, dtype=torch.uint8).view(2, 2, 3, 3)  # B H W C
    x = normalize(imgs, mean=1.0, std=2.0)
    assert x.shape == (2, 3, 2, 3) and x.is_contiguous(memory_format=torch.channels_last)
    assert x[1, 2, 1, 0] == (imgs[1, 1, 0, 2].float() - 1) / 2
    f = normalize(imgs, mean=0.0, std=1.0, flip=torch.tensor([True, False]))
    assert torch.equal(f[0], imgs[0].permute(2, 0, 1).float().flip(2)) and torch.equal(
        f[1], imgs[1].permute(2, 0, 1).float()
    )
    bgr = normalize(imgs, mean=0.0, std=1.0, channel_order="BGR")
    assert torch.equal(bgr[:, 0], imgs[..., 2].float())


def test_sampler_is_a_function_of_seed_and_epoch_and_resumes():
    s = EpochBatchSampler(103, 10, seed=3)
    s.set_epoch(1)
    full = list(s)
    assert len(full) == 10 and all(len(b) == 10 for b in full)
    assert len({i for b in full for i in b}) == 100
    s.set_epoch(1, start=4)
    assert list(s) == full[4:]
    s.set_epoch(2)
    assert list(s) != full
    # two ranks see disjoint halves of the same permutation
    r0, r1 = EpochBatchSampler(100, 5, 3, 0, 2), EpochBatchSampler(100, 5, 3, 1, 2)
    assert not {i for b in r0 for i in b} & {i for b in r1 for i in b}


def test_collate_drops_skipped_and_resizes():
    import numpy as np

    c = Collate((4, 4))
    out = c([(np.zeros((4, 4, 3), np.uint8), 1), None, (np.full((8, 6, 3), 9, np.uint8), 2)])
    assert out["images"].shape == (2, 4, 4, 3) and out["images"].dtype == torch.uint8
    assert out["labels"].tolist() == [1, 2] and out["skipped"] == 1
    assert int(out["images"][1].float().mean()) == 9
