"""The network: a model file -> a predictor (ONNX through onnxruntime, no TensorFlow; or any
Keras-like object), and 96x96 crops -> 15 keypoints in the crop's pixels and a confidence."""
import os
import sys
from pathlib import Path

import numpy as np

import cli
import confidence
import input_data
from confidence import heatmap_confidence
from input_data import IMAGE_SIZE, KEYPOINT_NAMES
from prediction.options import FLIP_TTA, LOW_CONFIDENCE

# Where a user's own .keras, converted to ONNX on first use, is kept (keyed by its sha256).
CACHE_DIR = Path(os.environ.get("FKD_CACHE_DIR") or Path.home() / ".cache" / "facial-keypoints")
MAX_UNIT = 50.0              # |keypoint| in half-crop units: beyond this a model is broken
NETWORK_BATCH = 64           # crops per network call

_cache = {}                  # loaded predictors (by path and threads)


class ModelError(cli.InputError):
    """The model, not a photo, is at fault (wrong input or output shapes, non-finite keypoints):
    the run stops with one line instead of marking every photo unreadable."""


KEYPOINT_PAIRS = [(i, KEYPOINT_NAMES.index(name.replace("left", "right")))
                  for i, name in enumerate(KEYPOINT_NAMES) if "left" in name]
_MIRROR = np.arange(len(KEYPOINT_NAMES))
for _a, _b in KEYPOINT_PAIRS:
    _MIRROR[_a], _MIRROR[_b] = _b, _a


def no_face_confidence(predictor, n=8, seed=0):
    """The highest confidence `predictor` gives 96x96 crops that hold no face (n of uniform noise,
    n of flat grey); NaN for a model without heatmaps. A bar at or under it lets such crops be
    `ok` faces (docs/predict.md, "Confidence")."""
    scores = run_network(predictor, confidence.noise_and_flat(n, seed), False)[1]
    return float(np.max(scores)) if np.isfinite(scores).all() else float("nan")


def bar_of(predictor, given=None):
    """The confidence bar of a run: `given` (--low-confidence) when not None, else the model's own
    (chosen when it was trained: its ONNX metadata, or low_confidence on a Keras-like object),
    else LOW_CONFIDENCE, the shipped model's."""
    if given is not None:
        return float(given)
    own = getattr(load_model(predictor), "low_confidence", None)
    return float(own) if own is not None else LOW_CONFIDENCE


def with_bar(options):
    """A run's Options with its bar resolved (bar_of): what process_photos and process_video
    compare confidences with."""
    return options._replace(low_confidence=bar_of(options.model, options.low_confidence))


