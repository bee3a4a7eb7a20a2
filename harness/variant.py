"""A build of the app under test: what uvicorn imports, with which environment, and what is expected of it.

Builds are declared in the user's configuration (:mod:`harness.config`), or are the
tutorial's built-in ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from harness.files import folder_safe

Expectation = Literal["fails", "clean"]
# What a build runs on: a SQLite file in its server's folder, or a database of its own on a
# PostgreSQL server (the harness's, or the user's: harness.postgres).
Database = Literal["sqlite", "postgres"]
DEFAULT_DATABASE: Database = "sqlite"

# What a variant's ``env`` values may hold: an empty folder made fresh for each server of
# each trial, the port it listens on, the scenario's time scale, and the URL of the fresh
# database made for that server (``sqlite:///{tmp}/app.sqlite3`` on SQLite) whole or in parts,
# for an app that reads DB_HOST, DB_PORT, ... (harness.urls.database_parts; on SQLite the name
# is the file's path and the other parts are empty).
ENV_PLACEHOLDERS = (
    "tmp",
    "port",
    "time_scale",
    "database_url",
    "database_host",
    "database_port",
    "database_name",
    "database_user",
    "database_password",
)


VARIANT_NAME_RULE = "ASCII letters, digits, '.', '_' and '-' only"


def is_variant_name(name: str) -> bool:
    """Whether ``name`` can name a build: it names its servers' folders, and goes into a request header (the id
    of each request), so no spaces and nothing but ASCII (:data:`VARIANT_NAME_RULE`)."""
    return folder_safe(name) and " " not in name


@dataclass(frozen=True, kw_only=True)
class Variant:
    """A build of the app: a name, the ASGI app uvicorn imports, what scenarios expect of it by default."""

    name: str
    app: str  # "package.module:attribute", as uvicorn takes it
    description: str = ""
    expect: Expectation = "clean"
    factory: bool = False  # the attribute is a function that returns the app
    app_dir: str | None = None  # put first on the server's import path
    env: dict[str, str] = field(default_factory=dict)  # values may hold ENV_PLACEHOLDERS
    env_file: str | None = None  # KEY=VALUE lines, read before ``env``
    ready: str | None = None  # a path polled until it answers 2xx; None: ready once it listens
    database: Database | None = None  # runs only on this one; None: on the run's (--database)
    python: str | None = None  # its servers' own interpreter (harness.interpreter); None: the harness's

    @property
    def uses_port(self) -> bool:
        """Whether the app must be told its port before it starts (``{port}`` in its env)."""
        return any("{port}" in value for value in self.env.values())
