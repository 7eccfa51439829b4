"""Seconds per epoch of a model version on this CPU, plain and with XLA / bfloat16, in one run.

    python bench/train_speed.py [--model v2_convnet] [--images 2140] [--batch 128] [--epochs 3]
                                [--variants plain,xla,bf16,xla+bf16]

For each variant: the same model and data (synthetic faces, the engine's tf.data pipeline, no
augmentation, the engine's masked loss, Adam), one warm-up epoch (tracing, compiling), then
the median of --epochs timed epochs. Prints seconds per epoch, faces/s, and the achieved
GFLOP/s from the model's counted FLOPs (conv and dense multiply-adds x 2, training = 3x the
forward pass) against this machine's peak (cores x clock x 32 fp32 FLOPs per cycle with
AVX-512 FMA; bf16 has twice that). A starting point for issue 4's speed work.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import numpy as np  # noqa: E402

import augment  # noqa: E402
import input_data  # noqa: E402
import models  # noqa: E402
import synthetic_faces  # noqa: E402
import train  # noqa: E402


def forward_flops(model):
    """Multiply-adds x 2 of the conv and dense layers, per face."""
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            flops += 2 * h * w * kh * kw * layer.input.shape[-1] * c_out
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
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


def build(model_name, variant):
    """The engine's own network (train.build_network: bf16 with float32 coordinates)."""
    settings = train.resolve_settings(model=model_name,
                                      precision="bfloat16" if "bf16" in variant else "float32")
    model = train.build_network(settings)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=train.masked_mse,
                  jit_compile="xla" in variant)
    return model


def time_variant(model_name, variant, X, Y, batch, epochs):
    model = build(model_name, variant)
    data = augment.pipeline(X, Y, batch, "none", seed=0)
    model.fit(data, epochs=1, verbose=0, shuffle=False)      # warm-up: tracing, XLA compile
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.fit(data, epochs=1, verbose=0, shuffle=False)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), seconds, forward_flops(model)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="v2_convnet")
    parser.add_argument("--images", type=int, default=2140)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--variants", default="plain,xla,bf16,xla+bf16")
    args = parser.parse_args(argv)
    images, keypoints = synthetic_faces.make_faces(args.images, seed=0)
    X, Y = input_data.images_to_unit(images), input_data.keypoints_to_unit(keypoints)
    peak = peak_gflops()
    print(f"{args.model}: {args.images} faces, batch {args.batch}, {os.cpu_count()} cores, "
          f"fp32 peak ~{peak:.0f} GFLOP/s (bf16 ~{2 * peak:.0f})")
    for variant in args.variants.split(","):
        median, seconds, flops = time_variant(args.model, variant, X, Y, args.batch, args.epochs)
        gflops = 3 * flops * args.images / median / 1e9
        print(f"{variant:>10}: {median:6.2f} s/epoch  {args.images / median:7.0f} faces/s  "
              f"{gflops:6.1f} GFLOP/s ({gflops / peak:.0%} of fp32 peak)  "
              f"[epochs {', '.join(f'{s:.2f}' for s in seconds)}]", flush=True)


if __name__ == "__main__":
    main()
