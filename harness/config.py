"""The user's project: the builds to test, where their scenarios are, and the run's settings.

Where the configuration comes from, first found wins: ``--config PATH``, the
``HARNESS_CONFIG`` variable, ``harness.toml`` in the current folder, ``[tool.harness]`` in
its ``pyproject.toml``; else the built-in one, the tutorial's builds (``tutorial.toml``
in this package). A build is a table ``[variants.NAME]`` (:class:`harness.variant.Variant`);
relative paths in the file are relative to the file's folder.

The file may also give run settings as top-level keys (:mod:`harness.settings` declares
them, checks them and says which source wins).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, get_args

from harness.errors import ConfigError, ScenarioError
from harness.scenario import Scenario, load_scenario, load_scenario_file
from harness.settings import DEFAULT_SCENARIO, read_file_settings, specs
from harness.tomlfile import Table, parse_toml
from harness.variant import (
    DEFAULT_DATABASE,
    ENV_PLACEHOLDERS,
    VARIANT_NAME_RULE,
    Database,
    Expectation,
    Variant,
    is_variant_name,
)

CONFIG_FILE = "harness.toml"
PYPROJECT_FILE = "pyproject.toml"
SCENARIOS_FOLDER = "scenarios"
CONFIG_VARIABLE = "HARNESS_CONFIG"
MAX_LISTED_SCENARIOS = 12  # an error that lists a project's scenarios stays a few lines long


@dataclass(frozen=True, kw_only=True)
class Config:
    """A configuration as loaded: its builds in declaration order, its scenarios, its settings."""

    path: Path | None  # None: the built-in configuration
    variants: dict[str, Variant]
    scenario_paths: tuple[Path, ...] = ()  # folders and files of the user's scenarios
    settings: dict[str, Any] = field(default_factory=dict)  # the run settings the file gives, checked

    @property
    def origin(self) -> str:
        return str(self.path) if self.path else "the built-in configuration (the tutorial's builds)"

    def get_variants(self, names: list[str] | None = None, *, database: Database = DEFAULT_DATABASE) -> list[Variant]:
        """Builds by name, in the order given; when ``names`` is empty, every build that runs on ``database``.

        A build that names its own database (``database = "postgres"``) is left out of a run
        on another one unless it is named: the tutorial's pooled builds are PostgreSQL's, and
        a run on SQLite, the default, needs no server.
        """
        if not names:
            return [v for v in self.variants.values() if v.database in (None, database)]
        for name in names:
            if name not in self.variants:
                raise ConfigError(f"unknown variant {name!r}; {self.origin} declares: {', '.join(self.variants)}")
        return [self.variants[name] for name in dict.fromkeys(names)]

    def scenario_files(self) -> dict[str, Path]:
        """The file of every scenario known by name: the built-ins, then the user's (which win on a clash)."""
        return {**_scenario_files(Path(str(resources.files("harness.scenarios")))), **self.own_scenario_files()}

    def own_scenario_files(self) -> dict[str, Path]:
        """The user's scenarios by name: ``scenarios/`` beside the file, and those its ``scenarios`` key names."""
        return {name: path for where in self.scenario_paths for name, path in _scenario_files(where).items()}

    def default_scenario(self) -> str:
        """The scenario a run replays when none is chosen.

        The built-in configuration's is ``burst``. A project's is its one scenario of its own: a
        built-in one names the tutorial's builds in its ``[expect]``, not the project's, so none
        is taken in its place.
        """
        if self.path is None:
            return DEFAULT_SCENARIO
        own = list(self.own_scenario_files())
        if len(own) == 1:
            return own[0]
        choose = f'choose one with --scenario NAME or scenario = "NAME" in {self.path}'
        if not own:
            folder = self.path.parent / SCENARIOS_FOLDER
            raise ScenarioError(
                f"no scenario to run: {self.path} chooses none and has none of its own; write one into {folder} "
                "(docs/scenarios.md), or name a file or a built-in one (harness list) with --scenario"
            )
        listed = ", ".join(own[:MAX_LISTED_SCENARIOS]) + (
            f" and {len(own) - MAX_LISTED_SCENARIOS} more (harness list)" if len(own) > MAX_LISTED_SCENARIOS else ""
        )
        raise ScenarioError(f"{self.path} has {len(own)} scenarios and chooses none to run: {listed}; {choose}")

    def scenarios(self) -> dict[str, Scenario]:
        """Every scenario known by name, loaded."""
        return {name: load_scenario_file(path) for name, path in self.scenario_files().items()}

    def scenario(self, name_or_path: str | None = None) -> Scenario:
        """A scenario by name or path (None: :meth:`default_scenario`), checked against the builds declared here."""
        scenario = load_scenario(name_or_path or self.default_scenario(), self.scenarios)
        undeclared = [name for name in scenario.expect if name not in self.variants]
        if undeclared:
            raise ConfigError(
                f"scenario {scenario.name!r}: [expect] names {undeclared[0]!r}, which {self.origin} does not "
                f"declare (declared: {', '.join(self.variants)})"
            )
        return scenario


