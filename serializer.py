"""Pickle the Kaggle arrays once, so notebooks start in a second instead of parsing CSVs.

    python serializer.py                   # data/training.csv + data/test.csv -> data.p, data.p.zip

    (X, Y), (X_test, _) = pickle.load(open("data.p", "rb"))      # as in the course card
    (X, Y), (X_test, _) = serializer.load("data.p")              # the same, but safe

Unpickling can run arbitrary code, so `load` uses a restricted unpickler that only rebuilds
numpy arrays, tuples and None: a data.p from someone else cannot do anything but fail.
"""
import argparse
import io
import math
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

import cli
import input_data

# The largest array a pickle may declare, and the most bytes all its arrays may hold together:
# Kaggle's data.p is 86 MB (7,049 + 1,783 faces as float32). A 175-byte pickle that declares a
# 7 GB array is refused before numpy allocates anything.
MAX_ARRAY_BYTES = 2**30
MAX_DIMENSIONS = 8
# Plain numbers and booleans only: no fields (structured), no subarrays, no objects, no strings.
_PLAIN_KINDS = "biufc"


class RefusedPickle(input_data.DataError, pickle.UnpicklingError):
    """The file holds something other than plain numeric numpy arrays, tuples and None: bad
    data (a cli.InputError, exit 1), and an UnpicklingError for code that expects one."""


def _check_dtype(dtype, where="an array"):
    dtype = np.dtype(dtype)
    if dtype.kind not in _PLAIN_KINDS or dtype.fields is not None or dtype.subdtype is not None \
            or dtype.hasobject:
        raise RefusedPickle(f"{where} has dtype {dtype}; only plain numeric or bool arrays are accepted "
                            "(no fields, subarrays, objects or strings)")
    return dtype


def _check_shape(shape, dtype, where="an array"):
    if not isinstance(shape, tuple) or len(shape) > MAX_DIMENSIONS or \
            not all(isinstance(n, int) and 0 <= n for n in shape):
        raise RefusedPickle(f"{where} declares the shape {shape!r}; expected at most "
                            f"{MAX_DIMENSIONS} non-negative integers")
    size = math.prod(shape) * np.dtype(dtype).itemsize
    if size > MAX_ARRAY_BYTES:
        raise RefusedPickle(f"{where} declares {shape} x {np.dtype(dtype).itemsize} bytes = "
                            f"{size / 2**30:,.1f} GB, above the {MAX_ARRAY_BYTES / 2**30:g} GB limit")


# numpy's pickles rebuild an array in two steps: _reconstruct(ndarray, (0,), b'b') makes an
# empty array, then BUILD calls its __setstate__((version, shape, dtype, fortran, bytes)). Both
# steps are checked here before numpy allocates: an empty shape, then the declared shape and
# dtype against the bytes actually given.
class _NdarrayName:
    """Stands for numpy.ndarray in a pickle: _reconstruct's first argument. Calling it, or
    NEWOBJ on it, would allocate any shape the pickle declares, so both are refused."""

    def __call__(self, *args, **kwargs):
        raise RefusedPickle("refusing to call numpy.ndarray directly (it would allocate the "
                            "shape the pickle declares)")


_NDARRAY = _NdarrayName()


def _reconstruct(subtype, shape, dtype):
    if subtype is not _NDARRAY:
        raise RefusedPickle(f"refusing to rebuild a {getattr(subtype, '__name__', subtype)!r}; "
                            "only numpy.ndarray")
    _check_shape(shape, np.uint8)
    if math.prod(shape) != 0:
        raise RefusedPickle(f"an array rebuilt with shape {shape}; numpy's own pickles start empty")
    return _CheckedArray(shape, np.uint8)


class _CheckedArray(np.ndarray):
    """An empty ndarray whose __setstate__ validates the state first (see _reconstruct)."""

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise RefusedPickle("an array's state is not numpy's (version, shape, dtype, order, data)")
        shape, dtype, data = state[-4], state[-3], state[-1]
        dtype = _check_dtype(dtype)
        _check_shape(tuple(shape) if isinstance(shape, (tuple, list)) else shape, dtype)
        if not isinstance(data, (bytes, bytearray)) or \
                len(data) != math.prod(shape) * dtype.itemsize:
            raise RefusedPickle(f"an array declares shape {tuple(shape)} of {dtype} "
                                f"({math.prod(shape) * dtype.itemsize:,} bytes) but holds "
                                f"{len(data) if isinstance(data, (bytes, bytearray)) else type(data).__name__} bytes")
        super().__setstate__(state)


