"""Run an exported keypoint model with its own runtime only, and measure it.

    python test_inference.py exported/v2_convnet.onnx --data data/training.csv
    python test_inference.py exported/v2_convnet-int8.tflite --data crops/ --batch 1
    python test_inference.py exported/v2_convnet_savedmodel --data test.csv --out predictions.csv

EXPORTED is what `export.py` writes:
    *.onnx            run with onnxruntime                    (pip install onnxruntime)
    *.tflite          run with the LiteRT / TFLite interpreter: ai_edge_litert if installed,
                      else tflite_runtime, else TensorFlow's tf.lite.Interpreter
    a SavedModel dir  run with TensorFlow's tf.saved_model.load (its serving_default signature)

A SavedModel is a TensorFlow program: its graph can hold operations that read, write or delete
files or run Python. Run SavedModels only from people you trust; before loading one, this
script lists the operations in its graphs and refuses one with file or Python operations
(FILE_OPS) unless --trust-savedmodel is given. For models from others prefer .onnx or .tflite:
their runtimes have no file operations.
--data is a Kaggle-format CSV (training.csv with the 30 keypoint columns, test.csv without them;
or a .zip holding one CSV) or a folder of 96x96 face crops in any format Pillow reads (they are
made 8-bit grayscale here; square crops of another size are resized to 96x96).

It prints the RMSE in pixels when the data has keypoints (missing values are left out), and
the speed in faces per second at --batch faces per call (the runtime's batch; the first batch
is a warm-up and is not counted) and the latency of one face at batch 1. --out is written whole
or not at all, and never over a file the run reads (the data, the model, a crop).

This file is standalone on purpose: it needs numpy, the runtime of the model and (for a
folder of images) Pillow, and nothing from this repository, so it can be copied to a
Raspberry Pi next to the exported model.
"""
import argparse
import csv
import io
import math
import os
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

try:                                # the repository's one way to end a command (error: ..., exit 2/1)
    import cli
    UsageError, InputError, positive_int, run_main = cli.UsageError, cli.InputError, cli.positive_int, cli.run
    write_atomically = cli.write_atomically
