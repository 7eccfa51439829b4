"""export.py and test_inference.py: SavedModel, TFLite (float32, float16, int8) and ONNX exports
of v1 and a small v2-like convnet predict what Keras predicts, with their own runtimes only."""
import ast
import re
import subprocess
import sys

import keras
import numpy as np

import cli
import pytest
from keras import layers

from conftest import ROOT

import export
import input_data
import models
import synthetic_faces
import test_inference
import train

FLOAT32_PX = 0.01          # float32 exports: rounding only
FLOAT16 = dict(max_diff_px=export.TOLERANCE_PX["float16"], rmse_loss_px=0.02)
INT8 = dict(max_diff_px=export.TOLERANCE_PX["int8"], rmse_loss_px=0.25)


def small_convnet():
    """v2_convnet's layout (three 'valid' convolutions with pools, two dense layers), narrower."""
    image = keras.Input((96, 96, 1), name="image")
    net = layers.Conv2D(8, 3, activation="relu", name="conv1")(image)
    net = layers.MaxPooling2D(2, name="pool1")(net)
    net = layers.Conv2D(16, 2, activation="relu", name="conv2")(net)
    net = layers.MaxPooling2D(2, name="pool2")(net)
    net = layers.Conv2D(32, 2, activation="relu", name="conv3")(net)
    net = layers.MaxPooling2D(2, name="pool3")(net)
    net = layers.Flatten(name="flatten")(net)
    net = layers.Dense(64, activation="relu", name="fc1")(net)
    net = layers.Dense(64, activation="relu", name="fc2")(net)
    return keras.Model(image, layers.Dense(30, name="out")(net), name="small_convnet")


