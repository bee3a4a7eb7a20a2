"""Explore mode's search, against fake servers: a model of the tutorial's thread pool, and fixed decision trees."""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.search import (
    Decision,
    Found,
    RequestEnd,
    Run,
    Schedule,
    ScheduleFile,
    ScheduleRecord,
    _at_least,
    _choices_for,
    describe_steps,
    explore_bounded,
    explore_pct,
    pct_bound,
    read_schedule,
    request_name,
    schedules_for_confidence,
    shrink,
    write_schedule,
)
from tests.harness.test_results import _JSON, _damaged

ENTER, EXIT = "dependency enter (get_db)", "dependency exit (get_db)"
CALLS = (ENTER, "endpoint (read_users)", "response validation", EXIT)
ALREADY_OPEN = "OperationalError: Connection already opened."
MAX_WORKERS = 8


# -- a model of the tutorial's unpatched build under the explorer's rules --------------------------


class _Replay:
    def __init__(self, choices: Sequence[int]) -> None:
        self.choices = list(choices)
        self.at = 0
        self.divergences = 0

    def pick(self, kind: str, options: Sequence[object]) -> int:
        choice = self.choices[self.at] if self.at < len(self.choices) else 0
        self.at += 1
        if choice >= len(options):
            self.divergences += 1
            return 0
        return choice

    def ran(self, step: int, request: int) -> None:
        pass


class _Pct:
    """PCT as the server's chooser does it: distinct priorities, depth-1 change points among steps 1..k."""

    def __init__(self, seed: int, depth: int, steps: int, n: int) -> None:
        self.random = random.Random(seed)
        self.priority = dict(zip(range(n), self.random.sample(range(n), n), strict=True))
        self.changes = {self.random.randint(1, steps) for _ in range(depth - 1)}
        self.divergences = 0

    def pick(self, kind: str, options: Sequence[object]) -> int:
        if kind == "worker":
            return self.random.randrange(len(options))
        return max(range(len(options)), key=lambda i: self.priority[options[i]])  # type: ignore[index]

    def ran(self, step: int, request: int) -> None:
        if step in self.changes:
            self.priority[request] = min(self.priority.values()) - 1


class _Decider:
    """A fake schedule's decisions, each made by the chooser it was sent (PCT's, or a replay's choices) and kept."""

    def __init__(self, chooser: dict[str, Any], n: int) -> None:
        self.picker: _Replay | _Pct = (
            _Pct(chooser["seed"], chooser["depth"], chooser["steps"], n)
            if chooser["kind"] == "pct"
            else _Replay(chooser["choices"])
        )
        self.made: list[dict[str, Any]] = []

    def __call__(self, kind: str, options: list[Any], labels: list[str]) -> int:
        if len(options) < 2:
            return 0
        chosen = self.picker.pick(kind, options)
        self.made.append({"kind": kind, "chosen": chosen, "options": len(options), "labels": labels})
        return chosen


@dataclass
class Tutorial:
    """A fake server: each request's calls run on the workers the chooser picks; a connection is a worker's.

    With ``bug``, a dependency enter on a worker whose connection another request left open
    fails, as Peewee's thread-local state does in the unpatched build. ``alone`` is another
    failure, of a schedule of one request, for the shrinker's same-signature rule.
    """

    bug: bool = True
    alone: str | None = None
    calls: tuple[str, ...] = CALLS
    sent: list[tuple[tuple[int, ...], dict[str, Any]]] = field(default_factory=list)

    def __call__(self, requests: Sequence[int], chooser: dict[str, Any]) -> ScheduleRecord:
        self.sent.append((tuple(requests), json.loads(json.dumps(chooser))))
        n = len(requests)
        decide = _Decider(chooser, n)
        picker, decisions = decide.picker, decide.made

        done = [0] * n
        failed: list[int | None] = [None] * n
        idle: list[int] = []  # most recently idle last
        workers = 0
        connection: dict[int, int] = {}  # worker -> the request whose connection is open there
        steps: list[dict[str, Any]] = []
        previous: int | None = None
        while pending := [r for r in range(n) if done[r] < len(self.calls) and failed[r] is None]:
            options = ([previous] if previous in pending else []) + [r for r in pending if r != previous]
            request = options[decide("run", options, [f"request {r}" for r in options])]
            choices: list[int | None] = [*reversed(idle), *([None] if workers < MAX_WORKERS else [])]
            worker = choices[decide("worker", choices, [f"worker {w}" if w else "new worker" for w in choices])]
            if worker is None:
                workers += 1
                worker = workers
            call = self.calls[done[request]]
            error = None
            if n == 1 and self.alone:
                error = self.alone
            elif call == ENTER and self.bug and worker in connection:
                error = ALREADY_OPEN
            elif call == ENTER:
                connection[worker] = request
            elif call == EXIT:
                connection.pop(worker, None)
            index = len(steps) + 1
            preempted = previous in pending and request != previous
            steps.append(
                {"index": index, "request": request, "call": call, "worker": worker, "preempted": preempted}
                | {"error": error}
            )
            if error:
                failed[request] = index
            done[request] += 1
            if worker in idle:
                idle.remove(worker)
            idle.append(worker)
            picker.ran(index, request)
            previous = request
        record = {
            "choices": decisions,
            "steps": steps,
            "requests": [{"index": r, "status": 500 if failed[r] else 200, "failed_step": failed[r]} for r in range(n)],
            "workers": workers,
            "virtual_seconds": 0.0,
            "divergences": picker.divergences,
            "complete": True,
        }
        return ScheduleRecord.from_dict(json.loads(json.dumps(record)))  # as it comes over HTTP


