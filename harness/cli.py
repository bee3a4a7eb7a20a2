"""``harness``: run scenarios against the app's builds, set a project up, and list what there is to run."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from harness import __version__
from harness.config import CONFIG_FILE, CONFIG_VARIABLE, PYPROJECT_FILE, SCENARIOS_FOLDER, load_config
from harness.errors import ExitCode, HarnessError, UsageError, WriteError
from harness.files import atomic_writer
from harness.interrupts import held, seen_through, sigterm_as_ctrl_c
from harness.results import (
    JOURNAL_FILE,
    RESULTS_FILE,
    CellResult,
    RunResult,
    SweepResult,
    SweepSettings,
    TrialResult,
    read_document,
    read_results,
    read_sweep,
    write_results,
)
from harness.scenario import builtin_scenarios
from harness.settings import (
    SweepGrid,
    add_options,
    describe_setting,
    resolve,
    run_settings,
    specs,
    sweep_grid,
)
from harness.stack import installed_stack, stacks
from harness.summary import (
    DATABASE_NAMES,
    describe_cell,
    describe_explore,
    describe_fail_on,
    describe_schedule,
    format_summary,
    format_sweep,
    format_table,
)
from harness.terminal import printable
from harness.urls import display_url
from harness.variant import Variant

if TYPE_CHECKING:
    from harness.plan import RunPlan

STARTER_SCENARIO = "concurrent.toml"  # what harness init writes into scenarios/

_EPILOG = "exit codes:\n" + "\n".join(f"  {code.value:<4} {code.meaning}" for code in ExitCode)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    with sigterm_as_ctrl_c() as signals:
        try:
            args = parser.parse_args(argv)
            if args.command is None:
                parser.print_help(sys.stderr)
                return ExitCode.USAGE_ERROR
            code = int(args.handler(args))
            if signals.arrived:  # a stop whose KeyboardInterrupt Python swallowed: still a stop
                raise KeyboardInterrupt
            return code
        except HarnessError as exc:
            print(f"harness: error: {printable(exc.message)}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print(f"harness: {signals.exit_code.meaning}", file=sys.stderr)
            return signals.exit_code
        except BrokenPipeError:
            # The reader went away (harness list | head): what it read was whole; say no more.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return ExitCode.OK


def build_parser() -> _Parser:
    parser = _Parser(
        prog="harness",
        description="Replay concurrent request schedules against the builds of an ASGI app, each under its own\n"
        f"uvicorn, and tell which one fails. The builds come from {CONFIG_FILE} (harness init writes one),\n"
        "else they are the Peewee tutorial's.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser(
        "run",
        help="run a scenario against the variants and write its results and HTML report",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_options(run)
    run.set_defaults(handler=_run)

    _add_sweep_parser(commands)

    replay = commands.add_parser(
        "replay",
        help="replay a failing schedule that explore mode saved, in a fresh server, and say if it fails again",
        description="Replay the schedule in PATH (a schedule file, or a run folder with schedules/*.json that "
        "harness run --explore saved) in a fresh server of its build, seeded as the run's were: the same requests, "
        "the same thread-pool calls on the same worker threads in the same order. Exits 0 when the same request "
        "fails with the same exception at the same step, 2 when it does not (and says what differed), 4 when the "
        "file is damaged or its build or scenario is not the one the configuration declares now.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("path", type=Path, metavar="PATH", help="a schedule file, or the run folder it is in")
    add_options(replay, "replay")
    _add_config_option(replay)
    replay.set_defaults(handler=_replay)

    recover = commands.add_parser(
        "recover",
        help="rebuild the results of a run that was killed, from its journal of requests",
        description="A harness killed outright (SIGKILL, a lost machine) cannot write its last trial. "
        f"Every request of the trials under way is also in the run's {JOURNAL_FILE}: this rewrites the "
        "run's record (results.json, trials.jsonl) with the unfinished trials rebuilt from it, marked incomplete, "
        "and prints the summary.",
    )
    recover.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run's folder (where results.json is)")
    recover.set_defaults(handler=_recover)

    report = commands.add_parser(
        "report",
        help="render a saved results file into a self-contained HTML report",
        description="Render RESULTS.json (of a finished or cut-short run, or a sweep's sweep.json) into one HTML file "
        "that works offline.",
    )
    report.add_argument(
        "results", type=Path, metavar="RESULTS.json", help="a results file written by harness run or sweep"
    )
    _add_output_option(report, "the report (default: report.html, or sweep.html for a sweep, beside the results file)")
    report.set_defaults(handler=_report)

    matrix = commands.add_parser(
        "matrix",
        help="merge the results of runs on several stacks into one matrix report",
        description="Read every results file under DIR (as 'nox -s matrix' leaves them, one folder per stack), "
        "keep the newest run of each scenario on each stack (the stack its results file records), and write one "
        "HTML page: rows scenario x variant, columns stacks, each cell the failure rate per trial with its 95% "
        "interval and the verdict, silent and weakened reproducers flagged. Exits 1 on a regression and 3 on a "
        "harness error in any cell; silent and weakened reproducers are reported, not failed on.",
    )
    matrix.add_argument("directory", type=Path, metavar="DIR", help="a folder with results files at any depth")
    _add_output_option(matrix, "the matrix page (default: matrix.html in DIR)")
    matrix.set_defaults(handler=_matrix)

    listing = commands.add_parser("list", help="list the scenarios, the variants and the stacks")
    _add_config_option(listing)
    listing.set_defaults(handler=_list)

    config = commands.add_parser(
        "config",
        help="print the configuration a run would use, and where each value came from",
        description="Print the merged configuration: every setting with its value and its source (command line > "
        "HARNESS_* environment variable > configuration file > built-in), the variants and the scenarios. Takes "
        "the options of harness run, so it shows what that run would use.",
    )
    _add_run_options(config)
    config.set_defaults(handler=_config)

    init = commands.add_parser(
        "init",
        help=f"write a commented starter {CONFIG_FILE} and one scenario into the current folder",
        description=f"Write {CONFIG_FILE} and {SCENARIOS_FOLDER}/{STARTER_SCENARIO} into the current folder, to "
        "edit for your app. Refuses to overwrite either file.",
    )
    init.set_defaults(handler=_init)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of harness run, which harness config takes too, to show what a run would use."""
    add_options(parser, "run")
    parser.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="let --host be an address other machines can reach (the app under test has no authentication)",
    )
    parser.add_argument(
        "--url",
        metavar="URL",
        help="test a server you started yourself (gunicorn, docker compose, ...) instead of launching the variant: "
        "every trial goes to URL, one after another, under the one --variant NAME; nothing is collected from "
        "inside that server",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="let --url name a host other than this machine (the harness sends it real load)",
    )
    _add_shared_options(parser, verb="run")


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help=f"the configuration file (default: ${CONFIG_VARIABLE}, else {CONFIG_FILE} or [tool.harness] in "
        f"{PYPROJECT_FILE} in the current folder, else the tutorial's builds)",
    )


