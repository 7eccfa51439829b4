"""Does label_check find wrong labels, and leave right ones alone? Synthetic faces, planted errors.

    python bench/check_labels.py [--rows 7049] [--planted 0.1] [--seed 0]

Draws --rows faces' keypoints from synthetic_faces (Kaggle's statistics and its missing-label
patterns: 2 of 3 rows have only the eye centres, nose tip and bottom lip), plants an error in
a share of them, one kind each in turn:
  mirror  left and right labels exchanged (on a 4-keypoint row: its two eye centres),
  eyes    left_eye_center and right_eye_center exchanged,
  pair    two other keypoints at least PAIR_MIN_PX apart exchanged,
  moved   one keypoint moved FAR_PX (a range) in a random direction,
then runs label_check.check on the whole table and prints the share of planted rows found
(and given the right reason), the share of clean rows flagged, and how the found share of a
moved keypoint grows with the distance it was moved.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import cli  # noqa: E402
import input_data  # noqa: E402
import label_check  # noqa: E402
import synthetic_faces  # noqa: E402

KINDS = ("mirror", "eyes", "pair", "moved")
PAIR_MIN_PX = 10.0          # two keypoints closer than this exchanged are a small error, not a swap
FAR_PX = (15.0, 40.0)       # a moved keypoint: from about 0.4 to 1.1 eye distances (36 px)
DISTANCES = (5, 10, 15, 20, 30, 40)   # the found share of one moved keypoint at each distance
NAMES = input_data.KEYPOINT_NAMES
EYES = (NAMES.index("left_eye_center"), NAMES.index("right_eye_center"))


def clean_faces(rows, rng):
    """(rows, 30) synthetic keypoints in pixels with Kaggle's missing labels as NaN."""
    keypoints = synthetic_faces.sample_keypoints(rows, rng).astype(np.float64)
    keypoints[synthetic_faces.kaggle_missing_mask(rows, rng)] = np.nan
    return keypoints


def _swap(points, i, j):
    points[[i, j]] = points[[j, i]]


def plant(points, kind, rng, distance=None):
    """Plant one error of `kind` in one face's (15,) complex keypoints, in place; returns what
    the right reason names: 'mirror', or the keypoint indices involved."""
    present = np.isfinite(points)
    if kind == "mirror" and present.sum() > 4:
        for i, name in enumerate(NAMES):
            if "left" in name:
                _swap(points, i, NAMES.index(name.replace("left", "right")))
        return "mirror"
    if kind in ("mirror", "eyes"):
        _swap(points, *EYES)
        return set(EYES)
    shown = np.flatnonzero(present)
    if kind == "pair":
        while True:
            i, j = rng.choice(shown, 2, replace=False)
            if abs(points[i] - points[j]) >= PAIR_MIN_PX and {i, j} != set(EYES):
                _swap(points, i, j)
                return {i, j}
    i = rng.choice(shown)
    distance = rng.uniform(*FAR_PX) if distance is None else distance
    points[i] += distance * np.exp(2j * np.pi * rng.uniform())
    return {i}


def reason_is_right(reason, truth):
    if truth == "mirror":
        return reason.startswith("left and right are swapped")
    named = {i for i, name in enumerate(NAMES) if reason.startswith(name) or f"and {name} are" in reason}
    return named == truth or (len(truth) == 1 and named & truth == truth)


def run(rows, planted_share, seed, distance=None, kinds=KINDS):
    """({planted row: (kind, truth)}, the check's Result, keypoints present per row)."""
    rng = np.random.default_rng(seed)
    keypoints = clean_faces(rows, rng)
    points = keypoints[:, 0::2] + 1j * keypoints[:, 1::2]
    chosen = rng.choice(rows, int(round(rows * planted_share)), replace=False)
    planted = {}
    for n, row in enumerate(sorted(chosen)):
        kind = kinds[n % len(kinds)]
        planted[int(row)] = kind, plant(points[row], kind, rng, distance)
    keypoints[:, 0::2], keypoints[:, 1::2] = points.real, points.imag
    return planted, label_check.check(keypoints, NAMES), np.isfinite(points).sum(axis=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=cli.positive_int, default=7049, help="faces in the table (Kaggle's 7,049)")
    parser.add_argument("--planted", type=cli.positive_float, default=0.1, help="share of rows given an error")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0)
    args = parser.parse_args(argv)
    if args.planted >= 1:
        raise cli.UsageError(f"--planted: got {args.planted}; must be below 1 (some rows stay clean)")
    started = time.perf_counter()
    planted, result, _ = run(args.rows, args.planted, args.seed)
    seconds = time.perf_counter() - started
    flagged = {flag.row: flag for flag in result.flags}
    clean = args.rows - len(planted)
    false = [row for row in flagged if row not in planted]
    found = [row for row in planted if row in flagged]
    right = [row for row in found if reason_is_right(flagged[row].reason, planted[row][1])]
    print(f"{args.rows} synthetic faces (Kaggle's missing labels), {len(planted)} with a planted error, "
          f"checked in {seconds:.1f} s; threshold {label_check.THRESHOLD:g} spreads")
    print(f"found:       {len(found)} of {len(planted)} planted ({len(found) / len(planted):.1%}); "
          f"the reason names the error in {len(right)} ({len(right) / max(len(found), 1):.1%} of found)")
    print(f"false flags: {len(false)} of {clean} clean rows ({len(false) / clean:.2%})")
    for kind in KINDS:
        rows = [row for row, (k, _) in planted.items() if k == kind]
        hits = sum(row in flagged for row in rows)
        note = {"moved": f"  (by {FAR_PX[0]:g}-{FAR_PX[1]:g} px)", "pair": f"  (at least {PAIR_MIN_PX:g} px apart)"}
        print(f"  {kind:<7}{hits:>5} of {len(rows):<5} found ({hits / max(len(rows), 1):.1%}){note.get(kind, '')}")
    print("one keypoint moved by a fixed distance, found share: all rows, 4-keypoint rows, rows with more")
    for distance in DISTANCES:
        planted_d, result_d, counts = run(args.rows, args.planted, args.seed + 1, distance, kinds=("moved",))
        flagged_d = {flag.row for flag in result_d.flags}
        rows = np.array(sorted(planted_d))
        hits = np.array([row in flagged_d for row in rows])
        few = counts[rows] <= 4
        print(f"  {distance:>3} px: {hits.mean():6.1%} {hits[few].mean():6.1%} {hits[~few].mean():6.1%}")
    return 0


if __name__ == "__main__":
    cli.run(main)