except ImportError:                 # copied alone next to a model: the same, in brief
    class UsageError(ValueError):
        """A bad option: exit 2."""

    class InputError(ValueError):
        """A file that cannot be used: exit 1."""

    def positive_int(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: must be 1 or more")
        return value

    def run_main(main):
        try:
            status = main()
        except UsageError as error:
            print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
            sys.exit(2)
        except (InputError, OSError) as error:
            print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
            sys.exit(1)
        sys.exit(status if isinstance(status, int) else 0)

    def write_atomically(path, write):
        """write(tmp), then rename tmp onto path: the old file or the new one, never half."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            write(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

# More threads than this only queue up: --threads 2000 on two cores ran for minutes at load 550.
MAX_THREADS = 4 * (os.cpu_count() or 1)


def thread_count(text):
    """argparse type of --threads: 1 to MAX_THREADS."""
    value = positive_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 1 to {MAX_THREADS} "
                                         f"(4 x this machine's {os.cpu_count() or 1} CPUs)")
    return value

# Operations a keypoint model never needs and a hostile SavedModel could use on your files.
# (Checkpoint saving, SaveV2 / MergeV2Checkpoints, is in every SavedModel's saver and is not
# checked: a graph could misuse it only to write checkpoint files.)
FILE_OPS = frozenset({"ReadFile", "WriteFile", "DeleteFile", "MatchingFiles", "PyFunc", "EagerPyFunc",
                      "PyFuncStateless", "ImmutableConst", "WholeFileReader", "WholeFileReaderV2",
                      "WriteSummary", "WriteImageSummary", "CreateSummaryFileWriter", "PrintV2",
                      "DebugIdentityV2", "RecursiveCreateDir", "FileSystemSetConfiguration"})

# Kaggle's 30 keypoint columns, in the order of the model's 30 outputs.
COLUMNS = [
    "left_eye_center_x", "left_eye_center_y", "right_eye_center_x", "right_eye_center_y",
    "left_eye_inner_corner_x", "left_eye_inner_corner_y", "left_eye_outer_corner_x",
    "left_eye_outer_corner_y", "right_eye_inner_corner_x", "right_eye_inner_corner_y",
    "right_eye_outer_corner_x", "right_eye_outer_corner_y", "left_eyebrow_inner_end_x",
    "left_eyebrow_inner_end_y", "left_eyebrow_outer_end_x", "left_eyebrow_outer_end_y",
    "right_eyebrow_inner_end_x", "right_eyebrow_inner_end_y", "right_eyebrow_outer_end_x",
    "right_eyebrow_outer_end_y", "nose_tip_x", "nose_tip_y", "mouth_left_corner_x",
    "mouth_left_corner_y", "mouth_right_corner_x", "mouth_right_corner_y",
    "mouth_center_top_lip_x", "mouth_center_top_lip_y", "mouth_center_bottom_lip_x",
    "mouth_center_bottom_lip_y",
]
SIZE = 96
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
MAX_CROP_PIXELS = 4096 * 4096     # a face crop is 96x96; anything this large is not one (nor worth decoding)


def shown(text):
    """Text safe to print on any terminal: a non-UTF-8 file name's bytes as \\x.. escapes."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


# ---------------------------------------------------------------------------------------
# Data: a Kaggle-format CSV or a folder of crops -> uint8 (N, 96, 96), pixel keypoints or None.

def read_csv(path):
    """A Kaggle-format CSV (or a .zip with one CSV) -> (uint8 (N, 96, 96), float32 (N, 30) in
    pixels with NaN where missing, or None when the file has no keypoint columns; row names)."""
    path = Path(path)
    if path.suffix.lower() == ".zip":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise InputError(f"{path}: not a zip file") from None
        with archive:
            names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
            if len(names) != 1:
                raise InputError(f"{path}: expected one .csv inside, found {names or 'none'}")
            source = f"{path}:{names[0]}"
            try:
                with io.TextIOWrapper(archive.open(names[0]), encoding="utf-8-sig", newline="") as text:
                    return _parse_text(text, source)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as error:
                # a damaged member (CRC), a compression or an encryption zipfile cannot read
                raise InputError(f"{source}: cannot be read from the zip ({error})") from None
    with open(path, encoding="utf-8-sig", newline="") as text:
        return _parse_text(text, str(path))


def _parse_text(text, source):
    """_parse_csv, with a file that is not UTF-8 text or not a CSV reported by its name."""
    try:
        return _parse_csv(text, source)
    except UnicodeDecodeError as error:
        raise InputError(f"{source}: not a UTF-8 text CSV ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise InputError(f"{source}: not a readable CSV ({error})") from None


def _parse_csv(text, source):
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 20))
    reader = csv.reader(text)
    header = [h.strip() for h in next(reader, [])]
    if "Image" not in header:
        raise InputError(f"{source}: no 'Image' column (the header has: {', '.join(header)})")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:     # which copy would be the data? Refuse rather than guess
        raise InputError(f"{source}: column {', '.join(repeated)} appears more than once in the header")
    image_col = header.index("Image")
    has_labels = all(c in header for c in COLUMNS)
    label_cols = [header.index(c) for c in COLUMNS] if has_labels else []
    id_col = header.index("ImageId") if "ImageId" in header else None
    images, labels, names = [], [], []
    for row_number, row in enumerate(reader, start=1):
        if not row or not "".join(row).strip():
            continue
        try:
            pixels = np.array(row[image_col].split(), dtype=np.int64)
            values = [float(row[j]) if row[j].strip() else np.nan for j in label_cols]
        except (ValueError, IndexError, OverflowError):
            raise InputError(f"{source}, row {row_number}: a value is missing or not a number") from None
        for column, value in zip(COLUMNS, values):
            if math.isinf(value):       # empty (or nan) is a missing keypoint; inf is no position
                raise InputError(f"{source}, row {row_number}: {column} is {value}; a keypoint is a finite "
                                 "number of pixels (or empty when missing)")
        if has_labels:
            labels.append(values)
        if pixels.size != SIZE * SIZE or pixels.min() < 0 or pixels.max() > 255:
            raise InputError(f"{source}, row {row_number}: the Image is not {SIZE * SIZE} "
                             "values 0-255")
        images.append(pixels.astype(np.uint8).reshape(SIZE, SIZE))
        names.append(row[id_col] if id_col is not None else str(row_number))
    if not images:
        raise InputError(f"{source}: no faces after the header")
    keypoints = np.array(labels, np.float32) if has_labels else None
    return np.stack(images), keypoints, names


