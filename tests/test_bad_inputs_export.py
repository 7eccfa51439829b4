"""Careless and hostile input to export.py, test_inference.py, inference.py and bench/ (the
reviewer's reproductions, by cause): each command ends in its exit status (2: a bad option, 1: a
bad file), exactly one `error: ...` line naming the option or file, no traceback, and every file
that was there before byte-identical (the shipped model's folder, here a copy, above all).

Commands run in this process (runpy, as `python SCRIPT ...` would; the cheap ones) unless they
must not see this repository (the standalone copy of test_inference.py). The bench scripts are
tested on their options only: every check there comes before any data is read or trained on.
"""
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest

from conftest import ROOT
from test_bad_inputs import _run_in_process

import cli
import inference
import input_data
import models
import synthetic_faces
from input_data import COLUMNS

ERROR_LINE = re.compile(r"^(?:[\w.\-]+(?: [\w.\-]+)?: )?error: ")     # also argparse's `prog: error:`


# ---------------------------------------------------------------------------------------
# Running a command, and what must hold after it.

def run(script, argv, cwd, monkeypatch):
    """`python SCRIPT ARGV` in this interpreter, in cwd: (status, stdout, stderr)."""
    if script.startswith("bench/"):
        monkeypatch.syspath_prepend(str(ROOT / "bench"))        # as `python bench/x.py` has it
    return _run_in_process(script, [str(a) for a in argv], cwd, {}, monkeypatch)


def snapshot(*folders):
    """{path: sha256} of every file under the folders: what must not change on a refusal."""
    files = {}
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def refused(result, status, names, *folders_before):
    """The command ended with `status` and one error line naming `names`; folders unchanged."""
    code, out, err = result
    where = f"exit {code}; stderr: {err.strip()[-1500:]!r}; stdout: {out.strip()[-300:]!r}"
    assert "Traceback" not in err and "Traceback" not in out, where
    assert code == status, where
    errors = [line for line in err.splitlines() if ERROR_LINE.match(line)]
    assert len(errors) == 1, f"expected one error line; {where}"
    assert names in errors[0], f"the error does not name {names!r}: {errors[0]!r}"
    return errors[0]


def unchanged(before, *folders):
    after = snapshot(*folders)
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))[:6]}"
    leftovers = [p for f in folders for p in f.rglob("*") if p.name.endswith(".tmp") or ".write-test-" in p.name]
    assert not leftovers, f"temporary files left: {leftovers}"


# ---------------------------------------------------------------------------------------
# Inputs: small v1 models, a copy of a shipped-looking model folder, tiny ONNX models, CSVs.

@pytest.fixture(scope="module")
def inp(tmp_path_factory):
    import keras
    d = tmp_path_factory.mktemp("inputs")
    for name, seed in (("a", 0), ("b", 1)):
        keras.utils.set_random_seed(seed)
        folder = d / name
        folder.mkdir()
        models.load("v1_single_layer").network().save(folder / "model.keras")
    images, keypoints = synthetic_faces.make_faces(3, seed=0)
    input_data.write_csv(d / "small.csv", images, keypoints)
    header = (d / "small.csv").read_text().splitlines()[0]
    row = (d / "small.csv").read_text().splitlines()[1]
    (d / "infkp.csv").write_text(f"{header}\n{row}\ninf,{row.split(',', 1)[1]}\n")    # row 2: inf
    with zipfile.ZipFile(d / "badutf.zip", "w") as archive:
        archive.writestr("faces.csv", header.encode() + b"\n" + b"\xe9\xff" + row.encode()[2:] + b"\n")
    tiny_onnx(d / "tiny.onnx")
    tiny_onnx(d / "rank2.onnx", shape=["N", 96 * 96])
    tiny_onnx(d / "batch1.onnx", shape=[1, 96, 96, 1])
    return d


def tiny_onnx(path, shape=("N", 96, 96, 1)):
    """A keypoint model in a few bytes (all faces -> the frame's centre), input of `shape`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    nodes = [helper.make_node("Reshape", ["image", "flat_shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "W"], ["out"])]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 30])],
        [numpy_helper.from_array(np.array([-1, 96 * 96], np.int64), "flat_shape"),
         numpy_helper.from_array(np.zeros((96 * 96, 30), np.float32), "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def shipped_copy(root, inp):
    """root/models/v6_resnet_integral/ as it ships (model.keras, model.json, model.onnx), outside
    git: training.runs.protected_model_dir knows it by its folder name (models.SHIPPED)."""
    folder = root / "models" / "v6_resnet_integral"
    folder.mkdir(parents=True)
    shutil.copy(inp / "a" / "model.keras", folder / "model.keras")
    (folder / "model.json").write_text(json.dumps({"model": "v1_single_layer", "mirror_axis_px": 47.5}))
    (folder / "model.onnx").write_bytes(b"the shipped ONNX")
    return folder


def png_header(path, width, height):
    """A PNG that declares width x height (Pillow reads the size without decoding a pixel)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


