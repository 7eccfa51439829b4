"""How fast predict.py is end to end on real photos: photos/s and ms per photo.

    python bench/predict_speed.py --model PATH [--faces ../shared/data/cvnd_youtube_faces] [--photos 573]

The photos: the held-out people's frames of cvnd_youtube_faces (72-494 px JPEGs, as
bench/predict_accuracy.py), read from disk each time. A photo's time is split into
  read     predict.read_photo (decode, EXIF, grayscale),
  detect   predict.detect_boxes + box_to_frame (Haar cascade on the shrunk copy, fallbacks),
  network  crops + network (+ the refinement pass), batched across photos (--batch photos
           per call, as predict.py's folder run does), divided by the number of photos,
  total    the wall time of the whole loop divided by the number of photos.
Printed for predict.py's defaults and for the other refine / flip settings. One warm-up
batch runs first (graph tracing). The machine is shared: run it on a quiet machine.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402

import calibrate_detector  # noqa: E402
import predict  # noqa: E402


def timed_run(paths, model, batch, refine, flip_tta):
    """(seconds read, detect, network, total, faces) for predicting every photo once."""
    read = detect = network = 0.0
    faces = 0
    started = time.perf_counter()
    for first in range(0, len(paths), batch):
        grays, frames, boxes = [], [], []
        for path in paths[first:first + batch]:
            t0 = time.perf_counter()
            gray = predict.read_photo(path)
            t1 = time.perf_counter()
            found = predict.detect_boxes(gray)
            frames.append([predict.box_to_frame(b) for b in found])
            boxes.append(found)
            grays.append(gray)
            t2 = time.perf_counter()
            read += t1 - t0
            detect += t2 - t1
        t0 = time.perf_counter()
        results = predict.predict_batch(grays, model, frames, boxes, refine=refine, flip_tta=flip_tta)
        network += time.perf_counter() - t0
        faces += sum(map(len, results))
    return read, detect, network, time.perf_counter() - started, faces


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="a .keras model (default: the shipped one)")
    parser.add_argument("--faces", default=str(calibrate_detector.DEFAULT_FACES))
    parser.add_argument("--photos", type=int, default=573, help="how many held-out photos")
    parser.add_argument("--batch", type=int, default=32, help="photos per network call")
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting; the fastest counts")
    args = parser.parse_args(argv)

    files, people, _ = calibrate_detector.load_labelled(args.faces)
    _, val_idx = calibrate_detector.person_split(people)
    paths = [Path(args.faces) / "training" / files[i] for i in val_idx[:args.photos]]
    sizes = np.array([predict.read_photo(p).shape for p in paths])
    model = predict.load_model(args.model)
    print(f"{len(paths)} photos, {sizes.min()}-{sizes.max()} px (median {int(np.median(sizes.max(axis=1)))} "
          f"px longest side), network batches of {args.batch} photos, model {args.model or 'shipped'}")
    timed_run(paths[:args.batch], model, args.batch, True, True)          # warm-up: tracing
    settings = [(predict.REFINE, predict.FLIP_TTA)] + [
        (r, f) for r in (False, True) for f in (False, True) if (r, f) != (predict.REFINE, predict.FLIP_TTA)]
    print(f"{'refine':>7}{'flip':>6}{'photos/s':>10}{'read ms':>9}{'detect ms':>11}{'network ms':>12}"
          f"{'total ms':>10}{'faces':>7}")
    for refine, flip in settings:
        best = min((timed_run(paths, model, args.batch, refine, flip) for _ in range(args.repeats)),
                   key=lambda r: r[3])
        read, detect, network, total, faces = best
        n = len(paths)
        print(f"{'yes' if refine else 'no':>7}{'yes' if flip else 'no':>6}{n / total:10.1f}"
              f"{1000 * read / n:9.2f}{1000 * detect / n:11.2f}{1000 * network / n:12.2f}"
              f"{1000 * total / n:10.2f}{faces:7d}"
              + ("   <- predict.py's defaults" if (refine, flip) == (predict.REFINE, predict.FLIP_TTA) else ""))


if __name__ == "__main__":
    main()