# -- a model of a shared SQLAlchemy session, whose bug is inside one call, under the scheduling points' rules ---

ENDPOINT = "endpoint (create_item)"
# A request's steps, each (the call, where it begins): its endpoint pauses at flush(), commit() and close().
SEGMENTS = (
    (ENDPOINT, "call"),
    (ENDPOINT, "flush"),
    (ENDPOINT, "commit"),
    (ENDPOINT, "close"),
    ("response validation", "call"),
)
DETACHED = "DetachedInstanceError: Instance <Item at 0x...> is not bound to a Session"


@dataclass
class SharedSession:
    """A fake server of one module-level session shared by every request, under the explorer's rules with scheduling
    points: a paused call keeps its worker and resumes on it, with no worker decision.

    Each request's endpoint adds an item and flushes it (the step from ``flush``), commits and reads
    its id back (from ``commit``), and closes the session (from ``close``). A close detaches every
    item flushed and not yet read back: with ``bug``, that request fails at its commit step.
    """

    bug: bool = True
    sent: list[tuple[tuple[int, ...], dict[str, Any]]] = field(default_factory=list)

    def __call__(self, requests: Sequence[int], chooser: dict[str, Any]) -> ScheduleRecord:
        self.sent.append((tuple(requests), json.loads(json.dumps(chooser))))
        n = len(requests)
        decide = _Decider(chooser, n)
        picker, decisions = decide.picker, decide.made

        done = [0] * n
        failed: list[int | None] = [None] * n
        idle: list[int] = []  # most recently idle last
        held: dict[int, int] = {}  # request -> the worker its paused call keeps
        workers = 0
        flushed: set[int] = set()  # whose item is flushed and not yet read back
        detached: set[int] = set()
        steps: list[dict[str, Any]] = []
        previous: int | None = None
        while pending := [r for r in range(n) if done[r] < len(SEGMENTS) and failed[r] is None]:
            options = ([previous] if previous in pending else []) + [r for r in pending if r != previous]
            request = options[decide("run", options, [f"request {r}" for r in options])]
            call, point = SEGMENTS[done[request]]
            if point == "call":
                made = len(idle) + len(held) < MAX_WORKERS
                choices: list[int | None] = [*reversed(idle), *([None] if made else [])]
                worker = choices[decide("worker", choices, [f"worker {w}" if w else "new worker" for w in choices])]
                if worker is None:
                    workers += 1
                    worker = workers
                else:
                    idle.remove(worker)
            else:
                worker = held.pop(request)
            error = None
            if point == "flush":
                flushed.add(request)
            elif point == "commit" and self.bug and request in detached:
                error = DETACHED
            elif point == "commit":
                flushed.discard(request)
            elif point == "close":
                detached |= flushed - {request}
            index = len(steps) + 1
            preempted = previous in pending and request != previous
            steps.append(
                {"index": index, "request": request, "call": call, "worker": worker, "preempted": preempted}
                | {"error": error, "point": point}
            )
            done[request] += 1
            if error:
                failed[request] = index
            if not error and done[request] < len(SEGMENTS) and SEGMENTS[done[request]][1] != "call":
                held[request] = worker
            else:
                idle.append(worker)
            picker.ran(index, request)
            previous = request
        record = {
            "choices": decisions,
            "steps": steps,
            "requests": [{"index": r, "status": 500 if failed[r] else 200, "failed_step": failed[r]} for r in range(n)],
            "workers": workers,
            "virtual_seconds": 0.0,
            "divergences": picker.divergences,
            "complete": True,
        }
        return ScheduleRecord.from_dict(json.loads(json.dumps(record)))