# ---------------------------------------------------------------------------------------
# 1. export.py never writes over the shipped model's export, nor over an input.

@pytest.mark.parametrize("fmt, out", [("predictor", "."), ("onnx", "model.onnx"), ("onnx", "."),
                                      ("tflite", "."), ("savedmodel", ".")])
def test_export_refuses_another_model_into_a_shipped_folder(inp, tmp_path, monkeypatch, fmt, out):
    shipped = shipped_copy(tmp_path, inp)
    before = snapshot(tmp_path, inp)
    result = run("export.py", ["--model", inp / "b" / "model.keras", "--format", fmt,
                               "--out", shipped / out], tmp_path, monkeypatch)
    line = refused(result, 2, "--out", tmp_path)
    assert "shipped model" in line and str(shipped / "model.keras") in line
    unchanged(before, tmp_path, inp)


@pytest.mark.parametrize("fmt, out", [("onnx", "model.onnx"), ("tflite", ".")])
def test_the_shipped_model_exports_only_its_predictor_into_its_folder(inp, tmp_path, monkeypatch, fmt, out):
    """A plain ONNX over model.onnx would drop the heatmaps and metadata predict.py reads."""
    shipped = shipped_copy(tmp_path, inp)
    before = snapshot(tmp_path, inp)
    result = run("export.py", ["--model", shipped / "model.keras", "--format", fmt,
                               "--out", shipped / out], tmp_path, monkeypatch)
    line = refused(result, 2, "--out", tmp_path)
    assert "--format predictor" in line
    unchanged(before, tmp_path, inp)


def test_export_of_the_shipped_model_beside_itself_still_works(inp, tmp_path, monkeypatch):
    """How model.onnx is made (docs/export.md): its own model.keras, --format predictor."""
    shipped = shipped_copy(tmp_path, inp)
    code, out, err = run("export.py", ["--model", shipped / "model.keras", "--format", "predictor",
                                       "--out", shipped], tmp_path, monkeypatch)
    assert code == 0 and "Traceback" not in err, err[-1500:]
    assert (shipped / "model.onnx").read_bytes().startswith(b"\x08")           # an ONNX protobuf now
    assert (shipped / "model.keras").read_bytes() == (inp / "a" / "model.keras").read_bytes()


@pytest.mark.parametrize("fmt, name", [("onnx", "mine.onnx"), ("predictor", "mine.onnx"), ("tflite", "mine.tflite")])
def test_export_replaces_a_file_it_is_told_to_write_only_with_overwrite(inp, tmp_path, monkeypatch, fmt, name):
    """--out naming a file: the user's name may hold anything (another model's export, notes)."""
    target = tmp_path / name
    target.write_bytes(b"someone's earlier export")
    before = snapshot(tmp_path)
    argv = ["--model", inp / "a" / "model.keras", "--format", fmt, "--out", target]
    line = refused(run("export.py", argv, tmp_path, monkeypatch), 2, "--out")
    assert "--overwrite" in line
    unchanged(before, tmp_path)
    code, _, err = run("export.py", argv + ["--overwrite"], tmp_path, monkeypatch)
    assert code == 0 and "Traceback" not in err, err[-1500:]
    assert target.read_bytes() != b"someone's earlier export"


def test_export_refuses_an_output_that_is_an_input(inp, tmp_path, monkeypatch):
    data = tmp_path / "faces.onnx"                      # a CSV with an unlucky name
    shutil.copy(inp / "small.csv", data)
    holder = tmp_path / "v1_single_layer_savedmodel"     # the SavedModel folder export would replace
    holder.mkdir()
    shutil.copy(inp / "a" / "model.keras", holder / "model.keras")
    before = snapshot(tmp_path)
    for argv in (["--model", inp / "a" / "model.keras", "--format", "onnx", "--data", data, "--out", data],
                 ["--model", holder / "model.keras", "--format", "savedmodel", "--out", tmp_path]):
        refused(run("export.py", argv, tmp_path, monkeypatch), 2, "--out")
        unchanged(before, tmp_path)


# ---------------------------------------------------------------------------------------
# 2. --opset within what tf2onnx writes; a model.json's mirror axis is checked.

