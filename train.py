"""The training engine: every model version is trained here, from the notebook or the shell.

    python train.py --model v2_convnet --data data/training.csv --epochs 100
    python train.py --model v3_convnet_dropout --resume --run-id v3_convnet_dropout-0131-1200

    import train
    run = train.train(model="v2_convnet", data="data/training.csv", epochs=100)
    run.val_rmse_px, run.history, run.model

This file tells the story of a run, from train() down; its parts are in training/ (the
settings, run folders and resume, data, losses, optimizers, the network, checkpoints,
callbacks, figures: see training/__init__.py). Settings resolve in three layers: the engine's
defaults (training/settings.py, with the command line), then the model module's SETTINGS (its
tutorial's choices), then what you pass; every run prints the table of what it uses and where
each value comes from (`python train.py --model v6 --help` shows it too). A run writes
    logs/<run_id>/                    TensorBoard: loss, RMSE in pixels, learning rate, momentum,
                                      weight histograms, the graph, validation faces every N epochs
    runs/<run_id>/                    last.keras (weights + optimizer + the epoch count, one atomic
                                      file), best.keras (average.keras with a warm ema),
                                      state.json, split.json (the validation rows), history.csv,
                                      learning_curve.png, samples.png
    models/<version>/model.keras      what the run ends with, and model.json: how it was trained
                                      and, for a model with heatmaps (v6), the confidence bar
                                      predict.py marks faces `low` under (confidence.py).
                                      A model that ships with the repository (tracked by git, see
                                      training.runs.protected_model_dir) is never replaced: the
                                      run's model then goes to runs/<run_id>/model.keras, unless
                                      you name that folder with --model-dir and pass --overwrite (an
                                      explicit --model-dir that holds any model needs --overwrite too).
"""
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __name__ == "__main__":
    # A mistyped option (or --help) is answered before TensorFlow's 5-9 s import; main() reads
    # the same parser again once the engine is loaded.
    from training import settings as _settings  # noqa: E402
    _settings.check_command_line(sys.argv[1:])

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import augment  # noqa: E402
import cli  # noqa: E402
import confidence  # noqa: E402
import inference  # noqa: E402
import input_data  # noqa: E402
# The engine's parts; train.X keeps working for each name that notebooks, tools and tests use.
from training import device  # noqa: E402
from training.callbacks import CtrlC, run_callbacks  # noqa: E402
from training.checkpoints import CHECKPOINT_STATE, atomic_save, resumed_network, \
    weights_are_finite  # noqa: E402,F401
from training.data import complete_rows, data_path, face_hashes, load_arrays, load_for_training, \
    resolve_mirror_axis, split_validation  # noqa: E402,F401
from training.figures import face_grid_png, plot_learning_curve, train_curve_label  # noqa: E402
from training.fused_batch_norm import fused_batch_norm  # noqa: E402
from training.hparams import log_hparams  # noqa: E402
from training.losses import LOSSES, WING_CURVATURE, WING_WIDTH, MaskedRMSE, masked_l1, masked_mse, \
    masked_wing, rmse_px  # noqa: E402,F401
from training.network import NETWORK_ERRORS, PRECISIONS, build_network, distribution_strategy, \
    inference_copy, network_problem, new_network, transfer_weights, with_outputs  # noqa: E402,F401
from training.optimizers import OPTIMIZERS, SCHEDULES, PlannedSchedule, ScheduledSGD, \
    current_hyperparameters, make_optimizer, plan_steps  # noqa: E402,F401
from training.runs import BUILT_WITH, RunExistsError, RunLock, atomic_json, json_writer, model_destination, \
    prepare_run_dir, protected_model_dir, read_history, resumed_settings  # noqa: E402,F401
from training.settings import DEFAULTS, HELP, SETTINGS, Setting, UnknownSettingError, build_parser, \
    check_run_id, command_line_values, flag, options_text, resolve_settings, \
    resolve_settings_and_sources, settings_table, validate_settings, _parse_value, _show  # noqa: E402,F401

load_model = inference.load_model        # (inference is the lower layer; kept here for callers)
mirror_axis_of = inference.mirror_axis_of
_options_text, _resumed_settings = options_text, resumed_settings    # older names

