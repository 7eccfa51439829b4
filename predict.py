"""Facial keypoints on real photos and videos: find the faces, crop them to the Kaggle frame,
predict, map the keypoints back into the photo, and write a CSV and pictures.

    python predict.py                              # every photo under faces/ (sample photos if empty)
    python predict.py PATH... [--out DIR]          # photos, folders, glob patterns, videos
    python predict.py --faces DIR                  # the same as `python predict.py DIR`
    python predict.py clip.mp4 [--no-smooth]       # keypoints per frame + an annotated copy
    python predict.py --camera 0 --max-frames 300  # a webcam

    import predict
    gray = predict.read_photo("faces/ada/1.jpg")    # uint8 (H, W), EXIF orientation applied
    frames = predict.detect_faces(gray)              # [input_data.Frame], largest first (upright)
    faces = predict.predict_keypoints(gray)          # [Face], rotated faces too
    faces[0].keypoints, faces[0].confidence          # (15, 2) photo pixels; 0..1

The network runs with onnxruntime from the ONNX file shipped beside the model (model.onnx beside
model.keras, made by `python export.py --format predictor`): no TensorFlow is imported, so one
photo takes well under a second from start to exit. docs/predict.md is the user's guide: what is
written, how faces are found (also turned ones), the confidence, speed and accuracy.

How a face is found and cropped (measured on the 2,820 YouTube Faces frames of ../shared/data,
bench/predict_accuracy.py and bench/predict_speed.py):
1. OpenCV's LBP frontal-face cascade on a copy of the photo shrunk to at most 96 px; only when it
   finds none, the Haar frontal-face cascade on copies of 96 px, then 160 px, then 240 px, then
   other cascades (FALLBACKS). When none finds a confident face, the same on copies of the photo
   turned by ROLLS in turn (a face turned by up to about 15 degrees from one of them is found).
2. The detector's box -> the Kaggle frame (input_data.frame_from_68's crop) by a transform fitted
   on the training people, one per cascade (calibrate_detector.py -> detector_calibration.json).
3. The network predicts the 15 keypoints in that 96x96 crop. Refinement: the face's roll (the
   eye line) and frame are re-estimated from them (frame_from_keypoints, also calibrated), and the
   network predicts again on the new, upright crop (REFINE_PASSES times; the mirrored crop too on
   the last). A face that still has a low confidence is tried from moved and resized squares.
"""
import argparse
import csv
import glob
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

import cli
import input_data
from input_data import COLUMNS, IMAGE_SIZE, KEYPOINT_NAMES, Frame

HERE = Path(__file__).resolve().parent
CALIBRATION_PATH = HERE / "detector_calibration.json"
DEFAULT_FACES_DIR = HERE / "faces"
# Where a user's own .keras, converted to ONNX on first use, is kept (keyed by its sha256).
CACHE_DIR = Path(os.environ.get("FKD_CACHE_DIR") or Path.home() / ".cache" / "facial-keypoints")
# FFmpeg (inside OpenCV) prints its own lines for a damaged video ("moov atom not found") before
# our one-line reason in the CSV; quiet unless the user sets it (read when cv2 is first imported).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

IMAGE_EXTENSIONS = input_data.IMAGE_EXTENSIONS
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".webm", ".mkv", ".m4v"})

# The CSV's columns, exactly: the crop square (x0, y0) corner and side, turned by `roll` degrees
# (counter-clockwise in the photo) about its centre; the 30 keypoints; the confidence (0..1).
CSV_COLUMNS = (["file", "person", "frame", "face", "status", "x0", "y0", "size", "roll"]
               + list(COLUMNS) + ["confidence"])

# The detector. calibrate_detector.py fits the box -> frame transform for these settings and
# records them in detector_calibration.json; change them only together with a re-calibration.
CASCADE = "haarcascade_frontalface_default.xml"
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 4
MIN_FACE = 24                # px in the shrunk copy: the cascade's own window
# The photo is shrunk so that its longest side is at most DETECT_SIDES[0]; only when no face is
# found there, at most DETECT_SIDES[1], and so on; the fallbacks run on the last. The smallest
# face found is MIN_FACE / side of the longest side: 25%, 15%, then 10%. Measured on 287 held-out
# CVND photos (one core): (96, 160), 4 neighbours: 6.6 ms a photo, 286 faces matched; the
# earlier (160, 240), 5 neighbours: 13.8 ms, 280 (the cascade's cost grows with the pixels).
# A first copy of 72 px was faster still (3.6 against 5.0 ms on 573 photos), but a face found
# there ends the search, and in knn_examples' kit_with_rose.jpg it found Kit and lost Rose.
DETECT_SIDES = (96, 160, 240)
# Before the Haar cascade: OpenCV's LBP frontal-face cascade (integer features: about 5x faster
# than Haar for the same pixels) on a copy at most LBP_SIDE px; the Haar cascade runs only when it
# finds nothing, or when none of its faces comes out confident. On the 573 held-out CVND photos
# it finds 484 faces, and detection takes 2.4 instead of 3.6 ms a photo, every face still
# matched (bench/predict_speed.py, docs/experiments.md). Its boxes sit differently from Haar's:
# calibrate_detector.py fits them their own box -> frame transform.
LBP_SIDE = 96
LBP_SCALE_FACTOR = 1.05
LBP_MIN_NEIGHBORS = 3
NEAR_LIMIT = 1.5             # see detect_boxes: a face under 36 px in its copy
# Tried in turn only when the cascade above finds no face: (cascade, min_neighbors, also on
# the mirrored photo). On the 2,820 CVND photos the frontal cascade finds no face in 42; the
# alt2 cascade with fewer neighbours finds 37 of those (bench/predict_accuracy.py).
FALLBACKS = (("haarcascade_frontalface_alt2.xml", 3, False),
             ("haarcascade_frontalface_default.xml", 2, False),
             ("haarcascade_profileface.xml", 3, True))
# Turned copies tried in turn (degrees counter-clockwise the face is turned) when the upright photo
# has no face. The cascade finds faces within about 15 degrees of upright, so 30-degree steps
# cover every roll; the common ones (a phone held sideways, a small tilt) come first.
ROLLS = (90, -90, 30, -30, 180, 60, -60, 120, -120, 150, -150)
# A face whose confidence is below LOW_CONFIDENCE is tried again from its detector frame scaled
# by these, and the most confident kept (the Haar box's size is off by 11% rms).
RETRY_SCALES = (0.75, 1.0, 1.33)
# ...each also moved by these fractions of its side: a head turned towards a profile sits off
# the centre of the detector's box (the face is on one side of the head).
RETRY_SHIFTS = ((0.0, 0.0), (0.15, 0.0), (-0.15, 0.0), (0.0, 0.12), (0.0, -0.12))
RETRY_BEST = 2               # of those, refined (one look each picks them)
RETRY_MARGIN = 0.03          # see _upright_or_turned
# Refinement re-crops upright when the keypoints' eye line is turned by more than this.
MIN_ROLL = 8.0

# Defaults chosen by measurement (bench/predict_accuracy.py, docs/predict.md).
# On 287 held-out photos (a v6 trained on the training people): refine 1 pass + flip on both
# passes (the earlier default) 6.85% of the IOD; 2 passes, flip on the last only 6.61%, for the
# same four network calls per face; 3 passes 6.64%.
REFINE = True
REFINE_PASSES = 2            # re-crops from the keypoints (refine=True)
FLIP_TTA = "final"           # the mirrored crop too, on the last pass only (True: on every pass)
# Below this confidence a face is marked in the pictures and turned copies of the photo are
# searched for a better one. The shipped model's bar, measured on held-out people with its recipe
# (docs/predict.md): faces 0.19-0.35 (1st-95th percentile); noise and flat crops under 0.1, the
# photos' corners under 0.18, upside-down and wrong faces 0.16-0.19. A model trained for fewer
# epochs is less sure of everything (95 epochs: faces 0.155-0.225, wanting 0.15).
LOW_CONFIDENCE = 0.2
# A run where more than this share of at least this many faces is below the bar says so: the
# bar, not the photos, is then likely wrong (the shipped model: 0.5% of held-out faces).
LOW_SHARE, LOW_SHARE_MIN_FACES = 0.5, 10

MAX_UNIT = 50.0              # |keypoint| in half-crop units: beyond this a model is broken
NETWORK_BATCH = 64           # crops per network call
PHOTO_GROUP = 8              # a folder's photos go to the network in groups of this many


class ModelError(cli.InputError):
    """The model, not a photo, is at fault (wrong input or output shapes, non-finite keypoints):
    the run stops with one line instead of marking every photo unreadable."""


class PhotoError(cli.InputError):
    """A file that cannot be read as a photo; the message names the file and the reason."""


class Face(NamedTuple):
    """One face in a photo. All coordinates are photo pixels (pixel index i = coordinate i)."""
    frame: Frame                  # the square that became the 96x96 crop (centre, side; photo px)
    box: Optional[tuple]          # the detector's box (x, y, w, h) in the upright copy, or None
    crop: np.ndarray              # uint8 (96, 96): what the network saw last
    keypoints: np.ndarray         # float (15, 2) in input_data.KEYPOINT_NAMES order
    confidence: float = float("nan")   # 0..1 from the heatmaps (NaN for a model without them)
    roll: float = 0.0             # degrees counter-clockwise the face (and its square) is turned


# ---------------------------------------------------------------------------------------
# Files.

STAMP = r"\d{8}-\d{6}(?:_\d+)?"      # run() names its outputs <kind>-<date>-<time>[_n]
_OWN_FILE = re.compile(rf"(?:plot|prediction|camera)-{STAMP}(?:-\d+)?\.(?:jpg|png|csv|mp4)", re.I)
_OWN_FOLDER = re.compile(rf"overlays-{STAMP}", re.I)


def is_own_output(rel):
    """This script's outputs, wherever they were written (a photo's folder can be a person's):
    plot-<stamp>.jpg, prediction-<stamp>.csv, camera-<stamp>.*, anything under overlays-<stamp>/.
    A photo of yours named plot-twist.jpg is not one of them."""
    parts = Path(rel).parts
    return bool(parts) and (bool(_OWN_FILE.fullmatch(parts[-1]))
                            or any(_OWN_FOLDER.fullmatch(part) for part in parts[:-1]))


