"""Kaggle Facial Keypoints data: CSVs to arrays, and real photos into the same 96x96 frame.

    import input_data
    X, Y = input_data.load("data/training.csv")     # X (N, 96, 96, 1) in [0, 1]; Y (N, 30) = (y - 48) / 48
    ids, X_test = input_data.load_test("data/test.csv")

This module is the project's one preprocessing path: every tool (training, evaluation,
prediction, submission) reads images with `read_gray`, crops them with `Frame.crop` and
scales them with `images_to_unit` / `keypoints_to_unit`, so a face means the same thing
everywhere.

Command line:
    python input_data.py summary [--data DIR]     # describe the Kaggle files in data/ (or synthetic faces)
    python input_data.py convert-68 --csv LABELS.csv --images DIR --out OUT.csv
"""
import argparse
import collections
import csv
import io
import os
import re
import time
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

import cli
import label_check

IMAGE_SIZE = 96
# What a folder of photos is searched for (predict.py, recognize.py): every still format Pillow
# reads that people keep photos in. A file given by name is read whatever its suffix.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".pgm", ".ppm", ".pbm", ".tif",
                              ".tiff", ".webp"})
N_PIXELS = IMAGE_SIZE * IMAGE_SIZE

# The 15 keypoints in Kaggle's column order. 'left' is the subject's left, which is on the
# right of the image: left_eye_center_x is about 66, right_eye_center_x about 30.
KEYPOINT_NAMES = [
    "left_eye_center", "right_eye_center",
    "left_eye_inner_corner", "left_eye_outer_corner",
    "right_eye_inner_corner", "right_eye_outer_corner",
    "left_eyebrow_inner_end", "left_eyebrow_outer_end",
    "right_eyebrow_inner_end", "right_eyebrow_outer_end",
    "nose_tip",
    "mouth_left_corner", "mouth_right_corner",
    "mouth_center_top_lip", "mouth_center_bottom_lip",
]
COLUMNS = [f"{name}_{axis}" for name in KEYPOINT_NAMES for axis in "xy"]

# Columns that trade places when the image is mirrored left-right (Nouri's flip_indices).
FLIP_INDICES = [(0, 2), (1, 3), (4, 8), (5, 9), (6, 10), (7, 11),
                (12, 16), (13, 17), (14, 18), (15, 19), (22, 24), (23, 25)]


def flip_indices(cols=None):
    """Left/right swap pairs, as positions in `cols` (default all 30), found by name."""
    cols = list(COLUMNS if cols is None else cols)
    pairs = []
    for i, name in enumerate(cols):
        if "left" in name:
            mirror = name.replace("left", "right")
            if mirror in cols:
                pairs.append((i, cols.index(mirror)))
    return pairs


def one_sided(cols):
    """The columns of `cols` whose left/right partner is not in `cols`: the mirror of a face
    turns its left eye into a right eye, so such a set cannot be flipped (augmentation, flip TTA)."""
    paired = {i for pair in flip_indices(cols) for i in pair}
    return [c for i, c in enumerate(cols) if ("left" in c or "right" in c) and i not in paired]


def file_sha256(path):
    """The hex sha256 of a file's bytes: what a run's data, a converted model and a cache are
    keyed by (never a modification time)."""
    import hashlib
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class DataError(cli.InputError):
    """Bad input data; the message names the file, the row and the problem."""


# ---------------------------------------------------------------------------------------
# Scaling: the one definition of what the network sees.

def images_to_unit(images):
    """uint8 (N, 96, 96) -> float32 (N, 96, 96, 1) in [0, 1]."""
    return (np.asarray(images, np.float32) / 255.0)[..., None]


def keypoints_to_unit(keypoints):
    """Pixel coordinates in the 96-px frame -> (y - 48) / 48, roughly [-1, 1]."""
    return ((np.asarray(keypoints, np.float32) - 48.0) / 48.0).astype(np.float32)


def keypoints_to_pixels(y):
    """Inverse of keypoints_to_unit."""
    return np.asarray(y, np.float32) * 48.0 + 48.0



MIRROR_AXIS_EXPECTED = f"a number of pixels from 0 to {IMAGE_SIZE} (the labels' mirror axis)"


