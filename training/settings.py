"""The training engine's settings, each declared once (default, help line, check), and
everything made from them: the command line, the table a run prints, the notebook's defaults
and validation. No TensorFlow here: `python train.py --help` and a mistyped option are answered
at once, and a tool that only reads settings stays light.

A new setting is one entry in SETTINGS, e.g.

    skip_flagged=Setting(False, "leave out the label rows that check-labels flags", boolean),

and the engine then reads it as settings["skip_flagged"]. Settings resolve in three layers:
the defaults here, then the model module's SETTINGS (its tutorial's choices), then what is given.
"""
import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

import cli
import models

OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "linear", "cosine", "onecycle", "exponential")
STRATEGIES = (None, "mirrored", "multiworker")
LOSS_NAMES = ("mse", "l1", "wing")          # training.losses.LOSSES holds them


class UnknownSettingError(cli.UsageError, TypeError):
    """A keyword train() does not know (a typo in a notebook, usually)."""


def flag(key):
    """The command-line spelling of a setting: batch_size -> --batch-size."""
    return "--" + key.replace("_", "-")


# ---------------------------------------------------------------------------------------
# Checks: check(key, value, settings) returns the value normalised (1 -> 1.0 for a float
# setting), or raises cli.UsageError naming the option, what was given and what is allowed.
# `settings` holds the other settings as given, for the checks that depend on them.

def number(low=None, high=None, integer=False, allow_low=True, allow_none=False, below=None):
    """A finite number within [low, high] ((low, ...] without allow_low; [low, below) with
    below), or None with allow_none."""
    def check(key, value, settings=None):
        if value is None and allow_none:
            return None
        kind = "an integer" if integer else "a number"
        bad = isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
        if not bad and integer and not float(value).is_integer():
            bad = True
        if not bad and not math.isfinite(float(value)):
            bad = True
        if not bad and low is not None and (value < low or (value == low and not allow_low)):
            bad = True
        if not bad and high is not None and value > high:
            bad = True
        if bad:
            limits = (f" {'at least' if allow_low else 'more than'} {low}" if low is not None else "") + \
                     (f"{' and' if low is not None else ''} at most {high}" if high is not None else "")
            raise cli.UsageError(f"{flag(key)}: got {value!r}; must be {kind}{limits}"
                                 f"{' (or none)' if allow_none else ''}")
        value = int(value) if integer else float(value)
        if below is not None and value >= below:
            raise cli.UsageError(below_message(key, value))
        return value
    return check


def below_message(key, value):
    """The error of a value at or above its setting's `below` limit (each says its own rule)."""
    if key == "validation":
        return f"--validation: got {value!r}; must be a fraction at least 0 and below 1"
    if key == "ema":
        return f"--ema: got {value}; ema is a momentum in [0, 1) (0: off)"
    return f"{flag(key)}: got {value}; must be at least 0 and below 1"


def choice(allowed):
    """One of `allowed` (a tuple, or a function giving it when that needs an import)."""
    def check(key, value, settings=None):
        options = allowed() if callable(allowed) else allowed
        if value not in options:
            raise cli.UsageError(f"{flag(key)}: got {value!r}; must be one of "
                                 f"{', '.join('none' if a is None else str(a) for a in options)}")
        return value
    return check


def boolean(key, value, settings=None):
    if not isinstance(value, (bool, np.bool_)):
        raise cli.UsageError(f"{flag(key)}: got {value!r}; must be True or False")
    return value


def path(must_exist=None):
    """A path (or None); must_exist: the kind of thing that must be there ("file" or "path")."""
    def check(key, value, settings=None):
        if value is None:
            return None
        if not isinstance(value, (str, os.PathLike)):
            raise cli.UsageError(f"{flag(key)}: got {value!r}; must be a path")
        exists = Path(value).is_file() if must_exist == "file" else Path(value).exists()
        if must_exist and not exists:
            raise cli.InputError(f"{flag(key)} {value}: no such file")
        return value
    return check


def _model_options(key, value, settings=None):
    if not isinstance(value, dict):
        raise cli.UsageError(f"--option: model options must be a dict of KEY=VALUE, not {value!r}")
    return value


def _epochs(key, value, settings):
    return number(1, None, integer=True, allow_none=bool(settings.get("time_limit")))(key, value)


