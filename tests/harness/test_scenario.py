from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.config import builtin_config
from harness.errors import ScenarioError
from harness.scenario import HttpRequest, Scenario, Schedule, Seed, load_scenario, scenario_toml
from harness.summary import describe_seed

VALID = """
trials = 3
time_scale = 0.1
[schedule]
kind = "staggered"
requests = 4
interval = 1.0
"""


def write(tmp_path: Path, text: str, name: str = "mine.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("schedule", "offsets"),
    [
        (Schedule(kind="staggered", requests=4, interval=1.0), [0.0, 0.5, 1.0, 1.5]),
        (Schedule(kind="burst", requests=3, interval=9.0), [0.0, 0.0, 0.0]),
        (Schedule(kind="waves", requests=5, wave_size=2, interval=2.0), [0.0, 0.0, 1.0, 1.0, 2.0]),
    ],
)
def test_offsets_follow_the_schedule_kind_scaled_by_time_scale(schedule: Schedule, offsets: list[float]) -> None:
    assert schedule.offsets(0.5) == offsets


def test_a_user_file_loads_with_defaults_and_its_stem_as_name(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, VALID))
    assert scenario.name == "mine"
    assert scenario.trials == 3
    assert scenario.schedule.request.path == "/slowusers/"
    assert scenario.seed == ()  # no seed steps: nothing is sent before the schedule
    assert scenario.expectation(builtin_config().variants["unpatched"]) == "fails"
    assert scenario.expectation(builtin_config().variants["patched"]) == "clean"


def test_expectations_can_be_overridden(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, VALID + '[expect]\nunpatched = "clean"\n'))
    assert scenario.expectation(builtin_config().variants["unpatched"]) == "clean"


def test_expectations_on_postgres_override_the_others_for_a_build_that_runs_there(tmp_path: Path) -> None:
    text = VALID + '[expect]\nunpatched = "clean"\npostgres = "fails"\n[expect.postgres]\npatched = "fails"\n'
    with pytest.raises(ScenarioError):  # a build named postgres and the table at once: TOML refuses the key twice
        load_scenario(write(tmp_path, text))
    scenario = load_scenario(
        write(tmp_path, VALID + '[expect]\nunpatched = "clean"\n[expect.postgres]\npatched = "fails"\n')
    )
    variants = builtin_config().variants
    assert scenario.expectation(variants["patched"]) == "clean"
    assert scenario.expectation(variants["patched"], "postgres") == "fails"
    assert scenario.expectation(variants["unpatched"], "postgres") == "clean"  # [expect], as on SQLite
    assert Scenario.from_dict(scenario.to_dict()) == scenario
    again = load_scenario(write(tmp_path, scenario_toml(scenario), name="again.toml"))
    assert again.expect_on_postgres == {"patched": "fails"} and again.expect == {"unpatched": "clean"}
    named = load_scenario(write(tmp_path, VALID + '[expect]\npostgres = "fails"\n', name="named.toml"))
    assert named.expect == {"postgres": "fails"} and not named.expect_on_postgres  # a build named postgres
    with pytest.raises(ScenarioError, match=r"expect\.postgres"):
        load_scenario(write(tmp_path, VALID + '[expect.postgres]\npatched = "sometimes"\n', name="bad.toml"))


def test_burst_expects_the_patched_build_to_fail_on_postgresql_only() -> None:
    burst, patched = load_scenario("burst"), builtin_config().variants["patched"]
    assert (burst.expectation(patched), burst.expectation(patched, "postgres")) == ("clean", "fails")


def test_to_dict_and_from_dict_round_trip() -> None:
    scenario = load_scenario("waves")
    assert Scenario.from_dict(scenario.to_dict()) == scenario


