"""The training engine: every model version is trained here, from the notebook or the shell.

    python train.py --model v2_convnet --data data/training.csv --epochs 100
    python train.py --model v3_convnet_dropout --resume --run-id v3_convnet_dropout-0131-1200

    import train
    run = train.train(model="v2_convnet", data="data/training.csv", epochs=100)
    run.val_rmse_px, run.history, run.model

Settings resolve in three layers: DEFAULTS (in train_options.py, with the command line), then
the model module's SETTINGS (its tutorial's choices), then what you pass; every run prints the
table of what it uses and where each value comes from (`python train.py --model v6 --help`
shows it too). A run writes
    logs/<run_id>/                    TensorBoard: loss, RMSE in pixels, learning rate, momentum,
                                      weight histograms, the graph, validation faces every N epochs
    runs/<run_id>/                    last.keras (weights + optimizer + the epoch count, one atomic
                                      file), best.keras (average.keras with a warm ema),
                                      state.json, split.json (the validation rows), history.csv,
                                      learning_curve.png, samples.png
    models/<version>/model.keras      what the run ends with, and model.json: how it was trained.
                                      A model that ships with the repository (tracked by git, see
                                      protected_model_dir) is never replaced: the run's model
                                      then goes to runs/<run_id>/model.keras, unless you name that
                                      folder with --model-dir and pass --overwrite (an explicit
                                      --model-dir that holds any model needs --overwrite too).
"""
import json
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __name__ == "__main__":
    # A mistyped option (or --help) is answered before TensorFlow's 5-9 s import; main() reads
    # the same parser again once the engine is loaded.
    import train_options  # noqa: E402
    train_options.check_command_line(sys.argv[1:])

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import augment  # noqa: E402
import inference  # noqa: E402
import input_data  # noqa: E402
import models  # noqa: E402

import cli  # noqa: E402
from train_options import DEFAULTS, HELP, UnknownSettingError, _parse_value, _show, build_parser, \
    flag, resolve_settings, resolve_settings_and_sources, settings_table  # noqa: E402,F401 (train.X for callers)

OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "linear", "cosine", "exponential")
STRATEGIES = (None, "mirrored", "multiworker")
# A weight average is "warm" when the starting weights weigh less than e^-3 (5%) in it:
# after 3 / (1 - ema) steps (1,500 for ema 0.998). Before that it is mostly the first
# epochs' weights, and the run ends on its best epoch instead.
EMA_WARM_TIME_CONSTANTS = 3.0


# ---------------------------------------------------------------------------------------
# Loss, metric and optimizer: registered with Keras so that model.keras files load again.

def _masked_errors(y_true, y_pred):
    """(|prediction - target| in pixels with NaN targets at 0, 0/1 weight of each value)."""
    present = ops.logical_not(ops.isnan(y_true))
    weight = ops.cast(present, y_pred.dtype)
    target = ops.cast(ops.where(present, y_true, ops.zeros_like(y_true)), y_pred.dtype)
    return ops.abs(y_pred - target) * weight * 48.0, weight


def _per_face(values, weight, y_true):
    """Per-face sums scaled so that Keras's mean over the batch is the mean over the batch's
    present values (a face with more keypoints weighs more). Per face rather than one scalar
    because Keras only divides per-sample losses among tf.distribute replicas."""
    batch = ops.cast(ops.shape(y_true)[0], values.dtype)
    return ops.sum(values, axis=-1) * batch / ops.maximum(ops.sum(weight), 1.0)


@keras.saving.register_keras_serializable(package="fkd")
def masked_mse(y_true, y_pred):
    """MSE (in unit coordinates) over present keypoints only: NaN targets add nothing to the
    loss or the gradient."""
    error, weight = _masked_errors(y_true, y_pred)
    return _per_face(ops.square(error / 48.0), weight, y_true)


@keras.saving.register_keras_serializable(package="fkd")
def masked_l1(y_true, y_pred):
    """Mean absolute error in pixels over present keypoints."""
    error, weight = _masked_errors(y_true, y_pred)
    return _per_face(error, weight, y_true)


WING_WIDTH, WING_CURVATURE = 4.0, 1.0   # pixels: Feng et al.'s w and epsilon, for a 96-px face


@keras.saving.register_keras_serializable(package="fkd")
def masked_wing(y_true, y_pred):
    """Wing loss (Feng et al., CVPR 2018) in pixels over present keypoints: logarithmic below
    WING_WIDTH px, so that small errors keep a strong gradient (MSE's vanishes as they
    shrink), L1 above it, so that outliers do not dominate."""
    error, weight = _masked_errors(y_true, y_pred)
    join = WING_WIDTH - WING_WIDTH * np.log(1.0 + WING_WIDTH / WING_CURVATURE)
    wing = ops.where(error < WING_WIDTH, WING_WIDTH * ops.log(1.0 + error / WING_CURVATURE),
                     error - join)
    return _per_face(wing * weight, weight, y_true)


LOSSES = {"mse": masked_mse, "l1": masked_l1, "wing": masked_wing}


