"""Errors the operator sees as one line, each with its documented exit code.

Exit codes (README, "Exit codes"):
  0 success, 1 a check found a problem, 2 bad input or an unusable database,
  3 refused on purpose (a reset aimed at a non-dev database), 4 no such batch,
  130 interrupted, 141 the reader of the output went away (`| head`).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PROBLEMS_FOUND = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_NOT_FOUND = 4
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a pipe's writer that lost its reader


class CjHealthError(Exception):
    """An error with a one-line message for the operator and an exit code."""

    exit_code = EXIT_USAGE


class DatabaseUnavailable(CjHealthError):
    """The database URL is malformed, or the server cannot be reached."""


class Refused(CjHealthError):
    """The command would do something unsafe here and did nothing."""

    exit_code = EXIT_REFUSED


class BatchNotFound(CjHealthError):
    """No CJ batch with the id given."""

    exit_code = EXIT_NOT_FOUND
