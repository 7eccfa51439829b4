"""RMSE of a trained model on faces, per keypoint and overall, in pixels.

    python evaluate.py --run v2_convnet-1202-0930          # that run's own validation faces
    python evaluate.py --model models/v2_convnet/model.keras --data data/faces.csv [--flip-tta]
    python evaluate.py --specialists models/specialists/<run> --data data/faces.csv

The last line is always `RMSE <value> px`: over every present keypoint value, in the
96-pixel frame (Kaggle's score). --run scores exactly the faces the run held out (runs/RUN/
split.json) with the model it ended on, so it reproduces the figure train.py printed; with
--model and --data, a warning says when the file holds faces the model was trained on (its
model.json keeps a hash of each): that figure is then not a held-out one. --flip-tta averages
each prediction with the un-mirrored prediction of the mirrored face. A model trained on some
columns (train.py --cols) is scored on those: its model.json (or the run's split.json) names them.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

import cli
import input_data


def load_predictor(model=None, specialists=None, columns=None):
    """A model.keras (checked: load_keypoint_model, on `columns`, default those its model.json
    names), or the combined specialists of a folder: either way, `.predict(X)`."""
    if specialists is not None:
        import specialists as specialists_module
        return specialists_module.load(specialists)
    return load_keypoint_model(model, columns or model_columns(model))


def load_keypoint_model(path, columns=None):
    """The model.keras at path, checked to take 96x96x1 faces and give one number per keypoint
    column (`columns`: what it was trained on, default all 30), which it keeps as `.columns`.
    Checked here, once, for evaluate.py and write_submission.py: a model of another shape fails
    deep inside Keras's predict or the RMSE with a traceback."""
    import inference
    model = inference.load_model(path)
    try:
        inference.check_keypoint_model(model, path, len(columns or input_data.COLUMNS))
    except cli.InputError as error:
        if columns:
            raise cli.InputError(f"{error}: one for each column it was trained on (--cols {','.join(columns)})") from None
        if [tuple(tensor.shape[1:]) for tensor in model.inputs] == [(input_data.IMAGE_SIZE, input_data.IMAGE_SIZE, 1)]:
            # only the width differs: perhaps a --cols model away from the model.json that names them
            raise cli.InputError(f"{error}; a model trained on some columns (train.py --cols) is scored on "
                                 "them with the model.json train.py wrote beside it, or with "
                                 "python evaluate.py --run RUN") from None
        raise
    model.columns = columns
    return model


def _is_columns(value):
    return isinstance(value, list) and value and all(c in input_data.COLUMNS for c in value)


def model_columns(model_path):
    """The keypoint columns a model.keras predicts, in order: its run's --cols, kept in the
    settings of the model.json train.py wrote beside it; None (all 30) when it names none."""
    source = Path(model_path).parent / "model.json"
    try:
        info = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError):          # absent or unreadable: it says nothing
        return None
    settings = info.get("settings") if isinstance(info, dict) else None
    if not isinstance(settings, dict) or settings.get("cols") is None:
        return None
    return cli.json_field(settings, "cols", _is_columns,
                          "null or a list of keypoint columns of input_data.COLUMNS", source)


def predict(predictor, X, flip_tta=False, batch_size=256):
    """(N, k) unit coordinates (k: the predictor's columns, 30 but for a --cols model); flip_tta
    averages with the un-mirrored mirrored prediction."""
    if flip_tta:
        import augment
        columns = getattr(predictor, "columns", None)
        unpaired = input_data.one_sided(columns) if columns else []
        if unpaired:            # a mirrored left eye is a right eye, which this model does not predict
            raise cli.UsageError(f"--flip-tta: the model predicts {', '.join(unpaired)} without "
                                 "the other side's keypoint, so its mirrored prediction cannot be un-mirrored; "
                                 "leave --flip-tta out")
        return augment.predict_with_flip(predictor, X, batch_size=batch_size, cols=columns)
    return np.asarray(predictor.predict(X, batch_size=batch_size, verbose=0), np.float32)


def scored_labels(model, Y):
    """Y with the columns the model does not predict set to NaN: specialists trained with --only
    predict some columns (the rest NaN), and only those are scored."""
    covered = getattr(model, "predicted_columns", None)
    if covered is None:
        return Y
    return np.where(np.isin(np.arange(Y.shape[1]), covered), Y, np.nan)


