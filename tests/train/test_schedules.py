import itertools
import math

import pytest

from facezoo.config import ScheduleConfig
from facezoo.train.schedules import SCHEDULES, lr_at


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


def test_poly_and_step_stop_at_the_floor():
    poly = ScheduleConfig(name="poly", power=2, min_lr=0.01)
    assert lr_at(20, 0.1, 40, 10, poly) == pytest.approx(0.01 + 0.09 * 0.5**2)
    step = ScheduleConfig(name="step", milestones=[1, 2], gamma=0.05, min_lr=0.001)
    assert [lr_at(s, 0.1, 30, 10, step) for s in (9, 10, 20)] == pytest.approx([0.1, 0.005, 0.001])  # not 0.00025


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_every_schedule_warms_up_from_zero_decays_monotonically_and_ends_at_the_floor(name):
    base, floor, per_epoch, total = 0.1, 1e-3, 10, 40
    cfg = ScheduleConfig(name=name, warmup_epochs=1, power=2, milestones=[1.5, 2, 2.5], gamma=0.01, min_lr=floor)
    lrs = [lr_at(s, base, total, per_epoch, cfg) for s in range(total + 1)]  # step `total`: t = 1
    assert all(math.isfinite(v) for v in lrs)
    # warm-up: the line from 0 at step -1 to base at the last warm-up step
    assert lrs[:per_epoch] == pytest.approx([base * (k + 1) / per_epoch for k in range(per_epoch)], rel=1e-12)
    decay = lrs[per_epoch:]
    assert decay[0] == pytest.approx(base, rel=1e-12)  # the decay starts where warm-up ended
    assert all(b <= a + 1e-15 for a, b in itertools.pairwise(decay))  # never rises
    assert all(floor - 1e-15 <= v <= base + 1e-15 for v in decay)
    # a schedule either never decays or reaches the configured floor when training ends
    assert decay[-1] == pytest.approx(floor, rel=1e-9) or decay == pytest.approx([base] * len(decay))
