"""Sessions CI and newcomers run: ``nox -l`` lists them."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"

BUILTIN_SCENARIOS = sorted(str(path) for path in Path("scenarios").glob("*.toml"))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the project's test suite in parallel (real uvicorn servers on 127.0.0.1, Chromium for the report)."""
    session.run("tools/install-chromium", external=True)
    session.install("-e", ".[test]")
    session.run("pytest", "-n", "auto", *session.posargs)


@nox.session(default=False)
def scenarios(session: nox.Session) -> None:
    """Run every built-in scenario as pytest items in parallel; merged results and reports in harness-out/."""
    session.install("-e", ".[test]")
    session.run("pytest", "-n", "auto", *BUILTIN_SCENARIOS, "--harness-out", "harness-out", *session.posargs)


@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """Run the default scenario against both builds and print the verdict."""
    session.install("-e", ".")
    session.run("harness", "run", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style with ruff and types with mypy --strict."""
    session.install("-e", ".", "pytest", "ruff", "mypy")  # pytest: the plugin is type-checked against it
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