def _is_input_file(path):
    """A regular file, or a broken link (it becomes an `unreadable` row rather than vanishing);
    not a pipe or a device, which reading would block on."""
    return path.is_file() or (path.is_symlink() and not path.exists())


def find_photos(folder, videos=False, unreadable=None):
    """Every image (and with videos, video) under `folder` as sorted (path relative to folder,
    person) pairs; the person is the first sub-folder's name ("" for files directly in folder).
    Follows linked folders, each real folder once and none that holds `folder` (a link to a
    parent would read the whole parent); leaves out this script's own outputs and hidden files
    and folders. Folders that cannot be listed are appended to `unreadable` as OSErrors."""
    folder = Path(folder)
    kinds = IMAGE_EXTENSIONS | (VIDEO_EXTENSIONS if videos else frozenset())
    found, visited = [], set()
    top = os.path.join(os.path.realpath(folder), "")
    for root, dirs, files in os.walk(folder, followlinks=True, onerror=None if unreadable is None else unreadable.append):
        real = os.path.realpath(root)
        if real in visited or (top.startswith(os.path.join(real, "")) and real != top.rstrip(os.sep)):
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(root, name)
            rel = path.relative_to(folder)
            if (name.startswith(".") or path.suffix.lower() not in kinds or is_own_output(rel)
                    or not _is_input_file(path)):
                continue
            found.append((rel, rel.parts[0] if len(rel.parts) > 1 else ""))
    return sorted(found, key=lambda item: item[0].as_posix())


def glob_inputs(pattern):
    """The photos and videos a glob pattern matches, sorted. `**` does not follow linked folders
    (pathlib's rule), so a link to a parent cannot make it run forever."""
    parts = Path(pattern).parts
    first = next(k for k, part in enumerate(parts) if glob.has_magic(part))
    base, rest = Path(*parts[:first]) if first else Path("."), Path(*parts[first:]).as_posix()
    try:
        matches = list(base.glob(rest)) if base.is_dir() else []
    except (OSError, ValueError):
        matches = []
    kinds = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    return sorted(m for m in matches if m.suffix.lower() in kinds and _is_input_file(m)
                  and not is_own_output(m))


class Item(NamedTuple):
    """One input: its path, its name in the CSV, its person."""
    path: Path
    name: str
    person: str

    @property
    def is_video(self):
        return self.path.suffix.lower() in VIDEO_EXTENSIONS


def expand_inputs(paths, out, empty=None, unreadable=None):
    """PATH arguments (photos, videos, folders, glob patterns) -> [Item], in the order given. A
    folder's photos are named relative to --out when inside it (the default: the folder itself),
    else relative to the folder's parent. UsageError for a pattern that matches nothing,
    InputError for a path that does not exist or a folder given that cannot be listed; folders
    without a photo are added to `empty`, sub-folders that cannot be listed to `unreadable`
    (OSErrors: their photos are missing from the run, which must be said)."""
    items, seen = [], set()
    outs = [(os.path.abspath, Path(os.path.abspath(out))), (os.path.realpath, Path(os.path.realpath(out)))]

    def name_of(path, base):
        for absolute, folder in outs:           # as given (a linked folder keeps its name), then resolved
            try:
                return Path(absolute(path)).relative_to(folder).as_posix()
            except ValueError:
                pass
        return Path(path).relative_to(base).as_posix() if base else Path(path).as_posix()

    for text in paths:
        path = Path(text)
        if path.is_dir():
            errors = []
            found = find_photos(path, videos=True, unreadable=errors)
            for error in errors:
                if os.path.realpath(error.filename or "") == os.path.realpath(path):
                    raise cli.InputError(f"{text}: cannot list this folder ({error.strerror or error})")
            if unreadable is not None:
                unreadable.extend(errors)
            if not found and empty is not None:
                empty.append(text)
            for rel, person in found:
                full = path / rel
                key = os.path.realpath(full)
                if key not in seen:
                    seen.add(key)
                    items.append(Item(full, name_of(full, path.parent), person))
            continue
        if _is_input_file(path):
            matches = [path]
        elif path.exists():
            raise cli.InputError(f"{text}: not a file or folder predict.py can read (a pipe or a device?)")
        elif glob.has_magic(text):
            matches = glob_inputs(text)
            if not matches:
                raise cli.UsageError(f"{text}: the pattern matches no photo or video")
        else:
            raise cli.InputError(f"{text}: no such file or folder")
        for match in matches:
            key = os.path.realpath(match)
            if key not in seen:
                seen.add(key)
                items.append(Item(match, name_of(match, None), ""))
    return items


def read_image(path, colour=False):
    """Any image file -> (uint8 (H, W) grayscale, uint8 (H, W, 3) RGB or None): the gray is
    input_data.read_gray's (EXIF orientation applied); the colour only when asked and the file has
    colour. PhotoError naming the file and the reason when it cannot be read."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise PhotoError(f"{path}: cannot open ({error.strerror or error})") from None
    if size == 0:
        raise PhotoError(f"{path}: empty file (0 bytes)")
    from PIL import Image, ImageOps, UnidentifiedImageError
    rgb = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
                gray = input_data.to_gray8(image)
                if colour and image.mode not in ("L", "LA", "1", "I", "I;16", "I;16B", "I;16L", "F"):
                    rgb = np.asarray(image.convert("RGB"), np.uint8)
    except UnidentifiedImageError:
        raise PhotoError(f"{path}: not an image (unknown or corrupt file format)") from None
    except (PermissionError, IsADirectoryError, FileNotFoundError, NotADirectoryError) as error:
        raise PhotoError(f"{path}: cannot open ({error.strerror or type(error).__name__})") from None
    except Image.DecompressionBombError as error:
        raise PhotoError(f"{path}: too large to read ({error})") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as error:
        raise PhotoError(f"{path}: corrupt or truncated image ({type(error).__name__}: {error})") from None
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise PhotoError(f"{path}: no pixels (shape {gray.shape})")
    return gray, rgb


def read_photo(path):
    """Any image file -> uint8 (H, W) grayscale (input_data's conversion, EXIF orientation
    applied). PhotoError naming the file and the reason when it cannot be read."""
    return read_image(path)[0]


def write_image(path, image):
    """Write a picture by encoding it in memory and writing the bytes: cv2.imwrite on a path
    that is not valid UTF-8 crashes the process; this cannot. image: gray, or BGR."""
    import cv2
    path = Path(path)
    suffix = path.suffix.lower() or ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if suffix in (".jpg", ".jpeg") else \
        [cv2.IMWRITE_PNG_COMPRESSION, 1] if suffix == ".png" else []
    ok, data = cv2.imencode(suffix, image, params)
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the picture")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())
    return path


# ---------------------------------------------------------------------------------------
# Detection and the box -> frame calibration.

_cache = {}


def calibration():
    """The fitted box -> frame and keypoints -> frame transforms (detector_calibration.json)."""
    if "calibration" not in _cache:
        try:
            data = json.loads(CALIBRATION_PATH.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{CALIBRATION_PATH} not found: run `python calibrate_detector.py` "
                                    "(needs ../shared/data/cvnd_youtube_faces)") from None
        settings = data.get("detector", {})
        expected = detector_settings()
        if settings != expected:
            warnings.warn(f"{CALIBRATION_PATH} was fitted for detector settings {settings}, "
                          f"predict.py uses {expected}: re-run calibrate_detector.py")
        _cache["calibration"] = data
    return _cache["calibration"]


def detector_settings():
    return {"cascade": CASCADE, "scale_factor": SCALE_FACTOR, "min_neighbors": MIN_NEIGHBORS,
            "min_face": MIN_FACE, "detect_sides": list(DETECT_SIDES),
            "lbp": {"side": LBP_SIDE, "scale_factor": LBP_SCALE_FACTOR, "min_neighbors": LBP_MIN_NEIGHBORS}}


def lbp_cascade():
    """OpenCV's LBP frontal-face cascade, or None where it cannot be had. The pip wheels of
    OpenCV ship only the Haar cascades; scikit-image (a dependency) ships OpenCV's
    lbpcascade_frontalface.xml as skimage/data/lbpcascade_frontalface_opencv.xml, with one tag
    misspelt ("featuhreParams", which its own reader ignores): read with that tag mended."""
    if "lbp" not in _cache:
        _cache["lbp"] = None
        try:
            import cv2
            import skimage.data
            text = (Path(skimage.data.__file__).parent / "lbpcascade_frontalface_opencv.xml").read_text()
            text = text.replace("featuhreParams>", "featureParams>")
            storage = cv2.FileStorage(text, cv2.FILE_STORAGE_READ | cv2.FILE_STORAGE_MEMORY)
            cascade = cv2.CascadeClassifier()
            if cascade.read(storage.getFirstTopLevelNode()) and not cascade.empty():
                _cache["lbp"] = cascade
        except (ImportError, OSError, cv2.error):
            pass
    return _cache["lbp"]


def lbp_boxes(gray):
    """The LBP cascade's face boxes (x, y, w, h) in photo pixels (its own boxes, not yet in
    Haar's terms), or [] (also when the cascade is not available)."""
    small, shrink = _shrunk(np.ascontiguousarray(gray, np.uint8), LBP_SIDE)
    return [tuple(float(v) / shrink for v in box) for box in _run_lbp(small)]


def _run_lbp(small):
    """The LBP cascade's boxes (n, 4) in the pixels of the copy `small`."""
    cascade = lbp_cascade()
    if cascade is None or min(small.shape) < MIN_FACE:
        return np.zeros((0, 4))
    return np.reshape(cascade.detectMultiScale(small, scaleFactor=LBP_SCALE_FACTOR, minNeighbors=LBP_MIN_NEIGHBORS,
                                               minSize=(MIN_FACE, MIN_FACE)), (-1, 4)).astype(np.float64)


def _as_haar_box(box):
    """An LBP box as the Haar box that box_to_frame maps to the same frame (everything after
    detection speaks Haar boxes)."""
    fit = calibration().get("lbp_box_to_frame")
    if fit is None:
        raise KeyError("lbp_box_to_frame")
    x, y, w, h = box
    size = (w + h) / 2
    frame = Frame(x + w / 2 + fit["dx"] * size, y + h / 2 + fit["dy"] * size, fit["side"] * size)
    haar = calibration()["box_to_frame"]
    side = frame.side / haar["side"]
    cx, cy = frame.cx - haar["dx"] * side, frame.cy - haar["dy"] * side
    return (cx - side / 2, cy - side / 2, side, side)


