"""Model versions: one module per network, in TFLearn's example style.

    import models
    models.names()                 # ['v1_single_layer', 'v2_convnet', ...]
    m = models.load("v2")          # or models.load("v2_convnet")
    model = m.network()            # an uncompiled keras.Model
    m.SETTINGS                     # its default training settings

Adding your own version
-----------------------
Write `models/v<N>_<short_name>.py`; `names()` finds it by its file name, so nothing here needs
editing. Copy the smallest existing version and keep its convention, which the training
engine relies on:

- A module docstring that says what the network is and where it comes from, with a line
  `Architecture: ...` (the network in one line) and a line `Parameters: N`, N being
  `network().count_params()` (the tests check it).
- `network(init="glorot_uniform", **options) -> keras.Model`, UNCOMPILED:
    * input `keras.Input((96, 96, 1), name="image")`: grayscale faces in [0, 1];
    * output `layers.Dense(30, name="out")`, linear: the 15 keypoints as (x - 48) / 48,
      in Kaggle's column order (`input_data.COLUMNS`);
    * `init` (a Keras initializer name: "glorot_uniform" = Xavier, "he_normal", "zeros", ...)
      is the kernel_initializer of every convolution and dense layer; biases stay zeros;
    * layer names are fixed, so that weights can be copied by name between runs and between
      versions: convolutions `conv1`, `conv2`, ... (`conv1_1`, `conv1_2`, `conv2_1`, ... in
      VGG-style blocks), pools `pool1`, ..., dense layers `fc1`, `fc2`, ..., dropouts `drop1`,
      ..., the output `out`; set a name on every layer, even `Flatten`, or Keras numbers it
      (`flatten_3`) and the names change from one build to the next. v6 adds stride-2
      convolutions `down<N>`, batch norms `bn...`, residual sums `add<N>` / `block<N>`, the
      feature pyramid's `lateral<N>` / `up<N>` / `merge<N>`, and an integral head (`heatmaps`,
      `soft_argmax`) whose `out` is a Reshape of the soft-argmax rather than a Dense layer;
    * the model's name is the module's name;
    * `options` are the version's own knobs (e.g. `units=` for v1); check them with
      `check_options`, which rejects unknown ones with a TypeError.
- `SETTINGS`: a dict of default training settings, with keys only from `SETTING_KEYS`
  (say in a comment where each value comes from).
"""
import ast
import importlib
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The keys a version's SETTINGS may use (the training engine reads them).
SETTING_KEYS = frozenset({
    "optimizer",            # "sgd", "nesterov", "adam", "adamw"
    "learning_rate", "final_learning_rate",
    "momentum", "final_momentum",
    "schedule",             # "constant", "linear", "exponential", "cosine"
    "lr_decay", "decay_step",
    "weight_decay",
    "ema",                  # 0 (off) or the weight average's momentum, e.g. 0.998
    "loss",                 # "mse", "l1", "wing"
    "precision",            # "float32", "bfloat16"
    "epochs", "batch_size", "patience",   # patience >= epochs: no early stopping
    "augment",              # "none", "flip", "flip,rotate=10,shift,scale,light", ...
})

_VERSION_FILE = re.compile(r"^v(\d+)\w*\.py$")


class UnknownModelError(ValueError):
    """No model version by that name; the message lists the ones there are."""


def names():
    """The model versions in models/ (files named v<digit>*.py), in version order."""
    found = []
    for path in HERE.glob("v[0-9]*.py"):
        match = _VERSION_FILE.match(path.name)
        if match:
            found.append((int(match.group(1)), path.stem))
    return [name for _, name in sorted(found)]


def resolve(name):
    """'v2', 'v2_convnet', 'V2', 'v2_convnet.py' or 'models.v2_convnet' -> 'v2_convnet'."""
    available = names()
    key = str(name).strip().removeprefix("models.").removesuffix(".py").lower()
    exact = [n for n in available if n.lower() == key]
    if exact:
        return exact[0]
    if re.fullmatch(r"v\d+", key):     # a short name: the version number alone
        matches = [n for n in available if n.lower().startswith(key + "_")]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise UnknownModelError(f"model {name!r} is ambiguous: it could be {', '.join(matches)}")
    listing = ", ".join(available) or "none"
    raise UnknownModelError(f"no model {name!r} in {HERE}; available: {listing}")


def load(name):
    """The module of a model version, by full name ('v2_convnet') or short name ('v2')."""
    return importlib.import_module(f"{__name__}.{resolve(name)}")


def settings(name):
    """The SETTINGS dict of a model version, read from its file without importing it (and so
    without Keras: train.py's options are checked before TensorFlow loads). A SETTINGS that is
    not a plain literal (computed, or made with names) is read by importing the module."""
    resolved = resolve(name)
    try:
        tree = ast.parse((HERE / f"{resolved}.py").read_text(encoding="utf-8"))
        assigned = [node for node in tree.body if isinstance(node, ast.Assign)
                    and [getattr(t, "id", None) for t in node.targets] == ["SETTINGS"]]
        # Read from the file only when SETTINGS is named once, in that assignment: one changed
        # later (SETTINGS["x"] = ..., .update, a second assignment) is read by importing.
        named = sum(isinstance(node, ast.Name) and node.id == "SETTINGS" for node in ast.walk(tree))
        if len(assigned) == 1 and named == 1:
            value = assigned[0].value
            if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "dict" and not value.args:
                return {k.arg: ast.literal_eval(k.value) for k in value.keywords}
            return dict(ast.literal_eval(value))
    except (ValueError, TypeError, SyntaxError, UnicodeError):
        pass                                        # not a literal: the import reads it (or says what is wrong)
    return dict(getattr(load(resolved), "SETTINGS", {}))


def check_options(model, options, **defaults):
    """`defaults` updated with `options`; a TypeError for an option the model does not take.

    Used by each version's network():  units = check_options(NAME, options, units=100)["units"]
    An option whose default is an int must be a positive int.
    """
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        takes = ", ".join(["init"] + [f"{k}={v!r}" for k, v in defaults.items()])
        raise TypeError(f"{model}.network() got unknown option(s) {', '.join(unknown)}; "
                        f"it takes only {takes}")
    merged = {**defaults, **options}
    for key, default in defaults.items():
        value = merged[key]
        if isinstance(default, int) and not (isinstance(value, int) and not isinstance(value, bool)
                                             and value > 0):
            raise ValueError(f"{model}.network(): {key} must be a positive integer, got {value!r}")
    return merged


# The versions whose trained model.keras ships in models/<version>/ (git tracks it). Training
# never replaces them unless told to with --model-dir and --overwrite (train.protected_model_dir);
# this list protects them in a copy of the repository without .git too.
SHIPPED = ("v6_resnet_integral",)


class NoShippedModelError(FileNotFoundError):
    """No trained model ships with the repository yet (no models/v<N>_*/model.keras)."""


def shipped_model_path():
    """The default trained model: models/v<N>_<name>/model.keras of the highest version N that
    has one (v6 once it is trained and committed). predict.py, the notebook and the
    recognition extension use it when no --model is given."""
    found = []
    for path in HERE.glob("v[0-9]*/model.keras"):
        match = re.match(r"^v(\d+)", path.parent.name)
        if match:
            found.append((int(match.group(1)), path))
    if not found:
        raise NoShippedModelError(
            f"no trained model in {HERE} (looked for v<N>_<name>/model.keras); train one with "
            f"`python train.py --model v2_convnet` or pass --model PATH")
    return max(found)[1]