def is_mirror_axis(value):
    """A mirror axis a saved model may carry (model.json, state.json, the ONNX metadata): a
    finite number of pixels within the 96-px frame. Flip TTA mirrors keypoints about it, so
    NaN, 1e300 or -5 would turn every prediction into garbage."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        value = float(value)
    except OverflowError:                      # an integer too large for a float
        return False
    return bool(np.isfinite(value)) and 0 <= value <= IMAGE_SIZE

# ---------------------------------------------------------------------------------------
# Finding and reading Kaggle's files (.csv, .zip, or Kaggle's all-in-one download).

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


def _too_big(source, size, what="the file"):
    limit = max_csv_bytes()
    return DataError(f"{source}: {what} is {size / 2**20:,.1f} MB, above the {limit / 2**20:,.0f} MB "
                     f"limit (Kaggle's training.csv is 238 MB); to read it anyway, set "
                     f"{MAX_CSV_MB_VARIABLE}=<megabytes> in the environment")


def _read_bytes(path, stem=None):
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
        raise _too_big(path, size)
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
        raise _too_big(f"{source}:{name}", info.file_size, "this zip member, unpacked,")
    with archive.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise _too_big(f"{source}:{name}", len(data), "this zip member, unpacked,")
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


class Table(NamedTuple):
    """A Kaggle-format CSV, parsed. Keypoints are pixel coordinates (NaN where missing)."""
    images: np.ndarray          # uint8 (N, 96, 96)
    columns: dict               # column name -> array of str (all non-Image columns)
    source: str                 # file name for messages


# The columns a Kaggle-format CSV may have: training.csv's 30 keypoints and Image, test.csv's
# ImageId and Image. Anything else is a different file or a damaged header, and is refused.
KNOWN_COLUMNS = frozenset(COLUMNS) | {"Image", "ImageId"}


def _decode(value, source, row, column):
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{source}, row {row}, column {column}: byte 0x{value[error.start]:02x} at "
                        f"position {error.start + 1} is not valid UTF-8 text") from None


def _parse_header(line, source):
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{source}: the header (line 1) is not UTF-8 text (byte 0x{line[error.start]:02x} "
                        f"at position {error.start + 1}); is this a CSV file?") from None
    header = [h.strip().strip('"') for h in text.split(",")]
    shown = ", ".join(header[:35]) + (f", ... ({len(header)} columns)" if len(header) > 35 else "")
    if "Image" not in header:
        raise DataError(f"{source}: no 'Image' column (the header has: {shown})")
    repeated = sorted(h for h, n in collections.Counter(header).items() if n > 1)
    if repeated:
        raise DataError(f"{source}: column{'s' if len(repeated) > 1 else ''} {', '.join(repeated)} "
                        f"{'appear' if len(repeated) > 1 else 'appears'} more than once in the header; "
                        "each column must appear once")
    unknown = [h for h in header if h not in KNOWN_COLUMNS]
    if unknown:
        present = set(header)
        missing = [c for c in COLUMNS if c not in present]
        hint = f"; missing keypoint columns {', '.join(missing)}" if missing and "ImageId" not in header else ""
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise DataError(f"{source}: unknown column{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(map(repr, unknown[:10]))}{more}{hint} (a Kaggle-format CSV has the 30 "
                        "keypoint columns of input_data.COLUMNS and Image, or ImageId and Image)")
    return header


def read_table(path, stem=None):
    """Parse any Kaggle-format CSV (training.csv, test.csv, a converted set) into a Table."""
    data, source = _read_bytes(path, stem)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if not data.strip():
        raise DataError(f"{source}: the file is empty")
    if b"\0" in data[:65536]:
        raise DataError(f"{source}: holds NUL bytes; not a CSV text file")
    lines = data.split(b"\n")
    del data  # the lines hold a copy; keep memory near twice the file at most
    header = _parse_header(lines[0], source)
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) < 2:
        raise DataError(f"{source}: no data rows after the header")

    n_rows, n_fields = len(lines) - 1, len(header)
    image_at = header.index("Image")
    names = [name for name in header if name != "Image"]
    fields = {name: [] for name in names}
    images = np.empty((n_rows, N_PIXELS), np.uint8)
    for first in range(0, n_rows, _CHUNK_ROWS):
        chunk = []
        for row in range(first + 1, min(first + _CHUNK_ROWS, n_rows) + 1):
            parts = lines[row].split(b",")
            lines[row] = None  # free each line once parsed
            if len(parts) != n_fields:
                raise DataError(f"{source}, row {row}: {len(parts)} fields, expected {n_fields} "
                                f"(line {row + 1}; a truncated file or a comma in a value?)")
            chunk.append(parts.pop(image_at).strip().strip(b'"'))
            for name, value in zip(names, parts):
                fields[name].append(value)
        images[first:first + len(chunk)] = _parse_chunk(chunk, first, source)
    columns = {name: np.array([_decode(v.strip().strip(b'"'), source, row, name)
                               for row, v in enumerate(values, start=1)], dtype=object)
               for name, values in fields.items()}
    return Table(images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE), columns, source)


# Rows are parsed in chunks so that memory stays small and the work stays in the CPU cache.
_CHUNK_ROWS = 128
_PAD = 4  # spaces before the text, so looking 4 bytes back from any token stays inside


def _parse_chunk(fields, first_row, source):
    """Parse space-separated integers 0-255 with numpy, ~10x faster than np.fromstring per row.

    Every number ends where a digit is followed by a space; its value is read from the (at
    most 3) bytes before that end. ASCII helps: for '0'..'9' (0x30-0x39) `byte & 15` is the
    digit and `byte >> 4 & 1` is 1, while a space (0x20) gives 0 for both.
    """
    for i, field in enumerate(fields):
        if not field or field.lower() in (b"nan", b"na", b"null"):
            raise DataError(f"{source}, row {first_row + i + 1}: the Image is missing (empty/NaN)")
    lengths = np.fromiter(map(len, fields), np.int64, len(fields))
    row_stops = _PAD + np.cumsum(lengths + 1) - 1          # one past each row's last byte
    text = np.frombuffer(b" " * _PAD + b" ".join(fields) + b" ", np.uint8)

    is_space = text == 32
    if not (is_space | ((text - np.uint8(48)) < 10)).all():
        bad = ~(is_space | ((text - np.uint8(48)) < 10))
        raise _pixel_error(fields, row_stops, int(np.argmax(bad)), source, first_row)

    ends = np.flatnonzero(~is_space[:-1] & is_space[1:]) + 1
    counts = np.diff(np.searchsorted(ends, row_stops, side="right"), prepend=0)
    if (counts != N_PIXELS).any():
        i = int(np.argmax(counts != N_PIXELS))
        raise DataError(f"{source}, row {first_row + i + 1}: the Image has {counts[i]} pixel "
                        f"values, expected {N_PIXELS} (96 x 96)")

    last, middle, first = text[ends - 1], text[ends - 2], text[ends - 3]
    has_middle, has_first = (middle >> 4) & 1, (middle >> 4) & (first >> 4) & 1
    if (has_first & (text[ends - 4] >> 4)).any():      # a fourth digit: > 255 or zero-padded
        at = int(ends[np.argmax(has_first & (text[ends - 4] >> 4))]) - 1
        raise _pixel_error(fields, row_stops, at, source, first_row)
    values = (last & 15).astype(np.uint16)
    values += (middle & 15) * has_middle * np.uint16(10)
    values += (first & 15) * has_first * np.uint16(100)
    if values.max() > 255:
        at = int(ends[np.argmax(values)]) - 1
        raise _pixel_error(fields, row_stops, at, source, first_row)
    return values.astype(np.uint8).reshape(len(fields), N_PIXELS)


def _pixel_error(fields, row_stops, at, source, first_row):
    """Describe the bad pixel token around byte `at` of the chunk's padded text."""
    i = int(np.searchsorted(row_stops, at, side="right"))
    row_start = int(row_stops[i]) - len(fields[i])
    field, offset = fields[i], at - row_start
    start = field.rfind(b" ", 0, offset) + 1
    end = field.find(b" ", offset)
    token = field[start:end if end >= 0 else len(field)].decode("utf-8", "replace")
    pixel = len(field[:start].split()) + 1
    where = f"{source}, row {first_row + i + 1}, pixel {pixel}"
    try:
        number = float(token)
    except ValueError:
        return DataError(f"{where}: pixel value {token!r} is not a number")
    if not 0 <= number <= 255:
        return DataError(f"{where}: pixel value {token} is out of range 0-255")
    return DataError(f"{where}: pixel value {token!r} is not a plain integer 0-255")


