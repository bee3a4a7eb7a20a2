"""The matrix: every scenario and variant (rows) on every stack (columns), from saved results.

``nox -s matrix`` runs the built-in scenarios once per stack, each stack in its own
virtualenv and folder; :func:`collect_matrix` then reads every results file under the
matrix folder, files each run under the stack its results file records (and the database
each build ran on: ``current on postgres`` is a column of its own beside ``current``; and,
when the results come from more than one machine, as the artifacts of a CI job matrix do,
the machine: ``current @ runner-3``), and keeps the newest run of each scenario and
variant in each column. Runs of one scenario name that asked for different things (their
:meth:`~harness.scenario.Scenario.digest` differs) are refused, not merged. A cell is that
run's verdict for one variant, with its failure rate per trial, and two flags across stacks:

- *silent*: a variant expected to fail failed in no trial on this stack.
- *weakened*: it did fail, but its per-trial failure rate is significantly below that of
  another stack (the 95% intervals do not overlap). The tutorial's 10 tabs on today's
  stack fail in some trials, so a run of 10 often still "meets" its expectation while
  the recipe has all but stopped working; the matrix says so.

Silent and weakened cells are what a matrix is for: they are reported, not failed on.
The matrix's exit code is that of its regressions and harness errors alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import get_args

from harness.errors import ExitCode, ResultsError
from harness.results import RESULTS_FILE, Rate, RunResult, Verdict, read_results
from harness.stack import CUSTOM_STACK, stacks
from harness.summary import format_rate, format_table
from harness.variant import DEFAULT_DATABASE, Database
from harness.verdict import exit_code

MATRIX_FILE = "matrix.html"
_FINDINGS = ("silent", "undecided")  # kinds a matrix shows but does not fail on


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One variant of one scenario on one stack: the verdict of the newest run there."""

    verdict: Verdict
    trial_failure_rate: Rate
    results_path: Path
    complete: bool
    weakened_against: str | None = None  # a stack where it failed significantly more often

    @property
    def silent(self) -> bool:
        return self.verdict.kind == "silent"

    @property
    def flagged(self) -> bool:
        """A finding: silent, undecided or weakened."""
        return self.verdict.kind in _FINDINGS or self.weakened_against is not None


@dataclass(frozen=True, kw_only=True)
class Row:
    scenario: str
    variant: str
    cells: dict[str, Cell]  # by stack; a stack without a run of this row has no cell


@dataclass(frozen=True, kw_only=True)
class Matrix:
    # The columns: a stack, "STACK on postgres" for its builds on PostgreSQL, "... @ HOST" when runs came
    # from several machines.
    stacks: tuple[str, ...]
    rows: tuple[Row, ...]
    environments: dict[str, dict[str, str]]  # by stack: what its newest run recorded (versions, platform)
    unreadable: tuple[str, ...]  # results files found but not read, each with its problem

    @property
    def cells(self) -> list[Cell]:
        return [cell for row in self.rows for cell in row.cells.values()]

    @property
    def exit_code(self) -> ExitCode:
        return exit_code([cell.verdict for cell in self.cells if cell.verdict.kind not in _FINDINGS])


def describe_matrix(matrix: Matrix) -> str:
    """The matrix's outcome in one sentence: its exit code's meaning, or what it flagged."""
    if matrix.exit_code is not ExitCode.OK:
        return matrix.exit_code.meaning
    cells = matrix.cells
    flags = [
        f"{count} {what} reproducer{'s' if count != 1 else ''}"
        for what, count in (
            ("silent", sum(cell.silent for cell in cells)),
            ("weakened", sum(cell.weakened_against is not None for cell in cells)),
            ("undecided", sum(cell.verdict.kind == "undecided" for cell in cells)),
        )
        if count
    ]
    if not flags:
        return "every variant met its expectation on every stack"
    return f"no regression and no harness error; flagged: {', '.join(flags)}"


def collect_matrix(directory: Path) -> Matrix:
    """The matrix of every results file under ``directory`` (at any depth)."""
    if not directory.is_dir():
        raise ResultsError(f"{directory}: no such folder")
    runs: list[tuple[Path, RunResult]] = []
    unreadable: list[str] = []
    for path in sorted(directory.rglob(RESULTS_FILE)):
        try:
            runs.append((path, read_results(path, with_trials=False)))
        except ResultsError as exc:
            unreadable.append(exc.message)
    if not runs:
        raise ResultsError(f"{directory}: no readable {RESULTS_FILE} in it or below it (run 'nox -s matrix')")
    return build_matrix(runs, unreadable=unreadable)


