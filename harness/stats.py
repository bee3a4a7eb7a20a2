"""The statistics behind a verdict's stated confidence: pure functions, standard library only.

- :func:`wilson_interval`: the 95% interval of a failure rate (trials or requests).
- :func:`detection_power`: the chance that ``n`` trials of a build failing with per-trial
  rate ``p`` show at least one failure, ``1 - (1 - p)**n``.
- :func:`clopper_pearson_lower`: the exact one-sided lower bound of a rate (a sweep's
  confirmations state it).
- :func:`clean_is_decided`: the stopping rule of ``--confidence``, a sequential test on
  paired trials. Trial n of a variant expected to be clean is paired with trial n of a
  variant expected to fail (the reference); a pair is *favourable* when the reference
  failed its trial and the clean variant did not. Under H0, "the clean variant fails a
  trial at least as often as the reference", P(clean fails, reference not) >=
  P(reference fails, clean not) in every pair, however the two trials of a pair hang
  together (they run side by side). So the product over pairs of 2 for a favourable pair,
  0 for the opposite and 1 otherwise has expectation at most 1 after every pair: a
  supermartingale from 1, which by Ville's inequality ever reaches ``1 / (1 - c)`` with
  chance at most ``1 - c``, however often one looks. A clean variant that never failed
  holds ``2**d`` after ``d`` favourable pairs: it is decided at the first ``d`` with
  ``2**-d <= 1 - c`` (:func:`pairs_needed`: 4 at 0.9, 5 at 0.95, 7 at 0.99). No valid rule
  needs fewer when the reference fails every trial: a build failing, half the time,
  exactly the trials its reference passes meets H0 and shows ``d`` favourable pairs in a
  row with chance ``2**-d``. With several variants expected to fail, it takes ``d``
  favourable pairs against each of them: a build at least as broken as any one of them is
  then called clean only if the test against that one errs (an intersection-union test,
  no share of ``1 - c`` to split). A trial with an error is no observation: its pair does
  not count. The pairs must be independent of one another, which a fresh server and
  database per trial is there for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

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


def false_clean_chance(pairs: int) -> float:
    """How likely, at most, a build failing at least as often as the reference ever shows ``pairs`` favourable pairs."""
    return 0.5**pairs


def pairs_needed(confidence: float) -> int:
    """The fewest favourable pairs that decide a clean variant at ``confidence``."""
    needed = 0
    while false_clean_chance(needed) > 1.0 - confidence:
        needed += 1
    return needed


def favourable_pairs(clean: Mapping[int, bool], reference: Mapping[int, bool]) -> int:
    """Trials the reference failed whose trial of the same number the clean variant ran and passed.

    Each mapping gives a variant's trials by number, True for a failed trial; a trial with an
    error is left out of it.
    """
    return sum(1 for trial, failed in reference.items() if failed and clean.get(trial) is False)


def fewest_favourable_pairs(clean: Mapping[int, bool], references: Sequence[Mapping[int, bool]]) -> int:
    """The favourable pairs against the reference that gave the fewest: the evidence the rule rests on."""
    return min(favourable_pairs(clean, reference) for reference in references)


def clean_is_decided(clean: Mapping[int, bool], references: Sequence[Mapping[int, bool]], confidence: float) -> bool:
    """Whether a variant expected to be clean is decided at ``confidence`` (see the module's docstring).

    One that failed a trial never is: that is a regression, whatever the pairs say.
    """
    if not references or any(clean.values()):
        return False
    return fewest_favourable_pairs(clean, references) >= pairs_needed(confidence)


def _tail_at_least(count: int, total: int, rate: float) -> float:
    return sum(math.comb(total, k) * rate**k * (1 - rate) ** (total - k) for k in range(count, total + 1))


def _check(count: int, total: int) -> None:
    if not 0 <= count <= total:
        raise ValueError(f"expected 0 <= count <= total, got {count} of {total}")
