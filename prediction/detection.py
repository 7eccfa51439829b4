"""Finding faces: MediaPipe's BlazeFace (prediction/blazeface.py) on the whole photo, OpenCV's
cascades on shrunk copies of it where BlazeFace finds none (also on turned copies), and the
calibrated maps to the Kaggle frame (a detector box -> frame, 15 keypoints -> frame) that
detector_calibration.json beside this file holds (fitted by calibrate_detector.py)."""
import json
import os
import warnings
from pathlib import Path

import numpy as np

from input_data import IMAGE_SIZE, Frame
from prediction.images import shrunk, upright_view

CALIBRATION_PATH = Path(__file__).resolve().parent / "detector_calibration.json"

# The first detector: BlazeFace's short-range model (also faces cut by the picture's edge;
# bench/open_world.py). Its faces need a score of BLAZEFACE_MIN_SCORE (MediaPipe's own bar).
# Where it finds none, or only faces under FULL_RANGE_BELOW of the picture's longer side (there
# may be smaller ones beside them: a group), the full-range model (192 px, smaller faces, three
# times the cost) runs too and its new faces are added. Only where neither finds a face do the
# cascades below run: they find some faces it misses, and more that are no face (a cheek, a
# tie), which then rest on the keypoint model's confidence.
BLAZEFACE_MIN_SCORE = 0.5
FULL_RANGE_BELOW = 0.3

# The detector. calibrate_detector.py fits the box -> frame transform for these settings and
# records them in detector_calibration.json; change them only together with a re-calibration.
CASCADE = "haarcascade_frontalface_default.xml"
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 4
MIN_FACE = 24                # px in the shrunk copy: the cascade's own window
# The photo is shrunk so that its longest side is at most DETECT_SIDES[0]; only when no face is
# found there, at most DETECT_SIDES[1], and so on; the fallbacks run on the last. The smallest
# face found is MIN_FACE / side of the longest side: 25%, 15%, then 10%. Small copies are fast
# (the cascade's cost grows with the pixels); a first copy under 96 px lost faces, since a face
# found there ends the search (docs/experiments.md, 2026-12-07).
DETECT_SIDES = (96, 160, 240)
# Before the Haar cascade: OpenCV's LBP frontal-face cascade (integer features: about 5x faster
# than Haar for the same pixels) on a copy at most LBP_SIDE px; the Haar cascade runs only when it
# finds nothing, or when none of its faces comes out confident (faster, no face lost:
# bench/predict_speed.py, docs/experiments.md). Its boxes sit differently from Haar's:
# calibrate_detector.py fits them their own box -> frame transform.
LBP_SIDE = 96
LBP_SCALE_FACTOR = 1.05
LBP_MIN_NEIGHBORS = 3
NEAR_LIMIT = 1.5             # see detect_boxes: a face under 36 px in its copy
# Tried in turn only when the cascade above finds no face: (cascade, min_neighbors, also on
# the mirrored photo); they find most faces the frontal cascade misses (bench/predict_accuracy.py).
FALLBACKS = (("haarcascade_frontalface_alt2.xml", 3, False),
             ("haarcascade_frontalface_default.xml", 2, False),
             ("haarcascade_profileface.xml", 3, True))
# Turned copies tried in turn (degrees counter-clockwise the face is turned) when the upright photo
# has no face. The cascade finds faces within about 15 degrees of upright, so 30-degree steps
# cover every roll; the common ones (a phone held sideways, a small tilt) come first.
ROLLS = (90, -90, 30, -30, 180, 60, -60, 120, -120, 150, -150)
# Every square a face is cropped from has its centre and side rounded to this many decimals (photo
# px). The detectors and the network differ in their last float bits between runtimes and CPUs
# (onnxruntime and onnxruntime-web, AVX2 and AVX-512), and on a face the network is unsure of,
# a 0.001-px move of its square can end its keypoints pixels away after the refinements; rounded,
# every runtime crops the same pixels (docs/web.md). 0.1 px is far below a detector's own error.
FRAME_DECIMALS = 1

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
            "lbp": {"side": LBP_SIDE, "scale_factor": LBP_SCALE_FACTOR, "min_neighbors": LBP_MIN_NEIGHBORS},
            "blazeface": {"min_score": BLAZEFACE_MIN_SCORE, "full_range_below": FULL_RANGE_BELOW}}


def blazeface(model="short"):
    """A BlazeFace detector, "short" or "full" range (one thread: its small input gains nothing
    from more)."""
    if ("blazeface", model) not in _cache:
        from prediction.blazeface import BlazeFace
        _cache["blazeface", model] = BlazeFace(model, threads=1)
    return _cache["blazeface", model]