def build_matrix(runs: Iterable[tuple[Path, RunResult]], *, unreadable: Iterable[str] = ()) -> Matrix:
    runs = list(runs)
    _check_one_definition(runs)
    machines = len({result.environment.get("host") for _, result in runs}) > 1
    newest: dict[tuple[str, str, str], tuple[Path, RunResult]] = {}  # by column, scenario, variant
    for path, result in runs:
        for variant in result.variants:
            key = (_column(result, variant, machines=machines), result.scenario.name, variant)
            if key not in newest or newest[key][1].started_at < result.started_at:
                newest[key] = (path, result)
    cells: dict[tuple[str, str], dict[str, Cell]] = {}
    for (column, scenario, variant), (path, result) in newest.items():
        summaries = {summary.variant: summary for summary in result.summaries}
        verdict = next(verdict for verdict in result.verdicts if verdict.variant == variant)
        cells.setdefault((scenario, variant), {})[column] = Cell(
            verdict=verdict,
            trial_failure_rate=summaries[variant].trial_failure_rate,
            results_path=path,
            complete=result.complete,
        )
    # Variants in the order the runs declared them (the user's configuration's order).
    variant_order = list(dict.fromkeys(name for _, result in newest.values() for name in result.variants))
    environments = {
        column: _environment(result, variant)
        for (column, _, variant), (_, result) in sorted(newest.items(), key=_started)
    }
    rows = tuple(
        Row(scenario=scenario, variant=variant, cells=_flag_weakened(row_cells))
        for (scenario, variant), row_cells in sorted(
            cells.items(), key=lambda item: (item[0][0], variant_order.index(item[0][1]))
        )
    )
    known = [_named(stack, database) for database in get_args(Database) for stack in stacks()]

    def shipped_first(column: str) -> tuple[int, str]:
        stack = column.split(" @ ")[0]
        return (known.index(stack) if stack in known else len(known), column)

    return Matrix(
        stacks=tuple(sorted(environments, key=shipped_first)),
        rows=rows,
        environments=environments,
        unreadable=tuple(unreadable),
    )


def format_matrix(matrix: Matrix) -> str:
    """The matrix as a plain-text table, one line per row, as ``harness matrix`` prints it."""
    header = ("scenario", "variant", *matrix.stacks)
    rows = [
        (row.scenario, row.variant, *(describe_cell(row.cells.get(stack)) for stack in matrix.stacks))
        for row in matrix.rows
    ]
    return "\n".join(format_table([header, *rows]))


def describe_cell(cell: Cell | None) -> str:
    """A cell in words: failed trials, per-trial rate with its interval, verdict, flags."""
    if cell is None:
        return "not run"
    rate = cell.trial_failure_rate
    text = f"{rate.count}/{rate.total} {format_rate(rate)} {cell.verdict.kind}"
    if cell.weakened_against:
        text += f", weakened (vs {cell.weakened_against})"
    if not cell.complete:
        text += ", incomplete"
    return text


def _flag_weakened(cells: dict[str, Cell]) -> dict[str, Cell]:
    flagged = {}
    for stack, cell in cells.items():
        stronger = None
        if cell.verdict.expected == "fails" and not cell.silent:
            stronger = next(
                (other for other, o in cells.items() if o.trial_failure_rate.low > cell.trial_failure_rate.high),
                None,
            )
        flagged[stack] = replace(cell, weakened_against=stronger)
    return flagged


def _check_one_definition(runs: list[tuple[Path, RunResult]]) -> None:
    """A usage error when two runs of one scenario name asked for different things: a matrix compares one definition.

    Their number of trials may differ (:meth:`harness.scenario.Scenario.digest`).
    """
    first: dict[str, tuple[str, Path]] = {}
    for path, result in runs:
        digest = result.scenario.digest()
        seen = first.setdefault(result.scenario.name, (digest, path))
        if seen[0] != digest:
            raise ResultsError(
                f"scenario {result.scenario.name!r} is not the same in {seen[1]} (definition {seen[0]}) and in {path} "
                f"(definition {digest}): a matrix compares one scenario across machines and stacks; run both with "
                "the same scenario file, or give one another name"
            )


def _column(result: RunResult, variant: str, *, machines: bool) -> str:
    """The column of a variant's cell: its run's stack, the database it ran on when that is not SQLite, and the
    machine when the runs come from more than one (the artifacts of a CI job matrix).
    """
    stack = _environment(result, variant).get("stack", CUSTOM_STACK)
    column = _named(stack, result.databases.get(variant, DEFAULT_DATABASE))
    return f"{column} @ {result.environment.get('host', '?')}" if machines else column


def _environment(result: RunResult, variant: str) -> dict[str, str]:
    """What a variant ran on: its run's environment, with its own interpreter's Python and stack if it had one."""
    return {**result.environment, **result.interpreters.get(variant, {})}


def _named(stack: str, database: Database) -> str:
    return stack if database == DEFAULT_DATABASE else f"{stack} on {database}"


def _started(item: tuple[tuple[str, str, str], tuple[Path, RunResult]]) -> str:
    return item[1][1].started_at
