"""Facial keypoints on real photos: detect the faces, crop them to the Kaggle frame, predict,
map the keypoints back into the photo, and write a plot, overlays and a CSV.

    python predict.py                          # every photo under faces/ (the sample photos if empty)
    python predict.py --faces DIR [--model PATH] [--n-plot N] [--no-detect] [--no-flip-tta]

    import predict
    gray = predict.read_photo("faces/ada/1.jpg")            # uint8 (H, W), EXIF orientation applied
    frames = predict.detect_faces(gray)                      # [input_data.Frame], largest first
    faces = predict.predict_keypoints(gray)                  # [Face(frame, box, crop, keypoints)]
    faces[0].keypoints                                       # (15, 2) photo pixels, KEYPOINT_NAMES order

The folder layout is `DIR/<person>/<photo>` (files directly in DIR have the person ""). The
outputs go into DIR, named by the time of the run:

- `prediction-<time>.csv`: one row per face (`face` 0 is the largest in its photo), columns
  file, person, face, status, x0, y0, size, then the 30 Kaggle keypoint columns, all in photo
  pixels; (x0, y0, size) is the crop square. A photo without a face, or that cannot be read,
  gets one row with status `no_face` or `unreadable: <reason>` and empty coordinates.
- `plot-<time>.png`: the faces (all, or the first --n-plot) as 96x96 crops with keypoints;
- `overlays-<time>/<file>.png`: each photo with its detector boxes, crop squares and keypoints.

How a face is found (measured on the 2,820 YouTube Faces frames of ../shared/data, see
bench/predict_accuracy.py and bench/predict_speed.py):

1. OpenCV's Haar frontal-face cascade on a copy of the photo shrunk to at most 160 pixels,
   then (only if it finds no face) 240 pixels, then other cascades (FALLBACKS).
2. The detector's square box -> the Kaggle frame (input_data.frame_from_68's crop) by a
   transform fitted on the training people (calibrate_detector.py -> detector_calibration.json).
3. The network predicts the 15 keypoints in that 96x96 crop; with refine, the frame is then
   re-estimated from them (frame_from_keypoints, also calibrated) and the network predicts
   again on the new crop.

Photos that already are 96x96 face crops skip detection; --no-detect treats every photo as one
face (the frame is the whole photo, centred).
"""
import argparse
import csv
import json
import os
import shutil
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

import input_data
from input_data import COLUMNS, IMAGE_SIZE, Frame

HERE = Path(__file__).resolve().parent
CALIBRATION_PATH = HERE / "detector_calibration.json"
DEFAULT_FACES_DIR = HERE / "faces"

# File types read (case-insensitive).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".tif", ".tiff", ".webp"})

# The CSV's columns, exactly.
CSV_COLUMNS = ["file", "person", "face", "status", "x0", "y0", "size"] + list(COLUMNS)

# The detector. calibrate_detector.py fits the box -> frame transform for these settings and
# records them in detector_calibration.json; change them only together with a re-calibration.
CASCADE = "haarcascade_frontalface_default.xml"
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 5
MIN_FACE = 24                # px in the shrunk copy: the cascade's own window
# The photo is shrunk so that its longest side is at most DETECT_SIDES[0]; only when no face is
# found there, at most DETECT_SIDES[1], and so on (the fallbacks run on the last). The smallest
# face found is MIN_FACE / side of the longest side: 15% on the first, 10% on the second copy.
DETECT_SIDES = (160, 240)
# Tried in turn only when the cascade above finds no face: (cascade, min_neighbors, also on
# the mirrored photo). On the 2,820 CVND photos the frontal cascade finds no face in 42; the
# alt2 cascade with fewer neighbours finds 37 of those (bench/predict_accuracy.py).
FALLBACKS = (("haarcascade_frontalface_alt2.xml", 3, False),
             ("haarcascade_frontalface_default.xml", 2, False),
             ("haarcascade_profileface.xml", 3, True))

# Defaults chosen by measurement (bench/predict_accuracy.py, see README).
REFINE = True
FLIP_TTA = True             # the shipped v6 recipe: 6.4% against 6.6% of the IOD without it

NETWORK_BATCH = 64           # crops per network call


class PhotoError(ValueError):
    """A file that cannot be read as a photo; the message names the file and the reason."""


class Face(NamedTuple):
    """One face in a photo. All coordinates are photo pixels (pixel index i = coordinate i)."""
    frame: Frame                  # the square that became the 96x96 crop (after refinement)
    box: Optional[tuple]          # the detector's box (x, y, w, h), None when not detected
    crop: np.ndarray              # uint8 (96, 96): what the network saw last
    keypoints: np.ndarray         # float (15, 2) in input_data.KEYPOINT_NAMES order


