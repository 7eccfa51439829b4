"""What happens around each epoch of model.fit: the input pipeline told the epoch, learning
rate and momentum in the logs, the graph and face grids in TensorBoard, checkpoints, early
stopping and the time plan, and Ctrl-C. run_callbacks() gives them in the order fit runs them."""
import shutil
import time

import keras
import numpy as np

import cli
from training.checkpoints import atomic_save, weights_are_finite
from training.figures import face_grid_png
from training.optimizers import current_hyperparameters, plan_steps
from training.runs import atomic_json


def run_callbacks(settings, run_dir, log_dir, X_show, Y_show, state, epoch_variable, has_validation,
                  steps_per_epoch, ctrl_c):
    """The callbacks of one run; `state` is the run's state, which Checkpoints keeps. An epoch
    that Ctrl-C cut short (ctrl_c.cut) is recorded nowhere: --resume trains it again whole."""
    return [
        StopOnCtrlC(ctrl_c, steps_per_epoch),
        EpochCounter(epoch_variable),
        Hyperparameters(),
        keras.callbacks.TerminateOnNaN(),
        History(run_dir / "history.csv", ctrl_c),
        # Weight histograms as often as the face grids: writing them costs ~0.4 s for v6,
        # 5% of its epoch, every epoch.
        TensorBoard(ctrl_c, str(log_dir), histogram_freq=settings["image_every"], write_graph=True),
        GraphAndFaces(log_dir, X_show, Y_show, settings, state, ctrl_c),
        Checkpoints(settings, run_dir, state, has_validation, steps_per_epoch, ctrl_c),
        Progress(settings, state),      # last, as fit's own: its line shows what the others added
    ]


class Progress(keras.callbacks.ProgbarLogger):
    """Keras's progress lines, saying "Epoch 3/12" with the epochs the run will have: with a
    time limit and no --epochs, the time plan's (fit itself is told a million)."""

    def __init__(self, settings, state):
        super().__init__()
        self.settings, self.state = settings, state

    def on_epoch_begin(self, epoch, logs=None):
        planned = self.state["planned_epochs"] or self.settings["epochs"]
        self.epochs = planned or 1           # 1: Keras prints no "Epoch" line of its own
        super().on_epoch_begin(epoch, logs)
        if not planned and self.verbose:
            print(f"Epoch {epoch + 1} (the time plan fits the number of epochs after the first ones)")


class History(keras.callbacks.CSVLogger):
    """history.csv, one row per whole epoch; a full disk names the file."""

    def __init__(self, path, ctrl_c):
        super().__init__(str(path), append=True)
        self.ctrl_c = ctrl_c

    def on_epoch_end(self, epoch, logs=None):
        if self.ctrl_c.cut:
            return
        try:
            super().on_epoch_end(epoch, logs)
        except OSError as error:
            raise cli.named_os_error(error, self.filename) from error


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback, leaving out an epoch that Ctrl-C cut short."""

    def __init__(self, ctrl_c, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ctrl_c = ctrl_c

    def on_epoch_end(self, epoch, logs=None):
        if not self.ctrl_c.cut:
            super().on_epoch_end(epoch, logs)


class EpochCounter(keras.callbacks.Callback):
    """Tell the input pipeline which epoch starts: its order and augmentation depend on it."""

    def __init__(self, epoch_variable):
        super().__init__()
        self.epoch_variable = epoch_variable

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_variable.assign(epoch)


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
    and every N epochs (and at the last planned one) validation faces with predicted (red)
    and true (green) keypoints."""

    def __init__(self, log_dir, X, Y, settings, state, ctrl_c):
        super().__init__()
        self.log_dir, self.X, self.Y, self.settings, self.state = log_dir, X, Y, settings, state
        self.ctrl_c = ctrl_c

    def on_train_begin(self, logs=None):
        import tensorflow as tf
        # autograph=False: a plain call needs no conversion (and autograph cannot read a lambda's source).
        forward = tf.function(lambda x: self.model(x, training=False), autograph=False)
        graph = forward.get_concrete_function(tf.TensorSpec([None, 96, 96, 1], tf.float32)).graph
        with tf.summary.create_file_writer(str(self.log_dir / "train")).as_default():
            tf.summary.graph(graph)
        self.writer = tf.summary.create_file_writer(str(self.log_dir / "images"))

    def on_epoch_end(self, epoch, logs=None):
        last = self.state["planned_epochs"] or self.settings["epochs"]
        if self.ctrl_c.cut or ((epoch + 1) % self.settings["image_every"] and epoch + 1 != last):
            return
        import tensorflow as tf
        picture = face_grid_png(self.model, self.X[:16], self.Y[:16], title=f"epoch {epoch + 1}")
        with self.writer.as_default():
            tf.summary.image("validation_faces", tf.image.decode_png(picture)[None], step=epoch)
        self.writer.flush()


