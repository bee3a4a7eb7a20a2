"""Sessions CI and newcomers run: ``nox -l`` lists them."""

from __future__ import annotations

from pathlib import Path

import nox

# Both use the standard library only: they load in nox's own interpreter.
from harness.scenario import load_scenario
from harness.stack import STACK_INSTALLER, stacks

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"

# Most trials first: pytest collects them in this order and under -n hands each worker the next
# item when it is done (pyproject.toml), so the last items to start are the short ones.
BUILTIN_SCENARIOS = sorted(
    (str(path) for path in Path("scenarios").glob("*.toml")), key=lambda path: (-load_scenario(path).trials, path)
)
MATRIX_OUT = Path("harness-out", "matrix")
DATABASES = ("sqlite", "postgres")
# What a scenario run may exit with and still fill its cell: a verdict, even regression or
# silent, is the matrix's to show; a harness error (3), a usage error (4) or Ctrl-C stop it.
_VERDICT_CODES = [0, 1, 2, 5]


@nox.session
def tests(session: nox.Session) -> None:
    """Run the project's test suite in parallel (real uvicorn and PostgreSQL servers on 127.0.0.1, Chromium)."""
    session.run("tools/install-chromium", external=True)
    session.run("tools/install-postgresql", external=True)
    session.install("-e", ".[test]")
    session.run("pytest", "-n", "auto", *session.posargs)


@nox.session(default=False)
def scenarios(session: nox.Session) -> None:
    """Run every built-in scenario in explore mode as pytest items in parallel; merged results in harness-out/."""
    session.install("-e", ".[test]")
    # Explore mode: the harness owns the thread pool, so each verdict is a replayable schedule or a search with a
    # stated bound, the same on every run, not chance timing (docs/explore.md).
    options = ["--harness-out", "harness-out", "--harness-explore"]
    session.run("pytest", "-n", "auto", *BUILTIN_SCENARIOS, *options, *session.posargs)


@nox.session(default=False)
@nox.parametrize("stack", list(stacks()), ids=list(stacks()))
def matrix(session: nox.Session, stack: str) -> None:
    """Run every built-in scenario on one stack, on SQLite and on PostgreSQL, then rebuild the matrix of all stacks."""
    session.run("tools/install-postgresql", external=True)
    session.install(STACK_INSTALLER)
    # The harness inside, rather than python = in each build: every stack needs a virtualenv either way, and the
    # built-in builds would need a configuration file per stack only to name it (docs/stacks.md).
    session.install("-e", ".", "-r", f"harness/stacks/{stack}.txt")
    for scenario in BUILTIN_SCENARIOS:
        for database in DATABASES:  # each a column of the matrix: "current", "current on postgres"
            session.run(
                "harness",
                "run",
                "--scenario",
                scenario,
                "--database",
                database,
                "--out",
                str(MATRIX_OUT / stack),
                *session.posargs,
                success_codes=_VERDICT_CODES,
            )
    session.run("harness", "matrix", str(MATRIX_OUT))


@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """Run the default scenario against both builds and print the verdict."""
    session.install("-e", ".")
    session.run("harness", "run", *session.posargs)


@nox.session(default=False)
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/; the CLI reference, exit codes and screenshots are made at build time."""
    session.run("tools/install-chromium", external=True)  # the screenshots are of a real report, in Chromium
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Measure every target of issue 14 against the floor of one trial, in one run (about 10 minutes on 2 cores)."""
    # .[test]: Playwright (the report in Chromium) and pytest-xdist (the suite); nox: the bench times nox -s scenarios.
    session.install("-e", ".[test]", "nox")
    session.run("python", "benchmarks/bench.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style with ruff and types with mypy --strict."""
    # pytest and pytest-xdist: the plugin is type-checked against them.
    session.install(".", "pytest", "pytest-xdist", "ruff", "mypy", "types-psycopg2")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # The installed package, from outside the checkout: harness.reports and harness.scenarios are
    # the top-level folders mapped under harness (pyproject.toml), which mypy sees only installed.
    config = Path("pyproject.toml").resolve()
    with session.chdir(session.create_tmp()):
        session.run("mypy", "-p", "harness", "--config-file", str(config))
