"""One photo's faces: crop each face's frame to 96x96, predict, map the keypoints back into the
photo, refine (re-crop upright from the keypoints, predict again); an unsure face is retried from
moved and resized squares, and turned copies of the photo are searched when no face is sure."""
from typing import NamedTuple, Optional

import numpy as np

from input_data import IMAGE_SIZE, Frame
from prediction.detection import (BLAZEFACE_MIN_SCORE, CASCADE, DETECT_SIDES, MIN_NEIGHBORS, ROLLS, blazeface,
                                  box_to_frame, detect, detect_boxes, frame_from_keypoints, is_face_crop,
                                  run_cascade, turned_boxes, whole_frame)
from prediction.images import apply, shrunk, upright_view
from prediction.options import FLIP_TTA, REFINE, REFINE_PASSES
from prediction.runtime import bar_of, load_model, run_network

# A face whose confidence is below the bar (low_confidence) is tried again from its detector frame scaled
# by these, and the most confident kept (the Haar box's size is off by 11% rms).
RETRY_SCALES = (0.75, 1.0, 1.33)
# ...each also moved by these fractions of its side: a head turned towards a profile sits off
# the centre of the detector's box (the face is on one side of the head).
RETRY_SHIFTS = ((0.0, 0.0), (0.15, 0.0), (-0.15, 0.0), (0.0, 0.12), (0.0, -0.12))
RETRY_BEST = 2               # of those, refined (one look each picks them)
RETRY_MARGIN = 0.15          # a share of the bar (0.2 -> 0.23); see _upright_or_turned
# Refinement re-crops upright when the keypoints' eye line is turned by more than this.
MIN_ROLL = 8.0
# Two faces of a photo whose keypoints are on average nearer than this (x the eye distance) are
# one face found twice (two boxes that refinement brought to the same place): one row is kept.
SAME_FACE = 0.3
# A face only the cascades found (BlazeFace found none in the photo: a face too small for it, a
# strong profile, or no face at all: a cheek, a tie, a texture) is marked unsure, a LOW row
# whatever its confidence, unless BlazeFace finds a face on a crop of CONFIRM_SCALE times its square.
CONFIRM_SCALE = 1.5


class Face(NamedTuple):
    """One face in a photo. All coordinates are photo pixels (pixel index i = coordinate i)."""
    frame: Frame                  # the square that became the 96x96 crop (centre, side; photo px)
    box: Optional[tuple]          # the detector's box (x, y, w, h) in the upright copy, or None
    crop: np.ndarray              # uint8 (96, 96): what the network saw last
    keypoints: np.ndarray         # float (15, 2) in input_data.KEYPOINT_NAMES order
    confidence: float = float("nan")   # 0..1 from the heatmaps (NaN for a model without them)
    roll: float = 0.0             # degrees counter-clockwise the face (and its square) is turned
    unsure: bool = False          # only a cascade found it and BlazeFace does not (CONFIRM_SCALE)


def crop_faces(gray, frames):
    """uint8 (n, 96, 96): each frame's crop (input_data.Frame.crop, the one crop path)."""
    return np.stack([frame.crop(gray) for frame in frames]) if len(frames) else \
        np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)


def eye_roll(keypoints):
    """Degrees counter-clockwise the face is turned, from its eye centres (0 when level)."""
    left, right = np.asarray(keypoints, np.float64)[:2]     # the person's left eye is on the right
    return float(-np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0])))


def _face_in_photo(view, frame, box, crop, points, confidence):
    """A Face in photo pixels from a prediction in a view's pixels."""
    centre = apply(view.inverse, [frame.cx, frame.cy])
    return Face(Frame(float(centre[0]), float(centre[1]), frame.side), box, crop,
                apply(view.inverse, frame.to_photo(points)), float(confidence), view.roll)


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
            turn = eye_roll(apply(flat_views[n].matrix, photo_points))
            if abs(turn) > MIN_ROLL:             # re-crop upright in a copy turned by the eye line
                roll = float(np.round(roll + turn, 1))
            new_view = view(i, roll)
            try:
                new = frame_from_keypoints(apply(new_view.matrix, photo_points))
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


