"""Where predict.py's error beyond the network's own comes from: the crop square.

    python bench/accuracy_gap.py --model PATH [--second PATH] [--faces ../shared/data/cvnd_youtube_faces]

PATH: a model trained on the training people only, as for bench/predict_accuracy.py (same
photos, truths and measure: mean keypoint distance / inter-ocular distance, in percent).

On a perfect crop (the true frame, input_data.frame_from_68) the network is at ~5% of the eye
distance; through predict.py it is ~0.7 point worse. This prints what the network does when its
square is off in known ways (moved by 3 or 6% of its side, scaled by 0.92 to 1.15), the square
predict.py ends on against the true one, and one refinement pass started from the true frame.
"leak" is how far the predicted keypoints follow a moved square (0: they stay on the face, 1:
they move with the square); "spread" is the keypoints' spread about their centroid against
the prediction on the true square (1.026: a face predicted 2.6% too large).

--second averages two networks (e.g. the same recipe with --option seed=1) three ways: on
every crop, on the last pass only (crop and mirror), and the second on the mirrored crop of the
last pass instead of the first (flip TTA's cost).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402

import cli  # noqa: E402
import input_data  # noqa: E402
import predict  # noqa: E402
from predict_accuracy import DEFAULT_FACES, errors, found_face, labelled  # noqa: E402

MOVES = [(0.03, 0, 1), (-0.03, 0, 1), (0, 0.03, 1), (0, -0.03, 1), (0.06, 0, 1),
         (0, 0, 0.92), (0, 0, 1.08), (0, 0, 1.15)]


def spread(points):
    """(n,) mean distance of each face's keypoints from their centroid."""
    return np.linalg.norm(points - points.mean(axis=1, keepdims=True), axis=2).mean(axis=1)


def on_frames(grays, model, frames, refine=False):
    """(n, 15, 2) keypoints (photo pixels) of one given square per photo, flip TTA."""
    faces = predict.predict_batch(grays, model, [[f] for f in frames], refine=refine, flip_tta=True)
    return np.array([f[0].keypoints for f in faces])


def through_predict(grays, model, truths, truth_frames):
    """predict.py's defaults: (found fraction, per-face errors, final squares of the found faces)."""
    results = [predict.find_and_predict(g, model) for g in grays]
    hits = [found_face(r, frame, truth) for r, frame, truth in zip(results, truth_frames, truths)]
    keep = [k for k, h in enumerate(hits) if h is not None]
    predicted = np.array([results[k][hits[k]].keypoints for k in keep])
    squares = [(results[k][hits[k]].frame, truth_frames[k]) for k in keep]
    return len(keep) / len(grays), errors(predicted, truths[keep]).mean(axis=1), squares


class Average:
    """Two predictors as one (predict.run_network's interface). how: "every" averages both on
    every crop; "last" only on the last pass (the one run with the mirrored crops, flip TTA);
    "mirror" runs the first on the crops and the second on their mirrored copies."""

    def __init__(self, first, second, how):
        self.first, self.second, self.how = first, second, how
        self.mirror_axis = first.mirror_axis

    def raw(self, X):
        n = len(X) // 2
        flipped = len(X) % 2 == 0 and n > 0 and np.array_equal(X[n:], X[:n, :, ::-1])
        if self.how == "every" or (self.how == "last" and flipped):
            (a, ha), (b, hb) = self.first.raw(X), self.second.raw(X)
            return (a + b) / 2, (ha + hb) / 2
        if self.how == "mirror" and flipped:
            (a, ha) = self.first.raw(np.ascontiguousarray(X[:n]))
            (b, hb) = self.second.raw(np.ascontiguousarray(X[n:]))
            return np.concatenate([a, b]), np.concatenate([ha, hb])
        return self.first.raw(X)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a .keras or .onnx model trained on the training people only")
    parser.add_argument("--second", help="another such model: also print the two averaged")
    parser.add_argument("--faces", default=str(DEFAULT_FACES), help="the CVND faces folder")
    parser.add_argument("--limit", type=int, default=0, help="only the first N photos (0: all)")
    args = parser.parse_args(argv)
    if args.limit < 0:
        raise cli.UsageError(f"--limit {args.limit}: must be 0 (all) or a positive number of photos")
    if not (Path(args.faces) / "training_frames_keypoints.csv").is_file():
        raise cli.InputError(f"{args.faces}: no training_frames_keypoints.csv (the real faces live beside the repository)")

    model = predict.load_model(args.model)
    paths, truths, truth_frames = labelled(args.faces)
    if args.limit:
        paths, truths, truth_frames = paths[:args.limit], truths[:args.limit], truth_frames[:args.limit]
    grays = [input_data.read_gray(p, exif=False) for p in paths]
    sides = np.array([f.side for f in truth_frames])
    print(f"model {args.model}; {len(paths)} photos of the held-out people; mean error, % of the eye distance")

    base = on_frames(grays, model, truth_frames)
    print(f"  the true square (frame_from_68)                {100 * errors(base, truths).mean():6.2f}")
    from_15 = on_frames(grays, model, [predict.frame_from_keypoints(t) for t in truths])
    print(f"  the square from the true 15 keypoints          {100 * errors(from_15, truths).mean():6.2f}")
    for dx, dy, scale in MOVES:
        frames = [input_data.Frame(f.cx + dx * f.side, f.cy + dy * f.side, f.side * scale) for f in truth_frames]
        points = on_frames(grays, model, frames)
        moved = (points - base).mean(axis=1) / sides[:, None]          # (n, 2), in sides
        along = dx or dy
        leak = moved[:, 0 if dx else 1].mean() / along if along else 0.0
        label = f"moved {100 * along:+.0f}% in {'x' if dx else 'y'}" if along else f"scaled x{scale:.2f}"
        print(f"  the true square {label:<31}{100 * errors(points, truths).mean():6.2f}   leak {leak:5.2f}"
              f"   spread {(spread(points) / spread(base)).mean():.3f}")
    once = on_frames(grays, model, truth_frames, refine=1)
    print(f"  one refinement from the true square            {100 * errors(once, truths).mean():6.2f}")

    found, per_face, squares = through_predict(grays, model, truths, truth_frames)
    ratio = np.array([f.side / t.side for f, t in squares])
    offset = np.array([np.hypot(f.cx - t.cx, f.cy - t.cy) / t.side for f, t in squares])
    print(f"  predict.py (found {100 * found:.2f}%)                      {100 * per_face.mean():6.2f}")
    print(f"predict.py's final square against the true one: side ratio 5/50/95th percentile "
          f"{np.percentile(ratio, 5):.3f} / {np.median(ratio):.3f} / {np.percentile(ratio, 95):.3f}; "
          f"centre off by {100 * np.median(offset):.1f}% of the side (median), "
          f"{100 * np.percentile(offset, 90):.1f}% (90th percentile)")

    if args.second:
        second = predict.load_model(args.second)
        print(f"with {args.second}:")
        for name, predictor in [("the second alone", second),
                                ("both, averaged on every crop", Average(model, second, "every")),
                                ("both on the last pass only", Average(model, second, "last")),
                                ("the second on the last pass's mirrored crop", Average(model, second, "mirror"))]:
            found, per_face, _ = through_predict(grays, predictor, truths, truth_frames)
            print(f"  {name:<46}{100 * per_face.mean():6.2f}  (found {100 * found:.2f}%)")


if __name__ == "__main__":
    cli.run(main)
