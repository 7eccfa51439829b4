"""What a face is in Kaggle's format: the 96-px frame, its 15 keypoints and their 30 columns,
the left/right pairs, and the scaling the network sees; DataError for bad input data."""
import numpy as np

import cli

IMAGE_SIZE = 96
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
