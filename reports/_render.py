"""The one Jinja environment of the reports, autoescaping on, and how a page reaches disk."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jinja2

from harness.files import atomic_writer
from harness.terminal import printable


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("harness.reports", "templates"),
        autoescape=True,  # exception messages and paths come from servers and users: text, never markup
        finalize=_shown,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # Compiling the templates took 0.09 s of every run; the cache (in the temp folder, private to
        # the user) keeps the compiled code, keyed by each template's source. The code also depends on
        # finalize, which the key does not see: files of their own keep other code (an older harness's) apart.
        bytecode_cache=_BestEffortBytecodeCache(pattern="__jinja2_harness_printable_%s.cache"),
    )


class _BestEffortBytecodeCache(jinja2.FileSystemBytecodeCache):
    """The compiled templates, kept when they can be: a full temp folder costs a run 0.09 s, never its report."""

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _shown(value: Any) -> Any:
    """What ``{{ ... }}`` shows of a value: text with its control characters written out, as on the terminal."""
    is_markup = hasattr(value, "__html__")  # what a filter such as tojson made safe already
    return printable(value) if isinstance(value, str) and not is_markup else value


def render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def stream(template: str, **context: Any) -> Iterator[str]:
    """The page in pieces as it renders: a long run's report is written without being held whole."""
    return _environment().get_template(template).generate(**context)


def write_page(path: Path, html: str | Iterable[str]) -> Path:
    with atomic_writer(path) as file:
        file.writelines([html] if isinstance(html, str) else html)
    return path