def read_folder(folder):
    """Every image file in `folder` (sorted by name) -> (uint8 (N, 96, 96), None, file names)."""
    from PIL import Image, ImageOps
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images = []
    for path in files:
        try:
            with warnings.catch_warnings():       # a large image: refused below, not warned about
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    if image.width * image.height > MAX_CROP_PIXELS:
                        raise InputError(f"{path}: {image.width}x{image.height} pixels is too large for a "
                                         f"face crop (at most {MAX_CROP_PIXELS:,} pixels; 96x96 as in Kaggle's frame)")
                    image = ImageOps.exif_transpose(image)
                    gray = _to_gray8(image)
        except InputError:
            raise
        except Image.DecompressionBombError as error:
            raise InputError(f"{path}: too large for a face crop ({error})") from None
        except (OSError, ValueError, SyntaxError) as error:
            raise InputError(f"{path}: not an image Pillow can read ({error})") from None
        if gray.shape != (SIZE, SIZE):
            if gray.shape[0] != gray.shape[1]:
                raise InputError(f"{path}: {gray.shape[1]}x{gray.shape[0]} is not a square crop; "
                                 f"crop the face to a square first (96x96 as in Kaggle's frame)")
            gray = np.asarray(Image.fromarray(gray).resize((SIZE, SIZE), Image.Resampling.BOX
                                                           if gray.shape[0] > SIZE
                                                           else Image.Resampling.BILINEAR))
        images.append(gray)
    return np.stack(images), None, [p.name for p in files]


def _to_gray8(image):
    """Any Pillow image -> uint8 (H, W) grayscale (16-bit and float images are scaled,
    transparent pixels are put on white)."""
    from PIL import Image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, np.float64)
        return np.clip(values / (257.0 if values.max() > 255 else 1.0), 0, 255).round().astype(np.uint8)
    if image.mode == "F":
        values = np.asarray(image, np.float64)
        scale = 255.0 if values.max() <= 1.0 else 1.0
        return np.clip(values * scale, 0, 255).round().astype(np.uint8)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        image = background
    return np.asarray(image.convert("L"), np.uint8)