# A keypoint coordinate as a CSV writes it: plain ASCII decimal ('66.03', '-1.5', '1e-3'), or
# empty / NaN / NA / null for a missing one. Python's float() also reads '6_6.5' (as 66.5), other
# scripts' digits and 'inf': typos or other tools' text, refused as strictly as the pixels are.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_MISSING_TEXT = frozenset({"", "nan", "na", "null"})


def parse_coordinate(text):
    """One keypoint coordinate's text -> float (NaN when missing); ValueError when it is not a
    plain decimal number."""
    text = text.strip()
    if text.lower() in _MISSING_TEXT:
        return np.nan
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"{text!r} is not a plain decimal number (ASCII digits, one '.', an optional "
                         "exponent)")
    return float(text)


def _coordinates(values, source, column, first_row=1):
    """A column's texts -> float32 array, or DataError naming the file, row and column."""
    out = np.empty(len(values), np.float32)
    for i, value in enumerate(values):
        try:
            out[i] = parse_coordinate(value)
        except ValueError as error:
            raise DataError(f"{source}, row {i + first_row}, column {column}: {error}") from None
    return out


def _check_in_frame(out, cols, source):
    bad = ~np.isnan(out) & ((out < -IMAGE_SIZE) | (out > 2 * IMAGE_SIZE))
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise DataError(f"{source}, row {i + 1}, column {cols[j]}: {out[i, j]} is far outside "
                        "the 96-pixel frame")
    return out


def _keypoint_matrix(table, cols):
    """The named columns of a Table as float32 pixel coordinates, NaN where empty."""
    missing = [c for c in cols if c not in table.columns]
    if missing:
        unexpected = [c for c in table.columns if c not in COLUMNS and c != "ImageId"]
        hint = f"; columns not in Kaggle's format: {', '.join(unexpected)}" if unexpected else ""
        raise DataError(f"{table.source}: missing keypoint columns {', '.join(missing)}{hint}")
    out = np.empty((len(table.images), len(cols)), np.float32)
    for j, col in enumerate(cols):
        out[:, j] = _coordinates(table.columns[col], table.source, col)
    return _check_in_frame(out, cols, table.source)