def tree(points: int, options: int, sent: list[tuple[int, ...]]) -> Run:
    """A fake server whose every schedule has ``points`` decision points of ``options`` options each."""

    def run(requests: Sequence[int], chooser: dict[str, Any]) -> ScheduleRecord:
        sent.append(tuple(chooser["choices"]))
        given = chooser["choices"] + [0] * points
        return ScheduleRecord(
            choices=tuple(Decision(kind="run", chosen=given[i], options=options) for i in range(points)),
            steps=(),
            requests=(RequestEnd(index=0, status=200, failed_step=None),),
            workers=1,
            virtual_seconds=0.0,
            divergences=0,
            complete=True,
        )

    return run


# -- PCT ---------------------------------------------------------------------------------------


def test_pct_bound_is_the_papers_and_the_schedules_it_takes_for_a_confidence() -> None:
    assert pct_bound(2, 8, 2) == 1 / 16
    assert pct_bound(3, 10, 1) == 1 / 3  # depth 1: no change point, one in n priorities
    assert pct_bound(2, 10, 3) == 1 / 200
    assert schedules_for_confidence(0.5, 0.75) == 2  # 0.5**2 == 0.25 exactly: the boundary counts
    assert schedules_for_confidence(1 / 16, 0.999) == 108  # ln(0.001)/ln(15/16) = 107.03
    assert schedules_for_confidence(1.0, 0.99) == 1
    for p, confidence in ((0.0, 0.9), (math.nan, 0.9), (0.5, 1.0), (0.5, math.nan), (1.5, 0.9)):
        with pytest.raises(ValueError):
            schedules_for_confidence(p, confidence)
    with pytest.raises(ValueError):
        pct_bound(0, 8, 2)


@given(p=st.floats(1e-6, 1.0), confidence=st.floats(0.01, 0.999999))
def test_schedules_for_confidence_is_the_smallest_that_reaches_it(p: float, confidence: float) -> None:
    m = schedules_for_confidence(p, confidence)
    assert (1 - p) ** m <= 1 - confidence
    assert m == 1 or (1 - p) ** (m - 1) > 1 - confidence


def test_a_guarantee_is_rounded_down_and_never_shown_as_a_certainty() -> None:
    assert _at_least(0.5) == "50.0%"
    assert _at_least(0.012345) == "1.2%"
    assert _at_least(0.0004) == "0.040%"
    assert _at_least(0.99999) == "99.9%"
    assert _at_least(1.0) == "99.9%"


def test_pct_stops_at_the_first_failure_and_its_choices_replay_it() -> None:
    server = Tutorial()
    exploration = explore_pct(server, requests=[0, 1], depth=2, seeds=range(1, 101), steps_hint=8)
    assert exploration.found is not None
    assert len(server.sent) == exploration.runs < 100  # nothing ran after it
    seed = server.sent[-1][1]["seed"]
    assert exploration.verdict == f"failed in schedule {exploration.runs} of 100 (PCT, depth 2, seed {seed})"
    found = exploration.found
    assert found.schedule.chooser == server.sent[-1][1] == {"kind": "pct", "seed": seed, "depth": 2, "steps": 8}
    assert found.record.failure is not None and found.record.failure.error == ALREADY_OPEN
    replayed = server([0, 1], {"kind": "replay", "choices": list(found.schedule.choices)})
    assert replayed.failure == found.record.failure and replayed.steps == found.record.steps


def test_pct_grows_k_to_the_most_steps_seen_and_is_deterministic() -> None:
    runs = [Tutorial(bug=False), Tutorial(bug=False)]
    explorations = [explore_pct(run, requests=[0, 1, 2], depth=3, seeds=range(5), steps_hint=4) for run in runs]
    assert explorations[0] == explorations[1] and runs[0].sent == runs[1].sent
    assert [chooser["steps"] for _, chooser in runs[0].sent] == [4, 12, 12, 12, 12]  # 3 requests of 4 calls
    assert [chooser["seed"] for _, chooser in runs[0].sent] == [0, 1, 2, 3, 4]


