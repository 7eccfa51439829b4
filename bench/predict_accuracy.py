"""predict.py on real photos of people the model never saw: faces found and keypoint error.

    python bench/predict_accuracy.py --model PATH [--faces ../shared/data/cvnd_youtube_faces]

PATH: a model trained on the training people only (`python bench/time_to_accuracy.py --model v6
--minutes 80 --option epochs=95`, the shipped recipe, keeps one in
/tmp/fkd-bench/models/v6_resnet_integral-split/model.keras; a .keras is converted to ONNX once and
cached, as predict.py does). The shipped model saw every person, so it cannot be measured here.

The photos: the 573 frames of the 57 held-out people of the person split the models are
trained with (people = person_of(file) in the CSV's row order; train.split_validation(2820,
0.2, 0, people)); whole heads with background, 72-494 px. Truth: the 15 keypoints from the
68 landmarks (input_data.keypoints_from_68), in photo pixels.

Found: a photo's face counts as found when one of the faces predict.py reports (its final crop
square, predict.find_and_predict with the defaults) contains the true eye centres and nose tip and
its side is within a factor 2 of the true frame's side (input_data.frame_from_68). When several
do, the largest is taken.

Confidence: percentiles over the found faces, and the range on crops that hold no face (noise,
flat grey, the photos' corners), which predict.LOW_CONFIDENCE has to separate.

Error: for each found face, the mean over the 15 keypoints of the distance (photo pixels)
between the predicted and the true keypoint, divided by the inter-ocular distance (between
the true eye centres); the figure is the mean over the found faces, in percent. Printed for
predict.py's defaults and other refine / flip settings, and for the network alone on the true
frames (frame_from_68: a perfect detector).
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402

import cli  # noqa: E402
import input_data  # noqa: E402
import predict  # noqa: E402
from predict_speed import held_out_photos  # noqa: E402

DEFAULT_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "cvnd_youtube_faces"


def found_face(faces, truth_frame, truth_points):
    """Index of the largest face whose square contains the true eye centres and nose tip and
    whose side is within a factor 2 of the true side; None when none does."""
    must = truth_points[[0, 1, 10]]                      # left eye, right eye, nose tip
    for index, face in enumerate(faces):                 # largest first
        frame = face.frame
        low = frame.corner
        inside = ((must >= low) & (must <= low + frame.side)).all()
        if inside and truth_frame.side / 2 <= frame.side <= truth_frame.side * 2:
            return index
    return None


def errors(predicted, truth):
    """(n, 15) distance / inter-ocular distance for (n, 15, 2) predictions and truths."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    iod = np.linalg.norm(truth[:, 0] - truth[:, 1], axis=1)
    return np.linalg.norm(predicted - truth, axis=2) / iod[:, None]


