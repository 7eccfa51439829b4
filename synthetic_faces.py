"""Synthetic faces in Kaggle's Facial Keypoints format: 96x96 grayscale drawings, labelled.

Kaggle's pixels are not in this repository, so tests and the first demo run on drawn faces.
They are cartoons, but honest ones: the 15 keypoints are sampled from the statistics of
Kaggle's real labels (means, spreads and correlations, stored below as numbers), and every
part of the face is drawn ON its keypoints: the pupil at the eye centre, the almond from the
inner to the outer corner, the brow from its inner to its outer end, nostrils around the nose
tip, lips through the mouth corners and lip centres. A network that learns to find the parts
therefore learns the keypoints.

    import synthetic_faces
    images, keypoints = synthetic_faces.make_faces(500, seed=0)   # uint8 (500, 96, 96), (500, 30)
    synthetic_faces.write_kaggle_files("data/synthetic")         # training.csv, test.csv, IdLookupTable.csv

    python synthetic_faces.py --out data/synthetic --missing kaggle --preview data/synthetic/preview.png
    (files already in --out, an earlier run's or Kaggle's own, are replaced only with --overwrite)

Each image also varies the way photos do (tone of skin and background, lighting gradient,
contrast, blur, noise), and each face belongs to a person whose traits (proportions, head
shape, eyes, brows, nose, lips, hair, glasses, a mole) stay fixed across that person's
images, for the face-recognition extension: see `make_identities`.
"""
import argparse
import os
import time
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

import cli
import input_data

IMAGE_SIZE = input_data.IMAGE_SIZE
COLUMNS = input_data.COLUMNS
KEYPOINT_NAMES = input_data.KEYPOINT_NAMES
N_KEYPOINTS = len(KEYPOINT_NAMES)

# ---------------------------------------------------------------------------------------
# Keypoint statistics of Kaggle's training.csv, as numbers so that no data file is needed.
#
# Fitted on the 2,140 complete rows of ../shared/data/fkd/training_keypoints_only.csv with
#     python synthetic_faces.py --fit-stats ../shared/data/fkd/training_keypoints_only.csv
# A face = KEYPOINT_MEAN + sum_k z_k * PC_STD[k] * PC_AXES[k] + RESIDUAL_STD * e, with z and e
# standard normal. The 10 principal components carry 92% of the variance and the correlations
# between keypoints (a face moves and scales as a whole); the per-column residual makes each
# column's variance exactly the real one.

KEYPOINT_MEAN = np.array([66.22, 36.84, 29.64, 37.06, 59.27, 37.86, 73.41, 37.64, 36.60, 37.92,
    22.36, 38.03, 56.15, 29.22, 79.62, 29.66, 39.27, 29.41, 15.76, 30.45,
    47.95, 57.25, 63.42, 75.89, 32.97, 76.13, 48.08, 72.68, 48.15, 82.63])