@keras.saving.register_keras_serializable(package="fkd")
class MaskedRMSE(keras.metrics.Metric):
    """RMSE in pixels of the 96-px frame over the present keypoints, exact over an epoch."""

    def __init__(self, name="rmse_px", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        present = ops.logical_not(ops.isnan(y_true))
        target = ops.where(present, y_true, ops.zeros_like(y_true))
        error = ops.where(present, ops.cast(y_pred, "float32") - target, 0.0)
        self.total.assign_add(ops.sum(ops.square(error)))
        self.count.assign_add(ops.sum(ops.cast(present, "float32")))

    def result(self):
        return ops.sqrt(self.total / ops.maximum(self.count, 1.0)) * 48.0


@keras.saving.register_keras_serializable(package="fkd")
class ScheduledSGD(keras.optimizers.SGD):
    """SGD whose momentum rises linearly from `momentum` to `final_momentum` over
    `momentum_steps` steps, as Nouri's AdjustVariable did (0.9 -> 0.999)."""

    def __init__(self, momentum=0.9, final_momentum=None, momentum_steps=1, **kwargs):
        super().__init__(momentum=momentum, **kwargs)
        self.final_momentum = final_momentum
        self.momentum_steps = momentum_steps

    def current_momentum(self):
        if self.final_momentum is None:
            return ops.convert_to_tensor(self.momentum, "float32")
        # With a planned learning-rate schedule the momentum follows the same plan (a time
        # budget re-plans both at once).
        planned = getattr(self, "_learning_rate", None)
        steps = planned.total_steps if isinstance(planned, PlannedSchedule) else float(self.momentum_steps)
        done = ops.minimum(ops.cast(self.iterations, "float32") / ops.maximum(steps, 1.0), 1.0)
        return self.momentum + (self.final_momentum - self.momentum) * done

    def update_step(self, gradient, variable, learning_rate):
        # Keras's SGD.update_step, with the momentum read from the schedule.
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        m = self.momentums[self._get_variable_index(variable)]
        momentum = ops.cast(self.current_momentum(), variable.dtype)
        step = ops.subtract(ops.multiply(m, momentum), ops.multiply(gradient, learning_rate))
        self.assign(m, step)
        if self.nesterov:
            self.assign_add(variable, ops.subtract(ops.multiply(m, momentum),
                                                   ops.multiply(gradient, learning_rate)))
        else:
            self.assign_add(variable, m)

    def get_config(self):
        config = super().get_config()
        config.update(final_momentum=self.final_momentum, momentum_steps=self.momentum_steps)
        return config


# ---------------------------------------------------------------------------------------
# Settings and data.

RUN_ID_CHARACTERS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def check_run_id(run_id, option="--run-id"):
    """A run id names one folder under runs/ and logs/: a plain name, never a path."""
    if not isinstance(run_id, str) or not run_id or run_id in (".", "..") or len(run_id) > 100 \
            or set(run_id) - RUN_ID_CHARACTERS or run_id.startswith(("-", ".")):
        raise cli.UsageError(f"{option}: got {run_id!r}; a run id is a plain folder name of letters, "
                             "digits, '.', '_' and '-' (not starting with '.' or '-', at most 100), never a path")
    return run_id


def _number(key, value, low=None, high=None, integer=False, allow_low=True, allow_none=False):
    """`value` as a finite number within [low, high] (or (low, ...) without allow_low), else a
    UsageError that names the option, the value and what is allowed."""
    if value is None and allow_none:
        return None
    kind = "an integer" if integer else "a number"
    bad = isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
    if not bad and integer and not float(value).is_integer():
        bad = True
    if not bad and not np.isfinite(float(value)):
        bad = True
    if not bad and low is not None and (value < low or (value == low and not allow_low)):
        bad = True
    if not bad and high is not None and value > high:
        bad = True
    if bad:
        limits = (f" {'at least' if allow_low else 'more than'} {low}" if low is not None else "") + \
                 (f"{' and' if low is not None else ''} at most {high}" if high is not None else "")
        raise cli.UsageError(f"{flag(key)}: got {value!r}; must be {kind}{limits}"
                             f"{' (or none)' if allow_none else ''}")
    return int(value) if integer else float(value)


def _choice(key, value, allowed):
    if value not in allowed:
        raise cli.UsageError(f"{flag(key)}: got {value!r}; must be one of "
                             f"{', '.join('none' if a is None else str(a) for a in allowed)}")
    return value


def validate_settings(settings):
    """Check every setting's type, range and allowed values before any work starts; returns
    the settings with numbers normalised. A bad one is a cli.UsageError naming its option."""
    s = dict(settings)
    for key in ("all_rows", "resume", "overwrite", "save_model"):
        if not isinstance(s[key], (bool, np.bool_)):
            raise cli.UsageError(f"{flag(key)}: got {s[key]!r}; must be True or False")
    if not isinstance(s["model_options"], dict):
        raise cli.UsageError(f"--option: model options must be a dict of KEY=VALUE, not {s['model_options']!r}")
    s["validation"] = _number("validation", s["validation"], 0, None)
    if s["validation"] >= 1:
        raise cli.UsageError(f"--validation: got {s['validation']!r}; must be a fraction at least 0 and below 1")
    s["epochs"] = _number("epochs", s["epochs"], 1, None, integer=True, allow_none=bool(s["time_limit"]))
    s["batch_size"] = _number("batch_size", s["batch_size"], 1, 1 << 16, integer=True)
    _choice("optimizer", s["optimizer"], OPTIMIZERS)
    _choice("schedule", s["schedule"], SCHEDULES)
    s["learning_rate"] = _number("learning_rate", s["learning_rate"], 0, 10)
    s["final_learning_rate"] = _number("final_learning_rate", s["final_learning_rate"], 0, 10)
    if s["schedule"] in ("linear", "cosine") and s["final_learning_rate"] > s["learning_rate"]:
        raise cli.UsageError(f"--final-learning-rate: got {s['final_learning_rate']}; a {s['schedule']} "
                             f"schedule decays, so it must be at most --learning-rate ({s['learning_rate']})")
    s["momentum"] = _number("momentum", s["momentum"], 0, 1, allow_low=True)
    if s["momentum"] >= 1:
        raise cli.UsageError(f"--momentum: got {s['momentum']}; must be at least 0 and below 1")
    s["final_momentum"] = _number("final_momentum", s["final_momentum"], 0, 0.9999, allow_none=True)
    s["lr_decay"] = _number("lr_decay", s["lr_decay"], 0, None, allow_low=False)
    s["decay_step"] = _number("decay_step", s["decay_step"], 1, None, integer=True)
    s["weight_decay"] = _number("weight_decay", s["weight_decay"], 0, 1)
    s["ema"] = _number("ema", s["ema"], 0, None)
    if s["ema"] >= 1:
        raise cli.UsageError(f"--ema: got {s['ema']}; ema is a momentum in [0, 1) (0: off)")
    _choice("loss", s["loss"], tuple(LOSSES))
    _choice("precision", s["precision"], PRECISIONS)
    try:
        keras.initializers.get(s["init"])
    except (ValueError, TypeError, KeyError):    # KeyError: one that needs arguments (constant)
        raise cli.UsageError(f"--init: got {s['init']!r}; must be a Keras initializer name that needs no "
                             "arguments, such as glorot_uniform, he_normal or zeros") from None
    try:
        augment.parse(s["augment"])
    except (ValueError, TypeError) as error:
        raise cli.UsageError(f"--augment: got {s['augment']!r}: {cli.one_line(error)}") from None
    if s["mirror_axis"] != "auto":
        try:
            resolve_mirror_axis(s["mirror_axis"], None)
        except ValueError as error:
            raise cli.UsageError(f"--mirror-axis: {error}") from None
    s["patience"] = _number("patience", s["patience"], 1, None, integer=True)
    s["time_limit"] = _number("time_limit", s["time_limit"], 0, None, allow_low=False, allow_none=True)
    s["image_every"] = _number("image_every", s["image_every"], 1, None, integer=True)
    if s["run_id"] is not None:
        check_run_id(s["run_id"])
    s["seed"] = _number("seed", s["seed"], 0, 2 ** 32 - 1, integer=True)
    _choice("strategy", s["strategy"], STRATEGIES)
    s["devices"] = _number("devices", s["devices"], 1, 256, integer=True, allow_none=True)
    s["verbose"] = _number("verbose", s["verbose"], 0, 2, integer=True)
    if s["cols"] is not None:
        if isinstance(s["cols"], str) or not s["cols"]:
            raise cli.UsageError(f"--cols: got {s['cols']!r}; must be a non-empty list of keypoint columns")
        unknown = [c for c in s["cols"] if c not in input_data.COLUMNS]
        if unknown or len(set(s["cols"])) != len(s["cols"]):
            raise cli.UsageError(f"--cols: {'unknown ' + ', '.join(map(str, unknown)) if unknown else 'a column is repeated'};"
                                 f" the columns are {', '.join(input_data.COLUMNS)}")
        # Keypoints are (x, y) pairs: the flip, the face grids and the outputs read them so.
        for x, y in zip(s["cols"][::2], s["cols"][1::2] + [None]):
            if not (x.endswith("_x") and y == x[:-2] + "_y"):
                raise cli.UsageError(f"--cols: {x},{y or '(end)'} is not one keypoint's x and y; give each "
                                     "keypoint as NAME_x,NAME_y, e.g. left_eye_center_x,left_eye_center_y")
        one_sided = input_data.one_sided(s["cols"])
        if one_sided and augment.parse(s["augment"]).flip:
            raise cli.UsageError(f"--cols: {', '.join(one_sided)} without the other side's keypoint, with the "
                                 "mirror in --augment: a mirrored left eye is a right eye, which this model would "
                                 "learn as a left one; add the other side's columns, or leave flip out of --augment")
    for key in ("data", "init_from", "model_dir", "root"):
        if s[key] is not None and not isinstance(s[key], (str, os.PathLike)):
            raise cli.UsageError(f"{flag(key)}: got {s[key]!r}; must be a path")
    if s["init_from"] is not None and not Path(s["init_from"]).is_file():
        raise cli.InputError(f"--init-from {s['init_from']}: no such file")
    if s["data"] is not None and not Path(s["data"]).exists():
        raise cli.InputError(f"--data {s['data']}: no such file")
    return s


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
        return round(augment.mirror_axis(Y_train, cols), 3)
    try:
        axis = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"mirror_axis must be 'auto' or a pixel x such as 47.5, not {value!r}") from None
    if not 40 <= axis <= 56:
        raise ValueError(f"mirror_axis {axis} px is not near the 96-px frame's centre (47.5); "
                         "it is the x about which the labels mirror")
    return axis


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