def read_labels(path):
    """The 30 keypoint columns of a Kaggle-format CSV, with or without its Image column (e.g. the
    keypoint table of Kaggle's training.csv): float32 (N, 30) pixels, NaN where missing."""
    data, source = _read_bytes(path, "training")
    header = data[:data.find(b"\n") if b"\n" in data else len(data)]
    if b"Image" in [h.strip().strip(b'"') for h in header.split(b",")]:
        return read_keypoints(path)[1]
    if b"\0" in data[:65536]:
        raise DataError(f"{source}: holds NUL bytes; not a CSV text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataError(f"{source}, line {line}: byte 0x{data[error.start]:02x} is not valid UTF-8 "
                        "text") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        raise DataError(f"{source}: the file is empty")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DataError(f"{source}: missing keypoint columns {', '.join(missing[:5])}"
                        f"{' ...' if len(missing) > 5 else ''} (a keypoint table has Kaggle's 30 columns, "
                        "input_data.COLUMNS)")
    while len(rows) > 1 and not any(cell.strip() for cell in rows[-1]):
        rows.pop()
    rows = rows[1:]
    if not rows:
        raise DataError(f"{source}: no data rows after the header")
    for n, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise DataError(f"{source}, row {n}: {len(row)} fields, expected {len(header)}")
    out = np.empty((len(rows), len(COLUMNS)), np.float32)
    for j, col in enumerate(COLUMNS):
        at = header.index(col)
        out[:, j] = _coordinates([row[at] for row in rows], source, col)
    return _check_in_frame(out, COLUMNS, source)


def read_keypoints(path, cols=None, stem="training"):
    """uint8 images (N, 96, 96) and float32 keypoints (N, k) in pixels, NaN where missing."""
    table = read_table(path, stem)
    return table.images, _keypoint_matrix(table, list(COLUMNS if cols is None else cols))


def load(path, cols=None, complete_only=True):
    """Kaggle's training.csv (or .zip, or a converted set) as network-ready arrays.

    X: float32 (N, 96, 96, 1) in [0, 1]. Y: float32 (N, k) = (y - 48) / 48 for the columns
    `cols` (default all 30). complete_only drops rows missing any of those columns (2,140 of
    Kaggle's 7,049 rows keep all 30); with complete_only=False missing values are NaN.
    """
    images, keypoints = read_keypoints(path, cols)
    if complete_only:
        keep = ~np.isnan(keypoints).any(axis=1)
        images, keypoints = images[keep], keypoints[keep]
    return images_to_unit(images), keypoints_to_unit(keypoints)


def load_test(path):
    """Kaggle's test.csv -> (ImageIds int64 (N,), X float32 (N, 96, 96, 1) in [0, 1])."""
    table = read_table(path, "test")
    if "ImageId" not in table.columns:
        raise DataError(f"{table.source}: no 'ImageId' column")
    ids = []
    for row, value in enumerate(table.columns["ImageId"], start=1):
        try:
            ids.append(int(value))
        except ValueError:
            raise DataError(f"{table.source}, row {row}: ImageId {value!r} is not an integer") from None
        if not 1 <= ids[-1] <= MAX_IMAGE_ID:   # an int64 holds them (Kaggle's run 1..1783)
            raise DataError(f"{table.source}, row {row}: ImageId {value} is out of range; "
                            f"ImageIds are whole numbers from 1 to {MAX_IMAGE_ID}")
    return np.array(ids, np.int64), images_to_unit(table.images)


MAX_IMAGE_ID = 2**63 - 1


# ---------------------------------------------------------------------------------------
# Writing Kaggle-format CSVs (converted photos, synthetic faces, benchmarks).

_PIXEL_TEXT = [str(v).encode() for v in range(256)]


def format_pixels(image):
    """uint8 (96, 96) -> b'238 236 ...' as in Kaggle's Image column."""
    return b" ".join(map(_PIXEL_TEXT.__getitem__, np.asarray(image, np.uint8).ravel().tolist()))


