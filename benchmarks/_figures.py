"""How the benchmarks print a rate: the count, the share and its Wilson 95% interval."""

from __future__ import annotations

from harness.stats import wilson_interval


def share(count: int, total: int) -> str:
    low, high = wilson_interval(count, total)
    return f"{count}/{total} ({count / total:.1%}, 95% CI {low:.1%}-{high:.1%})"
