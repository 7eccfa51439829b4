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
import os
from datetime import datetime
from pathlib import Path

import numpy as np

import cli
from recognition.faces import RecognitionError
from recognition.gallery import UNKNOWN

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "models" / "recognition"


def save_labels(names, path):
    """The label map: class index -> person, as run.json's `labels` (atomic write)."""
    path = Path(path)
    info = json.loads(path.read_text()) if path.exists() else {}
    info["labels"] = list(names)
    atomic_json(info, path)


def load_labels(path):
    names = json.loads(Path(path).read_text()).get("labels")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
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


def open_run(path, kind):
    """run.json of an existing run of this kind ('softmax' or 'embedding')."""
    path = Path(path)
    info_path = path / "run.json"
    if not info_path.exists():
        raise RecognitionError(f"{path}: not a recognition run (no run.json); train one with "
                               f"`python recognize.py {'train' if kind == 'softmax' else 'embed-train'}`")
    info = json.loads(info_path.read_text())
    if info.get("kind") != kind:
        article = "an" if kind[0] in "aeiou" else "a"
        raise RecognitionError(f"{path} is a run of kind {info.get('kind')!r}; this command needs {article} {kind} run")
    return info


def write_split(path, paths, names, labels, subsets):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["photo", "person", "subset"])
        for p, label, subset in zip(paths, labels, subsets):
            writer.writerow([str(Path(p).resolve()), names[label], subset])


def read_split(path, subset):
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["subset"] == subset]
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


def plot_faces(crops, titles, path, colors=None, title=None, columns=6):
    """A grid of faces with their names (and probabilities) written over them."""
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
        ax.text(48, 92, titles[k], color=(colors[k] if colors else "yellow"), fontsize=7,
                ha="center", va="bottom", bbox=dict(facecolor="black", alpha=0.6, pad=1, lw=0))
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return Path(path)


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
        ax.set_xticks(range(n), names, rotation=90, fontsize=6)
        ax.set_yticks(range(n), names, fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return matrix


def write_rows(path, header, rows):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)




def report_named_faces(crops, where, chosen, scores, score_name, target, title):
    """target.csv (photo, face, frame, name, score), target.png (the named crops) and a line
    per face: what `predict` and `identify` both write."""
    target = Path(target)
    rows = [[str(path), k, f"{f.cx:.1f}", f"{f.cy:.1f}", f"{f.side:.1f}", name, f"{score:.4f}"]
            for (path, k, f), name, score in zip(where, chosen, scores)]
    write_rows(target.with_suffix(".csv"), ["photo", "face", "cx", "cy", "side", "name", score_name], rows)
    plot_faces(crops, [f"{n} {score:.2f}" for n, score in zip(chosen, scores)], target.with_suffix(".png"),
               colors=["red" if n == UNKNOWN else "yellow" for n in chosen], title=title)
    for row in rows:
        print(f"{row[0]} face {row[1]}: {row[5]} ({score_name} {float(row[6]):.3f})")
    print(f"wrote {target.with_suffix('.csv')} and {target.with_suffix('.png')}")


def check_run_name(run):
    """A run is a plain name (models/recognition/<name>) or a path with a folder in it; never
    '.', '..' or empty, which would write into (or replace) a folder that is not a run's."""
    name = Path(run).name
    if not str(run).strip() or name in ("", ".", "..") or any(p == ".." for p in Path(run).parts):
        import cli
        raise cli.UsageError(f"--run: {run!r} is not a run name (use letters, digits, '-', '_')")
    return run
