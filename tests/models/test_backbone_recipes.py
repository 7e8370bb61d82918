"""Every recipe in configs/ loads, and its backbone builds with the recipe's own keywords (on the meta device)."""

from __future__ import annotations

from pathlib import Path

import pytest

from facezoo.config import load_config
from facezoo.models.backbones.facts import build_meta, count_parameters

RECIPES = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_recipe_builds_its_backbone(recipe):
    cfg = load_config(recipe)
    m = cfg.model
    model = build_meta(m.backbone, embedding_size=m.embedding_size, input_size=m.input_size, **m.kwargs)
    assert model.embedding_size == m.embedding_size and model.input_size == (m.input_size, m.input_size)
    assert count_parameters(model) > 0


def test_tface_recipes_ship():
    names = {r.stem for r in RECIPES}
    for backbone in ("resnet50", "efficientnet_b0", "efficientnet_b1", "ghostnet"):
        assert f"ms1mv2_{backbone}_arcface" in names
    cfg = load_config(Path(__file__).parents[2] / "configs" / "ms1mv2_resnet50_arcface.yaml")
    assert cfg.schedule.milestones == [8, 12, 15, 18] and cfg.epochs == 20 and cfg.model.kwargs == {"dropout": 0.5}
