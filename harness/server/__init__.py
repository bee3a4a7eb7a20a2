"""What runs inside each launched uvicorn server, not in the harness's own process.

:mod:`harness.server.probe` is the factory uvicorn starts: it wraps the app under test and
records its exceptions; :mod:`harness.server.tracer` records threads and Peewee connections
(:mod:`harness.server.sqlalchemy_hooks` SQLAlchemy's), one ``write(2)`` per event;
:mod:`harness.server.forkserver` is the warm parent each server is forked from. All load in
the app's interpreter, beside the app, so at module level they import the standard library
only (``tests/harness/server/test_standard_library_only.py`` holds them to it); the tracer
imports the app's own Starlette and anyio inside the functions that hook them, and hooks its
Peewee or SQLAlchemy once the app imports it (:mod:`harness.server.imports`).
"""
