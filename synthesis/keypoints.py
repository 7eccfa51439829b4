"""Keypoints like Kaggle's: its training table's statistics as numbers (no data file needed),
faces' keypoints sampled from them, the labels Kaggle left empty, and fitting the numbers again."""
import numpy as np

import cli
from dataset.kaggle_csv import read_labels
from dataset.kaggle_format import COLUMNS, IMAGE_SIZE, DataError


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

# Sampled keypoints are kept this far inside the frame (the real table's extremes are ~4 px in).
FRAME_MARGIN = 1.0


def fit_keypoint_stats(csv_path, n_components=10, n_patterns=16):
    """Recompute the statistics above from Kaggle's keypoint table and print them as code."""
    import pandas as pd
    read_labels(csv_path)    # every keypoint a plain decimal number, as strictly as elsewhere
    try:
        table = pd.read_csv(csv_path, encoding="utf-8")
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataError(f"{csv_path}: not a readable CSV table ({cli.one_line(error)})") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{csv_path}: missing keypoint columns {', '.join(missing[:5])}"
                        f"{' ...' if len(missing) > 5 else ''} (expected Kaggle's 30 columns)")
    try:
        table = table[COLUMNS].astype(np.float64)
    except (TypeError, ValueError) as error:
        raise DataError(f"{csv_path}: a keypoint value is not a number ({cli.one_line(error)})") from None
    complete = table.dropna().to_numpy(np.float64)
    if not np.isfinite(complete).all():
        raise DataError(f"{csv_path}: holds infinite keypoint values")
    if len(complete) <= len(COLUMNS):
        raise DataError(f"{csv_path}: {len(complete)} complete rows; the statistics need more "
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
