"""68-point (iBUG / dlib order) landmarks -> Kaggle's 15 keypoints and frame, and convert-68:
a 68-landmark photo set as a Kaggle-format training CSV with its OUT.sources.csv."""
import csv
import os
from pathlib import Path

import numpy as np

import cli
from dataset.files import max_csv_bytes, too_big
from dataset.kaggle_csv import parse_coordinate, write_csv
from dataset.kaggle_format import KEYPOINT_NAMES, DataError
from dataset.photos import Frame, read_gray

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
        raise too_big(labels_csv, size)
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
