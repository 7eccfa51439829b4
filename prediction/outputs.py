"""What a run writes: the CSV (one row per face), the overlays (a photo with its faces drawn),
the contact sheets (every face's crop with its keypoints) and their file names. Pictures are
drawn with OpenCV: a contact sheet of hundreds of faces takes milliseconds, not seconds."""
import csv
import itertools
import time
from datetime import datetime
from pathlib import Path

import numpy as np

import cli
from input_data import COLUMNS, IMAGE_SIZE
from prediction.images import shrunk, write_image
from prediction.inputs import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from prediction.options import LOW, LOW_CONFIDENCE, NO_FACE, OK

# The CSV's columns, exactly: the crop square (x0, y0) corner and side, turned by `roll` degrees
# (counter-clockwise in the photo) about its centre; the 30 keypoints; the confidence (0..1).
CSV_COLUMNS = (["file", "person", "frame", "face", "status", "x0", "y0", "size", "roll"]
               + list(COLUMNS) + ["confidence"])


def _number(value):
    return f"{value:.2f}"


def is_low(face, low_confidence):
    """A LOW face: below low_confidence (the run's bar; None: no bar), or unsure (only a cascade
    found it and BlazeFace does not confirm it: keypoints.Face)."""
    return bool((low_confidence is not None and face.confidence < low_confidence) or getattr(face, "unsure", False))


def _low_label(confidence):
    """What a low face is captioned with in the pictures: 'low 0.12', or 'low' (no confidence)."""
    return "low" if np.isnan(confidence) else f"low {confidence:.2f}"


def csv_rows(name, person, faces=None, status=OK, frame="", low_confidence=None):
    """The CSV rows of one photo (or one video frame): dicts keyed by CSV_COLUMNS. A face below
    low_confidence (the run's bar; None: no bar), or unsure (keypoints.Face), is a LOW row."""
    base = {"file": name.as_posix() if isinstance(name, Path) else str(name), "person": person,
            "frame": frame}
    if status != OK or not faces:
        return [{**base, "face": "", "status": status if status != OK else NO_FACE,
                 **{c: "" for c in CSV_COLUMNS[5:]}}]
    rows = []
    for index, face in enumerate(faces):
        x0, y0 = face.frame.corner
        low = is_low(face, low_confidence)
        row = {**base, "face": index, "status": LOW if low else OK, "x0": _number(x0), "y0": _number(y0),
               "size": _number(face.frame.side), "roll": f"{face.roll:.1f}"}
        row.update({c: _number(v) for c, v in zip(COLUMNS, np.asarray(face.keypoints).ravel())})
        row["confidence"] = "" if np.isnan(face.confidence) else f"{face.confidence:.3f}"
        rows.append(row)
    return rows


class CsvWriter:
    """The prediction CSV, written row by row and flushed at least every FLUSH_SECONDS: whatever
    happens later in the run, the rows already computed are on disk. Names that are not valid
    UTF-8 are written with backslash escapes."""
    FLUSH_SECONDS = 0.5

    def __init__(self, path, exclusive=False):
        self.path = Path(path)
        self.file = open(self.path, "x" if exclusive else "w", newline="", encoding="utf-8",
                         errors="backslashreplace")
        self.writer = csv.DictWriter(self.file, fieldnames=CSV_COLUMNS)
        self.writer.writeheader()
        self.file.flush()
        self.flushed = time.monotonic()
        self.rows = 0

    def write(self, rows):
        self.writer.writerows(rows)
        self.rows += len(rows)
        if time.monotonic() - self.flushed >= self.FLUSH_SECONDS:
            self.file.flush()
            self.flushed = time.monotonic()

    def close(self):
        self.file.close()


def write_csv(path, rows):
    """Write a whole prediction CSV."""
    writer = CsvWriter(path)
    try:
        writer.write(rows)
    finally:
        writer.close()
    return Path(path)


# ---------------------------------------------------------------------------------------
# Pictures (OpenCV: a contact sheet of hundreds of faces takes milliseconds, not seconds).

OVERLAY_MAX_SIDE = 1200
COLOURS = {"box": (255, 128, 0), "square": (0, 200, 0), "points": (0, 0, 255), "low": (0, 140, 255)}


