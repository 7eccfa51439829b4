"""Finding Kaggle's files in a folder and reading their bytes: a .csv, a .zip or Kaggle's
all-in-one download, within a size limit checked before anything is read; a file's sha256."""
import io
import os
import zipfile
from pathlib import Path

import cli
from dataset.kaggle_format import DataError


def file_sha256(path):
    """The hex sha256 of a file's bytes: what a run's data, a converted model and a cache are
    keyed by (never a modification time)."""
    import hashlib
    digest = hashlib.sha256()
    with open(path, "rb") as f:                    # (hashlib.file_digest is Python 3.11+)
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


KAGGLE_BUNDLE = "facial-keypoints-detection.zip"


def find_kaggle_file(stem, data_dir="data"):
    """data/<stem>.csv, data/<stem>.zip, or Kaggle's bundle zip; None if none is there."""
    data_dir = Path(data_dir)
    for candidate in (data_dir / f"{stem}.csv", data_dir / f"{stem}.zip", data_dir / KAGGLE_BUNDLE):
        if candidate.is_file():
            return candidate
    return None


# Limits checked before anything is read into memory. Kaggle's training.csv is 238 MB and its
# test.csv 60 MB; parsing holds about twice the file in memory, so a 2 GB file (or a zip bomb)
# is refused with a message that says how to raise the limit, instead of exhausting memory.
MAX_CSV_MB_VARIABLE = "FKD_MAX_CSV_MB"
DEFAULT_MAX_CSV_MB = 512
MAX_ZIP_DEPTH = 2     # Kaggle's bundle zip holds training.zip, which holds training.csv


def max_csv_bytes():
    """The largest CSV (or zip member) this module reads: $FKD_MAX_CSV_MB megabytes, default 512."""
    text = os.environ.get(MAX_CSV_MB_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_CSV_MB * 2**20
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = float("nan")
    if not (megabytes > 0 and megabytes < 2**40):
        raise cli.UsageError(f"{MAX_CSV_MB_VARIABLE}={text!r}: must be a number of megabytes above 0")
    return int(megabytes * 2**20)


def too_big(source, size, what="the file"):
    limit = max_csv_bytes()
    return DataError(f"{source}: {what} is {size / 2**20:,.1f} MB, above the {limit / 2**20:,.0f} MB "
                     f"limit (Kaggle's training.csv is 238 MB); to read it anyway, set "
                     f"{MAX_CSV_MB_VARIABLE}=<megabytes> in the environment")


def read_bytes(path, stem=None):
    """The CSV's bytes, unzipping (also a zip inside Kaggle's bundle zip) when needed; the size
    limit is checked before reading, zip members by their declared and their actual size."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a CSV or zip file")
    size = path.stat().st_size
    is_zip = path.suffix.lower() == ".zip"
    # A zip is read whole (its members are bounded below), so the same limit holds for it.
    if size > max_csv_bytes():
        raise too_big(path, size)
    if not is_zip:
        with open(path, "rb") as f:
            return f.read(), str(path)
    stem = stem or path.stem
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_from_zip(archive, stem, str(path), depth=1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError) as error:
        raise DataError(f"{path}: not a readable zip file ({cli.one_line(error)})") from None
    except OSError as error:
        if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise DataError(f"{path}: not a readable zip file ({error.strerror or error})") from None


def _read_member(archive, name, source):
    """One zip member's bytes, refusing a member whose declared or actual size is above the limit
    (a zip bomb declares a small size or none and inflates to gigabytes)."""
    limit = max_csv_bytes()
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise too_big(f"{source}:{name}", info.file_size, "this zip member, unpacked,")
    with archive.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise too_big(f"{source}:{name}", len(data), "this zip member, unpacked,")
    return data


def _read_from_zip(archive, stem, source, depth):
    names = [n for n in archive.namelist() if not n.endswith("/") and "__MACOSX" not in n]
    by_base = {os.path.basename(n): n for n in names}
    if f"{stem}.csv" in by_base:
        name = by_base[f"{stem}.csv"]
        return _read_member(archive, name, source), f"{source}:{name}"
    if f"{stem}.zip" in by_base:  # Kaggle's bundle holds training.zip, test.zip, ...
        name = by_base[f"{stem}.zip"]
        if depth >= MAX_ZIP_DEPTH:
            raise DataError(f"{source}:{name}: a zip inside a zip inside a zip; at most "
                            f"{MAX_ZIP_DEPTH} levels are read (Kaggle's bundle, then {stem}.zip)")
        with zipfile.ZipFile(io.BytesIO(_read_member(archive, name, source))) as inner:
            return _read_from_zip(inner, stem, f"{source}:{name}", depth + 1)
    csvs = [n for n in names if n.lower().endswith(".csv")]
    if len(csvs) == 1:
        return _read_member(archive, csvs[0], source), f"{source}:{csvs[0]}"
    listing = ", ".join(names[:10]) + (f", ... ({len(names)} files)" if len(names) > 10 else "")
    raise DataError(f"{source}: no {stem}.csv inside (it holds: {listing or 'nothing'})")


def kaggle_files(data_dir="data", allow_synthetic=True):
    """Paths of training/test/lookup in data_dir (None where absent), and whether they are the
    synthetic faces of data_dir/synthetic/ (used, when allow_synthetic, if Kaggle's are absent).

    This never writes synthetic faces: `synthetic_faces.kaggle_files` does, for the callers
    that want them (input_data is below synthetic_faces and does not import it)."""
    found = {stem: find_kaggle_file(stem, data_dir) for stem in KAGGLE_STEMS}
    synthetic_dir = Path(data_dir) / "synthetic"
    if found["training"] is not None or not allow_synthetic or not (synthetic_dir / "training.csv").is_file():
        return found, False
    return {stem: find_kaggle_file(stem, synthetic_dir) for stem in found}, True


KAGGLE_STEMS = ("training", "test", "IdLookupTable")