# ---------------------------------------------------------------------------------------
# Files.

def find_photos(folder):
    """Every image under `folder` as sorted (path relative to folder, person) pairs; the person
    is the first sub-folder's name ("" for files directly in folder). Leaves out this script's
    own outputs (DIR/plot-*.png and DIR/overlays-*/) and hidden files and folders."""
    folder = Path(folder)
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        if any(part.startswith(".") for part in rel.parts):
            continue
        if len(rel.parts) == 1 and rel.name.startswith("plot-"):
            continue
        if len(rel.parts) > 1 and rel.parts[0].startswith("overlays-"):
            continue
        found.append((rel, rel.parts[0] if len(rel.parts) > 1 else ""))
    return sorted(found, key=lambda item: item[0].as_posix())


def read_photo(path):
    """Any image file -> uint8 (H, W) grayscale (input_data.read_gray: EXIF orientation
    applied, any colour mode or bit depth). PhotoError (a ValueError) naming the file and the
    reason when it cannot be read: missing, empty, not an image, truncated or corrupt."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise PhotoError(f"{path}: cannot open ({error.strerror or error})") from None
    if size == 0:
        raise PhotoError(f"{path}: empty file (0 bytes)")
    from PIL import Image, UnidentifiedImageError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            gray = input_data.read_gray(path)
    except UnidentifiedImageError:
        raise PhotoError(f"{path}: not an image (unknown or corrupt file format)") from None
    except Image.DecompressionBombError as error:
        raise PhotoError(f"{path}: too large to read ({error})") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as error:
        raise PhotoError(f"{path}: corrupt or truncated image ({type(error).__name__}: {error})") from None
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise PhotoError(f"{path}: no pixels (shape {gray.shape})")
    return gray


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
            "min_face": MIN_FACE, "detect_sides": list(DETECT_SIDES)}


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


def detect_boxes(gray, fallback=True):
    """The Haar cascade's face boxes (x, y, w, h) in photo pixels, largest first: on the
    DETECT_SIDES copies in turn until one has a face; when none has, the FALLBACKS are tried in
    turn on the last copy (fallback=False: not)."""
    import cv2
    gray = np.ascontiguousarray(gray, np.uint8)
    boxes = []
    for side in DETECT_SIDES:                       # coarse to fine, until a face is found
        shrink = min(1.0, side / max(gray.shape))
        small = gray if shrink == 1.0 else cv2.resize(gray, None, fx=shrink, fy=shrink,
                                                       interpolation=cv2.INTER_AREA)
        if min(small.shape) < MIN_FACE:
            return []
        boxes = _run_cascade(small, CASCADE, MIN_NEIGHBORS)
        if len(boxes) or shrink == 1.0:
            break
    for name, min_neighbors, mirrored in (FALLBACKS if fallback else ()):
        if len(boxes):
            break
        boxes = _run_cascade(small, name, min_neighbors)
        if mirrored:
            boxes = np.concatenate([boxes, _run_cascade(small, name, min_neighbors, mirrored=True)])
    boxes = [tuple(float(v) / shrink for v in box) for box in boxes]
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def box_to_frame(box):
    """A detector box (x, y, w, h) -> the Kaggle frame, by the calibrated transform:
    centre = box centre + (dx, dy) * w, side = side_scale * w (the boxes are square)."""
    fit = calibration()["box_to_frame"]
    x, y, w, h = box
    size = (w + h) / 2
    return Frame(float(x + w / 2 + fit["dx"] * size), float(y + h / 2 + fit["dy"] * size),
                 float(fit["side"] * size))


def detect_faces(gray):
    """Every face in a uint8 (H, W) photo as its Kaggle frame (input_data.Frame, photo
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
# Cropping, the network, mapping back, refinement.

def crop_faces(gray, frames):
    """uint8 (n, 96, 96): each frame's crop (input_data.Frame.crop, the one crop path)."""
    return np.stack([frame.crop(gray) for frame in frames]) if len(frames) else \
        np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)


