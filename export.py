"""Export a trained model for inference without Keras, and check that it predicts the same.

    python export.py --model models/v2_convnet/model.keras --format savedmodel --out exported
    python export.py --model models/v2_convnet/model.keras --format tflite --out exported
    python export.py --model models/v2_convnet/model.keras --format tflite --quantize int8 \\
                     --data data/training.csv --out exported
    python export.py --model models/v2_convnet/model.keras --format onnx --out exported
    python export.py --model models/v6_resnet_integral/model.keras --format predictor \
                     --out models/v6_resnet_integral/model.onnx --overwrite      # what predict.py runs

Formats (what goes in --out, a folder; an --out ending in .tflite or .onnx is the file itself):
    savedmodel  <name>_savedmodel/        TensorFlow SavedModel (Keras's model.export), signature
                                          serving_default: image float32 [None, 96, 96, 1] -> [None, 30]
    tflite      <name>.tflite             TFLite / LiteRT flatbuffer, from that SavedModel;
                <name>-float16.tflite     --quantize float16: weights stored as float16 (half size)
                <name>-int8.tflite        --quantize int8: full-integer (int8 weights, activations,
                                          input and output), calibrated on 200 faces of --data
    onnx        <name>.onnx               ONNX (tf2onnx, opset 17 unless --opset), for onnxruntime
    predictor   <model>.onnx              ONNX for predict.py: outputs out and (v6) heatmaps, metadata
                                          keras_sha256 / mirror_axis_px (export_predictor)
<name> is the Keras model's name (its version, e.g. v2_convnet).

After exporting, the export is run with its own runtime (`test_inference.py`'s runners) on 100
faces (the first 100 of --data, else synthetic faces) next to the Keras model, and the largest
difference of any coordinate is printed in pixels, with the RMSE of both when the faces have
keypoints. Above the tolerance (0.01 px for a float32 export; see TOLERANCE_PX for the
quantized ones, or --tolerance) the export is refused: nothing is written and the exit code is 1.

Checked before any work (exit 2): --opset is 13 to the newest opset the installed tf2onnx writes;
--out is never an input (--model, --data, or a folder holding one); a file --out names that
exists is replaced only with --overwrite (in a folder, a model's own export replaces its earlier
one); and a folder that holds a
shipped model (training.runs.protected_model_dir: models/v6_resnet_integral/) takes only exports of its
own model.keras (the predictor command above), never another model's over its model.onnx.

    import export
    export.export_savedmodel(model, "out/v2_savedmodel")          # model: keras.Model or a path
    export.export_tflite(model, "out/v2-int8.tflite", quantize="int8", representative=X)
    export.export_onnx(model, "out/v2.onnx")
    path, parity = export.export(model, "onnx", "out", data="data/training.csv")
"""
import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import cli  # noqa: E402
import confidence  # noqa: E402
import input_data  # noqa: E402
import test_inference  # noqa: E402

FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "int8")
# Largest |difference| of any coordinate, in pixels, that an export may have from its Keras
# model on the parity faces. float32 exports differ only by rounding. float16 weights and
# int8 arithmetic move the predictions; these bounds are a few times what they cost a trained
# v1/v2 on synthetic faces (see the README's export section) and catch a broken calibration.
TOLERANCE_PX = {"none": 0.01, "float16": 0.1, "int8": 2.0}
PARITY_FACES = 100
REPRESENTATIVE_FACES = 200
DEFAULT_OPSET = 17
MIN_OPSET = 13            # the oldest opset the exports are written for; the newest: max_opset()
SYNTHETIC_SEED = 429      # synthetic faces for parity / calibration when no --data is given


class ParityError(cli.InputError):
    """The export does not predict what the Keras model predicts (within the tolerance). An
    InputError (exit 1, one line): the model is what cannot be exported, and predict.py, which
    converts a .keras through export_predictor, ends with the same line as export.py."""


def load_keras(model):
    """A keras.Model as it is, or one loaded from a .keras file; InputError when it is not a
    keypoint model (96x96x1 faces -> 30 coordinates), e.g. the face embedding."""
    import inference           # Keras and TensorFlow: only once there is a model to load
    if isinstance(model, (str, os.PathLike)):
        model = inference.check_keypoint_model(inference.load_model(model), model)
    # A checkpoint trained in bfloat16 or float16 (runs/<id>/best.keras) is exported in float32:
    # ONNX Runtime's CPU convolutions take no bfloat16.
    return inference.to_float32(model)


