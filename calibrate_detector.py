"""Fit the map from OpenCV's Haar face box to the Kaggle frame, on real faces with 68 landmarks.

    python calibrate_detector.py [--faces ../shared/data/cvnd_youtube_faces] [--out detector_calibration.json] [--overwrite]

The Kaggle frame of a face is input_data.frame_from_68's square (1.47 x the box of landmarks
17..67, shifted a little). The Haar cascade's square box (x, y, w, w) is smaller and sits a
little differently; predict.py turns it into a frame as

    centre = box centre + (dx, dy) * w,     side = side_scale * w.

The LBP cascade predict.py tries first has its own three numbers (lbp_box_to_frame). The
three numbers are fitted by least squares on the photos of the TRAINING people of the
person split the models use (train.split_validation(2820, 0.2, 0, people)), each residual
measured in units of the true frame side (so a big face counts as much as a small one). The
script prints the residuals on the training and on the held-out people, and writes the three
numbers, the six of the keypoints -> frame map (predict.frame_from_keypoints, for the
refinement pass: the frame from the keypoint box, fitted on the true keypoints of the same
training faces) and the detector settings they belong to into detector_calibration.json. Nothing of
the photos themselves is written. An existing --out (by default the shipped file every
predict.py run reads) is replaced only with --overwrite.
"""
import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

import cli
import input_data
import predict

DEFAULT_FACES = Path(__file__).resolve().parent.parent / "shared" / "data" / "cvnd_youtube_faces"

# The fewest detected faces a fit may use. The three numbers are means of per-face offsets that
# scatter by a few pixels of the 96-px frame, so their error shrinks as 1/sqrt(faces): about
# 0.3 px from 100 faces, over 1 px from 5, where one odd box moves the map every predict.py
# crop goes through. The shipped fit used 2,232 of the 2,820 real faces.
MIN_FIT_FACES = 100


def load_labelled(faces_dir):
    """(files, people, points68 (N, 68, 2)) from the CVND landmark CSV, in row order."""
    faces_dir = Path(faces_dir)
    labels = faces_dir / "training_frames_keypoints.csv"
    if not labels.is_file():
        raise cli.InputError(f"{labels} not found (the real faces live beside the repository)")
    try:
        with open(labels, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))[1:]
    except (UnicodeDecodeError, csv.Error) as error:
        raise cli.InputError(f"{labels}: not a UTF-8 CSV ({cli.one_line(error)})") from None
    if not rows:
        raise cli.InputError(f"{labels}: no label rows")
    files, points = [], []
    for number, row in enumerate(rows, start=2):
        try:
            values = np.array([float(v) for v in row[1:]], np.float64)
        except ValueError as error:
            raise cli.InputError(f"{labels}, row {number}: {cli.one_line(error)}") from None
        if values.size != 136 or not np.isfinite(values).all():
            raise cli.InputError(f"{labels}, row {number}: needs a file name and 136 finite numbers "
                                 f"(68 x, y pairs), got {values.size} values"
                                 + ("" if np.isfinite(values).all() else " with NaN or infinity"))
        files.append(row[0])
        points.append(values.reshape(68, 2))
    return files, [input_data.person_of(f) for f in files], np.array(points)


def person_split(people):
    """(train, validation) indices: the split the models were trained with."""
    import train
    return train.split_validation(len(people), 0.2, 0, people)


def matching_box(boxes, truth):
    """The detector box that belongs to the true frame: its centre within half a true side of
    the frame centre and its width within a factor 3 of the side; the nearest such, or None."""
    best, best_distance = None, np.inf
    for box in boxes:
        x, y, w, h = box
        distance = np.hypot(x + w / 2 - truth.cx, y + h / 2 - truth.cy) / truth.side
        if distance < 0.5 and truth.side / 3 < w < truth.side * 3 and distance < best_distance:
            best, best_distance = box, distance
    return best


def fit(boxes, truths):
    """Least squares for dx, dy, side_scale with residuals in units of the true side."""
    b = np.array(boxes, np.float64)
    t = np.array([[f.cx, f.cy, f.side] for f in truths])
    w = (b[:, 2] + b[:, 3]) / 2
    u = w / t[:, 2]                                      # box width in true sides
    rx = (t[:, 0] - (b[:, 0] + b[:, 2] / 2)) / t[:, 2]
    ry = (t[:, 1] - (b[:, 1] + b[:, 3] / 2)) / t[:, 2]
    uu = (u * u).sum()
    return {"dx": float((u * rx).sum() / uu), "dy": float((u * ry).sum() / uu),
            "side": float(u.sum() / uu)}


