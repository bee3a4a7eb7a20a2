"""Each reader checks a value from a string or a TOML value the same way, and says what it accepts."""

from __future__ import annotations

import math

import pytest

from harness.readers import ChoiceList, Flag, Fraction, Number, NumberList, Text


@pytest.mark.parametrize(
    "value", ["nan", "inf", "-inf", math.nan, math.inf, -math.inf, "1e999", True, "1.5", 1.5, None, [1]]
)
def test_a_count_takes_only_a_finite_whole_number_in_range(value: object) -> None:
    count = Number(1, 10, whole=True)
    with pytest.raises(ValueError, match=r"^expected a whole number from 1 to 10, got "):
        count(value)


def test_a_number_gives_its_type_and_holds_its_bounds() -> None:
    assert Number(1, 10, whole=True)("10") == 10 and Number(1, 10, whole=True)(1) == 1
    assert Number(0, 100, low_open=True)("0.5") == 0.5 and isinstance(Number(0, 100, low_open=True)(2), float)
    for outside in ("0", 0, "100.01", -1):
        with pytest.raises(ValueError, match="expected a number above 0 and at most 100"):
            Number(0, 100, low_open=True)(outside)


@pytest.mark.parametrize("value", ["nan", math.nan, "0", "1", 1, "-0.5", True])
def test_a_confidence_is_strictly_between_0_and_1(value: object) -> None:
    with pytest.raises(ValueError, match=r"expected a number between 0 and 1, e\.g\. 0\.99"):
        Fraction()(value)
    assert Fraction(one=True)("1") == 1.0


def test_lists_are_checked_value_by_value_and_refuse_repeats() -> None:
    intervals = NumberList(Number(0, 60))
    assert intervals("0.25, 0.5,1") == (0.25, 0.5, 1.0)
    for bad in ("", "0.5,", "0.5,nan", "0.5,fast", "-1"):
        with pytest.raises(ValueError, match="expected numbers from 0 to 60, separated by commas"):
            intervals(bad)
    with pytest.raises(ValueError, match="a value is repeated"):
        intervals("0.5,0.5")
    assert ChoiceList(("sqlite", "postgres"))("sqlite,postgres") == ("sqlite", "postgres")
    with pytest.raises(ValueError, match="expected sqlite or postgres"):
        ChoiceList(("sqlite", "postgres"))("mysql")


def test_flags_and_text() -> None:
    assert [Flag()(word) for word in ("yes", "0", "OFF", True)] == [True, False, False, True]
    with pytest.raises(ValueError, match="expected true or false"):
        Flag()("maybe")
    for bad in ("", "two\nlines", "\x1b[2J", 3):
        with pytest.raises(ValueError, match="expected a non-empty string of printable characters"):
            Text()(bad)