PC_STD = np.array([9.5345, 7.3364, 6.3379, 4.7758, 4.6242, 4.2045, 3.4765, 3.0180, 2.6317, 2.4814])
PC_AXES = np.array([
    [0.0685, 0.1245, -0.0610, 0.0473, 0.0102, 0.1264, 0.1236, 0.1434, -0.0151, 0.0786,
        -0.1229, 0.0332, -0.0294, 0.1299, 0.1698, 0.1612, 0.0240, 0.0822, -0.1408, 0.0184,
        -0.0652, 0.3100, -0.0120, 0.4236, -0.1454, 0.3673, -0.0787, 0.4502, -0.0933, 0.3816],
    [-0.0524, -0.1093, -0.0120, 0.2085, -0.0763, -0.0376, -0.0280, -0.1776, 0.0110, 0.1553,
        -0.0488, 0.2768, -0.1482, 0.0090, -0.1246, -0.2154, -0.1051, 0.1722, -0.1116, 0.3658,
        0.1469, 0.0895, 0.3467, -0.0699, 0.2855, 0.2076, 0.3037, 0.1711, 0.3558, -0.0236],
    [-0.1861, 0.1905, 0.1759, 0.1302, -0.1167, 0.1773, -0.2622, 0.1859, 0.0906, 0.1456,
        0.2487, 0.1046, -0.0990, 0.3030, -0.2965, 0.3082, 0.1236, 0.2731, 0.3121, 0.1969,
        -0.0274, 0.1383, -0.2246, -0.0165, 0.0778, -0.0561, -0.0580, 0.0351, -0.0698, -0.1753],
    [-0.0557, -0.1424, 0.0191, -0.1495, -0.1503, -0.0828, 0.0531, -0.1756, 0.1010, -0.0871,
        -0.0981, -0.1886, -0.0961, 0.0849, -0.0163, -0.1945, 0.0432, 0.0970, -0.0253, -0.1998,
        -0.0690, 0.5227, 0.0529, -0.1668, -0.1564, -0.1911, -0.0455, 0.4031, -0.0561, -0.4291],
    [0.1940, 0.0188, 0.2371, -0.0861, 0.2487, 0.0064, 0.1379, 0.0234, 0.2157, -0.0550,
        0.2659, -0.1169, 0.3827, 0.0245, 0.0961, -0.0025, 0.2795, -0.0447, 0.3034, -0.1602,
        0.3876, 0.1292, 0.0875, 0.0709, 0.1986, -0.0031, 0.2283, 0.1323, 0.1928, 0.0542],
    [-0.1066, -0.1653, 0.0479, -0.1090, -0.0407, -0.1553, -0.2295, -0.1938, -0.0695, -0.1253,
        0.1669, -0.1280, -0.1148, -0.1570, -0.2668, -0.2685, -0.1035, -0.1013, 0.1780, -0.1988,
        -0.1746, 0.0136, -0.3470, 0.2607, 0.3943, 0.2856, -0.0334, 0.1137, -0.0241, 0.1495],
    [-0.2025, -0.0323, -0.2029, -0.0998, -0.1127, -0.0445, -0.2555, -0.0354, -0.1423, -0.0843,
        -0.2236, -0.1037, 0.1398, 0.0756, -0.2317, 0.0755, 0.1901, -0.0809, -0.3021, 0.0441,
        0.6297, 0.0185, -0.2966, 0.0274, -0.1368, 0.0465, 0.0871, 0.0029, 0.0506, 0.0203],
    [-0.0258, 0.0067, -0.0308, -0.0040, 0.1066, -0.0174, -0.1199, -0.0448, -0.1562, -0.0282,
        0.0909, -0.0427, 0.0302, 0.0413, -0.0825, -0.0215, -0.1221, 0.0198, -0.0144, 0.0236,
        -0.0560, 0.5753, 0.0516, -0.2709, 0.0138, -0.2667, 0.0330, -0.3034, 0.0223, 0.5779],
    [-0.0354, -0.2048, 0.1231, -0.1826, -0.0611, -0.1824, 0.0329, -0.1726, 0.1598, -0.1709,
        0.0652, -0.1391, -0.3686, -0.0795, 0.3133, 0.3379, 0.4424, -0.0486, -0.1459, 0.3628,
        -0.0887, 0.0485, -0.0636, 0.0065, 0.1601, -0.0024, 0.0144, -0.1074, 0.0166, 0.0676],
    [0.1570, -0.1352, -0.1438, -0.1787, 0.1610, -0.1282, 0.0808, -0.1406, -0.1802, -0.1589,
        -0.0860, -0.2017, 0.1286, 0.5063, 0.1043, 0.1516, -0.2605, 0.5028, -0.0123, 0.0283,
        -0.0431, -0.1988, -0.0980, -0.0354, 0.2158, -0.0190, 0.0277, 0.0247, 0.0332, 0.0001],
])
RESIDUAL_STD = np.array([0.8083, 0.6186, 0.7937, 0.5849, 0.9176, 0.6380, 0.8580, 0.7127, 0.8991, 0.5996,
    0.8373, 0.6788, 1.1977, 0.8209, 1.0321, 1.1564, 1.1399, 0.8824, 0.9802, 1.1786,
    0.6383, 0.8392, 1.1333, 0.6960, 1.2370, 0.6916, 0.6806, 0.9023, 0.6886, 0.9675])

# How Kaggle's 7,049 training rows are labelled: one letter per keypoint (Kaggle order),
# 1 = present, and how many rows have that pattern. Two patterns cover 98%: all 15 keypoints
# (2,140 rows), and only the eye centres, nose tip and bottom lip (4,755 rows).
KAGGLE_PRESENCE_PATTERNS = [
    ("110000000010001", 4755),
    ("111111111111111", 2140),
    ("111111101111111", 31),
    ("111111111011111", 26),
    ("111111111111110", 13),
    ("110000000010000", 10),
    ("111111101011111", 6),
    ("111011111111111", 4),
    ("111111111111011", 4),
    ("101100111111111", 3),
    ("110101000011111", 3),
    ("111111000011111", 3),
    ("111111111110000", 3),
    ("111111111110111", 3),
    ("111111111111100", 3),
    ("110011111111111", 2),
]

# Kaggle's test set asks for all 30 values for about a third of the images (the first ones)
# and for these 8 for the rest; 1,190 of its 1,783 test images ask for just these.
FEW_FEATURES = ["left_eye_center_x", "left_eye_center_y", "right_eye_center_x", "right_eye_center_y",
                "nose_tip_x", "nose_tip_y", "mouth_center_bottom_lip_x", "mouth_center_bottom_lip_y"]
ALL_FEATURES_FRACTION = 1 / 3

# Sampled keypoints are kept this far inside the frame (the real table's extremes are ~4 px in).
FRAME_MARGIN = 1.0


