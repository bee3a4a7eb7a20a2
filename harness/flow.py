"""What a trial carries from one request to the next: the values its seed steps saved, and its cookies.

A seed step's ``save = { token = "access_token" }`` keeps ``access_token`` of each of its
answers, one per repetition; ``{token}`` in a later request numbered ``i`` (in its step, or in
the schedule) is the value its step's repetition ``i mod repeat`` saved. So a step that logs
in ``repeat = N`` users hands each of the schedule's requests the token of user ``i mod N``.

Cookies that answers set are kept as a browser keeps them, in the trial's jars: the
scenario's ``sessions`` (default 1), request ``i`` using jar ``i mod sessions``. A flow lives
for one trial (or, in explore mode, for one seeded server), so nothing passes between trials
or builds. Saved values and cookies are kept in memory only: the record has a request's path
and status, never its headers, body or cookies.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from harness.errors import SeedError, TrialError
from harness.scenario import HttpRequest


class Flow:
    """The saved values and cookie jars of one trial."""

    def __init__(self, *, sessions: int = 1) -> None:
        self.sessions = sessions
        self.saved: dict[str, list[str]] = {}
        self._jars: dict[int, httpx.Cookies] = {}  # made when first used: most scenarios use one

    def jar(self, i: int) -> httpx.Cookies:
        """The cookies of request ``i``'s session."""
        return self._jars.setdefault(i % self.sessions, httpx.Cookies())

    def request(self, request: HttpRequest, *, i: int, trial: int, where: str) -> HttpRequest:
        """``request`` as the ``i``-th of its step or schedule sends it; ``where`` names it in errors.

        A saved value can hold what a header or a URL cannot carry, which only the answer shows:
        that stops the trial, as a request that cannot be sent.
        """
        values: dict[str, object] = {"i": i, "trial": trial}
        values.update({name: kept[i % len(kept)] for name, kept in self.saved.items()})
        rendered = request.render(values)
        for name, value in rendered.headers.items():
            if not (value.isascii() and value.isprintable()):
                raise TrialError(f"{where}: header {name} is not printable ASCII once its saved values are filled in")
        try:
            httpx.URL(rendered.path)
        except httpx.InvalidURL as exc:
            raise TrialError(f"{where}: its path is not a URL once its saved values are filled in: {exc}") from None
        return rendered

    def keep(self, step: HttpRequest, body: bytes, *, where: str) -> None:
        """Save what ``step`` names from the ``body`` of its 2xx answer; a value it cannot find stops the trial."""
        if not step.save:
            return
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python's parser goes
            raise SeedError(f"seeding failed: {where} did not answer JSON, so {_names(step)} cannot be saved") from None
        for name, path in step.save.items():
            value = pick(document, path)
            if value is None or isinstance(value, dict | list):
                found = "nothing" if value is None else f"a {'list' if isinstance(value, list) else 'table'}"
                raise SeedError(
                    f"seeding failed: {where} answered no value at {path!r} to save as {{{name}}} (found {found})"
                )
            self.saved.setdefault(name, []).append(value if isinstance(value, str) else json.dumps(value))


def pick(document: Any, path: str) -> Any:
    """The value at a dotted path (``items.0.id``) of a JSON document; None where there is none (or it is null)."""
    value = document
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _names(step: HttpRequest) -> str:
    return ", ".join(f"{{{name}}}" for name in step.save)
