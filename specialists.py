"""Specialists: six small nets, each for one group of keypoints (Nouri's SPECIALIST_SETTINGS).

Kaggle's training.csv has all 15 keypoints on only 2,140 of its 7,049 faces, but the eye
centres, nose tip and bottom lip on nearly all of them. A specialist trains on every face that
has *its* keypoints, so the eye-centre net sees 7,000 faces instead of 2,140. Each starts from
a general model's weights for every layer but the output (supervised pre-training), and gets
more epochs the fewer faces it has.

    python specialists.py train --data data/training.csv --pretrained models/v3_convnet_dropout/model.keras
    python evaluate.py --specialists models/specialists/<run> --data faces.csv
    python write_submission.py --specialists models/specialists/<run>

    import specialists
    combined = specialists.load("models/specialists/<run>")
    Y = combined.predict(X)          # (N, 30), like a Keras model
"""
import argparse
import json
import shutil
import time
from datetime import datetime
from pathlib import Path

import numpy as np

import cli
import input_data


def _xy(*names):
    return tuple(f"{name}_{axis}" for name in names for axis in "xy")


# The six groups of Nouri's tutorial. Their left/right swap pairs for mirroring follow from
# the names (input_data.flip_indices(columns)).
SPECIALIST_SETTINGS = [
    dict(name="eye_centers", columns=_xy("left_eye_center", "right_eye_center")),
    dict(name="nose_tip", columns=_xy("nose_tip")),
    dict(name="mouth_corners_top_lip", columns=_xy("mouth_left_corner", "mouth_right_corner",
                                                    "mouth_center_top_lip")),
    dict(name="bottom_lip", columns=_xy("mouth_center_bottom_lip")),
    dict(name="eye_corners", columns=_xy("left_eye_inner_corner", "right_eye_inner_corner",
                                         "left_eye_outer_corner", "right_eye_outer_corner")),
    dict(name="eyebrows", columns=_xy("left_eyebrow_inner_end", "right_eyebrow_inner_end",
                                      "left_eyebrow_outer_end", "right_eyebrow_outer_end")),
]

# Nouri gave each specialist max_epochs = 1e7 / rows: the same number of images seen, so a
# group with fewer faces gets more passes over them. We scale the same way, from a budget of
# images per specialist, within these bounds.
IMAGES_PER_SPECIALIST = 200_000
MIN_EPOCHS, MAX_EPOCHS = 5, 1000


def epochs_for(rows, images=IMAGES_PER_SPECIALIST):
    return int(np.clip(round(images / max(rows, 1)), MIN_EPOCHS, MAX_EPOCHS))


def train_specialists(data=None, pretrained=None, model=None, run=None, root=".",
                      images=IMAGES_PER_SPECIALIST, epochs=None, groups=None, overwrite=False, **settings):
    """Train the six specialists; returns the folder models/specialists/<run>/.

    pretrained: a general model.keras (all 30 outputs) whose weights start every specialist,
    all but the output layer; model: the version to build (default: the pretrained model's).
    epochs: None scales them by the faces each specialist has (images / faces); an int is the
    same for all; a function (columns) -> int decides per group. groups: names to train (the
    others are left out of the folder). overwrite: replace an earlier run of the same name (its
    folder and its specialists' runs/). Extra settings go to train.train (validation,
    batch_size, patience, time_limit...).
    """
    import train
    if model is None:
        if pretrained is None:
            raise cli.UsageError("--model: give a model version, or --pretrained, a model.keras to copy it from")
        try:
            model = train.load_model(pretrained).name
        except (ValueError, OSError) as error:
            raise cli.InputError(f"--pretrained {pretrained}: not a Keras model file ({cli.one_line(error)[:200]})") from None
    run = train.check_run_id(run or f"{model}-{datetime.now():%m%d-%H%M%S}", "--run")
    out = Path(root) / "models" / "specialists" / run
    chosen = [group for group in SPECIALIST_SETTINGS if not groups or group["name"] in groups]
    # The options, an earlier run and the data are checked before anything is written: a run that
    # fails on them leaves no empty folder behind, and one that would replace a run says so.
    train.validate_settings(train.resolve_settings_and_sources(
        **{**settings, "model": model, "data": data, "root": root, "init_from": pretrained})[0])
    earlier = [folder for folder in [out, *(Path(root) / "runs" / f"specialists-{run}-{group['name']}"
                                            for group in chosen)]
               if folder.exists() and (not folder.is_dir() or any(folder.iterdir()))]
    if earlier and not overwrite:
        raise cli.UsageError(f"{earlier[0]} holds an earlier run of specialists {run}: pass --overwrite "
                             "to replace it, or pick another --run")
    for option, path in (("--data", data), ("--pretrained", pretrained)):
        if overwrite and path is not None and Path(path).resolve().is_relative_to(out.resolve()):
            raise cli.UsageError(f"{option} {path}: is inside {out}, which --overwrite replaces; "
                                 "copy it elsewhere first")
    faces = {group["name"]: len(train.load_arrays(data, root=root, cols=list(group["columns"]))[1])
             for group in chosen}                                  # the faces that have its keypoints
    if out.exists():
        shutil.rmtree(out)              # --overwrite: a stale specialist must not stay beside new ones
    manifest = dict(run=run, model=model, pretrained=None if pretrained is None else str(pretrained),
                    data=None if data is None else str(data), specialists=[])
    started = time.perf_counter()
    for group in chosen:
        columns, n_faces = list(group["columns"]), faces[group["name"]]
        n_epochs = (epochs_for(n_faces, images) if epochs is None else
                    epochs(columns) if callable(epochs) else int(epochs))
        print(f"specialist {group['name']}: {n_faces} faces with {', '.join(columns)}; "
              + (f"up to {n_epochs} epochs" if n_epochs else "epochs fitted to the time limit"))
        result = train.train(**{**settings, "model": model, "data": data, "root": root, "cols": columns,
                                "epochs": n_epochs, "init_from": pretrained, "overwrite": overwrite,
                                "run_id": f"specialists-{run}-{group['name']}",
                                "model_dir": str(out / group["name"])})
        manifest["specialists"].append(dict(
            name=group["name"], columns=columns, path=f"{group['name']}/model.keras", faces=n_faces,
            epochs=result.epochs_run, best_epoch=result.best_epoch, val_rmse_px=result.val_rmse_px,
            seconds=round(result.seconds, 1)))
        _write_manifest(manifest, out)
    manifest["seconds"] = round(time.perf_counter() - started, 1)
    _write_manifest(manifest, out)
    return out


