"""Reading the harness's TOML files (scenarios, configuration) with errors a user can act on.

Every complaint is one line, ``FILE:LINE: [table] key: problem``, as compilers write them;
the line is the key's (or its table's, for a missing key), found by a scan of the text,
and left out when the key is not written on a line of its own.
"""

from __future__ import annotations

import re
import string
import tomllib
from typing import Any, NoReturn

from harness.errors import UsageError
from harness.readers import Number, Reader


def parse_toml(text: str, *, origin: str, error: type[UsageError]) -> dict[str, Any]:
    """The document in ``text``; invalid TOML is an ``error`` naming the file and line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"at line (\d+)", str(exc))
        raise error(f"{origin}{':' + line.group(1) if line else ''}: invalid TOML: {exc}") from None


class Table:
    """One table of a TOML document; every complaint names the origin, line, table and key."""

    def __init__(
        self,
        data: dict[str, Any],
        *,
        origin: str,
        error: type[UsageError],
        name: str = "",
        source: str = "",
        occurrence: int = 0,
    ) -> None:
        self.data = data
        self.origin = origin
        self.error = error
        self.name = name
        self.source = source  # the file's text, to find lines in
        self.occurrence = occurrence  # which [[name]] of an array of tables this is

    def fail(self, key: str, problem: str) -> NoReturn:
        shown = key if key.isprintable() and key.strip() == key and key else repr(key)  # one line, always
        where = f"[{self.name}] {shown}" if self.name else shown
        line = _line_of(self.source, self.name, key, self.occurrence)
        raise self.error(f"{self.origin}{f':{line}' if line else ''}: {where}: {problem}")

    def only(self, known: set[str], *, what: str = "key") -> None:
        for key in self.data:
            if key not in known:
                self.fail(key, f"unknown {what}; expected one of: {', '.join(sorted(known))}")

    def table(self, key: str, *, required: bool = False) -> Table:
        value = self.get(key, {}, required=required)
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {describe(value)}")
        return Table(
            value,
            origin=self.origin,
            error=self.error,
            name=f"{self.name}.{key}" if self.name else key,
            source=self.source,
        )

    def tables(self, key: str) -> list[Table]:
        """An array of tables, ``[[key]]``; none when the key is absent."""
        value = self.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.fail(key, f"expected an array of tables ([[{key}]]), got {describe(value)}")
        return [
            Table(item, origin=self.origin, error=self.error, name=key, source=self.source, occurrence=number)
            for number, item in enumerate(value)
        ]

    def count(self, key: str, default: int = 0, *, most: int, required: bool = False, allow_zero: bool = False) -> int:
        """A whole number from 1 (or 0) to ``most``: every count has a ceiling, as each one costs memory or time."""
        return int(self.read(key, Number(0 if allow_zero else 1, most, whole=True), default, required=required))

    def number(self, key: str, default: float, *, most: float, allow_zero: bool = False) -> float:
        """A finite number above 0 (or from 0) up to ``most``: TOML's ``nan`` and ``inf`` are numbers too."""
        return float(self.read(key, Number(0, most, low_open=not allow_zero), default))

    def read(self, key: str, reader: Reader, default: Any, *, required: bool = False) -> Any:
        """The value of ``key`` as ``reader`` checks it (the checks every source of a setting shares)."""
        value = self.get(key, default, required=required)
        try:
            return reader(value)
        except ValueError as exc:
            self.fail(key, str(exc))

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> Any:
        value = self.get(key, default, required=required)
        if not isinstance(value, str) and not (value is None and key not in self.data):  # JSON has null; TOML not
            self.fail(key, f"expected a string, got {describe(value)}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {describe(value)}")
        return value

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(key, f"expected a list of strings, got {describe(value)}")
        return tuple(value)

    def string_table(self, key: str) -> dict[str, str]:
        """A table whose every value is a string, such as ``env`` or ``headers``."""
        table = self.table(key)
        for name, value in table.data.items():
            if not isinstance(value, str):
                table.fail(name, f"expected a string, got {describe(value)}")
        return dict(table.data)

    def choice(self, key: str, choices: tuple[str, ...], *, default: Any = None, required: bool = False) -> Any:
        value = self.get(key, default, required=required)
        if value not in choices:
            self.fail(key, f"expected one of {', '.join(map(repr, choices))}, got {describe(value)}")
        return value

    def template(self, key: str, value: str, known: tuple[str, ...]) -> str:
        """``value`` if every ``{placeholder}`` in it is one of ``known`` (``{{`` and ``}}`` are literal braces)."""
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
        except ValueError as exc:
            self.fail(key, f"{exc} in {value!r} (write {{{{ and }}}} for literal braces)")
        for name in fields:
            if name not in known:
                self.fail(
                    key,
                    f"unknown placeholder {{{name}}} in {value!r}; known: {', '.join(f'{{{k}}}' for k in known)}",
                )
        return value

    def get(self, key: str, default: object = None, *, required: bool = False) -> Any:
        if key not in self.data:
            if required:
                self.fail(key, "missing")
            return default
        return self.data[key]


def describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


_HEADER = re.compile(r"""\s*\[\[?\s*["']?([^"'\[\]]+?)["']?\s*\]\]?\s*(#.*)?""")


def _line_of(text: str, table: str, key: str, occurrence: int = 0) -> int | None:
    """The line of ``key = ...`` in the ``occurrence``-th ``[table]`` (a top-level table's own header
    counts), else of that header."""
    assignment = re.compile(rf"""\s*(["']?){re.escape(key)}\1\s*=""")
    current, header_line, seen = "", None, -1 if table else 0  # the top level has no header
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.fullmatch(line)
        if header:
            current = header.group(1)
            if _same_table(current, table):
                seen += 1
                if seen == occurrence:
                    header_line = number
            elif not table and current == key:
                return number
        elif _same_table(current, table) and seen == occurrence and assignment.match(line):
            return number
    return header_line


def _same_table(header: str, table: str) -> bool:
    """``[tool.harness.variants.x]`` in a pyproject.toml is the table ``variants.x`` of the harness's part."""
    return header == table or (bool(table) and header.endswith(f".{table}"))