def _square_corners(frame, roll):
    """The 4 corners of a face's crop square turned by roll about its centre (photo pixels)."""
    half = frame.side / 2
    corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    radians = np.deg2rad(roll)
    cos, sin = np.cos(radians), np.sin(radians)
    # counter-clockwise on screen with y down: x' = cos x + sin y, y' = -sin x + cos y
    turned = corners @ np.array([[cos, -sin], [sin, cos]])
    return turned + [frame.cx, frame.cy]


def draw_overlay(image, faces, low_confidence=LOW_CONFIDENCE, max_side=OVERLAY_MAX_SIDE):
    """BGR picture of the photo (gray, or RGB kept in colour) with each face's crop square
    (green; orange when it is low: is_low), index and keypoints (red),
    shrunk to at most max_side px (None: the picture's own size, as a video frame must keep)."""
    import cv2
    small, shrink = shrunk(image, max_side or max(image.shape[:2]))
    canvas = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR if small.ndim == 2 else cv2.COLOR_RGB2BGR)
    thick = max(1, int(round(max(canvas.shape[:2]) / 400)))
    for index, face in enumerate(faces):
        low = is_low(face, low_confidence)
        colour = COLOURS["low" if low else "square"]
        corners = (_square_corners(face.frame, face.roll) * shrink).round().astype(np.int32)
        cv2.polylines(canvas, [corners], True, colour, thick)
        label = f"{index}" + (f" {_low_label(face.confidence)}" if low else "")
        cv2.putText(canvas, label, (int(corners[0][0]) + 2, int(corners[0][1]) + 12 * thick),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, colour, thick)
        radius = max(1, int(round(face.frame.side * shrink / 60)))
        for x, y in np.asarray(face.keypoints) * shrink:
            cv2.circle(canvas, (int(round(x)), int(round(y))), radius, COLOURS["points"], -1)
    return canvas


def write_overlay(path, image, faces, low_confidence=LOW_CONFIDENCE):
    """The photo with its faces drawn (draw_overlay), written safely as a PNG."""
    return write_image(path, draw_overlay(image, faces, low_confidence))


SHEET_CELL = 192            # px per face on the contact sheet: the 96x96 crop at 2x
SHEET_COLUMNS = 8
SHEET_ROWS = 8              # faces per page = columns x rows


def _ascii(text, width):
    """cv2.putText draws ASCII only: other characters become '?'; long names keep their end."""
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in str(text))
    return text if len(text) <= width else "..." + text[-(width - 3):]


