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


def named_os_error(error, path):
    """The OSError naming `path` where it names no file (a full disk while writing a file that
    is open: `[Errno 28] No space left on device` alone)."""
    if not isinstance(error, OSError) or error.filename is not None or error.errno is None:
        return error
    return type(error)(error.errno, error.strerror or str(error), str(path))


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
    write_all_atomically([(path, write)])


def write_all_atomically(writes):
    """Several files, each (path, write) as write_atomically, as one: every tmp is written before
    any is renamed into place, so a failure leaves no partial set of outputs (a data.p without its
    zip, a CSV without its sources file) and every earlier file whole. A path that is a folder is
    refused before anything is written: its rename would fail after the others'."""
    writes = [(Path(path), write) for path, write in writes]
    for path, _ in writes:
        if path.is_dir():
            raise InputError(f"{path}: is a folder; cannot write a file there")
    tmps = []
    try:
        for path, write in writes:
            tmps.append(path.with_name(path.stem + ".tmp.keras") if path.suffix == ".keras"
                        else path.with_name(path.name + ".tmp"))
            try:
                write(tmps[-1])
            except OSError as error:
                raise named_os_error(error, path) from error
        for (path, _), tmp in zip(writes, tmps):
            os.replace(tmp, path)
    except BaseException:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise


def same_file(a, b):
    """a and b are one file: the same path once resolved, or (links) the same inode."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(outputs, inputs=(), overwrite=True):
    """Before any work: each output (name, path) is a file name in a writable folder, not a folder,
    and neither one of the inputs (name, path) nor inside an input folder. A command never
    overwrites what it reads: `--csv a.csv --out a.csv` would replace the data with its result.
    overwrite=False: an existing file is refused too (a name the user chose may hold anything;
    the command then offers --overwrite)."""
    for name, path in outputs:
        target = Path(path).resolve()
        for input_name, source in inputs:
            source = Path(source).resolve()
            if same_file(target, source):
                raise UsageError(f"{name} {path}: is the {input_name} input; refusing to overwrite an input")
            if source.is_dir() and target.is_relative_to(source):
                raise UsageError(f"{name} {path}: is inside the {input_name} folder {source}; "
                                 "outputs never go among the inputs")
        if target.is_dir():
            raise InputError(f"{name} {path}: is a folder; expected a file name")
        if not overwrite and (target.exists() or target.is_symlink()):
            raise UsageError(f"{name} {path}: exists; pass --overwrite to replace it")
        writable_folder(str(Path(path).parent), f"{name}'s folder")


def read_json_object(path):
    """The JSON object (a dict) in the file at path; an InputError naming the file when it is
    damaged (a truncated write, a hand edit) or holds something else."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeError) as error:
        raise InputError(f"{path}: not readable JSON ({one_line(error)})") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: holds a JSON {type(value).__name__}, expected an object {{...}}")
    return value


def json_field(data, key, valid, expected, source):
    """data[key], read from the JSON file `source`, when valid(value) holds; else an InputError
    naming the file, the field, what it holds and what was `expected`."""
    if key not in data:
        raise InputError(f"{source}: no field {key!r}; expected {expected}")
    if not valid(data[key]):
        raise InputError(f"{source}: field {key!r} is {one_line(repr(data[key]))[:80]}; expected {expected}")
    return data[key]


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
