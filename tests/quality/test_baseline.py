"""The quality interface and the baseline: rendered synthetic faces, then blurred / shrunk / occluded ones."""

import numpy as np
import pytest
import torch

from facezoo.data.synthetic import identity_rng, image_rng, render, sample_identity, sample_nuisance
from facezoo.errors import ConfigError, ModelError
from facezoo.quality import create_quality, list_quality, parse_quality
from facezoo.quality.base import QualityMethod
from facezoo.quality.degrade import DEGRADATIONS, degrade


def faces(n=40, size=112, nuisance=0.7, seed=3):
    return np.stack(
        [render(sample_identity(identity_rng(seed, i)), sample_nuisance(image_rng(seed, i, 0), nuisance), size)
         for i in range(n)]
    )  # fmt: skip


@pytest.fixture(scope="module")
def clean():
    return faces()


def test_registry_and_specs():
    assert list_quality() == ["baseline", "magface_norm", "sdd_fiqa"]
    assert type(parse_quality("baseline")).__name__ == "Baseline"
    with pytest.raises(ConfigError, match="takes no model"):
        parse_quality("baseline:x.pt")
    with pytest.raises(ConfigError, match="needs a model"):
        parse_quality("magface_norm")
    with pytest.raises(ConfigError, match="Did you mean 'baseline'"):
        create_quality("baselin")
    with pytest.raises(ConfigError, match="has no argument"):
        create_quality("baseline", model="x.pt")


@pytest.mark.parametrize("kind,fraction", [("blur", 1.0), ("shrink", 1.0), ("occlude", 0.75)])
def test_degraded_faces_score_lower(clean, kind, fraction):
    """Blur and shrinking lower every face's baseline score; a flat occluder lowers most (only the coverage term
    sees it; the module doc says why)."""
    q = create_quality("baseline")
    base = q.score(clean)
    assert ((base >= 0) & (base <= 1)).all() and base.mean() > 0.85
    for severity in (0.5, 1.0):
        worse = q.score(np.stack([degrade(im, kind, severity, i) for i, im in enumerate(clean)]))
        assert (worse < base).mean() >= fraction and worse.mean() < base.mean()
    mild = q.score(np.stack([degrade(im, kind, 0.3, i) for i, im in enumerate(clean)]))
    harsh = q.score(np.stack([degrade(im, kind, 1.0, i) for i, im in enumerate(clean)]))
    assert harsh.mean() < mild.mean()  # more degradation, lower quality


def test_score_interface(clean):
    q = create_quality("baseline")
    s = q.score(clean[:4])
    assert s.dtype == np.float64 and s.shape == (4,)
    np.testing.assert_array_equal(q.score(torch.from_numpy(clean[:4])), s)  # torch batches too
    assert q.score(clean[0]).shape == (1,)  # one crop
    small = np.stack([np.asarray(__import__("PIL.Image").Image.fromarray(c).resize((56, 56))) for c in clean[:4]])
    assert q.score(small).shape == (4,)  # resized to 112 first
    assert q.score(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0,)
    with pytest.raises(ModelError, match="uint8"):
        q.score(clean[:2].astype(np.float32))
    terms = q.components(clean[:4])
    assert set(terms) == {"sharpness", "resolution", "contrast", "coverage"}
    np.testing.assert_allclose(np.prod(np.stack(list(terms.values())), 0) ** 0.25, s)
    assert q.fingerprint == create_quality("baseline").fingerprint


def test_flat_image_scores_zero_and_nan_is_refused():
    q = create_quality("baseline")
    assert q.score(np.full((2, 112, 112, 3), 128, np.uint8)).tolist() == [0.0, 0.0]

    class Broken(QualityMethod):
        name = "broken"

        def _score(self, batch):
            return np.where(np.arange(len(batch)) == 1, np.nan, 1.0)

        def _content(self):
            return ""

    with pytest.raises(ModelError, match="crop 1 is nan"):
        Broken().score(np.zeros((3, 112, 112, 3), np.uint8))


def test_degradations(clean):
    im = clean[0]
    for kind in DEGRADATIONS:
        assert np.array_equal(degrade(im, kind, 0.0), im)
        out = degrade(im, kind, 0.7, seed=5)
        assert out.shape == im.shape and out.dtype == np.uint8 and not np.array_equal(out, im)
        assert np.array_equal(out, degrade(im, kind, 0.7, seed=5))  # deterministic from the seed
    occluded = degrade(im, "occlude", 1.0, seed=1)
    changed = (occluded != im).any(axis=2)
    assert 0.2 < changed.mean() <= 0.234  # at most 50% of the face box, 64% x 73% of the crop
    with pytest.raises(ConfigError, match="Did you mean 'blur'"):
        degrade(im, "blurr", 0.5)
    with pytest.raises(ConfigError, match="severity"):
        degrade(im, "blur", 1.5)