def predict_keypoints(gray, model=None, frames=None, refine=REFINE, flip_tta=FLIP_TTA, rolls=ROLLS,
                      low_confidence=None):
    """The faces of a uint8 (H, W) photo with their 15 keypoints in photo pixels.

    model: None for the shipped model, a .onnx or .keras path, or a model object (load_model).
    low_confidence: the bar below which a face is searched again (None: the model's, bar_of).
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
    return find_and_predict(gray, model, refine, flip_tta, rolls, low_confidence)


def find_and_predict(gray, model=None, refine=REFINE, flip_tta=FLIP_TTA, rolls=ROLLS,
                     low_confidence=None):
    """The faces of a photo: the upright ones (each unsure one given a second chance, _retry);
    when there are none, or none confident, those of the first turned copy (rolls, in turn)
    with a face more confident than them; else the upright ones (low confidence), else []."""
    return find_and_predict_many([gray], model, refine, flip_tta, rolls, low_confidence)[0]


def find_and_predict_many(grays, model=None, refine=REFINE, flip_tta=FLIP_TTA, rolls=ROLLS,
                          low_confidence=None):
    """find_and_predict for several photos, their upright faces in one network call per pass
    (a folder's photos go through in small groups: one call costs ~0.1 ms per crop less)."""
    low_confidence = bar_of(model, low_confidence)
    boxes, how = zip(*[detect(gray) for gray in grays]) if grays else ((), ())
    found = predict_batch(grays, model, [[box_to_frame(b) for b in bs] for bs in boxes], boxes,
                          refine=refine, flip_tta=flip_tta)
    out = []
    for gray, faces, by in zip(grays, found, how):
        faces = merge_same(_upright_or_turned(gray, model, faces, refine, flip_tta, rolls, by, low_confidence))
        out.append(faces if by == "blazeface" else [_confirmed(gray, face) for face in faces])
    return out


def _confirmed(gray, face):
    """The face, marked unsure unless BlazeFace finds a face on its square made CONFIRM_SCALE
    times larger (upright)."""
    view = upright_view(gray, face.roll)
    cx, cy = apply(view.matrix, [[face.frame.cx, face.frame.cy]])[0]
    crop = Frame(float(cx), float(cy), face.frame.side * CONFIRM_SCALE).crop(view.image)
    return face if blazeface()(crop, BLAZEFACE_MIN_SCORE) else face._replace(unsure=True)


def merge_same(faces):
    """The faces with each one found twice kept once, the more confident (SAME_FACE), in their
    order."""
    kept = []
    for face in sorted(faces, key=lambda f: -f.confidence if not np.isnan(f.confidence) else 0.0):
        if not any(_same(face, other) for other in kept):
            kept.append(face)
    return [face for face in faces if any(face is k for k in kept)]


def _same(a, b):
    eyes = max(np.linalg.norm(a.keypoints[0] - a.keypoints[1]), np.linalg.norm(b.keypoints[0] - b.keypoints[1]))
    return float(np.linalg.norm(a.keypoints - b.keypoints, axis=1).mean()) < SAME_FACE * max(eyes, 1e-6)


def _upright_or_turned(gray, model, faces, refine, flip_tta, rolls, how, bar):
    """A photo's upright faces (when the quick LBP cascade's are all unsure, how "lbp", the Haar
    cascade's), each low-confidence one retried; when none is confident, the first turned copy's
    with a confident face more confident than them (find_and_predict)."""
    if faces and how == "lbp" and not _confident(faces, bar):
        boxes = detect_boxes(gray, quick=False)
        haar = predict_batch([gray], model, [[box_to_frame(b) for b in boxes]], [boxes], refine=refine,
                             flip_tta=flip_tta)[0] if boxes else []
        if _confident(haar, bar):
            faces = haar
    confident = _confident(faces, bar)
    faces = [_retry(gray, model, face, refine, flip_tta, bar) for face in faces]
    # The best of many looks at the same face is confident by chance more often than one look:
    # a retried face must clear the bar by RETRY_MARGIN of it to stop the turned copies being tried.
    if not rolls or confident or any(face.confidence >= bar * (1 + RETRY_MARGIN) for face in faces):
        return faces
    best = max((face.confidence for face in faces), default=-1.0)
    size = max((face.box[2] for face in faces if face.box is not None), default=None)
    for roll in rolls:
        boxes, roll = turned_boxes(gray, roll, size)
        if not boxes:
            continue
        found = predict_batch([gray], model, [[box_to_frame(b) for b in boxes]], [boxes], refine=refine,
                              flip_tta=flip_tta, rolls=[[roll] * len(boxes)])[0]
        if _confident(found, bar) and max(face.confidence for face in found) > best:
            return found
        faces = faces or found
    return faces


def _retry(gray, model, face, refine, flip_tta, bar):
    """A face with a low confidence tried again: from its detector frame made smaller and larger
    and moved (RETRY_SCALES x RETRY_SHIFTS, but the frame itself), and from the boxes the
    cascade finds inside its square on the finest copy (the coarse copy's box can hold more
    than the face). Each is predicted once; the RETRY_BEST most confident are refined, and the
    most confident of all is kept."""
    if not face.confidence < bar or face.box is None:
        return face
    first = box_to_frame(face.box)       # (an upright detection: the refinement may have turned it)
    frames = [Frame(first.cx + dx * first.side, first.cy + dy * first.side, first.side * scale)
              for scale in RETRY_SCALES for dx, dy in RETRY_SHIFTS if (scale, dx, dy) != (1.0, 0.0, 0.0)]
    boxes = [face.box] * len(frames)
    small, shrink = shrunk(gray, DETECT_SIDES[-1])
    low = face.frame.corner
    for box in run_cascade(small, CASCADE, MIN_NEIGHBORS):
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


def _confident(faces, bar):
    return any(not face.confidence < bar for face in faces)   # NaN (no heatmaps) counts