# ---------------------------------------------------------------------------------------
# Heads and pre-training.

def with_outputs(model, n_outputs, init="glorot_uniform"):
    """The same network with a new linear `out` layer of n_outputs (e.g. a specialist's 4)."""
    features = model.get_layer("out").input
    out = keras.layers.Dense(n_outputs, name="out", kernel_initializer=init)(features)
    return keras.Model(model.inputs, out, name=model.name)


def transfer_weights(source, target):
    """Copy weights layer by layer where names and shapes match; returns the names copied."""
    copied = []
    for layer in target.layers:
        try:
            weights = source.get_layer(layer.name).get_weights()
        except ValueError:
            continue
        mine = layer.get_weights()
        if mine and len(weights) == len(mine) and all(a.shape == b.shape for a, b in zip(weights, mine)):
            layer.set_weights(weights)
            copied.append(layer.name)
    return copied


# ---------------------------------------------------------------------------------------
# Optimizer and schedules.

@keras.saving.register_keras_serializable(package="fkd")
class PlannedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """constant | linear | cosine from `initial` to `final` over `total_steps`, which a time
    budget can re-plan while the run goes (a variable, read inside the compiled step):
    the schedule then ends where the budget does. Linear and cosine are Keras's
    PolynomialDecay(power=1) and CosineDecay(alpha=final/initial)."""

    def __init__(self, kind, initial, final, total_steps):
        self.kind, self.initial, self.final = kind, float(initial), float(final)
        self.total_steps = keras.Variable(float(total_steps), dtype="float32", trainable=False,
                                          name="planned_steps")

    def __call__(self, step):
        if self.kind == "constant":
            return ops.convert_to_tensor(self.initial, "float32")
        done = ops.minimum(ops.cast(step, "float32") / ops.maximum(self.total_steps, 1.0), 1.0)
        if self.kind == "linear":       # PolynomialDecay's form: exactly `final` at the end
            return self.final + (self.initial - self.final) * (1.0 - done)
        return self.final + (self.initial - self.final) * 0.5 * (1.0 + ops.cos(np.pi * done))

    def get_config(self):
        return dict(kind=self.kind, initial=self.initial, final=self.final,
                    total_steps=float(ops.convert_to_numpy(self.total_steps)))


def plan_steps(optimizer, total_steps):
    """Make the learning-rate (and momentum) schedule end after `total_steps` steps."""
    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, PlannedSchedule):
        schedule.total_steps.assign(float(total_steps))
    if hasattr(optimizer, "momentum_steps"):
        optimizer.momentum_steps = int(total_steps)


def make_optimizer(settings, steps_per_epoch, planned_epochs=None):
    total_steps = max(1, (planned_epochs or settings["epochs"]) * steps_per_epoch)
    lr, final_lr = float(settings["learning_rate"]), float(settings["final_learning_rate"])
    if settings["schedule"] not in SCHEDULES:
        raise cli.UsageError(f"--schedule: got {settings['schedule']!r}; the schedule must be one of "
                             f"{', '.join(SCHEDULES)}")
    if settings["schedule"] == "exponential":
        learning_rate = keras.optimizers.schedules.ExponentialDecay(lr, settings["decay_step"], settings["lr_decay"])
    else:
        learning_rate = PlannedSchedule(settings["schedule"], lr, final_lr, total_steps)
    wd = float(settings["weight_decay"]) or None
    ema = float(settings["ema"])
    if not 0 <= ema < 1:
        raise cli.UsageError(f"--ema: got {ema}; ema is a momentum in [0, 1) (0: off)")
    # The average lives beside the weights; training never sees it, and fit() writes it into
    # the model when it ends (optimizer.finalize_variable_values).
    average = dict(use_ema=ema > 0, ema_momentum=ema or 0.99)
    name = settings["optimizer"]
    if name in ("sgd", "nesterov"):
        return ScheduledSGD(learning_rate=learning_rate, momentum=float(settings["momentum"]),
                            final_momentum=settings["final_momentum"], momentum_steps=total_steps,
                            nesterov=name == "nesterov", weight_decay=wd, **average)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, weight_decay=wd, **average)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=wd or 1e-4, **average)
    raise cli.UsageError(f"--optimizer: got {name!r}; must be one of {', '.join(OPTIMIZERS)}")


def current_hyperparameters(optimizer):
    """(learning rate, momentum or None) at the optimizer's current step."""
    lr = float(ops.convert_to_numpy(optimizer.learning_rate))
    has_momentum = hasattr(optimizer, "current_momentum")
    momentum = float(ops.convert_to_numpy(optimizer.current_momentum())) if has_momentum else None
    return lr, momentum


# ---------------------------------------------------------------------------------------
# Callbacks: hyper-parameters in the logs, face grids in TensorBoard, checkpoints and state.