@pytest.mark.parametrize("fmt", ["onnx", "predictor"])
@pytest.mark.parametrize("opset", ["999", "12", "x"])
def test_export_opset_out_of_range(inp, tmp_path, monkeypatch, fmt, opset):
    line = refused(run("export.py", ["--model", inp / "a" / "model.keras", "--format", fmt, "--opset", opset,
                                     "--out", tmp_path / "m.onnx"], tmp_path, monkeypatch), 2, "--opset")
    assert opset == "x" or "13 to 1" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("axis", ["abc", 1e300, -3, True, [48]])
@pytest.mark.parametrize("fmt", ["onnx", "predictor"])
def test_export_refuses_a_bad_mirror_axis_naming_model_json(inp, tmp_path, monkeypatch, axis, fmt):
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(inp / "a" / "model.keras", folder / "model.keras")
    (folder / "model.json").write_text(json.dumps({"mirror_axis_px": axis}))
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(tmp_path)
    line = refused(run("export.py", ["--model", folder / "model.keras", "--format", fmt, "--out", out],
                       tmp_path, monkeypatch), 1, str(folder / "model.json"))
    assert "mirror_axis_px" in line
    unchanged(before, tmp_path)


def test_mirror_axis_of(tmp_path):
    model = tmp_path / "model.keras"
    assert inference.mirror_axis_of(model) == 47.5                      # nothing says: the centre
    (tmp_path / "model.json").write_text(json.dumps({"mirror_axis_px": 48.799}))
    assert inference.mirror_axis_of(model) == 48.799
    (tmp_path / "model.json").write_text('{"mirror_axis_px": NaN}')
    with pytest.raises(cli.InputError, match=r"model\.json: field 'mirror_axis_px' is nan"):
        inference.mirror_axis_of(model)
    (tmp_path / "model.json").write_text(json.dumps({"mirror_axis_px": 10 ** 400}))
    with pytest.raises(cli.InputError, match="0 to 96"):
        inference.mirror_axis_of(model)


# ---------------------------------------------------------------------------------------
# 3. test_inference.py --out: never over an input, written whole, any file name.

