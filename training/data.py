"""The faces a run trains on: the arrays from a Kaggle-format CSV or a data.p, the validation
split (by person when the file's people are known), and a hash of each face, so that later
tools know which faces a model was trained on. No TensorFlow at import."""
from pathlib import Path

import numpy as np

import cli
import input_data
from training.settings import fixed_mirror_axis


def data_path(data, root="."):
    """The file a run trains on: `data`, or Kaggle's training file in <root>/data/ (synthetic
    faces are written there when it is absent)."""
    if data is not None:
        return Path(data)
    import synthetic_faces  # Kaggle's files, or synthetic faces written when they are absent
    files, _ = synthetic_faces.kaggle_files(Path(root) / "data")
    return Path(files["training"])


def load_arrays(data=None, all_rows=False, root=".", cols=None):
    """(X float32 (N, 96, 96, 1), Y float32 (N, k) unit coords, NaN = missing, people or None).

    data None: Kaggle's training file in <root>/data/, else synthetic faces written there.
    cols: the keypoint columns to keep (default all 30); all_rows=False keeps only the rows
    that have every one of them.
    """
    path = data_path(data, root)
    if path.name.endswith((".p", ".p.zip")):
        import serializer
        loaded = serializer.load(path)
        try:
            (X, Y), _ = loaded
            X, Y = np.asarray(X, np.float32), np.asarray(Y, np.float32)
            if X.ndim != 4 or X.shape[1:] != (96, 96, 1) or Y.ndim != 2 or Y.shape != (len(X), 30):
                raise ValueError
        except (TypeError, ValueError):
            raise input_data.DataError(f"{path}: not a data.p holding ((X, Y), (X_test, _)) with X of shape "
                                       "(N, 96, 96, 1) and Y of (N, 30), as serializer.py writes") from None
        _check_unit_ranges(path, X, Y)
        people = None
    else:
        images, keypoints = _cached_keypoints(path)
        X, Y = input_data.images_to_unit(images), input_data.keypoints_to_unit(keypoints)
        people = _people(path, len(X))
    if cols is not None:
        unknown = [c for c in cols if c not in input_data.COLUMNS]
        if unknown:
            raise ValueError(f"unknown keypoint columns {', '.join(unknown)}")
        Y = Y[:, [input_data.COLUMNS.index(c) for c in cols]]
    if np.isnan(Y).all():   # nothing to train on or to score against
        raise input_data.DataError(f"{path}: no face has a labelled keypoint"
                                   f"{'' if cols is None else ' among ' + ', '.join(cols)}")
    if not all_rows:
        X, Y, people = complete_rows(X, Y, people)
    if len(X) < 2:
        raise input_data.DataError(f"{path}: {len(X)} usable faces; need at least 2 "
                                   f"{'' if all_rows else '(try all_rows=True)'}")
    return X, Y, people


def load_for_training(settings):
    """load_arrays with every row; a file that cannot be read is an InputError naming it."""
    import pickle
    import zipfile
    try:
        return load_arrays(data_path(settings["data"], settings["root"]), True, settings["root"], settings["cols"])
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, UnicodeError) as error:
        raise cli.InputError(f"--data {settings['data']}: cannot be read as faces "
                             f"({error.__class__.__name__}: {cli.one_line(error)})") from None


# The CSV reader refuses keypoints beyond -96..192 px, which is (px - 48) / 48 in [-3, 3].
UNIT_KEYPOINT_LIMIT = 3.0


def _check_unit_ranges(path, X, Y):
    """A data.p holds what the CSV reader produces: pixels in [0, 1], keypoints (px - 48) / 48
    (NaN: missing). Raw 0-255 pixels or pixel coordinates would train into nonsense figures,
    and an infinite label into a loss that looks like a too-high learning rate."""
    if not 0 <= X.min() <= X.max() <= 1:       # NaN fails too
        face = int(np.argmax(~((X >= 0) & (X <= 1)).reshape(len(X), -1).all(axis=1)))
        raise input_data.DataError(f"{path}: X[{face}] holds pixel values from {X[face].min():g} to "
                                   f"{X[face].max():g}; a data.p holds them in [0, 1] (0-255 divided by 255, "
                                   "as serializer.py writes them)")
    bad = np.abs(np.nan_to_num(Y, nan=0.0)) > UNIT_KEYPOINT_LIMIT     # inf too; NaN is a missing label
    if bad.any():
        face, col = map(int, np.argwhere(bad)[0])
        raise input_data.DataError(f"{path}: Y[{face}] {input_data.COLUMNS[col]} = {Y[face, col]:g}; a data.p "
                                   "holds keypoints as (px - 48) / 48, within "
                                   f"[-{UNIT_KEYPOINT_LIMIT:g}, {UNIT_KEYPOINT_LIMIT:g}] (NaN: missing)")


def resolve_mirror_axis(value, Y_train, cols=None):
    """The mirror axis in pixels for a run: `auto` measures it on the training labels only."""
    if value == "auto":
        import augment
        return round(augment.mirror_axis(Y_train, cols), 3)
    return fixed_mirror_axis(value)


def complete_rows(X, Y, people=None):
    """Only the faces that have every keypoint of Y."""
    keep = ~np.isnan(Y).any(axis=1)
    return X[keep], Y[keep], (None if people is None else people[keep])


def _cached_keypoints(path):
    """Parse a CSV once; later runs read PATH.cache.p, keyed by the file's content (serializer)."""
    import serializer
    return serializer.cached_keypoints(path)


def _people(path, n_rows):
    """The person of each row, from OUT.sources.csv written by `input_data.py convert-68`."""
    import csv
    sources = input_data.sources_path(path)
    if not sources.exists():
        return None
    try:
        with open(sources, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if "person" not in (reader.fieldnames or []):
                raise input_data.DataError(f"{sources}: no 'person' column (convert-68 writes row,file,person)")
            people = [row["person"] for row in reader]
    except (UnicodeDecodeError, csv.Error) as error:     # a binary file, NUL bytes
        raise input_data.DataError(f"{sources}: not a readable CSV ({cli.one_line(error)[:200]})") from None
    if None in people:
        raise input_data.DataError(f"{sources}, row {people.index(None) + 1}: no person")
    if len(people) != n_rows:
        raise input_data.DataError(f"{sources}: {len(people)} rows but {path} has {n_rows}")
    return np.array(people)


def split_validation(n, fraction, seed, people=None):
    """Index arrays (train, validation); with people, nobody is on both sides.
    fraction 0: everything trains (a final model, after the split has chosen the settings)."""
    rng = np.random.default_rng(seed)
    if fraction == 0:
        return np.arange(n), np.arange(0)
    if people is None:
        order = rng.permutation(n)
        n_val = max(1, int(round(fraction * n)))
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    names = np.unique(people)
    rng.shuffle(names)
    counts = {name: c for name, c in zip(*np.unique(people, return_counts=True))}
    chosen, total = [], 0
    for name in names:
        if total >= fraction * n:
            break
        chosen.append(name)
        total += counts[name]
    is_val = np.isin(people, chosen)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


FACE_HASH_HEX = 12    # 48 bits per face: collisions among ~10^5 faces are ~10^-5 likely


def face_hashes(X):
    """A short hash of each face's pixels (as 8-bit grey levels), to recognise the same faces
    in another file: which of them a model was trained on."""
    import hashlib
    pixels = np.clip(np.rint(np.asarray(X, np.float32) * 255), 0, 255).astype(np.uint8)
    return [hashlib.blake2b(face.tobytes(), digest_size=FACE_HASH_HEX // 2).hexdigest() for face in pixels]
