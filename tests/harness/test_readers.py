"""Each reader checks a TOML value, or the text of an option or a variable, and says what it accepts."""

from __future__ import annotations

import math

import pytest

from harness.readers import ChoiceList, Flag, Fraction, Number, NumberList, Text

COUNT = Number(1, 10, whole=True)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e999", "1.5", "", "ten", "0", "11"])
def test_a_count_given_as_text_takes_only_a_finite_whole_number_in_range(text: str) -> None:
    with pytest.raises(ValueError, match=rf"^expected a whole number from 1 to 10, got '{text}'$"):
        COUNT.parse(text)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, 1.5, 2.0, "3", None, [1], 0, 11])
def test_a_count_in_a_file_must_be_a_toml_whole_number_in_range(value: object) -> None:
    with pytest.raises(ValueError, match=r"^expected a whole number from 1 to 10, got "):
        COUNT(value)


def test_a_number_gives_its_type_and_holds_its_bounds() -> None:
    assert COUNT.parse("10") == 10 and COUNT(1) == 1
    scale = Number(0, 100, low_open=True)
    assert scale.parse("0.5") == 0.5 and isinstance(scale(2), float)
    for outside in ("0", "100.01", "-1"):
        with pytest.raises(ValueError, match="expected a number above 0 and at most 100"):
            scale.parse(outside)


@pytest.mark.parametrize("text", ["nan", "0", "1", "-0.5", "many"])
def test_a_confidence_is_strictly_between_0_and_1(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected a number between 0 and 1, e\.g\. 0\.99"):
        Fraction().parse(text)
    assert Fraction(one=True).parse("1") == 1.0
    with pytest.raises(ValueError):
        Fraction()(True)


def test_lists_are_checked_value_by_value_and_refuse_repeats() -> None:
    intervals = NumberList(Number(0, 60))
    assert intervals.parse("0.25, 0.5,1") == (0.25, 0.5, 1.0)
    for bad in ("", "0.5,", "0.5,nan", "0.5,fast", "-1"):
        with pytest.raises(ValueError, match="expected numbers from 0 to 60, separated by commas"):
            intervals.parse(bad)
    with pytest.raises(ValueError, match=r"a value is repeated in '0\.5,0\.5'"):
        intervals.parse("0.5,0.5")
    databases = ChoiceList(("sqlite", "postgres"))
    assert databases.parse("sqlite,postgres") == ("sqlite", "postgres")
    with pytest.raises(ValueError, match="expected sqlite or postgres, or several separated by commas, got 'mysql'"):
        databases.parse("mysql")
    with pytest.raises(ValueError, match="a value is repeated in 'postgres,postgres'"):
        databases.parse("postgres,postgres")


def test_flags_and_text() -> None:
    assert [Flag().parse(word) for word in ("yes", "0", "OFF")] == [True, False, False]
    assert Flag()(True) is True
    for bad in ("maybe", ""):
        with pytest.raises(ValueError, match="expected true or false"):
            Flag().parse(bad)
    with pytest.raises(ValueError, match="expected true or false"):
        Flag()("yes")  # a file says true or false
    for value in ("", "two\nlines", "\x1b[2J", 3):
        with pytest.raises(ValueError, match="expected a non-empty string of printable characters"):
            Text()(value)
