"""``harness replay``: a failing schedule that explore mode saved, run again in a fresh server.

The schedule file names its scenario (with the digest of its definition), its build and
the build's app, the requests and the choices, and the failure to see again. The scenario
is taken from the run's ``results.json`` beside the file's ``schedules/`` folder, else
from the configuration by name; the build from the configuration. A replay reproduces the
failure when the same request fails at the same step with the same exception.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from harness.config import Config
from harness.errors import ResultsError, UsageError
from harness.explore import SCHEDULES_FOLDER, replay_in_fresh_server
from harness.plan import build_plan, new_folder
from harness.results import RESULTS_FILE, ExploreResult, RunResult, read_results
from harness.scenario import Scenario
from harness.search import SCHEDULE_FILE_VERSION, Failure, ScheduleFile, read_schedule, request_name
from harness.settings import Resolved, run_settings


@dataclass(frozen=True, kw_only=True)
class Replayed:
    path: Path
    variant: str
    expected: Failure | None
    seen: Failure | None
    error: str | None  # the replay could not be run (its server did not start, ...)

    @property
    def reproduced(self) -> bool:
        return self.error is None and self.expected is not None and self.seen == self.expected

    def describe(self) -> str:
        if self.error is not None:
            return f"{self.path}: {self.variant}: the replay could not be run: {self.error}"
        if self.reproduced:
            return f"{self.path}: {self.variant}: reproduced: {_failure(self.expected)}"
        expected = _failure(self.expected) if self.expected else "no failure"
        seen = _failure(self.seen) if self.seen else "no request failed"
        return f"{self.path}: {self.variant}: not reproduced: expected {expected}; this time {seen}"


def replay_files(
    config: Config, resolved: Mapping[str, Resolved], path: Path, *, on_start: Callable[[str], None]
) -> Iterator[Replayed]:
    """Replay each failing schedule at ``path`` in a fresh server of its build.

    ``path`` is a schedule file, a run folder with ``schedules/*.json``, or a folder whose
    ``results.json`` holds the shrunk schedules (a pytest item's, in the plugin's session folder).
    """
    settings = run_settings(resolved)
    for origin, saved, scenario in _saved(path):
        scenario = _scenario(config, saved, origin, scenario)
        variant = config.variants.get(saved.variant)
        if variant is None:
            raise UsageError(f"{origin}: its build {saved.variant!r} is not one {config.origin} declares")
        if variant.app != saved.app:
            raise UsageError(
                f"{origin}: its build {saved.variant!r} served {saved.app}; {config.origin} serves {variant.app} "
                "under that name: another build"
            )
        plan = build_plan(
            config,
            {**resolved, "explore": Resolved(value=True, source="command line")},
            scenario=scenario,
            variants=[variant.name],
            run_dir=new_folder(Path(settings.out), f"{scenario.name}-replay"),
        )
        on_start(f"replaying {origin} on a fresh server of {variant.name}; output in {plan.run_dir}")
        replay = anyio.run(functools.partial(replay_in_fresh_server, plan, variant, saved.schedule, trial=1))
        yield Replayed(
            path=origin,
            variant=variant.name,
            expected=saved.failure,
            seen=replay.record.failure if replay.record else None,
            error=replay.trial.error,
        )


def _saved(path: Path) -> Sequence[tuple[Path, ScheduleFile, Scenario | None]]:
    """The schedules at ``path``, each with where it came from and, where its run says, its scenario."""
    if path.is_file():
        return [
            (path, _read(path), _run_scenario(path.parent.parent) if path.parent.name == SCHEDULES_FOLDER else None)
        ]
    if not path.is_dir():
        raise UsageError(f"{path}: no such file or folder")
    files = sorted((path / SCHEDULES_FOLDER).glob("*.json"))
    if files:
        scenario = _run_scenario(path)  # the run's, read once for all its schedules
        return [(file, _read(file), scenario) for file in files]
    if (path / RESULTS_FILE).is_file():
        result = read_results(path / RESULTS_FILE)
        found = [(path / RESULTS_FILE, _recorded(result, e), result.scenario) for e in result.explore if e.steps]
        if found:
            return found
    raise UsageError(
        f"{path}: no failing schedule in it: harness run --explore saves one per failing build in {SCHEDULES_FOLDER}/"
    )


def _read(file: Path) -> ScheduleFile:
    try:
        return read_schedule(file)
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"{file}: not a schedule file the harness can replay: {exc}") from None


def _recorded(result: RunResult, searched: ExploreResult) -> ScheduleFile:
    """The shrunk schedule a run's record keeps, as its schedule file has it (checked as a file is)."""
    failed = next((step for step in searched.steps if step.error), None)
    document = {
        "harness_schedule": SCHEDULE_FILE_VERSION,
        "scenario": result.scenario.name,
        "scenario_digest": result.scenario.digest(),
        "variant": searched.variant,
        "app": searched.app,
        "requests": list(searched.shrunk_requests),
        "choices": list(searched.shrunk_choices),
        "failure": None
        if failed is None
        else {"request": failed.request, "step": failed.index, "call": failed.call, "error": failed.error},
        "steps": [dataclasses.asdict(step) for step in searched.steps],
    }
    try:
        return ScheduleFile.from_dict(document)
    except ValueError as exc:
        raise ResultsError(
            f"the shrunk schedule of {searched.variant} in its record cannot be replayed: {exc}"
        ) from None


def _run_scenario(run_dir: Path) -> Scenario | None:
    """The scenario as the run folder's results.json has it, if it has one that can be read."""
    try:
        return read_results(run_dir / RESULTS_FILE).scenario
    except ResultsError:
        return None


def _scenario(config: Config, saved: ScheduleFile, origin: Path, scenario: Scenario | None) -> Scenario:
    """The scenario the schedule was found in: its run's, else the configuration's of that name, as it was then."""
    if scenario is None:
        known = config.scenarios()
        if saved.scenario not in known:
            raise UsageError(
                f"{origin}: its scenario {saved.scenario!r} is neither in its run folder nor one {config.origin} knows"
            )
        scenario = known[saved.scenario]
    if scenario.name != saved.scenario or scenario.digest() != saved.scenario_digest:
        raise UsageError(
            f"{origin}: it was found in scenario {saved.scenario!r} (definition {saved.scenario_digest}), which is "
            f"now {scenario.digest()}: its requests may not be the ones it chose among"
        )
    return scenario


def _failure(failure: Failure | None) -> str:
    if failure is None:
        return "no failure"
    return f"request {request_name(failure.request)} fails at step {failure.step}, {failure.call}: {failure.error}"
