"""Distill mode: a frozen teacher of another size guides a student with its margin head; training, exact resume (with
a learnt FitNet regressor and EKD's running thresholds), the cached teacher equal to the online one (same flips),
cache invalidation, and clear errors."""

import numpy as np
import pytest
import torch

from facezoo.errors import ConfigError

from .conftest import TinyFaces
from .tiny import losses, trainer

ALL = (
    "[{name: cosine, weight: 0.5}, {name: kd, kwargs: {T: 2, s: 16}}, {name: fitnet, kwargs: {student_layer: layer3, "
    "teacher_layer: layer3}}, {name: rkd_distance}, {name: rkd_angle}, {name: pkt}, {name: sp}, {name: ekd}]"
)


def data():
    return TinyFaces(classes=6, per_class=8, size=16)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A conventional run at 24x24 input, 24-d, twice as wide: its checkpoint.pt (with head) and model.pt."""
    out = tmp_path_factory.mktemp("teacher")
    t = trainer(
        out,
        "epochs=4",
        "model.input_size=24",
        "model.embedding_size=24",
        "model.kwargs={width: 0.25, layers: [1, 1, 1, 1]}",
        dataset=data(),
        verbose=False,
    )
    t.fit()
    return out


def distill(out, teacher, *opts, dataset=None):
    return trainer(
        out, "mode=distill", f"distill.teacher={teacher / 'checkpoint.pt'}", "model.embedding_size=24", *opts,
        dataset=dataset or data(),
    )  # fmt: skip


def test_every_loss_trains_a_student_and_resumes_exactly(teacher, tmp_path):
    opts = [f"distill.losses={ALL}", "epochs=4"]
    full = distill(tmp_path / "a", teacher, *opts)
    before = {k: v.clone() for k, v in full.mode.teacher.state_dict().items()}
    history = full.fit()
    cls = losses(history, "train/loss/classification")
    assert np.mean(cls[-3:]) < 0.6 * np.mean(cls[:3])
    for name in ("cosine", "kd", "fitnet"):
        term = losses(history, f"train/loss/{name}")
        assert np.mean(term[-3:]) < np.mean(term[:3]), name  # the student moves towards the teacher
    assert all(torch.equal(v, before[k]) for k, v in full.mode.teacher.state_dict().items())  # frozen
    trained = {id(p) for g in full.optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in trained for p in full.mode.teacher.parameters())
    assert any(id(p) in trained for p in full.mode.distiller.parameters())  # the FitNet regressor learns

    part = distill(tmp_path / "b", teacher, *opts)
    head = losses(part.fit(max_steps=5))
    resumed = distill(tmp_path / "b", teacher, *opts)
    resumed.resume(tmp_path / "b" / "checkpoint.pt")
    assert head + losses(resumed.fit()) == losses(history)
    ekd = [next(m for m in t.mode.distiller.losses if m.name == "ekd") for t in (full, resumed)]
    assert torch.equal(ekd[0].student_anchors, ekd[1].student_anchors)


def test_distilled_student_matches_the_teacher_better_than_one_trained_alone(teacher, tmp_path):
    alone = trainer(tmp_path / "alone", "model.embedding_size=24", "epochs=4", dataset=data(), verbose=False)
    alone.fit()
    student = distill(
        tmp_path / "kd",
        teacher,
        "distill.losses=[{name: rkd_distance, weight: 5}, {name: pkt, weight: 50}]",
        "epochs=4",
    )
    student.fit()
    images = torch.from_numpy(np.stack([data()[i][0] for i in range(48)]))
    from facezoo.train.distill.cache import teacher_input

    with torch.no_grad():
        t = torch.nn.functional.normalize(student.mode.teacher(teacher_input(images, student.mode.teacher_meta)), dim=1)

        def gap(tr):
            tr.backbone.eval()
            s = torch.nn.functional.normalize(tr.embedder()(images), dim=1)
            return float((s @ s.t() - t @ t.t()).pow(2).mean())

        assert gap(student) < gap(alone)


def test_cached_teacher_equals_the_online_teacher_with_the_same_flips(teacher, tmp_path):
    opts = ["distill.losses=[{name: rkd_distance}, {name: kd, kwargs: {s: 16}}]", "epochs=1"]
    cached = distill(tmp_path / "c", teacher, *opts, "distill.cache=true")
    online = distill(tmp_path / "o", teacher, *opts)
    batch = next(iter(cached.mode.batches(0, 1)))
    state = torch.Generator().manual_seed(7).get_state()
    from_cache, _ = cached.mode._teacher(batch, state)
    computed, _ = online.mode._teacher({k: v for k, v in batch.items() if k != "indices"}, state)
    assert torch.allclose(from_cache, computed, rtol=2e-3, atol=2e-3)  # float16 storage
    unflipped, _ = online.mode._teacher({**batch, "indices": None}, torch.Generator().manual_seed(8).get_state())
    assert not torch.allclose(unflipped, computed, atol=1e-2)  # other flips: other embeddings
    assert np.allclose(losses(cached.fit()), losses(online.fit()), rtol=5e-3)
    files = list((tmp_path / "c" / "teacher_cache").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npy"
    # another teacher file: another key, a new cache, the old one removed
    other = tmp_path / "teacher2.pt"
    ckpt = torch.load(teacher / "checkpoint.pt", weights_only=True)
    ckpt["backbone"] = {k: v * 1.01 if v.is_floating_point() else v for k, v in ckpt["backbone"].items()}
    torch.save(ckpt, other)
    again = trainer(
        tmp_path / "c",
        "mode=distill",
        f"distill.teacher={other}",
        "model.embedding_size=24",
        *opts,
        "distill.cache=true",
        dataset=data(),
    )
    (new,) = list((tmp_path / "c" / "teacher_cache").iterdir())
    assert new != files[0] and again.mode.cache.path == new


def test_crop_eye_teacher_and_student_see_the_upper_face_cached_or_online(tmp_path):
    """A crop_eye teacher gets the rows above the nose (round(60 x 32 / 112) = 17 of the 32-row crop) resized to its
    own round(60 x 40 / 112) = 21 x 40; cached or online alike; a crop_eye student trains under it."""
    faces = TinyFaces(classes=6, per_class=8, size=32)
    t = trainer(tmp_path / "t", "epochs=1", "model.input_size=40", "model.embedding_size=24", "model.crop_eye=true",
                dataset=faces, verbose=False)  # fmt: skip
    t.fit()
    opts = [
        "distill.losses=[{name: cosine}]",
        "epochs=1",
        "model.crop_eye=true",
        "model.input_size=32",
        "data.flip=false",
    ]
    cached = distill(tmp_path / "c", tmp_path / "t", *opts, "distill.cache=true", dataset=faces)
    online = distill(tmp_path / "o", tmp_path / "t", *opts, dataset=faces)
    batch = next(iter(cached.mode.batches(0, 1)))
    state = torch.Generator().manual_seed(7).get_state()
    from_cache, _ = cached.mode._teacher(batch, state)
    computed, _ = online.mode._teacher({k: v for k, v in batch.items() if k != "indices"}, state)
    top = batch["images"][:, :17].permute(0, 3, 1, 2).float().sub(127.5).div(127.5)
    with torch.no_grad():
        t.backbone.eval()
        want = t.backbone(torch.nn.functional.interpolate(top, size=(21, 40), mode="bilinear", align_corners=False))
    assert torch.allclose(computed, want, atol=1e-4)
    assert torch.allclose(from_cache, computed, rtol=2e-3, atol=2e-3)  # float16 storage
    assert len(losses(online.fit())) > 0


def test_errors_name_the_fix(teacher, tmp_path):
    with pytest.raises(ConfigError, match="kd needs the teacher's class head.*checkpoint.pt"):
        trainer(tmp_path, "mode=distill", f"distill.teacher={teacher / 'model.pt'}", "model.embedding_size=24",
                "distill.losses=[{name: kd}]", dataset=data())  # fmt: skip
    with pytest.raises(ConfigError, match="compares embeddings entry by entry"):
        distill(tmp_path, teacher, "model.embedding_size=16", "distill.losses=[{name: l2}]")
    with pytest.raises(ConfigError, match="unknown distillation loss 'rkd_distanse'. Did you mean 'rkd_distance'"):
        distill(tmp_path, teacher, "distill.losses=[{name: rkd_distanse}]")
    with pytest.raises(ConfigError, match="student has no layer 'layer9'"):
        distill(tmp_path, teacher, "distill.losses=[{name: fitnet, kwargs: {student_layer: layer9}}]")
    with pytest.raises(ConfigError, match="distill.losses is empty"):
        distill(tmp_path, teacher)
