"""The app as Peewee's docs recommend today: each endpoint holds its connection, no dependency, no patch."""

from harness.app_variants.main import create_app
from harness.app_variants.patches import RECOMMENDED

app = create_app(RECOMMENDED)
