"""What a run will do, built in one place from the resolved settings, wherever the run comes from.

``harness run`` and the pytest plugin's items both call :func:`build_plan`: the scenario
with the settings that override it, the builds, the servers' address, the limits of a
``--confidence`` run, the database; the checks that involve more than one setting are
made here, once. :func:`harness.pipeline.execute` carries the plan out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.config import Config
from harness.errors import UsageError
from harness.files import make_run_dir
from harness.interpreter import Interpreter, checked_interpreters
from harness.results import JOURNAL_FILE, RESULTS_FILE
from harness.scenario import Explore, Scenario
from harness.settings import (
    DEFAULT_HOST,
    DEFAULT_MAX_SECONDS,
    DEFAULT_MAX_TRIALS,
    DEFAULT_POSTGRES_MAX_CONNECTIONS,
    DEFAULT_START_TIMEOUT,
    Resolved,
    RunSettings,
    option,
    run_settings,
)
from harness.variant import DEFAULT_DATABASE, VARIANT_NAME_RULE, Database, Variant, is_variant_name


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    scenario: Scenario
    variants: tuple[Variant, ...]
    run_dir: Path
    host: str = DEFAULT_HOST
    start_timeout: float = DEFAULT_START_TIMEOUT
    jobs: int = 1
    confidence: float | None = None  # None: the scenario's trials; else until decided or a limit
    max_trials: int = DEFAULT_MAX_TRIALS
    max_seconds: float = DEFAULT_MAX_SECONDS
    trace: bool = True  # the server-side trace (harness.server.tracer) and a diagnosis of every 5xx
    url: str | None = None  # a server the user runs: every trial goes to it, none is launched
    database: Database = DEFAULT_DATABASE  # what a build runs on unless it names its own
    database_url: str | None = None  # the user's PostgreSQL server; None: the harness starts its own if needed
    postgres_max_connections: int = DEFAULT_POSTGRES_MAX_CONNECTIONS  # the harness's own PostgreSQL's, per app server
    explore: Explore | None = None  # explore mode's search (harness.explore); None: trials at the OS's timing
    interpreters: dict[str, Interpreter] = field(default_factory=dict)  # by variant: those with python = PATH

    def database_of(self, variant: Variant) -> Database:
        return variant.database or self.database

    @property
    def trial_limit(self) -> int:
        return self.scenario.trials if self.confidence is None else self.max_trials

    @property
    def results_path(self) -> Path:
        return self.run_dir / RESULTS_FILE

    @property
    def journal_path(self) -> Path:
        return self.run_dir / JOURNAL_FILE


def build_plan(
    config: Config,
    resolved: Mapping[str, Resolved],
    *,
    variants: Sequence[str] | None = None,
    scenario: Scenario | None = None,
    run_dir: Path | None = None,
    url: str | None = None,
    allow_non_loopback: bool = False,
    allow_remote: bool = False,
) -> RunPlan:
    """The plan of a run: ``scenario`` (else the ``scenario`` setting's) and the builds named in ``variants``
    (else every build on the run's database), or with ``url`` the one build that server runs.

    The run's folder is ``run_dir``, else a new one under the ``out`` setting, made once
    everything else has been checked.
    """
    # Imported here: the launcher brings the network stack, which harness config does without.
    from harness.launcher import check_answers, check_host, check_url

    _check_confidence_options(resolved)
    _check_explore_options(resolved, url)
    settings = run_settings(resolved)
    host = check_host(settings.host, allow_non_loopback=allow_non_loopback)
    scenario = scenario or config.scenario(settings.scenario)
    scenario = replace(
        scenario,
        trials=settings.trials or scenario.trials,
        time_scale=settings.time_scale or scenario.time_scale,
        request_timeout=settings.request_timeout or scenario.request_timeout,
    )
    _check_leak(scenario, resolved, url)
    chosen: tuple[Variant, ...]
    if url is not None:
        url = check_url(url, allow_remote=allow_remote)
        check_answers(url, settings.start_timeout)
        chosen = (_external_variant(variants, config),)
    else:
        chosen = tuple(config.get_variants(list(variants or ()), database=settings.database))
    if not chosen:
        raise UsageError(f"no build of {config.origin} runs on {settings.database}: name one with --variant")
    on_postgres = [variant.name for variant in chosen if (variant.database or settings.database) == "postgres"]
    if settings.explore and on_postgres:
        raise UsageError(
            f"explore mode runs the builds on SQLite, and {', '.join(on_postgres)} would run on PostgreSQL: leave "
            f"{option('explore')} out, or name builds that run on SQLite"
        )
    # Each build's own interpreter is run once now: one that cannot serve it stops the run before any trial.
    interpreters = checked_interpreters(chosen, timeout=settings.start_timeout) if url is None else {}
    return RunPlan(
        scenario=scenario,
        variants=chosen,
        run_dir=run_dir or new_folder(Path(settings.out), scenario.name),
        host=host,
        start_timeout=settings.start_timeout,
        jobs=1 if url else settings.jobs,  # one server: trials one after another
        confidence=settings.confidence,
        max_trials=settings.max_trials,
        max_seconds=settings.max_seconds,
        trace=settings.trace,
        url=url,
        database=settings.database,
        database_url=settings.database_url,
        postgres_max_connections=settings.postgres_max_connections,
        explore=_explore(scenario.explore, settings) if settings.explore else None,
        interpreters=interpreters,
    )


def _check_leak(scenario: Scenario, resolved: Mapping[str, Resolved], url: str | None) -> None:
    """A leak is seen only in the server-side trace: a run that cannot have one cannot fail on it, so it stops here
    rather than call every build clean of leaks."""
    if "leak" not in scenario.fail_on:
        return
    if url is not None:
        raise UsageError(
            f"scenario {scenario.name}: fail_on has 'leak', which only the trace of a server the harness starts "
            "can show, and --url names a server of yours: leave 'leak' out of fail_on for this run"
        )
    if not resolved["trace"].value:
        raise UsageError(
            f"scenario {scenario.name}: fail_on has 'leak', which only the server-side trace can show, and "
            f"{resolved['trace'].given_as('trace')} turns it off: leave one of them out"
        )
    if resolved["explore"].value:
        raise UsageError(
            f"scenario {scenario.name}: fail_on has 'leak', and explore mode judges a build by the errors its "
            f"schedules raise, not by its connections: leave {resolved['explore'].given_as('explore')} out, or 'leak'"
        )


_EXPLORE_OPTIONS = ("explore_strategy", "explore_schedules", "explore_depth", "explore_bound", "explore_requests")


def _check_explore_options(resolved: Mapping[str, Resolved], url: str | None) -> None:
    explore = resolved["explore"]
    if not explore.value:
        for name in _EXPLORE_OPTIONS:
            if resolved[name].source != "built-in":
                raise UsageError(
                    f"{resolved[name].given_as(name)} shapes an {option('explore')} run; give {option('explore')} too"
                )
        return
    if url is not None:
        raise UsageError(
            f"{explore.given_as('explore')} and --url exclude each other: explore mode controls the thread pool "
            "inside servers the harness starts, and the server at --url is yours"
        )
    if resolved["trials"].value is not None:
        raise UsageError(
            f"{resolved['trials'].given_as('trials')} and {explore.given_as('explore')} exclude each other: explore "
            f"mode runs schedules, not trials ({option('explore_schedules')})"
        )


def _explore(scenario: Explore, settings: RunSettings) -> Explore:
    """The scenario's ``[explore]``, with what the settings override."""
    return replace(
        scenario,
        strategy=settings.explore_strategy or scenario.strategy,
        schedules=settings.explore_schedules or scenario.schedules,
        depth=settings.explore_depth or scenario.depth,
        bound=scenario.bound if settings.explore_bound is None else settings.explore_bound,
        requests=settings.explore_requests or scenario.requests,
    )


def _check_confidence_options(resolved: Mapping[str, Resolved]) -> None:
    if resolved["confidence"].value is None:
        for bound in ("max_trials", "max_seconds"):
            if resolved[bound].source != "built-in":
                raise UsageError(
                    f"{resolved[bound].given_as(bound)} bounds a {option('confidence')} run; give "
                    f"{option('confidence')} too (see 'harness run --help')"
                )
    elif resolved["trials"].value is not None:
        raise UsageError(
            f"{resolved['trials'].given_as('trials')} and {resolved['confidence'].given_as('confidence')} exclude "
            f"each other: {option('confidence')} decides how many trials to run"
        )


def _external_variant(names: Sequence[str] | None, config: Config) -> Variant:
    """The one build a --url run is recorded as: a declared one, or a new name expected to be clean."""
    if not names or len(set(names)) > 1:
        raise UsageError("--url: name the build that server runs with one --variant NAME")
    if names[0] in config.variants:
        return config.variants[names[0]]
    if not is_variant_name(names[0]):
        raise UsageError(f"--variant {names[0]!r}: {VARIANT_NAME_RULE}")
    return Variant(name=names[0], app="", description="a server the user started")


def new_folder(out: Path, name: str) -> Path:
    """A new folder under ``out`` for the run or sweep ``name``; one that cannot be made is a usage error."""
    try:
        return make_run_dir(out, name)
    except OSError as exc:
        raise UsageError(f"cannot create an output folder under {out}: {exc.strerror or exc}") from None