def _add_shared_options(parser: argparse.ArgumentParser, *, verb: str) -> None:
    """The options harness run and harness sweep share that are no setting: which builds, which configuration."""
    parser.add_argument(
        "--variant",
        action="append",
        metavar="NAME",
        help=f"{verb} only this variant (harness list names them); repeat for several (default: all)",
    )
    _add_config_option(parser)


def _add_sweep_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="measure a grid of schedules and name the cheapest that catches the builds expected to fail",
        description="Run every cell of a grid of schedules against the variants: a cell sends IN_FLIGHT requests "
        "to /slowusers/ at once, WAVES times, INTERVAL tutorial-seconds apart, in TRIALS trials. Writes each cell's "
        "failure rate per variant (sweep.json, sweep.html: a heat map per variant) and names the cheapest cell that "
        "detects: every variant expected to fail failed in at least TARGET of its trials, every variant expected "
        "to be clean stayed clean, and CONFIRM more trials said the same. Cost = requests per trial x planned "
        "seconds per trial. The estimated wall time is printed before it starts.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(sweep, "sweep", kind=SweepGrid)
    add_options(sweep, "sweep")
    sweep.add_argument(
        "--scenario",
        metavar="NAME|PATH",
        help="the scenario whose seed steps, request, timeout and failure kinds every cell keeps; the sweep "
        "varies only its schedule (default: the tutorial's seed and GET /slowusers/)",
    )
    sweep.add_argument(
        "--write-scenario",
        type=Path,
        metavar="FILE",
        help="save the winning schedule as a scenario file that harness run --scenario FILE runs as it is",
    )
    _add_shared_options(sweep, verb="sweep")
    sweep.set_defaults(handler=_sweep)