def test_a_clean_pct_verdict_states_the_bound_for_the_schedules_that_could_reach_every_step() -> None:
    exploration = explore_pct(Tutorial(bug=False), requests=[0, 1], depth=2, seeds=range(1, 1001), steps_hint=1)
    assert exploration.found is None and exploration.runs == 1000
    # The first schedule's k of 1 could not put its change point on steps 2..8: it does not count.
    assert exploration.guarantee == pytest.approx(1 - (15 / 16) ** 999)
    assert exploration.verdict == (
        "no failure in 1,000 schedules (PCT, depth 2, seeds 1-1000): "
        "a bug of depth 2 would have been found with probability >= 99.9%"
    )
    few = explore_pct(Tutorial(bug=False), requests=[0, 1], depth=2, seeds=[7, 3], steps_hint=8)
    assert few.verdict == (
        "no failure in 2 schedules (PCT, depth 2, seeds 7, 3): "
        "a bug of depth 2 would have been found with probability >= 12.1%"  # 1 - (15/16)**2 = 0.1211
    )


def test_pct_with_a_confidence_stops_when_its_guarantee_reaches_it() -> None:
    server = Tutorial(bug=False)
    exploration = explore_pct(server, requests=[0, 1], depth=2, seeds=range(1, 1001), steps_hint=8, confidence=0.999)
    assert exploration.runs == len(server.sent) == schedules_for_confidence(pct_bound(2, 8, 2), 0.999) == 108
    assert exploration.guarantee is not None and exploration.guarantee >= 0.999
    assert exploration.verdict == (
        "no failure in 108 schedules (PCT, depth 2, seeds 1-108): "
        "a bug of depth 2 would have been found with probability >= 99.9%"
    )


def test_pct_states_no_bound_when_no_schedule_was_told_enough_steps() -> None:
    exploration = explore_pct(Tutorial(bug=False), requests=[0, 1], depth=2, seeds=[5], steps_hint=1)
    assert exploration.guarantee == 0
    assert exploration.verdict == (
        "no failure in 1 schedule (PCT, depth 2, seed 5): "
        "no bound can be stated, every schedule took more steps than PCT was told to expect"
    )


def test_pct_claims_no_bound_when_no_schedule_had_a_step_to_order() -> None:
    """An async app's requests run no thread-pool call: every schedule is the same, and says nothing of the order."""

    def no_steps(requests: Sequence[int], chooser: dict[str, Any]) -> ScheduleRecord:
        ends = tuple(RequestEnd(index=i, status=200, failed_step=None) for i in requests)
        return ScheduleRecord(
            choices=(), steps=(), requests=ends, workers=0, virtual_seconds=0.0, divergences=0, complete=True
        )

    exploration = explore_pct(no_steps, requests=[0, 1], depth=2, seeds=range(1, 101), steps_hint=4)
    assert exploration.found is None and exploration.guarantee == 0
    assert exploration.verdict == (
        "no failure in 100 schedules (PCT, depth 2, seeds 1-100): "
        "no schedule had a thread-pool call to order (async code is not scheduled), so it bounds nothing"
    )


def test_pct_finds_the_tutorials_bug_within_a_few_schedules_for_most_seeds() -> None:
    """The fake's bug has depth 2 (one preemption after an enter); PCT's bound is 1/16 a schedule, in practice more."""
    firsts = []
    for start in range(0, 1000, 10):
        exploration = explore_pct(Tutorial(), requests=[0, 1], depth=2, seeds=range(start, start + 10), steps_hint=8)
        firsts.append(exploration.runs if exploration.found else None)
    assert sum(first is not None for first in firsts) >= 90


# -- bounded exhaustive search -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("bound", "count", "verdict"),
    [
        (0, 1, "no failure in all 1 schedule with at most 0 deviations"),
        (1, 1 + 4 * 2, "no failure in all 9 schedules with at most 1 deviation"),  # 4 points, 2 alternatives each
        (2, 1 + 4 * 2 + 6 * 4, "no failure in all 33 schedules with at most 2 deviations"),  # C(4,2) pairs, 2 x 2
        (4, 3**4, "no failure in all 81 schedules with at most 4 deviations"),  # every schedule
        (9, 3**4, "no failure in all 81 schedules with at most 9 deviations"),
    ],
)
def test_bounded_search_runs_every_schedule_within_the_bound_once(bound: int, count: int, verdict: str) -> None:
    sent: list[tuple[int, ...]] = []
    exploration = explore_bounded(tree(4, 3, sent), requests=[0], bound=bound, limit=1000)
    assert exploration.exhausted and exploration.runs == len(sent) == len(set(sent)) == count
    assert all(sum(1 for choice in choices if choice) <= bound for choices in sent)
    assert all(not choices or choices[-1] for choices in sent)  # trailing zeros are what a replay does anyway
    assert exploration.verdict == verdict