def write_csv(path, images, keypoints=None, image_ids=None):
    """Write training-style (30 keypoint columns + Image) or test-style (ImageId + Image) CSV.

    Written to a temporary file and renamed, so a crash never leaves half a file behind.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"images must be uint8 (N, 96, 96), got {images.dtype} {images.shape}")
    header = ([] if image_ids is None else ["ImageId"]) + ([] if keypoints is None else COLUMNS)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as out:
            out.write((",".join(header + ["Image"]) + "\n").encode())
            for i, image in enumerate(images):
                cells = [] if image_ids is None else [str(int(image_ids[i]))]
                if keypoints is not None:
                    cells += ["" if np.isnan(v) else f"{v:.4f}" for v in keypoints[i]]
                out.write(",".join(cells).encode() + (b"," if cells else b"") + format_pixels(image) + b"\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)   # a full disk must not stay full of half a CSV
        raise
    return path


# ---------------------------------------------------------------------------------------
# Real photos: 8-bit grayscale, and the square crop that becomes the 96x96 Kaggle frame.

def read_gray(path, exif=True):
    """Any image file -> uint8 (H, W) grayscale. EXIF orientation applied unless exif=False."""
    from PIL import Image, ImageOps
    try:
        with Image.open(path) as image:
            image.load()
            if exif:
                image = ImageOps.exif_transpose(image)
            return to_gray8(image)
    except Image.DecompressionBombError as error:
        # PIL refuses images above ~179 megapixels: a decompression bomb, or a photo far larger
        # than a face needs. A DataError is a ValueError: callers that skip bad photos skip it.
        raise DataError(f"{path}: {cli.one_line(error)}") from None


def to_gray8(image):
    """A PIL image of any mode (RGB, RGBA, CMYK, P, 16-bit, float) -> uint8 (H, W)."""
    from PIL import Image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, np.float64)
        top = 1.0 if image.mode == "F" and pixels.max() <= 1.0 else (65535.0 if pixels.max() > 255 else 255.0)
        return np.clip(np.round(pixels / top * 255.0), 0, 255).astype(np.uint8)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent parts become white, as the photo looks on a page.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "L":
        image = image.convert("RGB").convert("L")   # ITU-R 601 luma, as OpenCV's cvtColor
    return np.asarray(image, np.uint8)


class Frame(NamedTuple):
    """A square in a photo (centre and side, in photo pixels) that becomes the 96x96 frame.

    frame = (photo - corner) * 96 / side, with corner = centre - side / 2: the square's
    top-left corner goes to (0, 0) and its centre to (48, 48), for pixels and keypoints alike.
    """
    cx: float
    cy: float
    side: float

    @property
    def scale(self):
        return IMAGE_SIZE / self.side

    @property
    def corner(self):
        return np.array([self.cx - self.side / 2, self.cy - self.side / 2])

    def to_frame(self, points):
        """(..., 2) photo pixel coordinates -> 96-px frame coordinates."""
        return (np.asarray(points, np.float64) - self.corner) * self.scale

    def to_photo(self, points):
        """(..., 2) frame coordinates -> photo pixel coordinates."""
        return np.asarray(points, np.float64) / self.scale + self.corner

    def crop(self, gray):
        """uint8 (H, W) photo -> uint8 (96, 96) crop; outside the photo, edges are replicated.

        Shrinking averages areas: warp (bilinear) to a whole multiple f x 96, where the warp
        barely resamples, then average f x f blocks. Enlarging is bilinear. The block average
        puts output pixel u at u * f + (f - 1) / 2 of the big warp, hence the offset below.
        """
        import cv2
        if not (np.isfinite([self.cx, self.cy, self.side]).all() and self.side > 0):
            raise ValueError(f"cannot crop a square at ({self.cx}, {self.cy}) of side {self.side}")
        gray = np.asarray(gray)
        if gray.ndim != 2 or gray.dtype != np.uint8 or min(gray.shape) < 1:
            raise ValueError(f"cannot crop a {gray.dtype} image of shape {gray.shape}; expected uint8 (H, W)")
        if self.side > 64 * max(gray.shape):   # the warp below is ~side pixels square
            raise ValueError(f"cannot crop a square of side {self.side:g} from a {gray.shape[1]}x{gray.shape[0]} image")
        f = max(1, int(np.ceil(self.side / IMAGE_SIZE)))
        k = f * self.scale
        offset = (f - 1) / 2 - k * self.corner
        matrix = np.array([[k, 0, offset[0]], [0, k, offset[1]]])
        size = IMAGE_SIZE * f
        warped = cv2.warpAffine(gray, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        if f > 1:
            warped = cv2.resize(warped, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
        return warped


# ---------------------------------------------------------------------------------------
# 68-point (iBUG / dlib order) landmarks -> Kaggle's 15 keypoints and frame.

# For each Kaggle keypoint, the 0-based 68-point indices whose mean it is.
FROM_68 = {
    "left_eye_center": range(42, 48), "right_eye_center": range(36, 42),
    "left_eye_inner_corner": [42], "left_eye_outer_corner": [45],
    "right_eye_inner_corner": [39], "right_eye_outer_corner": [36],
    "left_eyebrow_inner_end": [22], "left_eyebrow_outer_end": [26],
    "right_eyebrow_inner_end": [21], "right_eyebrow_outer_end": [17],
    "nose_tip": [30],
    "mouth_left_corner": [54], "mouth_right_corner": [48],
    "mouth_center_top_lip": [51], "mouth_center_bottom_lip": [57],
}
# The crop: 1.47 x the size of the inner-face box, shifted a little right and up. These make
# the mean keypoints of real faces match the mean of Kaggle's complete rows within ~2.5 px.
CROP_SCALE = 1.47
CROP_SHIFT = (0.01, -0.08)


def keypoints_from_68(points68):
    """(68, 2) -> (15, 2) in Kaggle's keypoint order."""
    points68 = np.asarray(points68, np.float64)
    return np.stack([points68[list(FROM_68[name])].mean(axis=0) for name in KEYPOINT_NAMES])


def frame_from_68(points68):
    """The Kaggle frame of a face: from the box of points 17..67 (the jaw line left out)."""
    inner = np.asarray(points68, np.float64)[17:]
    low, high = inner.min(axis=0), inner.max(axis=0)
    m = float(max(high - low))
    cx, cy = (low + high) / 2 + np.array(CROP_SHIFT) * m
    return Frame(float(cx), float(cy), CROP_SCALE * m)


def person_of(file_name):
    """'Abdel_Aziz_Al-Hakim_01.jpg' -> 'Abdel_Aziz_Al-Hakim' (the name up to its last '_')."""
    return Path(file_name).stem.rpartition("_")[0] or Path(file_name).stem


