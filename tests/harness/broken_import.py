"""A build that cannot even be imported (test-only; see faulty_apps)."""

from __future__ import annotations

from harness.app_variants.database import no_such_name  # type: ignore[attr-defined]

app = no_such_name
