import pytest

from facezoo.errors import ConfigError
from facezoo.registry import Registry


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
