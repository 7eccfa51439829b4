"""The training engine: every model version is trained here, from the notebook or the shell.

    python train.py --model v2_convnet --data data/training.csv --epochs 100
    python train.py --model v3_convnet_dropout --resume --run-id v3_convnet_dropout-0131-1200

    import train
    run = train.train(model="v2_convnet", data="data/training.csv", epochs=100)
    run.val_rmse_px, run.history, run.model

Settings resolve in three layers: DEFAULTS below, then the model module's SETTINGS (its
tutorial's choices), then what you pass. A run writes
    logs/<run_id>/                    TensorBoard: loss, RMSE in pixels, learning rate, momentum,
                                      weight histograms, the graph, validation faces every N epochs
    runs/<run_id>/                    last.keras + best.keras (average.keras with ema) checkpoints, state.json,
                                      history.csv, learning_curve.png, samples.png
    models/<version>/model.keras      the best weights, and model.json: how they were trained
"""
import argparse
import json
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import augment  # noqa: E402
import inference  # noqa: E402
import input_data  # noqa: E402
import models  # noqa: E402

DEFAULTS = dict(
    model="v2_convnet",
    model_options={},         # passed to network(), e.g. {"units": 50} for v1_single_layer
    data=None,                # a Kaggle-format CSV (.csv/.zip), data.p, or None: data/ (else synthetic)
    all_rows=False,           # keep rows with missing keypoints (the masked loss ignores them)
    cols=None,                # train on these keypoint columns only (specialists); None: all 30
    init_from=None,           # a model.keras whose weights start this one, layer by layer where
                              # names and shapes match (supervised pre-training: all but `out`)
    model_dir=None,           # where model.keras and model.json go; None: <root>/models/<version>
    validation=0.1,           # fraction held out; by person when <data>.sources.csv exists;
                              # 0: train on everything for all `epochs` (the shipped models)
    epochs=100,
    batch_size=128,
    optimizer="nesterov",     # sgd | nesterov | adam | adamw
    learning_rate=0.03,
    final_learning_rate=0.0001,
    momentum=0.9,
    final_momentum=0.999,     # None keeps momentum constant
    schedule="linear",        # constant | linear | exponential | cosine
    lr_decay=0.96,            # exponential: lr * lr_decay ** (step / decay_step), as TFLearn's
    decay_step=100,
    weight_decay=0.0,
    ema=0.0,                  # e.g. 0.998: the model ends as the exponential moving average of its
                              # weights over the training steps (Keras's optimizer EMA), scored once
                              # at the end; 0: it ends as its best epoch (by validation RMSE)
    loss="mse",               # mse | l1 | wing: the error on present keypoints that training minimises
    precision="float32",      # float32 | bfloat16: bf16 arithmetic (float32 weights) where the CPU
                              # has AVX-512 BF16 / AMX or on a GPU; coordinates stay float32
    init="glorot_uniform",    # glorot_uniform (Xavier) | he_normal | zeros | any Keras initializer
    augment="flip",           # none | all | comma list of flip, rotate, shift, scale, light (each =size optional)
    mirror_axis="auto",       # pixels: the x about which mirrored faces' labels mirror (augment.py);
                              # auto: the training labels' midline, the mean x of nose tip and lip
                              # centres (augment.mirror_axis); 47.5: the image's own axis
    patience=30,              # early stopping: epochs without a better validation RMSE
    time_limit=None,          # seconds: stop after the epoch that reaches it (fixed-budget comparisons)
    image_every=5,            # validation faces and weight histograms in TensorBoard every N epochs
    run_id=None,              # default <model>-<MMDD-HHMMSS>
    resume=False,
    overwrite=False,          # replace an earlier run with the same run_id (else: refuse)
    seed=0,
    strategy=None,            # None | mirrored (all local GPUs, or `devices` CPUs) | multiworker (TF_CONFIG)
    devices=None,             # mirrored without GPUs: split the CPU into this many logical devices
    root=".",                 # where models/, runs/ and logs/ go
    save_model=True,          # write models/<version>/model.keras at the end
    verbose=1,
)


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
        done = ops.minimum(ops.cast(self.iterations, "float32") / float(self.momentum_steps), 1.0)
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