def _run_cascade(small, name, min_neighbors, mirrored=False):
    import cv2
    if ("cascade", name) not in _cache:
        cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, name))
        if cascade.empty():
            raise RuntimeError(f"OpenCV's {name} could not be loaded from {cv2.data.haarcascades}")
        _cache["cascade", name] = cascade
    image = np.ascontiguousarray(small[:, ::-1]) if mirrored else small
    boxes = np.reshape(_cache["cascade", name].detectMultiScale(
        image, scaleFactor=SCALE_FACTOR, minNeighbors=min_neighbors,
        minSize=(MIN_FACE, MIN_FACE)), (-1, 4)).astype(np.float64)
    if mirrored and len(boxes):
        boxes[:, 0] = small.shape[1] - boxes[:, 0] - boxes[:, 2]
    return boxes


def _shrunk(gray, side):
    """(copy whose longer side is at most `side`, its scale): the detector's working copy (and
    the overlay's; a colour image works too)."""
    import cv2
    shrink = min(1.0, side / max(gray.shape[:2]))
    if shrink == 1.0:
        return gray, shrink
    if min(round(gray.shape[0] * shrink), round(gray.shape[1] * shrink)) < 1:     # a 1-px strip stays 1 px
        size = (max(1, round(gray.shape[1] * shrink)), max(1, round(gray.shape[0] * shrink)))
        return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), shrink
    return cv2.resize(gray, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA), shrink


def detect_boxes(gray, fallback=True, quick=True, sides=DETECT_SIDES):
    """Face boxes (x, y, w, h) in photo pixels, as the Haar cascade's, largest first: the LBP
    cascade's (quick, when it finds any), else the Haar cascade's on the DETECT_SIDES copies in
    turn until one has a face; when none has, the FALLBACKS are tried in turn on the last copy
    (fallback=False: not); `sides`: the copies to try. A face found at under NEAR_LIMIT times
    the smallest size its copy can hold says that faces of about its size are there, some just
    too small for that copy (two people side by side): the next copy is searched as well and
    its new boxes added. Upright faces only (see find_and_predict for turned ones)."""
    return _detect(gray, fallback, quick, sides)[0]


def _settled(boxes):
    """A copy's boxes (n, 4, its pixels) end the coarse-to-fine search: there are some, and
    none near the smallest size the copy can hold (see detect_boxes)."""
    return len(boxes) > 0 and boxes[:, 2].min() >= NEAR_LIMIT * MIN_FACE


def _detect(gray, fallback=True, quick=True, sides=DETECT_SIDES):
    """(detect_boxes, whether the Haar cascade ran: False when the LBP cascade's boxes ended it)."""
    gray = np.ascontiguousarray(gray, np.uint8)
    found = []
    if quick:
        small, shrink = _shrunk(gray, LBP_SIDE)
        boxes = _run_lbp(small)
        try:
            found = [_as_haar_box(tuple(box / shrink)) for box in boxes]
        except KeyError:                            # a calibration without the LBP fit
            boxes, found = boxes[:0], []
        if _settled(boxes):
            return sorted(found, key=lambda b: -b[2] * b[3]), False
    boxes = []
    for side in sides:                              # coarse to fine, until a face is found
        small, shrink = _shrunk(gray, side)
        if min(small.shape) < MIN_FACE:
            break
        boxes = _run_cascade(small, CASCADE, MIN_NEIGHBORS)
        found = _add_new(found, [tuple(float(v) / shrink for v in box) for box in boxes])
        if _settled(boxes) or shrink == 1.0:
            break
    for name, min_neighbors, mirrored in (FALLBACKS if fallback and min(small.shape) >= MIN_FACE else ()):
        if found:
            break
        boxes = _run_cascade(small, name, min_neighbors)
        if mirrored:
            boxes = np.concatenate([boxes, _run_cascade(small, name, min_neighbors, mirrored=True)])
        found = [tuple(float(v) / shrink for v in box) for box in boxes]
    return sorted(found, key=lambda b: -b[2] * b[3]), True


def _add_new(kept, boxes):
    """kept + the boxes whose centre is in none of them (the same face found again is not)."""
    kept = list(kept)
    for box in boxes:
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        if not any(k[0] <= cx <= k[0] + k[2] and k[1] <= cy <= k[1] + k[3] for k in kept):
            kept.append(box)
    return kept


def box_to_frame(box):
    """A detector box (x, y, w, h) -> the Kaggle frame, by the calibrated transform:
    centre = box centre + (dx, dy) * w, side = side_scale * w (the boxes are square)."""
    fit = calibration()["box_to_frame"]
    x, y, w, h = box
    size = (w + h) / 2
    return Frame(float(x + w / 2 + fit["dx"] * size), float(y + h / 2 + fit["dy"] * size),
                 float(fit["side"] * size))


def detect_faces(gray):
    """Every upright face in a uint8 (H, W) photo as its Kaggle frame (input_data.Frame, photo
    pixels), largest first."""
    return [box_to_frame(box) for box in detect_boxes(gray)]


def whole_frame(gray):
    """The frame of a photo that is one face: the centred square around the whole photo
    (the identity for a 96x96 crop)."""
    height, width = np.shape(gray)[:2]
    return Frame(width / 2, height / 2, float(max(height, width)))


def is_face_crop(gray):
    """A 96x96 photo is taken to be a single face already in the Kaggle frame."""
    return tuple(np.shape(gray)[:2]) == (IMAGE_SIZE, IMAGE_SIZE)


# ---------------------------------------------------------------------------------------
# Turned faces: a view is the photo turned so that a face rolled by `roll` degrees is upright.

class View(NamedTuple):
    roll: float
    image: np.ndarray             # uint8: the turned copy (the photo itself for roll 0)
    matrix: np.ndarray            # (2, 3): photo pixel -> copy pixel
    inverse: np.ndarray           # (2, 3): copy pixel -> photo pixel


