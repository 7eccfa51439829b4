"""Faster batched inference of a trained model in plain Keras/TensorFlow.

    import inference
    fast = inference.fast_model("models/v6_resnet_integral/model.keras")     # or a keras.Model
    Y = fast.predict(X)                         # X float32 (n, 96, 96, 1) -> numpy (n, 30)
    fast = inference.fast_model(path, precision="bfloat16")      # AVX-512 BF16 CPUs: faster still
    folded = inference.fold_batch_norm(model)   # just the folding: a keras.Model

At inference a batch norm is an affine map per channel, y = (x - mean) * gamma / sqrt(var + eps)
+ beta; after a convolution it folds into that convolution's kernel and bias, so the network
runs one op where it ran two (v6: 13 batch norms fewer, as many tensors not written and read
again). fast_model() folds, then calls the folded model in one tf.function with training off.
A FastModel has predict() and predict_on_batch() like a keras.Model, so predict.py,
evaluate-style code and augment.predict_with_flip can use it unchanged.
"""
import copy
import json
import zipfile
from pathlib import Path

import keras
import numpy as np

import cli
import confidence
import input_data

PRECISIONS = ("float32", "bfloat16")


def load_keras_file(path, custom_objects=None, error=cli.InputError):
    """keras.models.load_model(path, compile=False) with one kind of failure: `error` naming the
    file and what is wrong with it. Every command loads .keras files through here."""
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such model file")
    if not path.is_file():
        raise error(f"{path}: not a model file (a folder?)")
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        # Keras says "File not found ... accessible .keras zip" for these: wrong about the cause
        raise error(f"{path}: exists but is not a Keras model file (a .keras file is a zip "
                    "archive; this one is not: damaged, truncated, or another kind of file)")
    try:
        return keras.models.load_model(path, compile=False, custom_objects=custom_objects)
    except Exception as cause:      # a damaged or foreign file: Keras and h5py raise many types
        failure = cause
    try:        # a file saved by a newer Keras (the shipped models on Colab's Keras 3.10)?
        return _load_from_newer_keras(path, custom_objects)
    except _NotNewer:
        pass
    except Exception as cause:
        failure = cause
    raise error(f"{path}: not a Keras model file this version can load "
                f"({type(failure).__name__}: {cli.one_line(failure)[:200]})") from None


class _NotNewer(Exception):
    """The file's configuration has no argument this Keras lacks: the first failure stands."""


def _keras_class(node, custom_objects):
    """The class a serialized Keras object names: Keras's own (its `module` is keras.*) or one
    of custom_objects; None for anything else (no module is imported on a file's word)."""
    import importlib
    import inspect
    if node["class_name"] in (custom_objects or {}):
        found = custom_objects[node["class_name"]]
    elif str(node.get("module")).split(".")[0] == "keras":
        try:
            found = getattr(importlib.import_module(node["module"]), node["class_name"], None)
        except ImportError:
            return None
    else:
        return None
    return found if inspect.isclass(found) else None


def _accepted_arguments(cls):
    """The keyword arguments the __init__ methods of cls and its bases name."""
    import inspect
    names = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            try:
                names.update(inspect.signature(vars(klass)["__init__"]).parameters)
            except (TypeError, ValueError):
                continue
    return names


def without_newer_arguments(config, custom_objects=None):
    """(config, dropped): a .keras file's config.json (a dict) without the arguments that the
    running Keras's classes do not take and that leave a feature off: a value None or False
    (Keras 3.1x's initializer input_axes/output_axes, Dense quantization_config, batch norm
    renorm), and the options of such a feature (renorm_momentum, with renorm False). dropped:
    'Class.argument' strings. An argument this Keras lacks with any other value is a ValueError
    naming it: the model needs the newer Keras."""
    config = copy.deepcopy(config)
    dropped = []

    def visit(node):
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        if isinstance(node.get("config"), dict) and "class_name" in node and node["class_name"] != "Functional":
            cls = _keras_class(node, custom_objects)
            if cls is not None:
                options = node["config"]
                unknown = [key for key in options if key not in _accepted_arguments(cls)]
                off = [key for key in unknown if options[key] is None or options[key] is False]
                for key in unknown:
                    if key in off or any(key.startswith(switch + "_") for switch in off):
                        del options[key]
                        dropped.append(f"{node['class_name']}.{key}")
                    else:
                        raise ValueError(f"{node['class_name']} {options.get('name', '')} has "
                                         f"{key}={options[key]!r}, which Keras {keras.__version__} does "
                                         "not have (saved by a newer Keras: load it with that)")
        for value in node.values():
            visit(value)

    visit(config)
    return config, dropped


