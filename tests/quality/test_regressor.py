"""SDD-FIQA end to end on synthetic faces: pseudo-labels from a recognition model, the quality_regression mode
(training, exact resume, its checkpoint as the sdd_fiqa method), and the trained regressor ranking degraded faces
below clean ones and making the ERC fall."""

import numpy as np
import pytest
import torch

from facezoo.config import load_config
from facezoo.data.synthetic import identity_rng, image_rng, render, sample_identity, sample_nuisance
from facezoo.errors import ConfigError, ModelError
from facezoo.models.checkpoint import save_checkpoint
from facezoo.models.embedder import EmbedderModule, ModelMeta
from facezoo.quality import create_quality
from facezoo.quality.degrade import degrade
from facezoo.quality.erc import erc, reject_grid
from facezoo.quality.labels import labels_from_features
from facezoo.train.trainer import Trainer

SIZE = 32  # the regressor's input; images are rendered at 64 (and resized to 32 by the loader and the scorer)
KINDS = ("blur", "shrink", "occlude")


def render_set(first: int, identities: int, per: int, seed: int = 11):
    """64x64 canonical views of identities first.. (so that only degradation varies within an identity), every odd
    one degraded (kind by image, severity 0.7-1): (images, labels, degraded kind or '')."""
    images, labels, kinds = [], [], []
    for i in range(first, first + identities):
        p = sample_identity(identity_rng(seed, i))
        for j in range(per):
            im = render(p, sample_nuisance(image_rng(seed, i, j), 0.0), 64)
            kind = KINDS[(i + j) % 3] if j % 2 else ""
            if kind:
                im = degrade(im, kind, 0.7 + 0.3 * ((i * 7 + j) % 4) / 3, seed=i * 100 + j)
            images.append(im)
            labels.append(i)
            kinds.append(kind)
    return np.stack(images), np.array(labels), np.array(kinds)


def features(images):
    """A fixed 'recognition model' that degradation hurts: normalised grey levels and their Laplacian, (N, 2 S^2)."""
    g = images.astype(np.float64).mean(axis=3)
    lap = 4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:]
    parts = [g.reshape(len(g), -1), lap.reshape(len(g), -1)]
    parts = [(p - p.mean(1, keepdims=True)) / (p.std(1, keepdims=True) + 1e-9) for p in parts]
    return np.concatenate(parts, axis=1)


