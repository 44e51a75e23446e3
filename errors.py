"""The project's own error types.

A `UserError` is something the user can fix (a flag, a file, a field). The CLI prints it as one
line and exits with code 2; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2, no traceback."""

    exit_code = 2


class DataError(UserError):
    """A data file or dataset that cannot be used as given (names the file and what is wrong)."""


class TrainingError(Exception):
    """Training stopped for a reason the user must know about (e.g. a NaN loss)."""

    exit_code = 3


class DiskFullError(TrainingError):
    """A write failed for want of space (ENOSPC): what was published before stays intact."""
