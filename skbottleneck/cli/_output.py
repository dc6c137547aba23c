"""What the command prints: messages, one-line errors, exit statuses.

An expected error (:class:`CLIError`, or an exception of the library with a
clear message) becomes one line, ``skbottleneck: error: ...``, on stderr, and
an exit status scripts can rely on (:data:`EXIT_CODES`); warnings become
``skbottleneck: warning: ...`` lines.
"""

import re
import sys

from ..images import ImageError

__all__ = ["CLIError", "EXIT_CODES", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE",
           "describe", "echo", "error", "exit_code", "show_warning", "with_flags"]

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
                 "NotFittedError", "OSError", "RuntimeError", "FileExistsError",
                 "UnsupportedFormatError", "UntrustedModelError", "StoreLockedError",
                 "InsufficientDiskSpaceError")

# The library's messages name its keywords; the command line has flags instead.
_KEYWORDS_TO_FLAGS = (
    ("Pass overwrite=True", "Rerun with --overwrite"),
    ("pass overwrite=True", "rerun with --overwrite"),
    ("overwrite=True", "--overwrite"),
    ("Pass wait=False", "Rerun with --no-wait"),
    ("pass wait=False", "rerun with --no-wait"),
    ("wait=False", "--no-wait"),
    ('on_error="skip"', "--on-error skip"),
    ("on_error='skip'", "--on-error skip"),
    ("call again with the original arguments", "rerun the original command"),
)

# A line break and the blanks around it; other whitespace (file names!) is kept.
_LINE_BREAK = re.compile(r"[ \t]*(?:\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029])+[ \t]*")


class CLIError(Exception):
    """An expected error: printed as one line, exits with ``code``."""

    def __init__(self, message, code=EXIT_USAGE):
        super().__init__(message)
        self.code = code


def echo(*args, file=None, **kwargs):
    """``print`` to stdout (or ``file``), flushed at once."""
    print(*args, file=file or sys.stdout, flush=True, **kwargs)


def with_flags(message):
    """``message`` with the library's keywords (``overwrite=True``) as flags (``--overwrite``)."""
    message = str(message)
    for keyword, flag in _KEYWORDS_TO_FLAGS:
        message = message.replace(keyword, flag)
    return message


def one_line(message):
    """``message`` on one line: each line break (and the blanks around it) becomes one space.

    Other whitespace is kept as it is, so that a file name with two spaces
    or a leading space reads as the file is named.
    """
    return _LINE_BREAK.sub(" ", str(message).strip("\r\n"))


def error(message, code):
    """Print ``message`` as one ``skbottleneck: error:`` line on stderr; return ``code``."""
    message = one_line(message)
    if not message.strip():
        message = "unknown error"
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
    if isinstance(exc, OSError) and exc.strerror and type(exc).__name__ in _KNOWN_ERRORS:
        # "[Errno 17] <message>: '<file>'" -> the message, and the file if it does not name it
        text = exc.strerror
        if exc.filename and str(exc.filename) not in text:
            text += f": {exc.filename}"
        return with_flags(text)
    name = type(exc).__name__
    if name == "WeightsUnavailableError":
        return (f"{exc} On the command line: --weights none --random-state 0, --weights FILE, "
                "or --backbone efficientnet_lite0.")
    text = with_flags(exc) if name in _KNOWN_ERRORS else f"{name}: {with_flags(exc)}"
    if name not in _KNOWN_ERRORS:
        text += " (rerun with --traceback for details)"
    return text