def _frombuffer(buffer, dtype, shape, order):
    dtype = _check_dtype(dtype)
    _check_shape(tuple(shape), dtype)
    return np._core.numeric._frombuffer(buffer, dtype, shape, order) if hasattr(np, "_core") \
        else np.core.numeric._frombuffer(buffer, dtype, shape, order)


def _dtype(spec, *args):
    return _check_dtype(np.dtype(spec, *args) if isinstance(spec, str) else spec)


def _encode(text, encoding="latin1"):
    """_codecs.encode, as protocol 2 stores array bytes; only the latin1 round trip is allowed."""
    if not isinstance(text, str) or encoding != "latin1":
        raise RefusedPickle("refusing _codecs.encode other than latin1 text")
    return text.encode("latin1")


# The only globals a pickle of plain numpy arrays needs (numpy 1.x and 2.x spellings), each
# replaced by a checked version.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _encode,  # protocol 2 (Python 2 era data.p) stores array bytes through it
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[module, name]
        raise RefusedPickle(f"refusing to load {module}.{name}: data.p may only hold numpy "
                            "arrays, tuples and None")


def _check_contents(value, where="data", depth=0):
    """Walk the loaded value: tuples, None and plain numeric numpy arrays only."""
    if value is None:
        return
    if isinstance(value, tuple) and depth < 4:
        for i, item in enumerate(value):
            _check_contents(item, f"{where}[{i}]", depth + 1)
        return
    if type(value) in (np.ndarray, _CheckedArray):
        _check_dtype(value.dtype, where)
        return
    raise RefusedPickle(f"{where} is a {type(value).__name__}"
                        f"{' of Python objects' if isinstance(value, np.ndarray) else ''}; "
                        "only numeric numpy arrays, tuples and None are accepted")


def _plain(value):
    """_CheckedArray -> plain ndarray (a view), inside tuples."""
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value.view(np.ndarray) if isinstance(value, np.ndarray) else value


def loads(data, source="the pickle"):
    """Unpickle bytes safely (see module docstring); anything else raises RefusedPickle."""
    try:
        # latin1 reads Python 2 pickles' byte strings as numpy expects.
        value = _ArraysOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
        _check_contents(value)
    except RefusedPickle as error:
        raise RefusedPickle(f"{source}: {error}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, OverflowError, MemoryError, RecursionError) as error:
        raise RefusedPickle(f"{source}: not a readable pickle of arrays "
                            f"({error.__class__.__name__}: {cli.one_line(error)[:200]})") from None
    return _plain(value)


def load(path="data.p"):
    """((X, Y), (X_test, None)) from data.p or data.p.zip, refusing anything but arrays."""
    path = Path(path)
    if path.is_dir():
        raise RefusedPickle(f"{path}: is a folder, expected data.p or data.p.zip")
    limit = MAX_ARRAY_BYTES + 2**20
    if path.stat().st_size > limit:
        raise RefusedPickle(f"{path}: {path.stat().st_size / 2**30:.1f} GB, above the "
                            f"{limit / 2**30:.1f} GB limit for data.p")
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith(".p")]
                if len(names) != 1:
                    raise RefusedPickle(f"{path}: expected one .p file inside, found {names[:10]}")
                info = archive.getinfo(names[0])
                if info.file_size > limit:
                    raise RefusedPickle(f"{path}:{names[0]} unpacks to {info.file_size / 2**30:.1f} GB, "
                                        f"above the {limit / 2**30:.1f} GB limit")
                with archive.open(info) as member:
                    data = member.read(limit + 1)
                if len(data) > limit:
                    raise RefusedPickle(f"{path}:{names[0]} unpacks to more than {limit / 2**30:.1f} GB")
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as error:
            raise RefusedPickle(f"{path}: not a readable zip file ({cli.one_line(error)})") from None
        return loads(data, f"{path}:{names[0]}")
    return loads(path.read_bytes(), str(path))


def file_digest(path):
    """Size and SHA-256 of a file's bytes: what a cache of it is keyed by (never its mtime)."""
    return os.path.getsize(path).to_bytes(8, "little") + bytes.fromhex(input_data.file_sha256(path))


