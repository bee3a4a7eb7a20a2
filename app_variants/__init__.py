"""The system under test: FastAPI's "SQL Databases with Peewee" tutorial app, built twice.

``harness.app_variants.unpatched:app`` keeps Peewee's thread-local connection state, the way the
tutorial tells you to break it; ``harness.app_variants.patched:app`` installs the tutorial's
contextvars fix. The two builds differ only at the tutorial's two patch points, which
stand side by side in :mod:`harness.app_variants.patches`.

Start a build by hand::

    APP_VARIANTS_DATABASE=./test.db uvicorn harness.app_variants.unpatched:app

Environment (set by the harness's launcher for each server process):

- ``APP_VARIANTS_DATABASE``: the SQLite file (default ``test.db``, as in the tutorial).
- ``APP_VARIANTS_TIME_SCALE``: multiplies the seconds ``/slowusers/`` sleeps (default 1).
"""
