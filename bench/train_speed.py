"""Seconds per training epoch of a model version on this CPU, per speed-up, in one run.

    python bench/train_speed.py [--model v2_convnet] [--images 2140] [--batch 128] [--epochs 8]
                                [--variants plain,fbn,bf16,bf16+fbn,xla+bf16+fbn]
    python bench/train_speed.py --model v6_resnet_integral --variants plain,xla+fbn,fp16+fbn,xla+fp16+fbn   # a GPU

A variant is a '+' list of: plain (float32, Keras fit, TensorFlow's default threads), bf16 (the
engine's precision="bfloat16": mixed_bfloat16 with float32 coordinates), xla (jit_compile),
inter1 (one inter-op thread: ops run one after another, each with both cores), fbn (batch norm
with TensorFlow's fused kernel, as the engine trains: training/fused_batch_norm.py), fp16 (mixed
float16 with float32 coordinates and a loss-scaled optimizer: training/device.py's choice on a
GPU of compute capability 7.0 or more). It runs on TensorFlow's first GPU where there is one
(the line of each variant names the device). Each variant
runs in a fresh process (thread settings and the global precision policy cannot be undone in
one), on the same synthetic faces with the engine's tf.data pipeline, the engine's masked loss
and Adam, with no augmentation: one warm-up epoch (tracing, compiling), then --epochs timed.

Printed per variant: the median seconds per epoch, faces/s, and the achieved GFLOP/s from the
model's counted FLOPs (conv and dense multiply-adds x 2; training = 3 x the forward pass)
against this machine's peak (cores x clock x 32 fp32 FLOPs per cycle with AVX-512 FMA; bf16 has
twice that), and "steps x median step": the epoch without the occasional stalls this virtual
machine shows (whole epochs stretched to multiples of ~5.1 s; see the README).
"""
import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import cli  # noqa: E402
from common import model_version  # noqa: E402

PARTS = ("plain", "bf16", "xla", "inter1", "fbn", "fp16")     # what a variant is a '+' list of


def check_variants(text, option="--variants"):
    """The variants of a comma list, each a '+' list of PARTS; else a cli.UsageError."""
    variants = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in variants if not set(v.split("+")) <= set(PARTS) or "" in v.split("+")]
    if bad or not variants:
        raise cli.UsageError(f"{option}: got {text!r}; each variant is a '+' list of {', '.join(PARTS)}, "
                             "e.g. plain,bf16,xla+bf16")
    return variants


def forward_flops(model):
    """Multiply-adds x 2 of the conv and dense layers, per face."""
    import keras
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            flops += 2 * h * w * kh * kw * layer.input.shape[-1] * c_out
        elif isinstance(layer, keras.layers.Dense):
            # a Dense on (..., n) inputs (v6's soft-argmax) runs once per leading position
            flops += 2 * layer.input.shape[-1] * layer.units * int(np.prod(layer.input.shape[1:-1]))
    return flops


def peak_gflops():
    """cores x clock (GHz) x 32 fp32 FLOPs/cycle (two 512-bit FMA pipes: 2 x 16 lanes x 2)."""
    mhz = 0.0
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("cpu MHz"):
                mhz = float(line.split(":")[1])
                break
    except OSError:
        pass
    return os.cpu_count() * mhz / 1000 * 32


