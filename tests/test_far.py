"""facezoo.far: the one FAR rule shared by evaluation and calibration, against hand counts; sdk never imports eval."""

import ast
import math
from pathlib import Path

import numpy as np
import pytest

from facezoo.errors import ConfigError
from facezoo.far import check_far, far_key, far_rank, min_impostors, strict_threshold, unmeasurable


def test_rank_is_exact_decimal_arithmetic():
    assert math.floor(0.29 * 100) == 28  # the float product falls just short ...
    assert far_rank(0.29, 100) == 29  # ... the rule counts the decimal the user wrote
    assert far_rank(1e-3, 3000) == 3
    assert far_rank(0.1, 30) == 3 and far_rank(0.07, 100) == 7 and far_rank(1e-4, 9999) == 0
    assert far_rank(1e-6, 15_658_489) == 15  # IJB-C 1:1 at its lowest FAR


def test_min_impostors_and_the_reason():
    assert [min_impostors(f) for f in (1e-1, 1e-3, 1e-4, 0.3, 0.07)] == [10, 1000, 10000, 4, 15]
    for far in (1e-1, 1e-3, 0.3, 0.07):
        n = min_impostors(far)
        assert far_rank(far, n) == 1 and far_rank(far, n - 1) == 0  # the fewest that measure far
    assert unmeasurable(1e-3, 1000) is None
    assert unmeasurable(1e-4, 3000) == "needs at least 10000 impostor pairs to be measured, only 3000 given"
    assert unmeasurable(0.01, 5, "non-mated searches") == (
        "needs at least 100 non-mated searches to be measured, only 5 given"
    )


def test_strict_threshold_accepts_at_most_k():
    s = [0.1, 0.9, -0.2, 0.7, 0.3, 0.8, 0.0, 0.5, 0.4, 0.6]
    t = strict_threshold(s, 0.2)  # k = 2: the 3rd highest, 0.7; accepting s > 0.7 takes 0.9 and 0.8
    assert t == 0.7 and sum(x > t for x in s) == 2
    assert strict_threshold([0.9, 0.8, 0.7], 0.2, n=10) == 0.7  # the top k+1 of 10 scores decide
    assert strict_threshold([0.5, 0.5, 0.5, 0.1], 0.5) == 0.5  # ties: nothing above the tie passes
    assert strict_threshold([0.3, 0.2], 1.0) == -math.inf  # k >= n: everything may pass


def test_far_keys_never_collide():
    assert [far_key(f) for f in (1e-6, 1e-3, 0.01, 0.1, 0.3)] == ["1e-06", "1e-03", "1e-02", "1e-01", "3e-01"]
    assert far_key(0.2) != far_key(0.25) == "2.5e-01"
    for f in np.random.default_rng(0).uniform(1e-7, 1, 200):
        assert float(far_key(f)) == f


@pytest.mark.parametrize("bad", [0, 1, 1.5, -1e-3, "x", None])
def test_check_far(bad):
    with pytest.raises(ConfigError, match="far"):
        check_far(bad)


def test_sdk_never_imports_eval():
    src = Path(__file__).resolve().parents[1] / "src"
    for path in (src / "facezoo" / "sdk").rglob("*.py"):
        package = list(path.relative_to(src).parent.parts)  # e.g. ["facezoo", "sdk", "detect"]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                names = [".".join([*base, *([node.module] if node.module else [])])]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any(n == "facezoo.eval" or n.startswith("facezoo.eval.") for n in names), (path, names)