def _callbacks(settings, run_dir, log_dir, X_val, Y_val, state, epoch_variable, has_validation,
               steps_per_epoch):

    class EpochCounter(keras.callbacks.Callback):
        """Tell the input pipeline which epoch starts: its order and augmentation depend on it."""
        def on_epoch_begin(self, epoch, logs=None):
            epoch_variable.assign(epoch)

    class Hyperparameters(keras.callbacks.Callback):
        """Put learning rate, momentum and the epoch's seconds in the epoch logs (CSV history
        and TensorBoard)."""
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs["seconds"] = time.perf_counter() - self.started
            lr, momentum = current_hyperparameters(self.model.optimizer)
            logs["learning_rate"] = lr
            if momentum is not None:
                logs["momentum"] = momentum

    class GraphAndFaces(keras.callbacks.Callback):
        """The op graph of the network (Keras 3's callback only writes its conceptual graph),
        and every N epochs validation faces with predicted (red) and true (green) keypoints."""

        def on_train_begin(self, logs=None):
            import tensorflow as tf
            # autograph=False: a plain call needs no conversion (and autograph cannot read a lambda's source).
            forward = tf.function(lambda x: self.model(x, training=False), autograph=False)
            graph = forward.get_concrete_function(tf.TensorSpec([None, 96, 96, 1], tf.float32)).graph
            with tf.summary.create_file_writer(str(log_dir / "train")).as_default():
                tf.summary.graph(graph)
            self.writer = tf.summary.create_file_writer(str(log_dir / "images"))

        def on_epoch_end(self, epoch, logs=None):
            if (epoch + 1) % settings["image_every"] and epoch + 1 != (state["planned_epochs"] or settings["epochs"]):
                return
            import tensorflow as tf
            picture = face_grid_png(self.model, X_val[:16], Y_val[:16], title=f"epoch {epoch + 1}")
            with self.writer.as_default():
                tf.summary.image("validation_faces", tf.image.decode_png(picture)[None], step=epoch)
            self.writer.flush()

    class Checkpoints(keras.callbacks.Callback):
        """Each epoch: last.keras (weights, optimizer and the run's state in one atomic file),
        best.keras on improvement, state.json; early stopping (its counters survive --resume);
        a non-finite loss or score stops the run and is never saved; with a time limit, the
        epochs and the schedule are planned to fit it."""
        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.started
            loss, train_rmse = float(logs.get("loss", np.nan)), float(logs.get("rmse_px", np.nan))
            score = float(logs.get("val_rmse_px", np.nan))
            if not (np.isfinite(loss) and np.isfinite(train_rmse) and (not has_validation or np.isfinite(score))
                    and weights_are_finite(self.model)):
                state["diverged"] = (f"the loss became {loss} at epoch {epoch + 1} (learning rate "
                                     f"{current_hyperparameters(self.model.optimizer)[0]:.3g} too high?)")
                print(f"stopping: {state['diverged']}; nothing of this epoch is saved")
                self.model.stop_training = True
                return
            # Best = lowest validation RMSE (the score), whichever loss is being minimised;
            # without validation faces, the latest epoch.
            best = state["best_val_rmse_px"]
            improved = not has_validation or best is None or score < best
            state["epoch"] = epoch + 1
            state["seconds"] += seconds
            state["epoch_seconds"].append(round(seconds, 3))
            if improved:
                state.update(best_epoch=epoch + 1, wait=0, best_val_rmse_px=score if has_validation else None,
                             best_train_rmse_px=train_rmse)
                _atomic_save(self.model, run_dir / "best.keras", state)
            else:
                state["wait"] += 1
            if settings["time_limit"]:
                self.plan_to_budget(epoch)
            _atomic_save(self.model, run_dir / "last.keras", state)
            _atomic_json(state, run_dir / "state.json")     # for people; resume reads last.keras
            self.started = time.perf_counter()
            if state["wait"] >= settings["patience"]:
                print(f"early stopping: no better validation RMSE for {settings['patience']} epochs")
                self.model.stop_training = True
            if state["planned_epochs"] and state["epoch"] >= state["planned_epochs"]:
                lr, final = current_hyperparameters(self.model.optimizer)[0], settings["final_learning_rate"]
                planned = settings["schedule"] in ("linear", "cosine")
                ended = abs(lr - final) <= 0.1 * final
                print(f"time limit: {state['seconds']:.0f} s of training for {settings['time_limit']:g} s, "
                      f"{state['epoch']} epochs; learning rate {lr:.3g}" +
                      ("" if not planned else " (the schedule has ended)" if ended else
                       f", not the schedule's final {final:.3g}: the budget was too short to fit it"))
                self.model.stop_training = True
            elif settings["time_limit"] and state["seconds"] >= 1.5 * settings["time_limit"]:
                print(f"time limit: {state['seconds']:.0f} s, 1.5x the budget (epochs got slower); "
                      "stopping before the schedule's end")
                self.model.stop_training = True

        def plan_to_budget(self, epoch):
            """After the first epoch (which also traces the graph) and again after the second
            (a typical one), fit the number of epochs into the budget and make the learning
            rate and momentum schedules end with the last of them."""
            times = state["epoch_seconds"]
            if len(times) > 2:
                return
            per_epoch = times[-1]
            fitted = len(times) + int((settings["time_limit"] - sum(times)) // max(per_epoch, 1e-3))
            planned = max(len(times), min(fitted, settings["epochs"] or fitted))
            state["planned_epochs"] = planned
            if planned <= len(times):
                return          # the budget is spent; the stop below says how far the schedule got
            plan_steps(self.model.optimizer, planned * steps_per_epoch)
            print(f"time plan: {per_epoch:.1f} s per epoch -> {planned} epochs in {settings['time_limit']:g} s; "
                  f"the {settings['schedule']} schedule now ends at epoch {planned}")

    return [
        EpochCounter(),
        Hyperparameters(),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        # Weight histograms as often as the face grids: writing them costs ~0.4 s for v6,
        # 5% of its epoch, every epoch.
        keras.callbacks.TensorBoard(str(log_dir), histogram_freq=settings["image_every"], write_graph=True),
        GraphAndFaces(),
        Checkpoints(),
    ]


def _atomic_save(model, path, state=None):
    """model.save to `path` through a temporary file and a rename: a reader (or a --resume
    after a kill) sees the old file or the new one, never half of one. `state` (the run's
    epoch count, best score...) goes inside the same file, so the weights and the epoch they
    belong to are written together."""
    if not weights_are_finite(model):
        raise FloatingPointError(f"refusing to write {path}: the weights are not finite")

    def write(tmp):
        model.save(tmp)
        if state is not None:
            import zipfile
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(CHECKPOINT_STATE, json.dumps(state, default=str))
    cli.write_atomically(path, write)


CHECKPOINT_STATE = "fkd_state.json"   # the run's state inside a checkpoint's .keras zip


def _atomic_json(data, path):
    cli.write_atomically(path, lambda t: t.write_text(json.dumps(data, indent=2, default=str)))


def weights_are_finite(model):
    return all(np.isfinite(w).all() for w in model.get_weights())


# ---------------------------------------------------------------------------------------
# Where models go: never over the model that ships with the repository by accident.

SHIPPED_FILES = ("model.keras", "model.json", "learning_curve.png")


def protected_model_dir(folder):
    """Why `folder` holds a model that ships with the repository (so a run must not replace
    it), or None. Shipped: git tracks one of its SHIPPED_FILES; or its model.json says
    "shipped": true (set when the shipped weights are reproduced); or, in a copy without
    .git, it is models/<a version in models.SHIPPED>/ with a model.keras in it."""
    folder = Path(folder)
    present = [name for name in SHIPPED_FILES if (folder / name).exists()]
    if not present:
        return None
    tracked = _git_tracked(folder, present)
    if tracked:
        return f"git tracks {folder / tracked[0]}"
    try:
        if json.loads((folder / "model.json").read_text()).get("shipped") is True:
            return f"{folder / 'model.json'} says it is the shipped model"
    except (OSError, ValueError, AttributeError):
        pass
    if folder.parent.name == "models" and folder.name in models.SHIPPED and (folder / "model.keras").exists():
        return f"{folder.name} is a version whose model ships with the repository (models.SHIPPED)"
    return None


def _git_tracked(folder, names):
    """The names (files in `folder`) that git tracks; [] outside a repository or without git."""
    import subprocess
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", *names], cwd=folder, capture_output=True,
                             timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    listed = {Path(p).name for p in out.stdout.decode(errors="replace").split("\0") if p}
    return [name for name in names if name in listed]


def model_destination(settings, run_dir):
    """(folder for model.keras and model.json, a note for the user or None), decided before
    any work: an explicit --model-dir that holds a shipped model needs --overwrite; the
    default models/<version>/ falls back to runs/<run_id>/ when a shipped model is there."""
    if settings["model_dir"]:
        out = Path(settings["model_dir"])
        existing = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
        if not existing.is_dir():
            raise cli.InputError(f"--model-dir {out}: {existing} is a file; the model goes into a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise cli.InputError(f"--model-dir {out}: {existing} is not writable")
        why = protected_model_dir(out)
        if why and not settings["overwrite"]:
            raise cli.UsageError(f"--model-dir {out}: holds the shipped model ({why}); pass --overwrite "
                                 "as well to replace it (that is how the shipped weights are reproduced), "
                                 "or leave --model-dir out: the run's model then goes to runs/RUN_ID/")
        held = [out / name for name in ("model.keras", "model.json") if (out / name).exists()]
        # A resumed run replaces the model it saved itself when it was stopped.
        if held and not settings["overwrite"] and not (settings["resume"] and _saved_by(out, run_dir)):
            raise cli.UsageError(f"--model-dir {out}: holds a model ({held[0]}); pass --overwrite to "
                                 "replace it, or name another folder")
        return out, (f"replacing the shipped model in {out} (--overwrite)" if why else None)
    out = Path(settings["root"]) / "models" / settings["model"]
    why = protected_model_dir(out)
    if why:
        return run_dir, (f"{out} holds the shipped model ({why}); it is kept, and this run's model "
                         f"goes to {run_dir / 'model.keras'}")
    return out, None


def _saved_by(folder, run_dir):
    """Whether folder/model.json says that the run in run_dir saved it."""
    try:
        saved = json.loads((folder / "model.json").read_text())["run_dir"]
        return Path(saved).resolve() == run_dir.resolve()
    except (OSError, ValueError, TypeError, KeyError):
        return False


class RunLock:
    """One process trains in a run folder at a time: an exclusive flock on runs/<run_id>.lock
    (beside the folder, so that --overwrite can replace the folder), held while training.
    The kernel drops a flock when its process dies, so a lock left by a crash is stale by
    construction: it is taken over, and reported."""

    def __init__(self, run_dir):
        self.path = run_dir.with_name(run_dir.name + ".lock")
        self.file = None

    def __enter__(self):
        import fcntl
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise cli.UsageError(f"run {self.path.stem} is being trained by {holder} (lock {self.path}); "
                                 "wait for it, or pick another --run-id") from None
        self.file.seek(0)
        previous = self.file.read().strip()
        if previous:
            print(f"note: {self.path} was left by {previous}, which is no longer running "
                  "(a crash or a kill); taking it over")
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {os.uname().nodename}")
        self.file.flush()
        return self

    def __exit__(self, *exc):
        import fcntl
        self.file.seek(0)
        self.file.truncate()          # empty: released cleanly
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
        self.path.unlink(missing_ok=True)
        return False


# ---------------------------------------------------------------------------------------
# What a run trained on, so that its figures can be checked (evaluate.py --run, and a warning
# when a model is scored on its own training faces).

FACE_HASH_HEX = 12    # 48 bits per face: collisions among ~10^5 faces are ~10^-5 likely


def face_hashes(X):
    """A short hash of each face's pixels (as 8-bit grey levels), to recognise the same faces
    in another file: which of them a model was trained on."""
    import hashlib
    pixels = np.clip(np.rint(np.asarray(X, np.float32) * 255), 0, 255).astype(np.uint8)
    return [hashlib.blake2b(face.tobytes(), digest_size=FACE_HASH_HEX // 2).hexdigest() for face in pixels]


# ---------------------------------------------------------------------------------------
# Training.

class RunExistsError(cli.UsageError, FileExistsError):
    """The run folder holds an earlier run, and neither --resume nor --overwrite was given."""


class TrainingDiverged(cli.InputError):
    """The loss or the weights stopped being finite; no model was written."""


def train(**overrides):
    """Train one model version; returns a Run (see the module docstring for what it writes).
    Every setting is checked before any work starts (cli.UsageError naming the option)."""
    settings, sources = resolve_settings_and_sources(**overrides)
    if settings["resume"]:
        settings = validate_settings(settings)      # the run id, before it is used as a path
        settings = _resumed_settings(settings, overrides)
        sources = {key: ("given" if key in overrides else "the resumed run") for key in DEFAULTS}
    settings = validate_settings(settings)
    root = Path(settings["root"])
    for folder in (root / "runs", root / "logs"):
        cli.writable_folder(folder, f"--root {root}: the folder")
    run_id = settings["run_id"] or f"{settings['model']}-{datetime.now():%m%d-%H%M%S}"
    settings["run_id"] = check_run_id(run_id)
    run_dir, log_dir = root / "runs" / run_id, root / "logs" / run_id
    if settings["overwrite"] and not settings["resume"]:
        for key in ("data", "init_from"):
            if settings[key] and any(Path(settings[key]).resolve().is_relative_to(folder.resolve())
                                     for folder in (run_dir, log_dir)):
                raise cli.UsageError(f"{flag(key)} {settings[key]}: is inside the run {run_id}, which "
                                     "--overwrite deletes; copy it elsewhere first, or pick another --run-id")
    model_dir, note = model_destination(settings, run_dir) if settings["save_model"] else (None, None)
    if settings["verbose"]:
        print(f"{settings['model']}, run {run_id}: settings (value, where it comes from)\n"
              + settings_table(settings, sources))
    if note:
        print(f"note: {note}")
    with RunLock(run_dir):
        return _train(settings, run_dir, log_dir, model_dir)


def _train(settings, run_dir, log_dir, model_dir):
    run_id = settings["run_id"]
    strategy = distribution_strategy(settings["strategy"], settings["devices"])
    keras.utils.set_random_seed(settings["seed"])
    state = dict(epoch=0, best_epoch=0, wait=0, seconds=0.0, epoch_seconds=[], planned_epochs=None,
                 best_val_rmse_px=None, best_train_rmse_px=None, diverged=None)
    n_outputs = len(settings["cols"]) if settings["cols"] else len(input_data.COLUMNS)
    # Whatever can refuse the input (the network's options, the checkpoint to resume, the
    # data) is read and checked before the run folder changes: an error deletes nothing.
    with strategy.scope():   # variables live on every replica; the global batch is split
        model = _resumed_network(settings, run_dir, n_outputs, state) if settings["resume"] else None
        resumed = model is not None
        if model is None:
            model = _new_network(settings, n_outputs)

    # Split all rows first, so that the validation faces are the same whichever columns or
    # rows a run then uses (complete rows, specialists, masked), and comparisons are fair.
    X, Y, people = _load_for_training(settings)
    train_idx, val_idx = split_validation(len(X), settings["validation"], settings["seed"], people)
    X_train, Y_train, X_val, Y_val = X[train_idx], Y[train_idx], X[val_idx], Y[val_idx]
    if not settings["all_rows"]:
        X_train, Y_train, _ = complete_rows(X_train, Y_train)
        X_val, Y_val, _ = complete_rows(X_val, Y_val)
    if len(X_train) == 0 or (settings["validation"] > 0 and len(X_val) == 0):
        raise input_data.DataError(f"{settings['data']}: {len(X_train)} training and {len(X_val)} "
                                   "validation faces with the keypoints asked for")
    steps_per_epoch = int(np.ceil(len(X_train) / settings["batch_size"]))
    axis = resolve_mirror_axis(settings["mirror_axis"], Y_train, settings["cols"])
    _prepare_run_dir(settings, run_dir, log_dir, state, resumed)
    state["mirror_axis_px"] = axis
    split_by = "person" if people is not None else "random rows"
    replicas = f"; {strategy.num_replicas_in_sync} replicas" if settings["strategy"] else ""
    mirrored = f"; labels mirror about x = {axis:.2f} px" if augment.parse(settings["augment"]).flip else ""
    print(f"{settings['model']}: {len(X_train)} training and {len(X_val)} validation faces "
          f"(split by {split_by}); run {run_id}{replicas}{mirrored}")
    if not resumed:
        with strategy.scope():
            model.compile(optimizer=make_optimizer(settings, steps_per_epoch,
                                                   settings["epochs"] or DEFAULTS["epochs"]),
                          loss=LOSSES[settings["loss"]], metrics=[MaskedRMSE()])
        source = data_path(settings["data"], settings["root"])
        data_record = dict(path=str(source.resolve()), rows=len(X), sha256=input_data.file_sha256(source),
                           all_rows=settings["all_rows"], cols=settings["cols"],
                           validation_rows=[int(i) for i in val_idx],
                           validation_people=None if people is None else sorted(set(people[val_idx].tolist())))
        _atomic_json(data_record, run_dir / "split.json")
    _atomic_json(settings, run_dir / "settings.json")

    import tensorflow as tf
    epoch = tf.Variable(state["epoch"], dtype=tf.int64, trainable=False)  # set by EpochCounter
    train_data = augment.pipeline(X_train, Y_train, settings["batch_size"], settings["augment"],
                                  seed=settings["seed"], cols=settings["cols"], epoch=epoch,
                                  mirror_axis=axis)
    val_data = augment.pipeline(X_val, Y_val, settings["batch_size"], "none", shuffle=False) if len(X_val) else None
    X_show, Y_show = (X_val, Y_val) if len(X_val) else (X_train, Y_train)   # for the face grids
    max_epochs = settings["epochs"] or 10 ** 6     # with a time limit and no epochs: the plan stops it
    ctrl_c = _CtrlC()
    try:
        with ctrl_c:
            if state["epoch"] < (state["planned_epochs"] or max_epochs) and state["wait"] < settings["patience"]:
                model.fit(train_data, validation_data=val_data, epochs=max_epochs,
                          initial_epoch=state["epoch"], verbose=settings["verbose"], shuffle=False,
                          callbacks=[ctrl_c.callback()] + _callbacks(settings, run_dir, log_dir, X_show,
                                                                     Y_show, state, epoch, len(X_val) > 0,
                                                                     steps_per_epoch))
    except KeyboardInterrupt:       # a second Ctrl-C: stopped at once, mid-step
        ctrl_c.pressed = True
    interrupted = ctrl_c.pressed
    if interrupted:
        print(f"\ninterrupted after epoch {state['epoch']}; saved {run_dir / 'last.keras'}. "
              f"Continue with: python train.py --model {settings['model']} --run-id {run_id} --resume")

    history = _read_history(run_dir / "history.csv")
    ending = _end_run(model, settings, state, run_dir, X_val, Y_val)
    model.mirror_axis = axis      # for flip TTA (augment.predict_with_flip); model.json keeps it
    result = Run(model=model, history=history, settings=settings, run_dir=run_dir, log_dir=log_dir,
                 val_rmse_px=state["best_val_rmse_px"], train_rmse_px=state["best_train_rmse_px"],
                 best_epoch=state["best_epoch"], epochs_run=state["epoch"], seconds=state["seconds"],
                 interrupted=interrupted, n_train=len(X_train), n_val=len(X_val), ended_on=ending,
                 X_val=X_val, Y_val=Y_val, mirror_axis=axis, steps=int(ops.convert_to_numpy(model.optimizer.iterations)),
                 planned_epochs=state["planned_epochs"], final_learning_rate=None,
                 train_face_hashes=face_hashes(X_train) if settings["save_model"] else None)
    if len(history):
        result.final_learning_rate = float(history["learning_rate"].iloc[-1])
        plot_learning_curve(history, run_dir / "learning_curve.png", title=run_id, ending=(ending, state),
                            train_label=train_curve_label(model, settings))
        if not state["diverged"] or state["best_epoch"]:
            face_grid_png(model, X_show[:16], Y_show[:16], path=run_dir / "samples.png",
                          title=f"{run_id}: {'validation' if len(X_val) else 'training'} faces, {ending}")
    if state["diverged"]:
        kept = (f"the best epoch ({state['best_epoch']}) is in {run_dir / 'best.keras'}"
                if state["best_epoch"] else "no epoch finished")
        raise TrainingDiverged(f"training diverged: {state['diverged']}; {kept}; no model was written. "
                               "Try a lower --learning-rate")
    if settings["save_model"] and state["best_epoch"]:
        result.model_path = save_model(model, result, model_dir)
    return result


def _resumed_network(settings, run_dir, n_outputs, state):
    """The network of run_dir/last.keras, with the run's state (written inside it with its
    weights) put into `state`; None when no epoch was checkpointed (a run killed in its first
    epoch starts again). A checkpoint that is there but cannot be read is an InputError: starting
    again would delete the run's epochs."""
    import zipfile
    import zlib
    path = run_dir / "last.keras"
    if not path.exists():
        return None
    model = None
    try:
        with zipfile.ZipFile(path) as archive:
            saved = json.loads(archive.read(CHECKPOINT_STATE))
        problem = _state_problem(saved)
        model = None if problem else keras.models.load_model(path)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, EOFError, zipfile.BadZipFile,
            zlib.error) as error:   # a damaged file: Keras and zipfile raise all of these
        problem = f"{error.__class__.__name__}: {cli.one_line(error)[:200]}"
    if model is not None and (model.name != settings["model"] or model.output_shape[-1] != n_outputs):
        problem = (f"it holds {model.name} with {model.output_shape[-1]} outputs; the run's settings say "
                   f"{settings['model']} with {n_outputs}")
    if problem:
        raise cli.InputError(f"{path}: not a checkpoint to continue from ({problem}); nothing was "
                             "changed: restore the file, or start the run again with --overwrite")
    state.update(saved)
    return model


# The kind of each value of a run's state that a checkpoint may hold.
_STATE_KINDS = dict(epoch=int, best_epoch=int, wait=int, seconds=(int, float), epoch_seconds=list,
                    planned_epochs=(int, type(None)), best_val_rmse_px=(int, float, type(None)),
                    best_train_rmse_px=(int, float, type(None)))


def _state_problem(saved):
    """What is wrong with the state read from a checkpoint, or None."""
    if not isinstance(saved, dict) or "epoch" not in saved:
        return f"its {CHECKPOINT_STATE} is not an object holding the run's epoch"
    for key, kinds in _STATE_KINDS.items():
        if key in saved and (isinstance(saved[key], bool) or not isinstance(saved[key], kinds)):
            return f"its {CHECKPOINT_STATE} has {key} = {cli.one_line(repr(saved[key]))[:40]}"
    return None


def _prepare_run_dir(settings, run_dir, log_dir, state, resumed):
    """Make the run folder ready, once everything is checked: continuing a checkpoint (resumed),
    drop history rows past it (a kill after the history but before the checkpoint); resuming
    a run without one, start it again; else an empty folder (--overwrite empties it)."""
    if resumed:
        history = run_dir / "history.csv"
        if history.exists():
            rows = _read_history(history)
            rows[rows["epoch"] < state["epoch"]].to_csv(history, index=False)
        best = state.get("best_val_rmse_px")
        print(f"resuming {settings['run_id']} after epoch {state['epoch']}"
              + (f" (best validation RMSE so far {best:.3f} px)" if best is not None else ""))
        return
    if settings["resume"]:
        print(f"resuming {settings['run_id']}: no epoch was checkpointed; starting from epoch 1")
        for name in ("history.csv", "best.keras", "state.json"):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(log_dir, ignore_errors=True)
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if not settings["overwrite"]:
            raise RunExistsError(f"{run_dir} holds an earlier run: continue it with --resume, "
                                 "pick another --run-id, or pass --overwrite")
        shutil.rmtree(run_dir)
        shutil.rmtree(log_dir, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)


def _new_network(settings, n_outputs):
    """The version's network (one it cannot be built with is a usage error naming --option or
    --init), pre-trained from init_from if given."""
    try:
        model = build_network(settings, n_outputs)
    except NETWORK_ERRORS as error:
        raise cli.UsageError(f"{_blamed_for_network(settings, n_outputs)}: {network_problem(error)}") from None
    if settings["init_from"]:
        try:
            source = load_model(settings["init_from"])
        except cli.InputError as error:         # it names the file and what is wrong with it
            raise cli.InputError(f"--init-from {error}") from None
        except (ValueError, OSError, KeyError) as error:
            raise cli.InputError(f"--init-from {settings['init_from']}: not a Keras model file "
                                 f"({cli.one_line(error)[:200]})") from None
        copied = transfer_weights(source, model)
        if not copied:      # a silent fresh start would pass for a pre-trained run
            raise cli.InputError(f"--init-from {settings['init_from']}: shares no layer (same name and weight "
                                 f"shapes) with {settings['model']}'s network, so nothing would start from it; "
                                 "give a model.keras of the same version (or leave --init-from out)")
        print(f"pre-trained from {settings['init_from']}: {', '.join(copied)}")
    return model


def _network_errors():
    import tensorflow as tf     # its OpErrors: ResourceExhaustedError (too big for memory), ...
    return TypeError, ValueError, OverflowError, MemoryError, tf.errors.OpError


# What building a network with settings it cannot take raises.
NETWORK_ERRORS = _network_errors()


def network_problem(error):
    """What a NETWORK_ERRORS error says, in one short line."""
    if isinstance(error, MemoryError) or type(error).__name__ == "ResourceExhaustedError":
        return "the network does not fit in memory"
    return cli.one_line(error)[:300]


def _blamed_for_network(settings, n_outputs):
    """The setting a network that cannot be built is blamed on: --init when the default
    initializer builds it (identity cannot fill a convolution kernel), else --option."""
    options = settings["model_options"]
    init = f"--init {settings['init']} (for {settings['model']})"
    if settings["init"] != DEFAULTS["init"]:
        if not options:
            return init
        try:
            build_network({**settings, "init": DEFAULTS["init"]}, n_outputs)
            return init
        except NETWORK_ERRORS:
            pass
    return f"--option {_options_text(options)}" if options else f"--model {settings['model']}"


def _options_text(options):
    """Model options as the command line gives them: units=50 dropout=0.5."""
    return " ".join(f"{k}={v}" for k, v in options.items()) or "(none)"


def data_path(data, root="."):
    """The file a run trains on: `data`, or Kaggle's training file in <root>/data/ (synthetic
    faces are written there when it is absent)."""
    if data is not None:
        return Path(data)
    import synthetic_faces  # Kaggle's files, or synthetic faces written when they are absent
    files, _ = synthetic_faces.kaggle_files(Path(root) / "data")
    return Path(files["training"])


def _load_for_training(settings):
    """load_arrays with every row; a file that cannot be read is an InputError naming it."""
    import pickle
    import zipfile
    try:
        return load_arrays(data_path(settings["data"], settings["root"]), True, settings["root"], settings["cols"])
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, UnicodeError) as error:
        raise cli.InputError(f"--data {settings['data']}: cannot be read as faces "
                             f"({error.__class__.__name__}: {cli.one_line(error)})") from None


def _end_run(model, settings, state, run_dir, X_val, Y_val):
    """Put into `model` what the run ends with, record it in state.json, and say it: the weight
    average when it is warm, else the best epoch (the last one without validation faces)."""
    ema, steps = settings["ema"], int(ops.convert_to_numpy(model.optimizer.iterations))
    warm_steps = int(np.ceil(EMA_WARM_TIME_CONSTANTS / (1 - ema))) if ema else None
    if ema and state["epoch"] and not state["diverged"] and steps >= warm_steps:
        # The run ends as its weights' moving average (idempotent if fit already wrote it; a
        # second Ctrl-C skips fit's own finalisation). It is scored once, here: the per-epoch
        # validation figures are the raw weights'.
        model.optimizer.finalize_variable_values(model.trainable_weights)
        score = float(rmse_px(Y_val, model.predict(X_val, batch_size=256, verbose=0))) if len(X_val) else None
        ending = f"weight average over {state['epoch']} epochs (ema {ema}, {steps} steps)"
        state.update(best_epoch=state["epoch"], best_val_rmse_px=score, final_model="average.keras")
        _atomic_save(model, run_dir / "average.keras")
    else:
        if ema and state["epoch"]:
            print(f"the weight average (ema {ema}) is not warm after {steps} steps (it needs {warm_steps}: "
                  "the first weights would still weigh over 5%); the run ends on its best epoch instead")
        if (run_dir / "best.keras").exists():
            model.set_weights(keras.models.load_model(run_dir / "best.keras", compile=False).get_weights())
        ending = (f"best epoch {state['best_epoch']} of {state['epoch']}" if len(X_val) else
                  f"last epoch {state['best_epoch']} (no validation faces)")
        state["final_model"] = "best.keras"
    state["ended_on"] = ending
    _atomic_json(state, run_dir / "state.json")
    return ending


class _CtrlC:
    """Ctrl-C during training: the first press ends the epoch after the current batch (its
    validation, checkpoint and state are written as usual), a second one stops at once.
    A flag rather than KeyboardInterrupt, so that the interrupt never lands inside TensorFlow
    (an exception raised while tf.data builds an epoch's iterator could leave its threads hung)."""

    def __init__(self):
        self.pressed = False
        self.previous = None

    def __enter__(self):
        import signal
        import threading
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        import signal
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False

    def _handle(self, signum, frame):
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        print("\nCtrl-C: stopping after this batch (press again to stop at once)", flush=True)

    def callback(self):
        ctrl_c = self

        class StopOnCtrlC(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if ctrl_c.pressed:
                    self.model.stop_training = True
        return StopOnCtrlC()


PRECISIONS = inference.PRECISIONS


def build_network(settings, n_outputs=30):
    """The version's network() with n_outputs, uncompiled, in the settings' precision.

    bfloat16 is Keras's mixed_bfloat16 policy: float32 weights, bf16 arithmetic. The layers in
    the module's FLOAT32_LAYERS (default: `out`) and those that read the image stay float32
    (inference.to_bfloat16), so that the coordinates keep float32's precision (bf16 has 8
    bits: 0.1 px steps at the frame's edge).
    """
    if settings["precision"] not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {settings['precision']!r}")
    model = models.load(settings["model"]).network(init=settings["init"], **settings["model_options"])
    if n_outputs != model.output_shape[-1]:
        model = with_outputs(model, n_outputs, settings["init"])
    if settings["precision"] == "float32":
        return model
    return inference.to_bfloat16(model)


def distribution_strategy(name, devices=None):
    """tf.distribute strategy for `name`; the default strategy (one device) for None.

    mirrored: one replica per local GPU; on a machine without GPUs, `devices` logical CPUs
    (must be set before TensorFlow first touches a device). multiworker: the machines that
    TF_CONFIG lists, each running this same command (see README).
    """
    import tensorflow as tf
    if name is None:
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_physical_devices("GPU")
        if gpus or not devices:
            return tf.distribute.MirroredStrategy()
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)])
        except RuntimeError:  # TensorFlow has started already: fine if it has those devices
            if len(tf.config.list_logical_devices("CPU")) != devices:
                raise RuntimeError(f"cannot split the CPU into {devices} devices after TensorFlow "
                                   "has started; train in a fresh process") from None
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(devices)])
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be None, mirrored or multiworker, not {name!r}")


