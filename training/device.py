"""Which precision, compilation and batch size a run uses, chosen by the device it trains on.

    plan = choose(local_devices(), batch_size=128)            # or choose([Device("GPU", ...)], ...)
    print(plan.text)   # GPU 0: Tesla T4 (compute capability 7.5, 15 GB): float16 (float32 output), XLA (jit_compile auto), batch 128

choose() is a pure function of the device descriptions, so the choice is tested from faked
device lists (tests/test_versions.py); local_devices() reads this machine's.

- A CUDA GPU of compute capability 7.0 or more (V100, T4, A100, L4, H100: tensor cores) trains
  in mixed float16: float32 weights, fp16 arithmetic, the output layer and the layers that read
  the image float32 (inference.to_mixed), the loss scaled (optimizer_for). Older GPUs (Kaggle's
  P100 is 6.0) stay float32, where fp16 is no faster.
- On a GPU, XLA compiles the training step: jit_compile="auto", Keras's own rule, which
  compiles there except under a tf.distribute strategy, with op determinism on, or for a layer
  XLA cannot compile.
- On a CPU: no XLA (docs/experiments.md, 2026-11-22: 2.5-4x slower). Mixed bfloat16 where
  the CPU does bfloat16 arithmetic natively (AVX-512 BF16 or AMX: recent Xeon and EPYC) and the
  version names the layers that must stay float32 (its FLOAT32_LAYERS: v6), as measured there
  (docs/experiments.md, 2026-12-07: v6 1.2x faster per epoch, no worse at 200 epochs); float32
  elsewhere, where bfloat16 is emulated and slower.
- The batch size is the recipe's (another one changes the results); it is halved only while a
  rough estimate of its training memory exceeds half the GPU's (fit_batch_size).

None of the GPU choices has been timed here (no GPU): docs/portability.md has the commands that
measure them on one.
"""
import os
import shutil
import subprocess
from dataclasses import dataclass

MIXED_FLOAT16_FROM = (7, 0)      # compute capability with fp16 tensor cores
PRECISIONS = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Device:
    """One device as TensorFlow, nvidia-smi and /proc/cpuinfo describe it: kind "GPU" or "CPU";
    compute_capability (major, minor) and memory_bytes where known."""
    kind: str
    name: str = ""
    compute_capability: tuple = None
    memory_bytes: int = None
    bfloat16: bool = False          # a CPU with native bfloat16 arithmetic (cpu_has_bfloat16)


@dataclass(frozen=True)
class Plan:
    """precision: float32 | bfloat16 | float16 (the engine's precision setting); jit_compile for
    model.compile (False, or "auto" on a GPU); batch_size; text: one line saying what was chosen
    on which device."""
    precision: str
    jit_compile: object
    batch_size: int
    text: str


