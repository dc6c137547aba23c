"""``main``: parse the command line, run one command, turn errors into exit statuses."""

import importlib
import os
import signal
import sys
import threading
import warnings

from ..images import quiet_bomb_warnings
from ._output import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    describe,
    error,
    exit_code,
    show_warning,
)
from ._parser import build_parser

__all__ = ["main"]

# command -> module that runs it (imported only when that command runs, so that
# `--help`, `backbones` and `cache` do not import the CNN and training stack)
_COMMANDS = {"backbones": "_backbones", "extract": "_extract", "train": "_train",
             "evaluate": "_evaluate", "predict": "_evaluate", "similar": "_similar",
             "cache": "_cache", "export": "_export", "index": "_index",
             "duplicates": "_duplicates"}


def _command(name):
    module = importlib.import_module(f".{_COMMANDS[name]}", __package__)
    return getattr(module, f"cmd_{name}")


def main(argv=None):
    """Run the ``skbottleneck`` command; returns its exit status.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    status : int
        0 on success; see :data:`EXIT_CODES`.
    """
    as_program = (argv is None and threading.current_thread() is threading.main_thread()
                  and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    argv = sys.argv[1:] if argv is None else list(argv)
    if as_program:  # Ctrl-C after the command finished: one line, not a shutdown traceback
        signal.signal(signal.SIGINT, _on_interrupt)
    parser = build_parser()
    show_traceback = "--traceback" in argv or os.environ.get("SKBOTTLENECK_TRACEBACK") == "1"
    argv = [a for a in argv if a != "--traceback"]  # accepted anywhere on the line
    previous_showwarning = warnings.showwarning
    warnings.showwarning = show_warning
    try:
        # Pillow's DecompressionBombWarning, printed on top of the ImageError that
        # names the file, would say nothing more (the command never raises the limit).
        with quiet_bomb_warnings():
            return _run(parser, argv, show_traceback)
    finally:
        _FINISHED.set()
        warnings.showwarning = previous_showwarning


# set when the command has finished: a Ctrl-C then comes during the interpreter's
# shutdown (threads joined, TensorFlow torn down), where KeyboardInterrupt would print
# a traceback from the threading module
_FINISHED = threading.Event()


def _on_interrupt(signum, frame):
    if not _FINISHED.is_set():
        raise KeyboardInterrupt  # the command cleans up and prints its one line (_run)
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    error("interrupted after the command had finished (its output is complete)",
          EXIT_INTERRUPTED)
    os._exit(EXIT_INTERRUPTED)


def _run(parser, argv, show_traceback):
    try:
        try:
            args = parser.parse_args(argv)
        except CLIError as e:
            return error(e, e.code)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return _command(args.command)(args)
    except KeyboardInterrupt:
        hint = " (rerun the same command to resume; finished batches are kept)" if (
            argv and argv[0] == "extract") else ""
        return error(f"interrupted{hint}", EXIT_INTERRUPTED)
    except BrokenPipeError:  # e.g. `skbottleneck predict ... | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except Exception as e:
        if show_traceback:
            import traceback

            traceback.print_exc()
        return error(describe(e), exit_code(e))