def _load_from_newer_keras(path, custom_objects=None):
    """The model of a .keras file whose configuration names arguments this Keras lacks, built
    without them (without_newer_arguments) and given the file's weights; _NotNewer when there
    are none to drop (the file fails for another reason)."""
    import tempfile
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
        config, dropped = without_newer_arguments(config, custom_objects)
        if not dropped:
            raise _NotNewer()
        config["compile_config"] = None
        with tempfile.TemporaryDirectory() as folder:
            weights = Path(archive.extract("model.weights.h5", folder))
            model = keras.saving.deserialize_keras_object(config, custom_objects=custom_objects)
            model.load_weights(weights)
    return model


def load_model(path):
    """A model.keras from the training engine (or any Keras model), ready to predict; its
    `mirror_axis` (for flip TTA) comes from the model.json beside it, else 47.5. The engine's
    loss, metric and optimizer need not be registered: the model loads without them
    (compile=False). train.load_model is this function."""
    model = load_keras_file(path)
    model.mirror_axis = mirror_axis_of(path)
    return model


def check_keypoint_model(model, name, outputs=30):
    """model, when it takes 96x96x1 faces and gives `outputs` numbers a face (30: every keypoint;
    fewer for a model trained on some columns); else an InputError naming `name`, what the model
    takes and gives and what is expected. Checked before predicting: Keras's own error for a
    model of another kind (the face embedding, a colour model) is a traceback deep in predict()."""
    takes = [tuple(tensor.shape[1:]) for tensor in model.inputs]
    gives = [tuple(tensor.shape[1:]) for tensor in model.outputs]
    if takes != [(input_data.IMAGE_SIZE, input_data.IMAGE_SIZE, 1)] or gives != [(outputs,)]:
        takes, gives = ", ".join(map(str, takes)), ", ".join(map(str, gives))
        raise cli.InputError(f"{name}: not a keypoint model (it takes {takes} and gives {gives}; "
                             f"expected 96x96x1 faces -> {outputs} coordinates)")
    return model


def mirror_axis_of(path):
    """The labels' mirror axis a saved model was trained with (model.json beside it, or the
    run's state.json), in pixels; augment.CENTER (47.5) when neither says. A mirror_axis_px that
    is not a number of pixels within the frame (0 to 96) is a cli.InputError naming the file:
    flip TTA and the ONNX metadata would carry it on."""
    import augment
    for name in ("model.json", "state.json"):
        source = Path(path).parent / name
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError):          # absent or unreadable: it says nothing
            continue
        if not isinstance(data, dict) or data.get("mirror_axis_px") is None:
            continue
        return float(cli.json_field(data, "mirror_axis_px", input_data.is_mirror_axis,
                                    input_data.MIRROR_AXIS_EXPECTED, source))
    return augment.CENTER


def _history_refs(value):
    """Every keras tensor reference (dict with keras_history) inside a node's args/kwargs."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            yield value["config"]
        else:
            for item in value.values():
                yield from _history_refs(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _history_refs(item)


def _output_refs(value):
    """The [name, node, tensor] triples of a functional config's output_layers (nested)."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _output_refs(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _output_refs(item)


def _foldable(config):
    """{batch norm name: convolution name} for the batch norms of a functional config that can
    be folded: a BatchNormalization over the channels, in inference mode, called once on the
    output of a linear Conv2D that is called once and feeds nothing else."""
    layers = {layer["name"]: layer for layer in config["layers"]}
    consumers = {}                      # layer name -> how many times its outputs are used
    for layer in config["layers"]:
        for node in layer["inbound_nodes"]:
            for ref in _history_refs(node):
                consumers[ref["keras_history"][0]] = consumers.get(ref["keras_history"][0], 0) + 1
    for ref in _output_refs(config["output_layers"]):
        consumers[ref[0]] = consumers.get(ref[0], 0) + 1

    fold = {}
    for layer in config["layers"]:
        bn = layer["config"]
        if layer["class_name"] != "BatchNormalization" or len(layer["inbound_nodes"]) != 1:
            continue
        node = layer["inbound_nodes"][0]
        refs = list(_history_refs(node))
        if len(refs) != 1 or node.get("kwargs", {}).get("training") or bn.get("renorm"):
            continue
        name = refs[0]["keras_history"][0]
        conv = layers.get(name)
        if (conv is None or conv["class_name"] != "Conv2D" or len(conv["inbound_nodes"]) != 1
                or consumers.get(name) != 1 or conv["config"].get("activation") != "linear"):
            continue
        channels_axis = (1,) if conv["config"].get("data_format") == "channels_first" else (-1, 3)
        axis = bn.get("axis")
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        if axis in channels_axis:
            fold[layer["name"]] = name
    return fold


