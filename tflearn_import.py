"""Import weights trained with TFLearn (TensorFlow 1 checkpoints) into this repo's Keras models.

    python -m tflearn_import import-tflearn models/v1/model.tflearn --model v1_single_layer \\
        --units 50 --out models/v1/model.keras
    python tflearn_import.py import-tflearn old/model.tflearn --model cos429_v2_convnet \\
        --out models/cos429_v2_convnet/model.keras
    python tflearn_import.py list old/model.tflearn      # what the checkpoint holds

CHECKPOINT is what TFLearn's `model.save("models/v1/model.tflearn")` wrote: the prefix of
model.tflearn.index + model.tflearn.data-00000-of-00001 (+ model.tflearn.meta); the .index or
.meta file name or the folder (its latest checkpoint) work too. It is read with
tf.train.load_checkpoint: neither TFLearn nor TensorFlow 1 is needed.

TFLearn keeps a layer's weights as `<scope>/W` and `<scope>/b`: W is [inputs, units] for
fully_connected and [kh, kw, in, out] for conv_2d, which are exactly the shapes of Keras's
Dense and Conv2D kernels. TFLearn's fully_connected flattens a conv map with
tf.reshape(x, [-1, h*w*c]) in NHWC order, as Keras's Flatten does, so no weight needs to be
permuted. Everything else in the checkpoint is bookkeeping and is ignored: Global_Step,
Training_step, is_training, optimizer slots (fc1/W/Adam, fc1/W/Momentum, beta1_power, ...),
moving averages of the loss, validation summaries.

Which scope goes to which Keras layer is the table NAME_TABLES below, one per model. For a
model without a table, or a checkpoint that does not use the table's names (TFLearn's default
scopes Conv2D, Conv2D_1, FullyConnected, ...), the scopes are matched in the order the
network created them (from the .meta graph, else by name) to the model's Conv2D and Dense
layers in order, and every shape must agree.

COS 429's (Cristian42/FacialKeypointsDetection) networks:
    v1_single_layer.py   fc1 50 relu -> fc2 30           -> our v1_single_layer with units=50
    v2_convnet.py        conv1_1 32, [conv2_1 64, conv2_2 64], fc3 512 (+dropout), fc4 30:
                         3x3 'same' convolutions, 2x2 pools, so NOT our v2_convnet (Nouri's
                         net2: 'valid' 3x3/2x2/2x2 convolutions of 32/64/128, fc 500, 500);
                         its Keras twin is cos429_v2_convnet, defined here
    v2_convnet3.py       four VGG blocks (32 | 64 64 | 128 128 | 256 256), fc5 1000, fc6 500,
                         fc7 500, fc8 30                  -> cos429_v2_convnet3
    v3_convnet2.py       three VGG blocks (32 | 64 64 | 128 128), fc4 1000, fc5 1000, fc6 30
                                                          -> cos429_v3_convnet2

    import tflearn_import
    model = tflearn_import.import_tflearn("models/v1/model.tflearn", "v1_single_layer",
                                          options={"units": 50}, out="models/v1/model.keras")
"""
import argparse
import os
import re
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

import cli  # noqa: E402
import models  # noqa: E402
import train  # noqa: E402  (protected_model_dir, NETWORK_ERRORS)


class TFLearnImportError(cli.InputError):
    """The checkpoint does not fit the model, or cannot be read; the message names the
    checkpoint and lists what it holds (a ValueError; exit 1 through cli.run)."""


# ---------------------------------------------------------------------------------------
# TFLearn scope -> Keras layer, per target model.

