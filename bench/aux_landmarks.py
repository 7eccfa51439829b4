"""Does v6 learn the 15 keypoints better with all 68 landmarks as a second task?

    python bench/aux_landmarks.py --data FACES.csv --out DIR [--epochs 200] [--aux-weight 1]

FACES.csv: the CVND faces converted by `input_data.py convert-68` (its FACES.sources.csv names
each row's photo, whose 68 landmarks are read again from --landmarks). The network is v6 with a
second head on the same features: 68 heatmaps and their soft-argmax, trained on the 68 points in
the crop (those outside the frame masked), with the loss `wing(15 keypoints) + aux_weight *
wing(68 landmarks)`. Same person split (train.py's --validation 0.2, seed 0), recipe and epochs
as the shipped recipe's split model, which ends at 1.484 px (1.448 with flip TTA).

It prints the validation RMSE every 10 epochs and at the end, and writes DIR/model.keras: the
network without the second head (exactly v6, `out` only) with a model.json, for
`bench/predict_accuracy.py --model DIR/model.keras`. docs/experiments.md has the result.
"""
import argparse
import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402

import cli  # noqa: E402
import input_data  # noqa: E402

DEFAULT_LANDMARKS = (Path(__file__).resolve().parents[2] / "shared" / "data" / "cvnd_youtube_faces"
                     / "training_frames_keypoints.csv")