def upright_view(gray, roll):
    """The photo turned clockwise by `roll` degrees on a canvas that holds all of it, so that a
    face turned counter-clockwise by `roll` stands upright. Multiples of 90 are exact (pixel
    centres land on pixel centres), other angles bilinear with replicated edges."""
    import cv2
    roll = float(roll) % 360
    height, width = gray.shape[:2]
    if roll == 0:
        identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
        return View(0.0, gray, identity, identity)
    radians = np.deg2rad(roll)
    cos, sin = np.round(np.cos(radians), 12), np.round(np.sin(radians), 12)
    new_w = int(round(abs(cos) * width + abs(sin) * height))
    new_h = int(round(abs(sin) * width + abs(cos) * height))
    # Turning the picture clockwise by roll with y down: x' = cos x - sin y, y' = sin x + cos y,
    # about the old centre, to the new centre.
    rotation = np.array([[cos, -sin], [sin, cos]])
    centre_old = np.array([(width - 1) / 2, (height - 1) / 2])
    centre_new = np.array([(new_w - 1) / 2, (new_h - 1) / 2])
    matrix = np.hstack([rotation, (centre_new - rotation @ centre_old)[:, None]])
    image = cv2.warpAffine(gray, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    roll = roll if roll <= 180 else roll - 360
    return View(roll, image, matrix, cv2.invertAffineTransform(matrix))


def _apply(matrix, points):
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def _confident(faces):
    return any(not face.confidence < LOW_CONFIDENCE for face in faces)   # NaN (no heatmaps) counts


def _sides_for(longest, face_size):
    """The DETECT_SIDES worth trying for a face of about face_size px (photo pixels; None:
    any size) in a photo whose longest side is `longest`: up to the first copy in which it is
    the cascade's window or more (with 25% to spare)."""
    if not face_size:
        return DETECT_SIDES
    needed = MIN_FACE * longest / (0.75 * face_size)
    larger = [side for side in DETECT_SIDES if side >= needed]
    return tuple(side for side in DETECT_SIDES if side < needed) + tuple(larger[:1])


def _turned_boxes(gray, roll, face_size=None):
    """detect_boxes (no fallbacks) on the photo turned by roll, in the turned full-size photo's
    pixels. A quarter turn moves whole pixels: the photo itself is turned, and a face comes
    out exactly as it would upright. Other angles turn a copy shrunk to the largest detection
    side (turning a 50 MP photo eight times would take seconds). face_size: the size of the
    face looked for, when known (an unsure upright face): only the copies that can find it."""
    if float(roll) % 90 == 0:
        view = upright_view(gray, roll)
        sides = _sides_for(max(view.image.shape), face_size)
        return detect_boxes(view.image, fallback=False, sides=sides), view.roll
    small, shrink = _shrunk(gray, DETECT_SIDES[-1])
    view = upright_view(small, roll)
    sides = _sides_for(max(view.image.shape), face_size and face_size * shrink)
    boxes = detect_boxes(view.image, fallback=False, sides=sides)
    return [tuple(v / shrink for v in box) for box in boxes], view.roll


def _retry(gray, model, face, refine, flip_tta):
    """A face with a low confidence tried again: from its detector frame made smaller and larger
    and moved (RETRY_SCALES x RETRY_SHIFTS, but the frame itself), and from the boxes the
    cascade finds inside its square on the finest copy (the coarse copy's box can hold more
    than the face). Each is predicted once; the RETRY_BEST most confident are refined, and the
    most confident of all is kept."""
    if not face.confidence < LOW_CONFIDENCE or face.box is None:
        return face
    first = box_to_frame(face.box)       # (an upright detection: the refinement may have turned it)
    frames = [Frame(first.cx + dx * first.side, first.cy + dy * first.side, first.side * scale)
              for scale in RETRY_SCALES for dx, dy in RETRY_SHIFTS if (scale, dx, dy) != (1.0, 0.0, 0.0)]
    boxes = [face.box] * len(frames)
    small, shrink = _shrunk(gray, DETECT_SIDES[-1])
    low = face.frame.corner
    for box in _run_cascade(small, CASCADE, MIN_NEIGHBORS):
        box = tuple(float(v) / shrink for v in box)
        centre = np.array([box[0] + box[2] / 2, box[1] + box[3] / 2])
        if ((centre >= low) & (centre <= low + face.frame.side)).all() and box[2] < 0.9 * face.box[2]:
            frames.append(box_to_frame(box))
            boxes.append(box)
    first_looks = predict_batch([gray], model, [frames], [boxes], refine=False, flip_tta=False)[0]
    best = np.argsort([-f.confidence for f in first_looks], kind="stable")[:RETRY_BEST]
    tries = predict_batch([gray], model, [[frames[k] for k in best]], [[boxes[k] for k in best]],
                          refine=refine, flip_tta=flip_tta)[0]
    return max([face] + tries, key=lambda f: f.confidence)


def find_and_predict(gray, model=None, refine=REFINE, flip_tta=FLIP_TTA, rolls=ROLLS):
    """The faces of a photo: the upright ones (each unsure one given a second chance, _retry);
    when there are none, or none confident, those of the first turned copy (rolls, in turn)
    with a face more confident than them; else the upright ones (low confidence), else []."""
    return find_and_predict_many([gray], model, refine, flip_tta, rolls)[0]


def find_and_predict_many(grays, model=None, refine=REFINE, flip_tta=FLIP_TTA, rolls=ROLLS):
    """find_and_predict for several photos, their upright faces in one network call per pass
    (a folder's photos go through in small groups: one call costs ~0.1 ms per crop less)."""
    boxes, haar_ran = zip(*[_detect(gray) for gray in grays]) if grays else ((), ())
    found = predict_batch(grays, model, [[box_to_frame(b) for b in bs] for bs in boxes], boxes,
                          refine=refine, flip_tta=flip_tta)
    return [_upright_or_turned(gray, model, faces, refine, flip_tta, rolls, haar)
            for gray, faces, haar in zip(grays, found, haar_ran)]


def _upright_or_turned(gray, model, faces, refine, flip_tta, rolls, haar_ran=True):
    """A photo's upright faces (when the quick LBP cascade's are all unsure, haar_ran False,
    the Haar cascade's), each low-confidence one retried; when none is confident, the first
    turned copy's with a confident face more confident than them (find_and_predict)."""
    if faces and not haar_ran and not _confident(faces):
        boxes = detect_boxes(gray, quick=False)
        haar = predict_batch([gray], model, [[box_to_frame(b) for b in boxes]], [boxes], refine=refine,
                             flip_tta=flip_tta)[0] if boxes else []
        if _confident(haar):
            faces = haar
    confident = _confident(faces)
    faces = [_retry(gray, model, face, refine, flip_tta) for face in faces]
    # The best of many looks at the same face is confident by chance more often than one look:
    # a retried face must clear the bar by RETRY_MARGIN to stop the turned copies being tried.
    if not rolls or confident or any(face.confidence >= LOW_CONFIDENCE + RETRY_MARGIN for face in faces):
        return faces
    best = max((face.confidence for face in faces), default=-1.0)
    size = max((face.box[2] for face in faces if face.box is not None), default=None)
    for roll in rolls:
        boxes, roll = _turned_boxes(gray, roll, size)
        if not boxes:
            continue
        found = predict_batch([gray], model, [[box_to_frame(b) for b in boxes]], [boxes], refine=refine,
                              flip_tta=flip_tta, rolls=[[roll] * len(boxes)])[0]
        if _confident(found) and max(face.confidence for face in found) > best:
            return found
        faces = faces or found
    return faces


# ---------------------------------------------------------------------------------------
# The network.

KEYPOINT_PAIRS = [(i, KEYPOINT_NAMES.index(name.replace("left", "right")))
                  for i, name in enumerate(KEYPOINT_NAMES) if "left" in name]
_MIRROR = np.arange(len(KEYPOINT_NAMES))
for _a, _b in KEYPOINT_PAIRS:
    _MIRROR[_a], _MIRROR[_b] = _b, _a


def heatmap_confidence(heatmaps):
    """(n, 15, cells) softmax heatmaps -> (n,) confidence in 0..1: per keypoint the probability
    in the 3x3 cells around its peak (a sharp, single peak: high; a spread or split one: low),
    averaged over the 15 keypoints."""
    heatmaps = np.asarray(heatmaps, np.float32)
    n, k, cells = heatmaps.shape
    flat = np.concatenate([heatmaps.reshape(n * k, cells), np.zeros((n * k, 1), np.float32)], axis=1)
    window = _peak_windows(cells)[flat[:, :cells].argmax(axis=1)]        # (n * k, 9) cell indices
    total = np.take_along_axis(flat, window, axis=1).sum(axis=1)
    return total.reshape(n, k).mean(axis=1).astype(np.float64)


def _peak_windows(cells):
    """(cells, 9): for each cell of the square grid, the indices of its 3x3 neighbourhood; a
    neighbour outside the grid is index `cells` (a zero column heatmap_confidence appends)."""
    if ("windows", cells) not in _cache:
        grid = int(round(np.sqrt(cells)))
        rows, cols = np.divmod(np.arange(cells), grid)
        windows = []
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                r, c = rows + dy, cols + dx
                inside = (r >= 0) & (r < grid) & (c >= 0) & (c < grid)
                windows.append(np.where(inside, r * grid + c, cells))
        _cache["windows", cells] = np.stack(windows, axis=1)
    return _cache["windows", cells]


def _metadata_axis(text, path):
    """The mirror axis in an ONNX file's metadata (text), checked: export.py writes a number of
    pixels within the frame; anything else would mirror every flip-TTA prediction to garbage."""
    try:
        axis = float(text)
    except ValueError:
        axis = None
    if not input_data.is_mirror_axis(axis):
        raise ModelError(f"{path}: its metadata mirror_axis_px is {cli.one_line(text)[:40]!r}; "
                         f"expected {input_data.MIRROR_AXIS_EXPECTED}")
    return axis


class OnnxPredictor:
    """The network through onnxruntime: 96x96 crops -> keypoints (frame pixels) and confidence.
    The ONNX file is export.py's predictor (outputs `out` and, for v6, `heatmaps`; metadata
    mirror_axis_px for flip TTA). `source`: the file to name in messages (the user's .keras for
    a converted copy in CACHE_DIR), default the ONNX file itself."""

    def __init__(self, path, threads=None, source=None):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or 0)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.path = Path(path)
        self.source = source = Path(source or path)
        try:                                    # bytes: onnxruntime cannot open every file name
            self.session = ort.InferenceSession(self.path.read_bytes(), options,
                                                providers=["CPUExecutionProvider"])
        except OSError as error:
            raise cli.InputError(f"{source}: cannot read ({cli.describe_os_error(error)})") from None
        except Exception as error:              # onnxruntime raises its own types for bad files
            raise cli.InputError(f"{source}: not an ONNX model onnxruntime can run "
                                 f"({cli.one_line(error)[:200]})") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.mirror_axis = _metadata_axis(self.metadata.get("mirror_axis_px", str((IMAGE_SIZE - 1) / 2)), source)
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()][:1]
        if "heatmaps" in [o.name for o in self.session.get_outputs()]:
            self.outputs.append("heatmaps")
        shape = self.session.get_outputs()[0].shape
        if len(shape) != 2 or shape[-1] != 2 * len(KEYPOINT_NAMES):
            raise ModelError(f"{source}: the model gives {shape[1:]} per face, expected 30 "
                             "keypoint coordinates")
        image = self.session.get_inputs()[0]
        if image.type != "tensor(float)" or len(image.shape) != 4 or \
                list(image.shape[1:]) != [IMAGE_SIZE, IMAGE_SIZE, 1]:
            raise ModelError(f"{source}: the model takes {image.type} {image.shape}, expected float32 "
                             f"[N, {IMAGE_SIZE}, {IMAGE_SIZE}, 1] (96x96 grayscale faces)")
        if "heatmaps" in self.outputs:
            heatmaps = next(o for o in self.session.get_outputs() if o.name == "heatmaps").shape
            if len(heatmaps) != 3 or heatmaps[1] != len(KEYPOINT_NAMES):
                raise ModelError(f"{source}: its heatmaps are {heatmaps}, expected [N, 15, cells]")

    def raw(self, X):
        """float32 (n, 96, 96, 1) -> (unit keypoints (n, 30), heatmaps or None)."""
        try:
            result = self.session.run(self.outputs, {self.input: X})
        except Exception as error:              # onnxruntime's own types: shapes that do not fit
            raise ModelError(f"{self.source}: not a keypoint model onnxruntime can run on 96x96 faces "
                             f"({cli.one_line(error)[:200]})") from None
        return result[0], (result[1] if len(result) > 1 else None)


class KerasPredictor:
    """Anything with predict_on_batch or predict (a keras model, a test's stand-in): no heatmaps,
    so no confidence (NaN)."""

    def __init__(self, model):
        self.model = model
        self.mirror_axis = float(getattr(model, "mirror_axis", None) or (IMAGE_SIZE - 1) / 2)

    def raw(self, X):
        predict = getattr(self.model, "predict_on_batch", None)
        if predict is None:
            return np.asarray(self.model.predict(X, verbose=0), np.float32), None
        return np.asarray(predict(X), np.float32), None


def run_network(predictor, crops, flip_tta=FLIP_TTA):
    """uint8 (n, 96, 96) crops -> (float (n, 15, 2) keypoints in the 96-px frame, float (n,)
    confidence). flip_tta averages with the un-mirrored prediction on the mirrored crops (about
    the model's mirror axis, left/right keypoints swapped: augment.predict_with_flip's rule)."""
    predictor = load_model(predictor)
    crops = np.asarray(crops)
    if len(crops) == 0:
        return np.zeros((0, 15, 2)), np.zeros(0)
    points, confidence = [], []
    for first in range(0, len(crops), NETWORK_BATCH):
        batch = crops[first:first + NETWORK_BATCH]
        n = len(batch)
        X = input_data.images_to_unit(batch)
        if flip_tta:
            X = np.concatenate([X, X[:, :, ::-1]])
        unit, heatmaps = predictor.raw(np.ascontiguousarray(X, np.float32))
        if not (np.isfinite(unit).all() and np.abs(unit).max(initial=0) < MAX_UNIT):
            raise ModelError(f"{getattr(predictor, 'source', 'the model')}: the model gives "
                             + ("non-finite keypoints (NaN or inf)" if not np.isfinite(unit).all()
                                else f"keypoints {np.abs(unit).max():.3g} half-widths from the crop's centre")
                             + " on a face crop: it is not a working keypoint model")
        pixels = input_data.keypoints_to_pixels(np.asarray(unit, np.float64)).reshape(-1, 15, 2)
        conf = heatmap_confidence(heatmaps) if heatmaps is not None else np.full(len(X), np.nan)
        if flip_tta:
            mirrored = pixels[n:][:, _MIRROR]
            mirrored[..., 0] = 2 * predictor.mirror_axis - mirrored[..., 0]
            pixels = (pixels[:n] + mirrored) / 2
            conf = (conf[:n] + conf[n:]) / 2
        points.append(pixels)
        confidence.append(conf)
    return np.concatenate(points), np.concatenate(confidence)


