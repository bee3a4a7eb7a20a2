"""``harness replay``: a failing schedule that explore mode saved, run again in a fresh server.

The schedule file names its scenario (with the digest of its definition), its build and
the build's app, the requests and the choices, and the failure to see again. The scenario
is taken from the run's ``results.json`` beside the file's ``schedules/`` folder, else
from the configuration by name; the build from the configuration. A replay reproduces the
failure when the same request fails at the same step with the same exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio

from harness.config import Config
from harness.errors import ResultsError, UsageError
from harness.explore import SCHEDULES_FOLDER, replay_in_fresh_server
from harness.plan import build_plan, new_folder
from harness.results import RESULTS_FILE, read_results
from harness.scenario import Scenario
from harness.search import Failure, ScheduleFile, read_schedule, request_name
from harness.settings import resolve, run_settings


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


def replay_files(config: Config, path: Path, *, on_start: Callable[[str], None]) -> Iterator[Replayed]:
    """Replay each schedule at ``path`` (a file, or a run folder's ``schedules/*.json``) in a fresh server."""
    for file in _schedule_files(path):
        saved = _read(file)
        scenario = _scenario(config, saved, file)
        variant = config.variants.get(saved.variant)
        if variant is None:
            raise UsageError(f"{file}: its build {saved.variant!r} is not one {config.origin} declares")
        if variant.app != saved.app:
            raise UsageError(
                f"{file}: its build {saved.variant!r} served {saved.app}; {config.origin} serves {variant.app} under "
                "that name: another build"
            )
        resolved = resolve({"explore": True}, config)
        settings = run_settings(resolved)
        plan = build_plan(
            config,
            resolved,
            scenario=scenario,
            variants=[variant.name],
            run_dir=new_folder(Path(settings.out), f"{scenario.name}-replay"),
        )
        on_start(f"replaying {file} on a fresh server of {variant.name}; output in {plan.run_dir}")
        replay = anyio.run(replay_in_fresh_server, plan, variant, saved.schedule, 1)
        yield Replayed(
            path=file,
            variant=variant.name,
            expected=saved.failure,
            seen=replay.record.failure if replay.record else None,
            error=replay.trial.error,
        )


def _schedule_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted((path / SCHEDULES_FOLDER).glob("*.json"))
        if files:
            return files
        raise UsageError(
            f"{path}: no {SCHEDULES_FOLDER}/*.json in it: harness run --explore saves one per failing build"
        )
    raise UsageError(f"{path}: no such file or folder")


def _read(file: Path) -> ScheduleFile:
    try:
        return read_schedule(file)
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"{file}: not a schedule file the harness can replay: {exc}") from None


def _scenario(config: Config, saved: ScheduleFile, file: Path) -> Scenario:
    """The scenario the schedule was found in: its run's, else the configuration's of that name, as it was then."""
    results = file.parent.parent / RESULTS_FILE
    if file.parent.name == SCHEDULES_FOLDER and results.is_file():
        try:
            scenario = read_results(results).scenario
        except ResultsError:
            scenario = None
    else:
        scenario = None
    if scenario is None:
        known = config.scenarios()
        if saved.scenario not in known:
            raise UsageError(
                f"{file}: its scenario {saved.scenario!r} is neither in its run folder nor one {config.origin} knows"
            )
        scenario = known[saved.scenario]
    if scenario.name != saved.scenario or scenario.digest() != saved.scenario_digest:
        raise UsageError(
            f"{file}: it was found in scenario {saved.scenario!r} (definition {saved.scenario_digest}), which is now "
            f"{scenario.digest()}: its requests may not be the ones it chose among"
        )
    return scenario


def _failure(failure: Failure | None) -> str:
    if failure is None:
        return "no failure"
    return f"request {request_name(failure.request)} fails at step {failure.step}, {failure.call}: {failure.error}"
