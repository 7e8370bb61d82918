import pytest

from facezoo.config import load_config
from facezoo.errors import ConfigError
from facezoo.registry import Registry
from facezoo.train.optim import OPTIMIZERS
from facezoo.train.schedules import SCHEDULES


def test_register_create_and_defaults():
    r = Registry("thing")

    @r.register("double", factor=2)
    @r.register()
    def scale(x, factor=1):
        return x * factor

    assert r.names() == ["double", "scale"]
    assert r.create("scale", x=3) == 3 and r.create("double", x=3) == 6
    with pytest.raises(ValueError, match="twice"):
        r.register("scale")(scale)


def test_unknown_name_and_keyword_suggest_the_nearest():
    import facezoo

    with pytest.raises(ConfigError, match="unknown head 'arcfce'. Did you mean 'arcface'"):
        facezoo.create_head("arcfce", 8, 4)
    with pytest.raises(ConfigError, match="no argument 'marign'. It takes: embedding_size, num_classes, s, m"):
        facezoo.create_head("cosface", 8, 4, marign=0.3)
    with pytest.raises(ConfigError, match="no argument 'widht'. Did you mean 'width'"):
        facezoo.create_backbone("ir18", widht=0.5)


@pytest.mark.parametrize("key, registry", [("optim.name", OPTIMIZERS), ("schedule.name", SCHEDULES)])
def test_config_names_are_the_registry_names(key, registry):
    """Every registered name is accepted at load; a typo is refused with the nearest name and the full list."""
    section, field = key.split(".")
    for name in registry.names():
        assert getattr(getattr(load_config(None, [f"{key}={name}"]), section), field) == name
    name = registry.names()[-1]
    with pytest.raises(ConfigError, match=f"Did you mean '{name}'.*Available: {', '.join(registry.names())}"):
        load_config(None, [f"{key}={name[:-1]}x"])


def test_schedule_floor_is_checked_against_the_learning_rate():
    with pytest.raises(ConfigError, match=r"schedule.min_lr must be in \[0, optim.lr = 0.1\]"):
        load_config(None, ["schedule.min_lr=0.2"])
    with pytest.raises(ConfigError, match="schedule.min_lr"):
        load_config(None, ["schedule.min_lr=-1"])
