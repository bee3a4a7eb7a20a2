"""The "Testing your own app" example of the docs (docs/own-app.md) works as written, from a folder of its own."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.harness.runs import INSTALLED_HARNESS, REPO

EXAMPLE_PAGE = REPO / "docs" / "own-app.md"


def example_files() -> dict[str, str]:
    """The files the page's example shows, before its first section: a line opening with a `path`, then its block."""
    text = EXAMPLE_PAGE.read_text(encoding="utf-8")
    body = text.split("\n## ", 1)[0]
    blocks = re.findall(r"^`([\w./-]+)`,[^\n]*\n(?:[^\n]*\n)*?```\w*\n(.*?)^```", body, re.MULTILINE | re.DOTALL)
    return dict(blocks)


def test_the_section_shows_the_app_its_configuration_and_a_scenario() -> None:
    assert set(example_files()) == {"app.py", "harness.toml", "scenarios/checkout.toml"}


@pytest.mark.e2e
@pytest.mark.slow
def test_the_example_runs_as_written_and_tells_the_broken_build_from_the_fixed_one(tmp_path: Path) -> None:
    for name, text in example_files().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")

    completed = subprocess.run(
        [INSTALLED_HARNESS, "run"], cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "broken failed as expected" in completed.stdout
    assert "RuntimeError: connection already in use by another thread" in completed.stdout
    assert "fixed was clean as expected" in completed.stdout
    [results] = tmp_path.glob("harness-out/*-checkout/results.json")
    data = json.loads(results.read_text())
    assert {v["variant"]: v["kind"] for v in data["verdicts"]} == {"broken": "met", "fixed": "met"}
    fixed = next(s for s in data["summaries"] if s["variant"] == "fixed")
    assert fixed["ok"] == fixed["requests"] > 0