def test_a_scenario_without_seed_seeds_nothing_and_an_empty_seed_table_is_the_tutorials(tmp_path: Path) -> None:
    unseeded = load_scenario(write(tmp_path, VALID))
    tutorial = load_scenario(write(tmp_path, VALID + "[seed]\n", name="tutorial.toml"))

    assert unseeded.seed == () and describe_seed(unseeded) == "nothing"
    assert tutorial.seed == Seed(users=2, items_per_user=2)
    assert unseeded.digest() != replace(tutorial, name=unseeded.name).digest()  # they measure different things
    for scenario in (unseeded, tutorial):
        again = load_scenario(write(tmp_path, scenario_toml(scenario), name="again.toml"))
        assert again == scenario and again.digest() == scenario.digest()


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("trials = 3\n", None, "schedule: missing"),
        (VALID + "trails = 2\n", 8, "trails: unknown key"),  # under [schedule], where it lands in TOML
        ("trails = 2\n" + VALID, 1, "trails: unknown key"),
        (VALID + "[extra]\nx = 1\n", 8, "extra: unknown key"),
        ('host = "0.0.0.0"\n' + VALID, 1, "host: unknown key"),  # servers listen on loopback; see --host
        (VALID.replace("trials = 3", "trials = 0"), 2, "trials: expected a whole number from 1 to 1,000, got 0"),
        (VALID.replace("trials = 3", "trials = -2"), 2, "got -2"),
        (VALID.replace("trials = 3", 'trials = "3"'), 2, "trials: expected a whole number from 1 to 1,000, got '3'"),
        (VALID.replace("trials = 3", "trials = true"), 2, "got True"),
        (
            VALID.replace("time_scale = 0.1", "time_scale = 0"),
            3,
            "time_scale: expected a number above 0 and at most 100",
        ),
        (
            VALID.replace("time_scale = 0.1", "time_scale = nan"),
            3,
            "time_scale: expected a number above 0 and at most 100",
        ),
        (
            VALID.replace("time_scale = 0.1", "time_scale = inf"),
            3,
            "time_scale: expected a number above 0 and at most 100, got inf",
        ),
        (
            VALID.replace("time_scale = 0.1", "time_scale = 1e300"),
            3,
            "time_scale: expected a number above 0 and at most 100",
        ),
        ("request_timeout = nan\n" + VALID, 1, "request_timeout: expected a number above 0 and at most 3,600, got nan"),
        (
            VALID.replace("interval = 1.0", "interval = nan"),
            7,
            "[schedule] interval: expected a number from 0 to 3,600",
        ),
        (
            VALID.replace("interval = 1.0", "interval = -inf"),
            7,
            "[schedule] interval: expected a number from 0 to 3,600",
        ),
        (
            VALID.replace("interval = 1.0", "interval = 1e9"),
            7,
            "[schedule] interval: expected a number from 0 to 3,600",
        ),
        (VALID.replace("trials = 3", "trials = 1001"), 2, "trials: expected a whole number from 1 to 1,000, got 1001"),
        (
            VALID.replace("requests = 4", "requests = 1_000_000_000"),
            6,
            "requests: expected a whole number from 1 to 5,000",
        ),
        (
            VALID.replace('"staggered"', '"waves"').replace("interval", "wave_size = 5001\ninterval"),
            7,
            "[schedule] wave_size: expected a whole number from 1 to 5,000, got 5001",
        ),
        (VALID + "[seed]\nusers = 1001\n", 9, "[seed] users: expected a whole number from 0 to 1,000, got 1001"),
        (VALID + "[seed]\nitems_per_user = 101\n", 9, "[seed] items_per_user: expected a whole number from 0 to 100"),
        (
            VALID + '[[seed]]\npath = "/a"\nrepeat = 10001\n',
            10,
            "[seed] repeat: expected a whole number from 1 to 10,000",
        ),
        (VALID + '[[seed]]\npath = "/a"\njson = { x = [1, nan] }\n', 10, "[seed] json: JSON has no nan"),
        (
            VALID + '[schedule.request]\npath = "/a"\njson = { x = -inf }\n',
            10,
            "[schedule.request] json: JSON has no -inf",
        ),
        (VALID.replace('"staggered"', '"random"'), 5, "[schedule] kind: expected one of"),
        (VALID.replace("requests = 4", "requests = 4.5"), 6, "[schedule] requests"),
        (
            VALID.replace("requests = 4", "requests = 0"),
            6,
            "[schedule] requests: expected a whole number from 1 to 5,000, got 0",
        ),
        (VALID + "[seed]\nusers = -1\n", 9, "[seed] users: expected a whole number from 0 to 1,000, got -1"),
        (VALID + '[expect]\npatched = "broken"\n', 9, "[expect] patched: expected one of 'fails', 'clean'"),
        ("seed = 3\n" + VALID, 1, "seed: expected a table"),
        (VALID.replace("interval = 1.0", 'interval = 1.0\npath = "slowusers"'), 8, "must start with '/'"),
        (VALID.replace('kind = "staggered"', 'kind = "waves"'), 4, "[schedule] wave_size: missing"),
        ('name = "../../elsewhere"\n' + VALID, 1, "name: names the run's folder"),
        ('name = "café"\n' + VALID, 1, "name: names the run's folder: ASCII letters"),
        (VALID + '[schedule.request]\npath = "/"\nheaders = { x-who = "café" }\n', 10, "'café' cannot go in a header"),
        (VALID + '[schedule.request]\npath = "/"\nheaders = { "x é" = "1" }\n', 10, "'x é' cannot name a header"),
        (VALID + '[schedule.request]\npath = "/"\nheaders = { x = "a\\nb" }\n', 10, "cannot go in a header"),
        ('schedule = { kind = "burst", requests = -1 }\n', None, "[schedule] requests: expected a whole number"),
        (
            VALID + '[[seed]]\nmethod = "POST"\npath = "/token"\njson = { a = "1" }\nform = { b = "2" }\n',
            12,
            "[seed] form: a request has one body: give json or form, not both",
        ),
        (VALID + '[[seed]]\npath = "/a"\nform = { n = 1 }\n', None, "[seed.form] n: expected a string, got 1"),
        (VALID + '[[seed]]\npath = "/a"\nsave = { t = "a..b" }\n', 10, "t = 'a..b' is not a dotted path"),
        (VALID + '[[seed]]\npath = "/a"\nsave = { t = ".x" }\n', 10, "t = '.x' is not a dotted path"),
        (VALID + '[[seed]]\npath = "/a"\nsave = { t = "a[0]" }\n', 10, "t = 'a[0]' is not a dotted path"),
        (VALID + '[[seed]]\npath = "/a"\nsave = { t = "" }\n', 10, "t = '' is not a dotted path"),
        (VALID + '[[seed]]\npath = "/a"\nsave = { "a-b" = "x" }\n', 10, "'a-b' cannot name a placeholder"),
        (VALID + '[[seed]]\npath = "/a"\nsave = { i = "x" }\n', 10, "'i' cannot name a placeholder"),
        (VALID + '[[seed]]\npath = "/a"\nsave = { t = 3 }\n', None, "[seed.save] t: expected a string, got 3"),
        (
            VALID + '[[seed]]\npath = "/a"\nheaders = { A = "Bearer {token}" }\n',
            10,
            "[seed] headers: unknown placeholder {token} in 'Bearer {token}'; known: {i}, {trial}",
        ),
        (  # the step that saves it comes later: the value does not exist yet
            VALID + '[[seed]]\npath = "/me/{token}"\n[[seed]]\npath = "/t"\nsave = { token = "t" }\n',
            9,
            "[seed] path: {token} in '/me/{token}' is used before it is saved: [[seed]] step 2 saves it",
        ),
        (  # nor by the step that saves it: its answer comes after it is sent
            VALID + '[[seed]]\npath = "/t"\nform = { t = "{token}" }\nsave = { token = "t" }\n',
            10,
            "[seed] form: {token} in '{token}' is used before it is saved: [[seed]] step 1 saves it",
        ),
        (
            VALID + '[[seed]]\npath = "/t"\nsave = { t = "t" }\n[[seed]]\npath = "/u"\nsave = { t = "u" }\n',
            13,
            "[seed] save: {t} is saved by an earlier step already",
        ),
        (
            VALID + '[[seed]]\npath = "/t"\nsave = { t = "t" }\n[schedule.request]\npath = "/{t:d}"\n',
            12,
            "[schedule.request] path: Unknown format code 'd' for object of type 'str' in '/{t:d}'",
        ),
        (VALID + '[schedule.request]\npath = "/{i!x}"\n', 9, "[schedule.request] path: Unknown conversion"),
        (
            VALID + '[schedule.request]\npath = "/"\nsave = { t = "t" }\n',
            10,
            "[schedule.request] save: unknown key",
        ),
        (
            VALID.replace('kind = "staggered"', 'kind = "staggered"\npath = "/{token}"'),
            6,
            "unknown placeholder {token}",
        ),
        ("sessions = 0\n" + VALID, 1, "sessions: expected a whole number from 1 to 10,000, got 0"),
    ],
)
def test_invalid_files_name_the_file_the_line_and_the_field(
    tmp_path: Path, text: str, line: int | None, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.message.startswith(f"{path}:{line}: " if line else f"{path}: ")
    assert message in caught.value.message


FLOW = """
sessions = 2
[[seed]]
method = "POST"
path = "/users/"
json = { username = "user{i}", tags = ["{trial}"] }
repeat = 2
save = { name = "username", user_id = "items.0.id" }

[[seed]]
method = "POST"
path = "/token"
form = { username = "{name}", password = "pw{i}" }
save = { token = "access_token" }

[schedule]
kind = "burst"
requests = 4

[schedule.request]
path = "/users/{user_id}"
headers = { Authorization = "Bearer {token}" }
"""


def test_a_flow_saves_values_that_later_steps_and_the_schedule_use(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, FLOW))

    register, login = scenario.seed
    assert isinstance(register, HttpRequest) and isinstance(login, HttpRequest)
    assert register.save == {"name": "username", "user_id": "items.0.id"} and login.form is not None
    assert scenario.sessions == 2
    assert login.render({"i": 1, "trial": 3, "name": "user1"}).form == {"username": "user1", "password": "pw1"}
    rendered = scenario.schedule.request.render({"i": 0, "trial": 1, "name": "x", "user_id": "7", "token": "abc"})
    assert (rendered.path, rendered.headers) == ("/users/7", {"Authorization": "Bearer abc"})
    assert Scenario.from_dict(scenario.to_dict()) == scenario
    assert load_scenario(write(tmp_path, scenario_toml(scenario), "again.toml")) == scenario