def _scenario_files(where: Path) -> dict[str, Path]:
    """The scenario files of a folder (its ``*.toml``) by name, or one file."""
    return {path.stem: path for path in (sorted(where.glob("*.toml")) if where.is_dir() else [where])}


def builtin_config() -> Config:
    text = resources.files("harness").joinpath("tutorial.toml").read_text(encoding="utf-8")
    return _parse(parse_toml(text, origin="tutorial.toml", error=ConfigError), path=None, text=text)


def find_config(explicit: Path | None = None, *, folder: Path | None = None) -> Path | None:
    """The configuration file to use, by the order of the module's docstring; None: the built-in."""
    folder = folder or Path.cwd()
    named = explicit or (Path(os.environ[CONFIG_VARIABLE]) if os.environ.get(CONFIG_VARIABLE) else None)
    if named is not None:
        if not named.is_file():
            how = "--config" if explicit else CONFIG_VARIABLE
            raise ConfigError(f"{how}: no configuration file {named}")
        return named
    if (folder / CONFIG_FILE).is_file():
        return folder / CONFIG_FILE
    pyproject = folder / PYPROJECT_FILE
    if pyproject.is_file() and "harness" in _read(pyproject).get("tool", {}):
        return pyproject
    return None


def load_config(explicit: Path | None = None, *, folder: Path | None = None) -> Config:
    """The configuration :func:`find_config` finds, loaded and checked."""
    path = find_config(explicit, folder=folder)
    if path is None:
        return builtin_config()
    path = path.resolve()
    data = _read(path)
    if path.name == PYPROJECT_FILE:
        if not isinstance(data.get("tool", {}).get("harness"), dict):
            raise ConfigError(f"{path}: no [tool.harness] table to read the configuration from")
        data = data["tool"]["harness"]
    return _parse(data, path=path, text=path.read_text(encoding="utf-8"))


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_toml(text, origin=str(path), error=ConfigError)


def _parse(data: dict[str, Any], *, path: Path | None, text: str) -> Config:
    origin = str(path) if path else "tutorial.toml"
    top = Table(data, origin=origin, error=ConfigError, source=text)
    top.only({"variants", "scenarios", *specs()})
    folder = path.parent if path else None
    variants_table = top.table("variants", required=True)
    if not variants_table.data:
        top.fail("variants", 'declare at least one build, e.g. [variants.main] with app = "myapp.main:app"')
    for name in variants_table.data:
        if not is_variant_name(name):
            variants_table.fail(
                name, f"a variant's name names its servers' folders and goes in a header: {VARIANT_NAME_RULE}"
            )
    variants = {name: _variant(variants_table.table(name), name, folder) for name in variants_table.data}
    settings = read_file_settings(top.data, folder, top.fail)
    scenario_paths = []
    if folder is not None:
        if (folder / SCENARIOS_FOLDER).is_dir():
            scenario_paths.append(folder / SCENARIOS_FOLDER)
        for name in top.strings("scenarios"):
            where = folder / name
            if not where.exists():
                top.fail("scenarios", f"no file or folder {where}")
            scenario_paths.append(where)
    return Config(path=path, variants=variants, scenario_paths=tuple(scenario_paths), settings=settings)


def _variant(table: Table, name: str, folder: Path | None) -> Variant:
    table.only({"app", "factory", "app_dir", "env", "env_file", "ready", "expect", "description", "database", "python"})
    app = table.text("app", required=True)
    module, _, attribute = app.partition(":")
    if not module or not attribute:
        table.fail("app", f'expected "package.module:attribute", as uvicorn takes it, got {app!r}')
    env = {key: table.template("env", value, ENV_PLACEHOLDERS) for key, value in table.string_table("env").items()}
    ready = table.text("ready")
    if ready is not None and not ready.startswith("/"):
        table.fail("ready", f"must be a path starting with '/', got {ready!r}")
    app_dir = _relative(table, "app_dir", folder, "." if folder else None)
    if app_dir is not None and not Path(app_dir).is_dir():
        table.fail("app_dir", f"no folder {app_dir}")
    env_file = _relative(table, "env_file", folder, None)
    if env_file is not None and not Path(env_file).is_file():
        table.fail("env_file", f"no file {env_file}")
    python = table.text("python")
    if python is not None:
        if not python.strip() or "\0" in python:
            table.fail("python", f"expected the path of a Python interpreter, got {python!r}")
        # Absolute, not resolved: a virtualenv's python is a link, and only by its own path is it the virtualenv's.
        python = os.path.abspath((folder or Path.cwd()) / Path(python).expanduser())
        if not Path(python).exists():
            table.fail("python", f"no file {python}")
    expect: Expectation = table.choice("expect", get_args(Expectation), default="clean")
    return Variant(
        name=name,
        app=app,
        description=table.text("description", ""),
        expect=expect,
        factory=table.flag("factory", False),
        app_dir=app_dir,
        env=env,
        env_file=env_file,
        ready=ready,
        database=table.choice("database", get_args(Database)) if "database" in table.data else None,
        python=python,
    )


def _relative(table: Table, key: str, folder: Path | None, default: str | None) -> str | None:
    value = table.text(key, default)
    if value is None:
        return None
    return str(((folder or Path.cwd()) / value).resolve())
