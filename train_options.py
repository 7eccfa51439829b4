"""train.py's settings and command line, without Keras: DEFAULTS (the engine's), each with the
line `python train.py --help` shows, how they resolve with a model version's SETTINGS and what
is given, and the parser. train.py reads its options with this before it imports TensorFlow, so
a mistyped option is told at once; everything here is also train.X.
"""
import argparse
import sys
from pathlib import Path

import cli
import models

# The engine's defaults, each with the one line that `python train.py --help` shows.
DEFAULTS = dict(
    model="v2_convnet",
    model_options={},
    data=None,
    all_rows=False,
    cols=None,
    init_from=None,
    model_dir=None,
    validation=0.1,
    epochs=100,
    batch_size=128,
    optimizer="nesterov",
    learning_rate=0.03,
    final_learning_rate=0.0001,
    momentum=0.9,
    final_momentum=0.999,
    schedule="linear",
    lr_decay=0.96,
    decay_step=100,
    weight_decay=0.0,
    ema=0.0,
    loss="mse",
    precision="float32",
    init="glorot_uniform",
    augment="flip",
    mirror_axis="auto",
    patience=30,
    time_limit=None,
    image_every=5,
    run_id=None,
    resume=False,
    overwrite=False,
    seed=0,
    strategy=None,
    devices=None,
    root=".",
    save_model=True,
    verbose=1,
)

HELP = dict(
    model="the model version to train: a module in models/ (v1_single_layer ... v6_resnet_integral; 'v2' works)",
    model_options="options for the version's network(), e.g. {'units': 50} for v1_single_layer",
    data="Kaggle-format CSV (.csv/.zip) or data.p; default: Kaggle's training file in ROOT/data/ (else synthetic faces)",
    all_rows="keep faces with missing keypoints (the masked loss ignores the missing ones)",
    cols="train on these keypoint columns only, comma separated (what specialists.py does)",
    init_from="a model.keras whose weights start this one where layer names and shapes match (all but `out`)",
    model_dir="where model.keras and model.json go; default ROOT/models/VERSION (runs/RUN_ID/ if a shipped model is there)",
    validation="fraction of the faces held out to score the run (by person when DATA.sources.csv exists); 0: train on all",
    epochs="passes over the training faces (the most, with --time-limit: the budget then sets them)",
    batch_size="faces per training step",
    optimizer="sgd | nesterov | adam | adamw",
    learning_rate="the learning rate the schedule starts from (more than 0)",
    final_learning_rate="the learning rate the linear or cosine schedule ends at",
    momentum="SGD momentum at the start (sgd and nesterov only)",
    final_momentum="SGD momentum at the end, reached linearly as Nouri's AdjustVariable did; none: constant",
    schedule="learning-rate schedule: constant | linear | cosine | exponential",
    lr_decay="exponential schedule: the factor per DECAY_STEP steps (TFLearn's lr_decay)",
    decay_step="exponential schedule: steps per LR_DECAY factor",
    weight_decay="weight decay (decoupled for adamw); 0: none",
    ema="end as the moving average of the weights with this momentum (e.g. 0.998) when it is warm; 0: off",
    loss="what training minimises on the present keypoints: mse | l1 | wing",
    precision="float32 | bfloat16 (bf16 arithmetic on float32 weights; coordinates stay float32)",
    init="kernel initializer: glorot_uniform (Xavier) | he_normal | zeros | any Keras initializer name",
    augment="none | all (flip..light) | comma list of flip, rotate, shift, scale, light, blur, erase, each =SIZE optional",
    mirror_axis="x in pixels about which mirrored labels mirror; auto: the training labels' midline",
    patience="stop after this many epochs without a better validation RMSE",
    time_limit="seconds of training: the epochs and the LR/momentum schedule are fitted to it",
    image_every="validation faces and weight histograms in TensorBoard every this many epochs",
    run_id="names runs/RUN_ID/ and logs/RUN_ID/ (letters, digits, . _ -); default VERSION-MMDD-HHMMSS",
    resume="continue run RUN_ID from its last checkpoint, with the run's own model, options and columns",
    overwrite="replace an earlier run with the same RUN_ID, or the model in an explicit --model-dir",
    seed="random seed of the split, the initial weights, the order and the augmentation",
    strategy="none | mirrored (all local GPUs, or DEVICES CPUs) | multiworker (TF_CONFIG)",
    devices="mirrored without GPUs: split the CPU into this many logical devices",
    root="where models/, runs/ and logs/ go",
    save_model="write the model (False: only the run's checkpoints)",
    verbose="Keras progress: 0 silent, 1 progress bar, 2 one line per epoch",
)
assert set(HELP) == set(DEFAULTS)


class UnknownSettingError(cli.UsageError, TypeError):
    """A keyword train() does not know (a typo in a notebook, usually)."""


def flag(key):
    """The command-line spelling of a setting: batch_size -> --batch-size."""
    return "--" + key.replace("_", "-")


def resolve_settings(**overrides):
    """DEFAULTS, then the model module's SETTINGS, then overrides (unknown keys are errors)."""
    return resolve_settings_and_sources(**overrides)[0]


def resolve_settings_and_sources(**overrides):
    """(settings, {key: where its value comes from: "engine default", "model SETTINGS" or
    "given"}). With a time limit and no epochs given, the budget decides the epochs."""
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise UnknownSettingError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
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
               for key in DEFAULTS}
    if settings.get("time_limit") and "epochs" not in overrides:
        settings["epochs"] = None       # the budget plans them (see _Checkpoints' time plan)
        sources["epochs"] = "fitted to --time-limit"
    return settings, sources


def settings_table(settings, sources, keys=None):
    """The settings a run uses, one per line with where each comes from."""
    keys = keys or [k for k in DEFAULTS if k not in ("resume", "verbose", "save_model", "overwrite",
                                                     "image_every", "devices", "strategy")]
    return "\n".join(f"  {flag(key)[2:]:<20} {_show(settings[key]):<44} {sources.get(key, '')}"
                     for key in keys)


def _show(value):
    text = "none" if value is None else ",".join(value) if isinstance(value, list) else str(value)
    return text if len(text) <= 44 else "..." + text[-41:]


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
    for key, default in DEFAULTS.items():
        if key in ("model", "model_options", "save_model", "verbose"):
            continue
        name = flag(key)
        where = f" [{_show(shown[key])}: {sources[key]}]"
        if isinstance(default, bool):
            parser.add_argument(name, action="store_true", default=None, help=HELP[key])
        elif isinstance(default, (int, float)) or key in ("time_limit", "devices"):
            parser.add_argument(name, type=_parse_value, default=None, metavar="N", help=HELP[key] + where)
        else:
            parser.add_argument(name, default=None, metavar=key.upper(), help=HELP[key] + where)
    parser.add_argument("--no-save", action="store_true", help="write no model.keras, only the run's checkpoints")
    parser.add_argument("--quiet", action="store_true", help="one line per epoch instead of a progress bar")
    return parser


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