def blazeface_boxes(gray, model="short"):
    """A BlazeFace model's faces as boxes (x, y, w, h) in photo pixels (its own boxes, not yet in
    Haar's terms), best score first; overlapping detections of one face are already merged."""
    return [_blazeface_box(d, model) for d in blazeface(model)(gray, BLAZEFACE_MIN_SCORE)]


def _blazeface_box(detection, model):
    """A BlazeFace detection's box (x, y, w, h). The short-range model's box sits off a face
    turned aside: its box is moved to be centred on the mean of the eyes, nose tip and mouth (on
    the held-out CVND people the calibrated frame's centre is then 5.1 / 2.5 px rms off in x / y
    in the 96-px crop, against 8.9 / 4.4 from the box itself; the full-range box: 2.0 / 3.7)."""
    x0, y0, x1, y1 = (float(v) for v in detection.box)
    if model == "short":
        cx, cy = detection.keypoints[:4].mean(axis=0)
        x0, x1 = cx - (x1 - x0) / 2, cx + (x1 - x0) / 2
        y0, y1 = cy - (y1 - y0) / 2, cy + (y1 - y0) / 2
    return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def blazeface_faces(gray):
    """BlazeFace's faces as Haar boxes, largest first (see FULL_RANGE_BELOW), or [] (also with a
    calibration that has no BlazeFace fit)."""
    try:
        found = [_as_haar_box(box, "blazeface_box_to_frame") for box in blazeface_boxes(gray)]
        if not found or min(box[2] for box in found) < FULL_RANGE_BELOW * max(gray.shape):
            found = _add_new(found, [_as_haar_box(box, "blazeface_full_box_to_frame")
                                     for box in blazeface_boxes(gray, "full")])
    except KeyError:
        return []
    return sorted(found, key=lambda b: -b[2] * b[3])


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
    small, shrink = shrunk(np.ascontiguousarray(gray, np.uint8), LBP_SIDE)
    return [tuple(float(v) / shrink for v in box) for box in _run_lbp(small)]


def _run_lbp(small):
    """The LBP cascade's boxes (n, 4) in the pixels of the copy `small`."""
    cascade = lbp_cascade()
    if cascade is None or min(small.shape) < MIN_FACE:
        return np.zeros((0, 4))
    return np.reshape(cascade.detectMultiScale(small, scaleFactor=LBP_SCALE_FACTOR, minNeighbors=LBP_MIN_NEIGHBORS,
                                               minSize=(MIN_FACE, MIN_FACE)), (-1, 4)).astype(np.float64)


def _as_haar_box(box, fit_name="lbp_box_to_frame"):
    """An LBP box (or BlazeFace's: fit_name "blazeface_box_to_frame", "blazeface_full_box_to_frame")
    as the Haar box that
    box_to_frame maps to the same frame (everything after detection speaks Haar boxes)."""
    fit = calibration().get(fit_name)
    if fit is None:
        raise KeyError(fit_name)
    x, y, w, h = box
    size = (w + h) / 2
    frame = Frame(x + w / 2 + fit["dx"] * size, y + h / 2 + fit["dy"] * size, fit["side"] * size)
    haar = calibration()["box_to_frame"]
    side = frame.side / haar["side"]
    cx, cy = frame.cx - haar["dx"] * side, frame.cy - haar["dy"] * side
    return (cx - side / 2, cy - side / 2, side, side)


def run_cascade(small, name, min_neighbors, mirrored=False):
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


def detect_boxes(gray, fallback=True, quick=True, sides=DETECT_SIDES):
    """Face boxes (x, y, w, h) in photo pixels, as the Haar cascade's, largest first: BlazeFace's
    (quick, when they find any: blazeface_faces), else the LBP cascade's (quick, when it finds
    any), else the Haar cascade's on the DETECT_SIDES copies in turn until one has a face; when
    none has, the FALLBACKS are tried in turn on the last copy (fallback=False: not); `sides`:
    the copies to try. A face found at under NEAR_LIMIT times
    the smallest size its copy can hold says that faces of about its size are there, some just
    too small for that copy (two people side by side): the next copy is searched as well and
    its new boxes added. Upright faces only (see find_and_predict for turned ones)."""
    return detect(gray, fallback, quick, sides)[0]


def _settled(boxes):
    """A copy's boxes (n, 4, its pixels) end the coarse-to-fine search: there are some, and
    none near the smallest size the copy can hold (see detect_boxes)."""
    return len(boxes) > 0 and boxes[:, 2].min() >= NEAR_LIMIT * MIN_FACE


