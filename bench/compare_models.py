"""Every model version on the same real faces, the same person split and the same time budget.

    python bench/compare_models.py [--minutes 4] [--models v1_single_layer,v2_convnet,...]

Converts the 2,820 real faces of ../shared/data/cvnd_youtube_faces into the Kaggle frame (in a
work folder outside the repository: those faces must never be committed), then trains each
version with its own default settings and train.py's --time-limit: the engine times the first
epochs and fits the number of epochs and the learning-rate (and momentum) schedule to the
budget, so that the schedule runs its whole course (early stopping may end it sooner); the
validation people are held out (no person on both sides). Each row is one train.py command,
printed under the table, that reproduces it (`python evaluate.py --run RUN --root WORK`
re-scores its validation faces).
Prints Nouri's net1...net7 table for our data, as markdown:
  train RMSE is the engine's running figure over the last epoch (augmentation and dropout on,
  as Nouri's "train loss"), valid RMSE is the best epoch's (or the weight average's, for a
  version trained with `ema`), and beside it the mean of the last ten epochs (the level: one
  epoch's figure swings by ~0.05-0.1 px, so a best epoch is partly luck); all in pixels of
  the 96-px frame.
"""
import argparse
from pathlib import Path

import numpy as np

from common import WORK, model_versions, open_fraction, print_table, shared_faces_csv, table_row
import cli  # noqa: E402
import models
import train


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=WORK,
                        help="folder for the converted faces and runs (outside the repository)")
    parser.add_argument("--minutes", type=cli.positive_float, default=4.0, help="training budget per version")
    parser.add_argument("--models", default=",".join(models.names()), help="comma list of versions to train")
    parser.add_argument("--validation", type=open_fraction, default=0.2,
                        help="fraction of people held out (more than 0 and below 1)")
    args = parser.parse_args(argv)
    versions = model_versions(args.models)          # before any work: an unknown one names --models
    cli.writable_folder(args.work, "--work")
    data = shared_faces_csv(args.work)

    X, Y, people = train.load_arrays(data)
    train_idx, val_idx = train.split_validation(len(X), args.validation, 0, people)
    mean_shape = float(train.rmse_px(Y[val_idx], np.tile(Y[train_idx].mean(axis=0), (len(val_idx), 1))))
    print(f"{len(train_idx)} training faces, {len(val_idx)} validation faces of "
          f"{len(set(people[val_idx]))} other people; mean shape: {mean_shape:.2f} px\n")

    rows, commands = [], []
    for version in versions:
        name, module = version, models.load(version)
        settings = dict(model=version, data=str(data), validation=args.validation, root=str(args.work),
                        time_limit=args.minutes * 60, run_id=f"compare-{version}", overwrite=True,
                        save_model=False)
        run = train.train(verbose=0, **settings)
        rows.append(table_row(run, module))
        commands.append(command_line(settings))
        print(f"{name}: valid {run.val_rmse_px:.3f} px, ends on the {run.ended_on}", flush=True)

    print(f"\nbudget {args.minutes:g} min per version; mean-shape baseline {mean_shape:.2f} px\n")
    print_table(rows)
    print("\nEach row, reproduced by one command (then `python evaluate.py --run compare-VERSION "
          f"--root {args.work}`):")
    for line in commands:
        print(f"    {line}")


def command_line(settings):
    """The train.py command that makes the same run as train.train(**settings)."""
    words = ["python", "train.py"]
    for key, value in settings.items():
        if value is True:
            words.append(train.flag(key))
        elif key == "save_model":
            words.append("--no-save") if not value else None
        elif value is not None and value is not False:
            words += [train.flag(key), f"{value:g}" if isinstance(value, float) else str(value)]
    return " ".join(words)


if __name__ == "__main__":
    cli.run(main)