def test_bounded_search_counts_the_tutorials_pool_by_hand() -> None:
    """Two requests of two calls (enter, exit), in anyio's order: [A, B] to run first; A's enter on a new worker
    (the only option: no decision); [A, B] to run next, and [worker 1, new] for A's exit; then B alone, with
    [worker 1, new] for each of its two calls. Five decision points of two options: 1 + 5 schedules within one
    deviation."""
    server = Tutorial(bug=False, calls=(ENTER, EXIT))
    assert len(server([0, 1], {"kind": "replay", "choices": []}).choices) == 5
    assert explore_bounded(server, requests=[0, 1], bound=1, limit=100).runs == 6


def test_bounded_search_is_cut_short_at_its_limit_and_says_so() -> None:
    sent: list[tuple[int, ...]] = []
    exploration = explore_bounded(tree(4, 3, sent), requests=[0], bound=2, limit=10)
    assert not exploration.exhausted and exploration.runs == len(sent) == 10
    assert (
        exploration.verdict == "no failure in 10 schedules with at most 2 deviations, cut short: the space holds more"
    )


def test_bounded_search_covers_every_schedule_the_tutorials_pool_can_take_within_the_bound() -> None:
    """Every schedule random choices reach, with at most 2 deviations, is one the search ran; none twice."""
    server = Tutorial(bug=False)
    exploration = explore_bounded(server, requests=[0, 1], bound=2, limit=100_000)
    assert exploration.exhausted
    ran = [tuple(chooser["choices"]) for _, chooser in server.sent]
    assert len(ran) == len(set(ran)) == exploration.runs
    reached = set()
    rng = random.Random(0)
    for _ in range(3000):
        choices = [rng.choice([0, 0, 0, 1, 2]) for _ in range(12)]
        record = server([0, 1], {"kind": "replay", "choices": choices})
        if record.divergences == 0 and sum(1 for c in record.chosen if c) <= 2:
            reached.add(record.chosen)
    assert reached and reached <= set(ran)
    assert exploration.verdict == f"no failure in all {exploration.runs:,} schedules with at most 2 deviations"


def test_bounded_search_stops_at_the_first_failure_which_needs_one_preemption() -> None:
    server = Tutorial()
    assert explore_bounded(server, requests=[0, 1], bound=0, limit=100).found is None  # anyio's own order is clean
    server.sent.clear()
    exploration = explore_bounded(server, requests=[0, 1], bound=1, limit=100)
    assert exploration.found is not None and exploration.runs == len(server.sent)
    assert exploration.found.schedule.choices == (0, 1)  # A enters, then B preempts it onto A's worker
    assert exploration.found.schedule.deviations == 1
    assert exploration.verdict == f"failed in schedule {exploration.runs} of the search with at most 1 deviation"
    assert explore_bounded(Tutorial(), requests=[0, 1], bound=1, limit=100) == exploration  # deterministic


# -- shrinking ---------------------------------------------------------------------------------


def _failing(server: Tutorial, requests: Sequence[int], *, least_deviations: int) -> Found:
    """A failing schedule of random choices with at least that many deviations."""
    rng = random.Random(1)
    while True:
        choices = [rng.choice([0, 1, 2]) for _ in range(30)]
        record = server(requests, {"kind": "replay", "choices": choices})
        if record.failure and sum(1 for c in record.chosen if c) >= least_deviations:
            schedule = Schedule(requests=tuple(requests), choices=record.chosen, chooser={"kind": "replay"})
            return Found(schedule=schedule, record=record)


def test_shrink_reaches_two_requests_and_one_preemption_and_tells_it_step_by_step() -> None:
    server = Tutorial()
    failing = _failing(server, [0, 1, 2, 3], least_deviations=4)
    server.sent.clear()
    shrunk = shrink(server, failing)
    assert len(shrunk.schedule.requests) == 2 and shrunk.schedule.deviations == 1
    assert shrunk.record.failure is not None and shrunk.record.failure.error == ALREADY_OPEN
    assert len(server.sent) <= 200
    assert shrunk == shrink(server, failing)  # deterministic
    replayed = server(shrunk.schedule.requests, dict(shrunk.schedule.chooser))
    assert replayed == shrunk.record
    lines = describe_steps(shrunk.record.steps)
    failed = next(i for i, line in enumerate(lines) if ALREADY_OPEN in line)
    assert " preempts " in lines[failed] and lines[failed].endswith(
        f"dependency enter (get_db), on worker 1 -> {ALREADY_OPEN}"
    )