def onnx_for(keras_path, threads=None):
    """The OnnxPredictor of a .keras file: the .onnx beside it (same name) when its metadata
    names this file's sha256 (the shipped model.onnx), else a copy converted on first use and
    kept in CACHE_DIR/<sha256>.onnx (that first use imports TensorFlow: ~10-30 s; see
    docs/predict.md for why converting beats running Keras)."""
    keras_path = Path(keras_path)
    digest = input_data.file_sha256(keras_path)
    beside = keras_path.with_suffix(".onnx")
    if beside.is_file():
        try:
            predictor = OnnxPredictor(beside, threads, source=keras_path)
        except cli.InputError:
            predictor = None                # an unreadable file beside is just not used
        if predictor is not None and predictor.metadata.get("keras_sha256") == digest:
            return predictor
    cached = CACHE_DIR / f"{digest[:32]}.onnx"
    if not cached.is_file():
        print(f"converting {keras_path} to ONNX once (kept in {cached}) ...", file=sys.stderr)
        import export
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        export.export_predictor(keras_path, cached)
    return OnnxPredictor(cached, threads, source=keras_path)


def load_model(model=None, threads=None):
    """A predictor: None = the shipped model (models.shipped_model_path(), run through its
    model.onnx); a .onnx path (run as it is: prefer it for a model from someone you do not
    trust, a .keras file can run code); a .keras path (its ONNX, see onnx_for); a predictor
    (anything with OnnxPredictor's raw() and mirror_axis) as it is; anything with
    predict_on_batch/predict through KerasPredictor. Loaded files are cached by path."""
    if hasattr(model, "raw") and hasattr(model, "mirror_axis"):
        return model
    if model is not None and not isinstance(model, (str, os.PathLike)):
        return KerasPredictor(model)
    if model is None:
        import models
        model = models.shipped_model_path()
    path = Path(model)
    key = ("model", str(path.resolve()), threads)
    if key not in _cache:
        if not path.is_file():
            raise FileNotFoundError(f"{model}: no such model file")
        if path.suffix.lower() == ".onnx":
            _cache[key] = OnnxPredictor(path, threads)
        elif path.suffix.lower() == ".keras":
            _cache[key] = onnx_for(path, threads)
        else:
            raise cli.UsageError(f"--model {model}: must be a .keras or .onnx file")
    return _cache[key]


# ---------------------------------------------------------------------------------------
# Cropping, mapping back, refinement.

def crop_faces(gray, frames):
    """uint8 (n, 96, 96): each frame's crop (input_data.Frame.crop, the one crop path)."""
    return np.stack([frame.crop(gray) for frame in frames]) if len(frames) else \
        np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)


def frame_from_keypoints(keypoints, fit=None):
    """The Kaggle frame of a face from its 15 keypoints (15, 2), photo pixels: from the box
    around the keypoints (centre c, width w, height h), centre = c + (w, h) @ A, side =
    (w, h) @ s, with A and s fitted by calibrate_detector.py so that the true keypoints of the
    training faces give their input_data.frame_from_68 frames."""
    fit = fit or calibration()["keypoints_to_frame"]
    points = np.asarray(keypoints, np.float64)
    if not np.isfinite(points).all():
        raise ValueError("keypoints are not finite")
    low, high = points.min(axis=0), points.max(axis=0)
    centre, size = (low + high) / 2, high - low
    side = float(size @ fit["side"])
    if not side > 0:
        raise ValueError("degenerate keypoints")
    return Frame(float(centre[0] + size @ fit["cx"]), float(centre[1] + size @ fit["cy"]), side)


def eye_roll(keypoints):
    """Degrees counter-clockwise the face is turned, from its eye centres (0 when level)."""
    left, right = np.asarray(keypoints, np.float64)[:2]     # the person's left eye is on the right
    return float(-np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0])))


def _face_in_photo(view, frame, box, crop, points, confidence):
    """A Face in photo pixels from a prediction in a view's pixels."""
    centre = _apply(view.inverse, [frame.cx, frame.cy])
    return Face(Frame(float(centre[0]), float(centre[1]), frame.side), box, crop,
                _apply(view.inverse, frame.to_photo(points)), float(confidence), view.roll)


def refine_passes(refine):
    """How many refinement passes: True = REFINE_PASSES, False = 0, or the number itself."""
    if isinstance(refine, (bool, np.bool_)):
        return REFINE_PASSES if refine else 0
    return max(0, int(refine))


def predict_batch(grays, model=None, frames=None, boxes=None, refine=REFINE, flip_tta=FLIP_TTA,
                  rolls=None):
    """predict_keypoints for many photos, with one batched network call per pass.
    frames: a list (one entry per photo) of lists of Frames, in the pixels of the photo turned by
    the face's roll (rolls: the same shape, default 0); boxes likewise (or None); refine: one bool
    for all photos, or one per photo."""
    predictor = load_model(model)
    refine = [refine] * len(grays) if np.ndim(refine) == 0 else list(refine)
    frames = [list(f) for f in frames]
    boxes = [list(b) if b is not None else [None] * len(f)
             for b, f in zip(boxes or [None] * len(frames), frames)]
    rolls = [list(r) if r is not None else [0.0] * len(f)
             for r, f in zip(rolls or [None] * len(frames), frames)]
    owner = [(i, j) for i, f in enumerate(frames) for j in range(len(f))]
    if not owner:
        return [[] for _ in grays]
    views = {}

    def view(i, roll):
        if (i, roll) not in views:
            views[i, roll] = upright_view(np.asarray(grays[i], np.uint8), roll)
        return views[i, roll]

    flat = [frames[i][j] for i, j in owner]
    flat_views = [view(i, rolls[i][j]) for i, j in owner]
    crops = [f.crop(v.image) for f, v in zip(flat, flat_views)]
    passes = [refine_passes(refine[i]) for i, _ in owner]

    def network(indices, step):
        """Predict the crops of faces `indices` on pass `step` (0 = the first crop); flip_tta
        "final": the mirrored crop only on a face's last pass."""
        for flip in (False, True):
            chosen = [n for n in indices if flip == (flip_tta is True or (bool(flip_tta) and step == passes[n]))]
            if chosen:
                points, confidence = run_network(predictor, np.stack([crops[n] for n in chosen]), flip)
                for n, p, c in zip(chosen, points, confidence):
                    i, j = owner[n]
                    faces[n] = _face_in_photo(flat_views[n], flat[n], boxes[i][j], crops[n], p, c)

    faces = [None] * len(owner)
    network(range(len(owner)), 0)
    active = list(range(len(owner)))
    for step in range(1, max(passes) + 1):
        again = []
        for n in active:
            if passes[n] < step:
                continue
            i, j = owner[n]
            photo_points = faces[n].keypoints
            roll = flat_views[n].roll
            turn = eye_roll(_apply(flat_views[n].matrix, photo_points))
            if abs(turn) > MIN_ROLL:             # re-crop upright in a copy turned by the eye line
                roll = float(np.round(roll + turn, 1))
            new_view = view(i, roll)
            try:
                new = frame_from_keypoints(_apply(new_view.matrix, photo_points))
            except ValueError:
                continue
            if new.side > 4 * flat[n].side or new.side < flat[n].side / 4:
                continue                            # a wild prediction: keep the crop before
            flat[n], flat_views[n], crops[n] = new, new_view, new.crop(new_view.image)
            again.append(n)
        if not again:
            break
        network(again, step)                    # only the re-cropped faces
        active = again
    out = [[] for _ in grays]
    for n, (i, j) in enumerate(owner):
        out[i].append(faces[n])
    return out


def predict_keypoints(gray, model=None, frames=None, refine=REFINE, flip_tta=FLIP_TTA, rolls=ROLLS):
    """The faces of a uint8 (H, W) photo with their 15 keypoints in photo pixels.

    model: None for the shipped model, a .onnx or .keras path, or a model object (load_model).
    frames: None = find them (a 96x96 photo is taken as one face crop without detecting; rolls:
    the turned copies tried when no upright face is found, () for none); or the upright
    input_data.Frames to use. refine: re-centre (and turn upright) each crop on its first
    prediction and predict again (not for a 96x96 photo taken as its own crop).
    Returns [Face(frame, box, crop, keypoints, confidence, roll)], largest detected face first.
    """
    gray = np.asarray(gray, np.uint8)
    if frames is not None:
        return predict_batch([gray], model, [frames], refine=refine, flip_tta=flip_tta)[0]
    if is_face_crop(gray):
        return predict_batch([gray], model, [[whole_frame(gray)]], refine=False, flip_tta=flip_tta)[0]
    return find_and_predict(gray, model, refine, flip_tta, rolls)


def crop_keypoints(crops, model=None, flip_tta=FLIP_TTA):
    """(keypoints (n, 15, 2) in the 96-px frame, confidence (n,)) of ready 96x96 face crops,
    through the light runtime (for alignment, e.g. recognize.py)."""
    return run_network(load_model(model), np.asarray(crops, np.uint8), flip_tta)


# ---------------------------------------------------------------------------------------
# The CSV.

def _number(value):
    return f"{value:.2f}"