def fit_keypoint_stats(csv_path, n_components=10, n_patterns=16):
    """Recompute the statistics above from Kaggle's keypoint table and print them as code."""
    import pandas as pd
    input_data.read_labels(csv_path)    # every keypoint a plain decimal number, as strictly as elsewhere
    try:
        table = pd.read_csv(csv_path, encoding="utf-8")
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise input_data.DataError(f"{csv_path}: not a readable CSV table ({cli.one_line(error)})") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise input_data.DataError(f"{csv_path}: missing keypoint columns {', '.join(missing[:5])}"
                                   f"{' ...' if len(missing) > 5 else ''} (expected Kaggle's 30 columns)")
    try:
        table = table[COLUMNS].astype(np.float64)
    except (TypeError, ValueError) as error:
        raise input_data.DataError(f"{csv_path}: a keypoint value is not a number ({cli.one_line(error)})") from None
    complete = table.dropna().to_numpy(np.float64)
    if not np.isfinite(complete).all():
        raise input_data.DataError(f"{csv_path}: holds infinite keypoint values")
    if len(complete) <= len(COLUMNS):
        raise input_data.DataError(f"{csv_path}: {len(complete)} complete rows; the statistics need more "
                                   f"than {len(COLUMNS)}")
    mean = complete.mean(axis=0)
    variances, axes = np.linalg.eigh(np.cov(complete, rowvar=False))
    order = np.argsort(variances)[::-1][:n_components]
    variances, axes = variances[order], axes[:, order].T
    # An eigenvector's sign is arbitrary: make each one's largest entry positive, so reruns agree.
    axes *= np.sign(axes[np.arange(n_components), np.abs(axes).argmax(axis=1)])[:, None]
    explained = (axes.T ** 2 * variances).sum(axis=1)
    residual = np.sqrt(np.maximum(complete.var(axis=0, ddof=1) - explained, 0.0))
    share = variances.sum() / np.trace(np.cov(complete, rowvar=False))

    present = table.notna().to_numpy()[:, 0::2]
    patterns, counts = np.unique(["".join("1" if p else "0" for p in row) for row in present],
                                 return_counts=True)
    top = np.argsort(-counts, kind="stable")[:n_patterns]

    print(f"# {len(table)} rows, {len(complete)} complete; {n_components} components carry "
          f"{share:.1%} of the variance; the top {n_patterns} presence patterns cover "
          f"{counts[top].sum()} rows.")
    print(f"KEYPOINT_MEAN = np.array({_format_numbers(mean, 2)})")
    print(f"PC_STD = np.array({_format_numbers(np.sqrt(variances), 4)})")
    print("PC_AXES = np.array([")
    for axis in axes:
        print(f"    {_format_numbers(axis, 4, indent=8)},")
    print("])")
    print(f"RESIDUAL_STD = np.array({_format_numbers(residual, 4)})")
    print("KAGGLE_PRESENCE_PATTERNS = [")
    for i in top:
        print(f'    ("{patterns[i]}", {counts[i]}),')
    print("]")
    return dict(mean=mean, pc_std=np.sqrt(variances), pc_axes=axes, residual_std=residual,
                patterns=[(patterns[i], int(counts[i])) for i in top])


def _format_numbers(values, decimals, per_line=10, indent=4):
    text = [f"{v:.{decimals}f}" for v in values]
    lines = [", ".join(text[i:i + per_line]) for i in range(0, len(text), per_line)]
    return "[" + (",\n" + " " * indent).join(lines) + "]"


# ---------------------------------------------------------------------------------------
# Sampling keypoints, and the labels Kaggle left empty.

# The standard normals behind one face's keypoints: one per component, then one per column.
N_NORMALS = len(PC_STD) + len(COLUMNS)


def sample_keypoints(n, rng):
    """n faces' keypoints: float32 (n, 30) pixel coordinates in the 96-px frame, Kaggle order."""
    # One row of normals per face, so face i does not depend on n.
    return keypoints_from_normals(rng.standard_normal((n, N_NORMALS)))


def keypoints_from_normals(normals):
    """(n, N_NORMALS) standard normals -> float32 (n, 30) keypoints, by the model above."""
    shape = (normals[:, :len(PC_STD)] * PC_STD) @ PC_AXES
    jitter = normals[:, len(PC_STD):] * RESIDUAL_STD
    points = KEYPOINT_MEAN + shape + jitter
    return np.clip(points, FRAME_MARGIN, IMAGE_SIZE - 1 - FRAME_MARGIN).astype(np.float32)


def kaggle_missing_mask(n, rng):
    """bool (n, 30): True where Kaggle's table would be empty, by its real presence patterns."""
    absent = np.array([[letter == "0" for letter in pattern] for pattern, _ in KAGGLE_PRESENCE_PATTERNS])
    counts = np.array([count for _, count in KAGGLE_PRESENCE_PATTERNS], np.float64)
    chosen = rng.choice(len(absent), size=n, p=counts / counts.sum())
    return np.repeat(absent[chosen], 2, axis=1)  # a keypoint's x and y are missing together


# ---------------------------------------------------------------------------------------
# People: traits that stay the same in every image of one person.

@dataclass(frozen=True)
class Traits:
    """One person's looks. Tones run from 0 (black) to 1 (white); sizes are relative to the face."""
    skin: float            # skin tone
    hair: float            # hair tone
    hairline: float        # where the hair starts above the eye line, in eye-to-mouth distances
    face_width: float      # head width relative to the eye distance (1 = average)
    face_length: float     # head length relative to the eye-to-mouth distance (1 = average)
    jaw: float             # how much narrower the jaw is than the forehead (0 = an ellipse)
    eye_open: float        # eye opening, as the almond's height / width
    iris: float            # iris radius / eye width
    iris_tone: float
    brow_thickness: float  # at the inner end, in eye distances
    brow_arch: float       # arch height / brow length
    brow_tone: float
    nose_size: float       # nose width relative to average
    lip_tone: float        # lips' tone as a fraction of the skin tone
    glasses: bool
    mole_u: float          # a mole: across the face from the eye midpoint, in eye distances,
    mole_v: float          # down from it in eye-to-mouth distances,
    mole_size: float       # and its radius in eye distances (0 = no mole)
    shape: tuple           # the person's own face proportions: N_NORMALS numbers, see make_faces

    def as_vector(self):
        """All traits as one float64 vector (looks, then shape)."""
        looks = [getattr(self, f.name) for f in fields(self) if f.name != "shape"]
        return np.concatenate([np.array(looks, np.float64), self.shape])