def test_shrink_rebuilds_the_choices_when_a_request_or_a_worker_deviation_goes() -> None:
    """Dropping a request shifts every later option's index, and putting a step back on anyio's worker changes the
    workers after it: the same list of choices would then be another schedule, which no longer fails."""
    exploration = explore_pct(Tutorial(), requests=[0, 1, 2], depth=2, seeds=range(1, 11), steps_hint=12)
    assert exploration.found is not None and exploration.found.schedule.deviations > 1
    shrunk = shrink(Tutorial(), exploration.found)
    assert len(shrunk.schedule.requests) == 2 and shrunk.schedule.deviations == 1
    assert describe_steps(shrunk.record.steps)[2] == (
        f"step 3: request B preempts A: dependency enter (get_db), on worker 1 -> {ALREADY_OPEN}"
    )


def test_shrink_keeps_what_fails_the_same_way_only() -> None:
    """Alone, one request fails too, with another error: that is another bug, so two requests stay."""
    server = Tutorial(alone="ValueError: another bug")
    shrunk = shrink(server, _failing(server, [0, 1, 2], least_deviations=2))
    assert len(shrunk.schedule.requests) == 2
    assert shrunk.record.failure is not None and shrunk.record.failure.error == ALREADY_OPEN


def test_shrink_stops_after_its_budget_of_replays() -> None:
    server = Tutorial()
    failing = _failing(server, [0, 1, 2, 3], least_deviations=4)
    server.sent.clear()
    shrunk = shrink(server, failing, max_runs=3)
    assert len(server.sent) == 3
    assert shrunk.record.failure is not None and shrunk.record.failure.error == ALREADY_OPEN


def test_describe_steps_reads_like_the_bug() -> None:
    record = Tutorial()([4, 7], {"kind": "replay", "choices": [0, 1]})
    assert describe_steps(record.steps)[:3] == [
        "step 1: request A, dependency enter (get_db), on worker 1 (new)",
        f"step 2: request B preempts A: dependency enter (get_db), on worker 1 -> {ALREADY_OPEN}",
        "step 3: request A, endpoint (read_users), on worker 1",
    ]
    assert [request_name(i) for i in (0, 1, 25, 26, 27, 701, 702)] == ["A", "B", "Z", "AA", "AB", "ZZ", "AAA"]


# -- records and schedule files ----------------------------------------------------------------


def _record(**changes: Any) -> dict[str, Any]:
    record = {
        "choices": [{"kind": "run", "chosen": 1, "options": 2, "labels": ["request 0", "request 1"]}],
        "steps": [
            {"index": 1, "request": 0, "call": ENTER, "worker": 1, "preempted": False, "error": None},
            {"index": 2, "request": 1, "call": ENTER, "worker": 1, "preempted": True, "error": ALREADY_OPEN},
        ],
        "requests": [{"index": 0, "status": 200, "failed_step": None}, {"index": 1, "status": 500, "failed_step": 2}],
        "workers": 1,
        "virtual_seconds": 0.5,
        "divergences": 0,
        "complete": True,
    }
    return record | changes