class Checkpoints(keras.callbacks.Callback):
    """Each epoch: last.keras (weights, optimizer and the run's state in one atomic file),
    best.keras on improvement (a copy of last.keras: one save, not two), state.json; early
    stopping (its counters survive --resume); a non-finite loss or score stops the run and is
    never saved; with a time limit, the epochs and the schedule are planned to fit it. An
    epoch's seconds run from one epoch's end to the next: the training, the validation and the
    previous epoch's checkpoint, so the plan fits the time the run takes."""

    def __init__(self, settings, run_dir, state, has_validation, steps_per_epoch, ctrl_c):
        super().__init__()
        self.settings, self.run_dir, self.state = settings, run_dir, state
        self.has_validation, self.steps_per_epoch, self.ctrl_c = has_validation, steps_per_epoch, ctrl_c
        self.said_plan = None       # the plan last printed: small changes are not worth a line each

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        settings, state = self.settings, self.state
        if self.ctrl_c.cut:
            print(f"epoch {epoch + 1} was cut short by Ctrl-C after {self.ctrl_c.cut} of {self.steps_per_epoch} "
                  f"steps: it is not recorded, and the run stays at epoch {state['epoch']} (--resume trains "
                  f"epoch {epoch + 1} again)")
            return
        now = time.perf_counter()
        seconds, self.started = now - self.started, now
        loss, train_rmse = float(logs.get("loss", np.nan)), float(logs.get("rmse_px", np.nan))
        score = float(logs.get("val_rmse_px", np.nan))
        if not (np.isfinite(loss) and np.isfinite(train_rmse) and (not self.has_validation or np.isfinite(score))
                and weights_are_finite(self.model)):
            state["diverged"] = (f"the loss became {loss} at epoch {epoch + 1} (learning rate "
                                 f"{current_hyperparameters(self.model.optimizer)[0]:.3g} too high?)")
            print(f"stopping: {state['diverged']}; nothing of this epoch is saved")
            self.model.stop_training = True
            return
        # Best = lowest validation RMSE (the score), whichever loss is being minimised;
        # without validation faces, the latest epoch.
        best = state["best_val_rmse_px"]
        improved = not self.has_validation or best is None or score < best
        state["epoch"] = epoch + 1
        state["seconds"] += seconds
        state["epoch_seconds"].append(round(seconds, 3))
        if improved:
            state.update(best_epoch=epoch + 1, wait=0, best_val_rmse_px=score if self.has_validation else None,
                         best_train_rmse_px=train_rmse)
        else:
            state["wait"] += 1
        if settings["time_limit"]:
            self.plan_to_budget(epoch)
        last = self.run_dir / "last.keras"
        atomic_save(self.model, last, state)
        if improved:
            cli.write_atomically(self.run_dir / "best.keras", lambda tmp: shutil.copyfile(last, tmp))
        atomic_json(state, self.run_dir / "state.json")     # for people; resume reads last.keras
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
        """After the second epoch (the first also traces the graph, often twice as slow as
        the rest), fit the number of epochs into the budget and make the learning rate and
        momentum schedules end with the last of them. Planning from the first epoch's time
        would end the schedule too early and then raise the rate again once the second
        epoch's time made room for more; a first epoch that leaves no room for another at
        its pace ends the run there. Then, after each epoch, the plan follows the median of
        the last five epochs' times (the first excluded): longer or shorter through the first
        two thirds of the plan, later only shorter, so that the rate never rises late. One
        epoch's time is noisy and the machine's speed drifts (one 2-minute run's epochs went
        from 5 to 7.4 s, another's from 6.5 to 5.3): a plan made once left up to 10% of the
        budget unused or overran it by as much. The progress lines count against the plan of
        the moment; a line says so when the plan moves by 2 epochs or 10% or more."""
        settings, state = self.settings, self.state
        times = state["epoch_seconds"]
        if len(times) == 1 and 2 * times[0] <= settings["time_limit"]:
            return
        if len(times) > 2 and not state["planned_epochs"]:
            return
        per_epoch = times[-1] if len(times) <= 2 else float(np.median(times[1:][-5:]))
        fitted = len(times) + int((settings["time_limit"] - sum(times)) // max(per_epoch, 1e-3))
        planned = max(len(times), min(fitted, settings["epochs"] or fitted))
        if len(times) > 2:
            may_grow = len(times) <= 2 / 3 * state["planned_epochs"]
            if planned == state["planned_epochs"] or (planned > state["planned_epochs"] and not may_grow):
                return
        state["planned_epochs"] = planned
        if planned <= len(times):
            return          # the budget is spent; the stop below says how far the schedule got
        plan_steps(self.model.optimizer, planned * self.steps_per_epoch)
        if self.said_plan is None or abs(planned - self.said_plan) >= max(2, self.said_plan // 10):
            self.said_plan = planned
            print(f"time plan: {per_epoch:.1f} s per epoch -> {planned} epochs in {settings['time_limit']:g} s; "
                  f"the {settings['schedule']} schedule now ends at epoch {planned}")


class CtrlC:
    """Ctrl-C during training: the first press ends fit after the current batch, a second one
    stops at once (KeyboardInterrupt: the command exits 130). An epoch cut short is not recorded
    (cut: the steps it had done), so the run stays at its last whole epoch and --resume trains
    the cut one again from its start. A flag rather than KeyboardInterrupt for the first press,
    so that it never lands inside TensorFlow (an exception raised while tf.data builds an
    epoch's iterator could leave its threads hung)."""

    def __init__(self):
        self.pressed = False
        self.cut = 0
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


class StopOnCtrlC(keras.callbacks.Callback):
    """Ends fit after the batch in which Ctrl-C was pressed, noting whether it cut the epoch."""

    def __init__(self, ctrl_c, steps_per_epoch):
        super().__init__()
        self.ctrl_c, self.steps_per_epoch = ctrl_c, steps_per_epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.ctrl_c.pressed:
            self.model.stop_training = True
            if batch + 1 < self.steps_per_epoch:
                self.ctrl_c.cut = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        if self.ctrl_c.pressed:       # pressed during validation: the epoch is whole
            self.model.stop_training = True
