"""Does augmentation stall training? Pipeline and training throughput with and without it.

    python bench/augment_speed.py [--images 2140] [--batch 128] [--batches 60] [--repeat 3]

From --images synthetic faces (Kaggle's 2,140 complete rows by default), in one run:
  1. the input pipeline alone (augment.pipeline, repeat=True): images/s over --batches
     batches with augment "none" and "all";
  2. model.fit of a Nouri net2-sized convnet (conv 32@3x3, pool, conv 64@2x2, pool,
     conv 128@2x2, pool, dense 500, dense 500, 30 outputs; 'valid' convolutions, ReLU,
     SGD with Nesterov momentum as in his tutorial) for one epoch on
     (a) the pipeline without augmentation and (b) with "all".
Training epochs alternate (a), (b), (a), (b), ... after one untimed warm-up epoch each, and
the median and the best of --repeat timed epochs are printed (the best is the epoch least
disturbed by other work on the machine). Augmentation runs in tf.data's threads beside the
training step; if it keeps up, (b) is within ~10% of (a).
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import keras  # noqa: E402
import numpy as np  # noqa: E402

import augment  # noqa: E402
import cli  # noqa: E402
import input_data  # noqa: E402
import models  # noqa: E402
import synthetic_faces  # noqa: E402


def net2():
    """Nouri's net2 as the course ships it (models/v2_convnet.py), compiled plainly."""
    model = models.load("v2_convnet").network()
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True), loss="mse")
    return model


def pipeline_speed(X, Y, batch, batches, spec):
    """Images/s of the pipeline alone, after 5 warm-up batches (tracing, filling buffers)."""
    iterator = iter(augment.pipeline(X, Y, batch, augment=spec, seed=0, repeat=True))
    for _ in range(5):
        next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        x, _ = next(iterator)
    _ = x.numpy()
    return batches * batch / (time.perf_counter() - started)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=cli.positive_int, default=2140, help="synthetic faces (default 2140)")
    parser.add_argument("--batch", type=cli.positive_int, default=128, help="faces per batch (default 128)")
    parser.add_argument("--batches", type=cli.positive_int, default=60, help="batches timed for the pipeline alone")
    parser.add_argument("--repeat", type=cli.positive_int, default=3, help="timed training epochs of each kind")
    args = parser.parse_args(argv)
    if args.images > 100_000:       # make_faces holds them all in memory (9 KB each, and float copies)
        raise cli.UsageError(f"--images: got {args.images}; at most 100000 synthetic faces")

    started = time.perf_counter()
    images, keypoints = synthetic_faces.make_faces(args.images, seed=0)
    X, Y = input_data.images_to_unit(images), input_data.keypoints_to_unit(keypoints)
    print(f"{args.images} synthetic faces in {time.perf_counter() - started:.1f} s; "
          f"batches of {args.batch}; {os.cpu_count()} CPU cores")

    print("\ninput pipeline alone:")
    for spec in ("none", "all"):
        speed = pipeline_speed(X, Y, args.batch, args.batches, spec)
        print(f"  augment {spec!r:7} {speed:9,.0f} images/s  ({args.batches} batches)")

    print(f"\nnet2-sized convnet, model.fit for one epoch of {args.images} images "
          f"({args.repeat} epochs of each, after a warm-up epoch):")
    model = net2()
    datasets = {spec: augment.pipeline(X, Y, args.batch, augment=spec, seed=0) for spec in ("none", "all")}
    seconds = {spec: [] for spec in datasets}
    for round_ in range(args.repeat + 1):
        for spec, dataset in datasets.items():
            started = time.perf_counter()
            model.fit(dataset, epochs=1, verbose=0, shuffle=False)   # the pipeline shuffles
            if round_ > 0:                       # round 0 traces and warms up
                seconds[spec].append(time.perf_counter() - started)
    # The best epoch is the one least disturbed by other work on the machine; the median
    # shows how much that disturbance was.
    median = {spec: args.images / statistics.median(s) for spec, s in seconds.items()}
    best = {spec: args.images / min(s) for spec, s in seconds.items()}
    labels = {"none": "(a) no augmentation", "all": "(b) augment 'all'  "}
    for spec in datasets:
        print(f"  {labels[spec]} {median[spec]:6,.0f} images/s median, {best[spec]:6,.0f} best  "
              f"(epochs {', '.join(f'{s:.2f}' for s in seconds[spec])} s)")
    print(f"  (b) / (a) = {median['all'] / median['none']:.2f} (medians), "
          f"{best['all'] / best['none']:.2f} (best epochs)")


if __name__ == "__main__":
    cli.run(main)
