"""Error types that map to the command line's exit codes.

Every error carries one line that says what is wrong and what to do about it;
the CLI prints that line and exits with the class's code.
"""

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_DEVICE = 3
EXIT_INTERRUPTED = 130


class BenchError(Exception):
    """A problem the user can fix; the message is shown as is."""

    exit_code = EXIT_USAGE


class UsageError(BenchError):
    """Bad flags, unknown names, malformed configuration files."""


class ModelError(BenchError):
    """A model file that is missing, corrupt or cannot be converted."""


class DeviceUnavailable(BenchError):
    """A device that could not be used at all."""

    exit_code = EXIT_DEVICE


def one_line(exc: BaseException) -> str:
    """An unexpected failure as one line of a message: its type, and the OS's own words
    where it has them."""
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"{type(exc).__name__}: {why}"
