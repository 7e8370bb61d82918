import pytest

from facezoo.config import Config, load_config, save_config
from facezoo.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_recipe_and_overrides_are_typed(tmp_path):
    p = write(tmp_path, "model:\n  backbone: ir18\nhead:\n  name: cosface\n  kwargs: {m: 0.4}\nepochs: 3\n")
    cfg = load_config(p, ["optim.lr=0.05", "data.val=[a.bin, b.bin]", "precision=bf16", "head.kwargs.s=30"])
    assert cfg.model.backbone == "ir18" and cfg.epochs == 3
    assert cfg.optim.lr == 0.05 and isinstance(cfg.optim.lr, float)
    assert cfg.data.val == ["a.bin", "b.bin"]
    assert cfg.head.kwargs == {"m": 0.4, "s": 30}
    assert cfg.precision == "bf16"


def test_int_accepted_for_float_but_not_str_for_int(tmp_path):
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1.0
    with pytest.raises(ConfigError, match="epochs: expected int"):
        load_config(None, ["epochs=many"])
    with pytest.raises(ConfigError, match="expected bool"):
        load_config(None, ["tensorboard=3"])


def test_unknown_key_names_the_nearest(tmp_path):
    p = write(tmp_path, "optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "optim.learning_rate" in str(e.value) and str(p) in str(e.value)
    with pytest.raises(ConfigError, match="Did you mean 'batch_size'"):
        load_config(None, ["batch_sise=64"])


def test_choices_and_registry_names_are_checked():
    with pytest.raises(ConfigError, match="'fp8' is not one of"):
        load_config(None, ["precision=fp8"])
    with pytest.raises(ConfigError, match="Did you mean 'arcface'"):
        load_config(None, ["head.name=arcfce"])
    with pytest.raises(ConfigError, match="Did you mean 'ir50'"):
        load_config(None, ["model.backbone=ir5O"])
    with pytest.raises(ConfigError, match="divisible by grad_accum"):
        load_config(None, ["batch_size=10", "grad_accum=3"])
    with pytest.raises(ConfigError, match="must be positive"):
        load_config(None, ["epochs=0"])


def test_bad_override_and_missing_recipe(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["epochs"])
    with pytest.raises(ConfigError, match="recipe not found"):
        load_config(tmp_path / "nope.yaml")


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["model.kwargs={width: 0.5}", "schedule.milestones=[2, 4]"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg and isinstance(again, Config)


def test_shipped_recipes_load():
    from pathlib import Path

    recipes = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))
    assert len(recipes) >= 3
    for recipe in recipes:
        load_config(recipe)


@pytest.mark.parametrize(
    "override, message",
    [
        ("device=tpu", "device 'tpu' is not one of auto, cpu, cuda, cuda:N"),
        ("device=cuda:x", "device 'cuda:x' is not one of"),
        ("model.input_size=8", r"model.input_size must be in 16..1024 \(pixels per side"),
        ("model.input_size=100000", "model.input_size must be in 16..1024"),
        ("model.embedding_size=1", r"model.embedding_size must be >= 2 for mode conventional"),
        ("model.embedding_size=10000000", "model.embedding_size must be in 1..65536"),
        ("seed=-1", r"seed must be in 0..4294967295"),
        (f"seed={2**40}", "seed must be in 0..4294967295"),
        ("compile=true", None),  # inductor: a real backend
        (
            "compile=true compile_backend=inductr",
            "compile_backend 'inductr' is not a torch.compile backend. Did you mean 'inductor'",
        ),
    ],
)
def test_value_bounds(override, message):
    overrides = override.split()
    if message is None:
        load_config(None, overrides)
        return
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_bounds_accept_their_ends_and_per_step_seeds_fit_torch():
    import torch

    cfg = load_config(None, ["model.input_size=16", "model.embedding_size=2", f"seed={2**32 - 1}"])
    step_seed = (cfg.seed * 1_000_003 + 10**9) * 1024 + 7  # the trainer's derivation, a billion steps in
    torch.Generator().manual_seed(step_seed)  # fits: no overflow
    load_config(None, ["model.input_size=1024", "model.embedding_size=65536", "device=cuda:1"])


def test_config_errors_exit_2_through_the_cli(capsys, monkeypatch):
    from pathlib import Path

    from facezoo.cli import main

    monkeypatch.chdir(Path(__file__).parents[1])
    for override, needle in [
        ("device=tpu", "device 'tpu'"),
        ("head.kwargs.m=abc", "head.kwargs.m"),
        ("compile=true", "compile_backend 'nope'"),
        ("model.input_size=5", "model.input_size"),
        ("model.embedding_size=0", "model.embedding_size"),
        ("seed=-3", "seed must be"),
    ]:
        extra = ["compile_backend=nope"] if override == "compile=true" else []
        assert main(["train", "configs/synthetic_demo.yaml", override, *extra]) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, err
