"""Errors a command line turns into one line, and the one place that does it.

Importable without ray or keras. ``UsageError`` and ``RunnerError`` are the user's to fix
(exit 2); ``one_line_errors`` runs a command's body and maps those, the other known errors
it is given, Ctrl-C and anything unforeseen to one line on stderr and an exit code.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tempfile
import traceback
from collections.abc import Callable

EXIT_USAGE = 2
EXIT_UNEXPECTED = 1
EXIT_INTERRUPTED = 130


def did_you_mean(name: str, known) -> str:
    """`` (did you mean X?)`` for the closest of ``known`` to ``name``, or "" when none is close."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


class UsageError(Exception):
    """A known, user-fixable problem with what a command was asked: one line, exit code 2."""


class RunnerError(RuntimeError):
    """A scheduling problem the user can fix (bad resources, unreachable cluster, no run to resume)."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are a UsageError naming ``--help``, not usage text and exit(2)."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def one_line_errors(
    body: Callable[[], int],
    known: tuple[type[BaseException], ...] = (),
    describe: Callable[[BaseException], str] = str,
    interrupted: str = "interrupted",
    hide: Callable[[str], str] = str,
) -> int:
    """Run ``body`` and return its exit code; every error it raises becomes one line on stderr.

    UsageError, RunnerError and ``known`` errors print ``error: <describe(error)>`` (exit 2);
    Ctrl-C prints ``interrupted`` (exit 130); anything else prints its type and message with
    the path of a log file that holds the traceback (exit 1). ``hide`` takes secrets out of
    each line and of the traceback.
    """
    try:
        return body()
    except (UsageError, RunnerError, *known) as error:
        print(hide(f"error: {describe(error)}"), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # an unexpected failure: the traceback goes to a log file
        with tempfile.NamedTemporaryFile("w", prefix="adience-bench-error-", suffix=".log", delete=False) as log:
            log.write(hide(traceback.format_exc()))
        print(hide(f"unexpected error: {type(error).__name__}: {error} (traceback in {log.name})"), file=sys.stderr)
        return EXIT_UNEXPECTED


_ANSI = re.compile(r"\x1b\[[0-9;]*m|\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Fault|Exit|Interrupt)\b")
_KERAS_NOISE = ("Arguments received", "•", "Traceback")


def error_line(text: str) -> str:
    """The line of ``text`` (an error message or a traceback) that says what went wrong.

    The last ``SomeError: ...`` line; when Keras wraps the error ("Exception encountered when
    calling ..."), the line that follows it holds the cause, and is kept beside it.
    """
    lines = [_ANSI.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    found = [index for index, line in enumerate(lines) if _EXCEPTION_LINE.match(line)]
    if not found:
        return lines[-1] if lines else ""
    index = found[-1]
    said = lines[index]
    following = [line for line in lines[index + 1 :] if not line.startswith(_KERAS_NOISE)]
    if following and (said.endswith(":") or "Exception encountered when calling" in said):
        said = f"{said} {following[0]}"
    return said
