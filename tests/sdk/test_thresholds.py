"""FAR thresholds: the rule on hand-made scores, too few impostors, calibration from .bin sets and crop folders."""

import math

import numpy as np
import pytest
import torch

from facezoo import load_model
from facezoo.data.image import encode_image
from facezoo.data.verification_bin import write_bin
from facezoo.errors import ConfigError
from facezoo.models.checkpoint import save_checkpoint
from facezoo.models.embedder import ModelMeta
from facezoo.sdk.thresholds import calibrate, calibrate_thresholds, supported_fars, threshold_report


def _far(impostors, t):
    return np.mean(np.asarray(impostors) >= t)


def test_threshold_rule_against_a_hand_count():
    # 10 impostor scores; FAR 0.2 allows at most 2 accepted impostors: the 3rd highest (0.7) must be rejected,
    # so t is just above 0.7 and accepts 0.9 and 0.8 only
    imp = [0.1, 0.9, -0.2, 0.7, 0.3, 0.8, 0.0, 0.5, 0.4, 0.6]
    t = calibrate_thresholds(imp, [0.2, 0.1])
    assert set(t) == {"2e-01", "1e-01"}
    assert 0.7 < t["2e-01"] <= 0.7 + 1e-15 and _far(imp, t["2e-01"]) == 0.2
    assert 0.8 < t["1e-01"] <= 0.8 + 1e-15 and _far(imp, t["1e-01"]) == 0.1
    # smallest such t: at 0.7 itself, and at the float just below t, FAR is 0.3 > 0.2
    assert _far(imp, 0.7) == 0.3 and _far(imp, np.nextafter(t["2e-01"], -np.inf)) == 0.3


def test_ties_make_the_threshold_pass_the_whole_tie():
    imp = [0.5, 0.5, 0.5, 0.1, 0.2, 0.3, 0.0, 0.0, 0.0, 0.0]
    t = calibrate_thresholds(imp, [0.2])["2e-01"]
    assert t > 0.5 and _far(imp, t) == 0.0  # accepting 0.5 would accept 3 > 2 impostors


def test_exact_decimal_count():
    imp = np.linspace(-1, 1, 3000)
    t = calibrate_thresholds(imp, [1e-3])["1e-03"]  # 1e-3 * 3000 = 3 exactly (2.9999... in floats would give 2)
    assert (imp >= t).sum() == 3


def test_far_below_one_over_n_is_a_config_error_saying_how_many():
    with pytest.raises(ConfigError, match="needs at least 10000 impostor pairs.*only 3000"):
        calibrate_thresholds(np.zeros(3000), [1e-4])
    with pytest.raises(ConfigError, match="between 0 and 1"):
        calibrate_thresholds([0.1, 0.2], [1.5])
    assert supported_fars(3000) == [1e-2, 1e-3]


def test_report_gives_tar_and_achieved_far():
    gen = [0.9, 0.8, 0.75, 0.2]
    imp = [0.1, 0.9, -0.2, 0.7, 0.3, 0.8, 0.0, 0.5, 0.4, 0.6]
    rep = threshold_report(gen, imp, calibrate_thresholds(imp, [0.2]))["2e-01"]
    assert rep["tar"] == 0.75 and rep["far"] == 0.2  # 0.9, 0.8, 0.75 are above 0.7+


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    meta = ModelMeta(backbone="ir18", backbone_kwargs={"width": 0.25}, embedding_size=16, input_size=(32, 32))
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cal") / "tiny.pt"
    save_checkpoint(path, meta, meta.build_backbone().state_dict())
    return load_model(path, "cpu")


def _images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_calibrate_on_a_bin_uses_the_listed_impostor_pairs(rec, tmp_path):
    imgs = _images(40, 0)
    issame = [i % 2 == 0 for i in range(20)]
    imgs[0::2][np.asarray(issame)] = imgs[1::2][np.asarray(issame)]  # genuine pairs: identical images
    path = tmp_path / "set.bin"
    write_bin(path, [encode_image(im, "png") for im in imgs], issame)
    r = calibrate(rec, bins=[path], fars=[0.1])
    e = rec(imgs).astype(np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    scores = np.sum(e[0::2] * e[1::2], 1)
    imp = scores[~np.asarray(issame)]
    assert r["impostors"] == 10 and r["genuine"] == 10
    assert r["thresholds"] == calibrate_thresholds(imp, [0.1])
    assert (imp >= r["thresholds"]["1e-01"]).sum() == 1  # 0.1 * 10 impostors
    assert r["report"]["1e-01"]["tar"] == 1.0  # identical images have cosine 1
    assert "single view" in r["score"]
    with pytest.raises(ConfigError, match="needs at least 100 impostor pairs"):
        calibrate(rec, bins=[path], fars=[1e-2])


def test_calibrate_on_a_folder_uses_all_cross_identity_pairs(rec, tmp_path):
    from PIL import Image

    imgs = _images(7, 1)
    counts = {"a": 3, "b": 2, "c": 2}
    i = 0
    for name, n in counts.items():
        (tmp_path / name).mkdir()
        for j in range(n):
            Image.fromarray(imgs[i]).save(tmp_path / name / f"{j}.png")
            i += 1
    r = calibrate(rec, folders=[tmp_path], fars=[0.5], flip=True)
    assert r["genuine"] == 3 + 1 + 1 and r["impostors"] == math.comb(7, 2) - 5
    assert "flip" in r["score"]
    e = rec(imgs).astype(np.float64) + rec(np.ascontiguousarray(imgs[:, :, ::-1])).astype(np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    labels = np.repeat([0, 1, 2], [3, 2, 2])
    iu = np.triu_indices(7, 1)
    imp = (e @ e.T)[iu][labels[iu[0]] != labels[iu[1]]]
    assert r["thresholds"] == calibrate_thresholds(imp, [0.5])