def sheet_page(crops, keypoints, titles, confidences=None, lows=None, columns=SHEET_COLUMNS):
    """One contact sheet page: a grid of the 96x96 crops at 2x with their keypoints (crop
    frame pixels), the title under each; the low faces (lows: one bool per face, is_low's;
    default none) framed in orange."""
    import cv2
    n = len(crops)
    columns = max(1, min(columns, n))
    rows = max(1, -(-n // columns))
    cell, caption = SHEET_CELL, 22
    page = np.full((rows * (cell + caption), columns * cell, 3), 255, np.uint8)
    confidences = [float("nan")] * n if confidences is None else confidences
    lows = [False] * n if lows is None else lows
    scale = cell / IMAGE_SIZE
    for k, (crop, points, title, confidence, low) in enumerate(zip(crops, keypoints, titles, confidences, lows)):
        top, left = (k // columns) * (cell + caption), (k % columns) * cell
        big = cv2.resize(np.asarray(crop, np.uint8), (cell, cell), interpolation=cv2.INTER_LINEAR)
        tile = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
        for x, y in np.asarray(points, np.float64):
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(tile, (int(round((x + 0.5) * scale - 0.5)), int(round((y + 0.5) * scale - 0.5))),
                           3, COLOURS["points"], -1, cv2.LINE_AA)
        if low:
            cv2.rectangle(tile, (1, 1), (cell - 2, cell - 2), COLOURS["low"], 3)
            cv2.putText(tile, _low_label(confidence), (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, COLOURS["low"], 1,
                        cv2.LINE_AA)
        page[top:top + cell, left:left + cell] = tile
        cv2.putText(page, _ascii(title, 26), (left + 3, top + cell + 15), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return page


def plot_faces(path, crops, keypoints, titles, confidences=None, per_page=SHEET_COLUMNS * SHEET_ROWS,
               low_confidence=LOW_CONFIDENCE):
    """Contact sheets of the faces: `path` itself when they fit on one page, else
    <stem>-1.jpg, <stem>-2.jpg, ... (per_page faces each). Returns the files written."""
    confidences = [float("nan")] * len(crops) if confidences is None else list(confidences)
    sheets = ContactSheets(path, per_page=per_page)
    sheets.add([(*entry, entry[3] < low_confidence) for entry in zip(crops, keypoints, titles, confidences)])
    return sheets.close()


class ContactSheets:
    """plot_faces page by page as the faces arrive: each page is written when it is full (a
    stopped run keeps its pages), the last on close(); `path` itself when there was one page."""

    def __init__(self, path, limit=None, per_page=SHEET_COLUMNS * SHEET_ROWS):
        self.path, self.limit, self.per_page = Path(path), limit, per_page
        self.pending, self.written, self.faces = [], [], 0

    def add(self, entries):
        """entries: [(crop, keypoints in the crop frame, title, confidence, low)]."""
        if self.limit is not None:
            entries = entries[:max(0, self.limit - self.faces)]
        self.faces += len(entries)
        self.pending.extend(entries)
        while len(self.pending) >= self.per_page:
            self._write(self.pending[:self.per_page])
            self.pending = self.pending[self.per_page:]

    def _write(self, entries):
        target = self.path.with_name(f"{self.path.stem}-{len(self.written) + 1}{self.path.suffix}")
        crops, points, titles, confidences, lows = zip(*entries)
        page = sheet_page(crops, points, titles, confidences, lows=lows)
        self.written.append(write_image(target, page))

    def close(self):
        """Write what is left; returns the files written."""
        if self.pending:
            self._write(self.pending)
            self.pending = []
        if len(self.written) == 1:
            self.written = [self.written[0].replace(self.path)]
        return self.written


def overlay_name(name):
    """overlays-<time>/<photo>.png for photo <photo>.jpg (the file's suffix replaced); a name
    with '..' or a root keeps only its plain parts, so nothing is written outside the folder."""
    parts = [part for part in Path(name).parts if part not in ("..", ".") and part != Path(name).anchor]
    path = Path(*parts) if parts else Path("photo")
    return path.with_suffix(".png") if path.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS \
        else path.with_name(path.name + ".png")


def new_csv(out, kind, timestamp=None, also=()):
    """A CsvWriter for out/<kind>-<stamp>.csv, created exclusively, and its stamp (date-time, then
    _2, _3 ... when a run of the same second, or one still running, has taken it): two runs never
    write into each other's files. also: other names (with {} for the stamp) that must be free."""
    base = timestamp or datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10000):
        stamp = base if n == 1 else f"{base}_{n}"
        if any((Path(out) / name.format(stamp)).exists() for name in also):
            continue
        try:
            return CsvWriter(Path(out) / f"{kind}-{stamp}.csv", exclusive=True), stamp
        except FileExistsError:
            continue
    raise cli.InputError(f"{out}: 10,000 outputs of the same second already there")


def drawn_names(items):
    """Each item's file under overlays-<stamp>/: <photo>.png, <video>.mp4, in the item's
    folder relative to --out (only the file name for one given by an absolute path outside it).
    Two that would share a name (a.jpg and a.png) keep their suffix (a.jpg.png), then a number."""
    names, used = [], set()
    for item in items:
        suffix = ".mp4" if item.is_video else ".png"
        base = overlay_name(item.path.name if Path(item.name).is_absolute() else item.name)
        candidates = itertools.chain([base.with_suffix(suffix), base.with_name(Path(item.name).name + suffix)],
                                     (base.with_name(f"{base.stem}-{n}{suffix}") for n in itertools.count(2)))
        target = next(c for c in candidates if c.as_posix().lower() not in used)
        used.add(target.as_posix().lower())
        names.append(target)
    return names