# A weight average is "warm" when the starting weights weigh less than e^-3 (5%) in it:
# after 3 / (1 - ema) steps (1,500 for ema 0.998). Before that it is mostly the first
# epochs' weights, and the run ends on its best epoch instead.
EMA_WARM_TIME_CONSTANTS = 3.0


class Run(SimpleNamespace):
    """What train() returns: model (best weights), history (DataFrame), val_rmse_px, paths..."""
    model_path = None


class TrainingDiverged(cli.InputError):
    """The loss or the weights stopped being finite; no model was written."""


def train(**overrides):
    """Train one model version; returns a Run (see the module docstring for what it writes).
    Every setting is checked before any work starts (cli.UsageError naming the option)."""
    settings, sources = resolve_settings_and_sources(**overrides)
    if settings["resume"]:
        settings = validate_settings(settings)      # the run id, before it is used as a path
        settings = resumed_settings(settings, overrides)
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
    devices = device.local_devices()
    # The precision by device ("auto"; training/device.py), fixed before the network is built:
    # settings.json records it, so a resumed run continues the same network.
    settings["precision"] = device.choose(devices, settings["batch_size"], settings["precision"],
                                          bfloat16_ready=device.bfloat16_ready(settings["model"])).precision
    with strategy.scope():   # variables live on every replica; the global batch is split
        model = resumed_network(settings, run_dir, n_outputs, state) if settings["resume"] else None
        resumed = model is not None
        if model is None:
            model = new_network(settings, n_outputs)
    plan = device.choose(devices, settings["batch_size"], settings["precision"],
                         bytes_per_face=device.training_bytes_per_face(model))
    settings["batch_size"] = plan.batch_size        # smaller only where the GPU's memory needs it

    # Split all rows first, so that the validation faces are the same whichever columns or
    # rows a run then uses (complete rows, specialists, masked), and comparisons are fair.
    X, Y, people = load_for_training(settings)
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
    prepare_run_dir(settings, run_dir, log_dir, state, resumed)
    state["mirror_axis_px"] = axis
    split_by = "person" if people is not None else "random rows"
    replicas = f"; {strategy.num_replicas_in_sync} replicas" if settings["strategy"] else ""
    mirrored = f"; labels mirror about x = {axis:.2f} px" if augment.parse(settings["augment"]).flip else ""
    print(f"{settings['model']}: {len(X_train)} training and {len(X_val)} validation faces "
          f"(split by {split_by}); run {run_id}{replicas}{mirrored}\ndevice: {plan.text}")
    if not resumed:
        with strategy.scope():
            optimizer = make_optimizer(settings, steps_per_epoch, settings["epochs"] or DEFAULTS["epochs"])
            model.compile(optimizer=device.optimizer_for(plan.precision, optimizer), jit_compile=plan.jit_compile,
                          loss=LOSSES[settings["loss"]], metrics=[MaskedRMSE()])
        source = data_path(settings["data"], settings["root"])
        data_record = dict(path=str(source.resolve()), rows=len(X), sha256=input_data.file_sha256(source),
                           all_rows=settings["all_rows"], cols=settings["cols"],
                           validation_rows=[int(i) for i in val_idx],
                           validation_people=None if people is None else sorted(set(people[val_idx].tolist())))
    # settings.json and split.json as one (settings.json renamed first): a run killed here has
    # both or neither, or settings.json alone, which --resume starts afresh; never split.json alone.
    writes = [(run_dir / "settings.json", json_writer(settings))]
    if not resumed:
        writes.append((run_dir / "split.json", json_writer(data_record)))
    cli.write_all_atomically(writes)

    import tensorflow as tf
    epoch = tf.Variable(state["epoch"], dtype=tf.int64, trainable=False)  # set by EpochCounter
    train_data = augment.pipeline(X_train, Y_train, settings["batch_size"], settings["augment"],
                                  seed=settings["seed"], cols=settings["cols"], epoch=epoch,
                                  mirror_axis=axis)
    val_data = augment.pipeline(X_val, Y_val, settings["batch_size"], "none", shuffle=False) if len(X_val) else None
    X_show, Y_show = (X_val, Y_val) if len(X_val) else (X_train, Y_train)   # for the face grids
    max_epochs = settings["epochs"] or 10 ** 6     # with a time limit and no epochs: the plan stops it
    ctrl_c = CtrlC()
    resume_line = f"Continue with: python train.py --model {settings['model']} --run-id {run_id} --resume"
    try:
        with ctrl_c, fused_batch_norm():      # Keras's batch norm layers, TensorFlow's fused kernel
            if state["epoch"] < (state["planned_epochs"] or max_epochs) and state["wait"] < settings["patience"]:
                model.fit(train_data, validation_data=val_data, epochs=max_epochs,
                          initial_epoch=state["epoch"], verbose=settings["verbose"], shuffle=False,
                          callbacks=run_callbacks(settings, run_dir, log_dir, X_show, Y_show, state, epoch,
                                                  len(X_val) > 0, steps_per_epoch, ctrl_c))
    except KeyboardInterrupt:       # a second Ctrl-C: stopped at once, mid-step; the command exits 130
        print(f"\ninterrupted at once in epoch {state['epoch'] + 1}; {run_dir / 'last.keras'} holds epoch "
              f"{state['epoch']}. {resume_line}", flush=True)
        raise
    interrupted = ctrl_c.pressed
    if interrupted:
        print(f"\ninterrupted after epoch {state['epoch']}; saved {run_dir / 'last.keras'}. {resume_line}")
    if ctrl_c.cut and state["epoch"]:     # the run ends as its last whole epoch left it
        with strategy.scope():
            model = keras.models.load_model(run_dir / "last.keras")

    history = read_history(run_dir / "history.csv")
    ending = _end_run(model, settings, state, run_dir, X_val, Y_val)
    model.mirror_axis = axis      # for flip TTA (augment.predict_with_flip); model.json keeps it
    result = Run(model=model, history=history, settings=settings, run_dir=run_dir, log_dir=log_dir,
                 val_rmse_px=state["best_val_rmse_px"], train_rmse_px=state["best_train_rmse_px"],
                 best_epoch=state["best_epoch"], epochs_run=state["epoch"], seconds=state["seconds"],
                 interrupted=interrupted, n_train=len(X_train), n_val=len(X_val), ended_on=ending,
                 X_val=X_val, Y_val=Y_val, mirror_axis=axis, steps=int(ops.convert_to_numpy(model.optimizer.iterations)),
                 planned_epochs=state["planned_epochs"], final_learning_rate=None, confidence_bar=None,
                 train_face_hashes=face_hashes(X_train) if settings["save_model"] else None)
    if len(history):
        result.final_learning_rate = float(history["learning_rate"].iloc[-1])
        plot_learning_curve(history, run_dir / "learning_curve.png", title=run_id, ending=(ending, state),
                            train_label=train_curve_label(model, settings))
        if not state["diverged"] or state["best_epoch"]:
            face_grid_png(model, X_show[:16], Y_show[:16], path=run_dir / "samples.png",
                          title=f"{run_id}: {'validation' if len(X_val) else 'training'} faces, {ending}")
    if result.epochs_run:
        log_hparams(log_dir, run_id, settings, dict(
            val_rmse_px=result.val_rmse_px, train_rmse_px=result.train_rmse_px, best_epoch=result.best_epoch,
            epochs_run=result.epochs_run, seconds_per_epoch=result.seconds / result.epochs_run))
    if state["diverged"]:
        kept = (f"the best epoch ({state['best_epoch']}) is in {run_dir / 'best.keras'}"
                if state["best_epoch"] else "no epoch finished")
        raise TrainingDiverged(f"training diverged: {state['diverged']}; {kept}; no model was written. "
                               "Try a lower --learning-rate")
    if settings["save_model"] and state["best_epoch"]:
        # The bar predict.py marks faces `low` under, on the faces the run held out (the
        # training faces when it held none out: fitted, so a little surer of them).
        copy = inference_copy(model)
        result.confidence_bar = inference.confidence_bar(copy, X_val if len(X_val) else X_train, len(X_val) > 0)
        if result.confidence_bar and settings["verbose"]:
            print(confidence.bar_line(result.confidence_bar))
        result.model_path = save_model(model, result, model_dir, copy)
    return result


