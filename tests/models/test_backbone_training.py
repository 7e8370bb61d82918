"""The TFace / FaceX-Zoo CNN families train through the unchanged Trainer (ArcFace, Partial FC, bf16) and deploy."""

from __future__ import annotations

import pytest

from .backbone_checks import check_trains, small_build


@pytest.mark.parametrize("name", ["ghostnet", "resnest50"])
def test_family_trains_with_partial_fc_and_deploys(name, tmp_path):
    kw, (size, _) = small_build(name)
    check_trains(name, kw, tmp_path, size=size)