def _fit(model, X, Y):
    """A few epochs from the mean face, so that outputs have a face's range (as int8 needs)."""
    keras.utils.set_random_seed(0)
    out = model.get_layer("out")
    out.set_weights([out.get_weights()[0] * 0.1, np.nanmean(Y, axis=0)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=train.masked_mse)
    model.fit(X, Y, epochs=3, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    images, keypoints = synthetic_faces.make_faces(300, seed=3)
    keypoints[::7, 4:8] = np.nan                       # missing labels, as in Kaggle's file
    csv = input_data.write_csv(folder / "faces.csv", images, keypoints)
    X, Y = input_data.images_to_unit(images), input_data.keypoints_to_unit(keypoints)
    return folder, csv, X, Y


@pytest.fixture(scope="module")
def trained(faces):
    _, _, X, Y = faces
    return {"v1": _fit(models.load("v1_single_layer").network(), X, Y),
            "small_convnet": _fit(small_convnet(), X, Y)}


@pytest.fixture(scope="module")
def exported(faces, trained):
    """{(model, format, quantize): (path, parity)} for every export, written once."""
    folder, csv, _, _ = faces
    done = {}
    for name, model in trained.items():
        for fmt in export.FORMATS:
            done[name, fmt, "none"] = export.export(model, fmt, folder / "out", data=csv, verbose=False)
    for quantize in ("float16", "int8"):
        done["small_convnet", "tflite", quantize] = export.export(
            trained["small_convnet"], "tflite", folder / "out", quantize, data=csv, verbose=False)
    return done


@pytest.mark.parametrize("model", ["v1", "small_convnet"])
@pytest.mark.parametrize("fmt", export.FORMATS)
def test_float32_exports_match_keras(trained, exported, model, fmt):
    path, parity = exported[model, fmt, "none"]
    expected = {"savedmodel": "_savedmodel", "tflite": ".tflite", "onnx": ".onnx"}[fmt]
    assert path.exists() and path.name == trained[model].name + expected
    assert parity["faces"] == 100
    assert parity["max_diff_px"] <= FLOAT32_PX
    assert abs(parity["exported_rmse_px"] - parity["keras_rmse_px"]) < 1e-3
    assert 0.5 < parity["keras_rmse_px"] < 10      # a face-like model, not a degenerate one


@pytest.mark.parametrize("quantize, bound", [("float16", FLOAT16), ("int8", INT8)])
def test_quantized_tflite_within_bounds(exported, quantize, bound):
    path, parity = exported["small_convnet", "tflite", quantize]
    float_path, _ = exported["small_convnet", "tflite", "none"]
    assert parity["max_diff_px"] <= bound["max_diff_px"]
    assert parity["exported_rmse_px"] - parity["keras_rmse_px"] <= bound["rmse_loss_px"]
    ratio = path.stat().st_size / float_path.stat().st_size
    assert ratio < (0.6 if quantize == "float16" else 0.35)
    if quantize == "int8":
        runner = test_inference.load_runner(path)
        assert np.dtype(runner.input["dtype"]) == np.int8 and "int8 input/output" in runner.runtime


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_inference_script_reports_rmse_and_speed(faces, trained, exported, fmt):
    _, csv, X, Y = faces
    path, _ = exported["small_convnet", fmt, "none"]
    result = subprocess.run([sys.executable, "test_inference.py", str(path), "--data", str(csv),
                             "--batch", "64"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rmse = float(re.search(r"^RMSE: ([\d.]+) px over (\d+) keypoint values", result.stdout, re.M)[1])
    speed = float(re.search(r"^speed: ([\d.]+) faces/s at batch 64", result.stdout, re.M)[1])
    keras_rmse = train.rmse_px(Y, trained["small_convnet"].predict(X, verbose=0))
    assert rmse == pytest.approx(keras_rmse, abs=0.002)
    assert f"{int((~np.isnan(Y)).sum())} keypoint values" in result.stdout
    assert speed > 0


def test_inference_on_a_folder_of_crops(faces, trained, exported, tmp_path):
    from PIL import Image
    _, _, X, _ = faces
    gray = np.round(X[:3, ..., 0] * 255).astype(np.uint8)
    Image.fromarray(gray[0]).save(tmp_path / "a.png")
    Image.fromarray(np.repeat(gray[1][..., None], 3, axis=2)).save(tmp_path / "b.png")    # RGB
    Image.fromarray(gray[2]).resize((192, 192), Image.Resampling.NEAREST).save(tmp_path / "c.bmp")
    path, _ = exported["small_convnet", "onnx", "none"]
    predictions = test_inference.main([str(path), "--data", str(tmp_path), "--out", str(tmp_path / "p.csv")])
    expected = trained["small_convnet"].predict(X[:3], verbose=0)
    np.testing.assert_allclose(predictions, expected, atol=1e-4)   # BOX-shrinking 2x2 copies is exact
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0].startswith("name,left_eye_center_x") and rows[1].startswith("a.png,")


def test_export_cli_writes_and_refuses(faces, trained, tmp_path, capsys, monkeypatch):
    _, csv, _, _ = faces
    model_path = tmp_path / "model.keras"
    trained["v1"].save(model_path)
    out = tmp_path / "out"
    args = ["--model", str(model_path), "--format", "onnx", "--out", str(out), "--data", str(csv)]
    assert export.main(args) == 0
    assert (out / "v1_single_layer.onnx").exists()
    assert "max |difference|" in capsys.readouterr().out

    # Above the tolerance: exit code 1, and nothing is written (not even a temporary folder).
    refused = tmp_path / "refused"
    real = export.check_parity
    monkeypatch.setattr(export, "check_parity", lambda *a, **k: {**real(*a, **k), "max_diff_px": 5.0})
    with pytest.raises(cli.InputError, match="refused"):     # cli.run: `error: refused: ...`, exit 1
        export.main(args[:5] + [str(refused), "--data", str(csv)])
    monkeypatch.undo()
    assert list(refused.iterdir()) == []
    with pytest.raises(cli.UsageError, match="tflite only"):
        export.main(args + ["--quantize", "int8"])


def test_inference_script_is_standalone(tmp_path):
    """Nothing of the repository but `cli`, and that only when it is there: a copy of the file
    alone runs and ends bad options and files the same way."""
    tree = ast.parse((ROOT / "test_inference.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    ours = {path.stem for path in ROOT.glob("*.py")} | {"models", "tests"}
    assert not imported & ours - {"cli"}, f"test_inference.py imports the repo's {imported & ours}"
    alone = tmp_path / "test_inference.py"
    alone.write_text((ROOT / "test_inference.py").read_text())
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    (tmp_path / "faces").mkdir()
    for args, status, words in ((["bad.onnx", "--data", "faces", "--batch", "0"], 2, "--batch"),
                                (["bad.onnx", "--data", "faces"], 1, "no image files"),
                                (["missing.onnx", "--data", "bad.onnx"], 1, "Image")):
        done = subprocess.run([sys.executable, str(alone), *args], capture_output=True, text=True,
                              cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
        assert done.returncode == status and words in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_savedmodel_with_file_operations_is_refused(tmp_path):
    import tensorflow as tf

    class Hostile(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 96, 96, 1], tf.float32)])
        def serve(self, image):
            tf.io.write_file(str(tmp_path / "pwned.txt"), "x")
            return tf.zeros([tf.shape(image)[0], 30])

    module = Hostile()
    tf.saved_model.save(module, str(tmp_path / "hostile"), signatures={"serving_default": module.serve})
    assert "WriteFile" in test_inference.savedmodel_ops(tmp_path / "hostile")
    with pytest.raises(test_inference.InputError, match="WriteFile"):
        test_inference.load_runner(tmp_path / "hostile")
    assert not (tmp_path / "pwned.txt").exists()


def test_the_predictor_export_has_heatmaps_and_names_its_keras_file(trained, tmp_path):
    import onnxruntime as ort
    import onnx
    model_path = tmp_path / "m.keras"
    trained["v1"].save(model_path)
    path, parity = export.export_predictor(model_path, tmp_path / "m.onnx")
    assert parity["max_diff_px"] <= 0.01
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["keras_sha256"] == input_data.file_sha256(model_path)
    assert [o.name for o in ort.InferenceSession(str(path)).get_outputs()] == ["out"]     # v1: no heatmaps


def test_a_keras_file_that_is_not_a_keypoint_model_is_refused_by_name(tmp_path):
    inputs = keras.Input((96, 96, 1))
    embedding = layers.Dense(128)(layers.Flatten()(inputs))      # like models/face_embedding
    path = tmp_path / "embedder.keras"
    keras.Model(inputs, embedding).save(path)
    with pytest.raises(cli.InputError, match=r"embedder\.keras: not a keypoint model .*\(128,\)"):
        export.export_predictor(path, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_the_predictor_export_does_not_depend_on_the_output_layers_name(tmp_path):
    """tf2onnx names the outputs after the Keras layers: a model whose last layer was not named
    `out` gave an ONNX without `out`, and the parity run ended in onnxruntime's traceback."""
    import onnxruntime as ort
    image = keras.Input((96, 96, 1))
    coordinates = layers.Dense(30, name="coordinates")(layers.Flatten()(layers.AveragePooling2D(8)(image)))
    keras.Model(image, coordinates).save(tmp_path / "m.keras")
    path, parity = export.export_predictor(tmp_path / "m.keras", tmp_path / "m.onnx")
    assert parity["max_diff_px"] <= 0.01
    assert [o.name for o in ort.InferenceSession(str(path)).get_outputs()] == ["out"]
