"""Batched inference speed (faces per second) of a trained model on this CPU, per runtime.

    python bench/inference_speed.py [--model PATH] [--faces 2048] [--batch 256] [--repeats 5]

Runtimes, each on the same faces after a warm-up call: Keras `predict` (what evaluate.py and
predict.py use), the model called in a `tf.function` with XLA off and on, the same with its
batch norms folded into the convolutions, in float32 and in bfloat16 (inference.fast_model:
`folded`, `folded+bf16`), and the ONNX export run by onnxruntime (export.py's path). Prints
the median faces/s of --repeats timed passes over all the faces, and the largest difference
from Keras's predictions in pixels.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402

import cli  # noqa: E402
import input_data  # noqa: E402
import models  # noqa: E402
import synthetic_faces  # noqa: E402
import train  # noqa: E402

RUNTIMES = ("keras", "tf.function", "xla", "folded", "folded+bf16", "onnxruntime")


def timed(run, X, repeats):
    run(X[:64])                                        # warm-up: tracing, compiling
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = run(X)
        seconds.append(time.perf_counter() - started)
    return len(X) / statistics.median(seconds), np.asarray(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="a model.keras (default: the shipped model)")
    parser.add_argument("--faces", type=cli.positive_int, default=2048, help="synthetic faces (default 2048)")
    parser.add_argument("--batch", type=cli.positive_int, default=256, help="faces per call (default 256)")
    parser.add_argument("--repeats", type=cli.positive_int, default=5, help="timed passes (default 5)")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help=f"comma list of {', '.join(RUNTIMES)}")
    args = parser.parse_args(argv)
    runtimes = [name.strip() for name in args.runtimes.split(",") if name.strip()]
    unknown = [name for name in runtimes if name not in RUNTIMES]
    if unknown or not runtimes:
        raise cli.UsageError(f"--runtimes: got {args.runtimes!r}; must be a comma list of {', '.join(RUNTIMES)}")
    if args.faces > 100_000:        # make_faces holds them all in memory
        raise cli.UsageError(f"--faces: got {args.faces}; at most 100000 synthetic faces")
    path = Path(args.model) if args.model else models.shipped_model_path()
    if not path.is_file():
        raise cli.InputError(f"--model {path}: no such file")
    import tensorflow as tf
    model = train.load_model(path)
    images, _ = synthetic_faces.make_faces(args.faces, seed=0)
    X = input_data.images_to_unit(images)
    print(f"{path}: {model.count_params():,} parameters; {args.faces} faces, batch {args.batch}, "
          f"{os.cpu_count()} cores")

    def batched(fn):
        return lambda X: np.concatenate([np.asarray(fn(X[i:i + args.batch]))
                                         for i in range(0, len(X), args.batch)])

    runners = {
        "keras": lambda X: model.predict(X, batch_size=args.batch, verbose=0),
        "tf.function": batched(tf.function(lambda x: model(x, training=False))),
        "xla": batched(tf.function(lambda x: model(x, training=False), jit_compile=True)),
    }
    reference = None
    for name in runtimes:
        if name == "onnxruntime":
            import export
            import test_inference
            with tempfile.TemporaryDirectory() as tmp:
                onnx_path = export.export_onnx(model, Path(tmp) / "model.onnx")
                session = test_inference.load_runner(onnx_path)
                faces_per_s, out = timed(batched(session.predict), X, args.repeats)
        elif name in ("folded", "folded+bf16"):
            import inference
            fast = inference.fast_model(model, "bfloat16" if name.endswith("bf16") else "float32")
            faces_per_s, out = timed(batched(fast), X, args.repeats)
        else:
            faces_per_s, out = timed(runners[name], X, args.repeats)
        if reference is None:
            reference = out
        diff = float(np.abs(out - reference).max() * 48)
        print(f"{name:>12}: {faces_per_s:8.0f} faces/s  ({1000 / faces_per_s:.2f} ms/face; "
              f"max difference from keras {diff:.4f} px)", flush=True)


if __name__ == "__main__":
    cli.run(main)