class Run(SimpleNamespace):
    """What train() returns: model (best weights), history (DataFrame), val_rmse_px, paths..."""
    model_path = None


# What a run's network was built with: its checkpoint holds that network, so --resume keeps them.
BUILT_WITH = ("model", "model_options", "cols", "precision")


def _resumed_settings(settings, overrides):
    """A resumed run keeps its saved settings (checked as if given); what is passed again
    changes, but for BUILT_WITH, which may only be repeated."""
    run_id = settings["run_id"]
    if not run_id:
        raise cli.UsageError("--resume needs --run-id (the folder name under runs/)")
    path = Path(settings["root"]) / "runs" / run_id / "settings.json"
    if not path.exists():
        raise cli.InputError(f"--run-id {run_id}: nothing to resume: {path} does not exist")
    saved = cli.read_json_object(path)
    cli.json_field(saved, "model", lambda v: isinstance(v, str), "a model version such as v2_convnet", path)
    try:        # a setting missing from an older engine's file is that version's default
        saved = validate_settings(resolve_settings(**saved))
    except cli.UsageError as error:
        raise cli.InputError(f"{path}: {cli.one_line(error)}") from None
    for key in BUILT_WITH:
        if key in overrides and settings[key] != saved[key]:
            option, show = ("--option", _options_text) if key == "model_options" else (flag(key), _show)
            raise cli.UsageError(f"{option} {show(settings[key])}: run {run_id} was built with "
                                 f"{show(saved[key])}, and --resume continues that network; leave "
                                 f"{option} out, or start a new run")
    # settings: the given values, the model's name normalised ('v1' -> v1_single_layer).
    return {**saved, **{key: settings[key] for key in overrides}, "root": settings["root"]}