def read_data(path):
    path = Path(path)
    if path.is_dir():
        return read_folder(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    return read_csv(path)


def to_input(images):
    """uint8 (N, 96, 96) -> float32 (N, 96, 96, 1) in [0, 1], what the network was trained on."""
    return (np.asarray(images, np.float32) / 255.0)[..., None]


def to_pixels(y):
    """The network's outputs (y - 48) / 48 -> pixel coordinates in the 96-px frame."""
    return np.asarray(y, np.float32) * 48.0 + 48.0


def rmse_px(keypoints_px, predicted_px):
    """RMSE in pixels over the keypoint values that are present (NaN = missing)."""
    error = np.asarray(predicted_px, np.float64) - np.asarray(keypoints_px, np.float64)
    present = ~np.isnan(error)
    return float(np.sqrt(np.square(error[present]).mean())) if present.any() else float("nan"), \
        int(present.sum())


# ---------------------------------------------------------------------------------------
# Runtimes: each runner has .predict(X float32 (N, 96, 96, 1)) -> float32 (N, 30) and .runtime.

def check_face_input(path, shape, kind):
    """Refuse, before running it, a model whose input is not a batch of 96x96x1 faces: `shape` is
    the input's shape (None or a name for a free dimension), `kind` what its type is called."""
    shape = list(shape) if shape is not None else None
    fixed = [d if isinstance(d, int) and not isinstance(d, bool) and d > 0 else None for d in shape or []]
    if shape is None or len(shape) != 4 or any(d is not None and d != want
                                               for d, want in zip(fixed[1:], (SIZE, SIZE, 1))):
        raise InputError(f"{path}: the model's input is {kind} of shape {shape}; a keypoint model takes "
                         f"faces [N, {SIZE}, {SIZE}, 1]")


def _model_failed(path, runtime, error):
    return InputError(f"{path}: {runtime} could not run the model on these faces "
                      f"({' '.join(str(error).split())[:200]})")

class OnnxRunner:
    def __init__(self, path, threads=None):
        import onnxruntime as ort
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:          # onnxruntime's own exception types for bad files
            raise InputError(f"{path}: not an ONNX model onnxruntime can load "
                             f"({' '.join(str(error).split())[:200]})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise InputError(f"{path}: the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                             "a keypoint model has one, the faces")
        if inputs[0].type != "tensor(float)":
            raise InputError(f"{path}: the model's input is {inputs[0].type}; a keypoint model takes "
                             f"float faces [N, {SIZE}, {SIZE}, 1]")
        check_face_input(path, inputs[0].shape, inputs[0].type)
        self.path, self.input = path, inputs[0].name
        self.runtime = f"onnxruntime {ort.__version__}"

    def predict(self, X):
        try:
            return self.session.run(None, {self.input: np.ascontiguousarray(X, np.float32)})[0]
        except Exception as error:          # onnxruntime's own exception types (Fail, InvalidArgument)
            raise _model_failed(self.path, self.runtime, error) from None


def _tflite_interpreter_class():
    """LiteRT's interpreter if installed, else tflite_runtime's, else TensorFlow's."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, "tflite_runtime"
    except ImportError:
        pass
    import tensorflow as tf
    return tf.lite.Interpreter, f"tf.lite.Interpreter (TensorFlow {tf.__version__})"


class TFLiteRunner:
    def __init__(self, path, threads=None):
        Interpreter, name = _tflite_interpreter_class()
        with warnings.catch_warnings():   # TF 2.20+ warns that tf.lite.Interpreter moves to LiteRT
            warnings.simplefilter("ignore")
            try:
                self.interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count())
            except ValueError as error:
                raise InputError(f"{path}: not a TFLite model ({' '.join(str(error).split())[:200]})") from None
        details = self.interpreter.get_input_details()
        if len(details) != 1:
            raise InputError(f"{path}: the model has {len(details)} inputs; a keypoint model has one, the faces")
        self.input = details[0]
        check_face_input(path, [int(d) for d in self.input["shape"]], np.dtype(self.input["dtype"]).name)
        self.output = self.interpreter.get_output_details()[0]
        self.path, self.batch = path, None
        kind = np.dtype(self.input["dtype"]).name
        self.runtime = name + ("" if kind == "float32" else f", {kind} input/output")

    def _resize(self, n):
        if self.batch != n:
            self.interpreter.resize_tensor_input(self.input["index"], [n, SIZE, SIZE, 1])
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]
            self.batch = n

    def predict(self, X):
        try:
            return self._predict(X)
        except (ValueError, RuntimeError) as error:       # the interpreter's errors
            raise _model_failed(self.path, self.runtime, error) from None

    def _predict(self, X):
        X = np.asarray(X, np.float32)
        self._resize(len(X))
        dtype = np.dtype(self.input["dtype"])
        if dtype != np.float32:           # a full-integer model: quantize the input ...
            scale, zero = self.input["quantization"]
            info = np.iinfo(dtype)
            X = np.clip(np.round(X / scale + zero), info.min, info.max).astype(dtype)
        self.interpreter.set_tensor(self.input["index"], X)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        if np.dtype(self.output["dtype"]) != np.float32:   # ... and dequantize the output
            scale, zero = self.output["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return np.array(y, np.float32)


def savedmodel_ops(path):
    """Every operation type in a SavedModel's graphs and functions (read from saved_model.pb
    without running anything)."""
    from tensorflow.core.protobuf import saved_model_pb2
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    except Exception as error:              # protobuf's DecodeError
        raise InputError(f"{path}/saved_model.pb: not a SavedModel ({error})") from None
    ops = set()
    for meta in proto.meta_graphs:
        ops |= {node.op for node in meta.graph_def.node}
        for function in meta.graph_def.library.function:
            ops |= {node.op for node in function.node_def}
    return ops


class SavedModelRunner:
    def __init__(self, path, threads=None, trust=False):
        risky = sorted(savedmodel_ops(path) & FILE_OPS)
        if risky and not trust:
            raise InputError(f"{path}: the SavedModel's graph has operations that touch files or run "
                             f"Python ({', '.join(risky)}); refused. Use --trust-savedmodel only for "
                             "a model you trust, or ask for its .onnx / .tflite export")
        import tensorflow as tf
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        self.tf = tf
        self.model = tf.saved_model.load(str(path))
        if "serving_default" not in self.model.signatures:
            raise InputError(f"{path}: the SavedModel has no serving_default signature "
                             f"(it has: {', '.join(self.model.signatures) or 'none'})")
        self.function = self.model.signatures["serving_default"]
        specs = self.function.structured_input_signature[1]
        if len(specs) != 1:
            raise InputError(f"{path}: serving_default takes {len(specs)} inputs ({', '.join(specs)}); "
                             "a keypoint model takes one, the faces")
        self.input = list(specs)[0]
        spec = specs[self.input]
        if not spec.dtype.is_floating:
            raise InputError(f"{path}: the model's input is {spec.dtype.name}; a keypoint model takes "
                             f"float faces [N, {SIZE}, {SIZE}, 1]")
        check_face_input(path, None if spec.shape.rank is None else spec.shape.as_list(), spec.dtype.name)
        self.path = path
        self.runtime = f"TensorFlow {tf.__version__} SavedModel"

    def predict(self, X):
        try:
            outputs = self.function(**{self.input: self.tf.constant(X, self.tf.float32)})
        except (self.tf.errors.OpError, ValueError, TypeError) as error:
            raise _model_failed(self.path, self.runtime, error) from None
        return next(iter(outputs.values())).numpy()


def load_runner(path, threads=None, trust_savedmodel=False):
    """The runner for an exported model: .onnx, .tflite, or a SavedModel folder (checked for
    file operations first, see FILE_OPS)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise InputError(f"{path}: a folder without saved_model.pb is not a SavedModel")
        return SavedModelRunner(path, threads, trust_savedmodel)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() == ".onnx":
        return OnnxRunner(path, threads)
    if path.suffix.lower() == ".tflite":
        return TFLiteRunner(path, threads)
    raise InputError(f"{path}: not .onnx, .tflite or a SavedModel folder")


