"""Hand-built results for unit tests of pure logic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from harness.grid import choose_winner, detects, sweep_exit_code
from harness.results import (
    CellResult,
    ConnectionSample,
    Outcome,
    Phase,
    RequestRecord,
    RunResult,
    ServerException,
    Stage,
    SweepCell,
    SweepResult,
    SweepSettings,
    TrialResult,
)
from harness.scenario import DEFAULT_FAIL_ON, FailureKind, load_scenario
from harness.settings import (
    DEFAULT_CONFIRM_TRIALS,
    DEFAULT_SWEEP_TIME_SCALE,
    DEFAULT_SWEEP_TRIALS,
    DEFAULT_TARGET,
    DEFAULT_WAVES,
)
from harness.variant import Expectation
from harness.verdict import judge, summarise

CONNECTION_OPENED = ServerException(
    request_id="",
    method="GET",
    path="/slowusers/",
    type="peewee.OperationalError",
    message="Connection already opened.",
    traceback="Traceback (most recent call last):\n  ...\npeewee.OperationalError: Connection already opened.\n",
    response_status=500,
    time=0.0,
)


def record(
    variant: str, trial: int, index: int, outcome: Outcome = "ok", *, phase: Phase = "schedule"
) -> RequestRecord:
    status = {"ok": 200, "client-error": 400, "server-error": 500}.get(outcome)
    request_id = f"{variant}-t{trial}-{phase}-{index}"
    exceptions = (replace(CONNECTION_OPENED, request_id=request_id),) if outcome == "server-error" else ()
    return RequestRecord(
        variant=variant,
        trial=trial,
        phase=phase,
        index=index,
        request_id=request_id,
        method="GET",
        path="/slowusers/",
        planned_offset=0.0 if phase == "schedule" else None,
        sent_at=0.01 * index,
        completed_at=None if outcome == "interrupted" else 0.5,
        status=status,
        outcome=outcome,
        exceptions=exceptions,
    )


def trial(variant: str, number: int, outcomes: list[Outcome], *, error: str | None = None) -> TrialResult:
    return TrialResult(
        variant=variant,
        trial=number,
        started_at="2026-11-21T00:00:00.000+00:00",
        server_dir="/tmp/x",
        pid=1,
        port=1,
        records=tuple(record(variant, number, i, o) for i, o in enumerate(outcomes)),
        error=error,
    )


def on_postgres(ran: TrialResult, samples: Sequence[tuple[float, int]], *, leaked: int | None) -> TrialResult:
    """The trial as if it ran on PostgreSQL, with the open connections (time, count) the database server counted."""
    return replace(
        ran,
        database="postgres",
        connections=tuple(ConnectionSample(time=at, open=count) for at, count in samples),
        peak_connections=max(count for _, count in samples),
        leaked_connections=leaked,
    )


def make_result(
    trials: tuple[TrialResult, ...] | None = None,
    *,
    complete: bool = False,
    scenario: str = "burst",
    confidence: float | None = None,
    fail_on: tuple[FailureKind, ...] = DEFAULT_FAIL_ON,
) -> RunResult:
    """A result judged as the pipeline judges it; by default one cut-short trial of each variant."""
    if trials is None:
        trials = (trial("unpatched", 1, ["ok", "server-error", "interrupted"]), trial("patched", 1, ["ok", "ok"]))
    expectations: dict[str, Expectation] = {"unpatched": "fails", "patched": "clean"}
    summaries, verdicts, code = judge(expectations, trials, confidence=confidence, fail_on=fail_on)
    return RunResult(
        scenario=replace(load_scenario(scenario), fail_on=fail_on),
        variants=("unpatched", "patched"),
        started_at="2026-11-21T00:00:00.000+00:00",
        duration=1.5,
        complete=complete,
        environment={"python": "3.11.7"},
        trials=trials,
        summaries=summaries,
        verdicts=verdicts,
        exit_code=code,
        confidence=confidence,
    )


def stack_run(
    stack: str | None,
    *,
    failed: int,
    trials: int = 10,
    patched_failed: int = 0,
    scenario: str = "tutorial-tabs",
    started_at: str = "2026-11-21T00:00:00.000+00:00",
) -> RunResult:
    """A complete run on ``stack`` (None: a results file that records none) where ``failed`` unpatched trials failed."""

    def outcomes(number: int, failing: int) -> list[Outcome]:
        return ["ok", "server-error"] if number <= failing else ["ok", "ok"]

    runs = tuple(
        trial(variant, number, outcomes(number, failing))
        for number in range(1, trials + 1)
        for variant, failing in (("unpatched", failed), ("patched", patched_failed))
    )
    result = make_result(runs, complete=True, scenario=scenario)
    environment = {**result.environment, **({"stack": stack} if stack else {})}
    return replace(result, environment=environment, started_at=started_at)


def cell(
    in_flight: int,
    interval: float,
    *,
    failed: int,
    trials: int = 10,
    patched_failed: int = 0,
    stage: Stage = "grid",
    cost: float | None = None,
    complete: bool = True,
) -> CellResult:
    """A sweep's cell whose unpatched build failed ``failed`` of ``trials`` trials, judged as the sweep judges it."""
    runs = [
        trial(variant, n, ["server-error" if n <= bad else "ok"])
        for variant, bad in (("unpatched", failed), ("patched", patched_failed))
        for n in range(1, trials + 1)
    ]
    summaries = (summarise("unpatched", runs), summarise("patched", runs))
    return CellResult(
        cell=SweepCell(interval=interval, in_flight=in_flight),
        stage=stage,
        requests=3 * in_flight,
        cost=cost if cost is not None else float(in_flight),
        run_dir=f"cells/{stage}-{in_flight}-{interval:g}",
        duration=1.0,
        complete=complete,
        summaries=summaries,
        detects=complete and detects(summaries, {"unpatched": "fails", "patched": "clean"}, 0.99),
    )


def sweep_settings(intervals: tuple[float, ...], in_flight: tuple[int, ...], *, jobs: int = 1) -> SweepSettings:
    """A sweep's settings over this grid, the others at their defaults."""
    return SweepSettings(
        intervals=intervals,
        in_flight=in_flight,
        waves=DEFAULT_WAVES,
        trials=DEFAULT_SWEEP_TRIALS,
        confirm_trials=DEFAULT_CONFIRM_TRIALS,
        time_scale=DEFAULT_SWEEP_TIME_SCALE,
        target=DEFAULT_TARGET,
        jobs=jobs,
    )


def make_sweep(cells: tuple[CellResult, ...], *, complete: bool = True) -> SweepResult:
    """A sweep over the cells' intervals and in-flight counts, with its winner chosen as the sweep chooses it."""
    winner = choose_winner(cells, confirm=any(c.stage == "confirm" for c in cells))
    return SweepResult(
        settings=sweep_settings(
            tuple(sorted({c.cell.interval for c in cells})), tuple(sorted({c.cell.in_flight for c in cells}))
        ),
        variants=("unpatched", "patched"),
        started_at="2026-11-22T00:00:00.000+00:00",
        duration=12.5,
        estimated_seconds=14.0,
        complete=complete,
        limit_reached=False,
        environment={"python": "3.11.7"},
        cells=cells,
        winner=winner,
        exit_code=sweep_exit_code(cells, winner, {"unpatched": "fails", "patched": "clean"}),
    )
