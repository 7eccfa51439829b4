"""predict.py on real photos of people the model never saw: faces found and keypoint error.

    python bench/predict_accuracy.py --model PATH [--faces ../shared/data/cvnd_youtube_faces]

The photos: the 573 frames of the 57 held-out people of the person split the models are
trained with (people = person_of(file) in the CSV's row order; train.split_validation(2820,
0.2, 0, people)); whole heads with background, 72-494 px. Truth: the 15 keypoints from the
68 landmarks (input_data.keypoints_from_68), in photo pixels.

Found: a photo's face counts as found when one of the detected faces (predict.detect_faces,
i.e. after the calibrated box -> frame map) has a frame that contains the true eye centres
and the true nose tip and whose side is within a factor 2 of the true frame's side
(input_data.frame_from_68). When several do, the largest is taken.

Error: for each found face, the mean over the 15 keypoints of the distance (photo pixels)
between the predicted and the true keypoint, divided by the inter-ocular distance (between
the true eye centres); the figure is the mean over the found faces, in percent. The same is
printed for the network alone on the true frames (frame_from_68: a perfect detector), and
with and without the refinement pass and flip test-time augmentation.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402

import calibrate_detector  # noqa: E402
import input_data  # noqa: E402
import predict  # noqa: E402


def found_face(frames, truth_frame, truth_points):
    """Index of the largest detected frame that contains the true eye centres and nose tip and
    whose side is within a factor 2 of the true side; None when none does."""
    must = truth_points[[0, 1, 10]]                      # left eye, right eye, nose tip
    for index, frame in enumerate(frames):               # largest first
        low = frame.corner
        high = low + frame.side
        inside = ((must >= low) & (must <= high)).all()
        if inside and truth_frame.side / 2 <= frame.side <= truth_frame.side * 2:
            return index
    return None


def errors(predicted, truth):
    """(n, 15) distance / inter-ocular distance for (n, 15, 2) predictions and truths."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    iod = np.linalg.norm(truth[:, 0] - truth[:, 1], axis=1)
    return np.linalg.norm(predicted - truth, axis=2) / iod[:, None]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="a .keras model (default: the shipped one)")
    parser.add_argument("--faces", default=str(calibrate_detector.DEFAULT_FACES))
    parser.add_argument("--people", choices=["validation", "train", "all"], default="validation",
                        help="which people of the person split (default: the held-out ones)")
    args = parser.parse_args(argv)

    files, people, points68 = calibrate_detector.load_labelled(args.faces)
    train_idx, val_idx = calibrate_detector.person_split(people)
    chosen = {"validation": val_idx, "train": train_idx, "all": np.arange(len(files))}[args.people]
    model = predict.load_model(args.model)
    print(f"model {args.model or 'shipped'}; {len(chosen)} photos of "
          f"{len(set(people[i] for i in chosen))} {args.people} people; detector "
          f"{predict.detector_settings()}")

    grays, truths, truth_frames, detected, primary = [], [], [], [], []
    started = time.perf_counter()
    for i in chosen:
        gray = input_data.read_gray(Path(args.faces) / "training" / files[i], exif=False)
        grays.append(gray)
        truths.append(input_data.keypoints_from_68(points68[i]))
        truth_frames.append(input_data.frame_from_68(points68[i]))
        boxes = predict.detect_boxes(gray, fallback=False)
        primary.append(boxes)
        detected.append(boxes or predict.detect_boxes(gray))   # the fallbacks run only when empty
    print(f"read and detected in {time.perf_counter() - started:.1f} s")
    truths = np.array(truths)

    primary_hits = [found_face([predict.box_to_frame(b) for b in boxes], frame, truth)
                    for boxes, frame, truth in zip(primary, truth_frames, truths)]
    print(f"faces found by {predict.CASCADE} alone: {sum(h is not None for h in primary_hits)} of "
          f"{len(primary_hits)}; with the fallbacks {[f[:2] for f in predict.FALLBACKS]}:")
    hits = [found_face([predict.box_to_frame(b) for b in boxes], frame, truth)
            for boxes, frame, truth in zip(detected, truth_frames, truths)]
    found = np.array([h is not None for h in hits])
    n_boxes = np.array([len(b) for b in detected])
    print(f"faces found: {found.sum()} of {len(found)} = {100 * found.mean():.2f}%  "
          f"(no box at all: {(n_boxes == 0).sum()}, more than one box: {(n_boxes > 1).sum()})")
    missed = [files[i] for i, f in zip(chosen, found) if not f]
    if missed:
        print(f"  not found: {', '.join(missed[:20])}{' ...' if len(missed) > 20 else ''}")

    keep = np.flatnonzero(found)
    grays_found = [grays[k] for k in keep]
    frames_found = [[predict.box_to_frame(detected[k][hits[k]])] for k in keep]
    boxes_found = [[detected[k][hits[k]]] for k in keep]
    oracle = [[truth_frames[k]] for k in keep]
    results = {}
    print(f"\nmean keypoint error, % of the inter-ocular distance, on the {len(keep)} found faces:")
    print(f"  {'crop':<28}{'refine':>7}{'flip':>6}{'mean %':>9}{'median %':>10}{'px':>7}{'s':>6}")
    for crop_name, frames in (("detector (predict.py)", frames_found), ("true frame (frame_from_68)", oracle)):
        for refine in (False, True):
            for flip in (False, True):
                started = time.perf_counter()
                faces = predict.predict_batch(grays_found, model, frames, boxes_found if frames is frames_found else None,
                                              refine=refine, flip_tta=flip)
                seconds = time.perf_counter() - started
                predicted = np.array([f[0].keypoints for f in faces])
                e = errors(predicted, truths[keep])
                px = np.linalg.norm(predicted - truths[keep], axis=2).mean()
                results[crop_name, refine, flip] = e
                print(f"  {crop_name:<28}{'yes' if refine else 'no':>7}{'yes' if flip else 'no':>6}"
                      f"{100 * e.mean():9.2f}{100 * np.median(e.mean(axis=1)):10.2f}{px:7.2f}{seconds:6.1f}")

    default = results["detector (predict.py)", predict.REFINE, predict.FLIP_TTA]
    print(f"\nper keypoint (predict.py's defaults: refine={predict.REFINE}, flip_tta={predict.FLIP_TTA}), "
          "mean % of the inter-ocular distance:")
    for name, value in zip(input_data.KEYPOINT_NAMES, default.mean(axis=0)):
        print(f"  {name:<26}{100 * value:6.2f}")
    print(f"faces found {100 * found.mean():.2f}%, mean error {100 * default.mean():.2f}% "
          "of the inter-ocular distance")


if __name__ == "__main__":
    main()