def max_opset():
    """The newest ONNX opset the installed tf2onnx can write (18 for tf2onnx 1.17)."""
    from tf2onnx import constants
    return max(constants.OPSET_TO_IR_VERSION)


def check_opset(opset):
    """opset as an int, or a ValueError saying the range tf2onnx supports."""
    newest = max_opset()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be {MIN_OPSET} to {newest} (what the installed tf2onnx writes), "
                         f"not {opset!r}")
    return opset


def _opset_option(text):
    """argparse type of --opset: an error there names the option (exit 2)."""
    try:
        return check_opset(int(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None


def check_target(model, target, data=None, predictor=False):
    """Before any work: refuse to write `target` (the export's file or SavedModel folder) over an
    input (--model, --data, or a folder holding one), or into a folder that holds a shipped model
    (training.runs.protected_model_dir: models/v6_resnet_integral/) unless `model` is that folder's own
    model.keras: exporting the shipped model beside itself is how its model.onnx is made; any
    other model there would replace the shipped export. `model`: a path, or a keras.Model (which
    is never a shipped folder's model.keras). predictor: the export is export_predictor's (the
    only kind that ships: a plain ONNX there would drop the heatmaps predict.py reads)."""
    from training.runs import protected_model_dir
    target = Path(target)
    model_path = Path(model) if isinstance(model, (str, os.PathLike)) else None
    inputs = [("--model", model_path), ("--data", data)]
    for option, source in inputs:
        if source is None:
            continue
        source = Path(source)
        holds = target.is_dir() and source.exists() and source.resolve().is_relative_to(target.resolve())
        if cli.same_file(target, source) or holds:
            raise cli.UsageError(f"--out {target}: is {'the folder of ' if holds else ''}the {option} input "
                                 f"{source}; refusing to overwrite an input")
    folder = target.parent
    why = protected_model_dir(folder)
    if why:
        own = folder / "model.keras"
        if model_path is None or not own.is_file() or not cli.same_file(model_path, own) or not predictor:
            raise cli.UsageError(f"--out {target}: {folder} holds the shipped model ({why}); only that "
                                 f"model's predictor export (--model {own} --format predictor) is "
                                 "written there. Write this export elsewhere")


def _input_spec(model):
    import tensorflow as tf
    shape = [None] + list(model.inputs[0].shape[1:])
    return tf.TensorSpec(shape, tf.float32, name=model.inputs[0].name.split(":")[0] or "image")


# ---------------------------------------------------------------------------------------
# The three exports (no checking here: see export() for export + parity check).

def export_savedmodel(model, path):
    """A TensorFlow SavedModel folder with the signature serving_default:
    image float32 [None, 96, 96, 1] -> output_0 float32 [None, 30]."""
    model = load_keras(model)
    path = Path(path)
    model.export(str(path), format="tf_saved_model", verbose=False, input_signature=[_input_spec(model)])
    return path


def export_tflite(model, path, quantize="none", representative=None):
    """A .tflite file, converted from a SavedModel of the model.

    quantize: "none" (float32), "float16" (float16 weights, float32 arithmetic on CPUs),
    "int8" (full integer: weights, activations, input and output int8; `representative`,
    float32 faces (N, 96, 96, 1) in [0, 1], calibrates the activation ranges; default
    200 synthetic faces).
    """
    import tensorflow as tf
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZATIONS)}, not {quantize!r}")
    model = load_keras(model)
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        saved = export_savedmodel(model, Path(tmp) / "saved_model")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            faces = representative_faces() if representative is None else np.asarray(representative, np.float32)

            def calibration():
                for i in range(len(faces)):
                    yield [faces[i:i + 1]]

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = calibration
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        flatbuffer = converter.convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(flatbuffer)
    return path


