"""How explore mode picks an option at each decision point of a schedule.

The explorer (:mod:`harness.server.explorer`) asks a chooser only where there are two or
more options, ordered so that index 0 is what plain anyio would do; a chooser answers with
an index. Every chooser is seeded with ``random.Random(seed)`` where it draws at all, so
one (chooser, seed) makes the same choices every time it meets the same decision points.

- :class:`Default`: always 0, anyio's own schedule.
- :class:`Replay`: the i-th decision point takes the i-th recorded choice, 0 beyond the
  list; a recorded choice out of range where it is met is a *divergence*: 0 is taken and
  counted, for the harness to say the replay did not follow its record.
- :class:`Uniform`: each option equally likely (``{"kind": "random"}``).
- :class:`PCT`: probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010) over the
  schedule's requests: distinct random priorities, ``depth - 1`` change points among steps
  ``1..steps``; the pending request of highest priority runs, and after a change-point step
  the request that ran it drops below all others. A bug of depth d among n requests and k
  steps is then found with probability at least 1/(n*k^(d-1)) per schedule. Worker
  decisions are anyio's own (index 0): PCT searches the order of the calls.

Standard library only: it runs inside the server, beside the app.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

Kind = Literal["run", "worker"]

MAX_STEPS = 1_000_000  # PCT's step bound, checked so a hostile begin cannot make it draw for ever


class Chooser(Protocol):
    divergences: int

    def choose(self, kind: Kind, options: Sequence[int]) -> int:
        """The index into ``options`` (request indices for a run decision, worker numbers for a worker one)."""

    def stepped(self, request: int, step: int) -> None:
        """Step ``step`` (counted from 1) ran a call of request ``request``; told of every step, decided or not."""


class Default:
    divergences = 0

    def choose(self, kind: Kind, options: Sequence[int]) -> int:
        return 0

    def stepped(self, request: int, step: int) -> None:
        pass


class Replay:
    def __init__(self, choices: Sequence[int]) -> None:
        self._choices = list(choices)
        self._met = 0
        self.divergences = 0

    def choose(self, kind: Kind, options: Sequence[int]) -> int:
        chosen = self._choices[self._met] if self._met < len(self._choices) else 0
        self._met += 1
        if not 0 <= chosen < len(options):
            self.divergences += 1
            return 0
        return chosen

    def stepped(self, request: int, step: int) -> None:
        pass


class Uniform:
    divergences = 0

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def choose(self, kind: Kind, options: Sequence[int]) -> int:
        return self._random.randrange(len(options))

    def stepped(self, request: int, step: int) -> None:
        pass


class PCT:
    divergences = 0

    def __init__(self, *, seed: int, depth: int, steps: int, requests: int) -> None:
        self._random = random.Random(seed)
        # Higher runs first; the order of the draws (priorities, then change points) is fixed,
        # so a seed names one schedule. Workers are anyio's own choice: PCT searches the order of
        # the calls, so its bound holds as the paper states it (the bounded search varies workers).
        self._priority = dict(zip(range(requests), self._random.sample(range(requests), requests), strict=True))
        self.change_points = frozenset(self._random.sample(range(1, steps + 1), depth - 1))

    def choose(self, kind: Kind, options: Sequence[int]) -> int:
        if kind == "worker":
            return 0  # the most recently idle worker, as anyio picks
        return max(range(len(options)), key=lambda position: self._priority[options[position]])

    def stepped(self, request: int, step: int) -> None:
        if step in self.change_points:
            self._priority[request] = min(self._priority.values()) - 1


def from_json(spec: object, *, requests: int) -> Chooser:
    """The chooser ``spec`` (the ``chooser`` of a begin) names, for a schedule of ``requests`` requests.

    Raises ValueError with a one-line reason, answered as a 400.
    """
    if not isinstance(spec, Mapping):
        raise ValueError("chooser: expected an object with a kind")
    kind = spec.get("kind")
    if kind == "default":
        _keys(spec, set())
        return Default()
    if kind == "replay":
        _keys(spec, {"choices"})
        choices = spec["choices"]
        if not isinstance(choices, list) or not all(_is_int(choice) and choice >= 0 for choice in choices):
            raise ValueError("chooser replay: choices must be a list of integers >= 0")
        return Replay(choices)
    if kind == "random":
        _keys(spec, {"seed"})
        return Uniform(_int(spec, "seed"))
    if kind == "pct":
        _keys(spec, {"seed", "depth", "steps"})
        seed, depth, steps = _int(spec, "seed"), _int(spec, "depth"), _int(spec, "steps")
        if not 1 <= steps <= MAX_STEPS:
            raise ValueError(f"chooser pct: steps must be from 1 to {MAX_STEPS:,}, got {steps}")
        if not 1 <= depth <= steps + 1:
            raise ValueError(f"chooser pct: depth must be from 1 to steps + 1 ({steps + 1}), got {depth}")
        return PCT(seed=seed, depth=depth, steps=steps, requests=requests)
    raise ValueError(f"chooser: unknown kind {_shown(kind)}; expected default, replay, random or pct")


def _keys(spec: Mapping[str, Any], wanted: set[str]) -> None:
    missing = sorted(wanted - spec.keys())
    extra = sorted(spec.keys() - wanted - {"kind"})
    if missing:
        raise ValueError(f"chooser {spec['kind']}: missing {', '.join(missing)}")
    if extra:
        raise ValueError(f"chooser {spec['kind']}: unknown key {_shown(extra[0])}")


def _int(spec: Mapping[str, Any], key: str) -> int:
    value = spec[key]
    if not _is_int(value):
        raise ValueError(f"chooser {spec['kind']}: {key} must be an integer, got {_shown(value)}")
    return int(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON's true is no seed


def _shown(value: object) -> str:
    """A value from the request, cut to a line: it goes into a one-line answer."""
    text = " ".join(repr(value).split())
    return text[:40] + "..." if len(text) > 40 else text
