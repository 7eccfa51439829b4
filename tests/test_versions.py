"""The declared version range, from Colab's versions (requirements-low.txt) to the pins
(requirements.txt): the shipped models load on every Keras of it, a file saved by a newer
Keras loads on an older one, what a notebook installs on Colab or Kaggle never replaces their
TensorFlow, Keras or numpy, and every command line runs once.

The tests marked `platform` are the tier `make test-low` runs in .venv-low (the low end);
`make test` runs them with everything else at the pins.
"""
import csv
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

import cli
import inference
import input_data
import models
import synthetic_faces
from conftest import ROOT
from training import device

SHIPPED = {"v6": ROOT / "models" / "v6_resnet_integral" / "model.keras",
           "embedder": ROOT / "models" / "face_embedding" / "embedder.keras"}
# What Colab and Kaggle ship and a notebook must never replace (colabtools#1609, #3332, #4230:
# another TensorFlow loses the GPU; another Keras or numpy breaks the ones built against them).
PLATFORM_PACKAGES = re.compile(r"^(tensorflow.*|tf-.*|tf_.*|keras.*|numpy|jax.*|ml-dtypes|tensorboard.*)$")


def requirements(name):
    """{package name (lower case, '-' for '_'): version spec} of a requirements file."""
    found = {}
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            package, spec = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", line).groups()
            found[package.lower().replace("_", "-")] = spec.replace(" ", "")
    return found


def hashes(arrays):
    return sorted(hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() for a in arrays)