def convert_68(labels_csv, images_dir, out_csv, progress=True, overwrite=True):
    """Turn a 68-landmark photo set into a Kaggle-format training CSV plus OUT.sources.csv.

    Returns (rows written, list of (label row, file, reason) for skipped faces). A row that is
    no face in its photo (unreadable, a point, off the photo) is skipped; the two outputs are
    written together or not at all, and never over the labels or among the photos (nor over
    existing files with overwrite=False).
    """
    from PIL import Image
    from tqdm import tqdm
    labels_csv, images_dir, out_csv = Path(labels_csv), Path(images_dir), Path(out_csv)
    # Before the slow part: outputs that can be written, and never over the labels or photos.
    cli.check_outputs([("--out", out_csv), ("--out's sources file", sources_path(out_csv))],
                      [("--csv", labels_csv), ("--images", images_dir)], overwrite)
    size = labels_csv.stat().st_size
    if size > max_csv_bytes():
        raise _too_big(labels_csv, size)
    try:
        with open(labels_csv, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as error:
        raise DataError(f"{labels_csv}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at "
                        f"offset {error.start}); expected a CSV of file names and 136 coordinates") from None
    except csv.Error as error:
        raise DataError(f"{labels_csv}: not a readable CSV ({error})") from None
    if not rows:
        raise DataError(f"{labels_csv}: the file is empty")
    if _is_header(rows[0]):  # the CVND files' ',0,1,...,135'; a file without one starts with a face
        rows = rows[1:]
    images, keypoints, sources, skipped = [], [], [], []
    for row_number, row in enumerate(tqdm(rows, desc="convert-68", unit="face", disable=not progress), 1):
        name = row[0] if row else ""
        try:
            points68 = _parse_68(row)
            # The labels name photos in --images: not /etc/... or ../elsewhere (links in it are fine)
            folder = os.path.abspath(images_dir)
            if not os.path.normpath(os.path.join(folder, name)).startswith(os.path.join(folder, "")):
                raise ValueError(f"{name!r} is not a file inside --images {images_dir}")
            gray = read_gray(images_dir / name, exif=False)  # labels were made on the raw pixels
            frame = _face_frame(points68, gray.shape)
            images.append(frame.crop(gray))
        except (ValueError, OSError, Image.DecompressionBombError) as error:
            skipped.append((row_number, name, cli.one_line(error)))
            continue
        keypoints.append(frame.to_frame(keypoints_from_68(points68)).ravel())
        sources.append((name, person_of(name)))
    if not images:
        raise DataError(f"{labels_csv}: no face could be converted ({len(skipped)} skipped"
                        f"{f'; row {skipped[0][0]}: {skipped[0][2]}' if skipped else ''})")

    def write_sources(path):
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["row", "file", "person"])
            writer.writerows((i, name, person) for i, (name, person) in enumerate(sources))
    # Both or neither: a CSV without its sources file would be split by rows, not by person.
    cli.write_all_atomically([
        (out_csv, lambda path: write_csv(path, np.stack(images), np.array(keypoints, np.float32))),
        (sources_path(out_csv), write_sources)])
    return len(images), skipped


def sources_path(out_csv):
    """OUT.sources.csv: the photo and person of each row of a converted OUT.csv."""
    return Path(out_csv).with_suffix(".sources.csv")


def _is_header(row):
    """A header row has no coordinates, or the column numbers 0, 1, ... as the CVND files do."""
    numbers = []
    for cell in row[1:]:
        try:
            numbers.append(float(cell))
        except ValueError:
            pass
    return bool(row) and (not numbers or numbers == list(range(len(row) - 1)))


def _face_frame(points68, shape):
    """The face's frame in a photo of shape (H, W), or ValueError (the row is skipped) when the
    landmarks cannot be a face in it: a crop of edge pixels or of one point is not a face."""
    inside = ((points68 >= 0) & (points68 < (shape[1], shape[0]))).all(axis=1)
    if inside.sum() < len(points68) / 2:
        raise ValueError(f"{(~inside).sum()} of the 68 landmarks lie outside the "
                         f"{shape[1]}x{shape[0]} photo")
    frame = frame_from_68(points68)
    if frame.side < CROP_SCALE:
        raise ValueError("the landmarks span less than a pixel (all at one point?)")
    return frame


def _parse_68(row):
    if len(row) != 1 + 136:
        raise ValueError(f"{len(row) - 1} coordinates, expected 136 (68 x, y pairs)")
    if not row[0]:
        raise ValueError("no file name")
    values = np.empty(136)
    for i, text in enumerate(row[1:]):
        try:
            values[i] = parse_coordinate(text)
        except ValueError as error:
            raise ValueError(f"coordinate {i + 1}: {error}") from None
    if not np.isfinite(values).all():
        raise ValueError("missing or non-finite coordinates")
    return values.reshape(68, 2)


# ---------------------------------------------------------------------------------------
# Command line.

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