def resolve_settings(**overrides):
    """DEFAULTS, then the model module's SETTINGS, then overrides (unknown keys are errors)."""
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    name = overrides.get("model", DEFAULTS["model"])
    module = models.load(name)
    settings = {**DEFAULTS, **getattr(module, "SETTINGS", {}), **overrides}
    settings["model"] = module.__name__.split(".")[-1]
    return settings


def load_arrays(data=None, all_rows=False, root=".", cols=None):
    """(X float32 (N, 96, 96, 1), Y float32 (N, k) unit coords, NaN = missing, people or None).

    data None: Kaggle's training file in <root>/data/, else synthetic faces written there.
    cols: the keypoint columns to keep (default all 30); all_rows=False keeps only the rows
    that have every one of them.
    """
    if data is None:
        import synthetic_faces  # Kaggle's files, or synthetic faces written when they are absent
        files, _ = synthetic_faces.kaggle_files(Path(root) / "data")
        data = files["training"]
    path = Path(data)
    if path.name.endswith((".p", ".p.zip")):
        import serializer
        (X, Y), _ = serializer.load(path)
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
    if not all_rows:
        X, Y, people = complete_rows(X, Y, people)
    if len(X) < 2:
        raise input_data.DataError(f"{path}: {len(X)} usable faces; need at least 2 "
                                   f"{'' if all_rows else '(try all_rows=True)'}")
    return X, Y, people


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
    sources = path.with_suffix(".sources.csv")
    if not sources.exists():
        return None
    with open(sources, newline="") as f:
        people = [row["person"] for row in csv.DictReader(f)]
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

def make_optimizer(settings, steps_per_epoch):
    total_steps = max(1, settings["epochs"] * steps_per_epoch)
    lr, final_lr = float(settings["learning_rate"]), float(settings["final_learning_rate"])
    schedules = keras.optimizers.schedules
    schedule = {
        "constant": lambda: lr,
        "linear": lambda: schedules.PolynomialDecay(lr, total_steps, final_lr, power=1.0),
        "exponential": lambda: schedules.ExponentialDecay(lr, settings["decay_step"], settings["lr_decay"]),
        "cosine": lambda: schedules.CosineDecay(lr, total_steps, alpha=final_lr / lr),
    }
    if settings["schedule"] not in schedule:
        raise ValueError(f"schedule must be one of {', '.join(schedule)}, not {settings['schedule']!r}")
    learning_rate = schedule[settings["schedule"]]()
    wd = float(settings["weight_decay"]) or None
    ema = float(settings["ema"])
    if not 0 <= ema < 1:
        raise ValueError(f"ema is a momentum in [0, 1) (0: off), not {ema}")
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
    raise ValueError(f"optimizer must be sgd, nesterov, adam or adamw, not {name!r}")


def current_hyperparameters(optimizer):
    """(learning rate, momentum or None) at the optimizer's current step."""
    lr = float(ops.convert_to_numpy(optimizer.learning_rate))
    has_momentum = hasattr(optimizer, "current_momentum")
    momentum = float(ops.convert_to_numpy(optimizer.current_momentum())) if has_momentum else None
    return lr, momentum


# ---------------------------------------------------------------------------------------
# Callbacks: hyper-parameters in the logs, face grids in TensorBoard, checkpoints and state.

