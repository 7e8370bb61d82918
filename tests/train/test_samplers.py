"""Batch samplers: random (the EpochBatchSampler), class_balanced (each class equally likely) and the P x K identity
sampler: their distributions, rank shares that add up to one process, and resume from (seed, epoch, start)."""

import numpy as np
import pytest

from facezoo.data.loader import EpochBatchSampler
from facezoo.data.samplers import SAMPLERS, IdentitySampler
from facezoo.errors import ConfigError, DataError

from .conftest import TinyFaces
from .tiny import losses, trainer

# a long tail: class c has 2 + 3c images (2 .. 29)
LABELS = np.repeat(np.arange(10), 2 + 3 * np.arange(10))
rng = np.random.default_rng(0)
LABELS = LABELS[rng.permutation(len(LABELS))]


def batches(sampler, epoch, start=0):
    sampler.set_epoch(epoch, start)
    return list(sampler)


def test_random_is_the_epoch_batch_sampler():
    a = SAMPLERS.create("random", labels=LABELS, batch_size=8, seed=3, rank=1, world_size=2)
    b = EpochBatchSampler(len(LABELS), 8, 3, 1, 2)
    assert batches(a, 2) == batches(b, 2)


def test_class_balanced_draws_every_class_equally_often():
    s = SAMPLERS.create("class_balanced", labels=LABELS, batch_size=16, seed=0)
    counts = np.zeros(10)
    per_image = np.zeros(len(LABELS))
    for epoch in range(60):
        for batch in batches(s, epoch):
            np.add.at(counts, LABELS[batch], 1)
            np.add.at(per_image, batch, 1)
    share = counts / counts.sum()
    assert np.abs(share - 0.1).max() < 0.012  # uniform over classes, though class 9 has 14x class 0's images
    # within a class, uniform over its images: P(i) = 1 / (C n_{y_i})
    expected = counts.sum() / (10 * np.bincount(LABELS)[LABELS])
    chi2, dof = ((per_image - expected) ** 2 / expected).sum(), len(LABELS) - 1
    assert chi2 < dof + 5 * np.sqrt(2 * dof)  # a uniform-over-images draw gives chi2 in the thousands
    assert len(s) == len(LABELS) // 16 and all(len(b) == 16 for b in batches(s, 0))


@pytest.mark.parametrize("name", ["random", "class_balanced"])
def test_ranks_share_one_draw_and_resume_at_a_batch(name):
    one = SAMPLERS.create(name, labels=LABELS, batch_size=4, seed=5)
    ranks = [SAMPLERS.create(name, labels=LABELS, batch_size=2, seed=5, rank=r, world_size=2) for r in range(2)]
    full = batches(one, 1)
    halves = [batches(r, 1) for r in ranks]
    drawn = sorted(i for batch in full for i in batch)
    split = sorted(i for rank in halves for batch in rank for i in batch)
    assert len(split) >= len(drawn) - 4 and set(split) <= set(range(len(LABELS)))
    assert batches(one, 1, start=3) == full[3:]  # resume skips exactly the batches done
    assert batches(one, 2) != full  # a new epoch draws anew


def test_identity_sampler_gives_p_identities_of_k_distinct_images():
    s = IdentitySampler(LABELS, identities_per_batch=3, k=4, seed=1)
    assert s.excluded == 1  # class 0 has 2 images < K
    seen = []
    for batch in batches(s, 0):
        ids = LABELS[batch].reshape(3, 4)
        assert (ids == ids[:, :1]).all() and len(set(ids[:, 0])) == 3  # identity-major, P distinct identities
        assert all(len(set(batch[4 * p : 4 * p + 4])) == 4 for p in range(3))  # K distinct images
        seen += list(ids[:, 0])
    assert sorted(seen) == list(range(1, 10))  # each eligible identity exactly once per epoch
    assert len(s) == 3
    assert batches(s, 0, start=1) == batches(s, 0)[1:]
    assert batches(s, 1) != batches(s, 0)


def test_identity_sampler_ranks_hold_the_identities_one_process_draws():
    one = IdentitySampler(LABELS, identities_per_batch=4, k=2, seed=2)
    ranks = [IdentitySampler(LABELS, identities_per_batch=2, k=2, seed=2, rank=r, world_size=2) for r in range(2)]
    for b, batch in enumerate(batches(one, 3)):
        pooled = [i for r in ranks for i in batches(r, 3)[b]]
        assert sorted(pooled) == sorted(batch)  # the same images, not only the same identities


def test_bad_sizes_are_clear_errors():
    with pytest.raises(DataError, match="no identity has 40 images"):
        IdentitySampler(LABELS, 2, 40)
    with pytest.raises(ConfigError, match="batch size must be positive"):
        SAMPLERS.create("class_balanced", labels=LABELS, batch_size=0)
    with pytest.raises(ConfigError, match="unknown sampler 'class_balance'. Did you mean 'class_balanced'"):
        SAMPLERS.get("class_balance")


def test_training_with_the_class_balanced_sampler_resumes_exactly(tmp_path):
    opts = ["data.sampler=class_balanced", "epochs=2"]
    full = losses(trainer(tmp_path / "a", *opts, dataset=TinyFaces(size=16)).fit())
    part = trainer(tmp_path / "b", *opts, dataset=TinyFaces(size=16))
    head = losses(part.fit(max_steps=2))
    resumed = trainer(tmp_path / "b", *opts, dataset=TinyFaces(size=16))
    resumed.resume(tmp_path / "b" / "checkpoint.pt")
    assert head + losses(resumed.fit()) == full and len(full) == 6
    plain = losses(trainer(tmp_path / "c", "epochs=2", dataset=TinyFaces(size=16)).fit())
    assert plain != full  # another order of samples
