"""Flows: values saved from a seed step's answer, form posts and cookies, from the parts to a user's own project.

The end-to-end tests copy tests/harness/login_app.py (a correct app behind a form login and a cookie session)
into a project folder of their own and run the installed harness there, as a user does.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import httpx
import pytest

from harness.errors import ExitCode, SeedError, TrialError
from harness.flow import Flow, pick
from harness.results import TrialResult, read_results
from harness.runner import Recorder, run_trial
from harness.scenario import HttpRequest, Scenario, Schedule
from tests.harness.runs import INSTALLED_HARNESS

LOGIN_APP = Path(__file__).parent / "login_app.py"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("access_token", "abc"),
        ("items.0.id", 7),
        ("items.1.tags.0", "x"),
        ("items.2.id", None),  # no such item
        ("items.x", None),  # a list is indexed by numbers only
        ("access_token.more", None),
        ("nothing", None),
    ],
)
def test_pick_follows_a_dotted_path_through_tables_and_lists(path: str, value: object) -> None:
    document = {"access_token": "abc", "items": [{"id": 7}, {"id": 8, "tags": ["x"]}]}
    assert pick(document, path) == value


SAVING = HttpRequest(method="POST", path="/token", save={"token": "access_token", "id": "user.id"}, repeat=2)


def test_a_step_saves_a_value_per_repetition_and_request_i_gets_repetition_i_mod_repeat() -> None:
    flow = Flow()
    flow.keep(SAVING, b'{"access_token": "a", "user": {"id": 1}}', where="step")
    flow.keep(SAVING, b'{"access_token": "b", "user": {"id": 2.5}}', where="step")

    use = HttpRequest(path="/users/{id}", headers={"Authorization": "Bearer {token}"}, form={"who": "{id}-{i}"})
    sent = [flow.request(use, i=i, trial=1, where="[schedule.request]") for i in range(3)]

    assert [(r.path, r.headers["Authorization"], r.form) for r in sent] == [
        ("/users/1", "Bearer a", {"who": "1-0"}),
        ("/users/2.5", "Bearer b", {"who": "2.5-1"}),
        ("/users/1", "Bearer a", {"who": "1-2"}),
    ]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>", "did not answer JSON, so {token}, {id} cannot be saved"),
        (b'{"access_token": "a"}', "answered no value at 'user.id' to save as {id} (found nothing)"),
        (
            b'{"access_token": "a", "user": {"id": null}}',
            "answered no value at 'user.id' to save as {id} (found nothing)",
        ),
        (
            b'{"access_token": ["a"], "user": {"id": 1}}',
            "answered no value at 'access_token' to save as {token} (found a list)",
        ),
        (
            b'{"access_token": {}, "user": {"id": 1}}',
            "answered no value at 'access_token' to save as {token} (found a table)",
        ),
    ],
)
def test_a_value_the_answer_does_not_have_stops_the_trial_naming_the_step_and_the_path(
    body: bytes, problem: str
) -> None:
    with pytest.raises(SeedError) as caught:
        Flow().keep(SAVING, body, where="[[seed]] step 2 (POST /token)")
    assert caught.value.message == f"seeding failed: [[seed]] step 2 (POST /token) {problem}"


@pytest.mark.parametrize(
    ("saved", "problem"),
    [
        ("café", "header Authorization is not printable ASCII"),
        ("a\nb", "header Authorization is not printable ASCII"),
    ],
)
def test_a_saved_value_a_request_cannot_carry_stops_the_trial_without_showing_it(saved: str, problem: str) -> None:
    flow = Flow()
    flow.saved["token"] = [saved]
    with pytest.raises(TrialError) as caught:
        flow.request(HttpRequest(headers={"Authorization": "{token}"}), i=0, trial=1, where="[schedule.request]")
    assert caught.value.message.startswith(f"[schedule.request]: {problem}") and saved not in caught.value.message


def test_a_saved_value_that_breaks_the_path_stops_the_trial() -> None:
    flow = Flow()
    flow.saved["id"] = ["1\x00"]
    with pytest.raises(TrialError, match=r"^\[schedule.request\]: its path is not a URL"):
        flow.request(HttpRequest(path="/items/{id}"), i=0, trial=1, where="[schedule.request]")


def test_each_session_has_its_own_jar_and_each_flow_its_own_sessions() -> None:
    flow = Flow(sessions=2)
    flow.jar(0).set("session", "zero")
    assert flow.jar(2)["session"] == "zero" and "session" not in flow.jar(1)
    assert "session" not in Flow(sessions=2).jar(0)


@pytest.mark.anyio
async def test_a_trial_posts_the_form_carries_the_token_and_the_cookie_and_the_next_trial_starts_without_them() -> None:
    seen: list[tuple[str, str, str | None, str | None]] = []

    def app(request: httpx.Request) -> httpx.Response:
        seen.append(
            (
                request.url.path,
                request.content.decode(),
                request.headers.get("authorization"),
                request.headers.get("cookie"),
            )
        )
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "t1"}, headers={"set-cookie": "session=s1; Path=/"})
        return httpx.Response(200, stream=httpx.ByteStream(b""))  # streamed, as a server's answer is

    scenario = Scenario(
        name="flow",
        description="",
        seed=(HttpRequest(method="POST", path="/token", form={"username": "u{trial}"}, save={"t": "access_token"}),),
        schedule=Schedule(
            kind="burst", requests=1, request=HttpRequest(path="/me", headers={"Authorization": "Bearer {t}"})
        ),
    )
    for trial in (1, 2):  # as the pipeline does: a client and a flow per trial
        async with httpx.AsyncClient(transport=httpx.MockTransport(app), base_url="http://127.0.0.1") as client:
            await run_trial(client, scenario, Recorder(variant="main", trial=trial))

    assert seen == [
        ("/token", "username=u1", None, None),
        ("/me", "", "Bearer t1", "session=s1"),
        ("/token", "username=u2", None, None),
        ("/me", "", "Bearer t1", "session=s1"),
    ]


# ---- a user's own project, end to end ----

REGISTER = """
[[seed]]
method = "POST"
path = "/users/"
json = { username = "user{i}", password = "pw{i}" }
repeat = 3
save = { name = "username" }
"""

TOKENS = f"""
{REGISTER}
[[seed]]
method = "POST"
path = "/token"
form = {{ username = "user{{i}}", password = "pw{{i}}" }}
repeat = 3
save = {{ token = "access_token" }}

