"""The pytest plugin: scenarios as test items, ``pytest -n auto burst scenarios/mine.toml``.

A scenario is collected when it is named on the command line, by name (a built-in, or one
of the configuration's) or as a TOML file; a test run that names nothing of the kind (the project's own ``testpaths``)
collects no scenario and writes nothing. Each scenario and variant is one item,
``burst[patched]``: it runs the scenario's trials of that variant on its own servers
(own ports, own databases, so xdist workers never share one) and passes when the variant
meets its expectation; a failing item's message is the verdict in words. The variants are
the configuration's (:mod:`harness.config`): ``--harness-config PATH``, else the one found
in the rootdir (``harness.toml``, ``[tool.harness]`` in ``pyproject.toml``), else the
tutorial's builds.

An item runs in a temporary folder of its own, on whichever machine runs it, and sends its
whole record back inside its report (a user property, :func:`harness.results.pack_record`);
the controller, which alone writes the session's folder, writes each record there as its
report arrives: under pytest-xdist, from workers that may be on other machines and never
see that folder; without xdist, from this very process, the same way. At the end of the
session the controller merges the items' results, per scenario, into one results file with
every variant's trials, and there the verdicts carry the statistics that need both
variants (the power of the clean one's trials)::

    <--harness-out>/<date>-<time>-pytest/
      index.html                     # every scenario of the session, with its verdicts
      burst/results.json             # merged: every variant, every trial, where each ran
      burst/report.html              # its HTML report
      burst/patched/results.json     # one item's run, as its report brought it

Under pytest-xdist (``-n``, ``--dist load`` or ``loadgroup``) a scenario's builds run on one
worker, one after another, so that they share its load (:mod:`harness.scheduling`); the
report names the host and worker each ran on. Workers elsewhere (``--tx ssh=HOST``,
``--tx socket=ADDR``, or a popen worker with ``chdir``) need the harness installed, and
get the command line as xdist rewrites it: each argument that names an existing path is
made relative to the folders xdist rsyncs (``--rsyncdir``), and xdist stops with an
INTERNALERROR on one it cannot rewrite, a relative path or one outside those folders. So,
there: ``--harness-out=DIR`` in one argument (no worker uses it, and ``--harness-out DIR``
is refused), ``--harness-config=PATH`` likewise (the path as the worker sees it), and a
scenario file by its absolute path inside a folder given as ``--rsyncdir=DIR``, or the
scenario by name; the plugin refuses what xdist would stop on::

    pytest --dist load --tx 2*ssh=ci-2//python=python3 --rsyncdir=scenarios "$PWD"/scenarios/*.toml --harness-out=out

Heavy imports (the pipeline, anyio, httpx) happen inside hooks, when a scenario runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.files import writing  # standard library and harness.errors only
from harness.settings import RunSettings, add_options  # standard library only: nothing heavy at plugin load

if TYPE_CHECKING:
    from harness.config import Config
    from harness.results import RunResult, Verdict
    from harness.scenario import Scenario
    from harness.settings import Resolved
    from harness.variant import Variant

MERGED_FILE = "results.json"
RECORD_PROPERTY = "harness-record"  # the user property an item's packed record travels in, to the controller

_CONFIG = pytest.StashKey["Config"]()
_SETTINGS = pytest.StashKey[dict[str, "Resolved"]]()
PLUGIN_DEFAULTS = {"jobs": 1}  # built-in defaults of the plugin's own: xdist's -n runs items side by side
_NAMED = pytest.StashKey[set[Path]]()
_SESSION_DIR = pytest.StashKey[Path]()
_WRITER = pytest.StashKey["RecordWriter"]()
_MERGED = pytest.StashKey[list[tuple[Path, "RunResult"]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "concurrency regression harness (scenarios named on the command line)")
    group.addoption(
        "--harness-config",
        type=Path,
        default=None,
        metavar="PATH",
        help="the harness configuration with the variants to run (default: harness.toml or [tool.harness] in "
        "pyproject.toml in the rootdir, else the tutorial's builds)",
    )
    add_options(group, "run", plugin=True)  # every run setting the plugin takes: --harness-trials, ...


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_NAMED] = set()
    config.stash[_MERGED] = []
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        return  # testpaths or the current folder: the user named no scenario
    here = config.invocation_params.dir
    named = None
    for position, arg in enumerate(config.args):
        path = here / arg.split("::")[0]
        if not path.exists():
            named = named if named is not None else _harness_config(config).scenario_files()
            if arg in named:
                path = named[arg]
                config.args[position] = str(path)
        if path.suffix == ".toml":
            config.stash[_NAMED].add(path.resolve())
    if config.stash[_NAMED] and not hasattr(config, "workerinput") and not config.option.collectonly:
        from harness.files import make_run_dir

        _refuse_what_xdist_cannot_rewrite(config)
        # The controller: a worker has no use for --harness-out, nor is it told the session's folder.
        session_dir = make_run_dir(Path(_settings(config).out), "pytest").resolve()
        config.stash[_SESSION_DIR] = session_dir
        config.stash[_WRITER] = RecordWriter(session_dir)
        config.pluginmanager.register(config.stash[_WRITER], "harness-records")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``--dist load`` (``-n``'s) or ``loadgroup``, each scenario's items go to one worker together."""
    if config.getoption("dist") not in ("load", "loadgroup") or not config.stash[_NAMED]:
        return None  # xdist's own: loadscope and loadfile keep a scenario file's items together too
    from harness.scheduling import ScenarioScheduling

    return ScenarioScheduling(config, log)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix != ".toml" or file_path.resolve() not in parent.config.stash[_NAMED]:
        return None
    if file_path.is_relative_to(parent.config.rootpath):
        return ScenarioFile.from_parent(parent, path=file_path)
    # A built-in or a file outside the rootdir: its name alone, not "::burst[patched]".
    return ScenarioFile.from_parent(parent, path=file_path, nodeid=file_path.name)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    session_dir = config.stash.get(_SESSION_DIR, None)  # the controller's alone: it merges, once every item is in
    if session_dir is not None:
        with _a_failed_write_ends_the_session():
            config.stash[_MERGED].extend(merge_session(session_dir, list(_harness_config(config).variants)))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    merged = config.stash.get(_MERGED, [])
    if not merged:
        return
    from harness.reports import INDEX_FILE, REPORT_FILE
    from harness.terminal import printable

    terminalreporter.section("harness")
    for path, result in merged:
        terminalreporter.write_line(f"{result.scenario.name}: {path}")
        for verdict in result.verdicts:
            terminalreporter.write_line(f"  {verdict.kind:<10} {printable(verdict.reason)}")
        terminalreporter.write_line(f"  report: {path.with_name(REPORT_FILE)}")
    terminalreporter.write_line(f"every scenario of this session: {merged[0][0].parent.parent / INDEX_FILE}")


