"""Folders of people and photos -> aligned 96x96 faces.

One path for every command: predict.py's detector and Kaggle-frame crop (or, with
--no-detect, the whole image as the face), the keypoint network's eyes and mouth, and a
similarity warp onto align.TEMPLATE (align.py). Folders of people are
`<folder>/<person>/<photo>`, any image format.
"""
import re
import sys
from pathlib import Path

import numpy as np

import cli
import input_data
from recognition import align

IMAGE_EXTENSIONS = input_data.IMAGE_EXTENSIONS
SIZE = input_data.IMAGE_SIZE


class RecognitionError(input_data.DataError):
    """Bad input for recognition (folders, photos, runs); the message says what and where."""


# ---------------------------------------------------------------------------------------
# Folders.

def natural_key(path):
    """'s2/10.pgm' after 's2/9.pgm': numbers in names compare as numbers."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def is_image(path):
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_photos(folder):
    """Every image file under folder (recursively), in natural order; a file is a list of one."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise RecognitionError(f"{folder}: no such file or folder")
    photos = sorted((p for p in folder.rglob("*") if is_image(p)), key=natural_key)
    if not photos:
        raise RecognitionError(f"{folder}: no images in it (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return photos


def is_utf8(name):
    """False for a file name whose bytes are not valid UTF-8 (Python keeps them as surrogates)."""
    try:
        str(name).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(text):
    """text printable as UTF-8: undecodable bytes of a file name as backslash escapes."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def find_people(folder, min_images=1):
    """{person: [photo paths]} from folder/<person>/<photo>; every problem in one clear error:
    no such folder, no person folders, a person folder without images, or with fewer than
    min_images."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RecognitionError(f"{folder}: no such folder (expected {folder}/<person>/<photo>)")
    people, problems = {}, []
    for sub in sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=natural_key):
        photos = sorted((p for p in sub.rglob("*") if is_image(p)), key=natural_key)
        if not is_utf8(sub.name):
            # The folder's name is the person's name: in the gallery, run.json, every CSV.
            problems.append(f"{shown(sub)}: the person's name is not valid UTF-8; rename the folder")
        elif not photos:
            problems.append(f"{sub}: empty person folder (no image files)")
        elif len(photos) < min_images:
            problems.append(f"{sub}: only {len(photos)} image; each person needs at least "
                            f"{min_images} (some to train on, one or more to test on)")
        else:
            people[sub.name] = photos
    if problems:
        raise RecognitionError(f"{folder}: " + "; ".join(problems))
    if not people:
        loose = [p for p in folder.iterdir() if is_image(p)]
        hint = (f"; it holds {len(loose)} loose images: put each person's photos in a folder "
                "named after the person") if loose else ""
        raise RecognitionError(f"{folder}: no person folders (expected {folder}/<person>/<photo>){hint}")
    return people


