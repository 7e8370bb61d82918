"""`facezoo eval-quality` on a .bin pair set and an IJB release, and `eval-ijb --quality` (an option beside the
protocol): the ERCs equal the ones built by hand from the same scores and qualities."""

import json

import numpy as np
import pytest
import torch

import facezoo
from facezoo import load_model
from facezoo.cli import main
from facezoo.data.image import encode_image
from facezoo.data.synthetic import identity_rng, image_rng, render, sample_identity, sample_nuisance
from facezoo.data.verification_bin import write_bin
from facezoo.eval.ijb import evaluate_ijb
from facezoo.eval.ijb_meta import IJBMeta, TemplateMedia, TemplatePairs
from facezoo.models.checkpoint import save_checkpoint
from facezoo.models.embedder import EmbedderModule, ModelMeta
from facezoo.quality import create_quality
from facezoo.quality.base import QualityMethod
from facezoo.quality.degrade import degrade
from facezoo.quality.erc import erc, reject_grid
from facezoo.quality.evaluate import run_quality

from ..eval.test_eval_ijb_cli import HalfMeans, make_release, table_rows

META = ModelMeta(backbone="ir18", backbone_kwargs={"width": 0.125}, embedding_size=8, input_size=(32, 32))


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """A .bin of 60 pairs of synthetic faces (half genuine), a third of the images degraded; a tiny model."""
    tmp = tmp_path_factory.mktemp("evq")
    rng = np.random.default_rng(0)
    images, same = [], []
    for k in range(60):
        a = k % 20
        b = a if k % 2 == 0 else (a + 1 + rng.integers(19)) % 20
        for ident, j in ((a, 0), (b, 1)):
            im = render(sample_identity(identity_rng(9, int(ident))), sample_nuisance(image_rng(9, int(ident), j)), 64)
            if rng.random() < 0.33:
                im = degrade(im, ("blur", "shrink", "occlude")[k % 3], 0.8, seed=k)
            images.append(encode_image(im, "png"))
        same.append(a == b)
    write_bin(tmp / "set.bin", images, same)
    torch.manual_seed(0)
    save_checkpoint(tmp / "m.pt", META, META.build_backbone().state_dict(), config={"head": {"name": "magface"}})
    return tmp