def fold_batch_norm(model):
    """A new functional keras.Model computing what `model` computes in inference mode, with
    every batch norm that directly follows a Conv2D (see _foldable) folded into it:
    kernel * gamma / sqrt(var + eps) and a new bias beta - mean * gamma / sqrt(var + eps)
    (plus the old bias times the same factor, if the convolution had one). The batch norms are
    gone; every other layer keeps its name, configuration and weights (non-trainable ones
    such as v6's soft_argmax included), and the convolutions keep theirs, now with use_bias.
    Do not train the result: training-mode batch statistics are gone with the batch norms."""
    if isinstance(model, keras.Sequential):
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    config = copy.deepcopy(model.get_config())
    if "input_layers" not in config:
        raise TypeError(f"fold_batch_norm needs a functional or Sequential model, not {type(model).__name__}")
    fold = _foldable(config)

    # Drop the batch norms; whatever read one reads its convolution instead; the convolutions
    # get a bias.
    config["layers"] = [layer for layer in config["layers"] if layer["name"] not in fold]
    for layer in config["layers"]:
        for node in layer["inbound_nodes"]:
            for ref in _history_refs(node):
                if ref["keras_history"][0] in fold:
                    ref["keras_history"] = [fold[ref["keras_history"][0]], 0, 0]
        if layer["name"] in fold.values():
            layer["config"]["use_bias"] = True
    for ref in _output_refs(config["output_layers"]):
        if ref[0] in fold:
            ref[:] = [fold[ref[0]], 0, 0]
    folded = keras.Model.from_config(config)

    conv_to_bn = {conv: bn for bn, conv in fold.items()}
    for layer in folded.layers:
        source = model.get_layer(layer.name)
        if layer.name not in conv_to_bn:
            layer.set_weights(source.get_weights())
            continue
        bn = model.get_layer(conv_to_bn[layer.name])
        gamma = np.asarray(bn.gamma, np.float64) if bn.scale else 1.0
        beta = np.asarray(bn.beta, np.float64) if bn.center else 0.0
        factor = gamma / np.sqrt(np.asarray(bn.moving_variance, np.float64) + bn.epsilon)
        kernel = np.asarray(source.kernel, np.float64)
        bias = np.asarray(source.bias, np.float64) if source.use_bias else 0.0
        layer.set_weights([(kernel * factor).astype(layer.kernel.dtype),
                           ((bias - np.asarray(bn.moving_mean, np.float64)) * factor + beta)
                           .astype(layer.bias.dtype)])
    return folded


def float32_layers(model):
    """The layers that stay float32 under a mixed policy (bfloat16, float16): the model
    module's FLOAT32_LAYERS (found by the model's name, which is its version's; else just
    `out`), and the layers that read the image. Those are cheap (v6's conv1: 0.6% of its FLOPs) and
    sensitive: with conv1 in bf16 the shipped v6 moved by up to 0.52 px (mean 0.037 px) from
    float32 on 256 real faces; with it in float32, up to 0.08 px (mean 0.010 px)."""
    import models
    try:
        keep = tuple(getattr(models.load(model.name), "FLOAT32_LAYERS", ("out",)))
    except ValueError:
        keep = ("out",)
    layers = model.get_config()["layers"]
    inputs = {layer["name"] for layer in layers if layer["class_name"] == "InputLayer"}
    readers = tuple(layer["name"] for layer in layers
                    if any(ref["keras_history"][0] in inputs for ref in _history_refs(layer["inbound_nodes"])))
    return keep + readers