def residuals(boxes, truths, params):
    """Per face: centre error and side error as fractions of the true side."""
    b = np.array(boxes, np.float64)
    t = np.array([[f.cx, f.cy, f.side] for f in truths])
    w = (b[:, 2] + b[:, 3]) / 2
    cx = b[:, 0] + b[:, 2] / 2 + params["dx"] * w
    cy = b[:, 1] + b[:, 3] / 2 + params["dy"] * w
    side = params["side"] * w
    return np.stack([(cx - t[:, 0]) / t[:, 2], (cy - t[:, 1]) / t[:, 2], side / t[:, 2] - 1], axis=1)


def fit_keypoints_to_frame(indices, points):
    """Least squares for predict.frame_from_keypoints on the true keypoints: 6 numbers."""
    keypoints = np.array([input_data.keypoints_from_68(points[i]) for i in indices])
    truth = np.array([[f.cx, f.cy, f.side] for f in map(input_data.frame_from_68, points[indices])])
    low, high = keypoints.min(axis=1), keypoints.max(axis=1)
    centre, size = (low + high) / 2, high - low
    out = {}
    for j, key in enumerate(["cx", "cy", "side"]):
        target = truth[:, j] - (centre[:, j] if j < 2 else 0)
        weights = 1 / truth[:, 2]                        # residuals in units of the true side
        solution = np.linalg.lstsq(size * weights[:, None], target * weights, rcond=None)[0]
        out[key] = [round(float(v), 5) for v in solution]
    return out


def fit_robustly(boxes, truths, name):
    """fit, then again without the outliers (boxes on a wrong part of the face would pull it)."""
    params = fit(boxes, truths)
    res = residuals(boxes, truths, params)
    error = np.hypot(res[:, 0], res[:, 1]) + np.abs(res[:, 2])
    keep = error < max(3 * np.median(error) * 1.4826, 0.05)
    params = fit([b for b, k in zip(boxes, keep) if k], [t for t, k in zip(truths, keep) if k])
    print(f"{name} boxes: fit on {keep.sum()} faces ({(~keep).sum()} outliers left out): "
          f"centre = box centre + ({params['dx']:+.4f}, {params['dy']:+.4f}) x w, "
          f"side = {params['side']:.4f} x w")
    return params


