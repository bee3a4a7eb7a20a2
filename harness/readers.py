"""How a setting's value is checked, whichever source it came from: each reader takes a string
(an option, a ``HARNESS_*`` variable) or a TOML value, returns the value in its type, or
raises ``ValueError`` saying what it accepts (``expected a whole number from 1 to 10,000,
got 'nan'``); the caller adds where the value came from.

Standard library only.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, ClassVar


class Reader(abc.ABC):
    """Checks one value, from a string (an option, a variable) or a TOML value, and says what it accepts."""

    @property
    @abc.abstractmethod
    def accepts(self) -> str: ...

    @abc.abstractmethod
    def __call__(self, value: Any) -> Any: ...

    def reject(self, value: Any) -> ValueError:
        return ValueError(f"expected {self.accepts}, got {value!r}")


@dataclass(frozen=True)
class Number(Reader):
    """A finite number in a range; ``whole`` for a count."""

    low: float
    high: float
    whole: bool = False
    low_open: bool = False  # the low bound itself is refused: a time of 0 s is no time

    @property
    def accepts(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        if self.low_open:
            return f"{kind} above {self.low:g} and at most {self.high:,g}"
        return f"{kind} from {self.low:g} to {self.high:,g}"

    def __call__(self, given: Any) -> int | float:
        value = given
        if isinstance(value, str):
            try:
                value = int(value) if self.whole else float(value)
            except ValueError:
                raise self.reject(given) from None
        if isinstance(value, bool) or not isinstance(value, int | float) or (self.whole and not isinstance(value, int)):
            raise self.reject(given)
        if not math.isfinite(value) or value > self.high or value < self.low or (self.low_open and value == self.low):
            raise self.reject(given)
        return value if self.whole else float(value)


@dataclass(frozen=True)
class Fraction(Reader):
    """A share: above 0 and below 1 (a confidence), or up to 1 itself with ``one`` (a share of trials)."""

    one: bool = False

    @property
    def accepts(self) -> str:
        return "a number above 0 and at most 1, e.g. 0.99" if self.one else "a number between 0 and 1, e.g. 0.99"

    def __call__(self, given: Any) -> float:
        value = given
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise self.reject(given) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.reject(given)
        if not (0 < value <= 1 if self.one else 0 < value < 1):  # NaN fails both
            raise self.reject(given)
        return float(value)


@dataclass(frozen=True)
class Choice(Reader):
    choices: tuple[str, ...]

    @property
    def accepts(self) -> str:
        return " or ".join(map(repr, self.choices))

    def __call__(self, value: Any) -> str:
        if value not in self.choices:
            raise self.reject(value)
        return str(value)


@dataclass(frozen=True)
class ChoiceList(Reader):
    """Choices separated by commas, each at most once: ``sqlite,postgres``."""

    choices: tuple[str, ...]

    @property
    def accepts(self) -> str:
        return f"{' or '.join(self.choices)}, or several separated by commas"

    def __call__(self, value: Any) -> tuple[str, ...]:
        names = tuple(value.split(",")) if isinstance(value, str) else value
        if not isinstance(names, tuple | list) or not names or any(name not in self.choices for name in names):
            raise self.reject(value)
        if len(set(names)) != len(names):
            raise ValueError(f"a value is repeated in {value!r}")
        return tuple(names)


@dataclass(frozen=True)
class NumberList(Reader):
    """Numbers separated by commas, each checked by ``each`` and given at most once: ``0.25,0.5,1``."""

    each: Number

    @property
    def accepts(self) -> str:
        return f"{self.each.accepts.replace('a whole number', 'whole numbers').replace('a number', 'numbers')}, " + (
            "separated by commas"
        )

    def __call__(self, value: Any) -> tuple[int | float, ...]:
        parts = value.split(",") if isinstance(value, str) else value
        if not isinstance(parts, list | tuple) or not parts:
            raise self.reject(value)
        try:
            numbers = tuple(self.each(part.strip() if isinstance(part, str) else part) for part in parts)
        except ValueError:
            raise self.reject(value) from None
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"a value is repeated in {value!r}")
        return numbers


class Flag(Reader):
    accepts = "true or false"
    _WORDS: ClassVar[dict[str, bool]] = {
        "1": True,
        "true": True,
        "yes": True,
        "on": True,
        "0": False,
        "false": False,
        "no": False,
        "off": False,
    }

    def __call__(self, value: Any) -> bool:
        if isinstance(value, str) and value.lower() in self._WORDS:
            return self._WORDS[value.lower()]
        if not isinstance(value, bool):
            raise self.reject(value)
        return value


class Text(Reader):
    accepts = "a non-empty string of printable characters"

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or not value or not value.isprintable():
            raise self.reject(value)
        return value