def export_onnx(model, path, opset=DEFAULT_OPSET):
    """A .onnx file (input `image` float32 [N, 96, 96, 1], output [N, 30]) via tf2onnx.

    tf2onnx.convert.from_keras works on Keras 3 / TF 2.21; should it fail on some model,
    Keras's own model.export(format="onnx") (tf2onnx too, with Keras's numpy-2 patches)
    is tried before giving up.
    """
    check_opset(opset)
    import tf2onnx
    model = load_keras(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = _input_spec(model)
    try:
        tf2onnx.convert.from_keras(model, input_signature=[spec], opset=opset, output_path=str(path))
    except Exception as first:  # noqa: BLE001 - any converter failure: try Keras's path
        try:
            model.export(str(path), format="onnx", verbose=False, input_signature=[spec], opset_version=opset)
        except Exception as second:
            raise RuntimeError(f"ONNX export failed: tf2onnx.convert.from_keras: {first}; "
                               f"keras model.export(format='onnx'): {second}") from second
    return path


def export_predictor(model_path, path, opset=DEFAULT_OPSET):
    """The ONNX file predict.py runs without TensorFlow (e.g. models/v6_resnet_integral/model.onnx).

    Input `image` float32 [N, 96, 96, 1]; outputs `out` [N, 30] (as export_onnx) and, for a
    model with integral heatmaps (v6), `heatmaps` [N, 15, cells]: the softmax over the grid cells
    of each keypoint, from which predict.py computes a confidence. Metadata: keras_sha256 (the
    .keras file's bytes, so a stale ONNX beside a retrained model is noticed), mirror_axis_px (the
    labels' mirror axis, for flip TTA), low_confidence (the confidence bar model.json records,
    for a model with heatmaps; confidence.py) and source (the file name). Returns (path, parity dict) with
    the largest |difference| of `out` from Keras on 100 synthetic faces; raises ParityError (and
    writes nothing) above 0.01 px.
    """
    check_opset(opset)
    model_path = Path(model_path)
    check_target(model_path, path, predictor=True)   # before any work: never over an input or a shipped export
    if Path(path).is_dir():
        raise cli.InputError(f"{path}: is a folder; expected the .onnx file's name")
    import onnx
    import tensorflow as tf
    import tf2onnx
    model = load_keras(model_path)
    import inference
    import keras
    wrapped = inference.heatmap_model(model) or keras.Model(model.inputs, [model.output], name=model.name)
    spec = tf.TensorSpec([None] + list(model.inputs[0].shape[1:]), tf.float32, name="image")
    proto, _ = tf2onnx.convert.from_keras(wrapped, input_signature=[spec], opset=opset)
    # The outputs under the names predict.py reads, whatever the Keras layers are called (tf2onnx
    # names them after the layers: a last layer not named `out` gave no output `out`).
    for output, name in zip(proto.graph.output, ("out", "heatmaps")):
        if output.name != name:
            proto.graph.node.append(onnx.helper.make_node("Identity", [output.name], [name]))
            output.name = name
    metadata = {"keras_sha256": input_data.file_sha256(model_path), "source": model_path.name,
                "mirror_axis_px": repr(float(getattr(model, "mirror_axis", None) or (input_data.IMAGE_SIZE - 1) / 2))}
    bar = confidence.saved_bar(model_path)
    if bar is not None and len(wrapped.outputs) > 1:
        metadata["low_confidence"] = repr(bar)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        onnx.save(proto, str(tmp))
        import onnxruntime as ort
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        X, _ = parity_faces(None)
        ours = session.run(["out"], {"image": X})[0]
        theirs = model.predict(X, batch_size=64, verbose=0)
        if not np.isfinite(theirs).all():   # NaN differs from NaN: say what is wrong, not "parity"
            raise cli.InputError(f"{model_path}: predicts NaN or infinite keypoints for synthetic faces "
                                 "(a diverged or damaged model); no ONNX predictor was written")
        parity = {"faces": len(X), "max_diff_px": float(np.abs(ours - theirs).max() * 48.0),
                  "runtime": f"onnxruntime {ort.__version__}"}
        if not parity["max_diff_px"] <= TOLERANCE_PX["none"]:
            raise ParityError(f"{model_path}: its ONNX predictor differs from it by up to "
                              f"{parity['max_diff_px']:.4f} px on {parity['faces']} synthetic faces "
                              f"(tolerance {TOLERANCE_PX['none']:g} px); nothing was written")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path, parity


# ---------------------------------------------------------------------------------------
# Faces for calibration and parity.

def _faces(data, n, skip=0):
    """(X float32 (n, 96, 96, 1), Y unit coords with NaN, or None) from a Kaggle-format CSV
    (rows skip.. skip+n; from the start when the file is shorter) or synthetic faces."""
    if data is None:
        import synthetic_faces
        images, keypoints = synthetic_faces.make_faces(skip + n, SYNTHETIC_SEED)
        images, keypoints = images[skip:], keypoints[skip:]
    else:
        table = input_data.read_table(data)
        images = table.images
        keypoints = (input_data.read_keypoints(data)[1]
                     if all(c in table.columns for c in input_data.COLUMNS) else None)
        if len(images) < skip + n:
            skip = 0
        images = images[skip:skip + n]
        keypoints = None if keypoints is None else keypoints[skip:skip + n]
    X = input_data.images_to_unit(images)
    return X, (None if keypoints is None else input_data.keypoints_to_unit(keypoints))


def parity_faces(data=None, n=PARITY_FACES):
    """The first n faces of `data` (or n synthetic faces) and their keypoints (or None)."""
    return _faces(data, n)


def representative_faces(data=None, n=REPRESENTATIVE_FACES):
    """n faces for int8 calibration: those after the parity faces where there are enough."""
    return _faces(data, n, skip=PARITY_FACES)[0]


# ---------------------------------------------------------------------------------------
# Parity: the export against the Keras model.

def check_parity(model, exported, X, Y=None, batch=64):
    """Predictions of the export (with its own runtime) vs the Keras model on faces X.

    Returns dict(faces, max_diff_px, keras_rmse_px, exported_rmse_px, runtime); the RMSEs
    are None without keypoints Y.
    """
    from training.losses import rmse_px
    model = load_keras(model)
    runner = test_inference.load_runner(exported)
    ours = test_inference.predict(runner, X, batch)
    theirs = model.predict(X, batch_size=batch, verbose=0)
    result = dict(faces=len(X), max_diff_px=float(np.abs(ours - theirs).max() * 48.0),
                  keras_rmse_px=None, exported_rmse_px=None, runtime=runner.runtime)
    if Y is not None and not np.isnan(Y).all():
        result["keras_rmse_px"] = float(rmse_px(Y, theirs))
        result["exported_rmse_px"] = float(rmse_px(Y, ours))
    return result


def output_path(model, fmt, out, quantize="none"):
    """Where export() writes: --out itself if it names a .tflite/.onnx file, else inside it."""
    out = Path(out)
    if out.suffix.lower() in (".tflite", ".onnx"):
        return out
    name = re.sub(r"[^\w.-]+", "_", model.name) or "model"
    if fmt == "savedmodel":
        return out / f"{name}_savedmodel"
    suffix = "" if quantize == "none" else f"-{quantize}"
    return out / f"{name}{suffix}.{'tflite' if fmt == 'tflite' else 'onnx'}"


def export(model, fmt, out, quantize="none", data=None, tolerance=None, opset=DEFAULT_OPSET,
           verbose=True):
    """Export, check parity on 100 faces, and move the export into place only if it passes.

    Returns (path, parity dict); raises ParityError (and writes nothing) above `tolerance`
    pixels (default TOLERANCE_PX[quantize]).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if quantize != "none" and fmt != "tflite":
        raise ValueError(f"--quantize {quantize} is for --format tflite only")
    if fmt == "onnx":
        check_opset(opset)
    say = print if verbose else (lambda *a, **k: None)
    source_model = model
    model = load_keras(model)
    tolerance = TOLERANCE_PX[quantize] if tolerance is None else float(tolerance)
    target = output_path(model, fmt, out, quantize)
    check_target(source_model, target, data)     # before any work: never over an input or a shipped export
    if fmt == "savedmodel" and target.exists() and not (target / "saved_model.pb").is_file():
        raise cli.InputError(f"{target}: exists and is not a SavedModel; refusing to replace it")
    if fmt != "savedmodel" and target.is_dir():
        raise cli.InputError(f"{target}: is a folder; refusing to replace it with the {fmt} file")
    target.parent.mkdir(parents=True, exist_ok=True)
    source = data if data is not None else "synthetic faces"

    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as tmp:
        staged = Path(tmp) / target.name
        started = time.perf_counter()
        if fmt == "savedmodel":
            export_savedmodel(model, staged)
        elif fmt == "tflite":
            representative = representative_faces(data) if quantize == "int8" else None
            export_tflite(model, staged, quantize, representative)
        else:
            export_onnx(model, staged, opset)
        seconds = time.perf_counter() - started
        size = (sum(p.stat().st_size for p in staged.rglob("*") if p.is_file())
                if staged.is_dir() else staged.stat().st_size)
        kind = {"none": "float32", "float16": "float16 weights", "int8": "full-integer int8"}[quantize]
        say(f"exported {model.name} as {fmt} ({kind}): {size / 1e6:.1f} MB in {seconds:.1f} s")

        X, Y = parity_faces(data)
        parity = check_parity(model, staged, X, Y)
        say(f"parity on {parity['faces']} faces ({source}) with {parity['runtime']}: "
            f"max |difference| {parity['max_diff_px']:.5f} px (tolerance {tolerance:g} px)")
        if parity["keras_rmse_px"] is not None:
            loss = parity["exported_rmse_px"] - parity["keras_rmse_px"]
            say(f"RMSE on those faces: Keras {parity['keras_rmse_px']:.4f} px, "
                f"export {parity['exported_rmse_px']:.4f} px ({loss:+.4f} px)")
        if not parity["max_diff_px"] <= tolerance:
            raise ParityError(f"the {fmt} export differs from the Keras model by up to "
                              f"{parity['max_diff_px']:.4f} px on {parity['faces']} faces "
                              f"(tolerance {tolerance:g} px); nothing was written")
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        os.replace(staged, target)
    say(f"wrote {target}")
    return target, parity


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.split("\n")[1:17]))
    parser.add_argument("--model", required=True, help="a model.keras file")
    parser.add_argument("--format", required=True, choices=FORMATS + ("predictor",),
                        help="predictor: the ONNX predict.py runs (outputs out and heatmaps; "
                             "write it beside the .keras as model.onnx)")
    parser.add_argument("--out", required=True, help="a folder (or a .tflite/.onnx file name)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing file that --out names (.onnx/.tflite); an export "
                             "into a folder replaces that model's earlier export of the same name")
    parser.add_argument("--quantize", default="none", choices=QUANTIZATIONS, help="tflite only")
    parser.add_argument("--data", help="Kaggle-format CSV: parity faces (its first 100) and int8 "
                                       "calibration faces (the next 200); default synthetic faces")
    parser.add_argument("--tolerance", type=cli.positive_float, default=None,
                        help="largest |difference| in px allowed (default: "
                             + ", ".join(f"{q} {t:g}" for q, t in TOLERANCE_PX.items()) + ")")
    parser.add_argument("--opset", type=_opset_option, default=DEFAULT_OPSET,
                        help=f"ONNX opset ({MIN_OPSET} to what the installed tf2onnx writes; default {DEFAULT_OPSET})")
    args = parser.parse_args(argv)
    if args.quantize != "none" and args.format != "tflite":
        raise cli.UsageError(f"--quantize {args.quantize} is for --format tflite only")
    if not Path(args.model).is_file():
        raise cli.InputError(f"--model {args.model}: no such file")
    if Path(args.model).suffix.lower() != ".keras":
        raise cli.UsageError(f"--model {args.model}: must be a .keras file")
    named = Path(args.out)
    if named.suffix.lower() in (".tflite", ".onnx"):
        # the shipped folder's and the inputs' refusals say more than "exists", so they come first
        check_target(args.model, named, args.data, predictor=args.format == "predictor")
        cli.check_outputs([("--out", named)], overwrite=args.overwrite)
    if args.format == "predictor":
        target = Path(args.out)
        if target.suffix.lower() != ".onnx":
            target = target / (Path(args.model).stem + ".onnx")
        cli.writable_folder(target.parent)
        try:      # export_predictor checks the target first (never over an input or a shipped export)
            path, parity = export_predictor(args.model, target, args.opset)
        except ParityError as error:
            raise cli.InputError(f"refused: {error}") from None
        print(f"parity with {parity['runtime']} on {parity['faces']} synthetic faces: max |difference| "
              f"{parity['max_diff_px']:.5f} px; wrote {path}")
        return 0
    cli.writable_folder(Path(args.out).parent if Path(args.out).suffix.lower() in (".tflite", ".onnx")
                        else Path(args.out))
    try:
        export(args.model, args.format, args.out, args.quantize, args.data, args.tolerance, args.opset)
    except ParityError as error:
        raise cli.InputError(f"{args.model}: refused: {error}") from None
    except (cli.UsageError, cli.InputError):
        raise                   # they name the option or file themselves
    except ValueError as error:
        raise cli.InputError(f"refused: {error}") from None
    return 0


if __name__ == "__main__":
    cli.run(main)