def predict(runner, X, batch=64):
    """All of X through the runner, `batch` faces per call -> float32 (N, 30) in unit coords."""
    return np.concatenate([runner.predict(X[i:i + batch]) for i in range(0, len(X), batch)])


def measure(runner, X, batch=64, latency_faces=20):
    """(predictions, faces per second at `batch`, median seconds for one face at batch 1)."""
    batch = max(1, min(batch, len(X)))
    runner.predict(X[:batch])                         # warm-up: allocation, first-run costs
    started = time.perf_counter()
    predictions = predict(runner, X, batch)
    faces_per_s = len(X) / max(time.perf_counter() - started, 1e-9)
    times = []
    runner.predict(X[:1])
    for i in range(min(latency_faces, len(X))):
        t = time.perf_counter()
        runner.predict(X[i:i + 1])
        times.append(time.perf_counter() - t)
    return predictions, faces_per_s, float(np.median(times))


def write_predictions(path, names, predicted_px):
    """The predictions as a CSV (name, the 30 columns in pixels), written whole or not at all; a
    file name that is not UTF-8 (a crop's) is written with its bytes as \\x.. escapes."""
    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
            writer = csv.writer(f)
            writer.writerow(["name"] + COLUMNS)
            for name, row in zip(names, predicted_px):
                writer.writerow([name] + [f"{v:.2f}" for v in row])
    write_atomically(path, write)


