"""How every command line in this repository ends: its result, or one line `error: ...`.

    import cli
    ...
    if __name__ == "__main__":
        cli.run(main)

Exit status 0: done; 2: bad usage (an option, a setting, argparse's own errors); 1: bad data, or
a file or folder that cannot be read or written; 130: Ctrl-C. A traceback means a bug in this
code, never the user's input. This module imports nothing of the project: every layer may use it.
"""
import argparse
import json
import math
import os
import pickle
import sys
import zipfile
from pathlib import Path


class UsageError(ValueError):
    """An option or setting that is not allowed; the message names it, what was given and what is
    allowed. Exit status 2."""


class InputError(ValueError):
    """A file, folder or its contents that cannot be used; the message names the file (and the
    row or field) and the problem. Exit status 1."""


# Errors that libraries raise on files they cannot parse: they mean bad data, not a bug. The
# project's readers turn them into InputError with the file's name where they can; this is the
# safety net for the rest.
_DATA_ERRORS = (zipfile.BadZipFile, pickle.UnpicklingError, json.JSONDecodeError, UnicodeError, EOFError)


def one_line(text):
    """The message on one line: a terminal, a log grep and a test all see all of it."""
    return " ".join(str(text).split())


def describe_os_error(error):
    """'PATH: reason' for an OSError (no such file, permission denied, disk full, ...)."""
    reason = error.strerror or error.__class__.__name__
    where = error.filename if error.filename is not None else None
    if where is not None and error.filename2 is not None:
        where = f"{where} -> {error.filename2}"
    return f"{where}: {reason}" if where is not None else one_line(str(error) or reason)


def fail(message, status=1):
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(status)


def run(main, argv=None):
    """Run main(argv) as a command: its return value is the exit status (None: 0)."""
    try:
        status = main(argv)
    except UsageError as error:
        fail(error, 2)
    except InputError as error:
        fail(error, 1)
    except OSError as error:
        fail(describe_os_error(error), 1)
    except _DATA_ERRORS as error:
        fail(f"{error.__class__.__name__}: {error}", 1)
    except MemoryError:
        fail("out of memory: the input is larger than this machine can hold", 1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(status if isinstance(status, int) else 0)


# ---------------------------------------------------------------------------------------
# argparse types: a bad value is a usage error that names the option (argparse adds it).

def _number(kind, text):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}")
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _checked(kind, allowed, rule):
    """An argparse type: a `kind` number for which allowed(value) holds, else `rule` is said."""
    def parse(text):
        value = _number(kind, text)
        if not allowed(value):
            raise argparse.ArgumentTypeError(f"{text!r}: must be {rule}")
        return value
    return parse


positive_int = _checked(int, lambda v: v >= 1, "1 or more")
non_negative_int = _checked(int, lambda v: v >= 0, "0 or more")
positive_float = _checked(float, lambda v: v > 0, "more than 0")
non_negative_float = _checked(float, lambda v: v >= 0, "0 or more")
fraction = _checked(float, lambda v: 0 <= v < 1, "at least 0 and below 1")     # [0, 1)


def write_atomically(path, write):
    """write(tmp), then rename tmp onto path: a reader (or a run resumed after a kill) sees the old
    file or the new one, never half of one; on any failure tmp is removed (a full disk must not
    stay full of half a file). tmp keeps a .keras suffix because Keras saves by suffix."""
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.keras") if path.suffix == ".keras" else path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def writable_folder(path, what="output folder"):
    """Create `path` if needed and prove it is writable before any work is done (a run that
    discovers a read-only folder at the end loses everything it computed)."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as error:
        raise InputError(f"{what} {path} is not writable: {error.strerror or error}") from None
    return path