# The mirror's left/right pairs of the 68 points (iBUG order): jaw, eyebrows, nostrils, eyes,
# outer and inner lips. The others (jaw tip, nose bridge, lip centres) lie on the midline.
MIRROR_PAIRS = ([(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)]
                + [(31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
                   (48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)])


def landmark_columns():
    """136 column names that augment.py mirrors correctly: "left"/"right" name a mirror pair."""
    names = {}
    for k, (a, b) in enumerate(MIRROR_PAIRS):
        names[a], names[b] = f"lm_left_{k}", f"lm_right_{k}"
    return [f"{names.get(i, f'lm_mid_{i}')}_{axis}" for i in range(68) for axis in "xy"]


def landmarks_in_frames(data, landmarks, n_rows):
    """(n_rows, 136) unit coordinates of each row's 68 landmarks in its crop frame (NaN where a
    point falls outside the heatmaps' reach, 2-93 px), and the 15 keypoints made from them."""
    with open(input_data.sources_path(data), newline="", encoding="utf-8") as f:
        files = [row["file"] for row in csv.DictReader(f)]
    if len(files) != n_rows:
        raise cli.InputError(f"{input_data.sources_path(data)}: {len(files)} rows but {data} has {n_rows}")
    with open(landmarks, newline="", encoding="utf-8") as f:
        by_name = {row[0]: np.array(row[1:], np.float64).reshape(68, 2) for row in list(csv.reader(f))[1:]}
    unit, kaggle = [], []
    for name in files:
        if name not in by_name:
            raise cli.InputError(f"{landmarks}: no landmarks for {name}, named in {input_data.sources_path(data)}")
        points = by_name[name]
        frame = input_data.frame_from_68(points)
        px = frame.to_frame(points)
        px[((px < 2) | (px > 93)).any(axis=1)] = np.nan
        unit.append(((px - 48) / 48).ravel())
        kaggle.append(((frame.to_frame(input_data.keypoints_from_68(points)) - 48) / 48).ravel())
    return np.array(unit, np.float32), np.array(kaggle, np.float32)


def with_landmark_head(model, n_points=68):
    """v6 -> a model of two outputs, (out, landmarks), the second from its own heatmaps on the
    features v6's heatmaps read (the layer before `heatmaps`), through v6's own soft-argmax."""
    import keras
    from keras import layers
    from models import v6_resnet_integral as v6
    features = model.get_layer("heatmaps").input
    heatmaps = layers.Conv2D(n_points, 1, kernel_initializer="he_normal", name="lm_heatmaps")(features)
    return keras.Model(model.input, [model.output, v6.soft_argmax(heatmaps, prefix="lm_", name="lm_out")])


def rmse_px(Y_true, Y_pred):
    return float(np.sqrt(np.mean((np.asarray(Y_pred) - Y_true) ** 2)) * 48)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="faces.csv written by `input_data.py convert-68` "
                        "(with its .sources.csv)")
    parser.add_argument("--landmarks", default=str(DEFAULT_LANDMARKS),
                        help="the 68-point label CSV the faces were converted from (default: ../shared's CVND one)")
    parser.add_argument("--out", required=True, help="folder for model.keras and model.json (v6 without the second head)")
    parser.add_argument("--epochs", type=cli.positive_int, default=200, help="epochs (default 200, the shipped recipe's)")
    parser.add_argument("--aux-weight", type=cli.non_negative_float, default=1.0,
                        help="weight of the 68-landmark loss beside the 15 keypoints' (default 1; 0: v6 alone)")
    parser.add_argument("--overwrite", action="store_true", help="replace a model.keras already in --out")
    parser.add_argument("--dry-run", action="store_true", help="2 epochs on 128 faces, to check the wiring")
    args = parser.parse_args(argv)
    for name, path in (("--data", args.data), ("--landmarks", args.landmarks)):
        if not Path(path).is_file():
            raise cli.InputError(f"{name} {path}: not found")
    if not input_data.sources_path(args.data).is_file():
        raise cli.InputError(f"--data {args.data}: no {input_data.sources_path(args.data).name} beside it "
                             "(made by `input_data.py convert-68`, it names each row's photo)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise cli.InputError(f"--out {out}: is a file; expected a folder")
    if not args.dry_run:
        cli.check_outputs([("--out", out / "model.keras"), ("--out", out / "model.json")]
                          if out.is_dir() else [("--out", out)],
                          [("--data", args.data), ("--landmarks", args.landmarks)], overwrite=args.overwrite)

    import keras
    import augment
    import train
    from models import v6_resnet_integral as v6

    keras.utils.set_random_seed(0)
    X, Y, people = train.load_arrays(data=args.data, all_rows=True)
    landmarks, from_landmarks = landmarks_in_frames(args.data, args.landmarks, len(X))
    if np.nanmax(np.abs(from_landmarks - Y)) * 48 > 0.01:
        raise cli.InputError(f"--landmarks {args.landmarks}: its points do not give {args.data}'s keypoints "
                             "(were the faces converted from another file?)")
    train_idx, val_idx = train.split_validation(len(X), 0.2, 0, people)
    epochs = args.epochs
    if args.dry_run:
        train_idx, val_idx, epochs = train_idx[:128], val_idx[:64], 2
    X_train, X_val, Y_val = X[train_idx], X[val_idx], Y[val_idx]
    targets = np.concatenate([Y[train_idx], landmarks[train_idx]], axis=1)
    axis = augment.mirror_axis(Y[train_idx])
    print(f"{len(X_train)} training and {len(X_val)} validation faces (split by person); "
          f"{100 * np.isnan(landmarks).mean():.1f}% of the landmarks outside the frame, masked")

    settings = {**train.DEFAULTS, **v6.SETTINGS, "epochs": epochs}
    model = v6.network()
    trainer = with_landmark_head(model)
    steps = int(np.ceil(len(X_train) / settings["batch_size"]))
    trainer.compile(optimizer=train.make_optimizer(settings, steps, epochs),
                    loss=[train.masked_wing, train.masked_wing], loss_weights=[1.0, args.aux_weight])
    data = augment.pipeline(X_train, targets, settings["batch_size"], settings["augment"], seed=0,
                            cols=list(input_data.COLUMNS) + landmark_columns(), mirror_axis=axis)
    data = data.map(lambda x, y: (x, (y[:, :30], y[:, 30:])))

    class Progress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            line = f"epoch {epoch + 1}/{epochs}: loss {logs['loss']:.3f} ({time.perf_counter() - self.started:.1f} s)"
            if (epoch + 1) % 10 == 0:
                line += f", validation RMSE {rmse_px(Y_val, model.predict(X_val, batch_size=256, verbose=0)):.3f} px"
            print(line, flush=True)

    started = time.perf_counter()
    trainer.fit(data, epochs=epochs, verbose=0, callbacks=[Progress()])   # ends on the weight average
    flip = augment.predict_with_flip(model, X_val, mirror_axis=axis)
    val_rmse = rmse_px(Y_val, model.predict(X_val, batch_size=256, verbose=0))
    print(f"weight average after {epochs} epochs ({time.perf_counter() - started:.0f} s): validation RMSE "
          f"{val_rmse:.3f} px, {rmse_px(Y_val, flip):.3f} px with flip TTA")
    if args.dry_run:
        return
    out.mkdir(parents=True, exist_ok=True)
    cli.write_atomically(out / "model.keras", lambda tmp: train.inference_copy(model).save(tmp))
    info = dict(model=v6.NAME, run_id="aux-landmarks", data=str(args.data), train_faces=len(X_train),
                validation_faces=len(X_val), epochs_run=epochs, mirror_axis_px=round(axis, 3),
                val_rmse_px=val_rmse, aux_weight=args.aux_weight, command="bench/aux_landmarks.py",
                settings=settings)
    cli.write_atomically(out / "model.json", lambda tmp: Path(tmp).write_text(json.dumps(info, indent=2)))
    print(f"wrote {out / 'model.keras'}")


if __name__ == "__main__":
    cli.run(main)
