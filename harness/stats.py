"""The statistics behind a verdict's stated confidence: pure functions, standard library only.

- :func:`wilson_interval`: the 95% interval of a failure rate (trials or requests).
- :func:`detection_power`: the chance that ``n`` trials of a build failing with per-trial
  rate ``p`` show at least one failure, ``1 - (1 - p)**n``.
- :func:`clean_is_decided`: the stopping rule of ``--confidence``. A variant expected to
  be clean, with no failure in ``n`` trials, is decided at level ``c`` when a build as broken
  as the reference would have failed at least one of those trials with chance at least
  ``1 - (1 - c) / 2``, judged at an exact lower bound of the reference's rate that holds at
  every look at once: the bound after ``m`` reference trials is a one-sided Clopper-Pearson
  bound at level ``(1 - c) / (2 m (m + 1))``, and these levels sum to ``(1 - c) / 2`` over
  all ``m`` (a union bound, so looking after every trial does not inflate the error). The
  two halves add up to an error of at most ``1 - c``.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile: two-sided 95%
_BISECTIONS = 60  # halves [0, 1] to below 1e-18


def wilson_interval(count: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of ``count / total``; ``(0, 1)`` when nothing was counted."""
    _check(count, total)
    if total == 0:
        return 0.0, 1.0
    rate = count / total
    spread = z * z / total
    centre = (rate + spread / 2) / (1 + spread)
    half = z / (1 + spread) * math.sqrt(rate * (1 - rate) / total + spread / (4 * total))
    # At 0 and at total the bound is exactly 0 or 1; rounding must not move it.
    low = 0.0 if count == 0 else max(0.0, centre - half)
    high = 1.0 if count == total else min(1.0, centre + half)
    return low, high


def detection_power(rate: float, trials: int) -> float:
    """The chance of at least one failing trial in ``trials`` at per-trial failure rate ``rate``."""
    return 1.0 - (1.0 - rate) ** trials


def clopper_pearson_lower(count: int, total: int, alpha: float) -> float:
    """Exact one-sided lower bound ``p`` of a binomial rate: P(X >= count | total, p) = alpha."""
    _check(count, total)
    if count == 0:
        return 0.0
    low, high = 0.0, 1.0
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        if _tail_at_least(count, total, middle) < alpha:
            low = middle
        else:
            high = middle
    return low


def look_alpha(alpha: float, look: int) -> float:
    """The share of ``alpha`` spent at look ``look`` (1, 2, ...); the shares sum to ``alpha``."""
    return alpha / (look * (look + 1))


def clean_is_decided(*, reference_failed: int, reference_trials: int, trials: int, confidence: float) -> bool:
    """Whether ``trials`` clean trials decide "clean" at ``confidence`` (see the module's docstring)."""
    if reference_trials == 0:
        return False
    alpha = 1.0 - confidence
    lower = clopper_pearson_lower(reference_failed, reference_trials, look_alpha(alpha / 2, reference_trials))
    return (1.0 - lower) ** trials <= alpha / 2


def _tail_at_least(count: int, total: int, rate: float) -> float:
    return sum(math.comb(total, k) * rate**k * (1 - rate) ** (total - k) for k in range(count, total + 1))


def _check(count: int, total: int) -> None:
    if not 0 <= count <= total:
        raise ValueError(f"expected 0 <= count <= total, got {count} of {total}")
