"""Bad input to train.py and tflearn_import.py that used to destroy data, mislabel a run or end
in a traceback (a reviewer's fuzzing). Each case asserts, as tests/test_bad_inputs.py does:
the exit status (2: an option, 1: a file), exactly one `error: ...` line naming the option or
file, no traceback, and every file that was there before unchanged (earlier runs, models,
inputs). One tiny run is trained per module and copied into each case's folder.

    pytest -n 0 tests/test_bad_inputs_train.py
"""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import ROOT

import cli
import input_data
import serializer
import synthetic_faces
import tflearn_import
import train

TRAIN = ["--model", "v1_single_layer", "--epochs", "1", "--batch-size", "16", "--validation", "0.25",
         "--quiet", "--image-every", "100"]


def run(main, argv, capsys):
    """A command line in this process, ended by cli.run: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as stopped:
        cli.run(main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return stopped.value.code, out, err


def run_subprocess(script, argv):
    """For inputs that make TensorFlow allocate (a refusal must not depend on this process)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / script), *map(str, argv)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


def snapshot(folder):
    """Every file under folder: relative path -> its bytes (empty folders do not count)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(result, status, names):
    code, out, err = result
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err, err[-2000:]
    assert code == status, (code, out[-1000:], err[-1000:])
    assert len(errors) == 1, err[-2000:]
    assert str(names) in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces")
    images, keypoints = synthetic_faces.make_faces(48, seed=3)
    return input_data.write_csv(folder / "faces.csv", images, keypoints)


@pytest.fixture(scope="module")
def base(tmp_path_factory, faces):
    """ROOT/runs/base: a finished 1-epoch v1_single_layer run (no model written)."""
    root = tmp_path_factory.mktemp("base")
    train.train(model="v1_single_layer", data=str(faces), epochs=1, batch_size=16, validation=0.25,
                root=str(root), run_id="base", save_model=False, verbose=0, image_every=100)
    return root


@pytest.fixture
def root(tmp_path, base):
    """A copy of the base run's root for one case to break."""
    return shutil.copytree(base, tmp_path / "root")


# ---------------------------------------------------------------------------------------
# 1. --overwrite checks everything before it deletes the earlier run.

def test_overwrite_with_unreadable_data_keeps_the_earlier_run(root, tmp_path, capsys):
    junk = tmp_path / "bin.csv"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    before = snapshot(root)
    refused(run(train.main, [*TRAIN, "--root", root, "--run-id", "base", "--overwrite", "--data", junk], capsys),
            1, junk)
    assert snapshot(root) == before


def test_overwrite_refuses_data_inside_the_run_it_deletes(root, faces, capsys):
    inside = root / "runs" / "base" / "faces.csv"
    shutil.copy(faces, inside)
    before = snapshot(root)
    refused(run(train.main, [*TRAIN, "--root", root, "--run-id", "base", "--overwrite", "--data", inside], capsys),
            2, f"--data {inside}")
    assert snapshot(root) == before


# ---------------------------------------------------------------------------------------
# 2, 6. An unreadable checkpoint is an error naming it, never a restart from epoch 1.

