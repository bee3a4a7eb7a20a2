"""The builds of the app under test that the harness knows how to launch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from harness.errors import UsageError

Expectation = Literal["fails", "clean"]


@dataclass(frozen=True, kw_only=True)
class Variant:
    """A build of the app: a name, the ASGI app uvicorn imports, what scenarios expect of it by default."""

    name: str
    app: str
    description: str
    expect: Expectation


VARIANTS: dict[str, Variant] = {
    variant.name: variant
    for variant in (
        Variant(
            name="unpatched",
            app="harness.app_variants.unpatched:app",
            description="Peewee's default thread-local connection state (the tutorial's broken build)",
            expect="fails",
        ),
        Variant(
            name="patched",
            app="harness.app_variants.patched:app",
            description="the tutorial's contextvars connection state, reset per request",
            expect="clean",
        ),
    )
}


def get_variants(names: list[str] | None = None) -> list[Variant]:
    """Look up variants by name, in the order given; all of them when ``names`` is empty."""
    if not names:
        return list(VARIANTS.values())
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise UsageError(f"unknown variant {unknown[0]!r}; known variants: {', '.join(VARIANTS)}")
    return [VARIANTS[name] for name in dict.fromkeys(names)]
