"""The statistics against values worked out by hand (z = 1.959964 for 95%, z² = 3.841459), and the
stopping rule against simulated trial outcomes (seeded, looked at after every trial)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from harness.stats import (
    clean_is_decided,
    clopper_pearson_lower,
    detection_power,
    false_clean_chance,
    favourable_pairs,
    pairs_needed,
    wilson_interval,
)

Z999 = 3.290526731491926  # two-sided 99.9%: how far the simulations' noise is allowed to go


@pytest.mark.parametrize(
    ("count", "total", "expected"),
    [
        # 0/10: the upper bound is (z²/n) / (1 + z²/n) = 0.3841459 / 1.3841459.
        (0, 10, (0.0, 0.277533)),
        # 5/10: centre 0.5, half width z/(1 + z²/n) * sqrt(0.25/10 + z²/400) = 1.416001 * 0.186021.
        (5, 10, (0.236593, 0.763407)),
        # 10/10: the mirror of 0/10.
        (10, 10, (0.722467, 1.0)),
        # 1/1 (one failing trial): 1 / (1 + z²).
        (1, 1, (0.206549, 1.0)),
    ],
)
def test_wilson_95_matches_the_hand_computation(count: int, total: int, expected: tuple[float, float]) -> None:
    assert wilson_interval(count, total) == pytest.approx(expected, abs=1e-6)


def test_wilson_without_observations_knows_nothing() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_counts_outside_their_total_are_refused() -> None:
    with pytest.raises(ValueError, match="0 <= count <= total"):
        wilson_interval(11, 10)


@pytest.mark.parametrize(
    ("rate", "trials", "expected"),
    [
        (0.12, 10, 1 - 0.88**10),  # tutorial-tabs' rate over its 10 trials: 0.7215
        (0.5, 3, 0.875),
        (1.0, 1, 1.0),
        (0.0, 100, 0.0),
    ],
)
def test_detection_power_is_one_minus_the_chance_of_no_failure(rate: float, trials: int, expected: float) -> None:
    assert detection_power(rate, trials) == pytest.approx(expected)
    assert detection_power(0.12, 10) == pytest.approx(0.721499, abs=1e-6)


@pytest.mark.parametrize(
    ("count", "total", "alpha", "expected"),
    [
        (5, 5, 0.05, 0.05 ** (1 / 5)),  # all failed: P(X = n) = p^n = alpha
        (1, 10, 0.05, 1 - 0.95**0.1),  # one failed: 1 - (1 - p)^n = alpha
        (0, 10, 0.05, 0.0),
    ],
)
def test_clopper_pearson_lower_bound_solves_the_binomial_tail(
    count: int, total: int, alpha: float, expected: float
) -> None:
    assert clopper_pearson_lower(count, total, alpha) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("confidence", "pairs"),
    [
        (0.9, 4),  # 2^-4 = 1/16 <= 0.1 < 1/8
        (0.95, 5),  # 1/32 <= 0.05 < 1/16
        (0.99, 7),  # 1/128 <= 0.01 < 1/64
        (0.999, 10),  # 1/1024 <= 0.001 < 1/512
        (0.75, 2),  # 1/4 is exactly 0.25: a chance of at most 1 - c is enough
    ],
)
def test_the_pairs_needed_are_the_fewest_whose_chance_is_at_most_one_minus_c(confidence: float, pairs: int) -> None:
    assert pairs_needed(confidence) == pairs
    assert false_clean_chance(pairs) <= 1 - confidence < false_clean_chance(pairs - 1)


def test_a_pair_counts_when_the_reference_failed_and_the_clean_build_ran_and_passed() -> None:
    reference = {1: True, 2: True, 3: False, 4: True, 5: True}
    # 2 failed beside it, 3 passed on both sides, 4 had an error (left out), 5 was not run.
    clean = {1: False, 2: True, 3: False}
    assert favourable_pairs(clean, reference) == 1


def test_clean_at_99_percent_after_7_trials_against_a_reference_that_always_fails() -> None:
    def decided(trials: int) -> bool:
        clean, reference = dict.fromkeys(range(1, trials + 1), False), dict.fromkeys(range(1, trials + 1), True)
        return clean_is_decided(clean, [reference], 0.99)

    assert not decided(6) and decided(7)


def test_no_number_of_clean_trials_decides_against_a_reference_that_never_failed_or_without_one() -> None:
    clean = dict.fromkeys(range(1, 1001), False)
    assert not clean_is_decided(clean, [dict.fromkeys(range(1, 1001), False)], 0.9)
    assert not clean_is_decided(clean, [], 0.9)


def test_a_clean_build_that_failed_a_trial_is_never_decided() -> None:
    reference = dict.fromkeys(range(1, 51), True)
    assert not clean_is_decided({**dict.fromkeys(range(1, 51), False), 50: True}, [reference], 0.9)


def test_with_several_references_it_takes_the_pairs_against_each() -> None:
    odd = {n: n % 2 == 1 for n in range(1, 15)}
    even = {n: n % 2 == 0 for n in range(1, 15)}
    clean = dict.fromkeys(range(1, 15), False)
    assert clean_is_decided(clean, [odd, even], 0.99)  # 7 odd and 7 even trials
    assert not clean_is_decided({n: False for n in range(1, 14)}, [odd, even], 0.99)  # 6 even trials


# --- simulated runs ----------------------------------------------------------------------------------

Draw = Callable[[random.Random], tuple[bool, tuple[bool, ...]]]  # one trial: clean failed, each reference failed
RUNS = 4000
LIMIT = 100  # --max-trials' default


def _simulate(draw: Draw, confidence: float, *, seed: int, runs: int = RUNS) -> list[int | None]:
    """Per simulated run, the trial after which the clean build was decided (asked after every trial), or None."""
    rng = random.Random(seed)
    decided_at: list[int | None] = []
    for _ in range(runs):
        clean: dict[int, bool] = {}
        references: list[dict[int, bool]] = []
        at = None
        for trial in range(1, LIMIT + 1):
            clean[trial], failed = draw(rng)
            references = references or [{} for _ in failed]
            for reference, outcome in zip(references, failed, strict=True):
                reference[trial] = outcome
            if clean[trial]:
                break  # a regression from here on; that the rule never decides one is tested above
            if clean_is_decided(clean, references, confidence):
                at = trial
                break
        decided_at.append(at)
    return decided_at


def _independent(clean: float, *references: float) -> Draw:
    return lambda rng: (rng.random() < clean, tuple(rng.random() < rate for rate in references))


def _fails_where_the_reference_passes(rng: random.Random) -> tuple[bool, tuple[bool, ...]]:
    """H0's worst case: clean and reference fail half the trials each, never the same one."""
    clean = rng.random() < 0.5
    return clean, (not clean,)


