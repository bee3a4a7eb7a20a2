"""The harness's errors and exit codes, both in this one place.

Exception tree (each kind carries its exit code)::

    HarnessError             3  the harness could not do its job
    ├── TrialError           3  one trial of one variant could not be carried out
    │   ├── LaunchError      3  its server did not start (reason and log tail)
    │   └── SeedError        3  its seed data could not be created through the API
    ├── WriteError           3  a file of the output could not be written (its path, the system's reason)
    └── UsageError           4  the user asked for something that cannot be done
        ├── ConfigError      4  a configuration file, a HARNESS_* variable or a build in it is invalid
        │   └── AppError     4  a build cannot be served: its app does not import, its ready path never answers
        ├── ScenarioError    4  a scenario is unknown, unreadable or invalid (file, field)
        ├── ResultsError     4  a results file or run folder named by the user cannot be read
        └── DatabaseError    4  a database server cannot be started, reached or used

A TrialError is recorded in the results and the run goes on with the other variants and
trials; the variant's verdict is then "error". An AppError stops the run: every trial of
that build would fail the same way, so it is the user's to fix. A WriteError stops the run
too (a full disk fails every later write as well); what was written before it stays readable.

Exit codes of ``harness``:

=====  ===============================================================================
0      every variant met its expectation
1      regression: a variant expected to be clean failed
2      silent reproducer: a variant expected to fail did not fail in any trial
3      harness error: a variant could not be started, a file could not be written, or the run broke
4      usage error: a bad option, an unknown scenario or variant, an invalid file
5      undecided: with --confidence, a variant was not decided at that level within
       --max-trials or --max-seconds (nothing contradicted its expectation either)
130    interrupted (Ctrl-C); the results gathered so far are written, marked incomplete
143    terminated (SIGTERM): the same as Ctrl-C, under the code shells give SIGTERM
=====  ===============================================================================

When verdicts disagree, the code of the first in this order wins: regression, harness
error, silent reproducer, undecided, success (:data:`harness.verdict.VERDICT_EXIT_CODES`).
"""

from __future__ import annotations

import enum
from pathlib import Path


class ExitCode(enum.IntEnum):
    OK = 0
    REGRESSION = 1
    SILENT = 2
    HARNESS_ERROR = 3
    USAGE_ERROR = 4
    UNDECIDED = 5
    INTERRUPTED = 130
    TERMINATED = 143

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "every variant met its expectation",
    ExitCode.REGRESSION: "regression: a variant expected to be clean failed",
    ExitCode.SILENT: "silent reproducer: a variant expected to fail did not",
    ExitCode.HARNESS_ERROR: "harness error: a trial could not be carried out, or a file written",
    ExitCode.USAGE_ERROR: "usage error",
    ExitCode.UNDECIDED: "undecided: the confidence asked for was not reached within the limits",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
    ExitCode.TERMINATED: "terminated (SIGTERM)",
}


class HarnessError(Exception):
    """Base of every error the harness reports to its user as one clear message."""

    exit_code: ExitCode = ExitCode.HARNESS_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TrialError(HarnessError):
    """One trial of one variant could not be carried out."""


class LaunchError(TrialError):
    """A variant's server process exited or never answered."""

    def __init__(self, message: str, *, variant: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.variant = variant
        self.log_tail = log_tail


class SeedError(TrialError):
    """The seed data could not be created, even after retries."""


class WriteError(HarnessError):
    """A file the harness writes that could not be written: a full disk, a folder where the file should be."""

    def __init__(self, path: Path, error: OSError) -> None:
        super().__init__(f"cannot write {path}: {error.strerror or error}")
        self.path = path


class UsageError(HarnessError):
    """Bad options or names given by the user."""

    exit_code = ExitCode.USAGE_ERROR


class ConfigError(UsageError):
    """A configuration that cannot be found, read or validated."""


class AppError(ConfigError):
    """A declared build that cannot be served: its app does not import, or it never gets ready."""

    def __init__(self, message: str, *, variant: str, log_tail: str = "") -> None:
        super().__init__(message + (f"\n--- last lines of its server's output ---\n{log_tail}" if log_tail else ""))
        self.variant = variant


class ScenarioError(UsageError):
    """A scenario that cannot be found, read or validated."""


class ResultsError(UsageError):
    """A results file that is missing, not JSON, or of another schema version."""


class DatabaseError(UsageError):
    """A PostgreSQL server that cannot be started, reached or used: not installed, a wrong password, no CREATEDB."""