def labelled(faces_dir, people="validation"):
    """(paths, truths (n, 15, 2), truth frames) of the held-out (or training) people's photos."""
    import csv
    faces_dir = Path(faces_dir)
    with open(faces_dir / "training_frames_keypoints.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    by_name = {row[0]: np.array([float(v) for v in row[1:]]).reshape(68, 2) for row in rows}
    held = {path.name for path, _ in held_out_photos(faces_dir)}
    names = [row[0] for row in rows if (row[0] in held) == (people == "validation")]
    paths = [faces_dir / "training" / name for name in names]
    truths = np.array([input_data.keypoints_from_68(by_name[n]) for n in names])
    frames = [input_data.frame_from_68(by_name[n]) for n in names]
    return paths, truths, frames


def not_faces(grays, seed=0):
    """96x96 crops with no face, for the confidence a face should beat (predict.LOW_CONFIDENCE):
    uniform noise, flat grey, and the photos' corners (a quarter of the side: background, hair,
    shoulders) of the first 100 photos."""
    import cv2
    rng = np.random.default_rng(seed)
    corners = []
    for gray in grays[:100]:
        side = min(gray.shape) // 4
        for y, x in ((0, 0), (0, gray.shape[1] - side), (gray.shape[0] - side, 0),
                     (gray.shape[0] - side, gray.shape[1] - side)):
            corners.append(cv2.resize(gray[y:y + side, x:x + side], (96, 96), interpolation=cv2.INTER_AREA))
    return {"noise": (rng.random((100, 96, 96)) * 255).astype(np.uint8),
            "flat grey": np.repeat(np.linspace(20, 235, 20).astype(np.uint8)[:, None, None], 96 * 96, 1).reshape(20, 96, 96),
            "photo corners": np.stack(corners)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a .keras or .onnx model trained on the training people only")
    parser.add_argument("--faces", default=str(DEFAULT_FACES), help="the CVND faces folder")
    parser.add_argument("--people", choices=["validation", "train"], default="validation",
                        help="which people of the person split (default: the held-out ones)")
    parser.add_argument("--no-variants", action="store_true", help="only predict.py's defaults")
    parser.add_argument("--low-confidence", type=cli.fraction, default=None,
                        help="the confidence bar below which predict.py searches again (default: the "
                             f"model's own, chosen in training; {predict.LOW_CONFIDENCE} for a model without one)")
    args = parser.parse_args(argv)
    if not (Path(args.faces) / "training_frames_keypoints.csv").is_file():
        raise cli.InputError(f"{args.faces}: no training_frames_keypoints.csv (the real faces live beside the repository)")

    model = predict.load_model(args.model)
    args.low_confidence = predict.bar_of(model, args.low_confidence)
    paths, truths, truth_frames = labelled(args.faces, args.people)
    grays = [input_data.read_gray(p, exif=False) for p in paths]
    print(f"model {args.model}; {len(paths)} photos of the {args.people} people; detector "
          f"{predict.detector_settings()}")

    settings = [(predict.REFINE, predict.FLIP_TTA)]
    if not args.no_variants:
        settings += [s for s in [(True, True), (True, "final"), (True, False), (False, True), (False, False)]
                     if s != settings[0]]
    print(f"  {'refine':>7}{'flip':>7}{'found %':>9}{'mean %':>8}{'median %':>10}{'px':>7}{'s':>6}")
    default = None
    for refine, flip in settings:
        started = time.perf_counter()
        results = [predict.find_and_predict(g, model, refine, flip, low_confidence=args.low_confidence)
                   for g in grays]
        seconds = time.perf_counter() - started
        hits = [found_face(faces, frame, truth) for faces, frame, truth in zip(results, truth_frames, truths)]
        keep = [k for k, h in enumerate(hits) if h is not None]
        predicted = np.array([results[k][hits[k]].keypoints for k in keep])
        e = errors(predicted, truths[keep])
        px = np.linalg.norm(predicted - truths[keep], axis=2).mean()
        print(f"  {str(refine):>7}{str(flip):>7}{100 * len(keep) / len(grays):9.2f}{100 * e.mean():8.2f}"
              f"{100 * np.median(e.mean(axis=1)):10.2f}{px:7.2f}{seconds:6.1f}"
              + ("   <- predict.py's defaults" if default is None else ""))
        if default is None:
            default = (hits, e, results)
    oracle = predict.predict_batch(grays, model, [[f] for f in truth_frames], refine=False, flip_tta=True)
    e_oracle = errors(np.array([f[0].keypoints for f in oracle]), truths)
    print(f"  the network on the true frames (flip TTA): mean {100 * e_oracle.mean():.2f}%")

    hits, e, results = default
    missed = [paths[k].name for k, h in enumerate(hits) if h is None]
    if missed:
        print(f"  not found: {', '.join(missed[:20])}{' ...' if len(missed) > 20 else ''}")
    confidence = np.array([results[k][hits[k]].confidence for k, h in enumerate(hits) if h is not None])
    per_face = e.mean(axis=1)
    low = confidence < args.low_confidence
    print(f"confidence of the found faces: median {np.median(confidence):.3f}; {low.sum()} below "
          f"{args.low_confidence} (their mean error {100 * per_face[low].mean() if low.any() else float('nan'):.2f}%)")
    print(f"  percentiles 1 / 5 / 50 / 95: {' / '.join(f'{q:.3f}' for q in np.percentile(confidence, [1, 5, 50, 95]))}")
    for name, crops in not_faces(grays).items():
        _, values = predict.crop_keypoints(crops, model=model)
        print(f"  not faces, {name} ({len(crops)}): {values.min():.3f}-{values.max():.3f} (median {np.median(values):.3f})")
    print("per keypoint (predict.py's defaults), mean % of the inter-ocular distance:")
    for name, value in zip(input_data.KEYPOINT_NAMES, e.mean(axis=0)):
        print(f"  {name:<26}{100 * value:6.2f}")
    print(f"faces found {100 * (len(hits) - len(missed)) / len(hits):.2f}%, mean error {100 * e.mean():.2f}% "
          "of the inter-ocular distance")


if __name__ == "__main__":
    cli.run(main)