def _sweep(args: argparse.Namespace) -> ExitCode:
    from harness.grid import SweepPlan, check_grid, describe_grid, winner_scenario
    from harness.interpreter import checked_interpreters
    from harness.plan import new_folder
    from harness.sweep import run_sweep

    config = load_config(args.config)
    settings = run_settings(resolve(_given(args), config))
    options = sweep_grid(vars(args))
    databases = options.databases or (settings.database,)
    variants = tuple({v.name: v for d in databases for v in config.get_variants(args.variant, database=d)}.values())
    checked_interpreters(variants, timeout=settings.start_timeout)  # one that cannot serve its build: before any folder
    base = config.scenario(args.scenario) if args.scenario else None
    if args.write_scenario and not args.write_scenario.parent.is_dir():
        raise UsageError(f"--write-scenario: no folder {args.write_scenario.parent} to write {args.write_scenario} in")
    grid = SweepSettings(
        intervals=options.intervals,
        in_flight=options.in_flight,
        waves=options.waves,
        trials=options.trials,
        confirm_trials=options.confirm,
        time_scale=options.time_scale,
        target=options.target,
        jobs=settings.jobs,
        databases=databases,
    )
    plan = SweepPlan(
        settings=check_grid(grid, max_cells=options.max_cells),
        variants=variants,
        sweep_dir=Path(settings.out),
        start_timeout=settings.start_timeout,
        max_seconds=options.max_seconds,
        base=base,
        database_url=settings.database_url,
        postgres_max_connections=settings.postgres_max_connections,
    )
    if "fails" not in plan.expectations.values():
        raise UsageError("--variant: a sweep looks for schedules that catch a build expected to fail; name one")
    estimate = plan.estimated_seconds()
    if estimate > plan.max_seconds:
        raise UsageError(
            f"the sweep is estimated at {estimate:.0f} s, more than --max-seconds {plan.max_seconds:g}: "
            "measure fewer cells or trials, or raise --max-seconds"
        )
    plan = replace(plan, sweep_dir=new_folder(plan.sweep_dir, "sweep"))
    _progress(
        f"sweep of {grid.size} cells ({describe_grid(grid)}) "
        f"x {grid.trials} trials x {len(variants)} variants, {grid.jobs} trial(s) at a time, time scale "
        f"{grid.time_scale:g}, then up to {grid.confirm_trials} confirmation trials per candidate: "
        f"estimated {estimate:.0f} s (at most {plan.max_seconds:g}); output in {plan.sweep_dir}"
    )

    def stopped(_: BaseException) -> None:
        report = _publish_sweep(read_sweep(plan.results_path), plan.results_path)
        _progress(f"stopped: every finished cell is in {plan.results_path} (marked incomplete); report: {report}")

    result = seen_through(
        lambda: run_sweep(plan, on_cell=lambda cell, so_far: _report_cell(cell, so_far, plan.results_path)),
        on_stop=stopped,
    )
    report = _publish_sweep(result, plan.results_path)
    print(format_sweep(result))
    if result.winner and args.write_scenario:
        with atomic_writer(args.write_scenario) as file:
            file.write(winner_scenario(plan, result, results_path=plan.results_path))
        print(f"scenario: {args.write_scenario} (harness run --scenario {args.write_scenario} --trials 100 checks it)")
    print(f"\nresults: {plan.results_path}\nreport:  {report}")
    print(f"exit code {result.exit_code.value}: {result.exit_code.meaning}")
    return result.exit_code


