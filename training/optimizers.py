"""The optimizers and the learning-rate and momentum schedules. A time budget re-plans the
schedule while the run goes (PlannedSchedule.total_steps is a variable read in the compiled
step), so that it ends where the budget does."""
import keras
import numpy as np
from keras import ops

import cli
from training.settings import OPTIMIZERS, SCHEDULES


@keras.saving.register_keras_serializable(package="fkd")
class PlannedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """constant | linear | cosine | onecycle from `initial` to `final` over `total_steps`, which
    a time budget can re-plan while the run goes (a variable, read inside the compiled step):
    the schedule then ends where the budget does. Linear and cosine are Keras's
    PolynomialDecay(power=1) and CosineDecay(alpha=final/initial); onecycle (Smith 2018) rises
    linearly from initial / 10 over the first WARMUP of the steps, then decays as cosine."""

    WARMUP = 0.1

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
        if self.kind == "onecycle":
            rising = self.initial * (0.1 + 0.9 * done / self.WARMUP)
            done = ops.maximum(done - self.WARMUP, 0.0) / (1.0 - self.WARMUP)
            falling = self.final + (self.initial - self.final) * 0.5 * (1.0 + ops.cos(np.pi * done))
            return ops.where(done > 0.0, falling, rising)
        return self.final + (self.initial - self.final) * 0.5 * (1.0 + ops.cos(np.pi * done))

    def get_config(self):
        return dict(kind=self.kind, initial=self.initial, final=self.final,
                    total_steps=float(ops.convert_to_numpy(self.total_steps)))


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


def plan_steps(optimizer, total_steps):
    """Make the learning-rate (and momentum) schedule end after `total_steps` steps."""
    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, PlannedSchedule):
        schedule.total_steps.assign(float(total_steps))
    if hasattr(optimizer, "momentum_steps"):
        optimizer.momentum_steps = int(total_steps)


def make_optimizer(settings, steps_per_epoch, planned_epochs=None):
    """The settings' optimizer, its schedule planned over planned_epochs (default: the epochs)."""
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