def summarise(data_dir="data", plot_path=None):
    files, synthetic = kaggle_files(data_dir)
    if files["training"] is None:
        raise DataError(f"no Kaggle training data in {data_dir}/ (training.csv, training.zip or "
                        f"{KAGGLE_BUNDLE}) nor synthetic faces in {Path(data_dir) / 'synthetic'}/: put "
                        f"Kaggle's files there, or write synthetic ones with `python synthetic_faces.py "
                        f"--out {Path(data_dir) / 'synthetic'}`")
    started = time.perf_counter()
    images, keypoints = read_keypoints(files["training"])
    seconds = time.perf_counter() - started
    complete = ~np.isnan(keypoints).any(axis=1)
    print(f"{files['training']}{' (synthetic)' if synthetic else ''}: {len(images)} faces, "
          f"{complete.sum()} with all 15 keypoints, parsed in {seconds:.2f} s")
    print(f"{'keypoint':<26}{'present':>8}{'mean x':>9}{'mean y':>9}{'sd x':>7}{'sd y':>7}")
    for k, name in enumerate(KEYPOINT_NAMES):
        xy = keypoints[:, 2 * k:2 * k + 2]
        present = ~np.isnan(xy[:, 0])
        mean, sd = np.nanmean(xy, axis=0), np.nanstd(xy, axis=0)
        print(f"{name:<26}{present.sum():>8}{mean[0]:>9.1f}{mean[1]:>9.1f}{sd[0]:>7.1f}{sd[1]:>7.1f}")
    if files["test"] is not None:
        ids, _ = load_test(files["test"])
        print(f"{files['test']}: {len(ids)} test faces")
    if files["IdLookupTable"] is not None:
        lookup = read_lookup(files["IdLookupTable"])
        print(f"{files['IdLookupTable']}: {len(lookup)} values asked for, "
              f"{len(set(r[1] for r in lookup))} images")
    plot_path = Path(plot_path or Path(data_dir) / "samples.png")
    plot_samples(images[complete][:16], keypoints[complete][:16], plot_path)
    print(f"wrote {plot_path}")


def check_labels(path):
    """The rows of a keypoint table that cannot be a face (label_check.check): a list of
    (row from 1, photo name or None, reason), and the number of rows checked. The photo names
    come from PATH.sources.csv when convert-68 wrote one."""
    keypoints = read_labels(path)
    try:
        result = label_check.check(keypoints, KEYPOINT_NAMES)
    except ValueError as error:
        raise DataError(f"{path}: cannot check its labels: {error}") from None
    names = [None] * len(keypoints)
    sources = sources_path(path)
    if sources.is_file():
        with open(sources, newline="", encoding="utf-8", errors="replace") as f:
            files = [row.get("file") for row in csv.DictReader(f)]
        if len(files) == len(keypoints):
            names = files
    return [(flag.row + 1, names[flag.row], flag.reason) for flag in result.flags], result.checked


def print_label_check(path):
    flagged, checked = check_labels(path)
    print(f"{path}: {len(flagged)} of {checked} checked rows cannot be a face (threshold "
          f"{label_check.THRESHOLD:g} spreads; rows with fewer than {label_check.MIN_POINTS} keypoints "
          "are not checked)")
    for row, name, reason in flagged:
        print(f"{path}, row {row}{f' ({name})' if name else ''}: {reason}")
    return flagged


def write_without(path, out_csv, rows):
    """PATH's faces without the given rows (counted from 1) to OUT_CSV, and PATH.sources.csv's
    rows likewise to OUT.sources.csv when it exists: a training file with the flagged rows left
    out. Both are written or neither."""
    data, source = _read_bytes(path, "training")
    header = data[:data.find(b"\n") if b"\n" in data else len(data)]
    if b"Image" not in [h.strip().strip(b'"') for h in header.split(b",")]:
        raise DataError(f"{source}: has no Image column; --out writes faces to train on")
    del data
    images, keypoints = read_keypoints(path)
    keep = np.ones(len(images), bool)
    keep[np.asarray(rows, int) - 1] = False
    writes = [(out_csv, lambda tmp: write_csv(tmp, images[keep], keypoints[keep]))]
    if sources_path(path).is_file():
        with open(sources_path(path), newline="", encoding="utf-8") as f:
            sources = list(csv.DictReader(f))
        if len(sources) != len(images):
            raise DataError(f"{sources_path(path)}: {len(sources)} rows but {path} has {len(images)}")

        def write_sources(tmp):
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["row", "file", "person"])
                kept = (row for row, k in zip(sources, keep) if k)
                writer.writerows((i, row.get("file"), row.get("person")) for i, row in enumerate(kept))
        writes.append((sources_path(out_csv), write_sources))
    cli.write_all_atomically(writes)
    return int(keep.sum())


def read_lookup(path):
    """IdLookupTable.csv -> list of (RowId, ImageId, FeatureName)."""
    data, source = _read_bytes(path, "IdLookupTable")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        row = data[:error.start].count(b"\n")
        raise DataError(f"{source}, row {row}: byte 0x{data[error.start]:02x} is not valid UTF-8 text") from None
    del data
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    repeated = sorted(h for h, n in collections.Counter(header).items() if n > 1)
    if repeated:
        raise DataError(f"{source}: column{'s' if len(repeated) > 1 else ''} {', '.join(repeated)} "
                        f"{'appear' if len(repeated) > 1 else 'appears'} more than once in the header")
    missing = [c for c in ("RowId", "ImageId", "FeatureName") if c not in header]
    if missing:
        raise DataError(f"{source}: no {', '.join(missing)} column (the header has: "
                        f"{', '.join(header[:10]) or 'nothing'}); expected RowId,ImageId,FeatureName,Location")
    out = []
    for row_number, row in enumerate(reader, start=1):
        try:
            out.append((int(row["RowId"]), int(row["ImageId"]), row["FeatureName"].strip()))
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{source}, row {row_number}: expected RowId,ImageId,FeatureName, "
                            f"got {row}") from None
    return out


