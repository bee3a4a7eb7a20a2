"""How a setting's value is checked, whichever source it came from.

A reader called with a TOML value checks it as the file wrote it (a number must be a TOML
number); :meth:`Reader.parse` takes the text of an option or a ``HARNESS_*`` variable and
checks what it reads the same way. Either returns the value in its type or raises
``ValueError`` saying what is accepted (``expected a whole number from 1 to 1,000, got
'nan'``); the caller adds where the value came from.

Standard library only.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, ClassVar


class Reader(abc.ABC):
    """Checks one value and says what it accepts."""

    @property
    @abc.abstractmethod
    def accepts(self) -> str: ...

    @abc.abstractmethod
    def __call__(self, value: Any) -> Any:
        """A value as a TOML file gives it, checked."""

    def parse(self, text: str) -> Any:
        """A value given as text, on the command line or in a variable, checked."""
        return self(text)

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

    def __call__(self, value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float) or (self.whole and not isinstance(value, int)):
            raise self.reject(value)
        if not math.isfinite(value) or value > self.high or value < self.low or (self.low_open and value == self.low):
            raise self.reject(value)
        return value if self.whole else float(value)

    def parse(self, text: str) -> int | float:
        try:
            number = int(text) if self.whole else float(text)
        except ValueError:
            raise self.reject(text) from None
        try:
            return self(number)
        except ValueError:
            raise self.reject(text) from None


@dataclass(frozen=True)
class Fraction(Reader):
    """A share: above 0 and below 1 (a confidence), or up to 1 itself with ``one`` (a share of trials)."""

    one: bool = False

    @property
    def accepts(self) -> str:
        return "a number above 0 and at most 1, e.g. 0.99" if self.one else "a number between 0 and 1, e.g. 0.99"

    def __call__(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.reject(value)
        if not (0 < value <= 1 if self.one else 0 < value < 1):  # NaN fails both
            raise self.reject(value)
        return float(value)

    def parse(self, text: str) -> float:
        try:
            return self(float(text))
        except ValueError:
            raise self.reject(text) from None


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
    """Choices, each at most once; as text, separated by commas: ``sqlite,postgres``."""

    choices: tuple[str, ...]

    @property
    def accepts(self) -> str:
        return f"{' or '.join(self.choices)}, or several separated by commas"

    def __call__(self, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or not value or any(name not in self.choices for name in value):
            raise self.reject(value)
        return _once(tuple(value))

    def parse(self, text: str) -> tuple[str, ...]:
        names = tuple(text.split(","))
        if any(name not in self.choices for name in names):
            raise self.reject(text)
        return _once(names, shown=text)


@dataclass(frozen=True)
class NumberList(Reader):
    """Numbers, each checked by ``each`` and given at most once; as text, separated by commas: ``0.25,0.5,1``."""

    each: Number

    @property
    def accepts(self) -> str:
        plural = self.each.accepts.replace("a whole number", "whole numbers").replace("a number", "numbers")
        return f"{plural}, separated by commas"

    def __call__(self, value: Any) -> tuple[int | float, ...]:
        if not isinstance(value, list | tuple) or not value:
            raise self.reject(value)
        try:
            numbers = tuple(self.each(part) for part in value)
        except ValueError:
            raise self.reject(value) from None
        return _once(numbers)

    def parse(self, text: str) -> tuple[int | float, ...]:
        try:
            numbers = tuple(self.each.parse(part.strip()) for part in text.split(","))
        except ValueError:
            raise self.reject(text) from None
        return _once(numbers, shown=text)


def _once(values: tuple[Any, ...], *, shown: str | None = None) -> tuple[Any, ...]:
    if len(set(values)) != len(values):
        raise ValueError(f"a value is repeated in {shown if shown is not None else ','.join(map(str, values))!r}")
    return values


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
        if not isinstance(value, bool):
            raise self.reject(value)
        return value

    def parse(self, text: str) -> bool:
        if text.lower() not in self._WORDS:
            raise self.reject(text)
        return self._WORDS[text.lower()]


class Text(Reader):
    accepts = "a non-empty string of printable characters"

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or not value or not value.isprintable():
            raise self.reject(value)
        return value