def _read_history(path):
    import pandas as pd
    if not path.exists():
        return pd.DataFrame()
    try:
        history = pd.read_csv(path)
        return history.drop_duplicates("epoch", keep="last").reset_index(drop=True)
    except (ValueError, KeyError) as error:     # pandas' parser errors are ValueErrors
        raise cli.InputError(f"{path}: not a readable history ({error.__class__.__name__}: "
                             f"{cli.one_line(error)[:200]})") from None


def inference_copy(model):
    """The same network and weights without the optimizer's state (Adam's two moments per
    weight make a compiled model.keras three times larger): what models/<version>/ holds.
    The checkpoints in runs/ keep the optimizer, for --resume."""
    copy = model.__class__.from_config(model.get_config())   # not clone_model: it compiles the copy
    copy.set_weights(model.get_weights())
    return copy


def save_model(model, result, out=None):
    """model.keras (what the run ended with) and model.json (how it was trained, and on what:
    the data file's digest and a hash of every training face, for evaluate.py's warning)
    into `out` (default: model_destination's choice)."""
    settings = result.settings
    out = Path(out or model_destination(settings, result.run_dir)[0])
    out.mkdir(parents=True, exist_ok=True)
    replacing_shipped = protected_model_dir(out) is not None
    _atomic_save(inference_copy(model), out / "model.keras")
    import tensorflow as tf
    split = json.loads((result.run_dir / "split.json").read_text()) if (result.run_dir / "split.json").exists() else {}
    info = dict(
        model=settings["model"], run_id=settings["run_id"], trained=datetime.now().isoformat(timespec="seconds"),
        data=str(settings["data"]), train_faces=result.n_train, validation_faces=result.n_val,
        ended_on=result.ended_on,
        best_epoch=result.best_epoch, epochs_run=result.epochs_run, mirror_axis_px=result.mirror_axis,
        train_rmse_px=result.train_rmse_px, val_rmse_px=result.val_rmse_px,
        seconds=round(result.seconds, 1), seconds_per_epoch=round(result.seconds / max(result.epochs_run, 1), 2),
        parameters=model.count_params(), settings=settings,
        versions=dict(tensorflow=tf.__version__, keras=keras.__version__),
        command=" ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if sys.argv[0].endswith("train.py") else None,
        run_dir=str(result.run_dir),
        training_data=dict(path=split.get("path"), sha256=split.get("sha256"), rows=split.get("rows"),
                           validation_people=split.get("validation_people")),
    )
    if replacing_shipped:
        info["shipped"] = True          # still protected in a copy without .git
    # Last and on one line: a 12-hex-digit hash of each training face's pixels.
    info["train_face_hashes"] = " ".join(result.train_face_hashes or [])
    _atomic_json(info, out / "model.json")
    if (result.run_dir / "learning_curve.png").exists() and out != result.run_dir:
        shutil.copyfile(result.run_dir / "learning_curve.png", out / "learning_curve.png")
    return out / "model.keras"