def _metadata_number(text, key, valid, expected, path):
    """A number in an ONNX file's metadata (text under `key`), checked by valid(): export.py
    writes the mirror axis (pixels within the frame; anything else would mirror every flip-TTA
    prediction to garbage) and the confidence bar (between 0 and 1; anything else would make
    every face `ok`, or every face `low`)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if not valid(value):
        raise ModelError(f"{path}: its metadata {key} is {cli.one_line(text)[:40]!r}; expected {expected}")
    return value


class OnnxPredictor:
    """The network through onnxruntime: 96x96 crops -> keypoints (frame pixels) and confidence.
    The ONNX file is export.py's predictor (outputs `out` and, for v6, `heatmaps`; metadata
    mirror_axis_px for flip TTA and low_confidence, the bar chosen in training, if any).
    `source`: the file to name in messages (the user's .keras for
    a converted copy in CACHE_DIR), default the ONNX file itself."""

    def __init__(self, path, threads=None, source=None):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or 0)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.path = Path(path)
        self.source = source = Path(source or path)
        try:                                    # bytes: onnxruntime cannot open every file name
            self.session = ort.InferenceSession(self.path.read_bytes(), options,
                                                providers=["CPUExecutionProvider"])
        except OSError as error:
            raise cli.InputError(f"{source}: cannot read ({cli.describe_os_error(error)})") from None
        except Exception as error:              # onnxruntime raises its own types for bad files
            raise cli.InputError(f"{source}: not an ONNX model onnxruntime can run "
                                 f"({cli.one_line(error)[:200]})") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.mirror_axis = _metadata_number(self.metadata.get("mirror_axis_px", str((IMAGE_SIZE - 1) / 2)),
                                            "mirror_axis_px", input_data.is_mirror_axis,
                                            input_data.MIRROR_AXIS_EXPECTED, source)
        bar = self.metadata.get("low_confidence")                   # None: not chosen in training
        self.low_confidence = None if bar is None else _metadata_number(
            bar, "low_confidence", confidence.is_bar, "a number between 0 and 1", source)
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()][:1]
        if "heatmaps" in [o.name for o in self.session.get_outputs()]:
            self.outputs.append("heatmaps")
        shape = self.session.get_outputs()[0].shape
        if len(shape) != 2 or shape[-1] != 2 * len(KEYPOINT_NAMES):
            raise ModelError(f"{source}: the model gives {shape[1:]} per face, expected 30 "
                             "keypoint coordinates")
        image = self.session.get_inputs()[0]
        if image.type != "tensor(float)" or len(image.shape) != 4 or \
                list(image.shape[1:]) != [IMAGE_SIZE, IMAGE_SIZE, 1]:
            raise ModelError(f"{source}: the model takes {image.type} {image.shape}, expected float32 "
                             f"[N, {IMAGE_SIZE}, {IMAGE_SIZE}, 1] (96x96 grayscale faces)")
        if "heatmaps" in self.outputs:
            heatmaps = next(o for o in self.session.get_outputs() if o.name == "heatmaps").shape
            if len(heatmaps) != 3 or heatmaps[1] != len(KEYPOINT_NAMES):
                raise ModelError(f"{source}: its heatmaps are {heatmaps}, expected [N, 15, cells]")

    def raw(self, X):
        """float32 (n, 96, 96, 1) -> (unit keypoints (n, 30), heatmaps or None)."""
        try:
            result = self.session.run(self.outputs, {self.input: X})
        except Exception as error:              # onnxruntime's own types: shapes that do not fit
            raise ModelError(f"{self.source}: not a keypoint model onnxruntime can run on 96x96 faces "
                             f"({cli.one_line(error)[:200]})") from None
        return result[0], (result[1] if len(result) > 1 else None)


class KerasPredictor:
    """Anything with predict_on_batch or predict (a keras model, a test's stand-in): no heatmaps,
    so no confidence (NaN)."""

    def __init__(self, model):
        self.model = model
        self.mirror_axis = float(getattr(model, "mirror_axis", None) or (IMAGE_SIZE - 1) / 2)
        self.low_confidence = getattr(model, "low_confidence", None)

    def raw(self, X):
        predict = getattr(self.model, "predict_on_batch", None)
        if predict is None:
            return np.asarray(self.model.predict(X, verbose=0), np.float32), None
        return np.asarray(predict(X), np.float32), None


def run_network(predictor, crops, flip_tta=FLIP_TTA):
    """uint8 (n, 96, 96) crops -> (float (n, 15, 2) keypoints in the 96-px frame, float (n,)
    confidence). flip_tta averages with the un-mirrored prediction on the mirrored crops (about
    the model's mirror axis, left/right keypoints swapped: augment.predict_with_flip's rule)."""
    predictor = load_model(predictor)
    crops = np.asarray(crops)
    if len(crops) == 0:
        return np.zeros((0, 15, 2)), np.zeros(0)
    points, confidences = [], []
    for first in range(0, len(crops), NETWORK_BATCH):
        batch = crops[first:first + NETWORK_BATCH]
        n = len(batch)
        X = input_data.images_to_unit(batch)
        if flip_tta:
            X = np.concatenate([X, X[:, :, ::-1]])
        unit, heatmaps = predictor.raw(np.ascontiguousarray(X, np.float32))
        if not (np.isfinite(unit).all() and np.abs(unit).max(initial=0) < MAX_UNIT):
            raise ModelError(f"{getattr(predictor, 'source', 'the model')}: the model gives "
                             + ("non-finite keypoints (NaN or inf)" if not np.isfinite(unit).all()
                                else f"keypoints {np.abs(unit).max():.3g} half-widths from the crop's centre")
                             + " on a 96x96 crop: it is not a working keypoint model")
        pixels = input_data.keypoints_to_pixels(np.asarray(unit, np.float64)).reshape(-1, 15, 2)
        conf = heatmap_confidence(heatmaps) if heatmaps is not None else np.full(len(X), np.nan)
        if flip_tta:
            mirrored = pixels[n:][:, _MIRROR]
            mirrored[..., 0] = 2 * predictor.mirror_axis - mirrored[..., 0]
            pixels = (pixels[:n] + mirrored) / 2
            conf = (conf[:n] + conf[n:]) / 2
        points.append(pixels)
        confidences.append(conf)
    return np.concatenate(points), np.concatenate(confidences)


def onnx_for(keras_path, threads=None):
    """The OnnxPredictor of a .keras file: the .onnx beside it (same name) when its metadata
    names this file's sha256 and model.json's confidence bar (the shipped model.onnx), else a copy
    converted on first use and kept in CACHE_DIR/<sha256>[-bar<bar>].onnx (that first use imports TensorFlow: ~10-30 s; see
    docs/predict.md for why converting beats running Keras)."""
    keras_path = Path(keras_path)
    digest = input_data.file_sha256(keras_path)
    bar = confidence.saved_bar(keras_path)
    beside = keras_path.with_suffix(".onnx")
    if beside.is_file():
        try:
            predictor = OnnxPredictor(beside, threads, source=keras_path)
        except cli.InputError:
            predictor = None                # an unreadable file beside is just not used
        if predictor is not None and predictor.metadata.get("keras_sha256") == digest \
                and predictor.low_confidence == bar:
            return predictor
    # Keyed by the bar too: model.json's bar goes into the ONNX metadata.
    cached = CACHE_DIR / (f"{digest[:32]}.onnx" if bar is None else f"{digest[:32]}-bar{bar:g}.onnx")
    if not cached.is_file():
        print(f"converting {keras_path} to ONNX once (kept in {cached}) ...", file=sys.stderr)
        import export
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        export.export_predictor(keras_path, cached)
    return OnnxPredictor(cached, threads, source=keras_path)


def load_model(model=None, threads=None):
    """A predictor: None = the shipped model (models.shipped_model_path(), run through its
    model.onnx); a .onnx path (run as it is: prefer it for a model from someone you do not
    trust, a .keras file can run code); a .keras path (its ONNX, see onnx_for); a predictor
    (anything with OnnxPredictor's raw() and mirror_axis) as it is; anything with
    predict_on_batch/predict through KerasPredictor. Loaded files are cached by path."""
    if hasattr(model, "raw") and hasattr(model, "mirror_axis"):
        return model
    if model is not None and not isinstance(model, (str, os.PathLike)):
        return KerasPredictor(model)
    if model is None:
        import models
        model = models.shipped_model_path()
    path = Path(model)
    key = ("model", str(path.resolve()), threads)
    if key not in _cache:
        if not path.is_file():
            raise FileNotFoundError(f"{model}: no such model file")
        if path.suffix.lower() == ".onnx":
            predictor = OnnxPredictor(path, threads)
        elif path.suffix.lower() == ".keras":
            predictor = onnx_for(path, threads)
        else:
            raise cli.UsageError(f"--model {model}: must be a .keras or .onnx file")
        _cache[key] = check_runs(predictor)
    return _cache[key]


def check_runs(predictor):
    """The predictor, once it has given finite keypoints near a plain gray crop: a model that
    cannot (NaN, wild numbers, shapes that fail only when run) is a ModelError when loaded,
    before a command writes anything, not at a first face that a run may never reach."""
    run_network(predictor, np.full((1, IMAGE_SIZE, IMAGE_SIZE), 128, np.uint8), flip_tta=False)
    return predictor


def crop_keypoints(crops, model=None, flip_tta=FLIP_TTA):
    """(keypoints (n, 15, 2) in the 96-px frame, confidence (n,)) of ready 96x96 face crops,
    through the light runtime (for alignment, e.g. recognize.py)."""
    return run_network(load_model(model), np.asarray(crops, np.uint8), flip_tta)