def _weak_and_strong_references(rng: random.Random) -> tuple[bool, tuple[bool, ...]]:
    """One reference fails 20% of trials, the other the other 80%; the clean build as often as the weak one.

    Counting a pair when *any* reference failed would call this build clean within 7 trials with chance
    0.8^7 = 21%: it is no better than the weak reference.
    """
    weak = rng.random() < 0.2
    return rng.random() < 0.2, (weak, not weak)


@pytest.mark.parametrize("confidence", [0.9, 0.99])
@pytest.mark.parametrize(
    "draw",
    [
        _independent(0.05, 0.05),
        _independent(0.3, 0.3),
        _independent(0.7, 0.7),
        _independent(1.0, 1.0),
        _fails_where_the_reference_passes,
        _weak_and_strong_references,
    ],
    ids=["0.05", "0.3", "0.7", "1.0", "worst-case", "two-references"],
)
def test_a_build_failing_as_often_as_its_reference_is_called_clean_at_most_1_minus_c_of_the_time(
    draw: Draw, confidence: float
) -> None:
    decided_at = _simulate(draw, confidence, seed=14)
    false_clean = sum(1 for at in decided_at if at is not None)
    # The simulation must not show a rate above 1 - c: the low end of its 99.9% interval is at most 1 - c.
    low, _ = wilson_interval(false_clean, RUNS, Z999)
    assert low <= 1 - confidence, f"{false_clean} of {RUNS} runs called clean"


@pytest.mark.parametrize("confidence", [0.9, 0.99])
def test_the_worst_case_is_called_clean_as_often_as_the_bound_says_so_it_cannot_be_lowered(confidence: float) -> None:
    false_clean = sum(1 for at in _simulate(_fails_where_the_reference_passes, confidence, seed=14) if at)
    low, high = wilson_interval(false_clean, RUNS, Z999)
    assert low <= false_clean_chance(pairs_needed(confidence)) <= high


@pytest.mark.parametrize(("confidence", "trials"), [(0.9, 4), (0.95, 5), (0.99, 7)])
def test_a_clean_build_is_decided_in_exactly_the_pairs_needed_when_the_reference_always_fails(
    confidence: float, trials: int
) -> None:
    assert set(_simulate(_independent(0.0, 1.0), confidence, seed=14, runs=50)) == {trials}


def test_against_a_reference_failing_80_percent_it_takes_until_its_7th_failure_8_75_trials_on_average() -> None:
    decided_at = [at for at in _simulate(_independent(0.0, 0.8), 0.99, seed=14) if at is not None]
    assert len(decided_at) == RUNS  # every run decided
    # Trials until the reference's 7th failure: mean 7/0.8 = 8.75, standard deviation sqrt(7 * 0.2)/0.8 = 1.48;
    # decided within n trials when it failed 7 of them: P(Binomial(n, 0.8) >= 7), 0.503 for 8, 0.993 for 13.
    assert sum(decided_at) / RUNS == pytest.approx(8.75, abs=Z999 * 1.48 / math.sqrt(RUNS))
    for trials in range(7, 16):
        expected = sum(math.comb(trials, k) * 0.8**k * 0.2 ** (trials - k) for k in range(7, trials + 1))
        share = sum(1 for at in decided_at if at <= trials) / RUNS
        assert share == pytest.approx(expected, abs=Z999 * math.sqrt(expected * (1 - expected) / RUNS)), trials