def weights_in_file(path):
    """Every array of a .keras file's model.weights.h5."""
    arrays = []
    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as raw, \
            h5py.File(raw, "r") as weights:
        weights.visititems(lambda _, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def faces(n, seed=0):
    images, _ = synthetic_faces.make_faces(n, seed=seed)
    return input_data.images_to_unit(images)


@pytest.mark.platform
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_model_loads_with_every_weight_of_its_file(name):
    model = inference.load_keras_file(SHIPPED[name])
    assert hashes(w.numpy() for w in model.weights) == hashes(weights_in_file(SHIPPED[name]))
    out = model.predict(faces(4), verbose=0)
    assert np.isfinite(out).all()
    if name == "embedder":
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


@pytest.mark.platform
def test_the_shipped_keypoint_model_predicts_what_its_onnx_export_does():
    import onnxruntime
    X = faces(16)
    keras_out = inference.load_keras_file(SHIPPED["v6"]).predict(X, verbose=0)
    session = onnxruntime.InferenceSession(str(SHIPPED["v6"].with_suffix(".onnx")))
    onnx_out = session.run(["out"], {session.get_inputs()[0].name: X})[0]
    assert np.abs(keras_out - onnx_out).max() * 48 < 1e-4          # pixels


def _with_layer_arguments(source, target, extra):
    """A copy of a .keras file whose every layer's config has the arguments `extra` (as a newer
    Keras writes arguments it added)."""
    with zipfile.ZipFile(source) as archive:
        config = json.loads(archive.read("config.json"))
        for layer in config["config"]["layers"]:
            if layer["class_name"] != "InputLayer":
                layer["config"].update(extra)
        with zipfile.ZipFile(target, "w") as out:
            for item in archive.namelist():
                data = json.dumps(config) if item == "config.json" else archive.read(item)
                out.writestr(item, data)
    return target


@pytest.mark.platform
def test_a_file_of_a_newer_keras_loads_without_the_arguments_it_added_switched_off(tmp_path):
    network = models.load("v6_resnet_integral").network()
    network.save(tmp_path / "model.keras")
    newer = _with_layer_arguments(tmp_path / "model.keras", tmp_path / "newer.keras",
                                  {"future_switch": False, "future_switch_rate": 0.5, "future_axes": None})
    X = faces(2)
    np.testing.assert_array_equal(inference.load_keras_file(newer).predict(X, verbose=0),
                                  network.predict(X, verbose=0))
    # an argument that is on cannot be dropped: the one-line error names it and the file
    needs = _with_layer_arguments(tmp_path / "model.keras", tmp_path / "needs.keras", {"future_width": 3})
    with pytest.raises(cli.InputError, match=r"needs\.keras: .*future_width=3.*newer Keras"):
        inference.load_keras_file(needs)


def test_the_notebook_install_replaces_nothing_the_platform_ships():
    notebook, low = requirements("requirements-notebook.txt"), requirements("requirements-low.txt")
    assert notebook and not [name for name in notebook if PLATFORM_PACKAGES.match(name)]
    for name, spec in notebook.items():
        # a lower bound only (whatever newer version the platform has stays), and that bound is
        # the version the low tier tests
        assert re.fullmatch(r">=[0-9.]+", spec), (name, spec)
        assert low.get(name) == "==" + spec[2:], (name, spec, low.get(name))


def test_the_low_end_pins_the_packages_of_requirements_txt_at_or_below_theirs():
    top, low = requirements("requirements.txt"), requirements("requirements-low.txt")
    assert set(low) == set(top)
    for name in ("tensorflow-cpu", "keras", "numpy"):
        below = [int(part) for part in low[name][2:].split(".")]
        assert below <= [int(part) for part in top[name][2:].split(".")], name


TOP_PYTHON = ROOT / ".venv" / "bin" / "python"       # make test's environment: the pins


@pytest.mark.platform
@pytest.mark.skipif(not TOP_PYTHON.exists(), reason="no .venv (make test's environment) to load them with")
def test_every_version_saved_here_loads_with_the_pinned_versions(tmp_path):
    """In make test-low (CI runs it after make test made .venv): files saved by the low end's
    Keras give the same outputs with the pins' Keras."""
    import subprocess
    import sys
    if Path(sys.prefix).resolve() == TOP_PYTHON.parents[1].resolve():
        pytest.skip("this is .venv itself")
    X = faces(4)
    np.save(tmp_path / "X.npy", X)
    for version in models.names():
        network = models.load(version).network()
        network.save(tmp_path / f"{version}.keras")
        np.save(tmp_path / f"{version}.npy", network.predict(X, verbose=0))
    check = ("import sys, numpy as np, inference, models\n"
             "folder = sys.argv[1]; X = np.load(folder + '/X.npy')\n"
             "for v in models.names():\n"
             "    out = inference.load_keras_file(f'{folder}/{v}.keras').predict(X, verbose=0)\n"
             "    print(v, float(np.abs(out - np.load(f'{folder}/{v}.npy')).max()))\n")
    done = subprocess.run([str(TOP_PYTHON), "-c", check, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    differences = dict(line.split() for line in done.stdout.splitlines())
    assert sorted(differences) == sorted(models.names())
    assert all(float(d) < 1e-5 for d in differences.values()), differences


@pytest.mark.platform
def test_this_environment_has_the_versions_its_requirements_file_pins():
    """make test: requirements.txt; make test-low: requirements-low.txt (FKD_REQUIREMENTS), with
    requirements-notebook.txt installed after it, as a notebook's first cell does on Colab."""
    name = os.environ.get("FKD_REQUIREMENTS", "requirements.txt")
    wrong = {package: (spec, importlib.metadata.version(package))
             for package, spec in requirements(name).items()
             if spec.startswith("==") and importlib.metadata.version(package) != spec[2:]}
    assert not wrong, f"{name}: pinned, installed: {wrong}"


@pytest.fixture(scope="module")
def kaggle_files(tmp_path_factory):
    """A small training CSV, test CSV and lookup table in Kaggle's format."""
    folder = tmp_path_factory.mktemp("kaggle")
    images, keypoints = synthetic_faces.make_faces(96, seed=2)
    training = input_data.write_csv(folder / "training.csv", images, keypoints)
    test = input_data.write_csv(folder / "test.csv", images[:6], image_ids=np.arange(1, 7))
    lookup = synthetic_faces.write_lookup_table(folder / "IdLookupTable.csv", range(1, 7))
    return training, test, lookup


def run_command(main, argv, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.run(main, [str(arg) for arg in argv])
    out, err = capsys.readouterr()
    assert stop.value.code == 0, out + err
    return out


@pytest.mark.platform
@pytest.mark.parametrize("version", models.names())
def test_every_version_trains_evaluates_and_writes_a_submission(version, kaggle_files, tmp_path, capsys):
    import evaluate
    import train
    import write_submission
    training, test, lookup = kaggle_files
    run_command(train.main, ["--model", version, "--data", training, "--epochs", 1, "--batch-size", 32,
                             "--root", tmp_path, "--run-id", "short", "--quiet"], capsys)
    out = run_command(evaluate.main, ["--run", "short", "--root", tmp_path], capsys)
    assert "RMSE" in out
    model = tmp_path / "models" / version / "model.keras"
    run_command(write_submission.main, ["--model", model, "--test", test, "--lookup", lookup,
                                        "--out-dir", tmp_path / "submission"], capsys)
    with open(next((tmp_path / "submission").glob("submission-*.csv"))) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(input_data.read_lookup(lookup))


@pytest.mark.platform
def test_the_shipped_model_exports_to_what_the_shipped_onnx_predicts(tmp_path, capsys):
    import export
    import onnxruntime
    run_command(export.main, ["--model", SHIPPED["v6"], "--format", "predictor", "--out", tmp_path / "v6.onnx"],
                capsys)
    X = faces(8, seed=5)
    shipped, again = (onnxruntime.InferenceSession(str(path))
                      for path in (SHIPPED["v6"].with_suffix(".onnx"), tmp_path / "v6.onnx"))
    assert np.abs(shipped.run(["out"], {"image": X})[0] - again.run(["out"], {"image": X})[0]).max() * 48 < 1e-4


@pytest.mark.platform
def test_the_shipped_embedding_enrolls_and_identifies(tmp_path, capsys):
    import recognize
    from test_recognition_parts import synthetic_people, write_people
    images, person_ids = synthetic_people(3, 2, seed=11)
    enrolled = write_people(tmp_path / "people", images[::2], person_ids[::2])
    photos = tmp_path / "photos"
    photos.mkdir()
    for k, image in enumerate(images[1::2]):
        Image.fromarray(image).save(photos / f"photo{k}.png")
    gallery = tmp_path / "gallery.npz"
    run_command(recognize.main, ["enroll", enrolled, "--gallery", gallery, "--no-detect"], capsys)
    run_command(recognize.main, ["identify", photos, "--gallery", gallery, "--no-detect",
                                 "--out", tmp_path / "who"], capsys)
    with open(tmp_path / "who.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(row["name"] for row in rows)


@pytest.mark.platform
def test_predict_finds_and_marks_the_face_of_a_photo(tmp_path, capsys):
    import predict
    import skimage.data
    Image.fromarray(skimage.data.astronaut()).save(tmp_path / "astronaut.png")
    assert predict.main([str(tmp_path / "astronaut.png"), "--no-progress", "--no-plot"]) == 0
    with open(next(tmp_path.glob("prediction-*.csv"))) as f:
        rows = list(csv.DictReader(f))
    [row] = rows
    assert row["status"] == "ok" and np.isfinite([float(row[column]) for column in input_data.COLUMNS]).all()


# The device choice (training/device.py), from faked device lists: no GPU here.
T4 = device.Device("GPU", "Tesla T4", (7, 5), 15 * 2 ** 30)
P100 = device.Device("GPU", "Tesla P100-PCIE-16GB", (6, 0), 16 * 2 ** 30)
CPU = device.Device("CPU")


@pytest.mark.parametrize("devices, precision, jit", [
    ([CPU], "float32", False),                                  # measured: XLA slower
    ([T4, CPU], "float16", "auto"),                             # tensor cores: mixed float16
    ([device.Device("GPU", "NVIDIA H100", (9, 0)), CPU], "float16", "auto"),
    ([P100, CPU], "float32", "auto"),                           # no fp16 tensor cores
    ([device.Device("GPU"), CPU], "float32", "auto"),           # capability unknown: no guess
])
def test_the_device_chooses_precision_and_compilation(devices, precision, jit):
    plan = device.choose(devices, batch_size=128)
    assert (plan.precision, plan.jit_compile, plan.batch_size) == (precision, jit, 128)
    assert precision in plan.text and ("GPU" in plan.text) == (devices[0].kind == "GPU")


def test_a_cpu_with_native_bfloat16_trains_a_version_measured_in_it_in_bfloat16(tmp_path):
    native = device.Device("CPU", bfloat16=True)
    plan = device.choose([native], 32, bfloat16_ready=True)
    assert plan.precision == "bfloat16" and "native" in plan.text and plan.jit_compile is False
    assert device.choose([native], 32).precision == "float32"                  # v1-v5: not measured in bf16
    assert device.choose([CPU], 32, bfloat16_ready=True).precision == "float32"   # emulated: slower
    assert "emulated" in device.choose([CPU], 32, precision="bfloat16").text
    assert device.choose([T4, native], 32, bfloat16_ready=True).precision == "float16"   # the GPU decides
    assert device.bfloat16_ready("v6") and not device.bfloat16_ready("v2_convnet")
    for flags, native_bf16 in (("fpu sse avx512f avx512_bf16 amx_tile", True), ("fpu amx_bf16", True),
                               ("fpu sse avx512f avx512_vnni", False)):
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert device.cpu_has_bfloat16(tmp_path / "cpuinfo") is native_bf16
    assert device.cpu_has_bfloat16(tmp_path / "absent") is False


def test_a_precision_asked_for_is_kept_and_a_wrong_one_named():
    assert device.choose([T4, CPU], 128, precision="float32").precision == "float32"
    assert device.choose([CPU], 128, precision="bfloat16").precision == "bfloat16"
    with pytest.raises(ValueError, match="float64"):
        device.choose([CPU], 128, precision="float64")


def test_the_batch_is_halved_only_where_its_estimate_exceeds_half_the_gpu():
    small = device.Device("GPU", "small", (7, 5), 2 ** 30)
    assert device.choose([small], 128, bytes_per_face=2 ** 20).batch_size == 128      # 64 MiB in fp16
    plan = device.choose([small], 128, precision="float32", bytes_per_face=2 ** 23)  # 1 GiB > 512 MiB
    assert plan.batch_size == 64 and "does not fit" in plan.text
    assert device.choose([CPU], 128, bytes_per_face=2 ** 40).batch_size == 128        # CPU: unknown memory
    assert device.fit_batch_size(128, None, 2 ** 30) == 128


def test_two_gpus_are_named_with_how_to_use_both():
    assert "--strategy mirrored" in device.choose([T4, T4, CPU], 128).text


def test_a_float16_network_trains_a_step_with_a_scaled_loss_and_float32_output():
    import keras
    import train
    network = models.load("v1_single_layer").network()
    mixed = inference.to_mixed(network, "float16")
    assert mixed.get_layer("out").dtype_policy.name == "float32"
    assert {layer.dtype_policy.name for layer in mixed.layers[1:]} >= {"mixed_float16"}
    optimizer = device.optimizer_for("float16", keras.optimizers.Adam(1e-3))
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert device.optimizer_for("float32", optimizer) is optimizer
    mixed.compile(optimizer=optimizer, loss=train.masked_mse)
    X = faces(8)
    history = mixed.fit(X, np.full((8, 30), 0.5, np.float32), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all() and mixed.predict(X, verbose=0).dtype == np.float32


def test_the_local_devices_end_with_the_cpu():
    found = device.local_devices()
    assert found[-1] == device.Device("CPU", bfloat16=device.cpu_has_bfloat16())
    assert all(d.kind == "GPU" for d in found[:-1])
    assert device.training_bytes_per_face(models.load("v6_resnet_integral").network()) > 96 * 96 * 4