TRAIT_RANGES = {
    "skin": (0.5, 0.85), "hair": (0.05, 0.6), "hairline": (0.6, 1.1),
    "face_width": (0.9, 1.12), "face_length": (0.9, 1.1), "jaw": (0.05, 0.3),
    "eye_open": (0.32, 0.5), "iris": (0.18, 0.26), "iris_tone": (0.08, 0.35),
    "brow_thickness": (0.055, 0.11), "brow_arch": (0.0, 0.22), "brow_tone": (0.05, 0.3),
    "nose_size": (0.85, 1.2), "lip_tone": (0.5, 0.8),
}
GLASSES_RATE = 0.25
MOLE_RATE = 0.4

# make_faces mixes a person's own `shape` normals with each image's fresh ones so that
# this share of the keypoint variance is the person's (their proportions, and, as in most
# photo sets of one person, part of their usual pose) and the rest changes from image to
# image. The mix is again standard normal, so every face still follows Kaggle's statistics.
IDENTITY_SHAPE_SHARE = 0.6


def random_traits(rng):
    """A random person. Always draws the same amount from rng, so sequences stay reproducible."""
    values = {name: rng.uniform(low, high) for name, (low, high) in TRAIT_RANGES.items()}
    glasses = bool(rng.random() < GLASSES_RATE)
    has_mole = rng.random() < MOLE_RATE
    mole_u = rng.choice([-1, 1]) * rng.uniform(0.5, 0.95)  # on a cheek, clear of eyes and mouth
    mole_v, mole_size = rng.uniform(0.35, 1.1), rng.uniform(0.025, 0.045) * has_mole
    shape = tuple(rng.standard_normal(N_NORMALS))
    return Traits(**values, glasses=glasses, mole_u=mole_u, mole_v=mole_v, mole_size=mole_size,
                  shape=shape)


def make_identities(n_people, seed=0):
    """n_people people (a list of Traits) for make_faces(identities=..., person_ids=...)."""
    rng = np.random.default_rng(seed)
    return [random_traits(rng) for _ in range(n_people)]


# ---------------------------------------------------------------------------------------
# Drawing tools. Everything is painted on a float32 canvas in [0, 1] through anti-aliased
# coverage masks, with sub-pixel coordinates, so a part lands exactly where its keypoint is.

SHIFT = 4  # cv2's fractional bits: points are drawn to 1/16 of a pixel
_ONE = 1 << SHIFT


class _Patch(NamedTuple):
    """A coverage mask (float32 in [0, 1]) for the part of the canvas at rows top.., cols left.."""
    mask: np.ndarray
    top: int
    left: int

    @property
    def box(self):
        return self.top, self.left, self.top + self.mask.shape[0], self.left + self.mask.shape[1]

    def __mul__(self, other):
        """Where both cover (other must share the box: made with box=self.box)."""
        return _Patch(self.mask * other.mask, self.top, self.left)


def _mask(*polygons, blur=0.0, box=None):
    """Filled polygons ((k, 2) pixel coordinates) -> their anti-aliased coverage as a _Patch.

    Several polygons fill with holes where they overlap (a ring = outer + inner outline).
    blur softens the edge (Gaussian sigma, pixels). Only the polygons' bounding box is drawn,
    which keeps small parts cheap; box=(top, left, bottom, right) draws in a given box instead.
    """
    if box is None:
        points = polygons[0] if len(polygons) == 1 else np.concatenate(polygons)
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        margin = 3 * blur + 2
        top, left = min(max(int(y0 - margin), 0), IMAGE_SIZE), min(max(int(x0 - margin), 0), IMAGE_SIZE)
        box = (top, left, max(min(int(y1 + margin) + 1, IMAGE_SIZE), top),
               max(min(int(x1 + margin) + 1, IMAGE_SIZE), left))
    top, left, bottom, right = box
    mask = np.zeros((bottom - top, right - left), np.uint8)
    if mask.size == 0:  # the part is outside the frame
        return _Patch(mask.astype(np.float32), top, left)
    offset = np.array([left, top], np.float64)
    fixed = [np.rint((p - offset) * _ONE).astype(np.int32) for p in polygons]
    cv2.fillPoly(mask, fixed, 255, cv2.LINE_AA, SHIFT)
    mask = mask.astype(np.float32) * (1.0 / 255)
    if blur > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), blur)
    return _Patch(mask, top, left)


def _paint(canvas, patch, tone, alpha=1.0):
    """Paint `tone` over the canvas where the patch covers it (in place)."""
    top, left, bottom, right = patch.box
    region = canvas[top:bottom, left:right]
    region += (alpha * patch.mask) * (tone - region)


@lru_cache(maxsize=None)
def _bezier_weights(n):
    t = np.linspace(0.0, 1.0, n)[:, None]
    return np.hstack([(1 - t) ** 2, 2 * (1 - t) * t, t ** 2])


@lru_cache(maxsize=None)
def _unit_circle(n):
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.cos(t), np.sin(t)


def _curve(start, through, end, n=12):
    """n points of the quadratic Bezier from start to end that passes through `through`."""
    control = 2 * through - (start + end) / 2
    return _bezier_weights(n) @ np.stack([start, control, end])