# ---------------------------------------------------------------------------------------
# Using a trained model: loading, predicting, measuring.

load_model = inference.load_model        # (inference is the lower layer; kept here for callers)
mirror_axis_of = inference.mirror_axis_of


def rmse_px(Y_true, Y_pred, axis=None):
    """RMSE in pixels (96-px frame) over present keypoints; axis=0 gives it per column.

    Only a NaN in Y_true is a missing label. A NaN prediction of a present label makes the RMSE
    NaN (a diverged model must not score well), and so does having no label at all (not 0 px)."""
    error = (np.asarray(Y_pred, np.float64) - np.asarray(Y_true, np.float64)) * 48.0
    present = np.broadcast_to(~np.isnan(np.asarray(Y_true, np.float64)), error.shape)
    squared = np.where(present, error, 0.0) ** 2
    with np.errstate(invalid="ignore"):   # 0 / 0 where nothing is present: NaN
        return np.sqrt(squared.sum(axis=axis) / present.sum(axis=axis))


def face_grid_png(model, X, Y_true=None, title=None, path=None):
    """4x4 faces with predicted (red x) and true (green +) keypoints, as PNG bytes."""
    predicted = input_data.keypoints_to_pixels(model.predict(X, verbose=0))
    truth = None if Y_true is None else input_data.keypoints_to_pixels(Y_true)
    return input_data.plot_samples(X, predicted, path, truth=truth, title=title)


