"""Text from the app under test made safe to show: its control characters written out, visibly.

An exception's message, a server's log or its output can hold terminal escape sequences
(``\x1b[2J`` clears the screen, ``\x1b]0;...\x07`` retitles the window) or a carriage
return that hides what came before it on the line. Whatever the harness prints, or the
report shows, that may hold such text goes through :func:`printable`; the records keep it raw.

Standard library only: the pytest plugin and the reports use it.
"""

from __future__ import annotations

# C0 and C1 controls and DEL, as Python writes them in a string's repr; newline and tab lay text out.
_ESCAPES = {code: repr(chr(code))[1:-1] for code in (*range(0x20), *range(0x7F, 0xA0)) if chr(code) not in "\n\t"}


def printable(text: str) -> str:
    """``text`` with each control character but newline and tab written as its escape: ESC as ``\\x1b``."""
    return text.translate(_ESCAPES)


def first_line(text: str) -> str:
    """``text``'s first line, marked when more follow: a summary's line stays one line; the report shows the whole."""
    lines = text.strip("\n").split("\n")
    more = len(lines) - 1
    return lines[0] + (f" [+{more} more line{'s' if more > 1 else ''}]" if more else "")
