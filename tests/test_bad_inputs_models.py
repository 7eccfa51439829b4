"""Model files that are not what a command expects, given to every command that loads one (the
reviewer's reproductions, by cause): a file that is not a Keras model at all, a model of another
input shape, a model that predicts NaN, a model whose export does not match it. Each ends in its
exit status, exactly one `error: ...` line naming the file, no traceback, and nothing written.

    pytest tests/test_bad_inputs_models.py
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from test_bad_inputs_export import refused, run, snapshot, unchanged

import cli
import synthetic_faces


@pytest.fixture(scope="module")
def inp(tmp_path_factory):
    """Small Keras models (96x96x1 -> 30 unless named otherwise), Kaggle-format files, junk."""
    import keras
    d = tmp_path_factory.mktemp("models")

    def dense(name, inputs=(96, 96, 1), bias=0.0, layer="out"):
        image = keras.Input(inputs)
        flat = keras.layers.Flatten()(keras.layers.AveragePooling2D(8)(image))
        out = keras.layers.Dense(30, kernel_initializer="zeros", name=layer,
                                 bias_initializer=keras.initializers.Constant(bias))(flat)
        keras.Model(image, out).save(d / name)

    dense("wrong_input.keras", inputs=(64, 64, 3))
    dense("nan.keras", bias=float("nan"))
    dense("not_out.keras", bias=0.1, layer="coordinates")
    (d / "junk.keras").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())
    synthetic_faces.write_kaggle_files(d / "kaggle", n_train=8, n_test=4, seed=1)
    return d


# ---------------------------------------------------------------------------------------
# A file that exists but is not a Keras model: Keras says "File not found".

KAGGLE = "kaggle"


def _commands(inp, model, out):
    kaggle = inp / KAGGLE
    return {
        "evaluate": ("evaluate.py", ["--model", model, "--data", kaggle / "training.csv"]),
        "export": ("export.py", ["--model", model, "--format", "predictor", "--out", out / "m.onnx"]),
        "write_submission": ("write_submission.py", ["--model", model, "--test", kaggle / "test.csv",
                                                     "--lookup", kaggle / "IdLookupTable.csv", "--out-dir", out]),
        "train --init-from": ("train.py", ["--model", "v1_single_layer", "--data", kaggle / "training.csv",
                                           "--epochs", "1", "--quiet", "--root", out, "--init-from", model]),
    }


@pytest.mark.parametrize("command", ["evaluate", "export", "write_submission", "train --init-from"])
def test_a_file_that_is_not_a_keras_model_is_named_as_such(inp, tmp_path, monkeypatch, command):
    out = tmp_path / "out"
    # evaluate reads the data before the model, which caches the parsed CSV beside it (by design)
    import train
    train.load_arrays(inp / KAGGLE / "training.csv", all_rows=True)
    before = snapshot(inp)
    script, argv = _commands(inp, inp / "junk.keras", out)[command]
    line = refused(run(script, argv, tmp_path, monkeypatch), 1, str(inp / "junk.keras"))
    assert "exists but is not a Keras model file" in line and "File not found" not in line, line
    unchanged(before, inp)
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


# ---------------------------------------------------------------------------------------
# A model of another input shape: Keras's traceback from inside predict().

def test_write_submission_refuses_a_model_of_another_input_shape(inp, tmp_path, monkeypatch):
    out = tmp_path / "out"
    script, argv = _commands(inp, inp / "wrong_input.keras", out)["write_submission"]
    line = refused(run(script, argv, tmp_path, monkeypatch), 1, str(inp / "wrong_input.keras"))
    assert "(64, 64, 3)" in line and "96x96x1" in line, line
    assert not out.exists() or not list(out.iterdir())


def test_write_submission_refuses_a_model_of_some_columns(inp, tmp_path, monkeypatch):
    """A train.py --cols model (its model.json names them) cannot answer all of Kaggle's rows."""
    import json
    import shutil
    folder = tmp_path / "nose"
    folder.mkdir()
    shutil.copy(inp / "not_out.keras", folder / "model.keras")     # 30 outputs: named 30 columns?
    (folder / "model.json").write_text(json.dumps({"settings": {"cols": ["nose_tip_x", "nose_tip_y"]}}))
    out = tmp_path / "out"
    script, argv = _commands(inp, folder / "model.keras", out)["write_submission"]
    line = refused(run(script, argv, tmp_path, monkeypatch), 1, str(folder / "model.keras"))
    assert "--cols" in line and "Traceback" not in line, line
    assert not out.exists() or not list(out.iterdir())


# ---------------------------------------------------------------------------------------
# predict.py converts a .keras through export.export_predictor: its refusals end predict.py
# in one line too (a ParityError was a RuntimeError, which cli.run does not catch).

def test_predict_on_a_nan_model_is_one_line_and_caches_nothing(inp, tmp_path):
    from PIL import Image
    photo = tmp_path / "in" / "face.png"
    photo.parent.mkdir()
    Image.fromarray(np.pad(synthetic_faces.make_faces(1, seed=2)[0][0], 52, constant_values=90)).save(photo)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
           "FKD_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(ROOT / "predict.py"), str(photo), "--out", str(tmp_path / "out"),
                           "--model", str(inp / "nan.keras"), "--no-progress"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    line = refused((done.returncode, done.stdout, done.stderr), 1, str(inp / "nan.keras"))
    assert "NaN" in line, line
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert not list(tmp_path.glob("out/prediction-*.csv"))


def test_predict_converts_a_model_whose_last_layer_is_not_named_out(inp, tmp_path, monkeypatch):
    import predict
    from prediction import runtime
    monkeypatch.setattr(runtime, "CACHE_DIR", tmp_path / "cache")
    predictor = predict.onnx_for(inp / "not_out.keras")
    assert predictor.outputs == ["out"]
    unit, _ = predictor.raw(np.zeros((2, 96, 96, 1), np.float32))
    np.testing.assert_allclose(unit, 0.1, atol=1e-6)


def test_predict_reports_a_parity_failure_as_bad_input(inp, tmp_path, monkeypatch):
    import export
    import predict
    from prediction import runtime
    monkeypatch.setattr(runtime, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setitem(export.TOLERANCE_PX, "none", -1.0)         # no export can pass
    with pytest.raises(cli.InputError, match=r"not_out\.keras: its ONNX predictor differs"):
        predict.onnx_for(inp / "not_out.keras")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_the_checked_shapes_name_what_was_expected(inp):
    import inference
    model = inference.load_model(inp / "wrong_input.keras")
    with pytest.raises(cli.InputError, match=r"wrong_input\.keras: not a keypoint model \(it takes "
                                             r"\(64, 64, 3\) and gives \(30,\); expected 96x96x1"):
        inference.check_keypoint_model(model, inp / "wrong_input.keras")
    assert inference.check_keypoint_model(inference.load_model(inp / "nan.keras"), "x") is not None
