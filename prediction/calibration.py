"""Fitting detector_calibration.json: the detector's boxes and the true keypoints of real faces
-> the Kaggle frame (input_data.frame_from_68's square), by least squares on the training people.
The command is calibrate_detector.py (its docstring says what is fitted and how)."""
import time
from pathlib import Path

import numpy as np

import cli
import input_data
from prediction import detection


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
    """Least squares for detection.frame_from_keypoints on the true keypoints: 6 numbers."""
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


def calibrate(faces_dir, files, points, train_idx, val_idx, min_faces):
    """The calibration (the JSON's content) from the labelled photos faces_dir/training/<file>
    (points: their 68 landmarks), fitted on train_idx and checked on val_idx, printing the
    residuals. cli.InputError when a detector (Haar, LBP, BlazeFace) finds fewer than min_faces
    of the training faces."""
    named, faces_dir = faces_dir, Path(faces_dir)
    started = time.perf_counter()
    matched = {"train": ([], [], []), "validation": ([], [], [])}
    misses = {"train": 0, "validation": 0}
    lbp_matched = {"train": ([], []), "validation": ([], [])}
    blaze_matched = {model: {"train": ([], []), "validation": ([], [])} for model in ("short", "full")}
    for part, indices in (("train", train_idx), ("validation", val_idx)):
        for i in indices:
            gray = input_data.read_gray(faces_dir / "training" / files[i], exif=False)
            truth = input_data.frame_from_68(points[i])
            lbp_box = matching_box(detection.lbp_boxes(gray), truth)
            if lbp_box is not None:
                lbp_matched[part][0].append(lbp_box)
                lbp_matched[part][1].append(truth)
            for model, found in blaze_matched.items():
                blaze_box = matching_box(detection.blazeface_boxes(gray, model), truth)
                if blaze_box is not None:
                    found[part][0].append(blaze_box)
                    found[part][1].append(truth)
            box = matching_box(detection.detect_boxes(gray, fallback=False, quick=False), truth)
            if box is None:
                misses[part] += 1
                continue
            matched[part][0].append(box)
            matched[part][1].append(truth)
            matched[part][2].append(truth.to_frame(input_data.keypoints_from_68(points[i])))
    print(f"detected in {time.perf_counter() - started:.1f} s; no matching box: "
          f"{misses['train']} training, {misses['validation']} held-out faces")

    boxes, truths, _ = matched["train"]
    for name, found in (("Haar", boxes), ("LBP", lbp_matched["train"][0]),
                        ("BlazeFace", blaze_matched["short"]["train"][0]),
                        ("BlazeFace full-range", blaze_matched["full"]["train"][0])):
        if not found:       # nothing to fit (blank or faceless photos, or labels of other photos)
            raise cli.InputError(f"--faces {named}: no faces were detected (by the {name} cascade, at "
                                 f"their labelled places) in the {len(train_idx)} photos of the training "
                                 f"people ({len(files)} photos in all); are they the labelled photos of faces?")
        if len(found) < min_faces:
            raise cli.InputError(f"--faces {named}: the {name} cascade found {len(found)} of the "
                                 f"{len(train_idx)} training people's faces; a fit needs at least "
                                 f"{min_faces} to mean anything; nothing was written")
    params = fit_robustly(boxes, truths, "Haar")
    print("residuals (predicted frame - frame_from_68):")
    describe("training people", residuals(boxes, truths, params))
    if matched["validation"][0]:
        describe("held-out people", residuals(matched["validation"][0], matched["validation"][1], params))

    lbp_params = fit_robustly(*lbp_matched["train"], "LBP")
    describe("training people", residuals(*lbp_matched["train"], lbp_params))
    if lbp_matched["validation"][0]:
        describe("held-out people", residuals(*lbp_matched["validation"], lbp_params))

    blaze_params = {}
    for model, found in blaze_matched.items():
        blaze_params[model] = fit_robustly(*found["train"], f"BlazeFace {model}-range")
        describe("training people", residuals(*found["train"], blaze_params[model]))
        if found["validation"][0]:
            describe("held-out people", residuals(*found["validation"], blaze_params[model]))

    keypoint_fit = fit_keypoints_to_frame(train_idx, points)
    # The keypoints' box says the face's size best (a linear map of all 30 offsets was worse on
    # the held-out people: docs/experiments.md, 2026-12-07).
    print("keypoints -> frame (for refinement): centre = keypoint box centre + (w, h) @ "
          f"cx {keypoint_fit['cx']}, cy {keypoint_fit['cy']}; side = (w, h) @ {keypoint_fit['side']}")
    for part, indices in (("training people", train_idx), ("held-out people", val_idx)):
        res = []
        for i in indices:
            truth = input_data.frame_from_68(points[i])
            got = detection.frame_from_keypoints(input_data.keypoints_from_68(points[i]), keypoint_fit)
            res.append([(got.cx - truth.cx) / truth.side, (got.cy - truth.cy) / truth.side,
                        got.side / truth.side - 1])
        describe(part + ", from the true keypoints", np.array(res))
    out = {
        "about": "predict.py: Haar box (x, y, w, h) -> Kaggle frame: centre = box centre + "
                 "(dx, dy) * w, side = side * w; the LBP cascade's and BlazeFace's boxes likewise with "
                 "their own numbers (lbp_box_to_frame, blazeface_box_to_frame for the short-range model, "
                 "blazeface_full_box_to_frame). Keypoints (15) -> frame: with c, (w, h) "
                 "the centre and size of the keypoints' box, centre = c + ((w, h) @ cx, (w, h) @ cy), "
                 "side = (w, h) @ side. Fitted by calibrate_detector.py on the training people of "
                 "cvnd_youtube_faces (person split train.split_validation(2820, 0.2, 0, people)).",
        "detector": detection.detector_settings(),
        "box_to_frame": {k: round(v, 5) for k, v in params.items()},
        "lbp_box_to_frame": {k: round(v, 5) for k, v in lbp_params.items()},
        "blazeface_box_to_frame": {k: round(v, 5) for k, v in blaze_params["short"].items()},
        "blazeface_full_box_to_frame": {k: round(v, 5) for k, v in blaze_params["full"].items()},
        "keypoints_to_frame": keypoint_fit,
        "fitted_on_faces": len(boxes),
    }
    return out