def _callbacks(settings, run_dir, log_dir, X_val, Y_val, state, epoch_variable):

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
            if (epoch + 1) % settings["image_every"] and epoch + 1 != settings["epochs"]:
                return
            import tensorflow as tf
            picture = face_grid_png(self.model, X_val[:16], Y_val[:16], title=f"epoch {epoch + 1}")
            with self.writer.as_default():
                tf.summary.image("validation_faces", tf.image.decode_png(picture)[None], step=epoch)
            self.writer.flush()

    class Checkpoints(keras.callbacks.Callback):
        """last.keras every epoch, best.keras on improvement, state.json: written atomically;
        also early stopping with best-weight restore (its counters survive --resume)."""
        def on_epoch_end(self, epoch, logs=None):
            # Best = lowest validation RMSE (the score), whichever loss is being minimised;
            # without validation faces, the latest epoch.
            score = float(logs.get("val_rmse_px", np.nan))
            best = state["best_val_rmse_px"]
            improved = np.isnan(score) or best is None or score < best
            if improved:
                state.update(best_epoch=epoch + 1, wait=0,
                             best_val_rmse_px=None if np.isnan(score) else score,
                             best_train_rmse_px=float(logs["rmse_px"]))
                if not settings["ema"]:     # with ema the run ends as the average, not this
                    _atomic_save(self.model, run_dir / "best.keras")
            else:
                state["wait"] += 1
            state["epoch"] = epoch + 1
            state["seconds"] += time.perf_counter() - self.started
            self.started = time.perf_counter()
            _atomic_save(self.model, run_dir / "last.keras")
            _atomic_json(state, run_dir / "state.json")
            if state["wait"] >= settings["patience"]:
                print(f"early stopping: no better validation RMSE for {settings['patience']} epochs")
                self.model.stop_training = True
            if settings["time_limit"] and state["seconds"] >= settings["time_limit"]:
                print(f"time limit: {state['seconds']:.0f} s of training after epoch {epoch + 1}")
                self.model.stop_training = True

        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()

    return [
        EpochCounter(),
        Hyperparameters(),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=settings["resume"]),
        # Weight histograms as often as the face grids: writing them costs ~0.4 s for v6,
        # 5% of its epoch, every epoch.
        keras.callbacks.TensorBoard(str(log_dir), histogram_freq=settings["image_every"], write_graph=True),
        GraphAndFaces(),
        Checkpoints(),
    ]


def _atomic_save(model, path):
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def _atomic_json(data, path):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------
# Training.