def split_per_person(labels, test_per_person=2, seed=0):
    """(train indices, test indices): test_per_person photos of each person held out (at most
    all but one), chosen at random with seed."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for person in np.unique(labels):
        mine = rng.permutation(np.flatnonzero(labels == person))
        if len(mine) < 2:
            raise RecognitionError(f"person {person} has {len(mine)} photo; a train/test split needs 2")
        n_test = int(min(max(test_per_person, 1), len(mine) - 1))
        test_idx += list(mine[:n_test])
        train_idx += list(mine[n_test:])
    return np.sort(train_idx), np.sort(test_idx)


def to_unit(crops):
    """uint8 (n, 96, 96) -> float32 (n, 96, 96, 1) in [0, 1], as the keypoint models take."""
    return input_data.images_to_unit(np.asarray(crops, np.uint8))


# ---------------------------------------------------------------------------------------
# Photos -> faces: predict.py's detector and crop, the keypoint net, the alignment.

def _predict_module():
    """predict.py, imported only when photos are read."""
    try:
        import predict
    except ImportError as error:
        raise RecognitionError(f"reading photos needs predict.py ({error})") from None
    return predict


def whole_image_frame(shape, fit="max"):
    """The Frame that makes a whole image the face: the centred square of side max(h, w)
    ("max": nothing cut off, edges replicated; predict.whole_frame is the same square) or
    min(h, w) ("min": the long side trimmed)."""
    h, w = shape[:2]
    if fit not in ("max", "min"):
        raise ValueError(f"fit must be 'max' or 'min', not {fit!r}")
    side = float(max(h, w) if fit == "max" else min(h, w))
    return input_data.Frame(w / 2, h / 2, side)


def read_photo(path):
    """uint8 (H, W) grayscale; an unreadable file is a RecognitionError naming it."""
    predict = _predict_module()
    try:
        return predict.read_photo(path)
    except predict.PhotoError as error:
        raise RecognitionError(f"cannot read it as an image: {error}") from None


def read_scaled(path):
    """(uint8 (H, W) grayscale, shrink): read_photo's picture and the pixels read per photo
    pixel, 1.0 unless the photo is longer than OpenCV's warps allow and was read shrunk
    (predict.read_scaled, to prediction.images.MAX_SIDE)."""
    predict = _predict_module()
    try:
        gray, _, shrink = predict.read_scaled(path)
    except predict.PhotoError as error:
        raise RecognitionError(f"cannot read it as an image: {error}") from None
    return gray, shrink


def to_photo_frame(frame, shrink):
    """A Frame found in a photo read shrunk by `shrink` (read_scaled) in the photo's own pixels."""
    if shrink == 1:
        return frame
    from prediction.images import to_photo_pixels
    cx, cy = to_photo_pixels([frame.cx, frame.cy], shrink)
    return input_data.Frame(float(cx), float(cy), frame.side / shrink)


class Aligner:
    """Aligns faces with a keypoint model (default: the shipped one, loaded on first use).

    Two passes: the keypoints on the first crop (the detector's or the whole image) give a
    first alignment; the aligned face is exactly the frame the keypoint net was trained on, so
    its keypoints there, mapped back to the photo, give the final alignment."""

    def __init__(self, model=None, passes=2, what="--align-model"):
        self.model_path, self.passes, self.what = model, passes, what

    def _describe(self):
        path = self.model_path
        return f"{self.what} {path}" if path else "the shipped keypoint model (for the alignment)"

    def _failed(self, error):
        """A RecognitionError naming the alignment's model, from predict.py's (or onnxruntime's) error."""
        message = cli.one_line(error)
        if self.model_path and message.startswith(f"{self.model_path}: "):
            message = message[len(f"{self.model_path}: "):]
        return RecognitionError(f"{self._describe()}: {message[:300]}")

    def predictor(self):
        """predict.py's predictor of the keypoint model (loaded and cached there): an error naming
        the model when it is missing or not a keypoint model (96x96x1 faces -> 30 numbers)."""
        predict = _predict_module()
        path = Path(self.model_path) if self.model_path else None
        if path is not None and not path.is_file():
            raise RecognitionError(f"{self._describe()}: no such keypoint model (for the alignment)")
        try:
            return predict.load_model(path)
        except (cli.InputError, cli.UsageError, FileNotFoundError) as error:
            raise self._failed(error) from None

    def check(self):
        """Load the keypoint model now (before any work): an error names it when it is not one."""
        self.predictor()
        return self

    def keypoints(self, crops):
        """uint8 (n, 96, 96) -> (n, 15, 2) keypoints in the crops' pixels: predict.py's network
        path (onnxruntime; a .keras is converted once), without flip TTA."""
        if not len(crops):
            return np.zeros((0, 15, 2))
        predict = _predict_module()
        predictor = self.predictor()
        try:
            points, _ = predict.crop_keypoints(crops, model=predictor, flip_tta=False)
        except cli.InputError as error:         # e.g. keypoints that are not numbers, a model onnxruntime cannot run
            raise self._failed(error) from None
        return np.asarray(points, np.float64)

    def matrices(self, grays, frames):
        """2x3 photo -> aligned-face matrices for faces given as (photo, Frame) pairs."""
        crops = np.stack([frame.crop(gray) for gray, frame in zip(grays, frames)])
        points = [frame.to_photo(k) for frame, k in zip(frames, self.keypoints(crops))]
        for _ in range(self.passes - 1):
            # Read the keypoints again on the face warped into the Kaggle frame (the net's own).
            matrices = [_matrix_or_frame(p, f, align.KAGGLE_TEMPLATE) for p, f in zip(points, frames)]
            aligned = np.stack([align.warp(g, m) for g, m in zip(grays, matrices)])
            again = self.keypoints(aligned)
            points = [align.apply(_invert(m), k) for m, k in zip(matrices, again)]
        return [_matrix_or_frame(p, f) for p, f in zip(points, frames)]

    def align(self, grays, frames):
        """uint8 (n, 96, 96) aligned faces, one per (photo, Frame) pair."""
        if not len(frames):
            return np.zeros((0, SIZE, SIZE), np.uint8)
        return np.stack([align.warp(g, m) for g, m in zip(grays, self.matrices(grays, frames))])