def load_model(model=None):
    """A model to predict with: a keras model (or anything with predict_on_batch/predict) as
    it is; a path to a .keras file; None = models.shipped_model_path(). A loaded file runs
    with its batch norms folded into the convolutions, in one tf.function
    (inference.fast_model: the same predictions, ~1.5x faster than keras predict). Loaded
    models are cached by path."""
    if model is not None and not isinstance(model, (str, os.PathLike)):
        return model
    if model is None:
        import models
        model = models.shipped_model_path()
    key = ("model", str(Path(model).resolve()))
    if key not in _cache:
        if not Path(model).is_file():
            raise FileNotFoundError(f"{model}: no such model file")
        import inference
        _cache[key] = inference.fast_model(model)
    return _cache[key]


def run_network(model, crops, flip_tta=FLIP_TTA):
    """uint8 (n, 96, 96) crops -> float (n, 15, 2) keypoints in the 96-px frame; flip_tta
    averages with the un-mirrored prediction on the mirrored crops (augment.py's mirror)."""
    crops = np.asarray(crops)
    if len(crops) == 0:
        return np.zeros((0, 15, 2))
    X = input_data.images_to_unit(crops)
    predict = getattr(model, "predict_on_batch", None) or model.predict
    outputs = []
    for first in range(0, len(X), NETWORK_BATCH):
        batch = X[first:first + NETWORK_BATCH]
        if flip_tta:
            import augment
            outputs.append(augment.predict_with_flip(model, batch, batch_size=NETWORK_BATCH))
        else:
            outputs.append(np.asarray(predict(batch), np.float32))
    return input_data.keypoints_to_pixels(np.concatenate(outputs)).reshape(-1, 15, 2).astype(np.float64)


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


def predict_batch(grays, model=None, frames=None, boxes=None, refine=REFINE, flip_tta=FLIP_TTA):
    """predict_keypoints for many photos, with one batched network call per pass.
    frames: a list (one entry per photo) of lists of Frames; boxes likewise (or None);
    refine: one bool for all photos, or one per photo."""
    model = load_model(model)
    refine = [bool(refine)] * len(grays) if np.ndim(refine) == 0 else [bool(r) for r in refine]
    frames = [list(f) for f in frames]
    boxes = [list(b) if b is not None else [None] * len(f)
             for b, f in zip(boxes or [None] * len(frames), frames)]
    owner = [(i, j) for i, f in enumerate(frames) for j in range(len(f))]
    flat = [frames[i][j] for i, j in owner]
    crops = [frames[i][j].crop(grays[i]) for i, j in owner]
    if not owner:
        return [[] for _ in grays]
    points = run_network(model, np.stack(crops), flip_tta)
    keypoints = [frame.to_photo(p) for frame, p in zip(flat, points)]
    if any(refine[i] for i, _ in owner):
        again = []
        for n, (i, j) in enumerate(owner):
            if not refine[i]:
                continue
            try:
                new = frame_from_keypoints(keypoints[n])
            except ValueError:
                continue
            if new.side > 4 * flat[n].side or new.side < flat[n].side / 4:
                continue                            # a wild first prediction: keep the first crop
            flat[n], crops[n] = new, new.crop(grays[i])
            again.append(n)
        if again:                                   # the second pass: only the re-cropped faces
            points = run_network(model, np.stack([crops[n] for n in again]), flip_tta)
            for n, p in zip(again, points):
                keypoints[n] = flat[n].to_photo(p)
    out = [[] for _ in grays]
    for n, (i, j) in enumerate(owner):
        out[i].append(Face(flat[n], boxes[i][j], crops[n], keypoints[n]))
    return out


def predict_keypoints(gray, model=None, frames=None, refine=REFINE, flip_tta=FLIP_TTA):
    """The faces of a uint8 (H, W) photo with their 15 keypoints in photo pixels.

    model: a keras model, a .keras path, or None for the shipped model (cached).
    frames: None = detect (a 96x96 photo is taken as one face crop without detecting); or the
    input_data.Frames to use. refine: re-centre each crop on its first prediction and predict
    again (not for a 96x96 photo taken as its own crop). Returns [Face(frame, box, crop, keypoints)], largest detected face first.
    """
    gray = np.asarray(gray, np.uint8)
    boxes = None
    if frames is None:
        if is_face_crop(gray):
            frames, refine = [whole_frame(gray)], False
        else:
            boxes = detect_boxes(gray)
            frames = [box_to_frame(b) for b in boxes]
    return predict_batch([gray], model, [frames], None if boxes is None else [boxes],
                         refine=refine, flip_tta=flip_tta)[0]


# ---------------------------------------------------------------------------------------
# Outputs.

def _number(value):
    return f"{value:.2f}"