def _report_cell(cell: CellResult, so_far: SweepResult, results_path: Path) -> None:
    measured = sum(1 for c in so_far.cells if c.stage == "grid")
    where = f"cell {measured}/{so_far.settings.size}" if cell.stage == "grid" else "confirm"
    _progress(
        f"{where}  {describe_cell(cell.cell)} ({cell.requests} requests per trial, {cell.duration:.1f} s): "
        f"{', '.join(f'{s.variant} {s.failed_trials}/{s.trials} trials failed' for s in cell.summaries)}"
        f"{' - detects' if cell.detects else ''}"
    )
    _publish_sweep(so_far, results_path)


def _run(args: argparse.Namespace) -> ExitCode:
    # Imported here, inside main's handlers: an early Ctrl-C still exits 130, and
    # `harness list`, `harness config` and `--help` don't load the network stack.
    from harness.pipeline import execute
    from harness.plan import build_plan

    config = load_config(args.config)
    plan = build_plan(
        config,
        resolve(_given(args), config),
        variants=args.variant,
        url=args.url,
        allow_non_loopback=args.allow_non_loopback,
        allow_remote=args.allow_remote,
    )
    scenario, url, variants = plan.scenario, plan.url, plan.variants
    if plan.explore is not None:
        explore = plan.explore
        if plan.confidence is not None:
            span = f"until decided at {plan.confidence:.0%} confidence"
        elif explore.strategy == "pct":
            span = f"seeds 1-{explore.schedules}"
        else:
            span = f"at most {explore.schedules} schedules"
        how_many = f"explore mode ({describe_explore(explore, explore.request_count(scenario.schedule))}; {span})"
        of_trials = ""
    elif plan.confidence is None:
        how_many = f"{scenario.trials} trials"
        of_trials = f"/{scenario.trials}"
    else:
        how_many = (
            f"trials until every verdict is decided at {plan.confidence:.0%} confidence "
            f"(at most {plan.max_trials} trials or {plan.max_seconds:g} s)"
        )
        of_trials = f" (at most {plan.max_trials})"
    against = f"the server at {display_url(url)} as {variants[0].name}" if url else _builds_on(plan)
    _progress(
        f"running {scenario.name} ({describe_schedule(scenario)}): {how_many} of {against}, {plan.jobs} at a time; "
        f"output in {plan.run_dir}"
    )

    def stopped(exc: BaseException) -> None:
        if not plan.results_path.exists():  # stopped before the run's first write, or that write failed
            return
        if isinstance(exc, WriteError):  # the report would fail as that write did
            _progress(
                f"stopped: what was written is in {plan.run_dir}; once there is room, "
                f"harness recover {plan.run_dir} completes it and writes its report"
            )
            return
        so_far = read_results(plan.results_path)
        if so_far.trials_run or isinstance(exc, KeyboardInterrupt):
            report = _publish(so_far, plan.results_path)
            _progress(f"stopped: what was measured is in {plan.results_path} (marked incomplete); report: {report}")

    result = seen_through(
        lambda: execute(plan, on_trial=lambda trial, results: _report_trial(f"{trial}{of_trials}", results)),
        on_stop=stopped,
        stops=(KeyboardInterrupt, HarnessError),
    )
    report = _publish(result, plan.results_path)
    print(format_summary(result))
    for searched in result.explore:
        if searched.schedule_file:
            print(f"replay {searched.variant}'s: harness replay {plan.run_dir / searched.schedule_file}")
    print(f"\nresults: {plan.results_path}\nreport:  {report}")
    print(f"exit code {result.exit_code.value}: {result.exit_code.meaning}")
    return result.exit_code


def _builds_on(plan: RunPlan) -> str:
    """``unpatched, patched on SQLite``: the builds, each with its database."""
    groups: dict[str, list[str]] = {}
    for variant in plan.variants:
        groups.setdefault(DATABASE_NAMES[plan.database_of(variant)], []).append(variant.name)
    return "; ".join(f"{', '.join(names)} on {database}" for database, names in groups.items())