def test_inference_out_never_replaces_an_input(inp, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(inp, work, ignore=shutil.ignore_patterns("a", "b"))
    crops = work / "crops"
    crops.mkdir()
    from PIL import Image
    Image.fromarray(np.full((96, 96), 128, np.uint8)).save(crops / "a.png")
    before = snapshot(work)
    for model, data, out, names in ((work / "tiny.onnx", work / "small.csv", work / "small.csv", "--data"),
                                    (work / "tiny.onnx", work / "small.csv", work / "tiny.onnx", "exported model"),
                                    (work / "tiny.onnx", crops, crops / "a.png", "--data"),
                                    (work / "tiny.onnx", crops, crops, "is a folder")):
        line = refused(run("test_inference.py", [model, "--data", data, "--out", out], work, monkeypatch),
                       2, names)
        assert str(out) in line
        unchanged(before, work)


def test_inference_out_alone_never_replaces_an_input(inp, tmp_path):
    """The copy of test_inference.py without this repository (no cli) refuses the same."""
    shutil.copy(ROOT / "test_inference.py", tmp_path / "test_inference.py")
    shutil.copy(inp / "small.csv", tmp_path / "small.csv")
    before = snapshot(tmp_path)
    done = subprocess.run([sys.executable, "test_inference.py", "missing.onnx", "--data", "small.csv",
                           "--out", "small.csv"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=120)
    refused((done.returncode, done.stdout, done.stderr), 2, "--out small.csv")
    unchanged(before, tmp_path)
    done = subprocess.run([sys.executable, "test_inference.py", "missing.onnx", "--data", "small.csv",
                           "--threads", "100000"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=120)
    refused((done.returncode, done.stdout, done.stderr), 2, "--threads")


def test_inference_writes_a_crop_with_a_non_utf8_name(inp, tmp_path, monkeypatch):
    from PIL import Image
    crops = tmp_path / "crops"
    crops.mkdir()
    Image.fromarray(np.full((96, 96), 100, np.uint8)).save(crops / os.fsdecode(b"face\xff.png"))
    out = tmp_path / "p.csv"
    code, stdout, err = run("test_inference.py", [inp / "tiny.onnx", "--data", crops, "--out", out],
                            tmp_path, monkeypatch)
    assert code == 0 and "Traceback" not in err, err[-1500:]
    rows = out.read_text(encoding="utf-8").splitlines()
    assert len(rows) == 2 and rows[1].startswith("face\\udcff.png,48.00,")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# ---------------------------------------------------------------------------------------
# 4. test_inference.py: bad keypoints, models, crops, zips and thread counts.

def test_inference_bad_inputs(inp, tmp_path, monkeypatch):
    crops = tmp_path / "crops"
    crops.mkdir()
    png_header(crops / "bomb.png", 14000, 14000)                # beyond Pillow's bomb limit
    large = tmp_path / "large"
    large.mkdir()
    png_header(large / "large.png", 5000, 5000)                 # no face crop, though Pillow would read it
    before = snapshot(inp, tmp_path)
    for argv, status, names in (
            ([inp / "tiny.onnx", "--data", inp / "infkp.csv"], 1, f"{inp / 'infkp.csv'}, row 2: left_eye_center_x is inf"),
            ([inp / "rank2.onnx", "--data", inp / "small.csv"], 1, str(inp / "rank2.onnx")),
            ([inp / "batch1.onnx", "--data", inp / "small.csv"], 1, str(inp / "batch1.onnx")),
            ([inp / "tiny.onnx", "--data", crops], 1, str(crops / "bomb.png")),
            ([inp / "tiny.onnx", "--data", large], 1, str(large / "large.png")),
            ([inp / "tiny.onnx", "--data", inp / "badutf.zip"], 1, f"{inp / 'badutf.zip'}:faces.csv: not a UTF-8"),
            ([inp / "tiny.onnx", "--data", inp / "small.csv", "--threads", "2000"], 2, "--threads"),
            ([inp / "tiny.onnx", "--data", inp / "small.csv", "--threads", "100000"], 2, "--threads")):
        refused(run("test_inference.py", argv, tmp_path, monkeypatch), status, names)
    unchanged(before, inp, tmp_path)


def test_inference_still_runs_a_good_model(inp, tmp_path, monkeypatch):
    code, out, err = run("test_inference.py", [inp / "tiny.onnx", "--data", inp / "small.csv", "--threads", "1"],
                         tmp_path, monkeypatch)
    assert code == 0 and "RMSE: " in out and "Traceback" not in err, err[-1500:]


# ---------------------------------------------------------------------------------------
# 5. bench/: cli.run, and every option checked before any work.

BENCH_CASES = [
    ("bench/augment_speed.py", ["--images", "0"], 2, "--images"),
    ("bench/augment_speed.py", ["--images", "-5"], 2, "--images"),
    ("bench/augment_speed.py", ["--batch", "0"], 2, "--batch"),
    ("bench/augment_speed.py", ["--repeat", "0"], 2, "--repeat"),
    ("bench/inference_speed.py", ["--faces", "0"], 2, "--faces"),
    ("bench/inference_speed.py", ["--batch", "0"], 2, "--batch"),
    ("bench/inference_speed.py", ["--repeats", "0"], 2, "--repeats"),
    ("bench/inference_speed.py", ["--runtimes", "bogus"], 2, "--runtimes"),
    ("bench/inference_speed.py", ["--model", "{case}/garbage.keras"], 1, "garbage.keras"),
    ("bench/train_speed.py", ["--model", "v99"], 2, "--model"),
    ("bench/train_speed.py", ["--images", "0"], 2, "--images"),
    ("bench/train_speed.py", ["--variants", "plain,turbo"], 2, "--variants"),
    ("bench/compare_models.py", ["--models", "v2,v99", "--work", "{case}/w"], 2, "--models"),
    ("bench/compare_models.py", ["--minutes", "0", "--work", "{case}/w"], 2, "--minutes"),
    ("bench/compare_models.py", ["--validation", "1.5", "--work", "{case}/w"], 2, "--validation"),
    ("bench/compare_models.py", ["--validation", "0", "--work", "{case}/w"], 2, "--validation"),
    ("bench/compare_models.py", ["--models", "v1", "--work", "{case}"], 1, "faces.sources.csv"),
    ("bench/missing_keypoints.py", ["--seed", "-1", "--work", "{case}"], 2, "--seed"),
    ("bench/missing_keypoints.py", ["--model", "v99", "--work", "{case}"], 2, "--model"),
    ("bench/missing_keypoints.py", ["--validation", "1", "--work", "{case}"], 2, "--validation"),
    ("bench/time_to_accuracy.py", ["--model", "v99", "--work", "{case}"], 2, "--model"),
    ("bench/time_to_accuracy.py", ["--option", "model=v1", "--work", "{case}"], 2, "--option model=v1"),
    ("bench/time_to_accuracy.py", ["--option", "bogus=1", "--work", "{case}"], 2, "--option"),
    ("bench/time_to_accuracy.py", ["--option", "epochs=0", "--work", "{case}"], 2, "--epochs"),
    ("bench/time_to_accuracy.py", ["--minutes", "nan", "--work", "{case}"], 2, "--minutes"),
    ("bench/recognition.py", ["orl", "--rows", "bogus", "--json-dir", "{case}/json"], 2, "--rows"),
    ("bench/recognition.py", ["unseen", "--rows", "pixels", "--json-dir", "{case}/json"], 2, "--rows"),
    ("bench/recognition.py", ["unseen", "--base", "{case}/missing.keras", "--json-dir", "{case}/json"], 2, "--base"),
    ("bench/recognition.py", ["orl", "--base", "{case}", "--json-dir", "{case}/json"], 2, "--base"),
    ("bench/predict_rotation.py", ["--turns", "30,x"], 2, "--turns"),
    ("bench/predict_rotation.py", ["--turns", "nan"], 2, "--turns"),
    ("bench/predict_rotation.py", ["{case}/missing.jpg"], 1, "missing.jpg"),
    ("bench/predict_rotation.py", ["{case}/garbage.keras", "--turns", "30"], 1, "garbage.keras"),
    ("bench/predict_accuracy.py", ["--model", "{case}/garbage.keras", "--low-confidence", "1.5"], 2,
     "--low-confidence"),
    ("bench/aux_landmarks.py", ["--data", "{case}/missing.csv", "--out", "{case}/w"], 1, "missing.csv"),
    ("bench/aux_landmarks.py", ["--data", "{case}/faces.csv", "--out", "{case}/w"], 1, "faces.sources.csv"),
    ("bench/aux_landmarks.py", ["--data", "{case}/faces.csv", "--out", "{case}/w", "--epochs", "0"], 2, "--epochs"),
    ("bench/aux_landmarks.py", ["--data", "{case}/faces.csv", "--out", "{case}/w", "--aux-weight", "nan"], 2,
     "--aux-weight"),
    ("bench/aux_landmarks.py", ["--data", "{case}/faces.csv", "--out", "{case}/faces.csv",
                                "--landmarks", "{case}/faces.csv"], 1, "faces.csv"),
]


@pytest.mark.parametrize("script, argv, status, names", BENCH_CASES,
                         ids=[f"{c[0].split('/')[1]}:{' '.join(c[1][:2])}" for c in BENCH_CASES])
def test_bench_options(tmp_path, monkeypatch, script, argv, status, names):
    case = tmp_path / "case"
    case.mkdir()
    (case / "garbage.keras").write_bytes(b"not a model")
    (case / "faces.csv").write_text("a converted file without its faces.sources.csv\n")
    before = snapshot(case)
    argv = [a.replace("{case}", str(case)) for a in argv]
    refused(run(script, argv, case, monkeypatch), status, names)
    unchanged(before, case)
    assert sorted(p.name for p in case.iterdir()) == ["faces.csv", "garbage.keras"]   # no json/, no w/


# ---------------------------------------------------------------------------------------
# 7. The predictor export's refusals are one line naming the model (predict.py's too: see
# tests/test_bad_inputs_models.py), and write nothing.

@pytest.fixture(scope="module")
def odd_models(tmp_path_factory):
    import keras
    d = tmp_path_factory.mktemp("odd")
    for name, bias in (("nan", float("nan")), ("fine", 0.1)):
        image = keras.Input((96, 96, 1))
        flat = keras.layers.Flatten()(keras.layers.AveragePooling2D(8)(image))
        out = keras.layers.Dense(30, kernel_initializer="zeros", name="coordinates",
                                 bias_initializer=keras.initializers.Constant(bias))(flat)
        keras.Model(image, out).save(d / f"{name}.keras")
    return d


@pytest.mark.parametrize("model, words", [("nan", "predicts NaN"), ("fine", "its ONNX predictor differs")])
def test_predictor_export_refusal_is_one_line_naming_the_model(odd_models, tmp_path, monkeypatch, capsys,
                                                               model, words):
    import export
    monkeypatch.setitem(export.TOLERANCE_PX, "none", -1.0 if model == "fine" else 0.01)   # "fine" cannot pass
    before = snapshot(odd_models)
    with pytest.raises(SystemExit) as stopped:     # in this process: the tolerance patched above
        cli.run(export.main, ["--model", str(odd_models / f"{model}.keras"), "--format", "predictor",
                              "--out", str(tmp_path / "out.onnx")])
    line = refused((stopped.value.code, *capsys.readouterr()), 1, str(odd_models / f"{model}.keras"))
    assert words in line, line
    unchanged(before, odd_models, tmp_path)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