def cached_keypoints(path):
    """input_data.read_keypoints(path), parsed once: later calls read PATH.cache.p, which holds
    the arrays and the size + SHA-256 digest of the file they came from. A cache whose key does
    not match the file's content (a replaced file, even one with an older mtime), or which fails
    the safe load, is rebuilt; a read-only folder just means no cache."""
    path = Path(path)
    if not path.is_file():
        return input_data.read_keypoints(path)   # its own clear error: no such file, a folder
    cache = path.with_name(path.name + ".cache.p")
    key = np.frombuffer(file_digest(path), np.uint8)
    if cache.is_file():
        try:
            (images, keypoints), stored = load(cache)
            if isinstance(stored, np.ndarray) and np.array_equal(stored, key):
                return images, keypoints
        except (RefusedPickle, ValueError, TypeError, OSError):
            pass  # a stale, foreign or damaged cache is simply rebuilt
    images, keypoints = input_data.read_keypoints(path)
    try:
        save(((images, keypoints), key), cache, zip_too=False)
    except OSError:
        pass  # a read-only data folder: no cache, no problem
    return images, keypoints


def save(data, path="data.p", zip_too=True):
    """Pickle `data` to path, and also to path + '.zip' when zip_too: both or neither (atomically)."""
    _check_contents(data)
    path = Path(path)
    payload = pickle.dumps(data, protocol=4)

    def write_zip(tmp):
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            archive.writestr(path.name, payload)
    writes = [(path, lambda tmp: tmp.write_bytes(payload))]
    if zip_too:
        writes.append((zip_path(path), write_zip))
    cli.write_all_atomically(writes)
    return [written for written, _ in writes]


def zip_path(path):
    return Path(path).with_name(Path(path).name + ".zip")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Kaggle CSVs -> data.p holding ((X, Y), (X_test, None)).")
    parser.add_argument("--data", default="data", help="folder with Kaggle's files (default data/)")
    parser.add_argument("--train", default=None, help="training CSV (default: found in --data)")
    parser.add_argument("--test", default=None, help="test CSV (default: found in --data)")
    parser.add_argument("--out", default="data.p", help="the pickle to write, a .p file name (default data.p)")
    parser.add_argument("--all-rows", action="store_true",
                        help="keep rows with missing keypoints (NaN) for masked training")
    parser.add_argument("--no-zip", action="store_true", help="do not also write OUT.zip")
    args = parser.parse_args(argv)

    # Every setting checked before the slow part.
    input_data.max_csv_bytes()
    if not args.out.endswith(".p"):
        raise cli.UsageError(f"--out: got {args.out!r}; must be a .p file name (data.p)")
    if Path(args.out).is_dir():
        raise cli.UsageError(f"--out: {args.out} is a folder; must be a .p file name")
    for option, value in (("--train", args.train), ("--test", args.test)):
        if value is not None and not Path(value).is_file():
            raise input_data.DataError(f"{option} {value}: {'is a folder' if Path(value).is_dir() else 'no such file'}")
    if args.train is None and not Path(args.data).is_dir():
        raise input_data.DataError(f"--data {args.data}: not a folder")
    outputs = [("--out", args.out)] + ([] if args.no_zip else [("--out's zip", zip_path(args.out))])
    cli.check_outputs(outputs, [(option, value) for option, value in (("--train", args.train),
                                                                      ("--test", args.test)) if value])

    if args.train is None:
        import synthetic_faces  # Kaggle's files, or synthetic faces written when they are absent
        files, _ = synthetic_faces.kaggle_files(args.data)
    else:
        files, _ = input_data.kaggle_files(args.data, allow_synthetic=False) if Path(args.data).is_dir() \
            else ({"training": None, "test": None}, False)
    train = args.train or files["training"]
    test = args.test or files["test"]
    X, Y = input_data.load(train, complete_only=not args.all_rows)
    if not len(X):
        raise input_data.DataError(f"{train}: no row has all {Y.shape[1]} keypoints; --all-rows keeps "
                                   "the incomplete rows (NaN where missing)")
    X_test = input_data.load_test(test)[1] if test else None
    for path in save(((X, Y), (X_test, None)), args.out, zip_too=not args.no_zip):
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB)")
    print(f"X {X.shape} Y {Y.shape} from {train}; "
          f"X_test {None if X_test is None else X_test.shape} from {test}")
    return 0


if __name__ == "__main__":
    cli.run(main)
