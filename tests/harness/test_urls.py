from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness import urls
from harness.urls import database_parts, display_url, hide_secrets
from tests.harness.server.test_standard_library_only import module_level_imports


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://me:s%40cret@db:5432/app?sslmode=require&password=other",
            "postgresql://me@db:5432/app?sslmode=require",
        ),
        ("http://user:s3cret@127.0.0.1:8000", "http://user@127.0.0.1:8000"),
        ("https://:s3cret@example.com/api?x=1&y=#top", "https://@example.com/api?x=1&y=#top"),  # the rest as written
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://user:s3cret@[::1", "http://user:***@[::1"),  # urlsplit refuses it; the password still goes
    ],
)
def test_a_displayed_url_has_no_password(url: str, shown: str) -> None:
    assert display_url(url) == shown


def test_a_message_about_a_url_loses_its_password_as_written_and_as_meant() -> None:
    url = "postgresql://me:s%40cret@db/app?password=other"
    message = "auth failed for s%40cret, s@cret and other"
    assert hide_secrets(message, url) == "auth failed for ***, *** and ***"
    assert hide_secrets("nothing to hide", "http://127.0.0.1") == "nothing to hide"


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("sqlite:////srv/run/tmp dir/app.sqlite3", ("", "", "/srv/run/tmp dir/app.sqlite3", "", "")),
        ("postgresql://app@127.0.0.1:5433/harness_1_a", ("127.0.0.1", "5433", "harness_1_a", "app", "")),
        ("postgresql://us%40er:p%40ss%3Aw%2F%25@[::1]:6543/my%20db", ("::1", "6543", "my db", "us@er", "p@ss:w/%")),
        ("postgres://me@db.example/app?password=a%26b", ("db.example", "5432", "app", "me", "a&b")),  # libpq's port
    ],
    ids=["sqlite", "own server", "percent-encoded", "password parameter"],
)
def test_a_database_url_is_split_into_its_parts_percent_decoded(url: str, parts: tuple[str, ...]) -> None:
    names = ("database_host", "database_port", "database_name", "database_user", "database_password")
    assert database_parts(url) == dict(zip(names, parts, strict=True))


def test_urls_imports_the_standard_library_only() -> None:
    # harness config shows a database URL through it, and must not pull in psycopg2 or httpx for that.
    imported = module_level_imports(Path(urls.__file__)) - {"__future__"}
    assert {name.split(".")[0] for name in imported} <= set(sys.stdlib_module_names)