def detect(gray, fallback=True, quick=True, sides=DETECT_SIDES):
    """(detect_boxes, how: "blazeface", "lbp" (the quick LBP cascade's boxes ended the search:
    the Haar cascade may find better ones) or "haar")."""
    gray = np.ascontiguousarray(gray, np.uint8)
    found = []
    if quick and min(gray.shape) >= 2:
        found = blazeface_faces(gray)
        if found:
            return found, "blazeface"
    if quick:
        small, shrink = shrunk(gray, LBP_SIDE)
        boxes = _run_lbp(small)
        try:
            found = [_as_haar_box(tuple(box / shrink)) for box in boxes]
        except KeyError:                            # a calibration without the LBP fit
            boxes, found = boxes[:0], []
        if _settled(boxes):
            return sorted(found, key=lambda b: -b[2] * b[3]), "lbp"
    boxes = []
    for side in sides:                              # coarse to fine, until a face is found
        small, shrink = shrunk(gray, side)
        if min(small.shape) < MIN_FACE:
            break
        boxes = run_cascade(small, CASCADE, MIN_NEIGHBORS)
        found = _add_new(found, [tuple(float(v) / shrink for v in box) for box in boxes])
        if _settled(boxes) or shrink == 1.0:
            break
    for name, min_neighbors, mirrored in (FALLBACKS if fallback and min(small.shape) >= MIN_FACE else ()):
        if found:
            break
        boxes = run_cascade(small, name, min_neighbors)
        if mirrored:
            boxes = np.concatenate([boxes, run_cascade(small, name, min_neighbors, mirrored=True)])
        found = [tuple(float(v) / shrink for v in box) for box in boxes]
    return sorted(found, key=lambda b: -b[2] * b[3]), "haar"


def _add_new(kept, boxes):
    """kept + the boxes whose centre is in none of them (the same face found again is not)."""
    kept = list(kept)
    for box in boxes:
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        if not any(k[0] <= cx <= k[0] + k[2] and k[1] <= cy <= k[1] + k[3] for k in kept):
            kept.append(box)
    return kept


def snapped_frame(cx, cy, side):
    """The Frame at (cx, cy) of `side`, each rounded to FRAME_DECIMALS."""
    return Frame(*(float(np.round(v, FRAME_DECIMALS)) for v in (cx, cy, side)))


def box_to_frame(box):
    """A detector box (x, y, w, h) -> the Kaggle frame, by the calibrated transform:
    centre = box centre + (dx, dy) * w, side = side_scale * w (the boxes are square)."""
    fit = calibration()["box_to_frame"]
    x, y, w, h = box
    size = (w + h) / 2
    return snapped_frame(x + w / 2 + fit["dx"] * size, y + h / 2 + fit["dy"] * size, fit["side"] * size)


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


def _sides_for(longest, face_size):
    """The DETECT_SIDES worth trying for a face of about face_size px (photo pixels; None:
    any size) in a photo whose longest side is `longest`: up to the first copy in which it is
    the cascade's window or more (with 25% to spare)."""
    if not face_size:
        return DETECT_SIDES
    needed = MIN_FACE * longest / (0.75 * face_size)
    larger = [side for side in DETECT_SIDES if side >= needed]
    return tuple(side for side in DETECT_SIDES if side < needed) + tuple(larger[:1])


def turned_boxes(gray, roll, face_size=None):
    """detect_boxes (no fallbacks) on the photo turned by roll, in the turned full-size photo's
    pixels. A quarter turn moves whole pixels: the photo itself is turned, and a face comes
    out exactly as it would upright. Other angles turn a copy shrunk to the largest detection
    side (turning a 50 MP photo eight times would take seconds). face_size: the size of the
    face looked for, when known (an unsure upright face): only the copies that can find it."""
    if float(roll) % 90 == 0:
        view = upright_view(gray, roll)
        sides = _sides_for(max(view.image.shape), face_size)
        return detect_boxes(view.image, fallback=False, sides=sides), view.roll
    small, shrink = shrunk(gray, DETECT_SIDES[-1])
    view = upright_view(small, roll)
    sides = _sides_for(max(view.image.shape), face_size and face_size * shrink)
    boxes = detect_boxes(view.image, fallback=False, sides=sides)
    return [tuple(v / shrink for v in box) for box in boxes], view.roll


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
    return snapped_frame(centre[0] + size @ fit["cx"], centre[1] + size @ fit["cy"], side)
