"""The statistics against values worked out by hand (z = 1.959964 for 95%, z² = 3.841459)."""

from __future__ import annotations

import pytest

from harness.stats import (
    clean_is_decided,
    clopper_pearson_lower,
    detection_power,
    look_alpha,
    wilson_interval,
)


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


def test_the_look_shares_add_up_to_alpha() -> None:
    assert sum(look_alpha(0.01, look) for look in range(1, 100_000)) == pytest.approx(0.01, rel=1e-4)
    assert look_alpha(0.01, 1) == 0.005


def test_clean_at_99_percent_after_11_trials_against_a_reference_that_always_fails() -> None:
    # After 10 trials: bound 0.005/110 spent, lower rate (4.545e-5)^(1/10) = 0.3679, and
    # 0.6321^10 = 0.0102 > 0.005: not yet. After 11: (3.788e-5)^(1/11) = 0.3963, 0.6037^11 = 0.0039.
    assert not clean_is_decided(reference_failed=10, reference_trials=10, trials=10, confidence=0.99)
    assert clean_is_decided(reference_failed=11, reference_trials=11, trials=11, confidence=0.99)


def test_no_number_of_clean_trials_decides_against_a_reference_that_never_failed() -> None:
    assert not clean_is_decided(reference_failed=0, reference_trials=50, trials=10_000, confidence=0.9)
    assert not clean_is_decided(reference_failed=0, reference_trials=0, trials=10, confidence=0.9)


def test_a_rarely_failing_reference_needs_many_more_clean_trials() -> None:
    # tutorial-tabs fails about 12% of trials. After 5 of 40, the bound spent on look 40 is
    # 0.005/1640 and the rate's lower bound 0.00559: it takes log(0.005)/log(1 - 0.00559) = 945.3
    # clean trials.
    assert not clean_is_decided(reference_failed=5, reference_trials=40, trials=945, confidence=0.99)
    assert clean_is_decided(reference_failed=5, reference_trials=40, trials=946, confidence=0.99)