def train(**overrides):
    """Train one model version; returns a Run (see the module docstring for what it writes)."""
    settings = resolve_settings(**overrides)
    if settings["resume"]:
        settings = _resumed_settings(settings, overrides)
    root = Path(settings["root"])
    run_id = settings["run_id"] or f"{settings['model']}-{datetime.now():%m%d-%H%M%S}"
    settings["run_id"] = run_id
    run_dir, log_dir = root / "runs" / run_id, root / "logs" / run_id
    strategy = distribution_strategy(settings["strategy"], settings["devices"])
    keras.utils.set_random_seed(settings["seed"])

    # Split all rows first, so that the validation faces are the same whichever columns or
    # rows a run then uses (complete rows, specialists, masked), and comparisons are fair.
    X, Y, people = load_arrays(settings["data"], True, settings["root"], settings["cols"])
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
    split_by = "person" if people is not None else "random rows"
    replicas = f"; {strategy.num_replicas_in_sync} replicas" if settings["strategy"] else ""
    mirrored = f"; labels mirror about x = {axis:.2f} px" if augment.parse(settings["augment"]).flip else ""
    print(f"{settings['model']}: {len(X_train)} training and {len(X_val)} validation faces "
          f"(split by {split_by}); run {run_id}{replicas}{mirrored}")

    state = dict(epoch=0, best_epoch=0, wait=0, seconds=0.0, mirror_axis_px=axis,
                 best_val_rmse_px=None, best_train_rmse_px=None)
    with strategy.scope():   # variables live on every replica; the global batch is split
        model = _build_or_resume(settings, state, run_dir, log_dir, Y.shape[1], steps_per_epoch)
    _atomic_json(settings, run_dir / "settings.json")

    import tensorflow as tf
    epoch = tf.Variable(state["epoch"], dtype=tf.int64, trainable=False)  # set by EpochCounter
    train_data = augment.pipeline(X_train, Y_train, settings["batch_size"], settings["augment"],
                                  seed=settings["seed"], cols=settings["cols"], epoch=epoch,
                                  mirror_axis=axis)
    val_data = augment.pipeline(X_val, Y_val, settings["batch_size"], "none", shuffle=False) if len(X_val) else None
    X_show, Y_show = (X_val, Y_val) if len(X_val) else (X_train, Y_train)   # for the face grids
    ctrl_c = _CtrlC()
    try:
        with ctrl_c:
            if state["epoch"] < settings["epochs"] and state["wait"] < settings["patience"]:
                model.fit(train_data, validation_data=val_data, epochs=settings["epochs"],
                          initial_epoch=state["epoch"], verbose=settings["verbose"], shuffle=False,
                          callbacks=[ctrl_c.callback()] + _callbacks(settings, run_dir, log_dir, X_show,
                                                                     Y_show, state, epoch))
    except KeyboardInterrupt:       # a second Ctrl-C: stopped at once, mid-step
        ctrl_c.pressed = True
        _atomic_save(model, run_dir / "last.keras")
    interrupted = ctrl_c.pressed
    if interrupted:
        print(f"\ninterrupted after epoch {state['epoch']}; saved {run_dir / 'last.keras'}. "
              f"Continue with: python train.py --model {settings['model']} --run-id {run_id} --resume")

    history = _read_history(run_dir / "history.csv")
    if settings["ema"] and state["epoch"]:
        # The run ends as its weights' moving average (idempotent if fit already wrote it; a
        # second Ctrl-C skips fit's own finalisation). It is scored once, here: the per-epoch
        # validation figures are the raw weights'.
        model.optimizer.finalize_variable_values(model.trainable_weights)
        score = float(rmse_px(Y_val, model.predict(X_val, batch_size=256, verbose=0))) if len(X_val) else None
        state.update(best_epoch=state["epoch"], best_val_rmse_px=score,
                     best_train_rmse_px=float(history["rmse_px"].iloc[-1]) if len(history) else None)
        _atomic_save(model, run_dir / "average.keras")
        _atomic_json(state, run_dir / "state.json")
        if score is not None:
            print(f"weight average (ema {settings['ema']}): validation RMSE {score:.3f} px")
    elif (run_dir / "best.keras").exists():   # early stopping's best-weight restore
        model.set_weights(keras.models.load_model(run_dir / "best.keras").get_weights())
    model.mirror_axis = axis      # for flip TTA (augment.predict_with_flip); model.json keeps it
    result = Run(model=model, history=history, settings=settings, run_dir=run_dir, log_dir=log_dir,
                 val_rmse_px=state["best_val_rmse_px"], train_rmse_px=state["best_train_rmse_px"],
                 best_epoch=state["best_epoch"], epochs_run=state["epoch"], seconds=state["seconds"],
                 interrupted=interrupted, n_train=len(X_train), n_val=len(X_val),
                 X_val=X_val, Y_val=Y_val, mirror_axis=axis)
    if len(history):
        plot_learning_curve(history, run_dir / "learning_curve.png", title=run_id)
        face_grid_png(model, X_show[:16], Y_show[:16], title=f"{run_id}: {'validation' if len(X_val) else 'training'} faces",
                      path=run_dir / "samples.png")
    if settings["save_model"] and state["best_epoch"]:
        result.model_path = save_model(model, result)
    return result


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


