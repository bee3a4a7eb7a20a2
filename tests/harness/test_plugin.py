"""The pytest plugin, run by pytester as a user runs it: ids, pass and fail, merged results."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from harness.config import builtin_config
from harness.errors import ExitCode
from harness.plan import RunPlan
from harness.plugin import merge_results
from harness.results import Outcome, RunResult, read_results, write_results
from harness.scenario import load_scenario
from harness.verdict import judge
from tests.harness import hostile_app, runs
from tests.harness.factories import trial

BUILDS = ("unpatched", "patched", "recommended")  # the built-in configuration's, in its order

BURST = """
name = "{name}"
trials = {trials}
time_scale = 0.05
[seed]
[schedule]
kind = "burst"
requests = 100
"""


def test_builtin_names_and_files_become_one_item_per_variant(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", mine=BURST.format(name="my-burst", trials=1))
    result = pytester.runpytest("--collect-only", "-q", "burst", "tutorial-tabs", "mine.toml")
    result.stdout.fnmatch_lines(
        [
            "burst.toml::burst[[]unpatched]",
            "burst.toml::burst[[]patched]",
            "burst.toml::burst[[]recommended]",
            "tutorial-tabs.toml::tutorial-tabs[[]unpatched]",
            "tutorial-tabs.toml::tutorial-tabs[[]patched]",
            "tutorial-tabs.toml::tutorial-tabs[[]recommended]",
            "mine.toml::my-burst[[]unpatched]",
            "mine.toml::my-burst[[]patched]",
            "mine.toml::my-burst[[]recommended]",
            "9 tests collected*",
        ]
    )
    assert result.ret == pytest.ExitCode.OK
    assert not (pytester.path / "harness-out").exists()


@pytest.mark.slow
def test_a_project_run_by_testpaths_collects_no_scenario(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    pytester.mkdir("scenarios").joinpath("burst.toml").write_text(BURST.format(name="burst", trials=1))
    pytester.mkdir("tests").joinpath("test_own.py").write_text("def test_own():\n    pass\n")
    result = pytester.runpytest("-n", "2")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "harness-out").exists()
    # Nor does naming the project's folders pick up its TOML files: only named files count.
    result = pytester.runpytest("--collect-only", "-q", ".")
    result.stdout.fnmatch_lines(["tests/test_own.py::test_own", "1 test collected*"])


def test_harness_jobs_below_one_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--harness-jobs=0", "burst")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*argument --harness-jobs: expected a whole number from 1 to 64, got '0'"])


def test_an_invalid_scenario_file_is_a_collection_error_that_names_the_field(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", bad="[schedule]\nkind = 'burst'\nrequests = -3\n")
    result = pytester.runpytest("bad.toml")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*bad.toml:3: [[]schedule] requests: expected a whole number from 1 to 5,000, got -3*"]
    )
    assert "Traceback" not in result.stdout.str()


def test_runs_of_single_variants_merge_into_one_result_judged_together() -> None:
    scenario = load_scenario("burst")

    def part(variant: str, outcomes: list[Outcome], started_at: str, duration: float, worker: str) -> RunResult:
        trials = tuple(trial(variant, n, [outcome]) for n, outcome in enumerate(outcomes, 1))
        summaries, verdicts, code = judge({variant: scenario.expectation(builtin_config().variants[variant])}, trials)
        return RunResult(
            scenario=scenario,
            variants=(variant,),
            started_at=started_at,
            duration=duration,
            complete=True,
            environment={"python": "3.11.7", "host": "ci-7", "worker": worker},
            trials=trials,
            summaries=summaries,
            verdicts=verdicts,
            exit_code=code,
        )

    patched = part("patched", ["ok", "ok"], "2026-11-22T00:00:01.000+00:00", 3.0, "gw1")
    unpatched = part("unpatched", ["server-error", "ok"], "2026-11-22T00:00:00.000+00:00", 2.0, "gw0")
    legacy = {"executable": "/srv/legacy/bin/python", "stack": "legacy"}
    unpatched = replace(unpatched, interpreters={"unpatched": legacy})  # its own python =; patched on the harness's

    merged = merge_results([unpatched, patched])  # in the configuration's order

    assert merged.variants == ("unpatched", "patched")
    assert [(t.trial, t.variant) for t in merged.trials] == [
        (1, "unpatched"),
        (1, "patched"),
        (2, "unpatched"),
        (2, "patched"),
    ]
    assert (merged.started_at, merged.duration) == ("2026-11-22T00:00:00.000+00:00", 4.0)
    assert patched.verdicts[0].power is None  # alone, the clean run has nothing to be measured against
    power = merged.verdicts[1].power
    assert power is not None and (power.reference_rate.count, power.reference_rate.total) == (1, 2)
    assert power.at_estimate == pytest.approx(0.75)
    assert merged.exit_code is ExitCode.OK
    assert merged.hosts == {"unpatched": "ci-7 (gw0)", "patched": "ci-7 (gw1)"}
    assert merged.interpreters == {"unpatched": legacy}


@pytest.mark.e2e
@pytest.mark.slow
def test_scenarios_run_in_parallel_fail_by_expectation_and_merge_into_one_results_file(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".toml", good=BURST.format(name="good", trials=2))
    swapped = BURST.format(name="swapped", trials=1) + '[expect]\nunpatched = "clean"\npatched = "fails"\n'
    pytester.makefile(".toml", swapped=swapped)

    options = ("--junitxml=junit.xml", "--harness-out=out", "--harness-jobs=2")
    result = pytester.runpytest("-n", "2", "good.toml", "swapped.toml", *options)

    result.assert_outcomes(passed=4, failed=2)  # recommended is expected clean in both
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines_random(
        [
            "*regression: expected clean, observed fails",
            "unpatched was expected to be clean but * requests returned 5xx, in 1 of 1 trials (100%);"
            " most common: OperationalError: Connection already opened.*",
            "*silent: expected to fail, observed clean",
            "FAILED swapped.toml::swapped[[]unpatched] - regression*",
            "FAILED swapped.toml::swapped[[]patched] - silent*",
        ]
    )
    [session] = (pytester.path / "out").iterdir()
    good = read_results(session / "good" / "results.json")
    assert good.variants == ("unpatched", "patched", "recommended") and good.complete
    assert [(t.trial, t.variant) for t in good.trials] == [
        (1, "unpatched"),
        (1, "patched"),
        (1, "recommended"),
        (2, "unpatched"),
        (2, "patched"),
        (2, "recommended"),
    ]
    assert [v.kind for v in good.verdicts] == ["met", "met", "met"] and good.exit_code is ExitCode.OK
    for clean in good.verdicts[1:]:
        power = clean.power
        assert power is not None and power.reference == ("unpatched",) and power.trials == 2
    assert good.summaries[0].first_failed_trial == 1
    assert read_results(session / "good" / "unpatched" / "results.json").jobs == 2  # its 2 trials in one round
    assert read_results(session / "swapped" / "results.json").exit_code is ExitCode.REGRESSION
    result.stdout.fnmatch_lines(
        [f"good: {session / 'good' / 'results.json'}", "  met * patched was clean as expected*"]
    )

    cases = {case.get("name"): case for case in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")}
    assert set(cases) == {f"{name}[{variant}]" for name in ("good", "swapped") for variant in BUILDS}
    failure = cases["swapped[unpatched]"].find("failure")
    assert failure is not None and "Connection already opened." in failure.get("message", "")
    # The path the controller wrote the item's record to, which the worker never knew; the record itself is gone.
    item_results = session / "swapped" / "unpatched" / "results.json"
    assert failure.get("message", "").endswith(f"results: {item_results}")
    properties = {p.get("name"): p.get("value") for p in cases["swapped[unpatched]"].iter("property")}
    assert properties == {
        "verdict": f"regression: {read_results(item_results).verdicts[0].reason}",
        "results": str(item_results),
    }
    assert set(good.hosts) == set(BUILDS) and all(re.fullmatch(r".+ \(gw[01]\)", h) for h in good.hosts.values())
    swapped = read_results(session / "swapped" / "results.json")
    # Under -n, each scenario's builds ran on one worker, one after another: the same load for each.
    assert len(set(good.hosts.values())) == len(set(swapped.hosts.values())) == 1
    assert cases["good[patched]"].find("failure") is None
    assert cases["swapped[recommended]"].find("failure") is None


def test_an_item_stopped_by_ctrl_c_keeps_the_record_it_had_without_xdist(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut_short = (trial("unpatched", 1, ["server-error", "interrupted"]),)

    def interrupted(plan: RunPlan) -> RunResult:
        summaries, verdicts, code = judge({"unpatched": "fails"}, cut_short)
        ran = RunResult(
            scenario=plan.scenario,
            variants=("unpatched",),
            started_at="2026-11-22T00:00:00.000+00:00",
            duration=1.0,
            complete=False,
            environment={"host": "ci-7"},
            trials=cut_short,
            summaries=summaries,
            verdicts=verdicts,
            exit_code=code,
        )
        write_results(ran, plan.results_path)
        raise KeyboardInterrupt

    monkeypatch.setattr("harness.pipeline.execute", interrupted)
    options = ("-k", "unpatched", "--harness-out=out")
    result = pytester.runpytest("-p", "no:xdist", "burst", *options, no_reraise_ctrlc=True)

    assert result.ret == pytest.ExitCode.INTERRUPTED
    [session] = (pytester.path / "out").iterdir()
    assert read_results(session / "burst" / "unpatched" / "results.json").trials == cut_short
    merged = read_results(session / "burst" / "results.json")
    assert not merged.complete and merged.hosts == {"unpatched": "ci-7"}


@pytest.mark.e2e
def test_a_disk_that_fills_up_as_the_session_ends_ends_it_in_one_line_not_a_traceback(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".toml", full=BURST.format(name="full", trials=1))
    # The item's run done, the disk fills as the session merges its records: in pytest's own process,
    # no file grows past 20 KB from then on (a trial's line is 50 KB).
    pytester.makeconftest(
        "import resource, signal\nimport pytest\n\n"
        "@pytest.hookimpl(tryfirst=True)\ndef pytest_sessionfinish():\n"
        "    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))\n"
    )

    result = pytester.runpytest_subprocess("-p", "no:xdist", "full.toml::full[patched]", "--harness-out=out")

    output = "\n".join(result.outlines + result.errlines)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR, output
    assert "Traceback" not in output and "INTERNALERROR" not in output
    [session] = (pytester.path / "out").iterdir()
    assert f"harness: error: cannot write {session / 'full' / 'trials.jsonl'}: File too large" in output
    assert not list(pytester.path.rglob("*.partial"))
    assert read_results(session / "full" / "patched" / "results.json").trials  # the item's record, whole


def test_on_postgres_the_builds_that_name_it_are_collected_too(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--collect-only", "-q", "burst", "--harness-database", "postgres")
    result.stdout.fnmatch_lines(["burst.toml::burst[[]unpatched-pooled]", "burst.toml::burst[[]patched-pooled]"])
    assert "pooled" not in "".join(pytester.runpytest("--collect-only", "-q", "burst").outlines)


@pytest.mark.e2e
def test_an_item_on_postgres_runs_its_build_on_a_server_of_its_own(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", pooled=BURST.format(name="pooled", trials=1))
    options = ("--harness-out=out", "--harness-database=postgres", "-k", "unpatched-pooled")

    result = pytester.runpytest("pooled.toml", *options)

    result.assert_outcomes(passed=1, deselected=4)
    [session] = (pytester.path / "out").iterdir()
    merged = read_results(session / "pooled" / "results.json")
    assert merged.databases == {"unpatched-pooled": "postgres"} and merged.database_server
    [trial] = merged.trials
    assert trial.database == "postgres" and trial.peak_connections


def test_the_configurations_database_decides_which_builds_are_collected(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", harness='database = "postgres"\n[variants.main]\napp = "shop:app"\n'
                      '[variants.pooled]\napp = "shop:pooled"\ndatabase = "postgres"\n')  # fmt: skip
    pytester.makefile(".toml", mine=BURST.format(name="mine", trials=1))

    result = pytester.runpytest("--collect-only", "-q", "mine.toml")
    on_sqlite = pytester.runpytest("--collect-only", "-q", "mine.toml", "--harness-database", "sqlite")

    result.stdout.fnmatch_lines(["mine.toml::mine[[]main]", "mine.toml::mine[[]pooled]"])
    assert "pooled" not in "".join(on_sqlite.outlines)


@pytest.mark.e2e
def test_escape_sequences_in_an_apps_text_reach_pytests_output_written_out(pytester: pytest.Pytester) -> None:
    builds = {"broken": ("import", "fails"), "raises": ("request", "clean")}
    pytester.makefile(
        ".toml",
        harness="".join(
            f'[variants.{name}]\napp = "tests.harness.hostile_app:app"\napp_dir = "{runs.REPO}"\nexpect = "{expect}"\n'
            f'env = {{ HOSTILE_AT = "{at}", HOSTILE_MESSAGE = "escapes" }}\n'
            for name, (at, expect) in builds.items()
        ),
        hostile=hostile_app.SCENARIO,
    )

    result = pytester.runpytest(
        "hostile.toml", "--harness-config=harness.toml", "--harness-out=out", "--harness-trials=1"
    )

    result.assert_outcomes(failed=2)  # the build that does not import, and the regression of the one expected clean
    shown = result.stdout.str() + result.stderr.str()
    assert "\x1b" not in shown and "\x07" not in shown
    result.stdout.fnmatch_lines_random(
        [
            r"harness: error: variant 'broken': app 'tests.harness.hostile_app:app' did not load: RuntimeError: "
            r"\x1b[[]2J\x1b]0;pwned\x07 hidden\rshown \x9b31m",
            r"*most common: RuntimeError: \x1b[[]2J\x1b]0;pwned\x07 hidden\rshown \x9b31m*",
        ]
    )


@pytest.mark.e2e
def test_harness_explore_judges_each_item_by_its_search_and_a_failing_one_says_how_to_replay_it(
    pytester: pytest.Pytester,
) -> None:
    # unpatched declared clean: its item fails, and its message gives the replay command.
    pytester.makefile(
        ".toml",
        harness="\n".join(
            f'[variants.{name}]\napp = "harness.app_variants.{name}:app"\nexpect = "clean"\n'
            'env = { APP_VARIANTS_DATABASE = "{database_url}", APP_VARIANTS_TIME_SCALE = "{time_scale}" }'
            for name in ("unpatched", "patched")
        ),
    )
    pytester.makefile(".toml", mine=BURST.format(name="mine", trials=1) + "[explore]\nrequests = 2\nschedules = 20\n")

    result = pytester.runpytest("mine.toml", "--harness-explore", "--harness-out=out", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*regression: expected clean, observed fails*", "*replay: harness replay */out/*/mine/unpatched"]
    )
    [session] = (pytester.path / "out").iterdir()
    merged = read_results(session / "mine" / "results.json")
    assert [e.variant for e in merged.explore] == ["unpatched", "patched"]
    assert [v.kind for v in merged.verdicts] == ["regression", "met"]
    replayed = runs.harness(
        "replay",
        session / "mine" / "unpatched",
        "--config",
        pytester.path / "harness.toml",
        "--out",
        pytester.path / "replays",
    )
    assert replayed.returncode == ExitCode.OK, replayed.stdout + replayed.stderr
    assert "unpatched: reproduced: request B fails" in replayed.stdout