def _stroke(points, width):
    """Outline polygon of a line of `width` (one number, or one per point) along points."""
    direction = np.empty_like(points)
    direction[1:-1] = points[2:] - points[:-2]
    direction[0], direction[-1] = points[1] - points[0], points[-1] - points[-2]
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
    half = np.reshape(width, (-1, 1)) / 2
    return np.concatenate([points + normal * half, (points - normal * half)[::-1]])


MOUTH = ("mouth_left_corner", "mouth_right_corner", "mouth_center_top_lip", "mouth_center_bottom_lip")


class _Face:
    """A face's keypoints and its own axes: ex along the eye line towards the subject's left
    (image right), ey down the face. Parts are placed in these axes so they turn with the head."""

    def __init__(self, keypoints30):
        points = np.asarray(keypoints30, np.float64).reshape(N_KEYPOINTS, 2)
        self.point = dict(zip(KEYPOINT_NAMES, points))
        across = self["left_eye_center"] - self["right_eye_center"]
        length = np.hypot(*across)
        self.ex = across / length if length > 1e-6 else np.array([1.0, 0.0])
        self.ey = np.array([-self.ex[1], self.ex[0]])
        self.eye_distance = max(length, 8.0)
        self.eye_mid = (self["left_eye_center"] + self["right_eye_center"]) / 2
        mouth = np.mean([self[name] for name in MOUTH], axis=0)
        self.eye_to_mouth = max((mouth - self.eye_mid) @ self.ey, 0.5 * self.eye_distance)

    def __getitem__(self, name):
        return self.point[name]

    def at(self, origin, u, v):
        """The points origin + u ex + v ey (u, v in pixels, numbers or arrays)."""
        return origin + np.asarray(u)[..., None] * self.ex + np.asarray(v)[..., None] * self.ey

    def ellipse(self, center, a, b, n=28):
        """Polygon of an ellipse with half-axes a (along ex) and b (along ey)."""
        cos, sin = _unit_circle(n)
        return self.at(center, a * cos, b * sin)


# ---------------------------------------------------------------------------------------
# The parts of a face, in the order they are painted.

_GRID = np.linspace(-1.0, 1.0, IMAGE_SIZE, dtype=np.float32)


