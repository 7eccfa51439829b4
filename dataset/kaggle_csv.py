"""Kaggle-format CSVs: training.csv, test.csv, a converted set and IdLookupTable.csv read into
arrays (pixels and keypoint numbers parsed strictly, every error naming the file, row and
column), and written back."""
import collections
import csv
import io
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dataset.files import read_bytes
from dataset.kaggle_format import (COLUMNS, IMAGE_SIZE, N_PIXELS, DataError, images_to_unit,
                                   keypoints_to_unit)


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
    data, source = read_bytes(path, stem)
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
    data, source = read_bytes(path, "training")
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


def read_lookup(path):
    """IdLookupTable.csv -> list of (RowId, ImageId, FeatureName)."""
    data, source = read_bytes(path, "IdLookupTable")
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