def _same_path(a, b):
    """cli.same_file's rule, repeated: this script runs alone, without the repository."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_out(out, exported, data):
    """Before any work: --out is a new or old CSV in a writable folder, never a file this run reads
    (the data, the model, a crop of the --data folder, a file of the SavedModel folder). A new CSV
    beside the crops is fine: it is not an image, so it is not read as one."""
    target = Path(out)
    if target.is_dir():
        raise UsageError(f"--out {out}: is a folder; give a CSV file name")
    for what, source in (("the exported model", Path(exported)), ("--data", Path(data))):
        if _same_path(target, source):
            raise UsageError(f"--out {out}: is {what} {source}; refusing to overwrite an input")
        if source.is_dir():
            inside = target.resolve().is_relative_to(source.resolve())
            read = (what == "the exported model" or
                    (target.suffix.lower() in IMAGE_SUFFIXES and _same_path(target.parent, source)))
            if inside and read:
                raise UsageError(f"--out {out}: is inside {what} {source}, which this run reads; "
                                 "refusing to overwrite an input")
    folder = target.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):   # before the work, not after
        raise InputError(f"--out {out}: the folder {folder} is missing, not a folder, or not writable")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("exported", help="model.onnx, model.tflite or a SavedModel folder")
    parser.add_argument("--data", required=True, help="a Kaggle-format CSV (or .zip) or a folder of 96x96 crops")
    parser.add_argument("--batch", type=positive_int, default=64, help="faces per runtime call (default 64)")
    parser.add_argument("--threads", type=thread_count, default=None,
                        help=f"CPU threads, 1 to {MAX_THREADS} (default: the runtime's)")
    parser.add_argument("--limit", type=positive_int, default=None, help="use only the first N faces")
    parser.add_argument("--out", help="write the predicted keypoints (pixels) to this CSV")
    parser.add_argument("--trust-savedmodel", action="store_true",
                        help="run a SavedModel even if its graph has file or Python operations")
    args = parser.parse_args(argv)
    if args.out is not None:
        check_out(args.out, args.exported, args.data)

    images, keypoints, names = read_data(args.data)
    if args.limit:
        images, names = images[:args.limit], names[:args.limit]
        keypoints = None if keypoints is None else keypoints[:args.limit]
    started = time.perf_counter()
    runner = load_runner(args.exported, args.threads, args.trust_savedmodel)
    load_seconds = time.perf_counter() - started
    predictions, faces_per_s, latency = measure(runner, to_input(images), args.batch)
    predicted_px = to_pixels(predictions)
    if predicted_px.shape != (len(images), len(COLUMNS)):
        raise InputError(f"{args.exported}: the model gives {predicted_px.shape[1:]} per face, "
                         f"expected {len(COLUMNS)} keypoint coordinates")

    print(f"model: {shown(args.exported)} ({runner.runtime}; loaded in {load_seconds:.2f} s)")
    labelled = "" if keypoints is None else f", {int((~np.isnan(keypoints)).any(axis=1).sum())} with keypoints"
    print(f"data: {shown(args.data)}: {len(images)} faces{labelled}")
    if keypoints is not None:
        rmse, count = rmse_px(keypoints, predicted_px)
        print(f"RMSE: {rmse:.3f} px over {count} keypoint values")
    else:
        print("RMSE: - (no keypoints in the data)")
    print(f"speed: {faces_per_s:.1f} faces/s at batch {min(args.batch, len(images))}; "
          f"{latency * 1000:.2f} ms per face at batch 1")
    if args.out:
        write_predictions(args.out, names, predicted_px)
        print(f"wrote {shown(args.out)}")
    return predictions


if __name__ == "__main__":
    run_main(main)
