"""How fast does input_data.load parse a Kaggle-size training.csv, against Nouri's load()?

    python bench/load_speed.py [--rows 7049] [--repeat 3] [--keep PATH]
    python bench/load_speed.py --csv data/training.csv      # Kaggle's own file instead

Writes a training.csv of the real size (7,049 rows x 9,216 pixels, Kaggle's missing-keypoint
pattern) from synthetic faces, then times, in the same run and on the same file:
  - nouri: pandas read_csv + np.fromstring per row (Daniel Nouri's tutorial, 2014), and
  - ours:  input_data.load (vectorised numpy parsing of the pixel text).
Both return the complete rows as float32 X in [0, 1] and Y = (y - 48) / 48. Prints the
median wall time of --repeat runs for each, the process CPU time beside it, their ratio, and
the machine's load average: the ratio depends on it (docs/experiments.md, "Load speed").
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import cli  # noqa: E402
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
    """(median wall seconds, median CPU seconds of this process, the last result)."""
    wall, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = function(path)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall), statistics.median(cpu), result


def load_average():
    """The 1-minute load average and the number of CPUs, e.g. 'load average 0.4 on 2 CPUs'."""
    try:
        return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    except OSError:                  # not available on this platform
        return f"{os.cpu_count()} CPUs"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=cli.positive_int, default=7049, help="rows of the CSV (Kaggle's: 7049)")
    parser.add_argument("--repeat", type=cli.positive_int, default=3, help="timed runs of each loader; the median counts")
    parser.add_argument("--keep", default=None, help="write the CSV here and keep it (default: a temporary file)")
    parser.add_argument("--csv", default=None, help="time on this Kaggle-format training CSV instead of writing one")
    args = parser.parse_args(argv)
    if args.csv and not Path(args.csv).is_file():
        raise cli.InputError(f"--csv {args.csv}: no such file")

    with tempfile.TemporaryDirectory() as tmp:
        if args.csv:
            path = Path(args.csv)
            print(f"{path}: {path.stat().st_size / 2**20:.0f} MB")
        else:
            path = Path(args.keep or Path(tmp) / "training.csv")
            started = time.perf_counter()
            images, keypoints = synthetic_faces.make_faces(args.rows, seed=0, missing="kaggle")
            input_data.write_csv(path, images, keypoints)
            print(f"wrote {path}: {args.rows} rows, {path.stat().st_size / 2**20:.0f} MB "
                  f"in {time.perf_counter() - started:.1f} s")

        before = load_average()
        nouri_s, nouri_cpu, (X_n, Y_n) = timed(nouri_load, path, args.repeat)
        ours_s, ours_cpu, (X_o, Y_o) = timed(input_data.load, path, args.repeat)
        np.testing.assert_array_equal(X_n, X_o)
        np.testing.assert_allclose(Y_n, Y_o, atol=1e-6)
        print(f"both give X {X_o.shape} float32 and Y {Y_o.shape} (the complete rows)")
        print(f"nouri load (pandas + np.fromstring per row): {nouri_s:6.2f} s  "
              f"(CPU {nouri_cpu:.2f} s; median of {args.repeat})")
        print(f"input_data.load (vectorised numpy):          {ours_s:6.2f} s  "
              f"(CPU {ours_cpu:.2f} s; median of {args.repeat})")
        print(f"speed-up: {nouri_s / ours_s:.1f}x  ({before} before, {load_average()} after; "
              f"pandas {pd.__version__}, numpy {np.__version__})")


if __name__ == "__main__":
    cli.run(main)