def _invert(matrix):
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def _frame_matrix(frame):
    return np.array([[frame.scale, 0.0, -frame.corner[0] * frame.scale],
                     [0.0, frame.scale, -frame.corner[1] * frame.scale]])


def _matrix_or_frame(points, frame, template=None):
    """The alignment of these keypoints, or the plain frame crop when they are degenerate or
    wild (a face more than twice or less than half the frame's size, or its centre outside
    the frame): a keypoint net that missed the face must not send the crop elsewhere."""
    try:
        matrix = align.alignment_matrix(points, template)
    except ValueError:
        return _frame_matrix(frame)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    centre = align.apply(_invert(matrix), [SIZE / 2 - 0.5, SIZE / 2 - 0.5])
    if not (0.5 < scale / frame.scale < 2.0) or np.abs(centre - [frame.cx, frame.cy]).max() > frame.side / 2:
        return _frame_matrix(frame)
    return matrix


def find_faces(gray, detect=True, fit="max", all_faces=False):
    """The Frames of a photo's faces: predict.py's detector (largest first; only the largest
    unless all_faces), or the whole image."""
    if not detect:
        return [whole_image_frame(gray.shape, fit)]
    frames = list(_predict_module().detect_faces(gray))
    return frames if all_faces else frames[:1]


def faces_in_photos(paths, aligner, detect=True, fit="max", all_faces=False, progress=False):
    """Every face of every photo, aligned: (faces uint8 (n, 96, 96), [(path, face number,
    Frame in the photo's pixels)], [(path, reason)] for photos without a face). A photo too
    long for OpenCV is read shrunk (read_scaled). Unreadable files stop everything with one
    error that lists them all."""
    from tqdm import tqdm
    grays, frames, where, no_face, unreadable = [], [], [], [], []
    for path in tqdm(paths, desc="faces", unit="photo", disable=not progress):
        try:
            gray, shrink = read_scaled(path)
        except RecognitionError as error:
            unreadable.append(str(error))
            continue
        found = find_faces(gray, detect, fit, all_faces)
        if not found:
            no_face.append((path, "no face found"))
        for k, frame in enumerate(found):
            grays.append(gray)
            frames.append(frame)
            where.append((path, k, to_photo_frame(frame, shrink)))     # reported in the photo's pixels
    if unreadable:
        raise RecognitionError(f"{len(unreadable)} unreadable file(s): " + "; ".join(unreadable))
    return aligner.align(grays, frames), where, no_face


def people_faces(folder, aligner, detect=True, fit="max", min_images=1, progress=False):
    """A folder of people -> (faces uint8 (n, 96, 96), labels int (n,), names, paths): the
    largest face of each photo, aligned. Photos without a face are reported and left out; a
    person left with fewer than min_images faces is an error."""
    people = find_people(folder, min_images=min_images)
    names = sorted(people, key=natural_key)
    paths = [p for name in names for p in people[name]]
    owner = {p: k for k, name in enumerate(names) for p in people[name]}
    faces, where, no_face = faces_in_photos(paths, aligner, detect, fit, progress=progress)
    for path, reason in no_face:
        print(f"warning: {path}: {reason}; left out", file=sys.stderr)
    labels = np.array([owner[path] for path, _, _ in where], int)
    counts = np.bincount(labels, minlength=len(names))
    short = [f"{names[k]} ({counts[k]})" for k in range(len(names)) if counts[k] < min_images]
    if short:
        raise RecognitionError(f"{folder}: too few faces found for {', '.join(short)}; each person "
                               f"needs at least {min_images}")
    return faces, labels, names, [path for path, _, _ in where]
