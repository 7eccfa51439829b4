"""Pickle the Kaggle arrays once, so notebooks start in a second instead of parsing CSVs.

    python serializer.py                   # data/training.csv + data/test.csv -> data.p, data.p.zip

    (X, Y), (X_test, _) = pickle.load(open("data.p", "rb"))      # as in the course card
    (X, Y), (X_test, _) = serializer.load("data.p")              # the same, but safe

Unpickling can run arbitrary code, so `load` uses a restricted unpickler that only rebuilds
numpy arrays, tuples and None: a data.p from someone else cannot do anything but fail.
"""
import argparse
import io
import os
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np

import input_data

# The only globals a pickle of plain numpy arrays needs (numpy 1.x and 2.x spellings).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol 2 (Python 2 era data.p) stores array bytes through it
}


class RefusedPickle(pickle.UnpicklingError):
    """The file holds something other than numpy arrays, tuples and None."""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise RefusedPickle(f"refusing to load {module}.{name}: data.p may only hold numpy "
                            "arrays, tuples and None")


def _check_contents(value, where="data"):
    """Walk the loaded value: tuples, None and numeric numpy arrays only."""
    if value is None:
        return
    if isinstance(value, tuple):
        for i, item in enumerate(value):
            _check_contents(item, f"{where}[{i}]")
        return
    if isinstance(value, np.ndarray) and value.dtype != object:
        return
    raise RefusedPickle(f"{where} is a {type(value).__name__}"
                        f"{' of Python objects' if isinstance(value, np.ndarray) else ''}; "
                        "only numeric numpy arrays, tuples and None are accepted")


def loads(data):
    """Unpickle bytes safely (see module docstring)."""
    # latin1 reads Python 2 pickles' byte strings as numpy expects.
    value = _ArraysOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    _check_contents(value)
    return value


def load(path="data.p"):
    """((X, Y), (X_test, None)) from data.p or data.p.zip, refusing anything but arrays."""
    path = Path(path)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(".p")]
            if len(names) != 1:
                raise RefusedPickle(f"{path}: expected one .p file inside, found {names}")
            return loads(archive.read(names[0]))
    return loads(path.read_bytes())


def save(data, path="data.p", zip_too=True):
    """Pickle `data` to path (atomically), and also to path + '.zip' when zip_too."""
    _check_contents(data)
    path = Path(path)
    payload = pickle.dumps(data, protocol=4)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)
    written = [path]
    if zip_too:
        zipped = path.with_name(path.name + ".zip")
        tmp = zipped.with_name(zipped.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            archive.writestr(path.name, payload)
        os.replace(tmp, zipped)
        written.append(zipped)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description="Kaggle CSVs -> data.p holding ((X, Y), (X_test, None)).")
    parser.add_argument("--data", default="data", help="folder with Kaggle's files (default data/)")
    parser.add_argument("--train", default=None, help="training CSV (default: found in --data)")
    parser.add_argument("--test", default=None, help="test CSV (default: found in --data)")
    parser.add_argument("--out", default="data.p")
    parser.add_argument("--all-rows", action="store_true",
                        help="keep rows with missing keypoints (NaN) for masked training")
    parser.add_argument("--no-zip", action="store_true", help="do not also write OUT.zip")
    args = parser.parse_args(argv)

    files, _ = input_data.kaggle_files(args.data, allow_synthetic=args.train is None)
    train = args.train or files["training"]
    test = args.test or files["test"]
    try:
        X, Y = input_data.load(train, complete_only=not args.all_rows)
        X_test = input_data.load_test(test)[1] if test else None
    except input_data.DataError as error:
        sys.exit(f"error: {error}")
    for path in save(((X, Y), (X_test, None)), args.out, zip_too=not args.no_zip):
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB)")
    print(f"X {X.shape} Y {Y.shape} from {train}; "
          f"X_test {None if X_test is None else X_test.shape} from {test}")


if __name__ == "__main__":
    main()