def _final_learning_rate(key, value, settings):
    value = number(0, 10)(key, value)
    if settings["schedule"] in ("linear", "cosine") and value > settings["learning_rate"]:
        raise cli.UsageError(f"--final-learning-rate: got {value}; a {settings['schedule']} "
                             f"schedule decays, so it must be at most --learning-rate ({settings['learning_rate']})")
    return value


def _precisions():
    from training import device
    return device.PRECISIONS


def _initializer(key, value, settings=None):
    import keras
    try:
        keras.initializers.get(value)
    except (ValueError, TypeError, KeyError):    # KeyError: one that needs arguments (constant)
        raise cli.UsageError(f"--init: got {value!r}; must be a Keras initializer name that needs no "
                             "arguments, such as glorot_uniform, he_normal or zeros") from None
    return value


def _augment(key, value, settings=None):
    import augment
    try:
        augment.parse(value)
    except (ValueError, TypeError) as error:
        raise cli.UsageError(f"--augment: got {value!r}: {cli.one_line(error)}") from None
    return value


def fixed_mirror_axis(value):
    """A mirror axis given in pixels, checked (ValueError): near the 96-px frame's centre."""
    try:
        axis = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"mirror_axis must be 'auto' or a pixel x such as 47.5, not {value!r}") from None
    if not 40 <= axis <= 56:
        raise ValueError(f"mirror_axis {axis} px is not near the 96-px frame's centre (47.5); "
                         "it is the x about which the labels mirror")
    return axis


def _mirror_axis(key, value, settings=None):
    if value != "auto":
        try:
            fixed_mirror_axis(value)
        except ValueError as error:
            raise cli.UsageError(f"--mirror-axis: {error}") from None
    return value


RUN_ID_CHARACTERS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def check_run_id(run_id, option="--run-id"):
    """A run id names one folder under runs/ and logs/: a plain name, never a path."""
    if not isinstance(run_id, str) or not run_id or run_id in (".", "..") or len(run_id) > 100 \
            or set(run_id) - RUN_ID_CHARACTERS or run_id.startswith(("-", ".")):
        raise cli.UsageError(f"{option}: got {run_id!r}; a run id is a plain folder name of letters, "
                             "digits, '.', '_' and '-' (not starting with '.' or '-', at most 100), never a path")
    return run_id


def _run_id(key, value, settings=None):
    return None if value is None else check_run_id(value)


def _cols(key, value, settings):
    import input_data
    if value is None:
        return None
    if isinstance(value, str) or not value:
        raise cli.UsageError(f"--cols: got {value!r}; must be a non-empty list of keypoint columns")
    unknown = [c for c in value if c not in input_data.COLUMNS]
    if unknown or len(set(value)) != len(value):
        raise cli.UsageError(f"--cols: {'unknown ' + ', '.join(map(str, unknown)) if unknown else 'a column is repeated'};"
                             f" the columns are {', '.join(input_data.COLUMNS)}")
    # Keypoints are (x, y) pairs: the flip, the face grids and the outputs read them so.
    for x, y in zip(value[::2], value[1::2] + [None]):
        if not (x.endswith("_x") and y == x[:-2] + "_y"):
            raise cli.UsageError(f"--cols: {x},{y or '(end)'} is not one keypoint's x and y; give each "
                                 "keypoint as NAME_x,NAME_y, e.g. left_eye_center_x,left_eye_center_y")
    one_sided = input_data.one_sided(value)
    if one_sided and "flip" in _augment_parts(settings["augment"]):
        raise cli.UsageError(f"--cols: {', '.join(one_sided)} without the other side's keypoint, with the "
                             "mirror in --augment: a mirrored left eye is a right eye, which this model would "
                             "learn as a left one; add the other side's columns, or leave flip out of --augment")
    return value


def _augment_parts(spec):
    """The augmentations --augment asks for (none when it does not parse: its own check says so)."""
    import augment
    try:
        config = augment.parse(spec)
    except (ValueError, TypeError):
        return set()
    return {"flip"} if config.flip else set()


def _comma_list(text):
    return [c.strip() for c in text.split(",") if c.strip()]


# ---------------------------------------------------------------------------------------
# The settings.