def _end_run(model, settings, state, run_dir, X_val, Y_val):
    """Put into `model` what the run ends with, record it in state.json, and say it: the weight
    average when it is warm and scores no worse than the best epoch, else the best epoch (the
    last one without validation faces)."""
    ema, steps = settings["ema"], int(ops.convert_to_numpy(model.optimizer.iterations))
    warm_steps = int(np.ceil(EMA_WARM_TIME_CONSTANTS / (1 - ema))) if ema else None
    average = ema and state["epoch"] and not state["diverged"] and steps >= warm_steps
    if average:
        # The weights' moving average (idempotent if fit already wrote it), scored once here:
        # the per-epoch validation figures are the raw weights'.
        model.optimizer.finalize_variable_values(model.trainable_weights)
        score = float(rmse_px(Y_val, model.predict(X_val, batch_size=256, verbose=0))) if len(X_val) else None
        atomic_save(model, run_dir / "average.keras")
        best = state["best_val_rmse_px"]
        if score is not None and best is not None and best < score:
            average = False
            print(f"the weight average (ema {ema}) scores {score:.3f} px, the best epoch ({state['best_epoch']}) "
                  f"{best:.3f} px: the run ends on the better, its best epoch ({run_dir / 'average.keras'} "
                  "keeps the average)")
    if average:
        ending = f"weight average over {state['epoch']} epochs (ema {ema}, {steps} steps)"
        state.update(best_epoch=state["epoch"], best_val_rmse_px=score, final_model="average.keras")
    else:
        if ema and state["epoch"] and steps < warm_steps:
            print(f"the weight average (ema {ema}) is not warm after {steps} steps (it needs {warm_steps}: "
                  "the first weights would still weigh over 5%); the run ends on its best epoch instead")
        if (run_dir / "best.keras").exists():
            model.set_weights(keras.models.load_model(run_dir / "best.keras", compile=False).get_weights())
        ending = (f"best epoch {state['best_epoch']} of {state['epoch']}" if len(X_val) else
                  f"last epoch {state['best_epoch']} (no validation faces)")
        state["final_model"] = "best.keras"
    state["ended_on"] = ending
    atomic_json(state, run_dir / "state.json")
    return ending


