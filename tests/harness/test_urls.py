from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness import urls
from harness.urls import display_url, hide_secrets
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


def test_urls_imports_the_standard_library_only() -> None:
    # harness config shows a database URL through it, and must not pull in psycopg2 or httpx for that.
    imported = module_level_imports(Path(urls.__file__)) - {"__future__"}
    assert {name.split(".")[0] for name in imported} <= set(sys.stdlib_module_names)