@dataclass(frozen=True)
class Setting:
    """One setting: its default, the line `--help` shows, and its check. option: how the command
    line takes it ("flag", "number", "text"; None: from the default's type; False: not an option
    of its own). none: the word `none` on the command line means None. table: shown in the table
    a run prints. parse: the command line's text to the value (default: per option kind)."""
    default: Any
    help: str
    check: Callable = None
    option: Any = None
    none: bool = False
    table: bool = True
    parse: Callable = None

    @property
    def kind(self):
        if self.option is not None:
            return self.option
        if isinstance(self.default, bool):
            return "flag"
        return "number" if isinstance(self.default, (int, float)) else "text"


SETTINGS = dict(
    model=Setting("v2_convnet", "the model version to train: a module in models/ (v1_single_layer ... "
                  "v6_resnet_integral; 'v2' works)"),
    model_options=Setting({}, "options for the version's network(), e.g. {'units': 50} for v1_single_layer",
                          _model_options, option=False),
    data=Setting(None, "Kaggle-format CSV (.csv/.zip) or data.p; default: Kaggle's training file in ROOT/data/ "
                 "(else synthetic faces)", path("path"), none=True),
    all_rows=Setting(False, "keep faces with missing keypoints (the masked loss ignores the missing ones)", boolean),
    cols=Setting(None, "train on these keypoint columns only, comma separated (what specialists.py does)",
                 _cols, parse=_comma_list),
    init_from=Setting(None, "a model.keras whose weights start this one where layer names and shapes match "
                      "(all but `out`)", path("file"), none=True),
    model_dir=Setting(None, "where model.keras and model.json go; default ROOT/models/VERSION (runs/RUN_ID/ if "
                      "a shipped model is there)", path(), none=True),
    validation=Setting(0.1, "fraction of the faces held out to score the run (by person when DATA.sources.csv "
                       "exists); 0: train on all", number(0, None, below=1)),
    epochs=Setting(100, "passes over the training faces (the most, with --time-limit: the budget then sets them)",
                   _epochs),
    batch_size=Setting(128, "faces per training step", number(1, 1 << 16, integer=True)),
    optimizer=Setting("nesterov", "sgd | nesterov | adam | adamw", choice(OPTIMIZERS)),
    learning_rate=Setting(0.03, "the learning rate the schedule starts from (more than 0)", number(0, 10)),
    final_learning_rate=Setting(0.0001, "the learning rate the linear or cosine schedule ends at",
                                _final_learning_rate),
    momentum=Setting(0.9, "SGD momentum at the start (sgd and nesterov only)", number(0, 1, below=1)),
    final_momentum=Setting(0.999, "SGD momentum at the end, reached linearly as Nouri's AdjustVariable did; "
                           "none: constant", number(0, 0.9999, allow_none=True), none=True),
    schedule=Setting("linear", "learning-rate schedule: constant | linear | cosine | onecycle (a linear warm-up "
                     "from a tenth of the rate over the first tenth of the steps, then cosine) | exponential",
                     choice(SCHEDULES)),
    lr_decay=Setting(0.96, "exponential schedule: the factor per DECAY_STEP steps (TFLearn's lr_decay)",
                     number(0, None, allow_low=False)),
    decay_step=Setting(100, "exponential schedule: steps per LR_DECAY factor", number(1, None, integer=True)),
    weight_decay=Setting(0.0, "weight decay (decoupled for adamw); 0: none", number(0, 1)),
    ema=Setting(0.0, "end as the moving average of the weights with this momentum (e.g. 0.998) when it is "
                "warm; 0: off", number(0, None, below=1)),
    loss=Setting("mse", "what training minimises on the present keypoints: mse | l1 | wing", choice(LOSS_NAMES)),
    precision=Setting("auto", "auto (by device: mixed float16 on CUDA GPUs of compute capability 7.0+; mixed "
                      "bfloat16 for v6 on CPUs with native bfloat16; else float32; training/device.py) | float32 | bfloat16 | float16 (mixed: 16-bit arithmetic on "
                      "float32 weights; coordinates stay float32)", choice(_precisions)),
    init=Setting("glorot_uniform", "kernel initializer: glorot_uniform (Xavier) | he_normal | zeros | any "
                 "Keras initializer name", _initializer),
    augment=Setting("flip", "none | all (flip..light) | comma list of flip, rotate, shift, scale, light, blur, "
                    "erase, each =SIZE optional", _augment),
    mirror_axis=Setting("auto", "x in pixels about which mirrored labels mirror; auto: the training labels' "
                        "midline", _mirror_axis),
    patience=Setting(30, "stop after this many epochs without a better validation RMSE",
                     number(1, None, integer=True)),
    time_limit=Setting(None, "seconds of training: the epochs and the LR/momentum schedule are fitted to it",
                       number(0, None, allow_low=False, allow_none=True), option="number", none=True),
    image_every=Setting(5, "validation faces and weight histograms in TensorBoard every this many epochs",
                        number(1, None, integer=True), table=False),
    run_id=Setting(None, "names runs/RUN_ID/ and logs/RUN_ID/ (letters, digits, . _ -); default "
                   "VERSION-MMDD-HHMMSS", _run_id, none=True),
    resume=Setting(False, "continue run RUN_ID from its last checkpoint, with the run's own model, options "
                   "and columns", boolean, table=False),
    overwrite=Setting(False, "replace an earlier run with the same RUN_ID, or the model in an explicit "
                      "--model-dir", boolean, table=False),
    seed=Setting(0, "random seed of the split, the initial weights, the order and the augmentation",
                 number(0, 2 ** 32 - 1, integer=True)),
    strategy=Setting(None, "none | mirrored (all local GPUs, or DEVICES CPUs) | multiworker (TF_CONFIG)",
                     choice(STRATEGIES), none=True, table=False),
    devices=Setting(None, "mirrored without GPUs: split the CPU into this many logical devices",
                    number(1, 256, integer=True, allow_none=True), option="number", table=False),
    root=Setting(".", "where models/, runs/ and logs/ go", path()),
    save_model=Setting(True, "write the model (False: only the run's checkpoints)", boolean, option=False,
                       table=False),
    verbose=Setting(1, "Keras progress: 0 silent, 1 progress bar, 2 one line per epoch",
                    number(0, 2, integer=True), option=False, table=False),
)


