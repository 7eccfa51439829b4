"""The engine's fused batch norm computes what Keras's BatchNormalization computes: the same
training-mode outputs, gradients and moving statistics, in float32 and in mixed bfloat16; layers
it does not cover, inference and everything after the block keep Keras's own call."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from training.fused_batch_norm import fused_batch_norm


def small_network(**batch_norm):
    image = keras.Input((12, 12, 3))
    net = layers.Conv2D(8, 3, padding="same", name="conv")(image)
    net = layers.BatchNormalization(momentum=0.9, name="bn", **batch_norm)(net)
    net = layers.ReLU()(net)
    net = layers.GlobalAveragePooling2D()(net)
    return keras.Model(image, layers.Dense(2, name="out")(net))


def one_step(model, x, y):
    """Training-mode outputs and gradients of one step, then the moving statistics it left."""
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = tf.reduce_mean(tf.square(tf.cast(out, "float32") - y))
    grads = tape.gradient(loss, model.trainable_weights)
    bn = model.get_layer("bn")
    return (out.numpy().astype("float32"), [g.numpy() for g in grads],
            bn.moving_mean.numpy(), bn.moving_variance.numpy())


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return (rng.normal(2.0, 3.0, (16, 12, 12, 3)).astype("float32"),
            rng.normal(size=(16, 2)).astype("float32"))


@pytest.mark.platform      # it replaces a Keras method: checked on the oldest Keras too
@pytest.mark.parametrize("policy,tolerance", [("float32", 1e-5), ("mixed_bfloat16", 2e-2)])
def test_same_outputs_gradients_and_moving_statistics_as_keras(batch, policy, tolerance):
    x, y = batch
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(1)
        reference = small_network()
        fused = small_network()
        fused.set_weights(reference.get_weights())
        expected = one_step(reference, x, y)
        with fused_batch_norm():
            got = one_step(fused, x, y)
    finally:
        keras.config.set_dtype_policy("float32")
    out, grads, mean, variance = got
    np.testing.assert_allclose(out, expected[0], atol=tolerance, rtol=tolerance)
    # (the conv's bias gradient is zero up to round-off: batch norm subtracts any bias, so the
    # tolerance is a share of the largest gradient)
    scale = max(np.abs(g).max() for g in expected[1])
    for mine, theirs in zip(grads, expected[1]):
        np.testing.assert_allclose(mine, theirs, atol=tolerance * scale, rtol=tolerance)
    np.testing.assert_allclose(mean, expected[2], rtol=1e-4, atol=1e-5)
    # the biased variance, as Keras keeps it (the kernel's own is unbiased: n/(n-1) larger)
    np.testing.assert_allclose(variance, expected[3], rtol=1e-4)


def test_the_block_uses_the_fused_kernel_and_restores_keras_call(batch):
    x, _ = batch
    model = small_network()
    keras_call = layers.BatchNormalization.call

    def ops_of(fn):
        graph = tf.function(fn).get_concrete_function(tf.TensorSpec(x.shape, tf.float32)).graph
        return {op.type for op in graph.get_operations()}

    with fused_batch_norm():
        assert layers.BatchNormalization.call is not keras_call
        assert "FusedBatchNormV3" in ops_of(lambda t: model(t, training=True))
        # inference is Keras's own path: the moving statistics, no batch statistics
        assert "FusedBatchNormV3" not in ops_of(lambda t: model(t, training=False))
    assert layers.BatchNormalization.call is keras_call
    assert "FusedBatchNormV3" not in ops_of(lambda t: model(t, training=True))


@pytest.mark.parametrize("options", [dict(center=False), dict(scale=False), dict(epsilon=1e-6),
                                     dict(renorm=True)])
def test_layers_the_kernel_does_not_cover_keep_keras_call(batch, options):
    x, y = batch
    keras.utils.set_random_seed(1)
    reference, model = small_network(**options), small_network(**options)
    model.set_weights(reference.get_weights())
    expected = one_step(reference, x, y)
    with fused_batch_norm():
        got = one_step(model, x, y)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[3], expected[3], rtol=1e-6)
