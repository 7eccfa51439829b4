"""What the benchmarks share: the real faces beside the repository, converted once, budgets, and
the checks of their options (before any work: a bad one ends in one `error:` line, exit 2)."""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import cli  # noqa: E402
import input_data  # noqa: E402
import train  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORK = Path("/tmp/fkd-bench")   # converted faces and runs: outside the repository, never committed


def model_version(name, option="--model"):
    """The full name of a model version ('v2' -> 'v2_convnet') by the models module's own lookup;
    an unknown one is a cli.UsageError naming `option` and the versions there are."""
    import models
    try:
        return models.resolve(name)
    except models.UnknownModelError as error:
        raise cli.UsageError(f"{option}: {error}") from None


def model_versions(text, option="--models"):
    """A comma list of versions, each checked as model_version."""
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    if not names:
        raise cli.UsageError(f"{option}: got {text!r}; expected a comma list of model versions")
    return [model_version(name, option) for name in names]


def open_fraction(text):
    """argparse type: a fraction above 0 and below 1 (a validation share that leaves faces on
    both sides)."""
    value = cli.positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0 and below 1")
    return value


def random_seed(text):
    """argparse type: a random seed, 0 to 2**32 - 1 (what NumPy's generators take)."""
    value = cli.non_negative_int(text)
    if value >= 2 ** 32:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 0 to {2 ** 32 - 1}")
    return value


def shared_faces_csv(work=WORK, faces=SHARED_DATA / "cvnd_youtube_faces"):
    """The 2,820 real faces in the Kaggle frame (+ .sources.csv for the person split): converted
    into `work` once, then read from there."""
    out = Path(work) / "faces.csv"
    if out.exists():
        sources = input_data.sources_path(out)
        if not sources.is_file():
            raise cli.InputError(f"{sources}: missing beside {out} (the person of each face, for the split "
                                 f"by person); delete {out} to convert the faces again, or use another --work")
        return out
    if not faces.is_dir():
        raise cli.InputError(f"{faces}: not found (the real faces live beside the repository)")
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