def plot_samples(images, keypoints, path=None, titles=None, truth=None, title=None):
    """A 4x4 grid of faces with keypoints (pixels, red x) and optionally the true ones (green +).

    images: uint8 (N, 96, 96) or floats in [0, 1], with or without a channel axis.
    Writes `path` when given; returns the PNG bytes either way.
    """
    import io
    from matplotlib.figure import Figure  # no pyplot: works headless and inside notebooks
    images = np.asarray(images)
    images = images[..., 0] if images.ndim == 4 else images
    top = 255 if images.dtype == np.uint8 else 1
    fig = Figure(figsize=(6, 6))
    for i, ax in enumerate(fig.subplots(4, 4).flat):
        ax.axis("off")
        if i >= len(images):
            continue
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=top)
        if truth is not None:
            ax.scatter(truth[i, 0::2], truth[i, 1::2], s=10, c="lime", marker="+")
        ax.scatter(keypoints[i, 0::2], keypoints[i, 1::2], s=8, c="red", marker="x")
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        cli.write_atomically(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
    return buffer.getvalue()


def _existing_file(path, option):
    if not Path(path).exists():
        raise DataError(f"{option} {path}: no such file")
    if Path(path).is_dir():
        raise DataError(f"{option} {path}: is a folder, expected a file")
    return path


def _png_path(path, option, inputs=()):
    if path is not None:
        if Path(path).suffix.lower() != ".png":
            raise cli.UsageError(f"{option}: got {path!r}; must be a .png file name")
        cli.check_outputs([(option, path)], inputs)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("summary", help="describe the Kaggle files in --data (or data/synthetic/)")
    summary.add_argument("--data", default="data", help="folder with Kaggle's files (default data/)")
    summary.add_argument("--plot", default=None, help="where to write the sample grid (default DATA/samples.png)")
    convert = commands.add_parser("convert-68", help="68-landmark photos -> Kaggle-format training CSV")
    convert.add_argument("--csv", required=True, help="labels: file name, then x0,y0,...,x67,y67")
    convert.add_argument("--images", required=True, help="folder holding the photos")
    convert.add_argument("--out", required=True, help="output CSV (also writes OUT.sources.csv)")
    convert.add_argument("--plot", default=None, help="also write a 4x4 grid of converted faces")
    convert.add_argument("--overwrite", action="store_true", help="replace OUT.csv and OUT.sources.csv "
                         "when they exist (e.g. a Kaggle training.csv of the same name is never replaced without it)")
    check = commands.add_parser("check-labels", help="list the rows of a keypoint table that cannot be a "
                                "face (swapped left/right or keypoints, a keypoint far off)")
    check.add_argument("csv", help="Kaggle-format CSV or zip, with or without its Image column")
    check.add_argument("--out", help="also write CSV's faces without the flagged rows to OUT.csv "
                       "(and OUT.sources.csv): a training file with them left out")
    check.add_argument("--overwrite", action="store_true", help="replace OUT.csv and OUT.sources.csv")
    args = parser.parse_args(argv)
    max_csv_bytes()  # a bad $FKD_MAX_CSV_MB is a usage error before any work
    if args.command == "summary":
        if not Path(args.data).is_dir():
            raise DataError(f"--data {args.data}: not a folder")
        _png_path(args.plot or str(Path(args.data) / "samples.png"), "--plot")
        summarise(args.data, args.plot)
        return 0
    if args.command == "check-labels":
        _existing_file(args.csv, "check-labels")
        if args.out is not None:
            if Path(args.out).suffix.lower() != ".csv":
                raise cli.UsageError(f"--out: got {args.out!r}; must be a .csv file name")
            cli.check_outputs([("--out", args.out), ("--out's sources file", sources_path(args.out))],
                              [("CSV", args.csv), ("CSV's sources file", sources_path(args.csv))], args.overwrite)
        flagged = print_label_check(args.csv)
        if args.out is not None:
            kept = write_without(args.csv, args.out, [row for row, _, _ in flagged])
            print(f"wrote {args.out}: {kept} faces, {len(flagged)} flagged rows left out")
        return 0
    _existing_file(args.csv, "--csv")
    if not Path(args.images).is_dir():
        raise DataError(f"--images {args.images}: not a folder")
    if Path(args.out).suffix.lower() != ".csv":
        raise cli.UsageError(f"--out: got {args.out!r}; must be a .csv file name")
    _png_path(args.plot, "--plot", [("--csv", args.csv), ("--images", args.images)])
    started = time.perf_counter()
    written, skipped = convert_68(args.csv, args.images, args.out, overwrite=args.overwrite)
    for row, name, reason in skipped:
        print(f"skipped {args.csv} row {row} ({name or 'no file name'}): {reason}")
    print(f"wrote {args.out}: {written} faces, {len(skipped)} skipped, "
          f"in {time.perf_counter() - started:.1f} s")
    if written >= label_check.MIN_COMPLETE:
        print_label_check(args.out)
    if args.plot:
        images, keypoints = read_keypoints(args.out)
        plot_samples(images[:16], keypoints[:16], args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    cli.run(main)