class SettingsColumn:
    """One field of every setting, read live from SETTINGS as a mapping: DEFAULTS["epochs"],
    {**DEFAULTS, ...}, list(HELP). A setting added to SETTINGS appears in it at once."""

    def __init__(self, field):
        self.field = field

    def __getitem__(self, key):
        return getattr(SETTINGS[key], self.field)

    def __iter__(self):
        return iter(SETTINGS)

    def __len__(self):
        return len(SETTINGS)

    def __contains__(self, key):
        return key in SETTINGS

    def keys(self):
        return SETTINGS.keys()

    def items(self):
        return [(key, getattr(s, self.field)) for key, s in SETTINGS.items()]

    def values(self):
        return [getattr(s, self.field) for s in SETTINGS.values()]

    def get(self, key, default=None):
        return getattr(SETTINGS[key], self.field) if key in SETTINGS else default

    def __repr__(self):
        return repr(dict(self.items()))


DEFAULTS = SettingsColumn("default")    # the engine's defaults
HELP = SettingsColumn("help")           # the line `python train.py --help` shows for each


# ---------------------------------------------------------------------------------------
# Resolving and showing.

def resolve_settings(**overrides):
    """DEFAULTS, then the model module's SETTINGS, then overrides (unknown keys are errors)."""
    return resolve_settings_and_sources(**overrides)[0]


def resolve_settings_and_sources(**overrides):
    """(settings, {key: where its value comes from: "engine default", "model SETTINGS" or
    "given"}). With a time limit and no epochs given, the budget decides the epochs."""
    unknown = sorted(set(overrides) - set(SETTINGS))
    if unknown:
        raise UnknownSettingError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    name = overrides.get("model", DEFAULTS["model"])
    try:
        version = models.resolve(name)
    except models.UnknownModelError as error:
        raise cli.UsageError(f"--model: {error}") from None
    own = models.settings(version)
    settings = {**DEFAULTS, **own, **overrides}
    settings["model"] = version
    given = "command line" if Path(sys.argv[0]).name == "train.py" else "given"
    sources = {key: given if key in overrides else "model SETTINGS" if key in own else "engine default"
               for key in SETTINGS}
    if settings.get("time_limit") and "epochs" not in overrides:
        settings["epochs"] = None       # the budget plans them (see callbacks.Checkpoints' time plan)
        sources["epochs"] = "fitted to --time-limit"
    return settings, sources