def describe(name, res):
    px = res * input_data.IMAGE_SIZE                     # in pixels of the 96-px frame
    print(f"  {name}: {len(res)} faces; in 96-px frame pixels (rms / median |.| / 95th pct |.|):")
    for j, label in enumerate(["centre x", "centre y", "side    "]):
        a = np.abs(px[:, j])
        print(f"    {label} {np.sqrt((px[:, j] ** 2).mean()):6.2f} {np.median(a):6.2f} "
              f"{np.percentile(a, 95):6.2f}   (mean {px[:, j].mean():+.2f})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", default=str(DEFAULT_FACES), help="the CVND faces folder "
                        "(training/ and training_frames_keypoints.csv)")
    parser.add_argument("--out", default=str(predict.CALIBRATION_PATH), help="the JSON file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists (the default "
                        "--out is the shipped calibration)")
    args = parser.parse_args(argv)
    # Before any work: --out is a file in a writable folder, and never the labels, a photo or
    # anything else under --faces (a JSON over training_frames_keypoints.csv destroys the labels).
    cli.check_outputs([("--out", args.out)], [("--faces", args.faces)])
    if Path(args.out).exists() and not args.overwrite:
        shipped = " (the shipped calibration every predict.py run reads)" \
            if cli.same_file(args.out, predict.CALIBRATION_PATH) else ""
        raise cli.UsageError(f"--out {args.out}: exists{shipped}; pass --overwrite to replace it, "
                             "or name another --out")

    files, people, points = load_labelled(args.faces)
    train_idx, val_idx = person_split(people)
    if not len(train_idx):
        raise cli.InputError(f"--faces {args.faces}: {len(files)} photos of {len(set(people))} people, all "
                             "held out by the person split; the fit needs photos of more people")
    print(f"{len(files)} faces of {len(set(people))} people; fitting on {len(train_idx)} faces of "
          f"{len(set(people[i] for i in train_idx))} training people, checking on {len(val_idx)} "
          f"faces of {len(set(people[i] for i in val_idx))} held-out people")
    started = time.perf_counter()
    matched = {"train": ([], [], []), "validation": ([], [], [])}
    misses = {"train": 0, "validation": 0}
    lbp_matched = {"train": ([], []), "validation": ([], [])}
    for part, indices in (("train", train_idx), ("validation", val_idx)):
        for i in indices:
            gray = input_data.read_gray(Path(args.faces) / "training" / files[i], exif=False)
            truth = input_data.frame_from_68(points[i])
            lbp_box = matching_box(predict.lbp_boxes(gray), truth)
            if lbp_box is not None:
                lbp_matched[part][0].append(lbp_box)
                lbp_matched[part][1].append(truth)
            box = matching_box(predict.detect_boxes(gray, fallback=False, quick=False), truth)
            if box is None:
                misses[part] += 1
                continue
            matched[part][0].append(box)
            matched[part][1].append(truth)
            matched[part][2].append(truth.to_frame(input_data.keypoints_from_68(points[i])))
    print(f"detected in {time.perf_counter() - started:.1f} s; no matching box: "
          f"{misses['train']} training, {misses['validation']} held-out faces")

    boxes, truths, _ = matched["train"]
    for name, found in (("Haar", boxes), ("LBP", lbp_matched["train"][0])):
        if not found:       # nothing to fit (blank or faceless photos, or labels of other photos)
            raise cli.InputError(f"--faces {args.faces}: no faces were detected (by the {name} cascade, at "
                                 f"their labelled places) in the {len(train_idx)} photos of the training "
                                 f"people ({len(files)} photos in all); are they the labelled photos of faces?")
        if len(found) < MIN_FIT_FACES:
            raise cli.InputError(f"--faces {args.faces}: the {name} cascade found {len(found)} of the "
                                 f"{len(train_idx)} training people's faces; a fit needs at least "
                                 f"{MIN_FIT_FACES} to mean anything; nothing was written")
    params = fit_robustly(boxes, truths, "Haar")
    print("residuals (predicted frame - frame_from_68):")
    describe("training people", residuals(boxes, truths, params))
    if matched["validation"][0]:
        describe("held-out people", residuals(matched["validation"][0], matched["validation"][1], params))

    lbp_params = fit_robustly(*lbp_matched["train"], "LBP")
    describe("training people", residuals(*lbp_matched["train"], lbp_params))
    if lbp_matched["validation"][0]:
        describe("held-out people", residuals(*lbp_matched["validation"], lbp_params))

    keypoint_fit = fit_keypoints_to_frame(train_idx, points)
    # A linear map of all 30 offsets from the keypoints' mean was tried: worse on the held-out
    # people (side 4.09 against 3.71 px rms), the box's size says the face's size best.
    print("keypoints -> frame (for refinement): centre = keypoint box centre + (w, h) @ "
          f"cx {keypoint_fit['cx']}, cy {keypoint_fit['cy']}; side = (w, h) @ {keypoint_fit['side']}")
    for part, indices in (("training people", train_idx), ("held-out people", val_idx)):
        res = []
        for i in indices:
            truth = input_data.frame_from_68(points[i])
            got = predict.frame_from_keypoints(input_data.keypoints_from_68(points[i]), keypoint_fit)
            res.append([(got.cx - truth.cx) / truth.side, (got.cy - truth.cy) / truth.side,
                        got.side / truth.side - 1])
        describe(part + ", from the true keypoints", np.array(res))
    out = {
        "about": "predict.py: Haar box (x, y, w, h) -> Kaggle frame: centre = box centre + "
                 "(dx, dy) * w, side = side * w; the LBP cascade's boxes likewise with their own "
                 "numbers (lbp_box_to_frame). Keypoints (15) -> frame: with c, (w, h) "
                 "the centre and size of the keypoints' box, centre = c + ((w, h) @ cx, (w, h) @ cy), "
                 "side = (w, h) @ side. Fitted by calibrate_detector.py on the training people of "
                 "cvnd_youtube_faces (person split train.split_validation(2820, 0.2, 0, people)).",
        "detector": predict.detector_settings(),
        "box_to_frame": {k: round(v, 5) for k, v in params.items()},
        "lbp_box_to_frame": {k: round(v, 5) for k, v in lbp_params.items()},
        "keypoints_to_frame": keypoint_fit,
        "fitted_on_faces": len(boxes),
    }
    cli.write_atomically(args.out, lambda tmp: Path(tmp).write_text(json.dumps(out, indent=1) + "\n"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli.run(main)