class ScenarioFile(pytest.File):
    """A scenario TOML file: one item per variant."""

    def collect(self) -> list[pytest.Item]:
        from harness.errors import UsageError

        harness_config = _harness_config(self.config)
        try:
            scenario = harness_config.scenario(str(self.path))
        except UsageError as exc:
            raise self.CollectError(exc.message) from None
        return [
            ScenarioItem.from_parent(self, name=f"{scenario.name}[{variant.name}]", scenario=scenario, variant=variant)
            for variant in harness_config.get_variants(database=_settings(self.config).database)
        ]


class ScenarioFailed(Exception):
    """A variant did not meet its expectation; the message is the verdict."""


class ScenarioItem(pytest.Item):
    """One variant of one scenario: its trials, its verdict."""

    def __init__(self, *, scenario: Scenario, variant: Variant, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.variant = variant

    def runtest(self) -> None:
        import tempfile

        from harness.pipeline import execute
        from harness.plan import build_plan

        # On this machine, and gone once the record is packed: nothing of it is needed afterwards.
        with tempfile.TemporaryDirectory(prefix="harness-item-", ignore_cleanup_errors=True) as folder:
            plan = build_plan(
                _harness_config(self.config),
                _resolved(self.config),
                variants=[self.variant.name],
                scenario=self.scenario,
                run_dir=Path(folder),
            )
            try:
                result = execute(plan)
            except BaseException as exc:
                self._attach_record(plan.results_path, interrupted=isinstance(exc, KeyboardInterrupt))
                raise
            self._attach_record(plan.results_path)
        [verdict] = result.verdicts
        self.user_properties.append(("verdict", f"{verdict.kind}: {verdict.reason}"))
        if verdict.kind != "met":
            replayable = any(searched.steps for searched in result.explore)
            results = Path(self.scenario.name, self.variant.name, MERGED_FILE)
            raise ScenarioFailed(_failure_message(verdict, results, replayable=replayable))

    def teardown(self) -> None:
        # The record went with the call's report; the teardown's (junit's properties) keeps the verdict only.
        self.user_properties[:] = [prop for prop in self.user_properties if prop[0] != RECORD_PROPERTY]

    def _attach_record(self, results: Path, *, interrupted: bool = False) -> None:
        """Put the run's record, as far as it got, into the item's report: the controller writes it.

        A Ctrl-C leaves no report to carry it; then, if this process is the controller (no
        xdist), it is written at once, as an interrupted run's record always is.
        """
        from harness.results import pack_record

        if not results.exists():  # the run stopped before it had a record
            return
        record = pack_record(results)
        self.user_properties.append((RECORD_PROPERTY, record))
        if interrupted and _WRITER in self.config.stash:
            self.config.stash[_WRITER].write(record)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        from harness.errors import HarnessError
        from harness.terminal import printable

        if isinstance(excinfo.value, ScenarioFailed):
            return printable(str(excinfo.value))
        if isinstance(excinfo.value, HarnessError):  # a build that cannot be served: its message, not a traceback
            return f"harness: error: {printable(excinfo.value.message)}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


class RecordWriter:
    """The controller's end of the channel: each item's record, out of its report and into the session's folder.

    A plugin of the controller alone; its hook sees every report, a worker's as xdist passes
    it on or, without xdist, this process's own.
    """

    def __init__(self, session_dir: Path) -> None:
        self.session_dir = session_dir
        self._written: dict[str, Path] = {}  # an item's node id: where its record was written

    def write(self, record: str) -> Path:
        """Write a packed record as ``<scenario>/<variant>/results.json`` and return that path."""
        from harness.results import unpack_record, write_results

        result = unpack_record(record)
        path = self.session_dir / result.scenario.name / result.variants[0] / MERGED_FILE
        with _a_failed_write_ends_the_session():
            with writing(path.parent):
                path.parent.mkdir(parents=True, exist_ok=True)
            write_results(result, path)
        return path

    @pytest.hookimpl(tryfirst=True)  # before junitxml, the terminal and any other plugin read the report
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        records = [value for name, value in report.user_properties if name == RECORD_PROPERTY]
        if records:
            report.user_properties = [prop for prop in report.user_properties if prop[0] != RECORD_PROPERTY]
            path = self._written[report.nodeid] = self.write(str(records[-1]))
            if isinstance(report.longrepr, str):  # the verdict in words: the results as the worker could not name them
                relative = path.relative_to(self.session_dir)
                report.longrepr = report.longrepr.replace(f"results: {relative}", f"results: {path}").replace(
                    f"harness replay {relative.parent}", f"harness replay {path.parent}"
                )
        if report.nodeid in self._written:
            report.user_properties.append(("results", str(self._written[report.nodeid])))


@contextlib.contextmanager
def _a_failed_write_ends_the_session() -> Iterator[None]:
    """A write of the controller's that fails (a full disk) ends the session in harness's one line, not a traceback."""
    from harness.errors import WriteError

    try:
        yield
    except WriteError as exc:
        pytest.exit(f"harness: error: {exc.message}", returncode=pytest.ExitCode.INTERNAL_ERROR)


def merge_session(session_dir: Path, order: Sequence[str] = ()) -> list[tuple[Path, RunResult]]:
    """Merge each scenario's item runs under ``session_dir`` into one results file; return each with its path.

    Variants come in ``order`` (the configuration's), others after them.
    """
    from harness.reports import REPORT_FILE, write_index, write_report
    from harness.results import read_results, write_results

    merged = []
    for scenario_dir in sorted(p for p in session_dir.iterdir() if p.is_dir()):
        parts = [read_results(path) for path in sorted(scenario_dir.glob(f"*/{MERGED_FILE}"))]
        parts.sort(key=lambda part: order.index(part.variants[0]) if part.variants[0] in order else len(order))
        if parts:
            path = scenario_dir / MERGED_FILE
            result = merge_results(parts)
            write_results(result, path)
            write_report(result, path.with_name(REPORT_FILE))
            merged.append((path, result))
    if merged:
        write_index(session_dir)  # once: it reads every scenario's results file again
    return merged


def merge_results(parts: list[RunResult]) -> RunResult:
    """One result of a scenario's single-variant runs, in the parts' order: every trial, verdicts judged together."""
    from harness.verdict import judged_run

    expected = {verdict.variant: verdict.expected for part in parts for verdict in part.verdicts}
    variants = dict.fromkeys(name for part in parts for name in part.variants)
    start = min(datetime.fromisoformat(part.started_at) for part in parts)
    end = max(datetime.fromisoformat(part.started_at).timestamp() + part.duration for part in parts)
    return judged_run(
        parts[0].scenario,
        {name: expected[name] for name in variants},
        [t for part in parts for t in part.trials],
        confidence=parts[0].confidence,  # the session's: every item ran with it
        started_at=start.isoformat(timespec="milliseconds"),
        duration=round(end - start.timestamp(), 3),
        complete=all(part.complete for part in parts),
        environment=parts[0].environment,
        trace=all(part.trace for part in parts),
        databases={name: database for part in parts for name, database in part.databases.items()},
        database_server=next((part.database_server for part in parts if part.database_server), None),
        hosts={name: where for part in parts for name in part.variants if (where := _where(part, name))},
        explore=[searched for part in parts for searched in part.explore],
        interpreters={name: record for part in parts for name, record in part.interpreters.items()},
    )


def _where(part: RunResult, variant: str) -> str | None:
    """Where a part's variant ran: its host and xdist worker, ``ci-7 (gw1)``; None if its record does not say."""
    if variant in part.hosts:
        return part.hosts[variant]
    host = part.environment.get("host")
    worker = part.environment.get("worker")
    return f"{host} ({worker})" if host and worker else host


def _failure_message(verdict: Verdict, results: Path, *, replayable: bool = False) -> str:
    expected = {"fails": "expected to fail", "clean": "expected clean"}[verdict.expected]
    message = f"{verdict.kind}: {expected}, observed {verdict.observed}\n{verdict.reason}\nresults: {results}"
    return message + (f"\nreplay: harness replay {results.parent}" if replayable else "")


def _refuse_what_xdist_cannot_rewrite(config: pytest.Config) -> None:
    """A usage error where xdist would stop with an INTERNALERROR, sending arguments to workers elsewhere.

    For a gateway with ``chdir`` or one not started by popen (``ssh=``, ``socket=``), xdist
    makes each argument that names an existing path relative to its rsync roots, and cannot
    for one outside them or a relative one (xdist's make_reltoroot). The session's folder
    always exists by then: the controller makes it before the workers start.
    """
    if not config.pluginmanager.has_plugin("xdist") or config.getoption("dist") == "no":
        return
    import execnet
    from xdist.workermanage import parse_tx_spec_config

    if all(spec.popen and not spec.chdir for spec in map(execnet.XSpec, parse_tx_spec_config(config))):
        return  # arguments go to the workers as they are
    for option, metavar in (("--harness-out", "DIR"), ("--harness-config", "PATH")):
        if option in config.invocation_params.args:
            raise pytest.UsageError(
                f"{option}: for a worker in a folder or on a machine of its own, xdist rewrites an argument that "
                f"names an existing path, and stops when it cannot; write it as one argument: {option}={metavar}"
            )
    roots = [Path(root).resolve() for root in (*config.getoption("rsyncdir"), *config.getini("rsyncdirs"))]
    for arg in config.invocation_params.args:
        path = Path(arg.split("::")[0])
        if path.suffix == ".toml" and path.exists() and not any(path.is_relative_to(root) for root in roots):
            raise pytest.UsageError(
                f"{arg}: for a worker in a folder or on a machine of its own, xdist sends a file named on the command "
                "line relative to a folder it copies there: name the scenario file by its absolute path inside a "
                "folder given as --rsyncdir=DIR (one argument), or the scenario by name"
            )


def _settings(config: pytest.Config) -> RunSettings:
    from harness.settings import run_settings

    return run_settings(_resolved(config))


def _resolved(config: pytest.Config) -> dict[str, Resolved]:
    """The run settings of this session, as a run takes them: the options, else HARNESS_*, else the configuration's."""
    if _SETTINGS not in config.stash:
        from harness.errors import UsageError
        from harness.settings import resolve, specs

        options = {name: config.getoption(f"harness_{name}") for name, spec in specs().items() if spec.plugin}
        try:
            config.stash[_SETTINGS] = resolve(options, _harness_config(config), builtin=PLUGIN_DEFAULTS, taken=options)
        except UsageError as exc:
            raise pytest.UsageError(f"harness: {exc.message}") from None
    return config.stash[_SETTINGS]


def _harness_config(config: pytest.Config) -> Config:
    """The harness configuration of this session, loaded once; a bad one stops pytest with its message."""
    if _CONFIG not in config.stash:
        from harness.config import load_config
        from harness.errors import UsageError

        try:
            config.stash[_CONFIG] = load_config(config.getoption("harness_config"), folder=config.rootpath)
        except UsageError as exc:
            raise pytest.UsageError(f"harness: {exc.message}") from None
    return config.stash[_CONFIG]