def test_eval_quality_on_a_bin(pairs, tmp_path, capsys):
    argv = ["eval-quality", "--model", str(pairs / "m.pt"), "--quality", "baseline", "magface_norm"]
    argv += ["--bin", str(pairs / "set.bin"), "--fmr", "0.1", "0.01", "--reject-max", "0.3", "--reject-step", "0.1"]
    assert main([*argv, "--device", "cpu", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    out = capsys.readouterr().out
    header = table_rows(out, "quality")[0]
    assert header[1:] == [
        "set @1e-01 r=0", "set @1e-01 r=0.1", "set @1e-01 r=0.2", "set @1e-01 AUC",
        "set @1e-02 r=0", "set @1e-02 r=0.1", "set @1e-02 r=0.2", "set @1e-02 AUC",
    ]  # fmt: skip
    assert table_rows(out, "baseline")[0][5:] == ["n/a"] * 4  # 30 impostors cannot measure FMR 1e-2
    assert "n/a: set FMR=1e-02: needs at least 100 impostor pairs to be measured, only 30 given" in out
    assert "over r in [0, 0.3]" in out and "magface_norm of m.pt (a MagFace model)" in out
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    assert (tmp_path / "out" / "erc.png").read_bytes()[:4] == b"\x89PNG"
    # by hand: cosine of e + e_flip per image pair, min of the two images' qualities
    from facezoo.data.verification_bin import load_bin_images
    from facezoo.eval.verification import embed_images

    images, issame = load_bin_images(pairs / "set.bin", image_size=(32, 32))
    f = embed_images(load_model(pairs / "m.pt", "cpu"), images)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    scores = np.einsum("ij,ij->i", f[0::2], f[1::2])
    for name in ("baseline", "magface_norm"):
        method = create_quality(name, **({"model": pairs / "m.pt", "device": "cpu"} if name != "baseline" else {}))
        q = method.score(images)
        want = erc(scores, issame, np.minimum(q[0::2], q[1::2]), fmr=0.1, rejects=reject_grid(0.3, 0.1))
        got = r[name]["set"]["1e-01"]
        assert got["threshold"] == pytest.approx(want["threshold"], abs=1e-6)
        np.testing.assert_allclose(got["fnmr"], want["fnmr"])
        assert got["auc"] == pytest.approx(want["auc"])
    # a rerun reads the pair features and the qualities from the cache
    calls = []
    real = QualityMethod.score
    QualityMethod.score = lambda self, x: calls.append(1) or real(self, x)
    try:
        assert main([*argv, "--device", "cpu", "--quiet"]) == 0
    finally:
        QualityMethod.score = real
    assert calls == []


class RedMean(QualityMethod):
    """A known quality: the mean red level of the crop / 255."""

    name = "red"
    input_size = (16, 16)

    def _score(self, batch):
        return batch[..., 0].mean(axis=(1, 2)) / 255.0

    def _content(self):
        return "red"


def test_eval_quality_on_ijb_template_means(tmp_path):
    """IJB: a template's quality is the mean of its images', a pair's the min of its two templates'."""
    make_release(tmp_path / "IJBC")
    meta = ModelMeta(backbone="halfmeans", embedding_size=6, input_size=(16, 16))

    class Net(torch.nn.Module):
        def forward(self, x):  # normalised (B, 3, H, W): the mean of each half, 6-d
            return torch.cat([x[..., :8].mean(dim=(2, 3)), x[..., 8:].mean(dim=(2, 3))], dim=1)

    model = EmbedderModule(Net(), meta)
    report = run_quality(model, [RedMean()], ijb=tmp_path, fmrs=(0.25,), reject_max=0.5, reject_step=0.25,
                         device="cpu", progress=False)  # fmt: skip
    got = report.results["red"]["IJBC 1:1"]["2.5e-01"]
    # images: A red|blue (red mean 127.5), B green (0), C black|white (127.5); templates 1, 2: A; 3, 4: B; 5: C
    q_template = {1: 0.5, 2: 0.5, 3: 0.0, 4: 0.0, 5: 0.5}
    pairs = [(1, 2, 1), (3, 4, 1), (1, 3, 0), (2, 5, 0), (4, 5, 0), (1, 5, 0)]
    pq = np.array([min(q_template[a], q_template[b]) for a, b, _ in pairs])
    from facezoo.eval.ijb_images import embed_ijb_images
    from facezoo.eval.ijb_meta import load_ijb_meta

    m = load_ijb_meta(tmp_path, "IJBC", ("1:1",))
    e, ef = embed_ijb_images(load_model(model, "cpu"), tmp_path, "IJBC")
    scores = evaluate_ijb(m, e, ef, fars=())["1:1"]["scores"]
    want = erc(scores, np.array([p[2] for p in pairs]) == 1, pq, fmr=0.25, rejects=[0, 0.25, 0.5])
    assert got["fnmr"] == pytest.approx(want["fnmr"]) and got["kept_genuine"] == want["kept_genuine"]
    assert RedMean().score(np.full((1, 16, 16, 3), 255, np.uint8))[0] == 1.0


def test_quality_weighted_pooling_by_hand():
    """Template 1 = images a = (1, 0), b = (0, 1) in one media; template 2 = image c = (1, 0) (pair 1-2 genuine),
    template 3 = d = (0, 1) (pair 2-3 impostor). The protocol pools a and b equally: cos(1, 2) = 1/sqrt(2);
    quality weights (1, 0, 1, 1) keep a only: cos = 1; weights equal within template 1 change nothing."""
    media = TemplateMedia(["a", "b", "c", "d"], np.array([1, 1, 2, 3]), np.array([10, 10, 20, 30]))
    meta = IJBMeta("IJBC", None, media, None, TemplatePairs(np.array([1, 2]), np.array([2, 3]), np.array([1, 0])), None)
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    kw = {"use_flip": False, "use_detector_score": False, "fars": ()}
    assert evaluate_ijb(meta, emb, **kw)["1:1"]["scores"][0] == pytest.approx(2**-0.5)
    r = evaluate_ijb(meta, emb, quality_weights=np.array([1.0, 0.0, 1.0, 1.0]), **kw)
    assert r["1:1"]["scores"] == pytest.approx([1.0, 0.0]) and r["options"]["quality_weighted"] is True
    equal = evaluate_ijb(meta, emb, quality_weights=np.array([0.5, 0.5, 0.2, 0.9]), **kw)["1:1"]["scores"]
    assert equal == pytest.approx([2**-0.5, 0.0])
    with pytest.raises(facezoo.errors.DataError, match="weights"):
        evaluate_ijb(meta, emb, quality_weights=np.array([1.0, -1.0, 1.0, 1.0]), **kw)


def test_eval_ijb_quality_is_a_second_row(tmp_path, monkeypatch, capsys):
    make_release(tmp_path / "IJBC")
    monkeypatch.setattr(facezoo, "load_model", lambda path, map_location="cpu": HalfMeans())
    argv = ["eval-ijb", str(tmp_path / "m.pt"), "--root", str(tmp_path), "--device", "cpu", "--far", "0.25"]
    assert main([*argv, "--quality", "baseline", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rows [q: ...]: an option beside the protocol")
    assert len(table_rows(out, "m")) == 2 and len(table_rows(out, "m [q: baseline]")) == 2  # 1:1 and 1:N tables
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(r) == ["m", "m [q: baseline]"]
    assert "quality_weighted" not in r["m"]["IJBC 1:1"]["options"]
    assert r["m [q: baseline]"]["IJBC 1:1"]["options"]["quality_weighted"] is True
    # flat colour images all score 0 with the baseline: tied ranks, equal weights, the protocol's numbers
    assert r["m [q: baseline]"]["IJBC 1:1"]["tar_at_far"] == r["m"]["IJBC 1:1"]["tar_at_far"]