NAME_TABLES = {
    # COS 429 v1_single_layer.py: fully_connected(x, 50, scope='fc1'), (x, 30, scope='fc2')
    "v1_single_layer": {
        "fc1": "fc1",
        "fc2": "out",
    },
    # COS 429 v2_convnet.py
    "cos429_v2_convnet": {
        "conv1_1": "conv1_1",
        "conv2_1": "conv2_1",
        "conv2_2": "conv2_2",
        "fc3": "fc1",
        "fc4": "out",
    },
    # COS 429 v2_convnet3.py
    "cos429_v2_convnet3": {
        "conv1_1": "conv1_1",
        "conv2_1": "conv2_1", "conv2_2": "conv2_2",
        "conv3_1": "conv3_1", "conv3_2": "conv3_2",
        "conv4_1": "conv4_1", "conv4_2": "conv4_2",
        "fc5": "fc1",
        "fc6": "fc2",
        "fc7": "fc3",
        "fc8": "out",
    },
    # COS 429 v3_convnet2.py
    "cos429_v3_convnet2": {
        "conv1_1": "conv1_1",
        "conv2_1": "conv2_1", "conv2_2": "conv2_2",
        "conv3_1": "conv3_1", "conv3_2": "conv3_2",
        "fc4": "fc1",
        "fc5": "fc2",
        "fc6": "out",
    },
}


# ---------------------------------------------------------------------------------------
# COS 429's convnets in Keras (TFLearn's conv_2d and max_pool_2d pad 'same'; a pool's stride
# is its size). Layer names follow models/README: conv<block>_<i>, pool<block>, fc<i>, drop<i>.

COS429_NETS = {
    # name: (filters per VGG block, dense units, dropout rate after fc<i> (1-based))
    "cos429_v2_convnet": ([[32], [64, 64]], [512], {1: 0.5}),
    "cos429_v2_convnet3": ([[32], [64, 64], [128, 128], [256, 256]], [1000, 500, 500], {1: 0.5, 2: 0.5}),
    "cos429_v3_convnet2": ([[32], [64, 64], [128, 128]], [1000, 1000], {1: 0.5}),
}


def cos429_network(name, init="glorot_uniform", **options):
    """The Keras twin of one of COS 429's TFLearn convnets (3x3 'same' convolutions, relu)."""
    models.check_options(name, options)
    blocks, dense, dropout = COS429_NETS[name]
    image = keras.Input((96, 96, 1), name="image")
    net = image
    for b, filters in enumerate(blocks, start=1):
        for i, n in enumerate(filters, start=1):
            net = layers.Conv2D(n, 3, padding="same", activation="relu", kernel_initializer=init,
                                name=f"conv{b}_{i}")(net)
        net = layers.MaxPooling2D(2, padding="same", name=f"pool{b}")(net)
    net = layers.Flatten(name="flatten")(net)
    drop = 0
    for i, units in enumerate(dense, start=1):
        net = layers.Dense(units, activation="relu", kernel_initializer=init, name=f"fc{i}")(net)
        if i in dropout:
            drop += 1
            net = layers.Dropout(dropout[i], name=f"drop{drop}")(net)
    out = layers.Dense(30, kernel_initializer=init, name="out")(net)
    return keras.Model(image, out, name=name)


def model_names():
    return models.names() + list(COS429_NETS)


def build_model(name, options=None):
    """A Keras model by name: a version in models/ or one of COS 429's convnets."""
    options = dict(options or {})
    if name in COS429_NETS:
        return name, cos429_network(name, **options)
    try:
        resolved = models.resolve(name)
    except models.UnknownModelError:
        raise TFLearnImportError(f"no model {name!r}; available: {', '.join(model_names())}") from None
    return resolved, models.load(resolved).network(**options)


# ---------------------------------------------------------------------------------------
# Reading the checkpoint.