def csv_rows(rel, person, faces=None, status="ok"):
    """The CSV rows of one photo (dicts keyed by CSV_COLUMNS)."""
    base = {"file": rel.as_posix() if isinstance(rel, Path) else str(rel), "person": person}
    if status != "ok" or not faces:
        return [{**base, "face": "", "status": status if status != "ok" else "no_face",
                 **{c: "" for c in CSV_COLUMNS[4:]}}]
    rows = []
    for index, face in enumerate(faces):
        x0, y0 = face.frame.corner
        row = {**base, "face": index, "status": "ok", "x0": _number(x0), "y0": _number(y0),
               "size": _number(face.frame.side)}
        row.update({c: _number(v) for c, v in zip(COLUMNS, np.asarray(face.keypoints).ravel())})
        rows.append(row)
    return rows


def write_csv(path, rows):
    """Write the prediction CSV atomically (a temporary file, then a rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


OVERLAY_MAX_SIDE = 1200


def write_overlay(path, gray, faces):
    """The photo with each detector box (blue), crop square (green) and keypoints (red)."""
    import cv2
    shrink = min(1.0, OVERLAY_MAX_SIDE / max(gray.shape))
    image = gray if shrink == 1.0 else cv2.resize(gray, None, fx=shrink, fy=shrink,
                                                  interpolation=cv2.INTER_AREA)
    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    thick = max(1, int(round(max(image.shape) / 400)))
    for index, face in enumerate(faces):
        if face.box is not None:
            x, y, w, h = (np.array(face.box) * shrink).round().astype(int)
            cv2.rectangle(image, (x, y), (x + w, y + h), (255, 128, 0), thick)
        x0, y0 = (face.frame.corner * shrink).round().astype(int)
        side = int(round(face.frame.side * shrink))
        cv2.rectangle(image, (x0, y0), (x0 + side, y0 + side), (0, 200, 0), thick)
        cv2.putText(image, str(index), (x0 + 2, y0 + 12 * thick), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thick, (0, 200, 0), thick)
        radius = max(1, int(round(face.frame.side * shrink / 60)))
        for x, y in np.asarray(face.keypoints) * shrink:
            cv2.circle(image, (int(round(x)), int(round(y))), radius, (0, 0, 255), -1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"{path}: could not write the overlay")
    return path


def plot_faces(path, crops, keypoints, titles, columns=8):
    """A grid of 96x96 crops with their keypoints (in the crop's frame), one title each."""
    from matplotlib.figure import Figure
    n = len(crops)
    columns = max(1, min(columns, n))
    rows = max(1, -(-n // columns))
    fig = Figure(figsize=(1.6 * columns, 1.75 * rows))
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, crop, points, title in zip(axes, crops, keypoints, titles):
        ax.imshow(crop, cmap="gray", vmin=0, vmax=255)
        ax.scatter(points[:, 0], points[:, 1], s=8, c="red", marker="x")
        ax.set_title(title, fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return path


# ---------------------------------------------------------------------------------------
# The embedded default: sample photos that ship inside installed packages.

def write_demo_photos(folder):
    """Copy scikit-image's astronaut (Eileen Collins, NASA) and matplotlib's grace_hopper
    (both public domain) into `folder`; returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        import matplotlib.cbook
        source = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
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
# The script.

class Summary(NamedTuple):
    photos: int
    faces: int
    no_face: int
    unreadable: int
    csv: Path
    plot: Optional[Path]
    overlays: Path


def run(folder, model=None, n_plot=None, detect=True, refine=REFINE, flip_tta=FLIP_TTA,
        chunk=32, progress=True, timestamp=None):
    """Predict every photo under `folder` and write the CSV, plot and overlays there."""
    from tqdm import tqdm
    folder = Path(folder)
    model = load_model(model)
    photos = find_photos(folder)
    stamp = timestamp or datetime.now().strftime("%Y%m%d-%H%M%S")
    csv_path = folder / f"prediction-{stamp}.csv"
    plot_path = folder / f"plot-{stamp}.png"
    overlay_dir = folder / f"overlays-{stamp}"
    rows, plotted, counts = [], [], {"faces": 0, "no_face": 0, "unreadable": 0}

    def flush(pending):
        if not pending:
            return
        grays = [gray for _, _, gray, _, _ in pending]
        # Whole-photo frames (--no-detect, 96x96 crops) are the frame by definition: not refined.
        results = predict_batch(grays, model, [f for *_, f, _ in pending], [b for *_, b in pending],
                                refine=[refine and b[0] is not None if b else refine for *_, b in pending],
                                flip_tta=flip_tta)
        for (rel, person, gray, _, _), faces in zip(pending, results):
            if not faces:
                counts["no_face"] += 1
                rows.extend(csv_rows(rel, person, status="no_face"))
            else:
                counts["faces"] += len(faces)
                rows.extend(csv_rows(rel, person, faces))
                for index, face in enumerate(faces):
                    plotted.append((face, rel.as_posix() + (f" #{index}" if index else "")))
            try:
                write_overlay(overlay_dir / (rel.as_posix() + ".png"), gray, faces)
            except Exception as error:      # an overlay never stops the run
                print(f"\n{rel}: overlay not written ({error})")
        pending.clear()

    pending = []
    for rel, person in tqdm(photos, desc="photos", unit="photo", disable=not progress):
        try:
            gray = read_photo(folder / rel)
            if not detect or is_face_crop(gray):
                boxes, frames = [None], [whole_frame(gray)]
            else:
                boxes = detect_boxes(gray)
                frames = [box_to_frame(b) for b in boxes]
        except PhotoError as error:
            reason = str(error).removeprefix(f"{folder / rel}: ")
            counts["unreadable"] += 1
            rows.extend(csv_rows(rel, person, status=f"unreadable: {reason}"))
            continue
        except Exception as error:          # never let one photo stop the run
            counts["unreadable"] += 1
            rows.extend(csv_rows(rel, person, status=f"unreadable: {type(error).__name__}: {error}"))
            continue
        pending.append((rel, person, gray, frames, boxes))
        if len(pending) >= chunk:
            flush(pending)
    flush(pending)

    write_csv(csv_path, rows)
    shown = plotted if n_plot is None else plotted[:n_plot]
    if shown:
        plot_faces(plot_path, [f.crop for f, _ in shown],
                   [f.frame.to_frame(f.keypoints) for f, _ in shown], [t for _, t in shown])
    return Summary(len(photos), counts["faces"], counts["no_face"], counts["unreadable"],
                   csv_path, plot_path if shown else None, overlay_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Facial keypoints on every photo under a folder "
                                     "(DIR/<person>/<photo>): detect, crop, predict, plot, CSV.")
    parser.add_argument("--faces", default=None, help=f"the photo folder (default {DEFAULT_FACES_DIR}; "
                        "when that is empty, sample photos are copied into it)")
    parser.add_argument("--model", default=None, help="a .keras model (default: the shipped model, "
                        "models.shipped_model_path())")
    parser.add_argument("--n-plot", type=int, default=None, help="plot only the first N faces")
    parser.add_argument("--no-detect", action="store_true", help="every photo is one face (the "
                        "whole photo is the crop), as for 96x96 face crops")
    parser.add_argument("--no-refine", dest="refine", action="store_false", default=REFINE,
                        help="skip the second, re-centred pass")
    parser.add_argument("--refine", dest="refine", action="store_true", help="force the second pass")
    parser.add_argument("--flip-tta", dest="flip_tta", action="store_true", default=FLIP_TTA,
                        help="also predict the mirrored crops and average (the default)")
    parser.add_argument("--no-flip-tta", dest="flip_tta", action="store_false",
                        help="one prediction per crop (half the network time)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    folder = Path(args.faces) if args.faces else DEFAULT_FACES_DIR
    if args.faces is None and (not folder.is_dir() or not find_photos(folder)):
        demo = folder / "demo"
        print(f"No photos in {folder}/: running on sample photos copied into {demo}/ "
              f"(put yours in {folder}/<person>/*.jpg)")
        if not write_demo_photos(demo):
            sys.exit("error: no sample photos available (pip install scikit-image matplotlib)")
    if not folder.is_dir():
        sys.exit(f"error: {folder}: no such folder")

    try:
        model = load_model(args.model)
    except FileNotFoundError as error:      # includes models.NoShippedModelError
        sys.exit(f"error: {error}")
    started = time.perf_counter()
    summary = run(folder, model, n_plot=args.n_plot, detect=not args.no_detect,
                  refine=args.refine, flip_tta=args.flip_tta, progress=not args.no_progress)
    seconds = time.perf_counter() - started
    print(f"{summary.photos} photos: {summary.faces} faces, {summary.no_face} without a face, "
          f"{summary.unreadable} unreadable ({seconds:.1f} s)")
    print(f"wrote {summary.csv}")
    if summary.plot:
        print(f"wrote {summary.plot}")
    print(f"wrote {summary.overlays}/")
    return summary


if __name__ == "__main__":
    main()
