"""Warm start and fine-tuning in every mode: model.init_from (facezoo checkpoint or a plain arcface_torch-style state
dict), the source's preprocessing kept, init_head, freeze (prefixes, bn) and optim.lr_mult."""

import numpy as np
import pytest
import torch

from facezoo.errors import ConfigError, ModelError

from .conftest import TinyFaces
from .tiny import TINY, losses, trainer


def data(classes=6, per_class=8):
    return TinyFaces(classes=classes, per_class=per_class, size=16)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained conventional run with non-default preprocessing (BGR, mean 127)."""
    out = tmp_path_factory.mktemp("source")
    t = trainer(out, "epochs=1", "model.channel_order=BGR", "model.mean=127.0",
                dataset=data(), verbose=False)  # fmt: skip
    t.fit()
    return out


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_facezoo_checkpoint_brings_its_weights_and_preprocessing(source, tmp_path, capsys):
    t = trainer(tmp_path, f"model.init_from={source / 'model.pt'}", "epochs=1", dataset=data(classes=7))
    saved = torch.load(source / "model.pt", weights_only=True)
    assert same(t.backbone.state_dict(), saved["backbone"])
    assert (t.meta.channel_order, t.meta.mean) == ("BGR", 127.0) and t.cfg.model.channel_order == "BGR"
    assert t.mode.head.weight.shape == (7, 16)  # a fresh head for the 7 new classes
    t.fit()
    out = capsys.readouterr().out
    assert "note: model.channel_order = 'BGR'" in out and "warm start from" in out
    written = torch.load(tmp_path / "model.pt", weights_only=True)["meta"]
    assert written["channel_order"] == "BGR" and written["mean"] == 127.0
    # a value the recipe sets explicitly and the source contradicts is an error, not a silent override
    with pytest.raises(ConfigError, match="model.channel_order='RGB' but model.init_from=.*trained with 'BGR'"):
        trainer(tmp_path, f"model.init_from={source / 'model.pt'}", "model.channel_order=RGB", dataset=data())
    with pytest.raises(ConfigError, match="model.crop_eye=True but model.init_from=.*trained with False"):
        trainer(tmp_path, f"model.init_from={source / 'model.pt'}", "model.crop_eye=true", dataset=data())


def test_a_plain_state_dict_as_arcface_torch_saves_it(source, tmp_path):
    weights = torch.load(source / "model.pt", weights_only=True)["backbone"]
    plain = tmp_path / "backbone.pth"
    torch.save(weights, plain)
    ddp = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in weights.items()}, ddp)
    for path in (plain, ddp):
        t = trainer(tmp_path / "run", f"model.init_from={path}", dataset=data())
        assert same(t.backbone.state_dict(), weights) and t.meta.channel_order == "RGB"  # the recipe's meta
    with pytest.raises(ModelError, match="(?s)do not fit this backbone.*set model.backbone, model.embedding_size"):
        trainer(tmp_path / "run", f"model.init_from={plain}", "model.embedding_size=20", dataset=data())  # 16-d weights
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="junk.pth: not a readable torch file"):
        trainer(tmp_path / "run", f"model.init_from={tmp_path / 'junk.pth'}", dataset=data())


def test_init_head_needs_a_checkpoint_over_the_same_classes(source, tmp_path):
    ckpt = source / "checkpoint.pt"
    t = trainer(tmp_path, f"model.init_from={ckpt}", "model.init_head=true", dataset=data())
    head = torch.load(ckpt, weights_only=True)["train"]["mode_state"]["head"]["state"]["weight"]
    assert torch.equal(t.mode.head.weight.detach(), head)
    with pytest.raises(ModelError, match="trained with 6 classes, the data has 7"):
        trainer(tmp_path, f"model.init_from={ckpt}", "model.init_head=true", dataset=data(classes=7))
    with pytest.raises(ConfigError, match="holds no class head .*a model.pt has none"):
        trainer(tmp_path, f"model.init_from={source / 'model.pt'}", "model.init_head=true", dataset=data())
    with pytest.raises(ConfigError, match="mode triplet has no class head"):
        trainer(tmp_path, "mode=triplet", f"model.init_from={ckpt}", "model.init_head=true", dataset=data())
    with pytest.raises(ConfigError, match="init_head=true needs model.init_from"):
        trainer(tmp_path, "model.init_head=true", dataset=data())


MODES = {
    "conventional": [],
    "triplet": ["mode=triplet"],
    "semi_siamese": ["mode=semi_siamese", "semi_siamese.queue_size=64"],
    "multi_dataset": ["mode=multi_dataset", "multi_dataset.sets={a: {batch_size: 16}}"],
    "distill": ["mode=distill", "distill.losses=[{name: cosine}]"],
}


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_warm_starts_freezes_and_takes_lr_multipliers(source, tmp_path, mode):
    opts = [*MODES[mode], f"model.init_from={source / 'model.pt'}"]
    opts += ["model.freeze=[backbone.conv1, bn]", "optim.lr_mult={backbone: 0.1}", "epochs=1"]
    if mode == "distill":
        opts.append(f"distill.teacher={source / 'model.pt'}")
    ds = {"a": data()} if mode == "multi_dataset" else data(classes=8, per_class=4)
    t = trainer(tmp_path, *opts, dataset=ds)
    saved = torch.load(source / "model.pt", weights_only=True)["backbone"]
    assert same(t.backbone.state_dict(), saved)
    if mode == "semi_siamese":
        assert same(t.mode.gallery.state_dict(), saved)  # the momentum copy starts from the source too
    t.fit()
    after = t.backbone.state_dict()
    frozen = [k for k in saved if k.startswith("conv1.") or ".bn" in k or k.startswith(("bn", "features"))]
    assert frozen and all(torch.equal(after[k], saved[k]) for k in frozen)  # weights, affine, running statistics
    assert not torch.equal(after["layer1.0.conv1.weight"], saved["layer1.0.conv1.weight"])  # the rest trains
    bns = [m for m in t.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)  # held in eval mode through fit's .train()
    mults = {g["lr_mult"] for g in t.optimizer.param_groups}
    assert 0.1 in mults and (mode in ("triplet", "semi_siamese") or 1.0 in mults)


def test_lr_multipliers_scale_each_part(tmp_path):
    t = trainer(tmp_path, "optim.lr_mult={backbone: 0.1, backbone.layer4: 0.5}", "optim.no_decay_bn_bias=true",
                "epochs=1", dataset=data())  # fmt: skip
    t.fit(max_steps=1)
    names = {id(p): f"{part}.{n}" for part, m in t.mode.parts().items() for n, p in m.named_parameters()}
    base = t.optimizer.param_groups[0]["lr"] / t.optimizer.param_groups[0]["lr_mult"]  # the schedule's lr
    for group in t.optimizer.param_groups:
        for p in group["params"]:
            name = names[id(p)]
            want = 0.5 if name.startswith("backbone.layer4.") else 0.1 if name.startswith("backbone.") else 1.0
            assert group["lr_mult"] == want and group["lr"] == pytest.approx(base * want), name
            assert group["weight_decay"] == (0.0 if p.ndim <= 1 else 5e-4)
    with pytest.raises(ConfigError, match="optim.lr_mult.backbone.layer9: no parameter"):
        trainer(tmp_path, "optim.lr_mult={backbone.layer9: 0.1}", dataset=data())
    with pytest.raises(ConfigError, match=r"model.freeze: \['backbon'\] match no parameter"):
        trainer(tmp_path, "model.freeze=[backbon]", dataset=data())


def test_a_fine_tuning_run_resumes_exactly(source, tmp_path):
    opts = [f"model.init_from={source / 'model.pt'}", "model.freeze=[bn]",
            "optim.lr_mult={backbone: 0.2}", "epochs=2"]  # fmt: skip
    full = losses(trainer(tmp_path / "a", *opts, dataset=data(classes=7, per_class=7)).fit())
    part = trainer(tmp_path / "b", *opts, dataset=data(classes=7, per_class=7))
    head = losses(part.fit(max_steps=2))
    resumed = trainer(tmp_path / "b", *opts, dataset=data(classes=7, per_class=7))
    resumed.resume(tmp_path / "b" / "checkpoint.pt")
    assert head + losses(resumed.fit()) == full and len(full) == 6 and np.isfinite(full).all()
    assert TINY  # the shared tiny recipe


def test_per_channel_preprocessing_of_the_source_is_kept(source, tmp_path, capsys):
    from facezoo.models.checkpoint import load_checkpoint, save_checkpoint
    from facezoo.models.embedder import ModelMeta

    ckpt = load_checkpoint(source / "model.pt")
    meta = ModelMeta.from_dict({**ckpt["meta"], "mean": [122.8, 117.0, 104.3], "std": 128.0})
    path = tmp_path / "dlib_like.pt"
    save_checkpoint(path, meta, ckpt["backbone"])
    t = trainer(tmp_path / "run", f"model.init_from={path}", "epochs=1", dataset=data())
    assert t.meta.mean == (122.8, 117.0, 104.3) and t.meta.std == 128.0 and t.cfg.model.std == 128.0
    t.fit(max_steps=1)
    assert "note: model.mean = (122.8, 117.0, 104.3)" in capsys.readouterr().out
    written = load_checkpoint(tmp_path / "run" / "model.pt")["meta"]
    assert written["mean"] == [122.8, 117.0, 104.3]
