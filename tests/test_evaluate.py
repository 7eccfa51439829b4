"""evaluate.py: the per-keypoint table and the last line `RMSE <value> px`."""
import json

import numpy as np
import pytest

import augment
import evaluate
import input_data
import models
import synthetic_faces
import train


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    images, keypoints = synthetic_faces.make_faces(40, seed=5, missing="kaggle")
    data = input_data.write_csv(folder / "faces.csv", images, keypoints)
    model = models.load("v1_single_layer").network()
    model.save(folder / "model.keras")
    return folder / "model.keras", data, model


def test_cli_prints_the_table_and_the_rmse_last(model_and_data, capsys):
    path, data, model = model_and_data
    evaluate.main(["--model", str(path), "--data", str(data)])
    lines = capsys.readouterr().out.strip().split("\n")
    X, Y, _ = train.load_arrays(data, all_rows=True)
    expected = float(train.rmse_px(Y, model.predict(X, verbose=0)))
    assert lines[-1] == f"RMSE {expected:.4f} px"
    assert len(X) == 40                                       # every row, missing keypoints masked
    table = {line.split()[0]: line.split()[1:] for line in lines[2:-1]}
    assert set(table) == set(input_data.KEYPOINT_NAMES)
    # Kaggle-like missingness: the eye centres are in (nearly) every face, the corners in few.
    assert int(table["left_eye_center"][0]) > int(table["left_eye_inner_corner"][0])


def test_flip_tta_averages_with_the_mirror(model_and_data, capsys):
    path, data, model = model_and_data
    evaluate.main(["--model", str(path), "--data", str(data), "--flip-tta"])
    last = capsys.readouterr().out.strip().split("\n")[-1]
    X, Y, _ = train.load_arrays(data, all_rows=True)
    flipped = augment.flip_keypoints(model.predict(augment.flip_images(X), verbose=0))
    averaged = (model.predict(X, verbose=0) + flipped) / 2
    assert last == f"RMSE {float(train.rmse_px(Y, averaged)):.4f} px"


def test_rmse_px_by_hand():
    Y = np.array([[0.0, np.nan], [0.5, 1.0]])
    P = np.array([[0.1, 0.3], [0.5, 0.5]])
    # errors in px: 4.8, (missing), 0, 24 -> sqrt((4.8^2 + 0 + 24^2) / 3)
    assert float(train.rmse_px(Y, P)) == pytest.approx(np.sqrt((4.8 ** 2 + 24 ** 2) / 3))
    np.testing.assert_allclose(train.rmse_px(Y, P, axis=0), [np.sqrt(4.8 ** 2 / 2), 24.0])


BAD = [
    (["--run", ".."], 2, "--run: got '..'"),
    (["--run", "nothing-here"], 1, "--run nothing-here: no run in"),
    (["--run", "x", "--data", "faces.csv"], 2, "--data: not with --run"),
    (["--model", "missing.keras", "--data", "faces.csv"], 1, "--model missing.keras: no such file"),
    (["--model", "missing.keras"], 2, "--data: needed with --model"),
]


@pytest.mark.parametrize("argv, status, message", BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_input_is_one_line(tmp_path, capsys, argv, status, message):
    import cli
    with pytest.raises(SystemExit) as stopped:
        cli.run(evaluate.main, [*argv, "--root", str(tmp_path)] if "--run" in argv else argv)
    err = capsys.readouterr().err
    assert stopped.value.code == status and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err, err


# ---------------------------------------------------------------------------------------
# Models of other shapes: scored on their own columns, or one line naming the file.

NOSE = ["nose_tip_x", "nose_tip_y"]


def _run(argv, capsys):
    import cli
    with pytest.raises(SystemExit) as stopped:
        cli.run(evaluate.main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return stopped.value.code, out, err


def _small_model(path, inputs=(96, 96, 1), outputs=30):
    import keras
    image = keras.Input(inputs)
    flat = keras.layers.Flatten()(keras.layers.AveragePooling2D(8)(image))
    model = keras.Model(image, keras.layers.Dense(outputs, name="out")(flat))
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return model


def test_a_cols_model_is_scored_on_the_columns_its_model_json_names(model_and_data, tmp_path, capsys):
    """train.py --cols writes them into model.json's settings; a 2-column model used to meet 30
    labels in the RMSE: a numpy broadcasting traceback."""
    _, data, _ = model_and_data
    path = tmp_path / "nose" / "model.keras"
    model = _small_model(path, outputs=2)
    (path.parent / "model.json").write_text(json.dumps({"model": "v1_single_layer", "settings": {"cols": NOSE}}))
    code, out, err = _run(["--model", path, "--data", data], capsys)
    assert code == 0, err
    X, Y, _ = train.load_arrays(data, all_rows=True, cols=NOSE)
    lines = out.strip().split("\n")
    assert lines[-1] == f"RMSE {float(train.rmse_px(Y, model.predict(X, verbose=0))):.4f} px"
    assert [line.split()[0] for line in lines[2:-1]] == ["nose_tip"] and "nose_tip" in lines[0]


def test_a_cols_model_without_its_model_json_is_one_line(model_and_data, tmp_path, capsys):
    _, data, _ = model_and_data
    path = tmp_path / "bare" / "model.keras"
    _small_model(path, outputs=2)
    before = sorted(tmp_path.rglob("*"))
    code, out, err = _run(["--model", path, "--data", data], capsys)
    assert code == 1 and err.startswith(f"error: {path}: ") and err.count("\n") == 1, err
    assert "gives (2,)" in err and "--cols" in err and out == "", err
    assert sorted(tmp_path.rglob("*")) == before


def test_a_model_of_another_input_shape_is_one_line(model_and_data, tmp_path, capsys):
    _, data, _ = model_and_data
    path = tmp_path / "rgb" / "model.keras"
    _small_model(path, inputs=(64, 64, 3))
    code, out, err = _run(["--model", path, "--data", data], capsys)
    assert code == 1 and err.startswith(f"error: {path}: ") and err.count("\n") == 1, err
    assert "takes (64, 64, 3)" in err and "96x96x1" in err and out == "", err


def test_flip_tta_is_refused_for_columns_without_their_other_side(model_and_data, tmp_path, capsys):
    _, data, _ = model_and_data
    path = tmp_path / "left" / "model.keras"
    _small_model(path, outputs=2)
    cols = ["left_eye_center_x", "left_eye_center_y"]
    (path.parent / "model.json").write_text(json.dumps({"settings": {"cols": cols}}))
    code, out, err = _run(["--model", path, "--data", data, "--flip-tta"], capsys)
    assert code == 2 and err.startswith("error: --flip-tta: ") and "left_eye_center_x" in err, err
    assert err.count("\n") == 1 and out.count("RMSE") == 0


def test_a_cols_run_is_scored_with_flip_tta(model_and_data, tmp_path, capsys):
    """evaluate.py --run on a --cols run flipped 2 columns as if they were 30: a traceback."""
    _, data, _ = model_and_data
    train.train(model="v1_single_layer", data=str(data), cols=NOSE, epochs=1, batch_size=16, validation=0.25,
                root=str(tmp_path), run_id="nose", save_model=False, verbose=0, image_every=100,
                model_options={"units": 4})
    capsys.readouterr()
    code, out, err = _run(["--run", "nose", "--root", tmp_path, "--flip-tta"], capsys)
    assert code == 0, err
    lines = out.strip().split("\n")
    assert lines[-1].startswith("RMSE ") and [line.split()[0] for line in lines[-2:-1]] == ["nose_tip"]
