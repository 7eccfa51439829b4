"""Runs on disk and what the commands write: run folders (run.json, split.csv, models),
the named-faces CSV and picture, the confusion matrix.

A run is models/recognition/<run>/ (git-ignored):
    run.json                      what it is, how it was made, the label map, its measurements
    model.keras / embedder.keras  the softmax recogniser / the L2-normalised embedding
    split.csv                     every photo and whether it was used to train or to test
    history.csv, logs/            per-epoch metrics; TensorBoard: tensorboard --logdir models/recognition
"""
import csv
import json
import math
import os
from datetime import datetime
from pathlib import Path

import numpy as np

import cli
from recognition.faces import RecognitionError, shown
from recognition.gallery import UNKNOWN

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "models" / "recognition"


def save_labels(names, path):
    """The label map: class index -> person, as run.json's `labels` (atomic write)."""
    path = Path(path)
    info = cli.read_json_object(path) if path.exists() else {}
    info["labels"] = list(names)
    atomic_json(info, path)


def load_labels(path):
    names = cli.read_json_object(path).get("labels")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise RecognitionError(f"{path}: no label map (a list of names under 'labels')")
    return names


def atomic_json(data, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cli.write_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=str)))


def atomic_save(model, path):
    """model.save through a temporary file and a rename: a crash never leaves half a model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cli.write_atomically(path, model.save)


def now():
    return datetime.now().isoformat(timespec="seconds")


def run_dir(run, kind):
    """models/recognition/<run> for a name, or the path itself when it is one."""
    if run is None:
        run = f"{kind}-{datetime.now():%m%d-%H%M%S}"
    path = Path(run)
    return path if (path.is_absolute() or len(path.parts) > 1) else RUNS / run


# What a run folder holds (a run of `train` or `embed-train` writes some of these, the other
# commands the rest): a folder without run.json that has any of them is not replaced by a run.
RUN_FILES = ("run.json", "model.keras", "embedder.keras", "split.csv", "history.csv", "logs",
             "evaluation.json", "confusion.png", "gallery.npz", "predictions.csv", "predictions.png",
             "identified.csv", "identified.png")
MODEL_SUFFIXES = (".keras", ".onnx", ".h5", ".tflite", ".npz", ".p", ".pkl")


def protected_folder(folder):
    """Why `folder` holds a model that ships with the repository (so that no run may write
    there), or None: training.runs.protected_model_dir's rule (git tracks its model.keras, model.json or
    learning_curve.png; its model.json says "shipped": true; models/<a version in
    models.SHIPPED>/), and the shipped embedding's folder (models/face_embedding, by its path or,
    in a copy of the repository, by its name and its embedder.keras)."""
    from training.runs import protected_model_dir
    folder = Path(folder)
    why = protected_model_dir(folder)
    if why:
        return why
    shipped = ROOT / "models" / "face_embedding"
    if folder.exists() and shipped.exists() and os.path.samefile(folder, shipped):
        return f"{folder} is the shipped embedding's folder"
    if folder.absolute().parent.name == "models" and folder.name == shipped.name and \
            (folder / "embedder.keras").exists():
        return f"{folder} is a copy of the shipped embedding's folder (models/{shipped.name})"
    return None


def check_run_folder(out, kind, overwrite):
    """Before any work: may a `kind` run ('softmax' or 'embedding') write its files into the
    folder out? Never into a shipped model's folder (not even with --overwrite), never into a
    folder that holds a model or a run's files without being a run of this kind, and into an
    earlier run of this kind only with --overwrite."""
    out = Path(out)
    why = protected_folder(out)
    if why:
        raise cli.UsageError(f"--run {out}: holds a model that ships with the repository ({why}); a run "
                             "never replaces it: pick another run name")
    if out.exists() and not out.is_dir():
        raise cli.UsageError(f"--run {out}: is a file, not a run folder; pick another run name")
    if not out.is_dir():
        return out
    info_path = out / "run.json"
    if info_path.exists():
        try:
            info = cli.read_json_object(info_path)
        except (cli.InputError, OSError) as error:
            message = cli.describe_os_error(error) if isinstance(error, OSError) else error
            raise cli.UsageError(f"--run {out}: not a recognition run ({message}); a run never replaces "
                                 "it: pick another run name") from None
        if info.get("kind") != kind:
            raise cli.UsageError(f"--run {out}: holds a run of kind {cli.one_line(repr(info.get('kind')))[:40]}, "
                                 f"not {kind}; a run only replaces a run of its own kind: pick another run name")
        if not overwrite:
            raise cli.UsageError(f"--run: {out} exists; pick another name or pass --overwrite")
        return out
    models_there = sorted(p.name for p in out.iterdir() if p.name == "model.json" or p.suffix.lower() in MODEL_SUFFIXES)
    if models_there:
        raise cli.UsageError(f"--run {out}: holds {', '.join(shown(n) for n in models_there[:5])} but no "
                             "run.json: not a recognition run, and a run never replaces a model it did not "
                             "make: pick another run name")
    unfinished = sorted(p.name for p in out.iterdir() if p.name in RUN_FILES)
    if unfinished and not overwrite:
        raise cli.UsageError(f"--run {out}: holds {', '.join(unfinished[:5])} (a run that did not finish?); "
                             "pick another name or pass --overwrite to replace them")
    return out


def check_outputs(outputs, inputs, overwrite=True):
    """cli.check_outputs (no output is an input or inside an input folder; every output's folder
    writable), without leaving behind the folders it made to prove that: a run folder appears
    when the run writes into it, not when a run that then fails is started."""
    made = set()
    for _, path in outputs:
        folder = Path(path).absolute().parent
        while not folder.exists() and folder != folder.parent:
            made.add(folder)
            folder = folder.parent
    try:
        cli.check_outputs(outputs, [(name, path) for name, path in inputs if path], overwrite)
    finally:
        for folder in sorted(made, key=lambda f: len(f.parts), reverse=True):
            try:
                folder.rmdir()
            except OSError:
                pass


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_curve(v):
    keys = ("distance", "different_within", "same_beyond")
    return (isinstance(v, dict) and all(isinstance(v.get(k), list) and v[k] and all(map(_number, v[k])) for k in keys)
            and len({len(v[k]) for k in keys}) == 1)


def check_info(info, source, kind):
    """The fields of a run.json (or the shipped embedding's model.json) that the commands read,
    each checked, with its default where it has one: detect, fit, align_model, and for an
    embedding threshold, name and the optional rules (margin, verify_same, verify_different,
    verify_curve), for a softmax run labels and settings.threshold. An InputError names the
    file and the field."""
    cli.json_field(info, "detect", lambda v: isinstance(v, bool),
                   "true or false (whether faces were detected in the photos)", source)
    if "fit" in info:
        cli.json_field(info, "fit", lambda v: v in ("max", "min"), '"max" or "min"', source)
    if "align_model" in info:
        cli.json_field(info, "align_model", lambda v: v is None or (isinstance(v, str) and v.strip()),
                       "null or the path of a keypoint model", source)
    if kind == "embedding":
        cli.json_field(info, "threshold", lambda v: _number(v) and v >= 0, "a distance of 0 or more", source)
        for field in ("margin", "verify_same", "verify_different"):     # the shipped rules (settings.py)
            if info.get(field) is not None:
                cli.json_field(info, field, lambda v: _number(v) and v >= 0, "a distance of 0 or more", source)
        if info.get("verify_same") is not None and info.get("verify_different") is not None:
            cli.json_field(info, "verify_different", lambda v: v >= info["verify_same"],
                           f"a distance of at least verify_same ({info['verify_same']})", source)
        if info.get("verify_curve") is not None:
            cli.json_field(info, "verify_curve", _is_curve, "an object of three equally long lists of numbers: "
                           "distance, different_within, same_beyond", source)
        if "name" in info:
            cli.json_field(info, "name", lambda v: isinstance(v, str) and v.strip(), "the embedding's name", source)
    else:
        cli.json_field(info, "labels", lambda v: isinstance(v, list) and v and
                       all(isinstance(n, str) and n for n in v), "a list of the people's names", source)
        settings = info.setdefault("settings", {})
        if not isinstance(settings, dict):
            cli.json_field(info, "settings", lambda v: False, "an object {...} of the training settings", source)
        if "threshold" in settings:
            cli.json_field(settings, "threshold", lambda v: _number(v) and 0 <= v <= 1,
                           "a probability from 0 to 1", f"{source}, settings")
    return info


def open_run(path, kind):
    """run.json of an existing run of this kind ('softmax' or 'embedding'), its fields checked."""
    path = Path(path)
    info_path = path / "run.json"
    if not info_path.exists():
        raise RecognitionError(f"{path}: not a recognition run (no run.json); train one with "
                               f"`python recognize.py {'train' if kind == 'softmax' else 'embed-train'}`")
    info = cli.read_json_object(info_path)
    if info.get("kind") != kind:
        article = "an" if kind[0] in "aeiou" else "a"
        raise RecognitionError(f"{path} is a run of kind {cli.one_line(repr(info.get('kind')))[:40]}; "
                               f"this command needs {article} {kind} run")
    return check_info(info, info_path, kind)


def write_split(path, paths, names, labels, subsets):
    """split.csv: every photo, its person and subset. A file name that is not valid UTF-8 is
    written as its own bytes (surrogateescape), so that `evaluate` finds the photo again."""
    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
            writer = csv.writer(f)
            writer.writerow(["photo", "person", "subset"])
            for p, label, subset in zip(paths, labels, subsets):
                writer.writerow([str(Path(p).resolve()), names[label], subset])
    cli.write_atomically(path, write)


def read_split(path, subset):
    """(photos, people) of the rows of split.csv in `subset`; an InputError naming the file
    (and the row) when it is missing, damaged or has none."""
    path = Path(path)
    if not path.is_file():
        raise RecognitionError(f"{path}: missing (every run has its split.csv)")
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("photo", "person", "subset") if c not in (reader.fieldnames or [])]
            if missing:
                raise RecognitionError(f"{path}: no column {', '.join(missing)} (expected photo, person, subset)")
            rows = []
            for number, row in enumerate(reader, start=2):
                if not row["photo"] or row["person"] is None or row["subset"] is None:
                    raise RecognitionError(f"{path}, row {number}: needs a photo, a person and a subset")
                if row["subset"] == subset:
                    rows.append(row)
    except csv.Error as error:
        raise RecognitionError(f"{path}: not a readable CSV ({cli.one_line(error)})") from None
    if not rows:
        raise RecognitionError(f"{path}: no photo of the subset {subset!r}")
    return [Path(r["photo"]) for r in rows], [r["person"] for r in rows]


def _layer_weights_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def shares_base_weights(model, base):
    """Does every layer of the chopped base inside `model` (its `features` sub-model) have
    exactly the weights of the layer of the same name in `base`? False if none is compared."""
    features = model.get_layer("features")
    compared = 0
    for layer in features.layers:
        if not layer.weights:
            continue
        try:
            original = base.get_layer(layer.name)
        except ValueError:
            return False
        if not _layer_weights_equal(layer, original):
            return False
        compared += 1
    return compared > 0


def _save_figure(fig, path):
    """A figure as a PNG file, written atomically (never half a picture over an old one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cli.write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    return path


def plot_faces(crops, titles, path=None, colors=None, title=None, columns=6):
    """A grid of faces with their names (and probabilities) written over them; saved to path,
    or returned as the figure without one."""
    from matplotlib.figure import Figure
    n = max(len(crops), 1)
    columns = min(columns, n)
    rows = int(np.ceil(n / columns))
    fig = Figure(figsize=(1.6 * columns, 1.75 * rows + (0.3 if title else 0)))
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for k, ax in enumerate(axes):
        ax.axis("off")
        if k >= len(crops):
            continue
        ax.imshow(crops[k], cmap="gray", vmin=0, vmax=255)
        ax.text(48, 92, shown(titles[k]), color=(colors[k] if colors else "yellow"), fontsize=7,
                ha="center", va="bottom", bbox=dict(facecolor="black", alpha=0.6, pad=1, lw=0))
    if title:
        fig.suptitle(shown(title), fontsize=9)
    fig.tight_layout()
    if path is None:
        return fig
    return _save_figure(fig, path)


def plot_confusion(truth, predicted, names, path, title=None):
    """Confusion matrix (rows: true person, columns: predicted), counts as shades."""
    from matplotlib.figure import Figure
    n = len(names)
    matrix = np.zeros((n, n), int)
    np.add.at(matrix, (np.asarray(truth), np.asarray(predicted)), 1)
    size = min(max(4.0, 0.22 * n + 2), 30)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    if n <= 60:
        ax.set_xticks(range(n), [shown(name) for name in names], rotation=90, fontsize=6)
        ax.set_yticks(range(n), [shown(name) for name in names], fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(shown(title), fontsize=9)
    fig.tight_layout()
    _save_figure(fig, path)
    return matrix


def _write_csv(tmp, header, rows):
    # backslashreplace: a name that is not valid UTF-8 is written escaped (as predict.py's CSV)
    with open(tmp, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def named_faces_outputs(target):
    """(OUT.csv, OUT.png): the files `predict` and `identify` write for --out OUT."""
    target = Path(target)
    return target.with_suffix(".csv"), target.with_suffix(".png")


def report_named_faces(crops, where, chosen, scores, score_name, target, title, extra=None):
    """target.csv (photo, face, frame, name, score, and the extra columns {name: values}; an
    infinite value is left empty: e.g. no second-nearest person), target.png (the named crops)
    and a line per face: what `predict` and `identify` both write (both files or neither)."""
    csv_path, png_path = named_faces_outputs(target)
    extra = extra or {}
    columns = [score_name, *extra]
    values = [[f"{v:.4f}" if np.isfinite(v) else "" for v in column] for column in (scores, *extra.values())]
    rows = [[str(path), k, f"{f.cx:.1f}", f"{f.cy:.1f}", f"{f.side:.1f}", name, *row]
            for (path, k, f), name, *row in zip(where, chosen, *values)]
    fig = plot_faces(crops, [f"{n} {score:.2f}" for n, score in zip(chosen, scores)],
                     colors=["red" if n == UNKNOWN else "yellow" for n in chosen], title=title)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    cli.write_all_atomically([
        (csv_path, lambda tmp: _write_csv(tmp, ["photo", "face", "cx", "cy", "side", "name", *columns], rows)),
        (png_path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))])
    for row in rows:
        said = ", ".join(f"{c} {float(v):.3f}" for c, v in zip(columns, row[6:]) if v)
        print(shown(f"{row[0]} face {row[1]}: {row[5]} ({said})"))
    print(shown(f"wrote {csv_path} and {png_path}"))


def check_run_name(run):
    """A run is a plain name (models/recognition/<name>) or a path with a folder in it; never
    '.', '..' or empty, which would write into (or replace) a folder that is not a run's."""
    name = Path(run).name
    if not str(run).strip() or name in ("", ".", "..") or any(p == ".." for p in Path(run).parts):
        raise cli.UsageError(f"--run: {run!r} is not a run name (use letters, digits, '-', '_')")
    return run