def _background(rng, skin):
    """Mostly darker than the skin, sometimes lighter, with a soft uneven texture."""
    if rng.random() < 0.75:
        tone = max(skin - rng.uniform(0.15, 0.45), 0.03)
    else:
        tone = min(skin + rng.uniform(0.12, 0.3), 0.97)
    blotches = cv2.resize(rng.uniform(-0.08, 0.08, (4, 4)).astype(np.float32),
                          (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_CUBIC)
    return np.float32(tone) + blotches


def _head_outline(face, traits, grow=1.0):
    """(u, v) of the head outline around the eye midpoint: an egg, narrower at the jaw.

    Sizes follow the face: ~1.2 eye distances to each side, the chin ~1.6 eye-to-mouth
    distances below the eyes, so that like Kaggle's crops the face fills most of the frame.
    The outline shifts away from the nose when the head turns.
    """
    a = 1.2 * traits.face_width * face.eye_distance * grow
    b = 1.42 * traits.face_length * face.eye_to_mouth * grow
    nose_u = (face["nose_tip"] - face.eye_mid) @ face.ex
    cos, sin = _unit_circle(48)
    u = a * cos * (1 - traits.jaw * np.clip(sin, 0, 1)) - 0.3 * nose_u
    v = b * sin + 0.18 * face.eye_to_mouth
    return u, v, a


def _draw_head(canvas, face, traits):
    """Hair, neck and ears, then the skin of the face below the hairline, darker towards its edges."""
    u, v, a = _head_outline(face, traits, grow=1.1)
    hair = face.at(face.eye_mid, u, v - 0.2 * face.eye_to_mouth)
    _paint(canvas, _mask(hair, blur=0.8), traits.hair)
    u, v, a = _head_outline(face, traits)
    middle = u.mean()  # the outline's centre line, off the eye midpoint when the head turns
    for side in (-1, 1):
        ear = face.ellipse(face.at(face.eye_mid, middle + side * 0.97 * a, 0.25 * face.eye_to_mouth),
                           0.15 * a, 0.3 * face.eye_to_mouth, n=16)
        _paint(canvas, _mask(ear, blur=0.6), 0.85 * traits.skin)

    neck_u = np.array([-0.42, 0.42, 0.5, -0.5]) * a
    neck_v = np.array([0.9, 0.9, 4.0, 4.0]) * face.eye_to_mouth
    _paint(canvas, _mask(face.at(face.eye_mid, neck_u, neck_v)), 0.75 * traits.skin)

    # The hairline: flat across the forehead, lower at the temples.
    hairline = (-traits.hairline + 0.45 * (u / a) ** 2) * face.eye_to_mouth
    skin = _mask(face.at(face.eye_mid, u, np.maximum(v, hairline)), blur=0.5)
    _paint(canvas, skin, traits.skin)
    rim = _Patch(skin.mask * (1 - cv2.GaussianBlur(skin.mask, (0, 0), 0.12 * a)), skin.top, skin.left)
    _paint(canvas, rim, 0.6 * traits.skin, alpha=0.8)


def _draw_eye(canvas, face, side, traits):
    """Almond from the inner to the outer corner, iris and pupil centred on the eye centre."""
    center = face[f"{side}_eye_center"]
    inner, outer = face[f"{side}_eye_inner_corner"], face[f"{side}_eye_outer_corner"]
    width = max(np.hypot(*(outer - inner)), 4.0)
    up = -face.ey
    skin = traits.skin

    socket = face.ellipse(center - 0.15 * width * face.ey, 0.8 * width, 0.5 * width)
    _paint(canvas, _mask(socket, blur=0.15 * width), 0.8 * skin, alpha=0.8)

    opening = traits.eye_open * width
    upper = _curve(inner, center + 0.55 * opening * up, outer)
    lower = _curve(outer, center - 0.45 * opening * up, inner)
    almond = _mask(np.concatenate([upper, lower]))
    _paint(canvas, almond, min(skin + 0.25, 0.92))

    radius = traits.iris * width
    glint = center + 0.45 * radius * (face.ex + up)  # a reflection of the light, off the pupil
    for spot, size, tone in ((center, radius, traits.iris_tone), (center, 0.5 * radius, 0.03),
                             (glint, 0.18 * radius, 0.9)):
        _paint(canvas, almond * _mask(face.ellipse(spot, size, size, n=16), box=almond.box), tone)

    # The lash line is dark but thin and lighter than the pupil, which stays the darkest spot.
    _paint(canvas, _mask(_stroke(upper, 0.8)), 0.3 * skin, alpha=0.8)
    _paint(canvas, _mask(_stroke(lower, 0.6)), 0.6 * skin, alpha=0.6)


def _draw_brow(canvas, face, side, traits):
    """A thick dark stroke from the inner to the outer end, arched, thinning outwards."""
    inner, outer = face[f"{side}_eyebrow_inner_end"], face[f"{side}_eyebrow_outer_end"]
    length = np.hypot(*(outer - inner))
    arch = (inner + outer) / 2 - traits.brow_arch * length * face.ey
    line = _curve(inner, arch, outer)
    width = np.linspace(1.0, 0.55, len(line)) * traits.brow_thickness * face.eye_distance
    _paint(canvas, _mask(_stroke(line, width), blur=0.5), traits.brow_tone, alpha=0.9)


def _draw_nose(canvas, face, traits, light_from_left):
    """A shadow down the side of the bridge away from the light, the wings of the nose,
    nostrils either side just below the tip, a shadow under the tip and a highlight on it."""
    tip, skin = face["nose_tip"], traits.skin
    width = 0.55 * traits.nose_size * face.eye_distance
    tall = face.eye_to_mouth
    dark = 1 if light_from_left else -1  # +1: the side towards the image's right
    bridge = np.stack([face.at(face.eye_mid, 0.12 * dark * face.eye_distance, 0.1 * tall),
                       face.at(tip, 0.35 * dark * width, -0.2 * tall)])
    _paint(canvas, _mask(_stroke(bridge, 0.2 * width), blur=0.15 * width), 0.7 * skin, 0.6)
    wings = [_stroke(_curve(face.at(tip, 0.3 * side * width, -0.18 * tall),
                            face.at(tip, 0.5 * side * width, 0.03 * tall),
                            face.at(tip, 0.28 * side * width, 0.11 * tall), n=8), 0.07 * width)
             for side in (-1, 1)]
    _paint(canvas, _mask(*wings, blur=0.6), 0.55 * skin, 0.8)
    nostrils = [face.ellipse(face.at(tip, 0.2 * side * width, 0.09 * tall), 0.12 * width, 0.045 * tall)
                for side in (-1, 1)]
    _paint(canvas, _mask(*nostrils, blur=0.5), 0.3 * skin, 0.9)
    under = face.ellipse(face.at(tip, 0, 0.15 * tall), 0.25 * width, 0.035 * tall)
    _paint(canvas, _mask(under, blur=0.8), 0.6 * skin, 0.7)
    highlight = face.ellipse(face.at(tip, 0, -0.03 * tall), 0.14 * width, 0.05 * tall)
    _paint(canvas, _mask(highlight, blur=1.0), min(1.2 * skin + 0.05, 1.0), 0.7)


def _draw_mouth(canvas, face, traits):
    """Upper lip from the corners up through the top-lip centre, lower lip down through the
    bottom-lip centre, and the dark line between them."""
    left, right = face["mouth_left_corner"], face["mouth_right_corner"]
    top, bottom = face["mouth_center_top_lip"], face["mouth_center_bottom_lip"]
    parting = top + 0.42 * (bottom - top)
    lip = traits.lip_tone * traits.skin

    shadow = face.ellipse(face.at(bottom, 0, 0.07 * face.eye_to_mouth),
                          0.22 * np.hypot(*(left - right)), 0.05 * face.eye_to_mouth)
    _paint(canvas, _mask(shadow, blur=1.2), 0.75 * traits.skin, 0.8)

    line = _curve(left, parting, right)
    upper = np.concatenate([_curve(right, top, left), line])
    lower = np.concatenate([line, _curve(right, bottom, left)])
    _paint(canvas, _mask(upper, blur=0.3), 0.8 * lip, 0.95)
    _paint(canvas, _mask(lower, blur=0.3), lip, 0.9)
    shine = face.ellipse(parting + 0.5 * (bottom - parting), 0.15 * np.hypot(*(left - right)),
                         0.12 * np.hypot(*(bottom - parting)))
    _paint(canvas, _mask(shine, blur=0.8), min(1.25 * lip, 1.0), 0.5)
    _paint(canvas, _mask(_stroke(line, 1.0)), 0.1, 0.85)


def _draw_glasses(canvas, face):
    """Round frames centred on the eyes, a bridge, and the arms towards the ears."""
    a, b = 0.36 * face.eye_distance, 0.27 * face.eye_distance
    frame = 0.035 * face.eye_distance
    rims = []
    for side in ("left", "right"):
        center = face[f"{side}_eye_center"] - 0.05 * face.eye_distance * face.ey
        rims += [face.ellipse(center, a + frame, b + frame, n=40), face.ellipse(center, a, b, n=40)]
    _paint(canvas, _mask(*rims), 0.1, 0.85)
    left = face.at(face["left_eye_center"], -a, -0.1 * face.eye_distance)
    right = face.at(face["right_eye_center"], a, -0.1 * face.eye_distance)
    bridge = _curve(right, (left + right) / 2 - 0.06 * face.eye_distance * face.ey, left, n=6)
    _paint(canvas, _mask(_stroke(bridge, 1.5 * frame)), 0.1, 0.85)
    for sign, side in ((1, "left"), (-1, "right")):
        start = face.at(face[f"{side}_eye_center"], sign * (a + frame), -0.1 * face.eye_distance)
        arm = np.stack([start, face.at(start, sign * 0.3 * face.eye_distance, 0.0)])
        _paint(canvas, _mask(_stroke(arm, 1.5 * frame)), 0.1, 0.85)


def _photograph(canvas, rng, light_angle):
    """Light gradient, contrast and brightness, lens blur, sensor noise -> uint8."""
    strength = rng.uniform(0.0, 0.35)
    ramp = np.cos(light_angle) * _GRID[None, :] + np.sin(light_angle) * _GRID[:, None]
    image = canvas * (1 + strength * ramp)
    contrast, brightness = rng.uniform(0.7, 1.2), rng.uniform(-0.12, 0.12)
    image = (image - 0.5) * contrast + 0.5 + brightness
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 0.9))
    image += rng.uniform(0.005, 0.03) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def render_face(keypoints30, rng, traits=None):
    """Draw one face with its parts on the 30 keypoints (pixels) -> uint8 (96, 96).

    traits: the person (a Traits); None draws a new random person.
    """
    traits = random_traits(rng) if traits is None else traits
    face = _Face(keypoints30)
    light_angle = rng.uniform(-np.pi, np.pi)
    canvas = _background(rng, traits.skin)
    _draw_head(canvas, face, traits)
    for side in ("left", "right"):
        _draw_eye(canvas, face, side, traits)
        _draw_brow(canvas, face, side, traits)
    _draw_nose(canvas, face, traits, light_from_left=np.cos(light_angle) < 0)
    _draw_mouth(canvas, face, traits)
    if traits.mole_size > 0:
        mole = face.at(face.eye_mid, traits.mole_u * face.eye_distance, traits.mole_v * face.eye_to_mouth)
        radius = traits.mole_size * face.eye_distance
        _paint(canvas, _mask(face.ellipse(mole, radius, radius, n=12), blur=0.4), 0.35 * traits.skin)
    if traits.glasses:
        _draw_glasses(canvas, face)
    return _photograph(canvas, rng, light_angle)


