"""Missing keypoints: complete rows only vs specialists (with and without pre-training) vs masked.

    python bench/missing_keypoints.py [--model v2_convnet] [--minutes 3]

Kaggle's training.csv has all 15 keypoints on only 30% of its faces. To measure what each way
of using the other 70% is worth on real faces, this takes the 2,820 real faces (all labelled),
holds out whole people for validation (kept fully labelled), and on the training faces imposes
Kaggle's real missingness: each face keeps the keypoints that a random row of Kaggle's table
(../shared/data/fkd/training_keypoints_only.csv) has. Then, with one model version and one
optimizer:
  complete rows   the faces that still have all 15 keypoints (Nouri's first nets);
  specialists     six nets, each on the faces with its group (Nouri's SPECIALIST_SETTINGS),
                  without and with pre-training from the complete-rows model;
  masked          one net on every face, missing values masked out of the loss.
Budgets are in minutes of training (each specialist gets the budget / 6 x 2); every run's
schedule spans its budget. Prints a markdown table of validation RMSE (px) and training time.
"""
import argparse
import csv
import json
from pathlib import Path

import numpy as np

from common import SHARED_DATA, WORK, model_version, open_fraction, random_seed, shared_faces_csv
import cli  # noqa: E402
import input_data
import specialists
import train
from evaluate import evaluate


def kaggle_presence(rng, n):
    """n presence masks (n, 30), each copied from a random row of Kaggle's real table."""
    table = np.genfromtxt(SHARED_DATA / "fkd" / "training_keypoints_only.csv", delimiter=",", skip_header=1)
    return ~np.isnan(table[rng.integers(0, len(table), n)])


def masked_copy(data, work, validation, seed):
    """The faces with Kaggle's missingness imposed on the training people only."""
    images, keypoints = input_data.read_keypoints(data)
    with open(input_data.sources_path(data), newline="") as f:
        sources = list(csv.DictReader(f))
    people = np.array([row["person"] for row in sources])
    train_idx, val_idx = train.split_validation(len(images), validation, seed, people)
    present = kaggle_presence(np.random.default_rng(seed), len(train_idx))
    keypoints = keypoints.copy()
    keypoints[train_idx] = np.where(present, keypoints[train_idx], np.nan)
    out = work / "faces-kaggle-missing.csv"

    def write_sources(path):
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(sources[0]))
            writer.writeheader()
            writer.writerows(sources)
    # both or neither: a CSV without its sources file would be split by rows, not by person
    cli.write_all_atomically([(out, lambda tmp: input_data.write_csv(tmp, images, keypoints)),
                              (input_data.sources_path(out), write_sources)])
    complete = ~np.isnan(keypoints[train_idx]).any(axis=1)
    print(f"{len(train_idx)} training faces ({complete.sum()} complete, "
          f"{(~np.isnan(keypoints[train_idx])).sum() / keypoints[train_idx].size:.0%} of values present), "
          f"{len(val_idx)} validation faces of other people, all labelled")
    return out, val_idx


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="v2_convnet", help="a model version (default v2_convnet)")
    parser.add_argument("--minutes", type=cli.positive_float, default=3.0, help="budget of a single net")
    parser.add_argument("--validation", type=open_fraction, default=0.2,
                        help="fraction of people held out (more than 0 and below 1)")
    parser.add_argument("--seed", type=random_seed, default=0, help="the split and the missingness (default 0)")
    parser.add_argument("--work", type=Path, default=WORK)
    args = parser.parse_args(argv)
    args.model = model_version(args.model)          # before any work: nothing is written for a bad option
    cli.writable_folder(args.work, "--work")
    data, val_idx = masked_copy(shared_faces_csv(args.work), args.work, args.validation, args.seed)
    X_all, Y_all, _ = train.load_arrays(shared_faces_csv(args.work), all_rows=True)
    X_val, Y_val = X_all[val_idx], Y_all[val_idx]      # the true, complete labels
    common = dict(model=args.model, data=str(data), validation=args.validation, seed=args.seed,
                  root=str(args.work), optimizer="adam", learning_rate=1e-3, final_learning_rate=1e-5,
                  schedule="cosine", augment="flip", verbose=0, patience=10_000, overwrite=True)
    budget = args.minutes * 60
    rows = []

    def measure(name, predictor, seconds, note=""):
        rmse, _, _ = evaluate(predictor, X_val, Y_val)
        rows.append((name, rmse, seconds, note))
        print(f"{name}: {rmse:.3f} px, {seconds:.0f} s {note}", flush=True)

    # 1. Complete rows only; this is also the general model that pre-trains the specialists.
    # --time-limit: the engine fits the epochs and the schedule to the budget.
    complete = train.train(**common, time_limit=budget, run_id="missing-complete", all_rows=False,
                           model_dir=str(args.work / "models" / "missing-complete"))
    measure("complete rows only", complete.model, complete.seconds, f"({complete.n_train} faces)")

    # 2-3. Specialists, without and with pre-training; each gets a sixth of two budgets,
    # so the six together train twice as long as one net.
    for pretrained in (None, complete.model_path):
        name = "with" if pretrained else "without"
        folder = specialists.train_specialists(
            str(data), pretrained=None if pretrained is None else str(pretrained), model=args.model,
            run=f"missing-{name}", root=str(args.work),
            epochs=lambda cols: None, time_limit=2 * budget / 6,     # the budget decides the epochs
            **{k: v for k, v in common.items() if k not in ("model", "data", "root")})
        manifest = json.loads((folder / "specialists.json").read_text())
        seconds = sum(s["seconds"] for s in manifest["specialists"])
        note = "" if pretrained is None else f"(+ {complete.seconds / 60:.1f} min for the pre-trained model)"
        measure(f"specialists {name} pre-training", specialists.load(folder), seconds, note)

    # 4. One masked model on every face.
    masked = train.train(**common, time_limit=budget, run_id="missing-masked", all_rows=True,
                         model_dir=str(args.work / "models" / "missing-masked"))
    measure("masked loss, all rows", masked.model, masked.seconds, f"({masked.n_train} faces)")

    print(f"\n{args.model}, Adam + cosine schedule, flip augmentation, {args.minutes:g} min per net "
          f"(specialists {2 * args.minutes / 6:g} min each); validation: {len(X_val)} faces of other people\n")
    print("| training data | valid RMSE px | training time |")
    print("|---|---:|---:|")
    for name, rmse, seconds, note in rows:
        print(f"| {name} | {rmse:.2f} | {seconds / 60:.1f} min {note} |")


if __name__ == "__main__":
    cli.run(main)
