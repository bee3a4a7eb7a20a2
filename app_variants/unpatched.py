"""The tutorial's app with Peewee's default thread-local state: breaks under concurrency."""

from app_variants.main import create_app
from app_variants.patches import UNPATCHED

app = create_app(UNPATCHED)