def _publish(result: RunResult, results_path: Path) -> Path:
    from harness.reports import publish

    with held():  # a Ctrl-C now waits for whole pages, as it does for the results file
        return publish(result, results_path)


def _publish_sweep(result: SweepResult, results_path: Path) -> Path:
    from harness.reports import publish_sweep

    with held():
        return publish_sweep(result, results_path)


def _report(args: argparse.Namespace) -> ExitCode:
    from harness.reports import REPORT_FILE, SWEEP_REPORT_FILE, write_report, write_sweep_report

    result = read_document(args.results)
    if isinstance(result, SweepResult):
        what, output = "sweep", args.output or args.results.with_name(SWEEP_REPORT_FILE)
        _write_page(lambda: write_sweep_report(result, output))
    else:
        what, output = "run", args.output or args.results.with_name(REPORT_FILE)
        _write_page(lambda: write_report(result, output))
    print(f"report: {output}")
    if not result.complete:
        print(f"(the {what} is incomplete: the report shows what was saved and says so)")
    return ExitCode.OK


def _matrix(args: argparse.Namespace) -> ExitCode:
    from harness.matrix import MATRIX_FILE, collect_matrix, describe_matrix, format_matrix
    from harness.reports import write_matrix

    matrix = collect_matrix(args.directory)
    output = args.output or args.directory / MATRIX_FILE
    _write_page(lambda: write_matrix(matrix, output))
    print(format_matrix(matrix))
    for problem in matrix.unreadable:
        _progress(f"not read: {problem}")
    print(f"\nmatrix: {output}")
    print(f"exit code {matrix.exit_code.value}: {describe_matrix(matrix)}")
    return matrix.exit_code


def _replay(args: argparse.Namespace) -> ExitCode:
    from harness.replay import replay_files

    config = load_config(args.config)
    code = ExitCode.OK
    for replayed in replay_files(config, resolve(_given(args), config), args.path, on_start=_progress):
        print(replayed.describe())
        if not replayed.reproduced:
            code = ExitCode.SILENT
    said = "every failure came back" if code == ExitCode.OK else "a failure did not come back"
    print(f"exit code {code.value}: {said}")
    return code


def _recover(args: argparse.Namespace) -> ExitCode:
    from harness.journal import RECOVERED, recover

    result, rebuilt = recover(args.run_dir)
    write_results(result, args.run_dir / RESULTS_FILE)
    report = _publish(result, args.run_dir / RESULTS_FILE)
    print(format_summary(result))
    records = sum(len(t.records) for t in result.trials if t.error == RECOVERED)
    print(f"\nrecovered {records} request records of {rebuilt} unfinished trials from {args.run_dir / JOURNAL_FILE}")
    print(f"results: {args.run_dir / RESULTS_FILE}\nreport:  {report}")
    return ExitCode.OK


def _list(args: argparse.Namespace) -> ExitCode:
    config = load_config(args.config)
    scenarios = config.scenarios()
    builtins = builtin_scenarios() if config.path else {}
    width = max(map(len, [*scenarios, *config.variants]))
    print("scenarios (harness run --scenario NAME, or a path to a TOML file):")
    for name, scenario in scenarios.items():
        origin = ", the tutorial's" if builtins.get(name) == scenario else ""
        print(
            f"  {name:<{width}}  {scenario.description} ({scenario.trials} trials, time scale "
            f"{scenario.time_scale:g}{origin})"
        )
    print(f"variants (harness run --variant NAME), from {config.origin}:")
    for name, variant in config.variants.items():
        described = f"{variant.description}; " if variant.description else ""
        only = "; PostgreSQL only (--database postgres)" if variant.database == "postgres" else ""
        print(f"  {name:<{width}}  {described}expected by default: {variant.expect} ({variant.app}){only}")
    print(f"stacks (nox -s matrix; this environment: {installed_stack()}):")
    for name, stack in stacks().items():
        print(f"  {name:<{width}}  {stack.description}")
    return ExitCode.OK