def evaluate(model, X, Y, flip_tta=False, batch_size=256):
    """(overall RMSE px, per-column RMSE px (k,), predictions (N, k) unit coords)."""
    import train
    predicted = predict(model, X, flip_tta, batch_size)
    Y = scored_labels(model, Y)
    return float(train.rmse_px(Y, predicted)), train.rmse_px(Y, predicted, axis=0), predicted


def report(per_column, Y, columns=None):
    """Per-keypoint table: RMSE of x, y, and both, with how many faces have the keypoint."""
    columns = list(columns or input_data.COLUMNS)
    lines = [f"{'keypoint':<26}{'faces':>7}{'x':>8}{'y':>8}{'both':>8}"]
    present = (~np.isnan(Y)).sum(axis=0)
    for k in range(0, len(columns) - 1, 2):
        name = columns[k].removesuffix("_x")
        x, y = per_column[k], per_column[k + 1]
        both = np.sqrt((x ** 2 * present[k] + y ** 2 * present[k + 1])
                       / max(present[k] + present[k + 1], 1))
        lines.append(f"{name:<26}{present[k]:>7}{x:>8.3f}{y:>8.3f}{both:>8.3f}")
    return "\n".join(lines)


def run_validation(run_id, root="."):
    """(model the run ended on, X_val, Y_val, what the run printed, run folder, its keypoint
    columns or None for all 30) for a run of train.py: its validation rows (split.json) of the
    same data file, checked by digest."""
    import train
    run_dir = Path(root) / "runs" / train.check_run_id(run_id, "--run")
    if not (run_dir / "state.json").exists():
        raise cli.InputError(f"--run {run_id}: no run in {run_dir} (is --root right?)")
    state = cli.read_json_object(run_dir / "state.json")
    if not (run_dir / "split.json").exists() or "final_model" not in state:
        raise cli.InputError(f"--run {run_id}: {run_dir} has no split.json or did not finish "
                             "(runs from before split.json existed cannot be checked)")
    state, split = _checked_state(state, run_dir / "state.json"), _checked_split(run_dir / "split.json")
    if not split["validation_rows"]:
        raise cli.InputError(f"--run {run_id}: the run held out no faces (--validation 0)")
    data = Path(split["path"])
    if input_data.file_sha256(data) != split["sha256"]:
        raise cli.InputError(f"{data}: changed since run {run_id} trained on it (sha256 differs)")
    X, Y, _ = train.load_arrays(data, True, root, split["cols"])
    if len(X) != split["rows"]:
        raise cli.InputError(f"{data}: {len(X)} rows, but run {run_id} split {split['rows']}")
    rows = np.asarray(split["validation_rows"], np.int64)
    X_val, Y_val = X[rows], Y[rows]
    if not split.get("all_rows"):
        X_val, Y_val, _ = train.complete_rows(X_val, Y_val)
    model = load_keypoint_model(run_dir / state["final_model"], split["cols"])
    model.mirror_axis = state.get("mirror_axis_px", model.mirror_axis)
    return model, X_val, Y_val, state, run_dir, split["cols"]


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return (_is_int(value) or isinstance(value, float)) and -1e9 < value < 1e9   # not NaN or inf


def _checked_state(state, source):
    """The fields of a run's state.json that evaluate.py uses, checked: a damaged or hand-edited
    file is named, not a KeyError or a model loaded from outside the run folder."""
    cli.json_field(state, "final_model", lambda v: isinstance(v, str) and v.endswith(".keras")
                   and Path(v).name == v and not v.startswith("."),
                   "a model file name in the run folder, such as best.keras", source)
    if state.get("mirror_axis_px") is not None:
        cli.json_field(state, "mirror_axis_px", input_data.is_mirror_axis, input_data.MIRROR_AXIS_EXPECTED, source)
    if "best_val_rmse_px" in state:
        cli.json_field(state, "best_val_rmse_px", lambda v: v is None or _is_number(v), "a number or null", source)
    return state


def _checked_split(source):
    """split.json, checked field by field (train.py writes it; a damaged one is named)."""
    split = cli.read_json_object(source)
    cli.json_field(split, "path", lambda v: isinstance(v, str) and v, "the data file's path", source)
    cli.json_field(split, "sha256", lambda v: isinstance(v, str) and len(v) == 64,
                   "the data file's sha256 (64 hex digits)", source)
    rows = cli.json_field(split, "rows", lambda v: _is_int(v) and v >= 0, "the data file's row count", source)
    split.setdefault("cols", None)
    cli.json_field(split, "cols", lambda v: v is None or _is_columns(v),
                   "null or a list of keypoint columns of input_data.COLUMNS", source)
    cli.json_field(split, "validation_rows", lambda v: isinstance(v, list) and
                   all(_is_int(i) and 0 <= i < rows for i in v), f"a list of row numbers 0 to {rows - 1}", source)
    return split


