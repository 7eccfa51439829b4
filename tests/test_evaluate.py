"""evaluate.py: the per-keypoint table and the last line `RMSE <value> px`."""
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