def csv_rows(name, person, faces=None, status="ok", frame=""):
    """The CSV rows of one photo (or one video frame): dicts keyed by CSV_COLUMNS."""
    base = {"file": name.as_posix() if isinstance(name, Path) else str(name), "person": person,
            "frame": frame}
    if status != "ok" or not faces:
        return [{**base, "face": "", "status": status if status != "ok" else "no_face",
                 **{c: "" for c in CSV_COLUMNS[5:]}}]
    rows = []
    for index, face in enumerate(faces):
        x0, y0 = face.frame.corner
        row = {**base, "face": index, "status": "ok", "x0": _number(x0), "y0": _number(y0),
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


def draw_overlay(image, faces):
    """BGR picture of the photo (gray, or RGB kept in colour) with each face's crop square
    (green; orange when its confidence is low), index and keypoints (red)."""
    import cv2
    small, shrink = _shrunk(image, OVERLAY_MAX_SIDE)
    canvas = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR if small.ndim == 2 else cv2.COLOR_RGB2BGR)
    thick = max(1, int(round(max(canvas.shape[:2]) / 400)))
    for index, face in enumerate(faces):
        low = face.confidence < LOW_CONFIDENCE
        colour = COLOURS["low" if low else "square"]
        corners = (_square_corners(face.frame, face.roll) * shrink).round().astype(np.int32)
        cv2.polylines(canvas, [corners], True, colour, thick)
        label = f"{index}" + (f" low {face.confidence:.2f}" if low else "")
        cv2.putText(canvas, label, (int(corners[0][0]) + 2, int(corners[0][1]) + 12 * thick),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, colour, thick)
        radius = max(1, int(round(face.frame.side * shrink / 60)))
        for x, y in np.asarray(face.keypoints) * shrink:
            cv2.circle(canvas, (int(round(x)), int(round(y))), radius, COLOURS["points"], -1)
    return canvas


def write_overlay(path, image, faces):
    """The photo with its faces drawn (draw_overlay), written safely as a PNG."""
    return write_image(path, draw_overlay(image, faces))


SHEET_CELL = 192            # px per face on the contact sheet: the 96x96 crop at 2x
SHEET_COLUMNS = 8
SHEET_ROWS = 8              # faces per page = columns x rows


def _ascii(text, width):
    """cv2.putText draws ASCII only: other characters become '?'; long names keep their end."""
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in str(text))
    return text if len(text) <= width else "..." + text[-(width - 3):]