# Keras's mixed policies: float32 weights, arithmetic in the named type
MIXED_POLICIES = {"bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def to_mixed(model, precision="bfloat16", keep_float32=None):
    """The same model and weights under a mixed policy (MIXED_POLICIES[precision]: float32
    weights, bf16 or fp16 arithmetic), the layers in keep_float32 (default:
    float32_layers(model)) staying float32. A float16 model trains with a loss-scaled optimizer
    (training.device.optimizer_for): its gradients underflow fp16 otherwise."""
    policy = MIXED_POLICIES[precision]
    keep_float32 = set(float32_layers(model) if keep_float32 is None else keep_float32)
    config = copy.deepcopy(model.get_config())
    for layer in config["layers"]:
        if layer["class_name"] != "InputLayer":
            layer["config"]["dtype"] = "float32" if layer["name"] in keep_float32 else policy
    rebuilt = keras.Model.from_config(config)
    for layer in rebuilt.layers:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    return rebuilt


def float32_config(config):
    """A model's get_config() with every layer's dtype policy float32: the network a model
    trained under a mixed policy is saved and exported as (its weights are float32 already)."""
    config = copy.deepcopy(config)
    for layer in config["layers"]:
        if layer["class_name"] != "InputLayer" and "dtype" in layer["config"]:
            layer["config"]["dtype"] = "float32"
    return config


def to_float32(model):
    """The model with float32 arithmetic in every layer (float32_config), the same weights; the
    model itself when it is float32 already."""
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    rebuilt = model.__class__.from_config(float32_config(model.get_config()))
    rebuilt.set_weights(model.get_weights())
    if hasattr(model, "mirror_axis"):               # load_model's, for flip TTA and the exports
        rebuilt.mirror_axis = model.mirror_axis
    return rebuilt


def to_bfloat16(model, keep_float32=None):
    """to_mixed(model, "bfloat16", keep_float32)."""
    return to_mixed(model, "bfloat16", keep_float32)


class FastModel:
    """A folded model called in one tf.function (training off), batch by batch. Input as the
    model's (v6: float32 (n, 96, 96, 1) in [0, 1]); outputs numpy float32."""

    def __init__(self, model, batch_size=256, mirror_axis=None):
        import tensorflow as tf
        import augment
        self.model, self.batch_size = model, batch_size
        # the labels' mirror axis, for flip TTA (augment.predict_with_flip)
        self.mirror_axis = augment.CENTER if mirror_axis is None else mirror_axis
        spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
        self._call = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def predict_on_batch(self, X):
        return np.asarray(self._call(np.asarray(X, np.float32)), np.float32)

    __call__ = predict_on_batch

    def predict(self, X, batch_size=None, verbose=0):
        batch_size = batch_size or self.batch_size
        X = np.asarray(X, np.float32)
        if len(X) == 0:
            return np.zeros((0, *self.model.outputs[0].shape[1:]), np.float32)
        return np.concatenate([self.predict_on_batch(X[i:i + batch_size])
                               for i in range(0, len(X), batch_size)])


def fast_model(model, precision="float32", batch_size=256):
    """A FastModel of a model.keras path or a keras.Model: batch norms folded, one tf.function;
    precision "bfloat16" runs it under mixed_bfloat16 but for float32_layers() (the module's
    FLOAT32_LAYERS and the first convolution)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if not isinstance(model, keras.Model):
        model = load_model(model)
    folded = fold_batch_norm(model)
    return FastModel(to_bfloat16(folded) if precision == "bfloat16" else folded, batch_size,
                     getattr(model, "mirror_axis", None))


# ---------------------------------------------------------------------------------------
# Heatmaps and the confidence bar (confidence.py).

HEATMAPS_LAYER = "heatmaps_softmax"     # v6's softmax over the grid cells of each keypoint


def heatmap_model(model):
    """keras.Model from the model's input to [out, heatmaps (n, 15, cells)] for a model with
    integral heatmaps (a HEATMAPS_LAYER), else None."""
    if HEATMAPS_LAYER not in [layer.name for layer in model.layers]:
        return None
    return keras.Model(model.inputs, [model.output, model.get_layer(HEATMAPS_LAYER).output], name=model.name)


def confidence_bar(model, faces, held_out=True, batch_size=256):
    """The model's confidence bar and what it rests on (confidence.choose_bar's dict), from faces
    (float (n, 96, 96, 1) in [0, 1]: its validation faces, held_out; or its training faces) and
    confidence.no_face_crops made from them; None for a model without heatmaps. Scored in
    float32, as its ONNX predictor runs."""
    heatmaps = heatmap_model(model)
    if heatmaps is None:
        return None
    pixels = np.clip(np.rint(np.asarray(faces, np.float32)[..., 0] * 255), 0, 255).astype(np.uint8)
    no_face = confidence.no_face_crops(pixels)
    # The faces and every kind of crop in one network call, then split (a call costs ~0.3 s of its own).
    crops = np.concatenate([pixels, *no_face.values()])
    X = input_data.images_to_unit(crops).reshape(-1, *model.inputs[0].shape[1:])
    scores = confidence.heatmap_confidence(heatmaps.predict(X, batch_size=batch_size, verbose=0)[1])
    parts = np.split(scores, np.cumsum([len(pixels)] + [len(c) for c in no_face.values()])[:-1])
    return confidence.choose_bar(parts[0], dict(zip(no_face, parts[1:])), held_out)
