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


def test_kwarg_types_from_the_signature():
    """A value the annotation rules out is refused before the constructor runs, naming the argument; values the
    signature cannot judge (no annotation, a tuple, Any) reach the constructor untouched."""
    r = Registry("head")
    built = []

    @r.register()
    class Margin:
        def __init__(self, m: float = 0.5, k: int = 3, name: str | None = None, flag: bool = False, size=112):
            built.append((m, k, name, flag, size))

    r.create("margin", m=1, k=2, name=None, flag=True, size=(112, 96))  # int for float, tuple for the unannotated
    assert built == [(1, 2, None, True, (112, 96))]
    cases = [
        ({"m": "abc"}, "head 'margin' argument 'm': expected a number, got str 'abc' (default 0.5)"),
        ({"m": float("nan")}, "argument 'm': must be a finite number"),
        ({"k": 2.5}, "argument 'k': expected an integer, got float 2.5"),
        ({"k": True}, "argument 'k': expected an integer, got bool True"),
        ({"flag": 1}, "argument 'flag': expected true/false, got int 1"),
        ({"name": 5}, "argument 'name': expected a string, got int 5"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            r.create("margin", **kwargs)
    assert len(built) == 1  # nothing built for a refused value
    with pytest.raises(ConfigError, match=r"^head.kwargs.m: expected a number"):
        r.check_kwargs("margin", {"m": "abc"}, "head.kwargs")


def test_a_type_error_inside_a_constructor_is_not_masked():
    r = Registry("thing")

    @r.register()
    def broken(x: int = 1):
        return len(x)  # a bug: TypeError from inside, with a value of the right type

    with pytest.raises(TypeError, match="has no len"):
        r.create("broken", x=2)


def test_head_kwarg_of_the_wrong_type_is_a_config_error_at_load():
    with pytest.raises(ConfigError, match=r"head.kwargs.m: expected a number, got str 'abc'"):
        load_config(None, ["head.name=arcface", "head.kwargs.m=abc"])
    with pytest.raises(ConfigError, match=r"model.kwargs.width: expected a number"):
        load_config(None, ["model.backbone=ir18", "model.kwargs.width=wide"])
    assert load_config(None, ["head.name=arcface", "head.kwargs.m=0.4"]).head.kwargs == {"m": 0.4}
