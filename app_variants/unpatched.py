"""The tutorial's app with Peewee's default thread-local state: breaks under concurrency."""

from harness.app_variants.main import create_app
from harness.app_variants.patches import UNPATCHED

app = create_app(UNPATCHED)
