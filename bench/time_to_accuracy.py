"""Validation RMSE against wall-clock training time, for a model version's default recipe.

    python bench/time_to_accuracy.py [--model v6] [--minutes 15] [--target 1.6]

Trains the version with its own SETTINGS on the real faces of ../shared/data/cvnd_youtube_faces
(converted into the Kaggle frame in a work folder outside the repository), with the validation
people held out (no person on both sides), and prints, epoch by epoch, the cumulative training
seconds (checkpointing and validation included, the first epoch's tracing too) against the
validation RMSE (the epochs and the schedule fitted to --minutes by train.py's --time-limit,
unless --option epochs=N caps them), then when a single epoch first reached the target, the mean of the last ten
epochs (the level: one epoch's figure swings by ~0.1 px), the saved model's RMSE (the best
epoch, or the weight average with `ema`) with and without flip test-time augmentation, and
the version's row of compare_models.py's table. The model (trained on the training people
only) is kept in <work>/models/<version>-split/, for benchmarks that must not see the
validation people.
"""
import argparse
import time
from pathlib import Path

from common import WORK, model_version, open_fraction, print_table, shared_faces_csv, table_row
import cli  # noqa: E402
import evaluate
import models
import train


# What this script sets itself, and the option that sets it: --option cannot.
OWN_SETTINGS = {"model": "--model", "data": "--work (the converted real faces)", "validation": "--validation",
                "root": "--work", "run_id": "this script (tta-VERSION)", "overwrite": "this script",
                "verbose": "this script", "time_limit": "--minutes", "model_dir": "--work"}


def check_options(options, settings):
    """The --option KEY=VALUE settings as a dict, checked with the engine's own checks before any
    work; a key this script sets itself, an unknown key or a bad value is a cli.UsageError."""
    overrides = {}
    for text in options:
        key, value = train._parse_option(text)
        if key in OWN_SETTINGS:
            raise cli.UsageError(f"--option {text}: {key} is set by {OWN_SETTINGS[key]}, not by --option")
        overrides[key] = value
    try:
        train.validate_settings(train.resolve_settings(**settings, **overrides))
    except cli.UsageError as error:
        raise cli.UsageError(f"--option: {error}") from None
    return overrides


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="v6")
    parser.add_argument("--minutes", type=cli.positive_float, default=15.0, help="stop training after this budget")
    parser.add_argument("--target", type=cli.positive_float, default=1.6, help="validation RMSE to reach, px")
    parser.add_argument("--validation", type=open_fraction, default=0.2,
                        help="fraction of people held out (more than 0 and below 1)")
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a training setting to override, e.g. --option epochs=40")
    args = parser.parse_args(argv)
    version = model_version(args.model)
    settings = dict(model=version, validation=args.validation, root=str(args.work), run_id=f"tta-{version}",
                    overwrite=True, verbose=0, time_limit=args.minutes * 60,
                    model_dir=str(args.work / "models" / f"{version}-split"))
    overrides = check_options(args.option, settings)
    cli.writable_folder(args.work, "--work")
    data = shared_faces_csv(args.work)

    started = time.perf_counter()
    run = train.train(data=str(data), **settings, **overrides)
    wall = time.perf_counter() - started

    print(f"\n{version}: {run.n_train} training faces, {run.n_val} validation faces of other people")
    print(f"{'epoch':>5} {'minutes':>8} {'train px':>9} {'valid px':>9}")
    reached = None
    elapsed = run.history["seconds"].cumsum()
    for (_, row), seconds in zip(run.history.iterrows(), elapsed):
        print(f"{int(row['epoch']) + 1:>5} {seconds / 60:>8.2f} {row['rmse_px']:>9.3f} {row['val_rmse_px']:>9.3f}")
        if reached is None and row["val_rmse_px"] <= args.target:   # (a single epoch's figure)
            reached = (int(row["epoch"]) + 1, seconds)
    tta = evaluate.evaluate(run.model, run.X_val, run.Y_val, flip_tta=True)[0]
    # The validation RMSE swings by ~0.1 px from epoch to epoch, so the best epoch is partly
    # luck, picked on the validation faces themselves; the mean of the last ten is the level.
    last = run.history["val_rmse_px"].tail(10)
    print(f"\nmean validation RMSE of the last {len(last)} epochs {last.mean():.3f} px "
          f"(min {last.min():.3f}, max {last.max():.3f})")
    print(f"the run ends on the {run.ended_on} (the model it saves): {run.val_rmse_px:.3f} px; "
          f"with flip TTA {tta:.3f} px")
    if reached:
        print(f"target {args.target} px first reached at epoch {reached[0]}, "
              f"after {reached[1] / 60:.1f} min of training")
    else:
        print(f"target {args.target} px not reached (plain); training took {elapsed.iloc[-1] / 60:.1f} min")
    print(f"wall time including data loading: {wall / 60:.1f} min; model: {run.model_path}\n")
    print("Its row of compare_models.py's table (same data, split and columns):")
    print_table([table_row(run, models.load(version))])


if __name__ == "__main__":
    cli.run(main)