def save_model(model, result, out=None, copy=None):
    """model.keras (what the run ended with: `copy`, its inference_copy, when already made) and
    model.json (how it was trained, and on what: the data file's digest and a hash of every
    training face, for evaluate.py's warning; the confidence bar, result.confidence_bar) into
    `out` (default: model_destination's choice)."""
    import shutil
    settings = result.settings
    out = Path(out or model_destination(settings, result.run_dir)[0])
    out.mkdir(parents=True, exist_ok=True)
    replacing_shipped = protected_model_dir(out) is not None
    atomic_save(copy if copy is not None else inference_copy(model), out / "model.keras")
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
    bar = result.confidence_bar
    if bar:                             # predict.py's bar for this model (confidence.py)
        info["low_confidence"] = bar["low_confidence"]
        info["confidence"] = {key: value for key, value in bar.items() if key != "low_confidence"}
    if replacing_shipped:
        info["shipped"] = True          # still protected in a copy without .git
    # Last and on one line: a 12-hex-digit hash of each training face's pixels.
    info["train_face_hashes"] = " ".join(result.train_face_hashes or [])
    atomic_json(info, out / "model.json")
    if (result.run_dir / "learning_curve.png").exists() and out != result.run_dir:
        shutil.copyfile(result.run_dir / "learning_curve.png", out / "learning_curve.png")
    return out / "model.keras"


# ---------------------------------------------------------------------------------------
# Command line.

def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    overrides = command_line_values(args)
    overrides["resume"] = bool(args.resume)
    overrides["overwrite"] = bool(args.overwrite)
    overrides["save_model"] = not args.no_save
    if args.quiet:
        overrides["verbose"] = 2
    if args.option:
        overrides["model_options"] = dict(_parse_option(o) for o in args.option)
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
    """--option KEY=VALUE as (key, value), the value read as a number or none where it is one."""
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
