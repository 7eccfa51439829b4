"""What training minimises and how a run is scored: losses over the present keypoints only
(a NaN target adds nothing to the loss or the gradient) and the RMSE in pixels of the 96-px
frame. Registered with Keras so that model.keras files load again."""
import keras
import numpy as np
from keras import ops

from training.settings import LOSS_NAMES


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
assert tuple(LOSSES) == LOSS_NAMES


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


def rmse_px(Y_true, Y_pred, axis=None):
    """RMSE in pixels (96-px frame) over present keypoints; axis=0 gives it per column.

    Only a NaN in Y_true is a missing label. A NaN prediction of a present label makes the RMSE
    NaN (a diverged model must not score well), and so does having no label at all (not 0 px)."""
    error = (np.asarray(Y_pred, np.float64) - np.asarray(Y_true, np.float64)) * 48.0
    present = np.broadcast_to(~np.isnan(np.asarray(Y_true, np.float64)), error.shape)
    squared = np.where(present, error, 0.0) ** 2
    with np.errstate(invalid="ignore"):   # 0 / 0 where nothing is present: NaN
        return np.sqrt(squared.sum(axis=axis) / present.sum(axis=axis))