def _first_line(error):
    """TensorFlow's messages run over many lines; the first says what went wrong."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else error.__class__.__name__)[:300]


def checkpoint_prefix(path):
    """model.tflearn, model.tflearn.index/.meta/.data-*, or a folder -> the checkpoint prefix."""
    import tensorflow as tf
    path = Path(path)
    if path.is_dir():
        try:
            latest = tf.train.latest_checkpoint(str(path))
        except Exception as error:  # noqa: BLE001 - a garbled 'checkpoint' file
            raise TFLearnImportError(f"{path}/checkpoint: not a readable checkpoint list: "
                                     f"{_first_line(error)}") from None
        if latest:
            return latest
        indexes = sorted(path.glob("*.index"))
        if len(indexes) == 1:
            return str(indexes[0].with_suffix(""))
        raise TFLearnImportError(f"{path}: no checkpoint in this folder "
                                 f"({len(indexes)} .index files, no 'checkpoint' file)")
    text = str(path)
    text = re.sub(r"\.(index|meta|data-\d+-of-\d+)$", "", text)
    if not Path(text + ".index").exists():
        near = sorted(p.name for p in Path(text).parent.glob(Path(text).name + "*")) if Path(text).parent.is_dir() else []
        raise TFLearnImportError(f"{text}: no checkpoint ({text}.index not found"
                                 + (f"; found {', '.join(near)}" if near else "") + ")")
    return text


_PARAMETER = re.compile(r"^(?P<scope>.+)/(?P<kind>W|b)$")


def is_parameter(name):
    """TFLearn layer weights are <scope>/W and <scope>/b; everything else is bookkeeping."""
    return bool(_PARAMETER.match(name))


def _natural_key(name):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _creation_order(prefix):
    """Variable names in the order the graph created them, from the .meta file (or [])."""
    meta = Path(prefix + ".meta")
    if not meta.exists():
        return []
    try:
        from tensorflow.core.framework import variable_pb2
        from tensorflow.core.protobuf import meta_graph_pb2
        graph = meta_graph_pb2.MetaGraphDef()
        graph.ParseFromString(meta.read_bytes())
        names = []
        for collection in ("trainable_variables", "variables"):
            if collection in graph.collection_def:
                for raw in graph.collection_def[collection].bytes_list.value:
                    variable = variable_pb2.VariableDef()
                    variable.ParseFromString(raw)
                    name = variable.variable_name.split(":")[0]
                    if name not in names:
                        names.append(name)
        return names
    except Exception:  # noqa: BLE001 - an unreadable .meta only loses the order
        return []


class Checkpoint:
    """A TF1 checkpoint: .shapes {name: shape}, .scopes {scope: {"W": shape, "b": shape}} in
    creation order, .tensor(name)."""

    def __init__(self, path):
        import tensorflow as tf
        self.prefix = checkpoint_prefix(path)
        try:
            self.reader = tf.train.load_checkpoint(self.prefix)
        except Exception as error:  # noqa: BLE001
            raise TFLearnImportError(f"{self.prefix}: not a readable TensorFlow checkpoint (a missing or "
                                     f"damaged .index or .data file?): {_first_line(error)}") from None
        self.shapes = {name: list(shape) for name, shape in self.reader.get_variable_to_shape_map().items()}
        order = _creation_order(self.prefix)
        rank = {name: i for i, name in enumerate(order)}
        params = sorted((n for n in self.shapes if is_parameter(n)),
                        key=lambda n: (rank.get(n, len(rank)), _natural_key(n)))
        self.order_source = "the .meta graph" if order and all(n in rank for n in params) else "name"
        if self.order_source == "name":
            params = sorted(params, key=_natural_key)
        self.scopes = {}
        for name in params:
            match = _PARAMETER.match(name)
            self.scopes.setdefault(match["scope"], {})[match["kind"]] = self.shapes[name]

    def tensor(self, name):
        """A variable's values; a .data file cut short or damaged is a TFLearnImportError."""
        try:
            value = np.asarray(self.reader.get_tensor(name), np.float32)
        except Exception as error:  # noqa: BLE001 - tf raises its own OpError kinds
            raise TFLearnImportError(f"{self.prefix}: variable {name} cannot be read from the .data "
                                     f"file (truncated or damaged?): {_first_line(error)}") from None
        if value.shape != tuple(self.shapes[name]):
            raise TFLearnImportError(f"{self.prefix}: variable {name} holds shape {list(value.shape)}, "
                                     f"its index says {self.shapes[name]}")
        if not np.isfinite(value).all():
            raise TFLearnImportError(f"{self.prefix}: variable {name} holds NaN or infinite values")
        return value

    def listing(self):
        """Every variable with its shape; bookkeeping marked as ignored."""
        width = max(map(len, self.shapes), default=0)
        lines = []
        for name in sorted(self.shapes, key=_natural_key):
            mark = "" if is_parameter(name) else "   (bookkeeping, ignored)"
            lines.append(f"  {name:<{width}}  {self.shapes[name]}{mark}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Matching scopes to layers.

def _weighted_layers(model):
    found = []
    for layer in model.layers:
        if not layer.weights:
            continue
        if isinstance(layer, layers.Conv2D):
            found.append((layer, "conv"))
        elif isinstance(layer, layers.Dense):
            found.append((layer, "dense"))
        else:
            raise TFLearnImportError(f"{model.name}: layer {layer.name} ({type(layer).__name__}) has "
                                     "weights that TFLearn's W/b checkpoints do not describe")
    return found


def _kind(shape):
    return {4: "conv", 2: "dense"}.get(len(shape or []), "other")


def match_by_table(model, ckpt, table):
    """[(scope, layer)] from the model's table; None if the checkpoint uses none of its names."""
    if not any(scope in ckpt.scopes for scope in table):
        return None
    weighted = {layer.name: layer for layer, _ in _weighted_layers(model)}
    problems = []
    for scope in table:
        for kind in ("W", "b"):
            if kind not in ckpt.scopes.get(scope, {}):
                problems.append(f"missing {scope}/{kind} (for layer {table[scope]})")
    unmapped = [s for s in ckpt.scopes if s not in table]
    if unmapped:
        problems.append(f"layer weights the model has no place for: {', '.join(s + '/W' for s in unmapped)}")
    uncovered = [name for name in weighted if name not in table.values()]
    if uncovered:
        problems.append(f"model layers the table leaves empty: {', '.join(uncovered)}")
    if problems:
        raise TFLearnImportError("; ".join(problems))
    return [(scope, weighted[name]) for scope, name in table.items()]


def match_by_order(model, ckpt):
    """[(scope, layer)]: the checkpoint's conv scopes in order onto the model's Conv2D layers,
    its dense scopes onto its Dense layers."""
    incomplete = [f"{s}/{k}" for s, have in ckpt.scopes.items() for k in ("W", "b") if k not in have]
    if incomplete:
        raise TFLearnImportError(f"missing {', '.join(incomplete)}")
    pairs, problems = [], []
    for kind in ("conv", "dense"):
        scopes = [s for s, have in ckpt.scopes.items() if _kind(have["W"]) == kind]
        targets = [layer for layer, k in _weighted_layers(model) if k == kind]
        if len(scopes) != len(targets):
            problems.append(f"the checkpoint has {len(scopes)} {kind} layer(s) "
                            f"({', '.join(scopes) or 'none'}), {model.name} has {len(targets)} "
                            f"({', '.join(t.name for t in targets) or 'none'})")
        pairs += list(zip(scopes, targets))
    others = [s for s, have in ckpt.scopes.items() if _kind(have["W"]) == "other"]
    if others:
        problems.append(f"weights of unknown layer types: {', '.join(s + '/W' for s in others)}")
    if problems:
        raise TFLearnImportError("; ".join(problems))
    return pairs


def _shape_problems(pairs, ckpt):
    problems = []
    for scope, layer in pairs:
        for kind, weight in (("W", layer.kernel), ("b", layer.bias)):
            have, want = ckpt.scopes[scope][kind], list(weight.shape)
            if have != want:
                problems.append(f"{scope}/{kind} is {have} in the checkpoint, layer {layer.name} "
                                f"{'kernel' if kind == 'W' else 'bias'} is {want}")
    return problems


def plan(model, ckpt, name):
    """[(scope, layer)] for this model, or TFLearnImportError saying why not."""
    table = NAME_TABLES.get(name)
    errors = []
    pairs = None
    if table is not None:
        try:
            pairs = match_by_table(model, ckpt, table)
        except TFLearnImportError as error:
            errors.append(f"by {name}'s name table: {error}")
    if pairs is None and not errors:
        try:
            pairs = match_by_order(model, ckpt)
        except TFLearnImportError as error:
            errors.append(f"by layer order: {error}")
    if pairs is not None:
        shape_errors = _shape_problems(pairs, ckpt)
        if shape_errors:
            errors.append("shapes differ: " + "; ".join(shape_errors))
            pairs = None
    if pairs is None:
        raise TFLearnImportError(_explain(model, ckpt, name, errors))
    return pairs


def _explain(model, ckpt, name, errors):
    lines = [f"cannot import {ckpt.prefix} into {name}:"] + [f"  {e}" for e in errors]
    # A hint: another model whose table fits the checkpoint's scopes exactly.
    for other, table in NAME_TABLES.items():
        if other != name and set(table) == set(ckpt.scopes):
            lines.append(f"  hint: the checkpoint's layer names are those of {other} (--model {other})")
    ckpt_units = _infer_options("v1_single_layer", ckpt, {}).get("units")
    if name == "v1_single_layer" and ckpt_units and ckpt_units != model.get_layer("fc1").units:
        lines.append(f"  hint: its first hidden layer has {ckpt_units} units (--units {ckpt_units})")
    expected = [f"{layer.name} {list(layer.kernel.shape)} + {list(layer.bias.shape)}"
                for layer, _ in _weighted_layers(model)]
    lines.append(f"{name} expects (kernel + bias): {', '.join(expected)}")
    lines.append(f"the checkpoint holds ({len(ckpt.shapes)} variables):")
    lines.append(ckpt.listing())
    return "\n".join(lines)


def _infer_options(name, ckpt, options):
    """v1_single_layer's units from the checkpoint (fc1/W, else its first dense W), unless given."""
    options = dict(options or {})
    if name == "v1_single_layer" and "units" not in options:
        dense = [have["W"] for s, have in ckpt.scopes.items() if _kind(have.get("W")) == "dense"]
        first = ckpt.scopes.get("fc1", {}).get("W") or (dense[0] if dense else None)
        if first is not None and len(first) == 2:
            options["units"] = int(first[1])
    return options


def import_tflearn(checkpoint, model="v1_single_layer", options=None, out=None, verbose=False):
    """A Keras model with the checkpoint's weights (saved to `out` if given).

    model: a version in models/ or one of COS429_NETS; options: its network() options (for
    v1_single_layer, units defaults to the checkpoint's own).
    """
    say = print if verbose else (lambda *a, **k: None)
    if out is not None:
        _refuse_shipped(out)
    ckpt = Checkpoint(checkpoint)
    name = model if model in COS429_NETS else _resolve(model)
    options = _infer_options(name, ckpt, options)
    try:
        name, keras_model = build_model(name, options)
    except train.NETWORK_ERRORS as error:
        raise TFLearnImportError(f"{name}: {train.network_problem(error)}") from None
    pairs = plan(keras_model, ckpt, name)
    for scope, layer in pairs:
        layer.set_weights([ckpt.tensor(f"{scope}/W"), ckpt.tensor(f"{scope}/b")])
        say(f"  {scope}/W {ckpt.scopes[scope]['W']}, {scope}/b {ckpt.scopes[scope]['b']} -> {layer.name}")
    ignored = [n for n in ckpt.shapes if not is_parameter(n)]
    say(f"imported {2 * len(pairs)} variables into {name}"
        + (f" ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else "")
        + f": {keras_model.count_params():,} parameters; ignored {len(ignored)} bookkeeping variables")
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.keras")  # keras wants the suffix
        try:
            keras_model.save(tmp)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        say(f"wrote {out}")
    return keras_model


def _refuse_shipped(out):
    """A model that ships with the repository is never replaced by an import."""
    why = train.protected_model_dir(Path(out).parent)
    if why:
        raise cli.UsageError(f"--out {out}: is in the folder of a shipped model ({why}); "
                             "write the import elsewhere")


def _resolve(name):
    try:
        return models.resolve(name)
    except models.UnknownModelError:
        raise TFLearnImportError(f"no model {name!r}; available: {', '.join(model_names())}") from None


def _parse_option(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    for parse in (int, float):
        try:
            return key, parse(value)
        except ValueError:
            pass
    return key, value


def _check_settings(args):
    """Every setting of import-tflearn, before the checkpoint is read (exit 2 when bad). --out
    never replaces a shipped model, an existing file without --overwrite, or the checkpoint."""
    if args.model not in COS429_NETS:
        try:
            models.resolve(args.model)
        except models.UnknownModelError:
            raise cli.UsageError(f"--model: got {args.model!r}; must be one of {', '.join(model_names())}") from None
    if Path(args.out).suffix != ".keras":
        raise cli.UsageError(f"--out: got {args.out!r}; must be a .keras file name")
    if Path(args.out).is_dir():
        raise cli.UsageError(f"--out: {args.out} is a folder; must be a .keras file name")
    options = dict(args.option)
    if args.units is not None:
        options["units"] = args.units
    name = args.model if args.model in COS429_NETS else models.resolve(args.model)
    try:
        build_model(name, options)  # seconds at most: a bad option fails here, not after reading
    except train.NETWORK_ERRORS as error:
        given = train._options_text(options)
        raise cli.UsageError(f"--option/--units {given}: not accepted by {name}: "
                             f"{train.network_problem(error)}") from None
    _refuse_shipped(args.out)
    if Path(args.out).exists() and not args.overwrite:
        raise cli.UsageError(f"--out {args.out}: exists; pass --overwrite to replace it")
    prefix = Path(checkpoint_prefix(args.checkpoint))
    files = re.compile(re.escape(prefix.name) + r"\.(index|meta|data-\d+-of-\d+)")
    cli.check_outputs([("--out", args.out)],
                      [("checkpoint", f) for f in prefix.parent.iterdir() if files.fullmatch(f.name)])
    return options


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    imp = commands.add_parser("import-tflearn", help="checkpoint -> model.keras")
    imp.add_argument("checkpoint", help="TFLearn checkpoint prefix (model.tflearn), its .index/.meta, or folder")
    imp.add_argument("--model", required=True, help=f"target model: {', '.join(model_names())}")
    imp.add_argument("--units", type=cli.positive_int,
                     help="hidden units of v1_single_layer (default: the checkpoint's)")
    imp.add_argument("--option", action="append", default=[], type=_parse_option, metavar="KEY=VALUE",
                     help="other network() options of the model")
    imp.add_argument("--out", required=True, help="where the model.keras goes")
    imp.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    show = commands.add_parser("list", help="the checkpoint's variables and shapes")
    show.add_argument("checkpoint", help="TFLearn checkpoint prefix, its .index/.meta, or folder")
    args = parser.parse_args(argv)
    if args.command == "list":
        ckpt = Checkpoint(args.checkpoint)
        print(f"{ckpt.prefix}: {len(ckpt.shapes)} variables, layer weights in "
              f"{ckpt.order_source} order: {', '.join(ckpt.scopes) or 'none'}")
        print(ckpt.listing())
        return 0
    options = _check_settings(args)
    import_tflearn(args.checkpoint, args.model, options, args.out, verbose=True)
    return 0


if __name__ == "__main__":
    cli.run(main)
