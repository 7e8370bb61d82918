import math

import pytest

from facezoo.config import ScheduleConfig
from facezoo.train.schedules import lr_at


def test_warmup_is_linear_then_poly():
    cfg = ScheduleConfig(name="poly", warmup_epochs=1, power=2)
    # 10 steps per epoch, 50 total: warm-up steps 0..9 reach base at step 9.
    assert [lr_at(s, 0.1, 50, 10, cfg) for s in (0, 4, 9)] == pytest.approx([0.01, 0.05, 0.1])
    # after warm-up t = (step - 10) / 40
    assert lr_at(30, 0.1, 50, 10, cfg) == pytest.approx(0.1 * (1 - 20 / 40) ** 2)
    assert lr_at(50, 0.1, 50, 10, cfg) == pytest.approx(0.0)


def test_multistep_by_epoch():
    cfg = ScheduleConfig(name="step", milestones=[2, 4], gamma=0.1)
    assert lr_at(19, 1.0, 60, 10, cfg) == pytest.approx(1.0)
    assert lr_at(20, 1.0, 60, 10, cfg) == pytest.approx(0.1)
    assert lr_at(45, 1.0, 60, 10, cfg) == pytest.approx(0.01)


def test_cosine_with_floor():
    cfg = ScheduleConfig(name="cosine", min_lr=0.001)
    assert lr_at(0, 0.1, 100, 10, cfg) == pytest.approx(0.1)
    assert lr_at(50, 0.1, 100, 10, cfg) == pytest.approx(0.001 + 0.099 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(100, 0.1, 100, 10, cfg) == pytest.approx(0.001)