def time_variant(model_name, variant, images, batch, epochs):
    """Runs in its own process: (seconds per epoch, seconds per step, forward FLOPs)."""
    parts = set(variant.split("+"))
    import tensorflow as tf
    if "inter1" in parts:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    import augment
    import input_data
    import synthetic_faces
    import train
    faces, keypoints = synthetic_faces.make_faces(images, seed=0)
    X, Y = input_data.images_to_unit(faces), input_data.keypoints_to_unit(keypoints)
    import inference
    from training import device
    from training.fused_batch_norm import fused_batch_norm
    settings = train.resolve_settings(model=model_name, precision="bfloat16" if "bf16" in parts else "float32")
    model = train.build_network(settings)
    precision = "float16" if "fp16" in parts else settings["precision"]
    if precision == "float16":
        model = inference.to_mixed(model, "float16")
    model.compile(optimizer=device.optimizer_for(precision, keras.optimizers.Adam(1e-3)), loss=train.masked_mse,
                  jit_compile="xla" in parts)
    data = augment.pipeline(X, Y, batch, "none", seed=0)

    steps = []

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            steps.append(time.perf_counter() - self.started)

    seconds = []
    with fused_batch_norm() if "fbn" in parts else contextlib.nullcontext():
        model.fit(data, epochs=1, verbose=0, shuffle=False)      # warm-up: tracing, XLA compile
        for _ in range(epochs):
            started = time.perf_counter()
            model.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[StepTimer()])
            seconds.append(time.perf_counter() - started)
    gpus = [d for d in device.local_devices() if d.kind == "GPU"]
    return seconds, steps, forward_flops(model), (gpus[0].name or "GPU") if gpus else "CPU"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="v2_convnet", help="a model version (default v2_convnet)")
    parser.add_argument("--images", type=cli.positive_int, default=2140, help="synthetic faces (default 2140)")
    parser.add_argument("--batch", type=cli.positive_int, default=None, help="default: the version's batch_size")
    parser.add_argument("--epochs", type=cli.positive_int, default=8, help="timed epochs (default 8)")
    parser.add_argument("--variants", default="plain,fbn,bf16,bf16+fbn,xla+bf16+fbn")
    parser.add_argument("--one", help=argparse.SUPPRESS)       # internal: time one variant, print JSON
    args = parser.parse_args(argv)
    args.model = model_version(args.model)
    if args.images > 100_000:       # make_faces holds them all in memory
        raise cli.UsageError(f"--images: got {args.images}; at most 100000 synthetic faces")
    variants = check_variants(args.one, "--one") if args.one else check_variants(args.variants)
    if args.batch is None:
        import models
        args.batch = getattr(models.load(args.model), "SETTINGS", {}).get("batch_size", 128)
    if args.one:
        seconds, steps, flops, on = time_variant(args.model, args.one, args.images, args.batch, args.epochs)
        print("RESULT " + json.dumps(dict(seconds=seconds, steps=steps, flops=flops, device=on)))
        return

    peak = peak_gflops()
    print(f"{args.model}: {args.images} faces, batch {args.batch}, {os.cpu_count()} cores, "
          f"CPU fp32 peak ~{peak:.0f} GFLOP/s (bf16 ~{2 * peak:.0f}); median of {args.epochs} epochs")
    n_steps = -(-args.images // args.batch)
    failed = []
    for variant in variants:
        command = [sys.executable, __file__, "--model", args.model, "--images", str(args.images),
                   "--batch", str(args.batch), "--epochs", str(args.epochs), "--one", variant]
        output = subprocess.run(command, capture_output=True, text=True)
        lines = [l for l in output.stdout.splitlines() if l.startswith("RESULT ")]
        if output.returncode or not lines:
            # the child's last line says why (its `error: ...`, or the exception of a crash)
            last = [l for l in output.stderr.strip().splitlines() if l.strip()][-1:] or [f"exit {output.returncode}"]
            print(f"{variant:>12}: failed: {cli.one_line(last[0])[:300]}", flush=True)
            failed.append(variant)
            continue
        result = json.loads(lines[-1][len("RESULT "):])
        median = statistics.median(result["seconds"])
        steady = n_steps * statistics.median(result["steps"])
        gflops = 3 * result["flops"] * args.images / median / 1e9
        print(f"{variant:>12}: {median:6.2f} s/epoch  {args.images / median:6.0f} faces/s  "
              f"{gflops:6.1f} GFLOP/s " + (f"({gflops / peak:.0%} of fp32 peak)  " if result["device"] == "CPU" and peak
                                          else f"on {result['device']}  ") +
              f"steps x median step {steady:5.2f} s  "
              f"[epochs {', '.join(f'{s:.2f}' for s in result['seconds'])}]", flush=True)
    if failed:
        raise cli.InputError(f"{len(failed)} of {len(variants)} variants failed ({', '.join(failed)}); "
                             "the reason of each is printed above")


if __name__ == "__main__":
    cli.run(main)