def trained_on(model_path, X):
    """(how many faces of X the model at model_path was trained on, what it knows): from the
    face hashes in its model.json; (None, note) when model.json does not record them."""
    try:
        info = json.loads((Path(model_path).parent / "model.json").read_text())
    except (OSError, ValueError):
        return None, None
    hashes = info.get("train_face_hashes")
    if hashes:
        import train
        known = set(hashes.split())
        return sum(h in known for h in train.face_hashes(X)), info
    return None, info


def _check_score(overall, model):
    """The data's labels were checked when read: a NaN score means NaN predictions."""
    if not np.isfinite(overall):
        raise cli.InputError(f"{model}: predicts NaN or infinite keypoints for these faces (a diverged "
                             "or damaged model); no RMSE to report")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", help="a run id of train.py: score its own validation faces")
    which.add_argument("--model", help="a model.keras written by train.py")
    which.add_argument("--specialists", help="a folder written by specialists.py")
    parser.add_argument("--data", help="Kaggle-format CSV (.csv/.zip) or data.p (with --model/--specialists)")
    parser.add_argument("--root", default=".", help="with --run: the folder that holds runs/ (train.py's --root)")
    parser.add_argument("--flip-tta", action="store_true", help="average with the mirrored face's prediction")
    args = parser.parse_args(argv)
    import train
    if args.run:
        if args.data:
            raise cli.UsageError("--data: not with --run (the run's own data file and split are used)")
        model, X, Y, state, run_dir, columns = run_validation(args.run, args.root)
        overall, per_column, _ = evaluate(model, X, Y, flip_tta=args.flip_tta)
        _check_score(overall, run_dir / state["final_model"])
        printed = state.get("best_val_rmse_px")
        print(f"run {args.run}: {len(X)} validation faces, model {run_dir / state['final_model']} "
              f"({state.get('ended_on')}){' (flip TTA)' if args.flip_tta else ''}")
        if printed is not None and not args.flip_tta:
            print(f"train.py printed {printed:.4f} px for it")
        print(report(per_column, Y, columns))
        print(f"RMSE {overall:.4f} px")
        return
    if not args.data:
        raise cli.UsageError("--data: needed with --model or --specialists (a CSV or data.p to score)")
    if args.model and not Path(args.model).is_file():
        raise cli.InputError(f"--model {args.model}: no such file")
    # The data first (a bad file is told before a model loads), on a --cols model's own columns
    columns = model_columns(args.model) if args.model else None
    X, Y, _ = train.load_arrays(args.data, all_rows=True, cols=columns)
    model = load_predictor(args.model, args.specialists, columns)
    if args.model:
        seen, info = trained_on(args.model, X)
        if seen:
            print(f"warning: {seen} of the {len(X)} faces in {args.data} are faces {args.model} was trained "
                  "on: this RMSE is not a held-out figure (python evaluate.py --run RUN scores a run's "
                  "validation faces)", file=sys.stderr)
        elif seen is None and info is not None and Path(str(info.get("data"))).name == Path(args.data).name:
            print(f"warning: {args.model} was trained on {info.get('train_faces')} faces of a file named "
                  f"{Path(args.data).name} ({info.get('data')}; its model.json keeps no face hashes to "
                  "tell which): if these are those faces, this RMSE is not a held-out figure", file=sys.stderr)
    Y = scored_labels(model, Y)
    if np.isnan(Y).all():
        raise cli.InputError(f"--data {args.data}: no face has a label for the keypoints "
                             f"{args.model or args.specialists} predicts; nothing to score")
    overall, per_column, _ = evaluate(model, X, Y, flip_tta=args.flip_tta)
    _check_score(overall, args.model or args.specialists)
    print(f"{args.model or args.specialists} on {args.data}: {len(X)} faces"
          f"{' (flip TTA)' if args.flip_tta else ''}"
          + (f"; scored on the keypoints it was trained on: {', '.join(c[:-2] for c in columns[::2])}"
             if columns else ""))
    print(report(per_column, Y, columns))
    print(f"RMSE {overall:.4f} px")


if __name__ == "__main__":
    cli.run(main)