def validate_settings(settings):
    """Check every setting's type, range and allowed values before any work starts; returns
    the settings with numbers normalised. A bad one is a cli.UsageError naming its option (a
    file that is not there: cli.InputError)."""
    s = dict(settings)
    for key, setting in SETTINGS.items():
        if setting.check is not None:
            s[key] = setting.check(key, s[key], s)
    return s


def settings_table(settings, sources, keys=None):
    """The settings a run uses, one per line with where each comes from."""
    keys = keys or [key for key, setting in SETTINGS.items() if setting.table]
    return "\n".join(f"  {flag(key)[2:]:<20} {_show(settings[key]):<44} {sources.get(key, '')}"
                     for key in keys)


def _show(value):
    text = "none" if value is None else ",".join(value) if isinstance(value, list) else str(value)
    return text if len(text) <= 44 else "..." + text[-41:]


def options_text(options):
    """Model options as the command line gives them: units=50 dropout=0.5."""
    return " ".join(f"{k}={v}" for k, v in options.items()) or "(none)"


def notebook_settings(**values):
    """For a notebook's parameter cell, where None means "the default": (overrides, settings,
    sources, the table to print). overrides go to train.train(**overrides) unchanged."""
    overrides = {key: value for key, value in values.items() if value is not None}
    settings, sources = resolve_settings_and_sources(**overrides)
    return overrides, settings, sources, settings_table(settings, sources)


# ---------------------------------------------------------------------------------------
# The command line.

def build_parser(argv=()):
    """The command line; each option's help ends with the value used for the model named in
    argv (--model X) and where it comes from."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--model", default=DEFAULTS["model"])
    known, _ = first.parse_known_args(argv)
    try:
        shown, sources = resolve_settings_and_sources(model=known.model)
    except cli.UsageError:
        shown, sources = resolve_settings_and_sources()
    parser = argparse.ArgumentParser(
        description="Train a model version on Kaggle-format faces. Each option's help ends with the "
                    f"value used for {shown['model']} and where it comes from (engine default, the "
                    "model's SETTINGS); pass --model X --help to see another version's.")
    # No default here: a resumed run's model is its own, not DEFAULTS' (train() resolves it).
    parser.add_argument("--model", help=HELP["model"] + f" [{DEFAULTS['model']}]")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the version's network(), e.g. --option units=50 (repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="a 1-epoch run on 256 synthetic faces into a temporary folder (checks the set-up)")
    for key, setting in SETTINGS.items():
        if key == "model" or setting.option is False:
            continue
        name = flag(key)
        where = f" [{_show(shown[key])}: {sources[key]}]"
        if setting.kind == "flag":
            parser.add_argument(name, action="store_true", default=None, help=setting.help)
        elif setting.kind == "number":
            parser.add_argument(name, type=_parse_value, default=None, metavar="N", help=setting.help + where)
        else:
            parser.add_argument(name, default=None, metavar=key.upper(), help=setting.help + where)
    parser.add_argument("--no-save", action="store_true", help="write no model.keras, only the run's checkpoints")
    parser.add_argument("--quiet", action="store_true", help="one line per epoch instead of a progress bar")
    return parser


def command_line_values(args):
    """The settings given on the command line (args from build_parser), as train() takes them:
    `none` read as None where a setting allows it, a comma list as a list."""
    given = {}
    for key, setting in SETTINGS.items():
        value = getattr(args, key, None)
        if value is None or key in ("resume", "overwrite"):
            continue
        if setting.none and isinstance(value, str) and value.lower() == "none":
            value = None
        elif setting.parse is not None:
            value = setting.parse(value)
        given[key] = value
    return given


def _parse_value(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None if text.lower() == "none" else text


def check_command_line(argv):
    """What train.py checks before it imports TensorFlow: the options parse, and --model names a
    version in models/. A mistake ends the process here with one error line (exit 2)."""
    args = build_parser(argv).parse_args(argv)
    if args.model is not None:
        try:
            models.resolve(args.model)
        except models.UnknownModelError as error:
            cli.fail(f"--model: {error}", 2)
