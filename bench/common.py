"""What the benchmarks share: the real faces beside the repository, converted once, and budgets."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import cli  # noqa: E402
import input_data  # noqa: E402
import train  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORK = Path("/tmp/fkd-bench")   # converted faces and runs: outside the repository, never committed


def shared_faces_csv(work=WORK, faces=SHARED_DATA / "cvnd_youtube_faces"):
    """The 2,820 real faces in the Kaggle frame (+ .sources.csv for the person split)."""
    if not faces.is_dir():
        raise cli.InputError(f"{faces}: not found (the real faces live beside the repository)")
    out = Path(work) / "faces.csv"
    if not out.exists():
        Path(work).mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        written, skipped = input_data.convert_68(faces / "training_frames_keypoints.csv",
                                                 faces / "training", out, progress=False)
        print(f"converted {written} faces ({len(skipped)} skipped) in {time.perf_counter() - started:.1f} s")
    return out


def describe(module):
    """The one-line description in a model module's docstring ('v2_convnet: <this>')."""
    return (module.__doc__ or "").strip().split("\n")[0].split(": ", 1)[-1]


def table_row(run, module):
    """One row of Nouri's table for a finished run (see compare_models.py for the columns)."""
    level = run.history["val_rmse_px"].tail(10).mean()
    return (run.settings["model"], describe(module), run.model.count_params(), run.epochs_run,
            run.best_epoch, float(run.history["rmse_px"].iloc[-1]), run.val_rmse_px, float(level),
            float(run.history["seconds"].median()))


def print_table(rows):
    # "valid RMSE" is what the run ends with (its best epoch, or its weight average with ema);
    # one epoch's figure swings by ~0.05-0.1 px, so the mean of the last ten is the level.
    print("| version | what | parameters | epochs (best) | train RMSE px | valid RMSE px | valid, last 10 epochs | s/epoch |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for version, what, params, epochs, best, train_rmse, val_rmse, level, per_epoch in rows:
        print(f"| {version} | {what} | {params:,} | {epochs} ({best}) | {train_rmse:.2f} | "
              f"{val_rmse:.2f} | {level:.2f} | {per_epoch:.1f} |")
