"""torch.compile of the backbone (aot_eager on CPU), and the speed options' config checks."""

import pytest
import torch

from facezoo.config import load_config
from facezoo.errors import ConfigError
from facezoo.train.trainer import Trainer

from .conftest import TinyFaces


def _losses(history):
    return [row["train/loss"] for row in history if "train/loss" in row]


@pytest.mark.slow
def test_compiled_backbone_trains_like_eager_and_saves_plain_keys(tiny_cfg, tmp_path):
    opts = ("epochs=1", "save_every=2")
    eager = _losses(Trainer(tiny_cfg(f"output={tmp_path}/e", *opts), dataset=TinyFaces()).fit(max_steps=2))
    t = Trainer(
        tiny_cfg(f"output={tmp_path}/c", *opts, "compile=true", "compile_backend=aot_eager"), dataset=TinyFaces()
    )
    compiled = _losses(t.fit(max_steps=2))
    assert len(eager) == len(compiled) == 2
    # step 1: the forward; step 2: after a backward and an update through the compiled graph
    assert compiled == pytest.approx(eager, abs=1e-6)
    assert t.backbone._compiled_call_impl is not None  # the backbone really ran compiled
    for name in ("checkpoint.pt", "model.pt"):
        keys = torch.load(tmp_path / "c" / name, weights_only=False)["backbone"].keys()
        assert keys and not any("_orig_mod" in k for k in keys), name
    eager_keys = torch.load(tmp_path / "e" / "model.pt", weights_only=False)["backbone"].keys()
    assert list(keys) == list(eager_keys)


def test_speed_option_values_are_checked():
    assert load_config(None, ["compile=max-autotune"]).compile == "max-autotune"
    assert load_config(None, ["head.chunk_size=4096"]).head.chunk_size == 4096
    assert load_config(None, []).head.chunk_size == "auto" and load_config(None, []).compile is False
    with pytest.raises(ConfigError, match="compile: 'fast' is not accepted; use one of: 'default'"):
        load_config(None, ["compile=fast"])
    with pytest.raises(ConfigError, match="head.chunk_size must be 'auto', 0"):
        load_config(None, ["head.chunk_size=-1"])
    with pytest.raises(ConfigError, match="data.decode: 'jpeg' is not one of"):
        load_config(None, ["data.decode=jpeg"])


def test_gpu_decode_is_refused_where_it_cannot_work(tiny_cfg):
    with pytest.raises(ConfigError, match="data.decode=gpu is not available on cpu"):
        Trainer(tiny_cfg("data.decode=gpu"), dataset=TinyFaces(), verbose=False)
    # prefetch (the default) has no effect on the CPU: batches come straight from the DataLoader
    t = Trainer(tiny_cfg("data.prefetch=true"), dataset=TinyFaces(), verbose=False)
    assert isinstance(t.mode.batches(0, 0), torch.utils.data.DataLoader)
