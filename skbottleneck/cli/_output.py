"""What the command prints: messages, one-line errors, exit statuses.

An expected error (:class:`CLIError`, or an exception of the library with a
clear message) becomes one line, ``skbottleneck: error: ...``, on stderr, and
an exit status scripts can rely on (:data:`EXIT_CODES`); warnings become
``skbottleneck: warning: ...`` lines.
"""

import sys

from ..images import ImageError

__all__ = ["CLIError", "EXIT_CODES", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE",
           "describe", "echo", "error", "exit_code", "show_warning"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Exit status of the ``skbottleneck`` command.
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILURE: "runtime failure: an image could not be read (and `--on-error skip` was not "
                  "given), ImageNet weights unavailable offline, disk full, or an unexpected error",
    EXIT_USAGE: "usage error: invalid arguments, a missing input file or folder, a file that is not "
                "a feature store or a model, a store incompatible with the model, an output "
                "that cannot be written",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); `extract` resumes where it stopped when rerun",
}

#: The same, short, for the epilog of ``skbottleneck --help``.
EXIT_SUMMARY = {
    EXIT_OK: "success",
    EXIT_FAILURE: "runtime failure (an unreadable image, weights unavailable offline, ...)",
    EXIT_USAGE: "usage error (bad arguments, missing files, incompatible store or model, ...)",
    EXIT_INTERRUPTED: "interrupted (rerun `extract` to resume)",
}

# exception names whose message says enough without their name
_KNOWN_ERRORS = ("ValueError", "TypeError", "WeightsUnavailableError", "InvalidParameterError",
                 "NotFittedError", "OSError", "RuntimeError")


class CLIError(Exception):
    """An expected error: printed as one line, exits with ``code``."""

    def __init__(self, message, code=EXIT_USAGE):
        super().__init__(message)
        self.code = code


def echo(*args, file=None, **kwargs):
    """``print`` to stdout (or ``file``), flushed at once."""
    print(*args, file=file or sys.stdout, flush=True, **kwargs)


def error(message, code):
    """Print ``message`` as one ``skbottleneck: error:`` line on stderr; return ``code``."""
    message = " ".join(str(message).split()) or "unknown error"
    print(f"skbottleneck: error: {message}", file=sys.stderr, flush=True)
    return code


def show_warning(message, category, filename, lineno, file=None, line=None):
    """A ``warnings.showwarning`` that prints ``skbottleneck: warning: ...``."""
    print(f"skbottleneck: warning: {message}", file=sys.stderr, flush=True)


def exit_code(exc):
    """The exit status an uncaught exception ends the command with."""
    if isinstance(exc, CLIError):
        return exc.code
    if isinstance(exc, ImageError):
        return EXIT_FAILURE
    if isinstance(exc, (PermissionError, FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        return EXIT_USAGE
    if isinstance(exc, (ValueError, TypeError, KeyError)) and type(exc).__module__.split(".")[0] in (
            "builtins", "skbottleneck", "sklearn"):
        return EXIT_USAGE
    return EXIT_FAILURE


def describe(exc):
    """The one-line message of an uncaught exception."""
    if isinstance(exc, (CLIError, ImageError)):
        return str(exc)
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.filename!r} does not exist"
    name = type(exc).__name__
    if name == "WeightsUnavailableError":
        return (f"{exc} On the command line: --weights none --random-state 0, --weights FILE, "
                "or --backbone efficientnet_lite0.")
    text = str(exc) if name in _KNOWN_ERRORS else f"{name}: {exc}"
    if name not in _KNOWN_ERRORS:
        text += " (rerun with --traceback for details)"
    return text
