"""Specialists: the six groups, pre-training that loads every layer but the output, the combined predictor."""
import json
from pathlib import Path

import numpy as np
import pytest

import cli
import evaluate
import input_data
import models
import specialists
import synthetic_faces
import train


def test_groups_cover_every_column_once_with_their_own_flip_pairs():
    columns = [c for group in specialists.SPECIALIST_SETTINGS for c in group["columns"]]
    assert sorted(columns) == sorted(input_data.COLUMNS) and len(columns) == 30
    pairs = {g["name"]: input_data.flip_indices(list(g["columns"])) for g in specialists.SPECIALIST_SETTINGS}
    assert pairs["eye_centers"] == [(0, 2), (1, 3)]
    assert pairs["nose_tip"] == [] and pairs["bottom_lip"] == []
    assert pairs["mouth_corners_top_lip"] == [(0, 2), (1, 3)]
    assert len(pairs["eye_corners"]) == 4 and len(pairs["eyebrows"]) == 4


def test_epochs_scale_with_rows():
    assert specialists.epochs_for(7000, 70_000) == 10
    assert specialists.epochs_for(2000, 70_000) == 35
    assert specialists.epochs_for(10, 70_000) == specialists.MAX_EPOCHS


def test_specialist_run_with_pretraining(tmp_path):
    images, keypoints = synthetic_faces.make_faces(300, seed=3, missing="kaggle")
    data = input_data.write_csv(tmp_path / "faces.csv", images, keypoints)
    general = models.load("v1_single_layer").network(units=20)
    general.save(tmp_path / "general.keras")
    # A learning rate of 0 keeps the weights as they start: what pre-training loaded is visible.
    out = specialists.train_specialists(
        str(data), pretrained=str(tmp_path / "general.keras"), run="test", root=str(tmp_path),
        groups=["eye_centers", "eyebrows"], epochs=1, model_options={"units": 20}, verbose=0,
        learning_rate=0.0, final_learning_rate=0.0, schedule="constant", optimizer="adam")
    manifest = json.loads((out / "specialists.json").read_text())
    assert [s["name"] for s in manifest["specialists"]] == ["eye_centers", "eyebrows"]
    eyes, brows = manifest["specialists"]
    assert eyes["faces"] > 250 and brows["faces"] < 150          # Kaggle-like missingness
    for entry in manifest["specialists"]:
        model = train.load_model(out / entry["path"])
        np.testing.assert_array_equal(model.get_layer("fc1").get_weights()[0],
                                      general.get_layer("fc1").get_weights()[0])
        assert model.output_shape == (None, 8 if entry["name"] == "eyebrows" else 4)
    combined = specialists.load(out)
    X, Y, _ = train.load_arrays(data, all_rows=True)
    predicted = combined.predict(X[:10])
    covered = [input_data.COLUMNS.index(c) for g in manifest["specialists"] for c in g["columns"]]
    assert np.isfinite(predicted[:, covered]).all()
    assert np.isnan(np.delete(predicted, covered, axis=1)).all()  # the groups not trained
    # evaluate.py takes the folder like a model
    overall, _, _ = evaluate.evaluate(combined, X, Y, flip_tta=True)
    assert np.isfinite(overall)
    # Flip TTA un-mirrors each specialist about the axis it was trained with (its model.json).
    import augment
    flipped = evaluate.predict(combined, X[:10], flip_tta=True)
    for (model, columns), entry in zip(combined.parts, manifest["specialists"]):
        info = json.loads(((out / entry["path"]).parent / "model.json").read_text())
        assert model.mirror_axis == info["mirror_axis_px"] != augment.CENTER
        names = [input_data.COLUMNS[c] for c in columns]
        np.testing.assert_allclose(flipped[:, columns], augment.predict_with_flip(
            model, X[:10], cols=names, mirror_axis=info["mirror_axis_px"]), atol=1e-6)


def test_not_a_specialists_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a specialists folder"):
        specialists.load(tmp_path)


@pytest.mark.parametrize("argv, status, message", [
    (["train", "--only", "ears"], 2, "--only: got 'ears'; the groups are eye_centers"),
    (["train", "--epochs", "0"], 2, "argument --epochs"),
    (["train", "--pretrained", "missing.keras"], 1, "--pretrained missing.keras: no such file"),
    (["train", "--model", "v1", "--run", "../elsewhere"], 2, "--run: got '../elsewhere'"),
])
def test_bad_input_is_one_line(capsys, argv, status, message):
    with pytest.raises(SystemExit) as stopped:
        cli.run(specialists.main, argv)
    err = capsys.readouterr().err
    assert stopped.value.code == status and message in err and "Traceback" not in err, err


def run_cli(argv, capsys):
    """(exit status, stderr) of `python specialists.py ARGV`, in the current folder."""
    with pytest.raises(SystemExit) as stopped:
        cli.run(specialists.main, [str(a) for a in argv])
    return stopped.value.code, capsys.readouterr().err


def files_under(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("change, status, message", [
    (["--model", "v99"], 2, "--model"),
    (["--data", "missing.csv"], 1, "missing.csv"),
    (["--data", "junk.csv"], 1, "junk.csv"),
])
def test_a_refused_run_leaves_no_folder(tmp_path, monkeypatch, capsys, change, status, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.csv").write_text("not,a,keypoint,table\n1,2,3,4\n")
    images, keypoints = synthetic_faces.make_faces(8, seed=3)
    input_data.write_csv(tmp_path / "faces.csv", images, keypoints)
    argv = ["train", "--model", "v1", "--data", "faces.csv", "--run", "refused", "--epochs", "1"]
    got, err = run_cli(argv + change, capsys)
    assert got == status and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and message in err, err
    assert not (tmp_path / "models").exists()


def test_a_rerun_needs_overwrite_and_keeps_the_earlier_run(tmp_path, monkeypatch, capsys):
    """The refusal names an option specialists.py has; --overwrite then replaces the run."""
    monkeypatch.chdir(tmp_path)
    images, keypoints = synthetic_faces.make_faces(40, seed=3)
    input_data.write_csv(tmp_path / "faces.csv", images, keypoints)
    argv = ["train", "--model", "v1", "--data", "faces.csv", "--run", "again", "--epochs", "1", "--only", "nose_tip"]
    assert run_cli(argv, capsys)[0] == 0
    out = tmp_path / "models" / "specialists" / "again"
    before = files_under(out)
    got, err = run_cli(argv, capsys)
    assert got == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert f"error: {out.relative_to(tmp_path)} holds an earlier run" in err and "--overwrite" in err, err
    assert files_under(out) == before
    # Replaced as a whole: the earlier run's nose_tip does not stay beside the new bottom_lip.
    assert run_cli(argv[:-1] + ["bottom_lip", "--overwrite"], capsys)[0] == 0
    assert [s["name"] for s in json.loads((out / "specialists.json").read_text())["specialists"]] == ["bottom_lip"]
    assert sorted(p.name for p in out.iterdir()) == ["bottom_lip", "specialists.json"]