[schedule]
kind = "burst"
requests = 12

[schedule.request]
path = "/whoami/{{name}}"
headers = {{ Authorization = "Bearer {{token}}" }}
"""

COOKIES = f"""
sessions = 3
{REGISTER}
[[seed]]
method = "POST"
path = "/login"
form = {{ username = "user{{i}}", password = "pw{{i}}" }}
repeat = 3

[schedule]
kind = "burst"
requests = 12

[schedule.request]
path = "/session/{{name}}"
"""

# Only user0 logs in, with two sessions: the other session's requests have no cookie, and must not borrow one.
ONE_LOGIN = """
sessions = 2
[[seed]]
method = "POST"
path = "/users/"
json = { username = "user0", password = "pw" }

[[seed]]
method = "POST"
path = "/login"
form = { username = "user0", password = "pw" }

[schedule]
kind = "burst"
requests = 4

[schedule.request]
path = "/session/user0"
"""

STRICT = TOKENS.replace("/whoami/", "/strict/")

MISSING = TOKENS.replace('token = "access_token"', 'token = "data.access_token"')


def run_project(
    tmp_path: Path, scenario: str, *options: str
) -> tuple[subprocess.CompletedProcess[str], list[TrialResult]]:
    """``harness run`` of ``scenario`` on login_app in a project folder of its own: what it printed, its results."""
    shutil.copy(LOGIN_APP, tmp_path / "login_app.py")
    (tmp_path / "harness.toml").write_text('[variants.main]\napp = "login_app:app"\nexpect = "clean"\n')
    (tmp_path / "flow.toml").write_text("trials = 2\n" + scenario)
    completed = subprocess.run(
        [INSTALLED_HARNESS, "run", "--scenario", "flow.toml", "--out", "out", *options],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in completed.stderr
    [results] = (tmp_path / "out").glob("*/results.json")
    return completed, list(read_results(results).trials)


def schedule_statuses(trials: list[TrialResult]) -> list[list[int | None]]:
    return [[r.status for r in t.records if r.phase == "schedule"] for t in trials]


@pytest.mark.e2e
def test_each_scheduled_request_carries_its_own_users_token_from_a_form_login(tmp_path: Path) -> None:
    completed, trials = run_project(tmp_path, TOKENS)

    assert completed.returncode == ExitCode.OK, completed.stdout + completed.stderr
    assert schedule_statuses(trials) == [[200] * 12] * 2  # /whoami/userN answers 403 to another user's token
    paths = Counter(r.path for t in trials for r in t.records if r.phase == "schedule")
    assert paths == {"/whoami/user0": 8, "/whoami/user1": 8, "/whoami/user2": 8}
    stored = "".join(p.read_text() for p in (tmp_path / "out").glob("*/*.*"))
    assert "Bearer " not in stored.replace("Bearer {token}", "")  # the scenario's template, never a token


@pytest.mark.e2e
def test_each_session_keeps_the_cookie_its_login_set_and_lends_it_to_no_other(tmp_path: Path) -> None:
    completed, trials = run_project(tmp_path, COOKIES)
    assert completed.returncode == ExitCode.OK, completed.stdout + completed.stderr
    assert schedule_statuses(trials) == [[200] * 12] * 2

    (tmp_path / "one").mkdir()
    _, trials = run_project(tmp_path / "one", ONE_LOGIN)
    assert schedule_statuses(trials) == [[200, 401, 200, 401]] * 2


@pytest.mark.e2e
def test_explore_mode_carries_the_flow_into_every_schedule(tmp_path: Path) -> None:
    # /strict/userN is a 500 without the user's token: a schedule sent without it fails.
    options = ("--explore", "--explore-requests", "3", "--explore-schedules", "3")
    completed, _ = run_project(tmp_path, STRICT, *options)
    assert completed.returncode == ExitCode.OK, completed.stdout + completed.stderr
    assert "main was clean as expected: no failure in 3 schedules" in completed.stdout


@pytest.mark.e2e
def test_a_value_missing_from_the_answer_is_a_trial_error_naming_the_step_and_the_path(tmp_path: Path) -> None:
    completed, trials = run_project(tmp_path, MISSING)

    assert completed.returncode == ExitCode.HARNESS_ERROR, completed.stdout + completed.stderr
    assert [t.error for t in trials] == [
        "seeding failed: [[seed]] step 2 (POST /token) answered no value at 'data.access_token' to save as {token} "
        "(found nothing)"
    ] * 2


@pytest.mark.parametrize(
    ("scenario", "line", "problem"),
    [
        (TOKENS.replace("form =", 'json = { a = "b" }\nform ='), 15, "[seed] form: a request has one body"),
        (TOKENS.replace('"access_token"', '"access_token[0]"'), 16, "[seed] save: token = 'access_token[0]' is not"),
        (TOKENS.replace('"access_token"', '"a..b"'), 16, "[seed] save: token = 'a..b' is not a dotted path"),
        (
            TOKENS.replace("{name}", "{nam}"),
            23,
            "[schedule.request] path: unknown placeholder {nam} in '/whoami/{nam}'",
        ),
        (
            TOKENS.replace('form = { username = "user{i}"', 'form = { username = "{token}"'),
            14,
            "[seed] form: {token} in '{token}' is used before it is saved: [[seed]] step 2 saves it",
        ),
    ],
)
def test_a_bad_flow_is_one_line_and_exit_code_4_before_anything_starts(
    tmp_path: Path, scenario: str, line: int, problem: str
) -> None:
    (tmp_path / "flow.toml").write_text("trials = 2\n" + scenario)
    completed = subprocess.run(
        [INSTALLED_HARNESS, "run", "--scenario", "flow.toml", "--out", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == ExitCode.USAGE_ERROR
    assert completed.stderr.startswith(f"harness: error: flow.toml:{line}: {problem}")
    assert completed.stderr.count("\n") == 1 and not (tmp_path / "out").exists()
