"""The system under test: FastAPI's "SQL Databases with Peewee" tutorial app, built three times.

``harness.app_variants.unpatched:app`` keeps Peewee's thread-local connection state, the way the
tutorial tells you to break it; ``harness.app_variants.patched:app`` installs the tutorial's
contextvars fix; ``harness.app_variants.recommended:app`` follows Peewee's documentation today
instead: no ``get_db`` dependency, each endpoint opens and closes its connection in its own
body, thread-local state. The builds differ only in what :mod:`harness.app_variants.patches`
sets side by side; the routes are written once, in :mod:`harness.app_variants.main`.

Start a build by hand::

    APP_VARIANTS_DATABASE=./test.db uvicorn harness.app_variants.unpatched:app

Environment (set by the harness's launcher for each server process):

- ``APP_VARIANTS_DATABASE``: the SQLite file (default ``test.db``, as in the tutorial), or a
  ``postgresql://`` URL; ``APP_VARIANTS_POOL`` (a number of connections) and
  ``APP_VARIANTS_POOL_TIMEOUT`` (seconds) make it Peewee's ``PooledPostgresqlDatabase``
  (:mod:`harness.app_variants.database`).
- ``APP_VARIANTS_TIME_SCALE``: multiplies the seconds ``/slowusers/`` sleeps (default 1).
"""
