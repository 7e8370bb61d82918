"""False accept rate (FAR) helpers shared by evaluation and the SDK: one rule for what n impostor pairs can measure.

Rule: with n impostor scores s_1 >= s_2 >= ... >= s_n (higher = more alike) and k = floor(far * n) in exact
decimal arithmetic (1e-3 * 3000 is 3, not 2.9999...), the threshold t = s_(k+1) is the strictest one that accepts
at most k impostors ("same" iff s > t; equivalently s >= nextafter(t, +inf)). A FAR below 1/n gives k = 0, which
only says "no impostor of n accepted": it is not measured. Evaluation reports it as n/a with the reason
(`unmeasurable`), calibration refuses it; both ask for `min_impostors(far)` pairs.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from .errors import ConfigError


def far_key(far: float) -> str:
    """Dictionary / JSON key for a FAR (or FPIR) target: 1e-3 -> "1e-03", 0.25 -> "2.5e-01" (the fewest digits
    that give the number back, so two targets never share a key)."""
    far = float(far)
    return next(k for d in range(17) if float(k := f"{far:.{d}e}") == far or d == 16)


def check_far(far, what: str = "far") -> float:
    """far as a float in (0, 1); ConfigError naming `what` otherwise."""
    try:
        f = float(far)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}={far!r} is not a number; use e.g. 1e-4.") from None
    if not 0 < f < 1:
        raise ConfigError(f"{what}={far!r}: a false accept rate must be between 0 and 1 (exclusive), e.g. 1e-4.")
    return f


def _exact(far: float) -> Fraction:
    return Fraction(repr(float(far)))  # the decimal the user wrote, not its binary neighbour


def far_rank(far: float, n: int) -> int:
    """k = floor(far * n) in exact decimal arithmetic: the most impostors a threshold at FAR far may accept."""
    return math.floor(_exact(far) * int(n))


def min_impostors(far: float) -> int:
    """The fewest impostor pairs that measure far: the smallest n with floor(far * n) >= 1, i.e. ceil(1 / far)."""
    return math.ceil(1 / _exact(check_far(far)))


def unmeasurable(far: float, n: int, what: str = "impostor pairs") -> str | None:
    """None if n impostor pairs measure far (floor(far * n) >= 1), else the reason, e.g.
    "needs at least 10000 impostor pairs to be measured, only 3000 given"."""
    if far_rank(far, n) >= 1:
        return None
    return f"needs at least {min_impostors(far)} {what} to be measured, only {int(n)} given"


def strict_threshold(top_scores, far: float, n: int | None = None) -> float:
    """t = s_(k+1), the (k+1)-th largest impostor score, k = far_rank(far, n): accept iff score > t.

    top_scores: all n impostor scores, or (n given) any subset holding the k+1 largest of them. -inf when
    k >= len(top_scores) (every impostor may pass). Needs a measurable far (see `unmeasurable`).
    """
    s = np.asarray(top_scores, dtype=np.float64).reshape(-1)
    k = far_rank(far, s.size if n is None else n)
    if k >= s.size:
        return -math.inf
    return float(-np.partition(-s, k)[k])
