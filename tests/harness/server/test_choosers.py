"""The choosers of explore mode, as pure functions of their seed and the decision points they meet."""

from __future__ import annotations

from typing import Any

import pytest

from harness.server import choosers
from harness.server.choosers import PCT, Default, Replay, Uniform, from_json


def run_and_worker_choices(chooser: choosers.Chooser, points: int) -> list[int]:
    """What ``chooser`` picks at ``points`` alternating run decisions (3 requests) and worker ones (2 workers + new)."""
    picked = []
    for step in range(1, points + 1):
        kind: choosers.Kind = "run" if step % 2 else "worker"
        picked.append(chooser.choose(kind, [0, 1, 2]))
        chooser.stepped(0, step)
    return picked


def test_default_always_takes_what_anyio_would() -> None:
    assert run_and_worker_choices(Default(), 10) == [0] * 10


def test_replay_takes_each_recorded_choice_then_0_and_counts_a_choice_out_of_range() -> None:
    replay = Replay([1, 2, 5, 1])
    assert [replay.choose("run", [0, 1, 2]) for _ in range(3)] == [1, 2, 0]
    assert replay.divergences == 1
    assert replay.choose("worker", [1, 2]) == 1
    assert [replay.choose("run", [0, 1]) for _ in range(3)] == [0, 0, 0]  # beyond the list: anyio's own
    assert replay.divergences == 1


def test_a_seed_names_one_sequence_of_choices() -> None:
    assert run_and_worker_choices(Uniform(7), 50) == run_and_worker_choices(Uniform(7), 50)
    assert run_and_worker_choices(Uniform(7), 50) != run_and_worker_choices(Uniform(8), 50)
    assert set(run_and_worker_choices(Uniform(7), 50)) == {0, 1, 2}
    made = {"seed": 3, "depth": 3, "steps": 10, "requests": 3}
    assert run_and_worker_choices(PCT(**made), 20) == run_and_worker_choices(PCT(**made), 20)


def test_pct_runs_the_pending_request_of_highest_priority_until_a_change_point_lowers_it() -> None:
    pct = PCT(seed=1, depth=2, steps=6, requests=3)
    (change,) = pct.change_points
    assert 1 <= change <= 6
    first = [0, 1, 2][pct.choose("run", [0, 1, 2])]
    for step in range(1, change):  # before the change point the same request keeps winning, in any order of options
        assert [2, 1, 0][pct.choose("run", [2, 1, 0])] == first
        pct.stepped(first, step)
    pct.stepped(first, change)
    second = [0, 1, 2][pct.choose("run", [0, 1, 2])]
    assert second != first
    assert pct.choose("run", [first, second]) == 1  # lowered below all others
    assert pct.choose("run", [first]) == 0


def test_pct_of_depth_d_has_d_minus_1_change_points_among_the_steps() -> None:
    for seed in range(50):
        points = PCT(seed=seed, depth=4, steps=5, requests=2).change_points
        assert len(points) == 3 and points <= set(range(1, 6))
    assert PCT(seed=1, depth=1, steps=5, requests=2).change_points == frozenset()


@pytest.mark.parametrize(
    ("spec", "made"),
    [
        ({"kind": "default"}, Default),
        ({"kind": "replay", "choices": [0, 1]}, Replay),
        ({"kind": "random", "seed": 1}, Uniform),
        ({"kind": "pct", "seed": 1, "depth": 2, "steps": 8}, PCT),
    ],
)
def test_a_begins_chooser_is_read_from_its_json(spec: dict[str, Any], made: type) -> None:
    assert isinstance(from_json(spec, requests=2), made)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ([], "chooser: expected an object with a kind"),
        ({"kind": "dfs"}, "chooser: unknown kind 'dfs'; expected default, replay, random or pct"),
        ({"kind": "default", "seed": 1}, "chooser default: unknown key 'seed'"),
        ({"kind": "replay"}, "chooser replay: missing choices"),
        ({"kind": "replay", "choices": [0, -1]}, "chooser replay: choices must be a list of integers >= 0"),
        ({"kind": "replay", "choices": [True]}, "chooser replay: choices must be a list of integers >= 0"),
        ({"kind": "random", "seed": 1.5}, "chooser random: seed must be an integer, got 1.5"),
        ({"kind": "pct", "seed": 1, "depth": 2}, "chooser pct: missing steps"),
        (
            {"kind": "pct", "seed": 1, "depth": 0, "steps": 8},
            "chooser pct: depth must be from 1 to steps + 1 (9), got 0",
        ),
        ({"kind": "pct", "seed": 1, "depth": 2, "steps": 10**9}, "chooser pct: steps must be from 1 to 1,000,000"),
        ({"kind": "x" * 100}, "chooser: unknown kind 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..."),
    ],
)
def test_a_bad_chooser_is_refused_in_one_line(spec: object, reason: str) -> None:
    with pytest.raises(ValueError) as refused:
        from_json(spec, requests=2)
    assert str(refused.value).startswith(reason)
    assert "\n" not in str(refused.value)