def train_curve_label(model, settings):
    """The training curve's legend: what the train figure is measured with."""
    conditions = []
    if augment.parse(settings["augment"]) != augment.NONE:
        conditions.append(f"augmented: {settings['augment']}")
    if any(isinstance(layer, keras.layers.Dropout) for layer in model.layers):
        conditions.append("dropout on")
    return "train" + (f" ({', '.join(conditions)})" if conditions else "")


def plot_learning_curve(history, path, title=None, ending=None, train_label="train"):
    """Train vs validation RMSE (the score, whatever the loss) on a log scale, as in the
    tutorials' loss plots, and the figure the run ends with: ending = (text, state)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(history["epoch"] + 1, history["rmse_px"], label=train_label)
    if "val_rmse_px" in history and history["val_rmse_px"].notna().any():
        ax.plot(history["epoch"] + 1, history["val_rmse_px"], label="valid")
    if ending is not None:
        text, state = ending
        value = state.get("best_val_rmse_px")
        value = state.get("best_train_rmse_px") if value is None else value
        if value is not None and np.isfinite(value) and state.get("best_epoch"):
            ax.plot([state["best_epoch"]], [value], "k*", markersize=12,
                    label=f"ends on: {text.split(' (')[0]}, {value:.3f} px")
    ax.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE (px of the 96-px frame)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


# ---------------------------------------------------------------------------------------
# Command line.

def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)

    overrides = {k: v for k, v in vars(args).items()
                 if k in DEFAULTS and v is not None and k not in ("resume", "overwrite")}
    overrides["resume"] = bool(args.resume)
    overrides["overwrite"] = bool(args.overwrite)
    overrides["save_model"] = not args.no_save
    if args.quiet:
        overrides["verbose"] = 2
    if args.option:
        overrides["model_options"] = dict(_parse_option(o) for o in args.option)
    if "cols" in overrides:
        overrides["cols"] = [c.strip() for c in overrides["cols"].split(",") if c.strip()]
    for key in ("final_momentum", "strategy", "time_limit", "devices", "run_id", "data", "model_dir",
                "init_from"):
        if isinstance(overrides.get(key), str) and overrides[key].lower() == "none":
            overrides[key] = None
    if args.resume and not args.run_id:
        raise cli.UsageError("--resume needs --run-id (the folder name under runs/)")
    # At 0 the run learns nothing, yet would be saved like one that did. Only here: the Python
    # API keeps 0, which tests use to see what --init-from loaded. --final-learning-rate may be
    # 0: a linear or cosine schedule that ends at 0 has learned on the way there.
    if overrides.get("learning_rate") == 0:
        raise cli.UsageError(f"--learning-rate: got {overrides['learning_rate']!r}; must be more than 0 "
                             "(at 0 the weights never change)")
    if args.dry_run:
        return _dry_run(overrides)
    run = train(**overrides)
    score = (f"validation RMSE {run.val_rmse_px:.3f} px" if run.val_rmse_px is not None else
             f"train RMSE {run.train_rmse_px:.3f} px (no validation faces)")
    print(f"ends on the {run.ended_on}: {score} ({run.seconds / max(run.epochs_run, 1):.1f} s/epoch)")
    if run.model_path:
        print(f"model: {run.model_path}")
    if run.n_val:
        root = run.settings["root"]
        print(f"check it: python evaluate.py --run {run.settings['run_id']}"
              + (f" --root {root}" if str(root) != "." else ""))


def _parse_option(text):
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise cli.UsageError(f"--option: got {text!r}; must be KEY=VALUE, e.g. units=50")
    return key.strip(), _parse_value(value)


def _dry_run(overrides):
    """The whole engine on a tiny synthetic set, in a temporary folder (CI runs this)."""
    import tempfile
    import synthetic_faces
    with tempfile.TemporaryDirectory() as tmp:
        images, keypoints = synthetic_faces.make_faces(256, seed=0)
        data = input_data.write_csv(Path(tmp) / "training.csv", images, keypoints)
        overrides = {**overrides, "data": str(data), "epochs": 1, "root": tmp, "batch_size": 64}
        overrides.pop("model_dir", None)
        run = train(**overrides)
        print(f"dry run ok: {run.epochs_run} epoch, validation RMSE {run.val_rmse_px:.2f} px, "
              f"wrote {sorted(p.name for p in (Path(tmp) / 'runs' / run.settings['run_id']).iterdir())}")


if __name__ == "__main__":
    cli.run(main)
