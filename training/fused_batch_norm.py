"""Keras's BatchNormalization trained with TensorFlow's fused kernel, while the engine trains.

    with fused_batch_norm():
        model.fit(...)

Keras 3 normalises a batch with about ten separate ops (moments, then scale and shift, each
with its casts and broadcasts) and differentiates each; TensorFlow's FusedBatchNormV3 does the
forward pass in one kernel and the backward pass in one more (oneDNN on a CPU, cuDNN on a GPU).
For v6 on the 2-core CPU that is 1.4x faster training in bfloat16 (`python
bench/train_speed.py --model v6 --variants bf16,bf16+fbn`; docs/experiments.md). Keras 2 had this
as `fused=True`; Keras 3 dropped the option, so the engine swaps the training-mode call of the
layer class for the duration of training and puts Keras's back afterwards. Nothing is saved
differently: the layers, their weights and the saved files are Keras's own, and inference
(training=False) never takes this path.

The same arithmetic as Keras's: the batch's biased variance normalises and goes into the moving
variance (the kernel returns the unbiased one, undone below), the same epsilon and momentum;
16-bit inputs are normalised with float32 statistics, as Keras does by casting.
tests/test_fused_batch_norm.py compares outputs, gradients and moving statistics with Keras's.
Layers the kernel does not cover (not 4-D channels-last, masks, renorm, synchronized, no
centre or scale, an epsilon under cuDNN's 1.001e-5) keep Keras's own call.
"""
import contextlib

from keras import layers

MIN_EPSILON = 1.001e-5      # FusedBatchNormV3's (cuDNN's) smallest epsilon


def covered(layer, inputs, training, mask):
    """Whether the fused kernel computes this call exactly as Keras's training-mode call."""
    return (training and layer.trainable and mask is None and len(inputs.shape) == 4
            and layer.axis in (-1, 3) and layer.center and layer.scale and layer.epsilon >= MIN_EPSILON
            and not getattr(layer, "renorm", False) and not getattr(layer, "synchronized", False)
            and inputs.dtype in ("float32", "bfloat16", "float16"))


@contextlib.contextmanager
def fused_batch_norm():
    """Within the block, BatchNormalization layers train with tf's fused kernel (TensorFlow
    backend only; elsewhere nothing changes). Functions traced within it keep the fused ops."""
    import keras
    if keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf
    keras_call = layers.BatchNormalization.call

    def call(self, inputs, training=None, mask=None):
        if not covered(self, inputs, training, mask):
            return keras_call(self, inputs, training=training, mask=mask)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.cast(self.gamma, "float32"), tf.cast(self.beta, "float32"),
            epsilon=self.epsilon, is_training=True)
        count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], "float32")
        variance = variance * (count - 1) / tf.maximum(count, 1.0)    # unbiased -> biased, as Keras keeps it
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)

    layers.BatchNormalization.call = call
    try:
        yield
    finally:
        layers.BatchNormalization.call = keras_call