# ---------------------------------------------------------------------------------------
# Data sets.

def make_faces(n, seed=0, missing=None, identities=None, person_ids=None):
    """n labelled faces: (images uint8 (n, 96, 96), keypoints float32 (n, 30) in pixels).

    missing="kaggle" empties (NaN) the labels the way Kaggle's table does; the images are
    the same either way. identities (from make_identities) with person_ids (one index per
    face; default 0, 1, 2, ... cycling) draws those people; otherwise every face is a new
    person. The same arguments always give the same faces, and the first k faces of n are
    the faces of make_faces(k).
    """
    if missing not in (None, "kaggle"):
        raise ValueError(f"missing must be None or 'kaggle', not {missing!r}")
    if identities is None and person_ids is not None:
        raise ValueError("person_ids needs identities")
    if identities is not None and person_ids is None:
        person_ids = np.arange(n) % len(identities)
    # Separate random streams, so masking labels does not change the faces.
    keypoint_seed, drawing_seed, missing_seed = np.random.SeedSequence(seed).spawn(3)
    normals = np.random.default_rng(keypoint_seed).standard_normal((n, N_NORMALS))
    if identities is not None:
        own = np.array([identities[p].shape for p in person_ids]).reshape(n, N_NORMALS)
        normals = np.sqrt(IDENTITY_SHAPE_SHARE) * own + np.sqrt(1 - IDENTITY_SHAPE_SHARE) * normals
    keypoints = keypoints_from_normals(normals)
    drawing = np.random.default_rng(drawing_seed)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for i in range(n):
        traits = None if identities is None else identities[person_ids[i]]
        images[i] = render_face(keypoints[i], drawing, traits)
    if missing == "kaggle":
        keypoints[kaggle_missing_mask(n, np.random.default_rng(missing_seed))] = np.nan
    return images, keypoints


def lookup_rows(image_ids):
    """(ImageId, FeatureName) pairs as Kaggle's IdLookupTable asks for them: all 30 features
    for the first third of the images, the 8 of FEW_FEATURES for the rest."""
    n_all = round(len(image_ids) * ALL_FEATURES_FRACTION)
    return [(int(image_id), name)
            for k, image_id in enumerate(image_ids)
            for name in (COLUMNS if k < n_all else FEW_FEATURES)]