def test_a_scenario_without_flows_keeps_its_digest() -> None:
    # sessions, form and save are left out of the definition at their defaults: runs from before them compare.
    document = load_scenario("burst").to_dict()
    assert "sessions" not in document and not {"form", "save"} & set(document["schedule"]["request"])


def test_invalid_toml_reports_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "trials = 3\n[schedule\n")
    with pytest.raises(ScenarioError, match=r"mine\.toml:2: invalid TOML: .*line 2"):
        load_scenario(path)


def test_unknown_name_lists_the_builtins() -> None:
    with pytest.raises(ScenarioError, match=r"unknown scenario 'bursty'.*burst, tutorial-tabs, waves"):
        load_scenario("bursty")


def test_missing_or_unreadable_files_are_scenario_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read scenario file"):
        load_scenario(str(tmp_path / "absent.toml"))
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScenarioError, match="not a UTF-8 text file"):
        load_scenario(str(binary))


def test_builtins_load_by_name_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert os.getcwd() == str(tmp_path)
    assert load_scenario("burst").schedule.kind == "burst"


# Values of every TOML type, valid and not, for any field.
_ANY = st.recursive(
    st.one_of(
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(),
        st.text(max_size=12),
        st.sampled_from(["burst", "waves", "staggered", "fails", "clean", "/slowusers/", "slowusers"]),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _field(good: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """Mostly a good value, one time in eight anything at all: enough documents stay valid."""
    return st.integers(0, 7).flatmap(lambda roll: _ANY if roll == 0 else good)


# Documents near a valid scenario: every field may be missing, right, or anything at all.
_DOCUMENTS = st.fixed_dictionaries(
    {
        "schedule": _field(
            st.fixed_dictionaries(
                {
                    "kind": _field(st.sampled_from(["staggered", "burst", "waves"])),
                    "requests": _field(st.integers(0, 50)),
                },
                optional={
                    "interval": _field(st.floats(0, 2)),
                    "wave_size": _field(st.integers(1, 10)),
                    "path": _field(st.sampled_from(["/slowusers/", "/users/", "users"])),
                },
            )
        ),
    },
    optional={
        "name": _field(st.text(max_size=12)),
        "description": _field(st.text(max_size=12)),
        "trials": _field(st.integers(0, 5)),
        "time_scale": _field(st.floats(0, 2)),
        "request_timeout": _field(st.floats(0, 30)),
        "seed": _field(
            st.dictionaries(st.sampled_from(["users", "items_per_user", "admins"]), _field(st.integers(-1, 3)))
        ),
        "expect": _field(
            st.dictionaries(st.sampled_from(["unpatched", "patched", "sideways"]), _field(st.just("fails")))
        ),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=_DOCUMENTS)
@pytest.mark.slow
def test_fuzzed_documents_load_as_valid_scenarios_or_fail_with_a_scenario_error(
    tmp_path: Path, document: dict[str, object]
) -> None:
    _assert_loads_or_scenario_error(write(tmp_path, _to_toml(document)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from(list("[]{}=\"'.,=#\n \t-_01239aekqrstux")) | st.characters(), max_size=80))
def test_fuzzed_text_loads_as_a_valid_scenario_or_fails_with_a_scenario_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _assert_loads_or_scenario_error(str(path))


def _assert_loads_or_scenario_error(path: str) -> None:
    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        assert exc.message.startswith(path) and "\n" not in exc.message
        return
    assert scenario.trials >= 1 and scenario.schedule.requests >= 1 and scenario.time_scale > 0
    assert scenario.request_timeout > 0 and scenario.schedule.request.path.startswith("/")
    assert Scenario.from_dict(scenario.to_dict()) == scenario


def _to_toml(document: dict[str, object]) -> str:
    """TOML for a document: plain keys first, then one [table] per table."""
    plain = [f"{_key(k)} = {_value(v)}" for k, v in document.items() if not isinstance(v, dict)]
    tables = [
        "\n".join([f"[{_key(k)}]", *(f"{_key(kk)} = {_value(vv)}" for kk, vv in v.items())])
        for k, v in document.items()
        if isinstance(v, dict)
    ]
    return "\n".join([*plain, *tables]) + "\n"


def _key(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # nan, inf and -inf are TOML too
    if isinstance(value, list):
        return "[" + ", ".join(map(_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False)  # JSON's \\u escapes of surrogate pairs are not TOML
