"""Explore mode's search: which schedules to run, what a failing one is, how small it can get, and what was shown.

Inside a server under explore mode the harness owns the thread pool (``harness.server``):
at each *decision point* (two or more options) a chooser picks an index, and index 0 is
what plain anyio would do. A schedule is therefore its requests and its list of chosen
indices; a *deviation* is a nonzero one. Everything here takes a ``run`` callable, which
sends a schedule's requests to a server with a chooser spec and returns the server's
:class:`ScheduleRecord`; no server is started here, so all of it is tested with fakes.

- :func:`explore_pct`: one PCT schedule per seed (Burckhardt et al., ASPLOS 2010).
- :func:`explore_bounded`: every schedule with at most B deviations, by stateless
  depth-first search, as CHESS and loom bound preemptions.
- :func:`shrink`: the fewest requests and deviations that still fail the same way.
- :func:`write_schedule` / :func:`read_schedule`: the schedule file ``harness replay`` reads.
- :func:`pct_bound`, :func:`schedules_for_confidence` and the verdicts' wording.

Standard library only, with the records' reader (:func:`harness.results.rebuild`) and
whole-or-nothing writes (:func:`harness.files.atomic_writer`).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from harness.files import atomic_writer
from harness.results import ScheduleStep, rebuild

SCHEDULE_FILE_VERSION = 1
MAX_WORKERS = 8  # the explorer's: at most this many worker threads in a schedule
SHRINK_RUNS = 200  # a shrink replays at most this many schedules: a bounded cost after a failure is found


@dataclass(frozen=True, kw_only=True)
class Decision:
    """One decision point of a schedule: ``options`` (2 or more) to choose from, and the index chosen."""

    kind: Literal["run", "worker"]
    chosen: int
    options: int
    labels: tuple[str, ...] = ()  # "request 1", "worker 2", "new worker": for a reader, not for the search


@dataclass(frozen=True, kw_only=True)
class RequestEnd:
    index: int
    status: int | None  # None: it had no answer when the schedule ended
    failed_step: int | None  # the index of the step whose error failed it


@dataclass(frozen=True, kw_only=True)
class Failure:
    """The first call of a schedule that failed its request: what ``harness replay`` must see again."""

    request: int  # the request's index in the schedule, as the steps name it
    step: int
    call: str
    error: str

    @property
    def signature(self) -> str:
        """What makes two failures the same failure: the exception's type and message, as the server bounded them.

        The message is kept, not only the type: Peewee's "database is locked" and "Connection
        already opened." are both an ``OperationalError``, and they are different bugs.
        """
        return self.error


@dataclass(frozen=True, kw_only=True)
class ScheduleRecord:
    """What a server reports of one schedule it ran (the other side of ``harness.server``'s explorer)."""

    choices: tuple[Decision, ...]
    steps: tuple[ScheduleStep, ...]
    requests: tuple[RequestEnd, ...]
    workers: int
    virtual_seconds: float
    divergences: int  # choices of a replay that were out of range where they fell: 0 was taken instead
    complete: bool  # False: the server's time ran out before every request finished
    blocked: int = 0  # steps that neither paused nor ended within the explorer's STEP_BOUND, and it went on

    @classmethod
    def from_dict(cls, data: Any) -> ScheduleRecord:
        """The record a server answered, every value checked (``ValueError`` naming the first wrong one)."""
        record = rebuild(cls, data)
        for i, decision in enumerate(record.choices):
            if decision.options < 2 or not 0 <= decision.chosen < decision.options:
                raise ValueError(f"choices[{i}]: choice {decision.chosen} of {decision.options} options")
            if decision.labels and len(decision.labels) != decision.options:
                raise ValueError(f"choices[{i}].labels: {len(decision.labels)} labels for {decision.options} options")
        for name in ("workers", "virtual_seconds", "divergences", "blocked"):
            if getattr(record, name) < 0:
                raise ValueError(f"{name}: {getattr(record, name)} is negative")
        _check_steps(record.steps, len(record.requests))
        steps = {step.index: step for step in record.steps}
        for i, end in enumerate(record.requests):
            if end.index != i:
                raise ValueError(f"requests[{i}].index: {end.index}, not {i}")
            failed = steps.get(end.failed_step) if end.failed_step is not None else None
            if end.failed_step is not None and (failed is None or failed.request != i or failed.error is None):
                raise ValueError(f"requests[{i}].failed_step: {end.failed_step} is not a failed step of request {i}")
        return record

    @property
    def chosen(self) -> tuple[int, ...]:
        """The choices as a replay chooser takes them; the trailing zeros are what a replay does anyway."""
        chosen = [decision.chosen for decision in self.choices]
        while chosen and chosen[-1] == 0:
            chosen.pop()
        return tuple(chosen)

    @property
    def failure(self) -> Failure | None:
        """The earliest step that failed a request, if one did."""
        failed = [end.failed_step for end in self.requests if end.failed_step is not None]
        if not failed:
            return None
        step = next(step for step in self.steps if step.index == min(failed))
        assert step.error is not None  # from_dict holds a failed step to having an error
        return Failure(request=step.request, step=step.index, call=step.call, error=step.error)


def _check_steps(steps: Sequence[ScheduleStep], requests: int) -> None:
    """Steps in order, each of a request of the schedule."""
    for i, step in enumerate(steps):
        if not 0 <= step.request < requests:
            raise ValueError(f"steps[{i}].request: {step.request} is not one of the {requests} requests")
        if step.worker < 0:
            raise ValueError(f"steps[{i}].worker: {step.worker} is negative")
        if step.point is not None and not (step.point and step.point.isprintable() and len(step.point) <= 40):
            raise ValueError(f"steps[{i}].point: {step.point[:40]!r} is not the name of a scheduling point")
        if i and step.index <= steps[i - 1].index:
            raise ValueError(f"steps[{i}].index: {step.index} does not follow {steps[i - 1].index}")


Run = Callable[[Sequence[int], dict[str, Any]], ScheduleRecord]
"""Send these requests (indices into the scenario's requests) to a server under this chooser; its record."""


def replay_chooser(choices: Sequence[int]) -> dict[str, Any]:
    return {"kind": "replay", "choices": list(choices)}


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """A schedule as ``harness replay`` needs it: the requests sent and the index chosen at each decision point."""

    requests: tuple[int, ...]  # indices into the scenario's requests, in the order they are armed
    choices: tuple[int, ...]
    chooser: Mapping[str, Any]  # the chooser spec the server was sent when this schedule ran

    @property
    def deviations(self) -> int:
        return sum(1 for choice in self.choices if choice)

    def to_dict(self) -> dict[str, Any]:
        return {"requests": list(self.requests), "choices": list(self.choices), "chooser": dict(self.chooser)}

    @classmethod
    def from_dict(cls, data: Any) -> Schedule:
        if not isinstance(data, dict):
            raise ValueError("a schedule must be a JSON object")
        missing = [key for key in ("requests", "choices", "chooser") if key not in data]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        requests = _indices(data["requests"], "requests")
        if not requests:
            raise ValueError("requests: a schedule has at least one request")
        chooser = data["chooser"]
        if not isinstance(chooser, dict) or not isinstance(chooser.get("kind"), str):
            raise ValueError("chooser: expected an object with a 'kind'")
        return cls(requests=requests, choices=_indices(data["choices"], "choices"), chooser=chooser)


def _indices(value: Any, at: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{at}: expected a list of integers")
    for i, number in enumerate(value):
        if isinstance(number, bool) or not isinstance(number, int):
            raise ValueError(f"{at}[{i}]: expected an integer, got {json.dumps(number)[:40]}")
    return _non_negative(tuple(value), at)


def _non_negative(numbers: tuple[int, ...], at: str) -> tuple[int, ...]:
    for i, number in enumerate(numbers):
        if number < 0:
            raise ValueError(f"{at}[{i}]: {number} is negative")
    return numbers


@dataclass(frozen=True, kw_only=True)
class Found:
    """A schedule that ran, and the record its server gave."""

    schedule: Schedule
    record: ScheduleRecord


@dataclass(frozen=True, kw_only=True)
class Exploration:
    """What a search ran and what it found; ``verdict`` says it in one line."""

    runs: int
    found: Found | None  # the first failing schedule
    exhausted: bool  # every schedule of the space was run (bounded search only)
    guarantee: float | None  # PCT: the least probability that a bug of the depth asked for would have shown
    incomplete: int  # schedules whose server's time ran out before every request finished
    verdict: str


# -- PCT ---------------------------------------------------------------------------------------


def pct_bound(n: int, k: int, d: int) -> float:
    """The least probability that one PCT schedule shows a given bug of depth ``d``: 1/(n*k^(d-1)).

    ``n`` requests (the paper's threads), at most ``k`` steps in any schedule of them
    (Burckhardt, Kothari, Musuvathi, Nagarakatte, "A Randomized Scheduler with
    Probabilistic Guarantees of Finding Bugs", ASPLOS 2010, Theorem 9).
    """
    if n < 1 or k < 1 or d < 1:
        raise ValueError(f"n, k and d must be at least 1, got n={n}, k={k}, d={d}")
    return 1 / (n * float(k) ** (d - 1))


def schedules_for_confidence(p: float, confidence: float) -> int:
    """The fewest schedules ``m``, each showing a bug with probability at least ``p``, with (1-p)^m <= 1-confidence."""
    if not 0 < p <= 1 or not 0 < confidence < 1:  # NaN fails both
        raise ValueError(f"expected 0 < p <= 1 and 0 < confidence < 1, got p={p!r}, confidence={confidence!r}")
    if p == 1:
        return 1
    m = max(1, math.ceil(math.log(1 - confidence) / math.log1p(-p)))
    # The logarithms are rounded: settle m on the inequality itself.
    while m > 1 and (1 - p) ** (m - 1) <= 1 - confidence:
        m -= 1
    while (1 - p) ** m > 1 - confidence:
        m += 1
    return m


def explore_pct(
    run: Run,
    *,
    requests: Sequence[int],
    depth: int,
    seeds: Sequence[int],
    steps_hint: int,
    confidence: float | None = None,
) -> Exploration:
    """One PCT schedule per seed, until one fails, or (with ``confidence``) until the guarantee reaches it.

    PCT needs ``k``, the most steps a schedule takes, before it runs: it starts from
    ``steps_hint`` and grows to the most steps seen so far (a schedule's steps are its
    requests' thread-pool calls, which rarely depend on the order). The guarantee counts
    only the schedules whose ``k`` was at least the most steps any schedule took: a change
    point can fall on every step of those, as the bound assumes. It is a bound on bugs in
    the order of the calls, with the workers anyio itself would pick (the server's PCT
    chooser leaves worker decisions at their default); the bounded search varies workers too.
    """
    if not requests or not seeds or depth < 1 or steps_hint < 1:
        raise ValueError("explore_pct needs requests, seeds, a depth and a steps hint of at least 1")
    horizons: Counter[int] = Counter()
    most_steps = 0
    incomplete = 0
    guarantee = 0.0
    for number, seed in enumerate(seeds, 1):
        horizon = max(steps_hint, most_steps)
        chooser = {"kind": "pct", "seed": seed, "depth": depth, "steps": horizon}
        record = run(requests, chooser)
        horizons[horizon] += 1
        most_steps = max(most_steps, len(record.steps))
        incomplete += not record.complete
        if record.failure is not None:
            said = f"failed in schedule {number:,} of {len(seeds):,} (PCT, depth {depth}, seed {seed})"
            return _failed(requests, chooser, record, runs=number, incomplete=incomplete, verdict=said)
        missed = math.prod(
            (1 - pct_bound(len(requests), k, depth)) ** count for k, count in horizons.items() if k >= most_steps
        )
        guarantee = 1 - missed if most_steps else 0.0  # no step: there was no order to vary, nothing is bounded
        if confidence is not None and guarantee >= confidence:
            break
    ran = seeds[:number]
    said = f"no failure in {number:,} schedule{_s(number)} (PCT, depth {depth}, {_seeds(ran)})"
    if not most_steps:
        said += ": no schedule had a thread-pool call to order (async code is not scheduled), so it bounds nothing"
    elif guarantee > 0:
        said += f": a bug of depth {depth} would have been found with probability >= {_at_least(guarantee)}"
    else:
        said += ": no bound can be stated, every schedule took more steps than PCT was told to expect"
    return Exploration(
        runs=number,
        found=None,
        exhausted=False,
        guarantee=guarantee,
        incomplete=incomplete,
        verdict=said + _unfinished(incomplete),
    )


def _failed(
    requests: Sequence[int],
    chooser: dict[str, Any],
    record: ScheduleRecord,
    *,
    runs: int,
    incomplete: int,
    verdict: str,
) -> Exploration:
    """A search that stopped at its first failing schedule, found as the record shows its choices."""
    schedule = Schedule(requests=tuple(requests), choices=record.chosen, chooser=chooser)
    return Exploration(
        runs=runs,
        found=Found(schedule=schedule, record=record),
        exhausted=False,
        guarantee=None,
        incomplete=incomplete,
        verdict=verdict,
    )


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def counted(number: int, word: str) -> str:
    """``1 request``, ``2 deviations``."""
    return f"{number:,} {word}{_s(number)}"


def _seeds(seeds: Sequence[int]) -> str:
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    shown = ", ".join(map(str, seeds[:3]))
    return f"seeds {shown}" + (f" and {len(seeds) - 3:,} more" if len(seeds) > 3 else "")


def _at_least(probability: float) -> str:
    """A probability that is a lower bound, in percent, rounded down, never shown as a certainty."""
    percent = probability * 100
    decimals = 1 if percent >= 1 or percent <= 0 else 1 - math.floor(math.log10(percent))  # two figures below 1%
    scale = 10**decimals
    return f"{min(math.floor(percent * scale) / scale, 100 - 1 / scale):.{decimals}f}%"


def _unfinished(incomplete: int) -> str:
    return f"; {incomplete:,} of them did not finish in time" if incomplete else ""


# -- bounded exhaustive search -----------------------------------------------------------------


def explore_bounded(run: Run, *, requests: Sequence[int], bound: int, limit: int) -> Exploration:
    """Every schedule with at most ``bound`` deviations, depth first, until one fails or ``limit`` have run.

    Stateless, as CHESS and loom are: each schedule is a replay from the start. A schedule
    whose choices are ``prefix`` (defaults after it) has as children the prefix with one
    more deviation at a decision point after it, for every alternative there; each child
    ends in its new deviation, so no choice list is reached twice.
    """
    if not requests or bound < 0 or limit < 1:
        raise ValueError("explore_bounded needs requests, a bound of at least 0 and a limit of at least 1")
    pending: list[tuple[int, ...]] = [()]
    runs = 0
    incomplete = 0
    while pending and runs < limit:
        prefix = pending.pop()
        chooser = replay_chooser(prefix)
        record = run(requests, chooser)
        runs += 1
        incomplete += not record.complete
        if record.failure is not None:
            said = f"failed in schedule {runs:,} of the search with at most {bound} deviation{_s(bound)}"
            return _failed(requests, chooser, record, runs=runs, incomplete=incomplete, verdict=said)
        if sum(1 for choice in prefix if choice) < bound:
            children = [
                prefix + (0,) * (point - len(prefix)) + (alternative,)
                for point in range(len(prefix), len(record.choices))
                for alternative in range(1, record.choices[point].options)
            ]
            pending.extend(reversed(children))  # the earliest decision point's first alternative runs next
    exhausted = not pending
    if exhausted:
        verdict = f"no failure in all {runs:,} schedule{_s(runs)} with at most {bound} deviation{_s(bound)}"
    else:
        verdict = (
            f"no failure in {runs:,} schedule{_s(runs)} with at most {bound} deviation{_s(bound)}, "
            "cut short: the space holds more"
        )
    return Exploration(
        runs=runs,
        found=None,
        exhausted=exhausted,
        guarantee=None,
        incomplete=incomplete,
        verdict=verdict + _unfinished(incomplete),
    )


# -- shrinking ---------------------------------------------------------------------------------


def shrink(run: Run, failing: Found, *, max_runs: int = SHRINK_RUNS) -> Found:
    """The failing schedule with the fewest requests, then deviations, found that still fails the same way.

    Delta debugging in the spirit of simloom and ploom: drop a request, put a step back on
    the worker anyio would have given it (the choices rebuilt for both, :func:`_choices_for`),
    cut the choices after a point, zero one choice; keep any change whose replay fails with the same
    signature, and start again from it, until no change helps or ``max_runs`` replays
    have run. What is kept is the choice list the record shows: a choice beyond the
    decision points that exist is ignored by the server, and one out of range is taken as 0.
    """
    assert failing.record.failure is not None, "shrink takes a schedule that failed"
    signature = failing.record.failure.signature
    best = failing
    tried: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
    runs = 0
    improved = True
    while improved and runs < max_runs:
        improved = False
        for requests, choices in _smaller(best):
            if (requests, choices) in tried:
                continue
            if runs >= max_runs:
                break
            tried.add((requests, choices))
            chooser = replay_chooser(choices)
            record = run(requests, chooser)
            runs += 1
            schedule = Schedule(requests=requests, choices=record.chosen, chooser=chooser)
            if (
                record.failure is not None
                and record.failure.signature == signature
                and _size(schedule) < _size(best.schedule)
            ):
                best = Found(schedule=schedule, record=record)
                improved = True
                break
    return best


def _smaller(found: Found) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Candidates smaller than ``found``'s schedule, the biggest cuts first."""
    requests, choices = found.schedule.requests, found.schedule.choices
    taken = [(step.request, step.worker, step.resumes) for step in found.record.steps]
    if len(requests) > 1:
        for i in range(len(requests)):
            others = requests[:i] + requests[i + 1 :]
            yield others, _choices_for([step for step in taken if step[0] != i])[0]
            yield others, choices  # if the server's rules are not the ones _choices_for follows
    for i, default in enumerate(_choices_for(taken)[1]):
        if default != taken[i][1]:  # the step on the worker anyio would have taken, the others where they were
            yield requests, _choices_for([*taken[:i], (taken[i][0], default, False), *taken[i + 1 :]])[0]
    deviations = [i for i, choice in enumerate(choices) if choice]
    for i in deviations:
        yield requests, choices[:i]
    for i in deviations:
        yield requests, (*choices[:i], 0, *choices[i + 1 :])


def _choices_for(taken: Sequence[tuple[int, int, bool]]) -> tuple[tuple[int, ...], list[int]]:
    """The choices that make a server take these steps (request, worker, whether it resumes a paused call), by the
    explorer's rules; and the worker each step would have had by default.

    A choice is an index into options whose order depends on every request and worker, so
    the same list after a change means another schedule. The options are rebuilt here as
    the server orders them: the request that ran last first, then the others by index; the
    idle workers, most recently idle first, then a new one. A step that resumes a paused
    call has no worker decision: it goes on on the call's own worker. A step whose request's
    next step resumes paused there, its worker kept; any other leaves its worker idle. A
    worker not yet used is a new one.
    """
    left = Counter(request for request, _, _ in taken)
    idle: list[int] = []  # most recently idle last
    held = 0  # workers holding a paused call
    previous: int | None = None
    choices: list[int] = []
    defaults = []
    fresh = max((worker for _, worker, _ in taken), default=0) + 1  # a number for a new worker no step has
    for i, (request, worker, resumes) in enumerate(taken):
        pending = sorted(r for r, calls in left.items() if calls)
        runnable = ([previous] if previous in pending else []) + [r for r in pending if r != previous]
        if len(runnable) > 1:
            choices.append(runnable.index(request))
        if resumes:
            defaults.append(worker)
            held -= 1
        else:
            workers = [*reversed(idle), *([fresh] if len(idle) + held < MAX_WORKERS else [])]
            if len(workers) > 1:
                choices.append(workers.index(worker if worker in idle else fresh))
            defaults.append(workers[0] if workers else worker)
            fresh += bool(workers) and workers[0] == fresh
            if worker in idle:
                idle.remove(worker)
        if next((later[2] for later in taken[i + 1 :] if later[0] == request), False):
            held += 1
        else:
            idle.append(worker)
        left[request] -= 1
        previous = request
    while choices and choices[-1] == 0:
        choices.pop()
    return tuple(choices), defaults


def _size(schedule: Schedule) -> tuple[int, int, int]:
    return len(schedule.requests), schedule.deviations, len(schedule.choices)


def request_name(index: int) -> str:
    """A request of a schedule named as the report names it: A, B, ... Z, AA, AB, ..."""
    name = ""
    index += 1
    while index:
        index, letter = divmod(index - 1, 26)
        name = chr(ord("A") + letter) + name
    return name


def describe_steps(steps: Sequence[ScheduleStep]) -> list[str]:
    """A schedule step by step in words, one line a step, preemptions, pauses and failures said where they happen."""
    lines = []
    seen_workers: set[int] = set()
    for i, step in enumerate(steps):
        who = f"request {request_name(step.request)}"
        if step.preempted and i:
            who += f" preempts {request_name(steps[i - 1].request)}:"
        else:
            who += ","
        call = f"{step.call} resumed at {step.point}" if step.resumes else step.call
        worker = f"on worker {step.worker}" + ("" if step.worker in seen_workers else " (new)")
        seen_workers.add(step.worker)
        after = next((later for later in steps[i + 1 :] if later.request == step.request), None)
        paused = f", paused at {after.point}" if after is not None and after.resumes else ""
        outcome = f" -> {step.error}" if step.error is not None else ""
        lines.append(f"step {step.index}: {who} {call}, {worker}{paused}{outcome}")
    return lines


# -- the schedule file -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ScheduleFile:
    """A failing schedule saved in the run folder: what ``harness replay`` runs again and must see fail again."""

    scenario: str
    scenario_digest: str  # a replay of a schedule against another definition of the scenario is refused
    variant: str
    app: str  # "module:attr"
    requests: tuple[int, ...]
    choices: tuple[int, ...]
    failure: Failure | None
    steps: tuple[ScheduleStep, ...]

    @property
    def schedule(self) -> Schedule:
        return Schedule(requests=self.requests, choices=self.choices, chooser=replay_chooser(self.choices))

    def to_dict(self) -> dict[str, Any]:
        return {"harness_schedule": SCHEDULE_FILE_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Any) -> ScheduleFile:
        """A schedule file's contents, every value checked (``ValueError`` naming the first wrong one)."""
        if not isinstance(data, dict) or "harness_schedule" not in data:
            raise ValueError("not a schedule file of the harness (no 'harness_schedule' version)")
        version = data["harness_schedule"]
        if version != SCHEDULE_FILE_VERSION or isinstance(version, bool):
            raise ValueError(
                f"harness_schedule: version {version!r} is not {SCHEDULE_FILE_VERSION}, the one this reads"
            )
        saved = rebuild(cls, data)
        for key in ("scenario", "scenario_digest", "variant", "app"):
            if not getattr(saved, key) or not getattr(saved, key).isprintable():
                raise ValueError(f"{key}: expected a non-empty line of text")
        if not all(saved.app.partition(":")[::2]):
            raise ValueError(f"app: {saved.app!r} is not 'module:attr'")
        _non_negative(saved.requests, "requests")
        _non_negative(saved.choices, "choices")
        if not saved.requests:
            raise ValueError("requests: a schedule has at least one request")
        _check_steps(saved.steps, len(saved.requests))
        failure = saved.failure
        if failure is not None:
            failed = next((step for step in saved.steps if step.index == failure.step), None)
            if failed is None or (failed.request, failed.call, failed.error) != (
                failure.request,
                failure.call,
                failure.error,
            ):
                raise ValueError(f"failure: step {failure.step} is not a failed step of request {failure.request}")
        return saved

    @classmethod
    def of(cls, found: Found, *, scenario: str, scenario_digest: str, variant: str, app: str) -> ScheduleFile:
        """The file for a schedule found failing (or shrunk) in a run of ``scenario`` on the build ``variant``."""
        return cls(
            scenario=scenario,
            scenario_digest=scenario_digest,
            variant=variant,
            app=app,
            requests=found.schedule.requests,
            choices=found.schedule.choices,
            failure=found.record.failure,
            steps=found.record.steps,
        )


def write_schedule(path: Path, schedule_file: ScheduleFile) -> None:
    """Write ``schedule_file`` to ``path`` whole or not at all."""
    with atomic_writer(path) as out:
        json.dump(schedule_file.to_dict(), out, indent=1)
        out.write("\n")


def read_schedule(path: Path) -> ScheduleFile:
    """The schedule file at ``path``; ``ValueError`` saying what is wrong with a damaged one.

    An ``OSError`` (no such file, a folder) is the caller's, who knows what the user named.
    """
    text = path.read_bytes()
    try:
        data = json.loads(text, parse_constant=_not_json)
    except RecursionError:
        raise ValueError("not JSON: nested too deep") from None
    except ValueError as exc:  # UnicodeDecodeError too
        raise ValueError(f"not JSON ({exc})") from None
    return ScheduleFile.from_dict(data)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON can hold")