def _only_state(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(train.CHECKPOINT_STATE, json.dumps({"epoch": 1}))


def _state_is_a_list(path):
    with zipfile.ZipFile(path) as source:
        members = {name: source.read(name) for name in source.namelist()}
    members[train.CHECKPOINT_STATE] = b"[1]"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


DAMAGES = {
    "truncated": lambda path: path.write_bytes(path.read_bytes()[:100_000]),
    "state only": _only_state,
    "state a list": _state_is_a_list,
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_resume_from_a_damaged_checkpoint_keeps_the_run(root, capsys, damage):
    checkpoint = root / "runs" / "base" / "last.keras"
    DAMAGES[damage](checkpoint)
    before = snapshot(root)
    refused(run(train.main, ["--root", root, "--run-id", "base", "--resume", "--quiet"], capsys), 1, checkpoint)
    assert snapshot(root) == before


@pytest.mark.parametrize("text", ["[1, 2]", "{}", "{not json"])
def test_resume_with_damaged_settings_names_the_file(root, capsys, text):
    settings = root / "runs" / "base" / "settings.json"
    settings.write_text(text)
    before = snapshot(root)
    refused(run(train.main, ["--root", root, "--run-id", "base", "--resume"], capsys), 1, settings)
    assert snapshot(root) == before


# ---------------------------------------------------------------------------------------
# 3. An explicit --model-dir is never replaced without --overwrite, and checked before work.

def test_model_dir_holding_a_model_needs_overwrite(tmp_path, faces, capsys):
    folder = tmp_path / "md"
    folder.mkdir()
    (folder / "model.keras").write_bytes(b"someone's model")
    before = snapshot(tmp_path)
    refused(run(train.main, [*TRAIN, "--data", faces, "--root", tmp_path, "--model-dir", folder], capsys),
            2, f"--model-dir {folder}")
    assert snapshot(tmp_path) == before


def test_model_dir_that_is_a_file_fails_before_training(tmp_path, faces, capsys):
    blocker = tmp_path / "md"
    blocker.write_text("a file")
    before = snapshot(tmp_path)
    refused(run(train.main, [*TRAIN, "--data", faces, "--root", tmp_path, "--model-dir", blocker], capsys),
            1, f"--model-dir {blocker}")
    assert snapshot(tmp_path) == before and not list(tmp_path.glob("runs/*"))


# ---------------------------------------------------------------------------------------
# 4. --resume continues the run's own network, under its own (normalised) name.

@pytest.mark.parametrize("argv, names", [
    (["--model", "v2_convnet"], "--model v2_convnet"),
    (["--option", "units=5"], "--option"),
    (["--cols", "nose_tip_x,nose_tip_y"], "--cols"),
])
def test_resume_refuses_another_network(root, capsys, argv, names):
    before = snapshot(root)
    refused(run(train.main, ["--root", root, "--run-id", "base", "--resume", *argv], capsys), 2, names)
    assert snapshot(root) == before


def test_resume_takes_the_model_from_the_run_and_normalises_a_short_name(root):
    given = dict(model="v1", root=str(root), run_id="base", resume=True)
    settings = train.validate_settings(train.resolve_settings(**given))
    assert train._resumed_settings(settings, given)["model"] == "v1_single_layer"


def test_resume_without_model_continues_the_runs_own_and_replaces_its_own_model(tmp_path, faces, capsys):
    """A v1 run stopped after epoch 1 with its model in an explicit --model-dir, resumed by its
    run id alone: v1 settings and model.json, its own model replaced without --overwrite."""
    folder = tmp_path / "md"
    code, out, err = run(train.main, [*TRAIN, "--data", faces, "--root", tmp_path, "--run-id", "r",
                                      "--model-dir", folder], capsys)
    assert code == 0 and (folder / "model.keras").exists(), err[-2000:]
    code, out, err = run(train.main, ["--root", tmp_path, "--run-id", "r", "--resume", "--epochs", "2"], capsys)
    assert code == 0, err[-2000:]
    assert "after epoch 1" in out
    assert json.loads((folder / "model.json").read_text())["model"] == "v1_single_layer"
    assert json.loads((folder / "model.json").read_text())["epochs_run"] == 2
    assert json.loads((tmp_path / "runs" / "r" / "settings.json").read_text())["model"] == "v1_single_layer"
    assert not (tmp_path / "models").exists()


# ---------------------------------------------------------------------------------------
# 5. A data.p must hold unit-scale arrays, as serializer.py writes them.

def _data_p(path, pixels_scale=1.0, keypoints_px=False, inf=False):
    images, keypoints = synthetic_faces.make_faces(16, seed=5)
    X = input_data.images_to_unit(images) * pixels_scale
    Y = keypoints.astype(np.float32) if keypoints_px else input_data.keypoints_to_unit(keypoints)
    if inf:
        Y[3, 7] = np.inf
    serializer.save(((X, Y), (X[:2], None)), path, zip_too=False)
    return path


@pytest.mark.parametrize("kind, names", [
    (dict(pixels_scale=255.0, keypoints_px=True), "X[0]"),
    (dict(keypoints_px=True), "Y[0]"),
    (dict(inf=True), "Y[3]"),
])
def test_data_p_out_of_range_is_refused_before_training(tmp_path, capsys, kind, names):
    data = _data_p(tmp_path / "raw.p", **kind)
    before = snapshot(tmp_path)
    error = refused(run(train.main, [*TRAIN, "--data", data, "--root", tmp_path], capsys), 1, data)
    assert names in error
    assert snapshot(tmp_path) == before and not list(tmp_path.glob("runs/*"))


# ---------------------------------------------------------------------------------------
# 6. Settings and files that raised tracebacks.

@pytest.mark.parametrize("argv, status, names", [
    (["--init", "constant"], 2, "--init"),
    (["--model", "v2_convnet", "--init", "identity"], 2, "--init identity"),
    (["--cols", "left_eye_center_x"], 2, "--cols"),
    (["--cols", "left_eye_center_y,left_eye_center_x"], 2, "--cols"),
    # one side only, mirrored: the model would learn right eyes as left ones
    (["--cols", "left_eye_center_x,left_eye_center_y", "--augment", "flip"], 2, "left_eye_center_x, left_eye_center_y"),
])
def test_bad_settings_fail_before_any_work(tmp_path, faces, capsys, argv, status, names):
    refused(run(train.main, [*TRAIN, "--data", faces, "--root", tmp_path, *argv], capsys), status, names)
    assert not list(tmp_path.glob("runs/*")) and not list(tmp_path.glob("models/*"))


def test_one_sided_columns_train_without_the_mirror(tmp_path, faces):
    """...and the same columns are fine when nothing mirrors them."""
    settings = train.validate_settings({**train.resolve_settings_and_sources(
        model="v1_single_layer", cols=["left_eye_center_x", "left_eye_center_y"], augment="rotate")[0]})
    assert settings["cols"] == ["left_eye_center_x", "left_eye_center_y"]


def test_a_network_too_big_for_memory_names_the_option(tmp_path, faces):
    refused(run_subprocess("train.py", [*TRAIN, "--data", faces, "--root", tmp_path,
                                        "--option", "units=1000000000"]), 2, "--option units=1000000000")
    assert not list(tmp_path.glob("runs/*"))


@pytest.mark.parametrize("sources", [b"row,file,who\n0,a.png,alice\n", b"\x00\xff\xfe binary \x00" * 50])
def test_a_bad_sources_file_is_named(tmp_path, faces, capsys, sources):
    data = shutil.copy(faces, tmp_path / "f.csv")
    (tmp_path / "f.sources.csv").write_bytes(sources)
    before = snapshot(tmp_path)
    refused(run(train.main, [*TRAIN, "--data", data, "--root", tmp_path], capsys), 1, tmp_path / "f.sources.csv")
    after = snapshot(tmp_path)
    after.pop("f.csv.cache.p", None)       # the parsed CSV, cached by design (serializer.py)
    assert after == before


# ---------------------------------------------------------------------------------------
# 7. tflearn_import: never over a shipped model or an existing file; memory errors named.

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A TF1 name-based checkpoint shaped like TFLearn's v1 (fc1 50 units, fc2 30)."""
    import tensorflow as tf
    prefix = tmp_path_factory.mktemp("ckpt") / "model.tflearn"
    rng = np.random.default_rng(0)
    shapes = {"fc1/W": (9216, 50), "fc1/b": (50,), "fc2/W": (50, 30), "fc2/b": (30,)}
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=list(shapes), shape_and_slices=[""] * len(shapes),
                      tensors=[tf.constant(rng.normal(0, 0.01, s).astype(np.float32)) for s in shapes.values()])
    return prefix


IMPORT = ["import-tflearn", "--model", "v1"]


def test_import_never_writes_into_a_shipped_folder(tmp_path, checkpoint, capsys):
    shipped = tmp_path / "models" / "v6_resnet_integral"
    shipped.mkdir(parents=True)
    (shipped / "model.keras").write_bytes(b"shipped weights")
    (shipped / "model.json").write_text('{"shipped": true}')
    before = snapshot(tmp_path)
    for out in (shipped / "model.keras", shipped / "other.keras"):
        refused(run(tflearn_import.main, [*IMPORT, checkpoint, "--out", out, "--overwrite"], capsys), 2, out)
    assert snapshot(tmp_path) == before


def test_import_replaces_an_existing_out_only_with_overwrite(tmp_path, checkpoint, capsys):
    out = tmp_path / "m.keras"
    out.write_bytes(b"earlier import")
    refused(run(tflearn_import.main, [*IMPORT, checkpoint, "--out", out], capsys), 2, f"--out {out}")
    assert out.read_bytes() == b"earlier import"
    code, _, err = run(tflearn_import.main, [*IMPORT, checkpoint, "--out", out, "--overwrite"], capsys)
    assert code == 0, err
    assert train.load_model(out).get_layer("fc1").units == 50


def test_import_with_a_network_too_big_for_memory_names_units(tmp_path, checkpoint):
    refused(run_subprocess("tflearn_import.py", [*IMPORT, checkpoint, "--out", tmp_path / "m.keras",
                                                 "--units", "1000000000"]), 2, "--units")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------
# 7. Runs that would learn nothing, saved as if they had: refused before any work.

@pytest.mark.parametrize("rate", ["0", "0.0", "-0"])
def test_a_learning_rate_of_0_is_refused(tmp_path, faces, capsys, rate):
    error = refused(run(train.main, [*TRAIN, "--data", faces, "--root", tmp_path, "--learning-rate", rate], capsys),
                    2, "--learning-rate")
    assert "more than 0" in error
    assert not list(tmp_path.glob("runs/*")) and not list(tmp_path.glob("models/*"))


def test_a_final_learning_rate_of_0_still_trains(tmp_path, faces, capsys):
    """A linear or cosine schedule ending at 0 learns on the way there: allowed."""
    code, out, err = run(train.main, [*TRAIN, "--data", faces, "--root", tmp_path, "--no-save", "--run-id", "zero",
                                      "--schedule", "cosine", "--final-learning-rate", "0"], capsys)
    assert code == 0, err[-2000:]
    assert (tmp_path / "runs" / "zero" / "best.keras").exists()


def test_init_from_a_model_sharing_no_layer_is_refused(tmp_path, faces, capsys):
    import keras
    image = keras.Input((64, 64, 3))
    other = tmp_path / "inputs" / "other.keras"
    other.parent.mkdir()
    keras.Model(image, keras.layers.Dense(30)(keras.layers.Flatten()(image))).save(other)
    before = snapshot(tmp_path)
    error = refused(run(train.main, [*TRAIN, "--data", faces, "--root", tmp_path, "--init-from", other], capsys),
                    1, f"--init-from {other}")
    assert "shares no layer" in error
    assert snapshot(tmp_path) == before
    assert not list(tmp_path.glob("runs/*")) and not list(tmp_path.glob("models/*"))
