"""The tutorial's app with its contextvars fix applied."""

from harness.app_variants.main import create_app
from harness.app_variants.patches import PATCHED

app = create_app(PATCHED)