def _build_or_resume(settings, state, run_dir, log_dir, n_outputs, steps_per_epoch):
    """The compiled model: from last.keras when resuming, else new (and maybe pre-trained)."""
    if settings["resume"]:
        if not (run_dir / "last.keras").exists():
            raise FileNotFoundError(f"nothing to resume: {run_dir / 'last.keras'} does not exist")
        state.update(json.loads((run_dir / "state.json").read_text()))
        best = state.get("best_val_rmse_px")
        print(f"resuming {settings['run_id']} after epoch {state['epoch']}"
              + (f" (best validation RMSE so far {best:.3f} px)" if best is not None else ""))
        return keras.models.load_model(run_dir / "last.keras")
    if (run_dir / "state.json").exists():
        if not settings["overwrite"]:
            raise FileExistsError(f"{run_dir} holds an earlier run: continue it with --resume, "
                                  "pick another --run-id, or pass --overwrite")
        shutil.rmtree(run_dir)
        shutil.rmtree(log_dir, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = build_network(settings, n_outputs)
    if settings["init_from"]:
        copied = transfer_weights(load_model(settings["init_from"]), model)
        print(f"pre-trained from {settings['init_from']}: {', '.join(copied) or 'no layers'}")
    if settings["loss"] not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {settings['loss']!r}")
    model.compile(optimizer=make_optimizer(settings, steps_per_epoch), loss=LOSSES[settings["loss"]],
                  metrics=[MaskedRMSE()])
    return model


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


def _resumed_settings(settings, overrides):
    """A resumed run keeps its saved settings; only what is passed again changes."""
    if not settings["run_id"]:
        raise ValueError("resume needs the run_id of the run to continue")
    saved = Path(settings["root"]) / "runs" / settings["run_id"] / "settings.json"
    if not saved.exists():
        raise FileNotFoundError(f"nothing to resume: {saved} does not exist")
    return {**json.loads(saved.read_text()), **overrides}


def _read_history(path):
    import pandas as pd
    if not path.exists():
        return pd.DataFrame()
    history = pd.read_csv(path)
    return history.drop_duplicates("epoch", keep="last").reset_index(drop=True)


def inference_copy(model):
    """The same network and weights without the optimizer's state (Adam's two moments per
    weight make a compiled model.keras three times larger): what models/<version>/ holds.
    The checkpoints in runs/ keep the optimizer, for --resume."""
    copy = model.__class__.from_config(model.get_config())   # not clone_model: it compiles the copy
    copy.set_weights(model.get_weights())
    return copy


def save_model(model, result):
    """models/<version>/model.keras (best weights) and model.json (how it was trained)."""
    settings = result.settings
    out = Path(settings["model_dir"] or Path(settings["root"]) / "models" / settings["model"])
    out.mkdir(parents=True, exist_ok=True)
    _atomic_save(inference_copy(model), out / "model.keras")
    import tensorflow as tf
    info = dict(
        model=settings["model"], run_id=settings["run_id"], trained=datetime.now().isoformat(timespec="seconds"),
        data=str(settings["data"]), train_faces=result.n_train, validation_faces=result.n_val,
        best_epoch=result.best_epoch, epochs_run=result.epochs_run, mirror_axis_px=result.mirror_axis,
        train_rmse_px=result.train_rmse_px, val_rmse_px=result.val_rmse_px,
        seconds=round(result.seconds, 1), seconds_per_epoch=round(result.seconds / max(result.epochs_run, 1), 2),
        parameters=model.count_params(), settings=settings,
        versions=dict(tensorflow=tf.__version__, keras=keras.__version__),
        command=" ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if sys.argv[0].endswith("train.py") else None,
    )
    _atomic_json(info, out / "model.json")
    if (result.run_dir / "learning_curve.png").exists():
        shutil.copyfile(result.run_dir / "learning_curve.png", out / "learning_curve.png")
    return out / "model.keras"


# ---------------------------------------------------------------------------------------
# Using a trained model: loading, predicting, measuring.

def load_model(path):
    """A model.keras from this engine (or any Keras model), ready to predict; its
    `mirror_axis` (for flip TTA) comes from the model.json beside it, else 47.5."""
    model = keras.models.load_model(path, compile=False)
    model.mirror_axis = mirror_axis_of(path)
    return model


def mirror_axis_of(path):
    """The labels' mirror axis a saved model was trained with (model.json beside it, or the
    run's state.json), in pixels; augment.CENTER (47.5) when neither says."""
    for name in ("model.json", "state.json"):
        try:
            value = json.loads((Path(path).parent / name).read_text()).get("mirror_axis_px")
        except (OSError, ValueError, AttributeError):
            continue
        if value is not None:
            return float(value)
    return augment.CENTER


def rmse_px(Y_true, Y_pred, axis=None):
    """RMSE in pixels (96-px frame) over present keypoints; axis=0 gives it per column."""
    error = (np.asarray(Y_pred, np.float64) - np.asarray(Y_true, np.float64)) * 48.0
    present = ~np.isnan(error)
    squared = np.where(present, error, 0.0) ** 2
    return np.sqrt(squared.sum(axis=axis) / np.maximum(present.sum(axis=axis), 1))


def face_grid_png(model, X, Y_true=None, title=None, path=None):
    """4x4 faces with predicted (red x) and true (green +) keypoints, as PNG bytes."""
    predicted = input_data.keypoints_to_pixels(model.predict(X, verbose=0))
    truth = None if Y_true is None else input_data.keypoints_to_pixels(Y_true)
    return input_data.plot_samples(X, predicted, path, truth=truth, title=title)


def plot_learning_curve(history, path, title=None):
    """Train vs validation RMSE (the score, whatever the loss) on a log scale, as in the
    tutorials' loss plots."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(history["epoch"] + 1, history["rmse_px"], label="train (augmented, dropout on)")
    if "val_rmse_px" in history and history["val_rmse_px"].notna().any():
        ax.plot(history["epoch"] + 1, history["val_rmse_px"], label="valid")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE (px of the 96-px frame)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


# ---------------------------------------------------------------------------------------
# Command line.

def main(argv=None):
    parser = argparse.ArgumentParser(description="Train a model version on Kaggle-format faces.")
    parser.add_argument("--model", default=DEFAULTS["model"], help="a module in models/, e.g. v2_convnet")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="model option for network(), e.g. --option units=50")
    parser.add_argument("--dry-run", action="store_true",
                        help="a 1-epoch run on 256 synthetic faces into a temporary folder")
    for key, default in DEFAULTS.items():
        if key in ("model", "model_options", "resume", "overwrite", "save_model", "verbose"):
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", default=None)
        elif isinstance(default, (int, float)) or key in ("time_limit", "devices"):
            parser.add_argument(flag, type=_parse_value, default=None, metavar=str(default))
        else:
            parser.add_argument(flag, default=None)
    parser.add_argument("--resume", action="store_true", help="continue run --run-id from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run with the same --run-id")
    parser.add_argument("--no-save", action="store_true", help="do not write models/<version>/")
    args = parser.parse_args(argv)

    overrides = {k: v for k, v in vars(args).items()
                 if k in DEFAULTS and v is not None and k not in ("resume", "overwrite")}
    overrides["resume"] = args.resume
    overrides["overwrite"] = args.overwrite
    overrides["save_model"] = not args.no_save
    if args.option:
        overrides["model_options"] = dict(_parse_option(o) for o in args.option)
    if "cols" in overrides:
        overrides["cols"] = [c.strip() for c in overrides["cols"].split(",") if c.strip()]
    if args.resume and not args.run_id:
        parser.error("--resume needs --run-id (the folder name under runs/)")
    if args.dry_run:
        return _dry_run(overrides)
    try:
        run = train(**overrides)
    except input_data.DataError as error:
        sys.exit(f"error: {error}")
    score = (f"best validation RMSE {run.val_rmse_px:.3f} px at epoch {run.best_epoch}"
             if run.val_rmse_px is not None else
             f"trained on every face (no validation): train RMSE {run.train_rmse_px:.3f} px after epoch {run.best_epoch}")
    print(f"{score} ({run.seconds / max(run.epochs_run, 1):.1f} s/epoch)")
    if run.model_path:
        print(f"saved {run.model_path}")


def _parse_value(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None if text.lower() == "none" else text


def _parse_option(text):
    key, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"--option needs KEY=VALUE, got {text!r}")
    return key, _parse_value(value)


def _dry_run(overrides):
    """The whole engine on a tiny synthetic set, in a temporary folder (CI runs this)."""
    import tempfile
    import synthetic_faces
    with tempfile.TemporaryDirectory() as tmp:
        images, keypoints = synthetic_faces.make_faces(256, seed=0)
        data = input_data.write_csv(Path(tmp) / "training.csv", images, keypoints)
        overrides = {**overrides, "data": str(data), "epochs": 1, "root": tmp, "batch_size": 64}
        run = train(**overrides)
        print(f"dry run ok: {run.epochs_run} epoch, validation RMSE {run.val_rmse_px:.2f} px, "
              f"wrote {sorted(p.name for p in (Path(tmp) / 'runs' / run.settings['run_id']).iterdir())}")


if __name__ == "__main__":
    main()
