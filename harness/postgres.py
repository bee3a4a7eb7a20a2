"""Placeholder: replaced by the real module (helper-10's branch issue15-postgres)."""

from __future__ import annotations

DEFAULT_DATABASE_PREFIX = "harness_"
DEFAULT_LEAK_WAIT = 0.5