class Faces(torch.utils.data.Dataset):
    def __init__(self, images, labels):
        self.images, self.labels = images, labels
        self.num_classes = int(labels.max()) + 1

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def config(tmp_path, labels, *extra):
    return load_config(
        None,
        [
            f"output={tmp_path}",
            "mode=quality_regression",
            f"quality_regression.labels={labels}",
            "model.backbone=ir18",
            f"model.input_size={SIZE}",
            "model.embedding_size=1",
            "model.kwargs={width: 0.125}",
            "optim.name=adamw",
            "optim.lr=0.003",
            "optim.weight_decay=0.0",
            "schedule.name=cosine",
            "batch_size=16",
            "epochs=8",
            "save_every=1000",
            "log_every=1",
            "data.num_workers=0",
            "tensorboard=false",
            "device=cpu",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """16 identities x 8 images (half degraded) and their pseudo-labels by the `features` model."""
    tmp = tmp_path_factory.mktemp("sdd")
    images, labels, kinds = render_set(0, 16, 8)
    q = labels_from_features(features(images), labels, m=6, max_positives=7, seed=0)
    np.save(tmp / "labels.npy", q)
    return {"tmp": tmp, "labels": q, "kinds": kinds, "images": images, "ids": labels}


@pytest.fixture(scope="module")
def trained(data):
    """The regressor trained on them: 64 steps of a 1/8-width IR-18 at 32x32 (about 10 s on an idle core)."""
    torch.manual_seed(0)
    tmp = data["tmp"]
    trainer = Trainer(
        config(tmp / "run", tmp / "labels.npy"), dataset=Faces(data["images"], data["ids"]), verbose=False
    )
    trainer.fit()
    return {**data, "model": tmp / "run" / "model.pt"}


def test_pseudo_labels_rank_degraded_images_lower(data):
    q, kinds = data["labels"], data["kinds"]
    assert np.isfinite(q).all()
    for kind in KINDS:
        assert np.median(q[kinds == kind]) < np.percentile(q[kinds == ""], 25)


@pytest.mark.slow
def test_trained_regressor_scores_degraded_faces_lower(trained):
    """On held-out identities: each kind of degraded face scores below the clean faces of the same identities."""
    method = create_quality("sdd_fiqa", model=trained["model"], device="cpu")
    images, _, kinds = render_set(100, 12, 6)
    s = method.score(images)
    clean = s[kinds == ""]
    for kind in KINDS:
        assert np.median(s[kinds == kind]) < np.median(clean), kind
    assert (s[kinds != ""][:, None] < clean[None, :]).mean() > 0.75  # the chance a degraded face ranks below a clean


@pytest.mark.slow
def test_erc_falls_with_rejection_for_the_trained_regressor(trained):
    method = create_quality("sdd_fiqa", model=trained["model"], device="cpu")
    images, ids, _ = render_set(200, 20, 6)
    rng = np.random.default_rng(0)
    f = features(images)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    a = rng.integers(0, len(ids), 3000)
    b = np.where(rng.random(3000) < 0.5, a - a % 6 + rng.integers(0, 6, 3000), rng.integers(0, len(ids), 3000))
    keep = a != b
    a, b = a[keep], b[keep]
    same = ids[a] == ids[b]
    scores = np.einsum("ij,ij->i", f[a], f[b])
    q = method.score(images)
    # half the images are degraded, so 3 pairs in 4 hold one: rejecting up to 30% of them should only help
    curve = erc(scores, same, np.minimum(q[a], q[b]), fmr=0.01, rejects=reject_grid(0.3, 0.1))
    fnmr = np.array(curve["fnmr"])
    # falls overall; a step may rise by a few of the ~1,500 genuine pairs (the trained weights vary with threads)
    assert fnmr[0] > 0.05 and np.all(np.diff(fnmr) < 0.01) and fnmr[-1] < 0.8 * fnmr[0]
    shuffled = erc(scores, same, rng.random(len(a)), fmr=0.01, rejects=reject_grid(0.3, 0.1))
    assert curve["auc"] < 0.9 * shuffled["auc"]


def test_resume_is_exact(data, tmp_path):
    images, ids, q = data["images"][:32], data["ids"][:32], data["labels"][:32]
    np.save(tmp_path / "labels.npy", q)
    faces = lambda: Faces(images, ids)
    cfg = lambda out: config(tmp_path / out, tmp_path / "labels.npy", "epochs=2")
    full = Trainer(cfg("a"), dataset=faces())
    whole = [r["train/loss"] for r in full.fit() if "train/loss" in r]
    first = Trainer(cfg("b"), dataset=faces())
    part = [r["train/loss"] for r in first.fit(max_steps=2) if "train/loss" in r]
    second = Trainer(cfg("b"), dataset=faces())
    second.resume(tmp_path / "b" / "checkpoint.pt")
    rest = [r["train/loss"] for r in second.fit() if "train/loss" in r]
    assert part + rest == whole and len(whole) == 4
    a, b = (torch.load(tmp_path / d / "model.pt", weights_only=True)["backbone"] for d in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    np.save(tmp_path / "other.npy", q[::-1].copy())
    other = Trainer(config(tmp_path / "b", tmp_path / "other.npy", "epochs=2"), dataset=faces(), verbose=False)
    with pytest.raises(ModelError, match="other labels"):
        other.resume(tmp_path / "b" / "checkpoint.pt")


def test_mode_checks(data, tmp_path):
    images, ids, q = data["images"][:32], data["ids"][:32], data["labels"][:32]
    np.save(tmp_path / "l.npy", q)
    faces = Faces(images, ids)
    with pytest.raises(ConfigError, match="embedding_size=1"):
        Trainer(config(tmp_path / "r", tmp_path / "l.npy", "model.embedding_size=8"), dataset=faces, verbose=False)
    np.save(tmp_path / "short.npy", q[:10])
    with pytest.raises(ConfigError, match="10 labels for a training set of 32 images"):
        Trainer(config(tmp_path / "r", tmp_path / "short.npy"), dataset=faces, verbose=False)
    np.save(tmp_path / "nan.npy", np.full(32, np.nan))
    with pytest.raises(ConfigError, match="all NaN"):
        Trainer(config(tmp_path / "r", tmp_path / "nan.npy"), dataset=faces, verbose=False)
    with pytest.raises(ConfigError, match="data.val"):
        Trainer(config(tmp_path / "r", tmp_path / "l.npy", "data.val=[x.bin]"), dataset=faces, verbose=False)
    # NaN labels are skipped by the loss: a batch of only NaN labels gives 0, not NaN
    part = q.copy()
    part[:16] = np.nan
    np.save(tmp_path / "half.npy", part)
    t = Trainer(config(tmp_path / "h", tmp_path / "half.npy", "epochs=1"), dataset=faces, verbose=False)
    assert "16 labelled of 32" in t.plan()[0]
    z = (part[16:].astype(np.float64) - part[16:].mean()) / part[16:].std()  # scale=standard: z-scores of the labelled
    target = t.mode.targets.numpy()
    assert np.isnan(target[:16]).all() and np.allclose(target[16:], z, atol=1e-6)
    batch = next(iter(t.mode.batches(0, 0)))  # images at the regressor's input size; indices replaced below
    batch["labels"] = torch.arange(16)  # all unlabelled
    t.mode.backbone.train()
    assert t.mode.loss(batch, torch.Generator().manual_seed(0)).item() == 0.0
    batch["labels"] = torch.arange(8, 24)  # half labelled: the mean over those 8
    assert t.mode.loss(batch, torch.Generator().manual_seed(0)).item() > 0


def test_init_from_a_recognition_model_and_refusals(data, tmp_path):
    rec_meta = ModelMeta(backbone="ir18", backbone_kwargs={"width": 0.125}, embedding_size=8, input_size=(SIZE, SIZE))
    torch.manual_seed(1)
    rec = rec_meta.build_backbone()
    save_checkpoint(tmp_path / "rec.pt", rec_meta, rec.state_dict(), config={"mode": "conventional",
                                                                             "head": {"name": "arcface"}})  # fmt: skip
    with pytest.raises(ModelError, match="a recognition model .*mode conventional, head arcface"):
        create_quality("sdd_fiqa", model=tmp_path / "rec.pt")
    with pytest.raises(ModelError, match="8-d embeddings"):
        create_quality("sdd_fiqa", model=EmbedderModule(rec, rec_meta))
    images, ids = data["images"][:32], data["ids"][:32]
    np.save(tmp_path / "l.npy", data["labels"][:32])
    t = Trainer(config(tmp_path / "r", tmp_path / "l.npy", f"quality_regression.init={tmp_path / 'rec.pt'}"),
                dataset=Faces(images, ids), verbose=False)  # fmt: skip
    with pytest.raises(ConfigError, match="quality_regression.init="):  # the generic warm start wants equal shapes
        cfg = config(tmp_path / "w", tmp_path / "l.npy", f"model.init_from={tmp_path / 'rec.pt'}")
        cfg.given = cfg.given - {"model.embedding_size"}  # a recipe that leaves the size to the source's (8)
        Trainer(cfg, dataset=Faces(images, ids), verbose=False)
    own = t.backbone.state_dict()
    copied = [k for k, v in rec.state_dict().items() if own[k].shape == v.shape]
    assert all(torch.equal(own[k], rec.state_dict()[k]) for k in copied)
    assert f"({len(copied)} of {len(own)} tensors)" in t.plan()[0] and len(copied) < len(own)