def test_a_record_names_its_failure() -> None:
    record = ScheduleRecord.from_dict(_record())
    assert record.failure is not None
    assert (record.failure.request, record.failure.step, record.failure.call) == (1, 2, ENTER)
    assert record.failure.signature == ALREADY_OPEN and record.chosen == (1,)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"choices": [{"kind": "run", "chosen": 2, "options": 2}]}, "choices[0]: choice 2 of 2 options"),
        ({"choices": [{"kind": "run", "chosen": 0, "options": 1}]}, "choices[0]: choice 0 of 1 options"),
        ({"choices": [{"kind": "pick", "chosen": 0, "options": 2}]}, "choices[0].kind: expected one of"),
        ({"workers": -1}, "workers: -1 is negative"),
        (
            {"choices": [{"kind": "worker", "chosen": 0, "options": 2, "labels": ["worker 1"]}]},
            "choices[0].labels: 1 labels for 2 options",
        ),
        ({"requests": [{"index": 0, "status": 200, "failed_step": 2}]}, "steps[1].request: 1 is not one of the 1"),
        (
            {
                "requests": [
                    {"index": 0, "status": 500, "failed_step": 1},
                    {"index": 1, "status": 200, "failed_step": None},
                ]
            },
            "requests[0].failed_step: 1 is not a failed step of request 0",
        ),
        ({"virtual_seconds": "soon"}, "virtual_seconds: expected a number"),
    ],
)
def test_a_wrong_record_is_refused_naming_the_value(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{reason}".replace("[", r"\[").replace("]", r"\]")):
        ScheduleRecord.from_dict(_record(**changes))


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_a_damaged_record_is_read_or_refused_with_a_value_error(data: st.DataObject) -> None:
    try:
        record = ScheduleRecord.from_dict(_damaged(_record(), data))
    except ValueError as exc:
        assert "\n" not in str(exc)
    else:
        describe_steps(record.steps)  # what was read is fit for use
        assert record.failure is None or record.failure.signature


def _file() -> ScheduleFile:
    record = ScheduleRecord.from_dict(_record())
    schedule = Schedule(requests=(3, 5), choices=record.chosen, chooser={"kind": "pct", "seed": 3})
    found = Found(schedule=schedule, record=record)
    return ScheduleFile.of(found, scenario="burst", scenario_digest="0123456789ab", variant="unpatched", app="m:app")


def test_a_schedule_file_is_written_whole_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "schedule.json"
    write_schedule(path, _file())
    assert read_schedule(path) == _file()
    assert json.loads(path.read_text())["harness_schedule"] == 1
    assert read_schedule(path).schedule == Schedule(
        requests=(3, 5), choices=(1,), chooser={"kind": "replay", "choices": [1]}
    )
    assert [p.name for p in tmp_path.iterdir()] == ["schedule.json"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not JSON"),
        ("{", "not JSON"),
        ("[]", "not a schedule file of the harness"),
        ('{"harness_schedule": 2}', "harness_schedule: version 2 is not 1"),
        ('{"harness_schedule": true}', "harness_schedule: version True is not 1"),
        ("[" * 100_000 + "]" * 100_000, "not JSON"),
        ('{"harness_schedule": NaN}', "not JSON"),
    ],
)
def test_a_file_that_is_not_a_schedule_is_refused(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"^{reason}"):
        read_schedule(path)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"choices": [1, -1]}, r"choices\[1\]: -1 is negative"),
        ({"choices": [1.5]}, r"choices\[0\]: expected an integer, got 1.5"),
        ({"requests": []}, "requests: a schedule has at least one request"),
        ({"requests": [0]}, r"steps\[1\].request: 1 is not one of the 1 requests"),
        ({"failure": {"request": 1, "step": 9, "call": ENTER, "error": "x"}}, "failure: step 9 is not a failed step"),
        (
            {"failure": {"request": 0, "step": 2, "call": ENTER, "error": ALREADY_OPEN}},
            "failure: step 2 is not a failed",
        ),
        ({"app": "module"}, "app: 'module' is not 'module:attr'"),
        ({"variant": ""}, "variant: expected a non-empty line of text"),
        ({"scenario": "a\nb"}, "scenario: expected a non-empty line of text"),
        ({"steps": "all"}, "steps: expected a list"),
    ],
)
def test_a_damaged_schedule_file_is_refused_naming_what_is_wrong(
    tmp_path: Path, changes: dict[str, Any], reason: str
) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps(_file().to_dict() | changes))
    with pytest.raises(ValueError, match=f"^{reason}"):
        read_schedule(path)


