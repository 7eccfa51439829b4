"""A version's network as a run trains it: built with the run's outputs and precision, started
from another model's weights where they fit (--init-from), placed on the devices a
tf.distribute strategy names."""
import keras

import cli
import inference
import models
from training.device import PRECISIONS
from training.settings import DEFAULTS, options_text


def build_network(settings, n_outputs=30):
    """The version's network() with n_outputs, uncompiled, in the settings' precision ("auto"
    is float32 here: train() sets the device's choice before it builds).

    bfloat16 and float16 are Keras's mixed policies: float32 weights, 16-bit arithmetic. The
    layers in the module's FLOAT32_LAYERS (default: `out`) and those that read the image stay
    float32 (inference.to_mixed), so that the coordinates keep float32's precision (bf16 has
    8 bits: 0.1 px steps at the frame's edge).
    """
    if settings["precision"] not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {settings['precision']!r}")
    model = models.load(settings["model"]).network(init=settings["init"], **settings["model_options"])
    if n_outputs != model.output_shape[-1]:
        model = with_outputs(model, n_outputs, settings["init"])
    if settings["precision"] in ("auto", "float32"):
        return model
    return inference.to_mixed(model, settings["precision"])


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


def new_network(settings, n_outputs):
    """The version's network (one it cannot be built with is a usage error naming --option or
    --init), pre-trained from init_from if given."""
    try:
        model = build_network(settings, n_outputs)
    except NETWORK_ERRORS as error:
        raise cli.UsageError(f"{_blamed_for_network(settings, n_outputs)}: {network_problem(error)}") from None
    if settings["init_from"]:
        try:
            source = inference.load_model(settings["init_from"])
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
    return f"--option {options_text(options)}" if options else f"--model {settings['model']}"


def inference_copy(model):
    """The same network and weights without the optimizer's state (Adam's two moments per
    weight make a compiled model.keras three times larger), in float32 whatever precision it
    trained in (what predict.py, export.py and the ONNX converters read): what models/<version>/
    holds. The checkpoints in runs/ keep the optimizer and the precision, for --resume."""
    copy = model.__class__.from_config(inference.float32_config(model.get_config()))   # not clone_model: it compiles the copy
    copy.set_weights(model.get_weights())
    return copy


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