def _write_manifest(manifest, out):
    out.mkdir(parents=True, exist_ok=True)
    cli.write_atomically(out / "specialists.json", lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))


class Specialists:
    """The six specialists as one predictor of all 30 values, used like a Keras model."""

    def __init__(self, folder):
        import train
        self.folder = Path(folder)
        manifest_path = self.folder / "specialists.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{manifest_path} not found: not a specialists folder")
        self.manifest = cli.read_json_object(manifest_path)
        entries = cli.json_field(self.manifest, "specialists", lambda v: isinstance(v, list) and v,
                                 "a non-empty list of the trained specialists", manifest_path)
        for i, entry in enumerate(entries):
            if not (isinstance(entry, dict) and _in_folder(entry.get("path"))
                    and isinstance(entry.get("columns"), list) and entry["columns"]
                    and all(c in input_data.COLUMNS for c in entry["columns"])):
                raise cli.InputError(f"{manifest_path}: specialists[{i}] is {cli.one_line(repr(entry))[:80]}; "
                                     "expected 'path' (a model.keras in the folder) and 'columns' "
                                     "(keypoint columns of input_data.COLUMNS)")
        self.parts = [(train.load_model(self.folder / entry["path"]),
                       [input_data.COLUMNS.index(c) for c in entry["columns"]])
                      for entry in entries]
        # What evaluate.py scores: the other columns stay NaN (a folder trained with --only).
        self.predicted_columns = sorted({c for _, columns in self.parts for c in columns})
        self.name = f"specialists/{self.manifest.get('run', self.folder.name)}"

    def predict(self, X, batch_size=256, verbose=0):
        """(N, 30) unit coordinates; a column no specialist covers stays NaN."""
        out = np.full((len(X), len(input_data.COLUMNS)), np.nan, np.float32)
        for model, columns in self.parts:
            out[:, columns] = model.predict(X, batch_size=batch_size, verbose=verbose)
        return out

    def predict_with_flip(self, X, batch_size=256):
        """Flip test-time augmentation, each specialist with its own columns and the mirror
        axis it was trained with (its model.json: the axis is measured on its own columns)."""
        import augment
        out = np.full((len(X), len(input_data.COLUMNS)), np.nan, np.float32)
        for model, columns in self.parts:
            out[:, columns] = augment.predict_with_flip(model, X, batch_size=batch_size,
                                                        cols=[input_data.COLUMNS[c] for c in columns])
        return out


def _in_folder(path):
    """A relative path that stays inside the specialists folder."""
    return isinstance(path, str) and bool(path) and not Path(path).is_absolute() and ".." not in Path(path).parts


def load(folder):
    return Specialists(folder)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train Nouri's six keypoint specialists.")
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("train", help="train the six specialists")
    fit.add_argument("--data", default=None, help="Kaggle-format CSV (default: Kaggle's data/)")
    fit.add_argument("--pretrained", default=None, help="a general model.keras to start from")
    fit.add_argument("--model", default=None, help="version to build (default: the pretrained one's)")
    fit.add_argument("--run", default=None, help="name of models/specialists/<run>/ (a plain name)")
    fit.add_argument("--images", type=cli.positive_int, default=IMAGES_PER_SPECIALIST,
                     help="images seen per specialist; epochs = images / its faces")
    fit.add_argument("--epochs", type=cli.positive_int, default=None,
                     help="the same epochs for all (overrides --images)")
    fit.add_argument("--only", default=None, help="comma list of groups to train")
    fit.add_argument("--time-limit", type=cli.positive_float, default=None, help="seconds per specialist")
    fit.add_argument("--overwrite", action="store_true", help="replace an earlier run with the same --run")
    args = parser.parse_args(argv)
    settings = {"time_limit": args.time_limit} if args.time_limit else {}
    groups = [g.strip() for g in args.only.split(",") if g.strip()] if args.only else None
    known = [group["name"] for group in SPECIALIST_SETTINGS]
    if groups is not None and (not groups or set(groups) - set(known)):
        raise cli.UsageError(f"--only: got {args.only!r}; the groups are {', '.join(known)}")
    if args.pretrained is not None and not Path(args.pretrained).is_file():
        raise cli.InputError(f"--pretrained {args.pretrained}: no such file")
    out = train_specialists(args.data, args.pretrained, args.model, args.run, images=args.images,
                            epochs=args.epochs, groups=groups, overwrite=args.overwrite, **settings)
    manifest = json.loads((out / "specialists.json").read_text())
    for entry in manifest["specialists"]:
        print(f"{entry['name']:<24} {entry['faces']:>6} faces  {entry['epochs']:>4} epochs  "
              f"valid {entry['val_rmse_px']:.3f} px")
    print(f"saved {out} ({manifest['seconds']:.0f} s)")


if __name__ == "__main__":
    cli.run(main)