def choose(devices, batch_size, precision="auto", bytes_per_face=None, bfloat16_ready=False):
    """The Plan for training on `devices` (a list of Device; the first GPU is the one it trains
    on, else the CPU). precision "auto" chooses by device; any other is kept as given.
    bytes_per_face (training_bytes_per_face) lets the batch be fitted to the GPU's memory.
    bfloat16_ready: the version names its float32 layers (bfloat16_ready()), so a CPU with
    native bfloat16 trains it in mixed bfloat16."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    gpus = [device for device in devices if device.kind == "GPU"]
    if not gpus:
        cpu = next((device for device in devices if device.kind == "CPU"), Device("CPU"))
        chosen = precision
        if precision == "auto":
            chosen = "bfloat16" if cpu.bfloat16 and bfloat16_ready else "float32"
        why = "" if chosen != "bfloat16" else (" (native on this CPU)" if cpu.bfloat16 else
                                                " (emulated on this CPU: slower than float32)")
        return Plan(chosen, False, batch_size, f"CPU: {_precision_text(chosen)}{why}, no XLA, batch {batch_size}")
    gpu = gpus[0]
    capability = tuple(gpu.compute_capability or (0, 0))
    if precision == "auto":
        precision = "float16" if capability >= MIXED_FLOAT16_FROM else "float32"
    batch = fit_batch_size(batch_size, bytes_per_face, gpu.memory_bytes, precision)
    about = [f"compute capability {capability[0]}.{capability[1]}"] if gpu.compute_capability else []
    if gpu.memory_bytes:
        about.append(f"{gpu.memory_bytes / 1e9:.0f} GB")
    name = f"GPU 0: {gpu.name or 'GPU'}" + (f" ({', '.join(about)})" if about else "")
    others = f" (of {len(gpus)} GPUs: --strategy mirrored uses them all)" if len(gpus) > 1 else ""
    fitted = f" (the recipe's {batch_size} does not fit)" if batch != batch_size else ""
    return Plan(precision, "auto", batch,
                f"{name}{others}: {_precision_text(precision)}, XLA (jit_compile auto), batch {batch}{fitted}")


def _precision_text(precision):
    return precision if precision == "float32" else f"{precision} (float32 output)"


def fit_batch_size(batch_size, bytes_per_face, memory_bytes, precision="float32"):
    """batch_size, halved while batch x bytes_per_face (float32 activations; fp16's and
    bf16's are half) exceeds half of memory_bytes; unchanged where either is unknown."""
    if not bytes_per_face or not memory_bytes:
        return batch_size
    per_face = bytes_per_face / (1 if precision == "float32" else 2)
    while batch_size > 1 and batch_size * per_face > memory_bytes / 2:
        batch_size //= 2
    return batch_size


def training_bytes_per_face(model):
    """A rough upper estimate of one face's training memory: every layer's float32 output, kept
    for the backward pass, and its gradient, twice over for the framework's workspace."""
    import numpy as np
    elements = 0
    for layer in model.layers:
        for output in (layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]):
            elements += int(np.prod([d for d in output.shape[1:] if d is not None]))
    return elements * 4 * 2 * 2


def optimizer_for(precision, optimizer):
    """The optimizer a model of `precision` trains with: loss-scaled for float16 (its small
    gradients underflow fp16 otherwise), else `optimizer` itself."""
    if precision != "float16":
        return optimizer
    import keras
    return keras.optimizers.LossScaleOptimizer(optimizer)


def bfloat16_ready(version):
    """Whether a model version names the layers that stay float32 in mixed bfloat16 (its
    module's FLOAT32_LAYERS): it was measured in bfloat16, and "auto" may choose it on a CPU."""
    import models
    return hasattr(models.load(version), "FLOAT32_LAYERS")


def cpu_has_bfloat16(cpuinfo="/proc/cpuinfo"):
    """Whether this CPU does bfloat16 arithmetic natively (x86 flags avx512_bf16 or amx_bf16, as
    Linux lists them); False where that cannot be read (macOS, Windows: not measured there)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as file:
            for line in file:
                if line.startswith("flags"):
                    return bool({"avx512_bf16", "amx_bf16"} & set(line.split(":", 1)[-1].split()))
    except OSError:
        pass
    return False


def local_devices():
    """This machine's devices as TensorFlow sees them: its GPUs (name and compute capability
    from TensorFlow, memory from nvidia-smi where it runs), then the CPU (native bfloat16 from
    /proc/cpuinfo)."""
    import tensorflow as tf
    memories = _nvidia_smi_memory()
    devices = []
    for index, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        details = tf.config.experimental.get_device_details(gpu)
        devices.append(Device("GPU", details.get("device_name", gpu.name), details.get("compute_capability"),
                              memories[index] if index < len(memories) else None))
    return devices + [Device("CPU", bfloat16=cpu_has_bfloat16())]


def _nvidia_smi_memory():
    """Each GPU's total memory in bytes as nvidia-smi lists them; [] without it."""
    if not shutil.which("nvidia-smi"):
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").replace(" ", "")   # TensorFlow's GPU 0, 1, ...
    only = [f"--id={visible}"] if visible and all(part.isdigit() for part in visible.split(",")) else []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits", *only],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return [int(line) * 2 ** 20 for line in out.split()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