def sheet_page(crops, keypoints, titles, confidences=None, columns=SHEET_COLUMNS):
    """One contact sheet page: a grid of the 96x96 crops at 2x with their keypoints (crop
    frame pixels), the title under each; faces below LOW_CONFIDENCE framed in orange."""
    import cv2
    n = len(crops)
    columns = max(1, min(columns, n))
    rows = max(1, -(-n // columns))
    cell, caption = SHEET_CELL, 22
    page = np.full((rows * (cell + caption), columns * cell, 3), 255, np.uint8)
    confidences = [float("nan")] * n if confidences is None else confidences
    scale = cell / IMAGE_SIZE
    for k, (crop, points, title, confidence) in enumerate(zip(crops, keypoints, titles, confidences)):
        top, left = (k // columns) * (cell + caption), (k % columns) * cell
        big = cv2.resize(np.asarray(crop, np.uint8), (cell, cell), interpolation=cv2.INTER_LINEAR)
        tile = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
        for x, y in np.asarray(points, np.float64):
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(tile, (int(round((x + 0.5) * scale - 0.5)), int(round((y + 0.5) * scale - 0.5))),
                           3, COLOURS["points"], -1, cv2.LINE_AA)
        low = confidence < LOW_CONFIDENCE
        if low:
            cv2.rectangle(tile, (1, 1), (cell - 2, cell - 2), COLOURS["low"], 3)
            cv2.putText(tile, f"low {confidence:.2f}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        COLOURS["low"], 1, cv2.LINE_AA)
        page[top:top + cell, left:left + cell] = tile
        cv2.putText(page, _ascii(title, 26), (left + 3, top + cell + 15), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return page


def plot_faces(path, crops, keypoints, titles, confidences=None, per_page=SHEET_COLUMNS * SHEET_ROWS):
    """Contact sheets of the faces: `path` itself when they fit on one page, else
    <stem>-1.jpg, <stem>-2.jpg, ... (per_page faces each). Returns the files written."""
    confidences = [float("nan")] * len(crops) if confidences is None else list(confidences)
    sheets = ContactSheets(path, per_page=per_page)
    sheets.add(list(zip(crops, keypoints, titles, confidences)))
    return sheets.close()


class ContactSheets:
    """plot_faces page by page as the faces arrive: each page is written when it is full (a
    stopped run keeps its pages), the last on close(); `path` itself when there was one page."""

    def __init__(self, path, limit=None, per_page=SHEET_COLUMNS * SHEET_ROWS):
        self.path, self.limit, self.per_page = Path(path), limit, per_page
        self.pending, self.written, self.faces = [], [], 0

    def add(self, entries):
        """entries: [(crop, keypoints in the crop frame, title, confidence)]."""
        if self.limit is not None:
            entries = entries[:max(0, self.limit - self.faces)]
        self.faces += len(entries)
        self.pending.extend(entries)
        while len(self.pending) >= self.per_page:
            self._write(self.pending[:self.per_page])
            self.pending = self.pending[self.per_page:]

    def _write(self, entries):
        target = self.path.with_name(f"{self.path.stem}-{len(self.written) + 1}{self.path.suffix}")
        crops, points, titles, confidences = zip(*entries)
        self.written.append(write_image(target, sheet_page(crops, points, titles, confidences)))

    def close(self):
        """Write what is left; returns the files written."""
        if self.pending:
            self._write(self.pending)
            self.pending = []
        if len(self.written) == 1:
            self.written = [self.written[0].replace(self.path)]
        return self.written


# ---------------------------------------------------------------------------------------
# The embedded default: sample photos that ship inside installed packages.

def write_demo_photos(folder):
    """Copy scikit-image's astronaut (Eileen Collins, NASA) and matplotlib's grace_hopper
    (both public domain) into `folder`; returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        import matplotlib
        source = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        shutil.copyfile(source, folder / "grace_hopper.jpg")
        written.append(folder / "grace_hopper.jpg")
    except (ImportError, OSError, ValueError) as error:
        print(f"matplotlib's grace_hopper.jpg is not available ({error})")
    try:
        import skimage.data
        from PIL import Image
        Image.fromarray(skimage.data.astronaut()).save(folder / "astronaut.png")
        written.append(folder / "astronaut.png")
    except (ImportError, OSError, ValueError) as error:
        print(f"scikit-image's astronaut is not available ({error}); pip install scikit-image")
    return written


# ---------------------------------------------------------------------------------------
# One photo, start to end (what each worker of the folder run does).

class Options(NamedTuple):
    model: object = None
    detect: bool = True
    refine: bool = REFINE
    flip_tta: bool = FLIP_TTA
    rotations: bool = True
    overlay_dir: Optional[Path] = None     # write <name>.png overlays here, or None
    sheet: bool = True                     # return the crops for the contact sheet
    threads: Optional[int] = None
    low_confidence: float = LOW_CONFIDENCE # the bar, carried into worker processes


class PhotoResult(NamedTuple):
    rows: list
    sheet: list                            # [(crop, keypoints in the crop frame, title, confidence)]
    status: str                            # "ok", "no_face", "unreadable"
    faces: int
    message: Optional[str] = None          # a problem to print (an overlay not written)
    low_faces: int = 0                     # faces below the confidence bar


def overlay_name(name):
    """overlays-<time>/<photo>.png for photo <photo>.jpg (the file's suffix replaced); a name
    with '..' or a root keeps only its plain parts, so nothing is written outside the folder."""
    parts = [part for part in Path(name).parts if part not in ("..", ".") and part != Path(name).anchor]
    path = Path(*parts) if parts else Path("photo")
    return path.with_suffix(".png") if path.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS \
        else path.with_name(path.name + ".png")


def process_photo(item, options, overlay_as=None):
    """Read, find, predict and (if asked) draw one photo -> PhotoResult. Never raises for a bad
    photo: it becomes an `unreadable: <reason>` row."""
    return process_photos([(item, overlay_as)], options)[0]


def _unreadable(item, error):
    path, name, person = item
    if isinstance(error, PhotoError):
        reason = str(error).removeprefix(f"{path}: ")
    else:                                            # a photo OpenCV cannot handle, say
        reason = f"{type(error).__name__}: {cli.one_line(error)}"
    return PhotoResult(csv_rows(name, person, status=f"unreadable: {reason}"), [], "unreadable", 0)


def process_photos(jobs, options):
    """process_photo for a group of (item, overlay name or None): the photos are read one by
    one, their upright faces predicted together (find_and_predict_many); a photo that fails is
    an `unreadable` row and does not take the others with it."""
    import cv2
    results, read = [None] * len(jobs), []
    for k, (item, _) in enumerate(jobs):
        try:
            gray, rgb = read_image(item.path, colour=options.overlay_dir is not None)
            read.append((k, gray, rgb))
        except (PhotoError, MemoryError, ValueError) as error:
            results[k] = _unreadable(item, error)
    crops = [(k, g, c) for k, g, c in read if not options.detect or is_face_crop(g)]
    photos = [(k, g, c) for k, g, c in read if options.detect and not is_face_crop(g)]
    found = {}
    try:
        if crops:
            faces = predict_batch([g for _, g, _ in crops], options.model, [[whole_frame(g)] for _, g, _ in crops],
                                  refine=False, flip_tta=options.flip_tta)
            found.update((k, f) for (k, _, _), f in zip(crops, faces))
        if photos:
            faces = find_and_predict_many([g for _, g, _ in photos], options.model, options.refine,
                                          options.flip_tta, ROLLS if options.rotations else ())
            found.update((k, f) for (k, _, _), f in zip(photos, faces))
    except (MemoryError, ValueError, cv2.error) as error:       # a photo OpenCV cannot handle
        if isinstance(error, ModelError):
            raise
        if len(read) == 1:
            results[read[0][0]] = _unreadable(jobs[read[0][0]][0], error)
            return results
        for k, _, _ in read:                         # which photo was it: one at a time
            results[k] = process_photos([jobs[k]], options)[0]
        return results
    for k, gray, rgb in read:
        (path, name, person), overlay_as = jobs[k]
        faces = found[k]
        message = None
        if options.overlay_dir is not None:
            try:
                write_overlay(Path(options.overlay_dir) / (overlay_as or overlay_name(name)),
                              rgb if rgb is not None else gray, faces)
            except OSError as error:                 # an overlay never stops the run
                message = f"{name}: overlay not written ({cli.describe_os_error(error)})"
            except cv2.error as error:
                message = f"{name}: overlay not written (OpenCV: {cli.one_line(error)[:200]})"
        sheet = []
        if options.sheet:
            for index, face in enumerate(faces):
                sheet.append((face.crop, _crop_points(face), name + (f" #{index}" if index else ""),
                              face.confidence))
        status = "ok" if faces else "no_face"
        results[k] = PhotoResult(csv_rows(name, person, faces), sheet, status, len(faces), message,
                                 sum(face.confidence < LOW_CONFIDENCE for face in faces))
    return results


def _crop_points(face):
    """A face's keypoints in its 96x96 crop's pixels (undoing the roll)."""
    view_points = face.keypoints - [face.frame.cx, face.frame.cy]
    radians = np.deg2rad(face.roll)
    cos, sin = np.cos(radians), np.sin(radians)
    upright = view_points @ np.array([[cos, -sin], [sin, cos]]).T   # turn back clockwise by roll
    return (upright + face.frame.side / 2) * IMAGE_SIZE / face.frame.side


_worker = {}


def _worker_init(options):
    global LOW_CONFIDENCE
    import cv2
    LOW_CONFIDENCE = options.low_confidence     # a spawned worker starts from the module's own
    # One process per core already: threads would only contend. A forked worker has it from the
    # parent (run sets it before the pool): calling setNumThreads in a child forked from a
    # process whose OpenCV thread pool has run waits forever on that pool's lock.
    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)
    _worker["options"] = options._replace(model=load_model(options.model, threads=1))


def _worker_run(jobs):
    return process_photos(jobs, _worker["options"])


# ---------------------------------------------------------------------------------------
# Videos: per frame, with the previous frame's keypoints as the next crop (detection only when
# the face is lost) and One Euro smoothing.

class OneEuro:
    """The One Euro filter (Casiez, Roussel and Vogel, CHI 2012) on an array of values: an
    exponential smoother whose cut-off frequency rises with speed, so a still face does not
    jitter and a moving one does not lag. min_cutoff (Hz) sets the smoothing at rest, beta how
    fast it opens up with speed."""

    def __init__(self, min_cutoff=1.0, beta=0.05, d_cutoff=1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.value = self.speed = None

    @staticmethod
    def _alpha(cutoff, dt):
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, value, dt):
        value = np.asarray(value, np.float64)
        if self.value is None:
            self.value, self.speed = value, np.zeros_like(value)
            return value
        speed = (value - self.value) / dt
        a = self._alpha(self.d_cutoff, dt)
        self.speed = a * speed + (1 - a) * self.speed
        cutoff = self.min_cutoff + self.beta * np.abs(self.speed)
        a = self._alpha(cutoff, dt)
        self.value = a * value + (1 - a) * self.value
        return self.value


def _safe_video_writer(path, fps, size):
    """cv2.VideoWriter to an ASCII temporary name in the system's temporary folder (OpenCV's
    own path handling is not safe for every name); the caller moves it into place."""
    import cv2
    tmp = Path(tempfile.mkdtemp(prefix="fkd-video-")) / "annotated.mp4"
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        shutil.rmtree(tmp.parent, ignore_errors=True)
        raise OSError(f"{path}: OpenCV cannot write an mp4 video here")
    return writer, tmp


def _open_capture(source):
    """cv2.VideoCapture of a camera index or a video file. A file whose name is not plain ASCII
    is opened through an ASCII-named link (OpenCV can crash on such names). Returns (capture,
    folder to remove afterwards or None)."""
    import cv2
    if isinstance(source, int):
        try:
            return cv2.VideoCapture(source), None
        except (cv2.error, OverflowError, SystemError):
            return None, None
    name, link_dir = str(source), None
    if not name.isascii():
        link_dir = tempfile.mkdtemp(prefix="fkd-video-")
        name = os.path.join(link_dir, "video" + Path(source).suffix.lower())
        os.symlink(os.path.abspath(source), name)
    try:
        return cv2.VideoCapture(name), link_dir
    except cv2.error:
        return None, link_dir


def process_video(source, name, person, options, csv_writer, annotated=None, smooth=True,
                  max_frames=None, progress=None):
    """Every frame of a video file (or a camera index) -> CSV rows (one per face per frame, or
    a no_face row) and, with annotated (a .mp4 path), a copy with the faces drawn. Returns
    (frames, frames with a face)."""
    import cv2
    capture, link_dir = _open_capture(source)
    if capture is None or not capture.isOpened():
        if link_dir:
            shutil.rmtree(link_dir, ignore_errors=True)
        raise cli.InputError(f"{name}: not a video OpenCV can read")
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and np.isfinite(fps) and 1 <= fps <= 1000 else 30.0
    writer = tmp = None
    tracks = []                  # [(keypoints in photo px, roll, OneEuro)] of the previous frame
    count = found = 0
    try:
        while max_frames is None or count < max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
            faces = []
            if tracks:                           # follow the previous frame's faces
                rolls = [roll for _, roll, _ in tracks]
                frames = []
                for keypoints, roll, _ in tracks:
                    view = upright_view(gray, roll)
                    try:
                        frames.append(frame_from_keypoints(_apply(view.matrix, keypoints)))
                    except ValueError:
                        frames = []
                        break
                if frames:
                    faces = predict_batch([gray], options.model, [frames], refine=options.refine,
                                          flip_tta=options.flip_tta, rolls=[rolls])[0]
                    faces = [f for f in faces if not f.confidence < LOW_CONFIDENCE]
                    if len(faces) < len(tracks):
                        faces = []                 # a face was lost: detect afresh
            if not faces:
                faces = predict_keypoints(gray, options.model, refine=options.refine,
                                          flip_tta=options.flip_tta,
                                          rolls=ROLLS if options.rotations else ())
                tracks = []
            new_tracks = []
            shown = []
            for index, face in enumerate(faces):
                points = face.keypoints
                old = tracks[index] if index < len(tracks) else None
                smoother = old[2] if old is not None else OneEuro()
                if smooth:
                    points = smoother(points, 1.0 / fps)
                shown.append(face._replace(keypoints=points))
                new_tracks.append((face.keypoints, face.roll, smoother))
            tracks = new_tracks
            csv_writer.write(csv_rows(name, person, shown, frame=count))
            found += bool(shown)
            if annotated is not None:
                if writer is None:
                    writer, tmp = _safe_video_writer(annotated, fps, (bgr.shape[1], bgr.shape[0]))
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr.ndim == 3 else gray
                writer.write(draw_overlay_full(rgb, shown))
            count += 1
            if progress is not None:
                progress.update(1)
    except BaseException:
        if tmp is not None:
            if writer is not None:
                writer.release()
                writer = None
            shutil.rmtree(tmp.parent, ignore_errors=True)
        raise
    finally:
        capture.release()
        if link_dir:
            shutil.rmtree(link_dir, ignore_errors=True)
        if writer is not None:
            writer.release()
    if tmp is not None:
        shutil.move(tmp, annotated)
        shutil.rmtree(tmp.parent, ignore_errors=True)
    return count, found


def draw_overlay_full(image, faces):
    """draw_overlay at the picture's own size (a video frame must keep its size)."""
    global OVERLAY_MAX_SIDE
    saved, OVERLAY_MAX_SIDE = OVERLAY_MAX_SIDE, max(image.shape[:2])
    try:
        return draw_overlay(image, faces)
    finally:
        OVERLAY_MAX_SIDE = saved


# ---------------------------------------------------------------------------------------
# The run.

class Summary(NamedTuple):
    photos: int
    faces: int
    no_face: int
    unreadable: int
    csv: Path
    plots: list
    overlays: Optional[Path]
    videos: int = 0
    video_frames: int = 0
    low_faces: int = 0          # photos' faces below the confidence bar


def _workers(n_photos, workers):
    """Processes for a folder: one per core when there are enough photos to pay for starting
    them (~0.1 s each)."""
    if workers is not None:
        return max(1, workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cores, 8) if n_photos >= 16 else 1


def run(items, out, model=None, n_plot=None, detect=True, refine=REFINE, flip_tta=FLIP_TTA,
        rotations=True, plot=True, overlays=False, smooth=True, workers=None, progress=True,
        timestamp=None, max_frames=None):
    """Predict every Item (photos and videos) and write into `out`: prediction-<time>.csv, the
    contact sheet(s) plot-<time>.jpg (plot), overlays-<time>/<photo>.png (overlays) and, for
    videos, overlays-<time>/<video>.mp4. Returns a Summary."""
    from tqdm import tqdm
    out = Path(out)
    writer, stamp = new_csv(out, "prediction", timestamp, also=("plot-{}.jpg", "plot-{}-1.jpg", "overlays-{}"))
    csv_path = writer.path
    overlay_dir = out / f"overlays-{stamp}"
    photos = [item for item in items if not item.is_video]
    videos = [item for item in items if item.is_video]
    options = Options(load_model(model), detect, refine, flip_tta, rotations,
                      overlay_dir if overlays else None, plot and (n_plot is None or n_plot > 0),
                      low_confidence=LOW_CONFIDENCE)
    predictor = options.model
    names = drawn_names(photos + videos)
    overlay_names, video_names = names[:len(photos)], names[len(photos):]

    counts = {"faces": 0, "no_face": 0, "unreadable": 0, "low_faces": 0}
    # JPEG: a page of 64 faces encodes ~5x faster than as PNG, and photos look the same.
    sheets = ContactSheets(out / f"plot-{stamp}.jpg", n_plot) if options.sheet else None
    try:
        jobs = list(zip(photos, overlay_names))
        groups = [jobs[k:k + PHOTO_GROUP] for k in range(0, len(jobs), PHOTO_GROUP)]
        n_workers = min(_workers(len(photos), workers), max(1, len(groups)))   # no idle processes
        bar = tqdm(total=len(photos), desc="photos", unit="photo", disable=not progress or not photos)
        if n_workers > 1:
            import multiprocessing
            context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            base = options._replace(model=predictor.source if isinstance(predictor, OnnxPredictor) else predictor)
            import cv2
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)            # before the fork (see _worker_init); restored after
            try:
                with context.Pool(n_workers, _worker_init, (base,)) as pool:
                    _collect(pool.imap(_worker_run, groups), writer, counts, sheets, bar)
            finally:
                cv2.setNumThreads(threads)
        else:
            _collect((process_photos(group, options) for group in groups), writer, counts, sheets, bar)
        bar.close()
        frames = 0
        for item, video_name in zip(videos, video_names):
            bar = tqdm(desc=item.name, unit="frame", disable=not progress)
            annotated = overlay_dir / video_name
            annotated.parent.mkdir(parents=True, exist_ok=True)
            try:
                n, _ = process_video(item.path, item.name, item.person, options, writer, annotated,
                                     smooth=smooth, max_frames=max_frames, progress=bar)
            except ModelError:                  # the model, not the video: the run stops
                raise
            except cli.InputError as error:     # one bad video does not end the run
                try:
                    annotated.parent.rmdir()    # made for its annotated copy; gone if nothing is in it
                except OSError:
                    pass
                reason = str(error).removeprefix(f"{item.name}: ")
                writer.write(csv_rows(item.name, item.person, status=f"unreadable: {reason}"))
                counts["unreadable"] += 1
                n = 0
            bar.close()
            frames += n
    except BaseException:
        writer.close()
        if writer.rows == 0:                 # failed before any row: leave no empty CSV behind
            writer.path.unlink(missing_ok=True)
        raise
    finally:
        writer.close()
        plots = sheets.close() if sheets is not None else []
    return Summary(len(photos), counts["faces"], counts["no_face"], counts["unreadable"], csv_path,
                   plots, overlay_dir if overlay_dir.is_dir() else None, len(videos), frames,
                   counts["low_faces"])


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


def _collect(groups, writer, counts, sheets, bar):
    for group in groups:
        for result in group:
            writer.write(result.rows)
            if result.status == "ok":
                counts["faces"] += result.faces
                counts["low_faces"] += result.low_faces
            else:
                counts[result.status] += 1
            if sheets is not None:
                sheets.add(result.sheet)
            if result.message:
                bar.write(result.message)
        bar.update(len(group))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Facial keypoints on photos and videos: find the faces, crop, predict, write a "
                    "CSV (one row per face) and pictures. See docs/predict.md.")
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="photos, videos (.mp4 .avi .mov .webm), folders (DIR/<person>/<photo>) or "
                             f"glob patterns (quoted); default: {DEFAULT_FACES_DIR.name}/")
    parser.add_argument("--faces", default=None, metavar="DIR", help="a photo folder (the same as "
                        "giving it as a PATH)")
    parser.add_argument("--out", default=None, metavar="DIR", help="where the outputs go (default: the "
                        "folder given, or the folder of the first photo)")
    parser.add_argument("--model", default=None, help="a .onnx or .keras model (default: the shipped "
                        "model's ONNX; a .keras is converted once and cached)")
    parser.add_argument("--camera", type=cli.non_negative_int, default=None, metavar="INDEX",
                        help="also read this webcam (with --max-frames)")
    parser.add_argument("--max-frames", type=cli.positive_int, default=None,
                        help="stop each video (or the camera) after N frames")
    parser.add_argument("--n-plot", type=cli.non_negative_int, default=None,
                        help="put only the first N faces on the contact sheet (0: no sheet)")
    parser.add_argument("--no-plot", action="store_true", help="no contact sheet")
    parser.add_argument("--overlays", action="store_true", help="also write each photo with its "
                        "faces drawn, as overlays-<time>/<photo>.png")
    parser.add_argument("--no-detect", action="store_true", help="every photo is one face (the "
                        "whole photo is the crop), as for 96x96 face crops")
    parser.add_argument("--no-rotate", dest="rotations", action="store_false",
                        help="do not look for turned faces when no upright face is found")
    parser.add_argument("--no-refine", dest="refine", action="store_false", default=REFINE,
                        help=f"predict once on the detector's crop (default: {REFINE_PASSES} more passes, "
                             "each re-cropped from the keypoints)")
    parser.add_argument("--no-flip-tta", dest="flip_tta", action="store_false", default=FLIP_TTA,
                        help="one prediction per crop, not the mean with the mirrored crop's on the last pass")
    parser.add_argument("--no-smooth", dest="smooth", action="store_false",
                        help="videos: raw keypoints per frame, no One Euro smoothing")
    parser.add_argument("--low-confidence", type=cli.fraction, default=None, metavar="BAR",
                        help=f"faces below this confidence are searched again and marked low (default "
                             f"{LOW_CONFIDENCE}, the shipped model's; a model of your own may want another: "
                             "docs/predict.md says how to measure it)")
    parser.add_argument("--workers", type=cli.positive_int, default=None,
                        help="processes for a folder (default: one per core for 16 photos or more)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    if args.model is not None and Path(args.model).suffix.lower() not in (".keras", ".onnx"):
        raise cli.UsageError(f"--model {args.model}: must be a .keras or .onnx file")
    if args.faces is not None and not Path(args.faces).is_dir():
        raise cli.InputError(f"--faces {args.faces}: " + ("not a folder (give a photo as a PATH)"
                             if Path(args.faces).exists() else "no such folder"))
    model = load_model(args.model)              # a missing or broken model: before anything is written
    paths = list(args.paths) + ([args.faces] if args.faces else [])
    if not paths and args.camera is None:
        folder = DEFAULT_FACES_DIR
        if not folder.is_dir() or not find_photos(folder, videos=True):
            demo = folder / "demo"
            print(f"No photos in {folder}/: running on sample photos copied into {demo}/ "
                  f"(put yours in {folder}/<person>/*.jpg)")
            if not write_demo_photos(demo):
                raise cli.InputError("no sample photos available (pip install scikit-image matplotlib)")
        paths = [str(folder)]
    if args.out is not None:
        if not args.out.strip():
            raise cli.UsageError("--out '': an empty folder name (leave the option out for the default)")
        out = Path(args.out)
    elif paths and Path(paths[0]).is_dir():
        out = Path(paths[0])
    elif paths and (Path(paths[0]).exists() or Path(paths[0]).is_symlink()):
        out = Path(paths[0]).parent
    elif paths and glob.has_magic(paths[0]) and (matches := glob_inputs(paths[0])):
        out = matches[0].parent                 # a pattern: beside its first photo, as for a photo
    else:
        out = Path(".")
    empty, unreadable = [], []
    items = expand_inputs(paths, out, empty, unreadable) if paths else []
    kinds = " ".join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))
    if paths and not items and args.camera is None:
        raise cli.InputError(f"{', '.join(paths)}: no photos or videos to read ({kinds})" + "".join(
            f"; {error.filename}: cannot list this folder ({error.strerror or error})" for error in unreadable[:1]))
    for folder in empty:
        print(f"note: {folder}: no photos or videos in this folder ({kinds})", file=sys.stderr)
    for error in unreadable:
        print(f"note: {error.filename}: cannot list this folder ({error.strerror or error}); "
              "its photos are left out", file=sys.stderr)
    if out.exists() and not out.is_dir():
        raise cli.UsageError(f"--out {out}: is a file; expected a folder for the outputs")
    made = [folder for folder in [out, *out.absolute().parents] if not folder.exists()]
    cli.writable_folder(out)
    try:
        return _run_and_report(args, items, out, model)
    except BaseException:
        for folder in made:                 # refused before anything was written: leave no folders
            try:
                folder.rmdir()              # only if empty
            except OSError:
                break
        raise


def _run_and_report(args, items, out, model):
    """main's work once the inputs and --out are checked: the run, the camera, the summary, with
    --low-confidence as the bar (LOW_CONFIDENCE restored after: main may be called again)."""
    global LOW_CONFIDENCE
    default_bar = LOW_CONFIDENCE
    if args.low_confidence is not None:
        LOW_CONFIDENCE = args.low_confidence
    try:
        return _report(args, items, out, model)
    finally:
        LOW_CONFIDENCE = default_bar


def _report(args, items, out, model):
    if args.camera is not None:                 # before any work: is there such a camera?
        capture, _ = _open_capture(args.camera)
        opened = capture is not None and capture.isOpened()
        if capture is not None:
            capture.release()
        if not opened:
            raise cli.InputError(f"--camera {args.camera}: no camera OpenCV can open with that index")
    started = time.perf_counter()
    summary = run(items, out, model, n_plot=args.n_plot, detect=not args.no_detect, refine=args.refine,
                  flip_tta=args.flip_tta, rotations=args.rotations, plot=not args.no_plot,
                  overlays=args.overlays, smooth=args.smooth, workers=args.workers,
                  progress=not args.no_progress, max_frames=args.max_frames)
    if args.camera is not None:
        writer, stamp = new_csv(out, "camera", also=("camera-{}.mp4",))
        try:
            options = Options(model, not args.no_detect, args.refine, args.flip_tta, args.rotations)
            n, _ = process_video(args.camera, f"camera:{args.camera}", "", options, writer,
                                 out / f"camera-{stamp}.mp4", smooth=args.smooth, max_frames=args.max_frames)
        finally:
            writer.close()
        print(f"camera {args.camera}: {n} frames; wrote {writer.path}")
    seconds = time.perf_counter() - started
    print(f"{summary.photos} photos: {summary.faces} faces, {summary.no_face} without a face, "
          f"{summary.unreadable} unreadable" + (f"; {summary.videos} videos, {summary.video_frames} frames"
                                               if summary.videos else "") + f" ({seconds:.1f} s)")
    if summary.faces >= LOW_SHARE_MIN_FACES and summary.low_faces > LOW_SHARE * summary.faces:
        print(f"note: {summary.low_faces} of {summary.faces} faces are below the confidence bar "
              f"{LOW_CONFIDENCE:g}, so each was searched again (slower) and is marked low; a model less "
              "sure of every face than the shipped one wants a lower --low-confidence "
              "(docs/predict.md, \"Confidence\", says how to measure it)", file=sys.stderr)
    print(f"wrote {summary.csv}")
    for plot in summary.plots:
        print(f"wrote {plot}")
    if summary.overlays:
        print(f"wrote {summary.overlays}/")
    if items and summary.unreadable == summary.photos + summary.videos:
        what = f"none of the {len(items)} inputs could" if len(items) > 1 else "the input could not"
        print(f"error: {what} be read (the CSV's status column says why)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    cli.run(main)
