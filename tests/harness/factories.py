"""Hand-built results for unit tests of pure logic."""

from __future__ import annotations

from dataclasses import replace

from harness.results import Outcome, Phase, RequestRecord, RunResult, ServerException, TrialResult
from harness.scenario import load_scenario
from harness.verdict import judge

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


def make_result(
    trials: tuple[TrialResult, ...] | None = None, *, complete: bool = False, scenario: str = "burst"
) -> RunResult:
    """A result judged as the pipeline judges it; by default one cut-short trial of each variant."""
    if trials is None:
        trials = (trial("unpatched", 1, ["ok", "server-error", "interrupted"]), trial("patched", 1, ["ok", "ok"]))
    summaries, verdicts, code = judge({"unpatched": "fails", "patched": "clean"}, trials)
    return RunResult(
        scenario=load_scenario(scenario),
        variants=("unpatched", "patched"),
        started_at="2026-11-21T00:00:00.000+00:00",
        duration=1.5,
        complete=complete,
        environment={"python": "3.11.7"},
        trials=trials,
        summaries=summaries,
        verdicts=verdicts,
        exit_code=code,
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
