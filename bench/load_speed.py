"""How fast does input_data.load parse a Kaggle-size training.csv, against Nouri's load()?

    python bench/load_speed.py [--rows 7049] [--repeat 3] [--keep PATH]

Writes a training.csv of the real size (7,049 rows x 9,216 pixels, Kaggle's missing-keypoint
pattern) from synthetic faces, then times, in the same run and on the same file:
  - nouri: pandas read_csv + np.fromstring per row (Daniel Nouri's tutorial, 2014), and
  - ours:  input_data.load (vectorised numpy parsing of the pixel text).
Both return the complete rows as float32 X in [0, 1] and Y = (y - 48) / 48. Prints the
median of --repeat runs for each and their ratio.
"""
import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import input_data  # noqa: E402
import synthetic_faces  # noqa: E402


def nouri_load(path):
    """Nouri's load() for training.csv, as published (minus the print and sklearn shuffle)."""
    df = pd.read_csv(path)
    with warnings.catch_warnings():  # np.fromstring(sep=' ') is deprecated in numpy 2
        warnings.simplefilter("ignore", DeprecationWarning)
        df["Image"] = df["Image"].apply(lambda im: np.fromstring(im, sep=" "))
    df = df.dropna()
    X = np.vstack(df["Image"].values) / 255.0
    X = X.astype(np.float32).reshape(-1, 96, 96, 1)
    y = df[df.columns[:-1]].values
    y = ((y - 48) / 48).astype(np.float32)
    return X, y


def timed(function, path, repeat):
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = function(path)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=7049)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", default=None, help="write the CSV here and keep it")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep or Path(tmp) / "training.csv")
        started = time.perf_counter()
        images, keypoints = synthetic_faces.make_faces(args.rows, seed=0, missing="kaggle")
        input_data.write_csv(path, images, keypoints)
        print(f"wrote {path}: {args.rows} rows, {path.stat().st_size / 2**20:.0f} MB "
              f"in {time.perf_counter() - started:.1f} s")

        nouri_s, (X_n, Y_n) = timed(nouri_load, path, args.repeat)
        ours_s, (X_o, Y_o) = timed(input_data.load, path, args.repeat)
        np.testing.assert_array_equal(X_n, X_o)
        np.testing.assert_allclose(Y_n, Y_o, atol=1e-6)
        print(f"both give X {X_o.shape} float32 and Y {Y_o.shape} (the complete rows)")
        print(f"nouri load (pandas + np.fromstring per row): {nouri_s:6.2f} s  (median of {args.repeat})")
        print(f"input_data.load (vectorised numpy):          {ours_s:6.2f} s  (median of {args.repeat})")
        print(f"speed-up: {nouri_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