def _config(args: argparse.Namespace) -> ExitCode:
    config = load_config(args.config)
    resolved = resolve(_given(args), config)
    print(f"configuration: {config.origin}")
    print("settings (command line > HARNESS_* environment > configuration file > built-in):")
    rows = [("setting", "value", "from")]
    for key, setting in resolved.items():
        value = describe_setting(key, setting)
        if key == "database_url" and setting.value is not None:
            value = display_url(setting.value)  # never its password
        where = setting.source + (f" ({setting.origin})" if setting.origin else "")
        rows.append((key, value, where))
    print("\n".join(f"  {line}" for line in format_table(rows)))
    print("variants:")
    for variant in config.variants.values():
        print(f"  {variant.name}: {_describe_variant(variant)}")
    scenario = config.scenario(resolved["scenario"].value)
    print(f"scenario {scenario.name}: {describe_schedule(scenario)}; fails on {describe_fail_on(scenario)}")
    print(f"scenarios known by name: {', '.join(config.scenarios())}")
    return ExitCode.OK


def _given(args: argparse.Namespace) -> dict[str, object]:
    """The run settings given on the command line (None: not given), by name."""
    return {name: getattr(args, name, None) for name in specs()}


def _describe_variant(variant: Variant) -> str:
    parts = [f"app {variant.app}" + (" (factory)" if variant.factory else ""), f"expect {variant.expect}"]
    if variant.app_dir:
        parts.append(f"app_dir {variant.app_dir}")
    if variant.env_file:
        parts.append(f"env_file {variant.env_file}")
    if variant.env:
        parts.append("env " + ", ".join(f"{key}={value}" for key, value in variant.env.items()))
    parts.append(f"ready {variant.ready}" if variant.ready else "ready once listening")
    if variant.database:
        parts.append(f"runs only on {variant.database}")
    if variant.python:
        parts.append(f"python {variant.python}")
    return "; ".join(parts)


def _init(args: argparse.Namespace) -> ExitCode:
    from importlib import resources

    here = Path.cwd()
    targets = {here / CONFIG_FILE: "starter.toml", here / SCENARIOS_FOLDER / STARTER_SCENARIO: "starter-scenario.toml"}
    existing = [str(path) for path in targets if path.exists()]
    if existing:
        raise UsageError(f"init: {' and '.join(existing)} already exist; harness init overwrites nothing")
    try:
        for path, starter in targets.items():
            path.parent.mkdir(exist_ok=True)
            path.write_text(resources.files("harness").joinpath(starter).read_text(encoding="utf-8"), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"init: cannot write into {here}: {exc.strerror or exc}") from None
    for path in targets:
        print(f"wrote {path.relative_to(here)}")
    print(f"next: set app in {CONFIG_FILE} to your app, then run: harness config && harness run")
    return ExitCode.OK


def _add_output_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help=f"where to write {what}")


def _write_page(write: Callable[[], Path]) -> None:
    """Write a page the user asked for; a Ctrl-C waits for it (a path that cannot be written: a WriteError)."""
    with held():
        write()


def _report_trial(trial: str, results: Sequence[TrialResult]) -> None:
    parts = []
    for result in results:
        scheduled = [r for r in result.records if r.phase == "schedule"]
        failed = sum(1 for r in scheduled if r.outcome == "server-error")
        unanswered = sum(1 for r in scheduled if r.outcome in ("transport-error", "timeout"))
        if result.error:
            part = f"could not run ({printable(result.error.splitlines()[0])})"
        elif failed:
            part = f"{failed} of {len(scheduled)} requests 5xx" + (f", {unanswered} unanswered" if unanswered else "")
        elif unanswered:
            part = f"{unanswered} of {len(scheduled)} requests unanswered"
        else:
            part = "clean"
        if result.server_exit_code is not None:
            part += f" (its server died, exit code {result.server_exit_code})"
        parts.append(f"{result.variant}: {part}")
    _progress(f"trial {trial}  " + "  ".join(parts))


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