def write_lookup_table(path, image_ids):
    """IdLookupTable.csv: RowId,ImageId,FeatureName,Location with Location left empty."""
    lines = ["RowId,ImageId,FeatureName,Location"]
    lines += [f"{row},{image_id},{name}," for row, (image_id, name) in enumerate(lookup_rows(image_ids), 1)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def write_kaggle_files(out_dir, n_train=2140, n_test=300, seed=0, missing=None):
    """Write training.csv, test.csv and IdLookupTable.csv in Kaggle's format to out_dir.

    Returns {"training": path, "test": path, "IdLookupTable": path}. The test faces are
    other faces than the training ones (a seed of their own, derived from `seed`).
    """
    out_dir = Path(out_dir)
    images, keypoints = make_faces(n_train, seed, missing)
    paths = {"training": input_data.write_csv(out_dir / "training.csv", images, keypoints)}
    test_seed = int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])
    test_images, _ = make_faces(n_test, test_seed)
    image_ids = np.arange(1, n_test + 1)
    paths["test"] = input_data.write_csv(out_dir / "test.csv", test_images, image_ids=image_ids)
    paths["IdLookupTable"] = write_lookup_table(out_dir / "IdLookupTable.csv", image_ids)
    return paths


def kaggle_files(data_dir="data", allow_synthetic=True):
    """input_data.kaggle_files, but when Kaggle's training file is absent (and allow_synthetic),
    synthetic faces are written to data_dir/synthetic/ first: ({stem: path or None}, synthetic?).

    It lives here, not in input_data, so that the lower layer never imports this one."""
    found, synthetic = input_data.kaggle_files(data_dir, allow_synthetic)
    if found["training"] is not None or not allow_synthetic:
        return found, synthetic
    synthetic_dir = Path(data_dir) / "synthetic"
    print(f"No Kaggle training.csv in {data_dir}/: writing synthetic faces to {synthetic_dir}/ "
          "(put Kaggle's files in data/ to use the real ones).")
    write_kaggle_files(synthetic_dir)
    return input_data.kaggle_files(data_dir, allow_synthetic)


# ---------------------------------------------------------------------------------------
# Command line.

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/synthetic", help="folder for the three CSVs")
    parser.add_argument("--n-train", type=cli.positive_int, default=2140, help="training faces (1 or more)")
    parser.add_argument("--n-test", type=cli.positive_int, default=300, help="test faces (1 or more)")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0, help="random seed (0 or more)")
    parser.add_argument("--missing", choices=["kaggle"], default=None,
                        help="leave labels empty the way Kaggle's training.csv does")
    parser.add_argument("--preview", metavar="PNG", help="also draw the first 16 faces with their keypoints")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the Kaggle files (and --preview) already in --out")
    parser.add_argument("--fit-stats", metavar="CSV",
                        help="only print the keypoint statistics of a Kaggle keypoint table, as code")
    args = parser.parse_args(argv)
    # Bounded so a typo cannot fill the disk: Kaggle has 7,049 training and 1,783 test faces.
    for option, value in (("--n-train", args.n_train), ("--n-test", args.n_test)):
        if value > MAX_FACES:
            raise cli.UsageError(f"{option}: got {value}; must be at most {MAX_FACES:,}")
    if args.fit_stats:
        if not Path(args.fit_stats).is_file():
            raise input_data.DataError(f"--fit-stats {args.fit_stats}: no such file")
        fit_keypoint_stats(args.fit_stats)
        return 0
    if args.preview is not None:
        if Path(args.preview).suffix.lower() != ".png":
            raise cli.UsageError(f"--preview: got {args.preview!r}; must be a .png file name")
        cli.writable_folder(str(Path(args.preview).parent), "--preview's folder")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise input_data.DataError(f"--out {args.out}: is a file, expected a folder")
    # Before any work: --out may be data/ with Kaggle's real files in it, or an earlier run's;
    # a zip there counts too, as training.csv beside it would take its place for every reader.
    held = [input_data.find_kaggle_file(stem, args.out) for stem in input_data.KAGGLE_STEMS]
    held = list(dict.fromkeys(str(path) for path in held if path is not None))   # Kaggle's bundle once
    if args.preview is not None and Path(args.preview).exists():
        held.append(args.preview)
    if held and not args.overwrite:
        raise cli.UsageError(f"--out {args.out}: {held[0]} is already there"
                             f"{f' (and {len(held) - 1} more of the outputs)' if len(held) > 1 else ''}; "
                             "pass --overwrite to replace what is there, or pick another --out")
    cli.writable_folder(args.out, "--out")
    started = time.perf_counter()
    paths = write_kaggle_files(args.out, args.n_train, args.n_test, args.seed, args.missing)
    seconds = time.perf_counter() - started
    lookup_count = len(lookup_rows(range(args.n_test)))
    print(f"wrote {paths['training']}: {args.n_train} faces with keypoints"
          f"{' (labels missing as in Kaggle)' if args.missing else ''}")
    print(f"wrote {paths['test']}: {args.n_test} faces")
    print(f"wrote {paths['IdLookupTable']}: {lookup_count} values asked for")
    print(f"in {seconds:.1f} s")
    if args.preview:
        images, keypoints = make_faces(16, args.seed)  # the first 16 training faces, all labels
        input_data.plot_samples(images, keypoints, args.preview)
        print(f"wrote {args.preview}")
    return 0


MAX_FACES = 100_000

if __name__ == "__main__":
    cli.run(main)