def test_a_schedule_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "schedule.json"
    path.write_bytes(b'{"scenario": "\xff"}')
    with pytest.raises(ValueError, match=r"^not JSON"):
        read_schedule(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_schedule_file_is_read_or_refused_with_a_value_error(tmp_path: Path, data: st.DataObject) -> None:
    path = tmp_path / "schedule.json"
    content = bytearray(json.dumps(_damaged(_file().to_dict(), data)).encode())
    if data.draw(st.booleans()):  # and a byte changed or the file cut short
        at = data.draw(st.integers(0, len(content) - 1))
        content[at:] = bytes([data.draw(st.integers(0, 255))]) if data.draw(st.booleans()) else b""
    path.write_bytes(bytes(content))
    try:
        saved = read_schedule(path)
    except ValueError as exc:
        assert "\n" not in str(exc)
    else:
        assert saved.schedule.deviations >= 0
        describe_steps(saved.steps)


@given(value=_JSON)
def test_any_json_is_a_schedule_or_refused_with_a_value_error(value: Any) -> None:
    for read in (ScheduleFile.from_dict, Schedule.from_dict, ScheduleRecord.from_dict):
        try:
            read(value)
        except ValueError as exc:
            assert "\n" not in str(exc)


def test_a_schedule_is_strict_and_round_trips() -> None:
    schedule = Schedule(
        requests=(0, 2), choices=(0, 3, 0, 1), chooser={"kind": "pct", "seed": 1, "depth": 2, "steps": 8}
    )
    assert schedule.deviations == 2
    assert Schedule.from_dict(json.loads(json.dumps(schedule.to_dict()))) == schedule
    for changes, reason in (
        ({"choices": [True]}, r"choices\[0\]: expected an integer, got true"),
        ({"requests": [0, -2]}, r"requests\[1\]: -2 is negative"),
        ({"chooser": {"seed": 1}}, "chooser: expected an object with a 'kind'"),
        ({"chooser": None}, "chooser: expected an object with a 'kind'"),
    ):
        with pytest.raises(ValueError, match=f"^{reason}"):
            Schedule.from_dict(schedule.to_dict() | changes)
    with pytest.raises(ValueError, match=r"^missing choices"):
        Schedule.from_dict({"requests": [0], "chooser": {"kind": "default"}})
    assert replace(schedule, choices=()).deviations == 0


# -- scheduling points inside a call -----------------------------------------------------------


def test_a_bug_inside_one_call_is_found_by_pct_and_by_one_deviation_and_not_in_anyios_own_order() -> None:
    assert explore_bounded(SharedSession(), requests=[0, 1], bound=0, limit=10).found is None
    bounded = explore_bounded(SharedSession(), requests=[0, 1], bound=1, limit=100)
    assert bounded.found is not None and bounded.found.schedule.deviations == 1
    assert bounded.found.record.failure is not None and bounded.found.record.failure.error == DETACHED
    pct = explore_pct(SharedSession(), requests=[0, 1], depth=2, seeds=range(1, 21), steps_hint=len(SEGMENTS) * 2)
    assert pct.found is not None and pct.runs < 20
    assert (
        explore_pct(SharedSession(bug=False), requests=[0, 1], depth=2, seeds=range(1, 21), steps_hint=10).found is None
    )


@settings(max_examples=200, deadline=None)
@given(choices=st.lists(st.integers(0, 3), max_size=40), requests=st.integers(1, 4))
def test_the_choices_rebuilt_from_steps_that_pause_are_the_ones_the_server_made(
    choices: list[int], requests: int
) -> None:
    """The shrinker's model of the server's rules holds with paused calls: no worker decision on a resume, and a
    paused call's worker neither idle nor new."""
    record = SharedSession()(range(requests), {"kind": "replay", "choices": choices})
    taken = [(step.request, step.worker, step.resumes) for step in record.steps]
    assert _choices_for(taken)[0] == record.chosen


def test_shrink_drops_the_requests_a_bug_inside_one_call_does_not_need_and_tells_where_each_step_paused() -> None:
    server = SharedSession()
    failing = _failing(server, [0, 1, 2, 3], least_deviations=3)  # type: ignore[arg-type]
    shrunk = shrink(server, failing)
    assert len(shrunk.schedule.requests) == 2 and shrunk.schedule.deviations == 1
    assert server(shrunk.schedule.requests, dict(shrunk.schedule.chooser)) == shrunk.record
    lines = describe_steps(shrunk.record.steps)
    assert lines[:2] == [
        f"step 1: request A, {ENDPOINT}, on worker 1 (new), paused at flush",
        f"step 2: request A, {ENDPOINT} resumed at flush, on worker 1, paused at commit",
    ]
    assert lines[2] == f"step 3: request B preempts A: {ENDPOINT}, on worker 2 (new), paused at flush"
    assert lines[-1].endswith(f"{ENDPOINT} resumed at commit, on worker 1 -> {DETACHED}")


def test_a_step_recorded_before_scheduling_points_began_at_its_call_and_a_bad_point_is_refused() -> None:
    old = ScheduleRecord.from_dict(_record())  # no "point" in its steps
    assert [(step.point, step.resumes) for step in old.steps] == [(None, False), (None, False)]
    first, second = _record()["steps"]
    for point, shown in (("", "''"), ("a\nb", "'a\\nb'"), ("x" * 41, repr("x" * 40))):
        with pytest.raises(ValueError, match=re.escape(f"steps[0].point: {shown} is not the name of a scheduling")):
            ScheduleRecord.from_dict(_record(steps=[first | {"point": point}, second]))
