"""The training engine: learning happens, the masked loss, schedules, logs, checkpoints, resume."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import input_data
import synthetic_faces
import train
from conftest import ROOT


@pytest.fixture(scope="module")
def faces_csv(tmp_path_factory):
    """1,200 synthetic faces in Kaggle's format, and a people file as convert-68 writes it."""
    folder = tmp_path_factory.mktemp("faces")
    images, keypoints = synthetic_faces.make_faces(1200, seed=1)
    path = input_data.write_csv(folder / "faces.csv", images, keypoints)
    return path


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory):
    """200 synthetic faces: for the tests that need a few steps, not learning."""
    folder = tmp_path_factory.mktemp("tiny")
    images, keypoints = synthetic_faces.make_faces(200, seed=4)
    return input_data.write_csv(folder / "tiny.csv", images, keypoints)


def quick(tmp_path, **overrides):
    settings = dict(root=str(tmp_path), verbose=0, image_every=1, run_id="run")
    settings.update(overrides)
    return train.train(**settings)


def mean_shape_rmse(run, data):
    X, Y, _ = train.load_arrays(data)
    train_idx, val_idx = train.split_validation(len(X), run.settings["validation"], run.settings["seed"])
    return float(train.rmse_px(Y[val_idx], np.tile(Y[train_idx].mean(axis=0), (len(val_idx), 1))))


@pytest.fixture(scope="module")
def learned(tmp_path_factory, faces_csv):
    """One short real run of Nouri's net2, shared by the tests that look at what it wrote."""
    root = tmp_path_factory.mktemp("learned")
    return quick(root, model="v2_convnet", data=str(faces_csv), epochs=5, batch_size=16,
                 optimizer="adam", learning_rate=1e-3, schedule="constant", augment="none")


def test_short_run_learns_far_below_the_mean_shape(learned, faces_csv):
    run = learned
    baseline = mean_shape_rmse(run, faces_csv)
    print(f"validation RMSE {run.val_rmse_px:.2f} px vs mean shape {baseline:.2f} px")
    assert run.val_rmse_px < 0.7 * baseline
    # The returned model holds the best weights, and its RMSE is the one reported.
    X, Y, _ = train.load_arrays(faces_csv)
    _, val_idx = train.split_validation(len(X), 0.1, 0)
    predicted = run.model.predict(X[val_idx], verbose=0)
    assert float(train.rmse_px(Y[val_idx], predicted)) == pytest.approx(run.val_rmse_px, rel=1e-3)
    # What the run leaves behind.
    root = run.run_dir.parents[1]
    assert run.model_path == root / "models" / "v2_convnet" / "model.keras" and run.model_path.exists()
    import keras
    assert not keras.models.load_model(run.model_path).compiled    # no optimizer state shipped
    info = json.loads((root / "models" / "v2_convnet" / "model.json").read_text())
    assert info["val_rmse_px"] == pytest.approx(run.val_rmse_px) and info["best_epoch"] == run.best_epoch
    for name in ("history.csv", "learning_curve.png", "samples.png", "best.keras", "last.keras", "state.json"):
        assert (run.run_dir / name).exists(), name
    assert list(run.history["epoch"]) == [0, 1, 2, 3, 4]


def test_masked_mse_ignores_missing_values_exactly():
    import tensorflow as tf
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=(8, 30)).astype(np.float32)
    y_true[rng.random((8, 30)) < 0.6] = np.nan
    y_pred = tf.Variable(rng.normal(size=(8, 30)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(train.masked_mse(tf.constant(y_true), y_pred))   # as Keras reduces it
    gradient = tape.gradient(loss, y_pred).numpy()
    present = ~np.isnan(y_true)
    expected = np.mean((y_pred.numpy()[present] - y_true[present]) ** 2)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert np.isfinite(gradient).all()
    assert (gradient[~present] == 0).all() and (gradient[present] != 0).all()
    # A batch with nothing present: zero loss, not NaN.
    assert (train.masked_mse(tf.constant(np.full((2, 30), np.nan, np.float32)), y_pred[:2]).numpy() == 0).all()


@pytest.mark.parametrize("name", ["l1", "wing"])
def test_l1_and_wing_losses_are_masked_and_match_their_formulas(name):
    import tensorflow as tf
    rng = np.random.default_rng(1)
    y_true = rng.normal(scale=0.1, size=(6, 30)).astype(np.float32)
    y_true[rng.random((6, 30)) < 0.5] = np.nan
    y_pred = tf.Variable(rng.normal(scale=0.1, size=(6, 30)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(train.LOSSES[name](tf.constant(y_true), y_pred))
    gradient = tape.gradient(loss, y_pred).numpy()
    present = ~np.isnan(y_true)
    error = np.abs(y_pred.numpy()[present] - y_true[present]) * 48.0   # pixels
    if name == "l1":
        expected = error.mean()
    else:
        w, eps = train.WING_WIDTH, train.WING_CURVATURE
        wing = np.where(error < w, w * np.log1p(error / eps), error - (w - w * np.log1p(w / eps)))
        expected = wing.mean()
        assert (error < w).any() and (error >= w).any()      # both branches are exercised
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert np.isfinite(gradient).all() and (gradient[~present] == 0).all()


def test_unknown_loss_is_refused(tmp_path, faces_csv):
    with pytest.raises(ValueError, match="--loss: got 'huber'; must be one of mse, l1, wing"):
        quick(tmp_path, model="v1_single_layer", data=str(faces_csv), epochs=1, loss="huber")


def test_validation_zero_trains_on_every_face_for_all_epochs(tmp_path, faces_csv):
    run = quick(tmp_path, model="v1_single_layer", data=str(faces_csv), epochs=2, validation=0,
                optimizer="adam", learning_rate=1e-3, schedule="constant", loss="l1")
    assert run.n_train == 1200 and run.n_val == 0 and run.epochs_run == 2
    assert run.val_rmse_px is None and run.best_epoch == 2 and np.isfinite(run.train_rmse_px)
    assert run.history.filter(like="val_").isna().all().all()   # CSVLogger's empty columns
    info = json.loads((run.model_path.parent / "model.json").read_text())
    assert info["validation_faces"] == 0 and info["val_rmse_px"] is None
    assert (run.run_dir / "learning_curve.png").exists() and (run.run_dir / "samples.png").exists()


def test_a_warm_weight_average_ends_the_run_when_it_scores_no_worse(tmp_path, tiny_csv, capsys):
    # ema 0.9 is warm after 3 / (1 - 0.9) = 30 steps: 4 epochs of 180 faces by 16 is 48.
    run = quick(tmp_path, model="v1_single_layer", data=str(tiny_csv), epochs=4, batch_size=16, optimizer="adam",
                learning_rate=1e-3, schedule="constant", ema=0.9, verbose=2)
    out = capsys.readouterr().out
    assert run.steps == 48
    # average.keras holds what Keras averaged; it is scored once, on the validation faces.
    average = train.load_model(run.run_dir / "average.keras")
    optimizer = run.model.optimizer
    pairs = list(zip(optimizer._trainable_variables, optimizer._model_variables_moving_average))
    assert len(pairs) == len(run.model.trainable_weights) > 0
    for (_, moving), weight in zip(pairs, average.trainable_weights):
        np.testing.assert_allclose(moving.numpy(), weight.numpy(), rtol=1e-6, atol=1e-7)
    average_score = float(train.rmse_px(run.Y_val, average.predict(run.X_val, verbose=0)))
    best = float(run.history["val_rmse_px"].min())
    if average_score <= best:       # the run ends on the average, and reports its score
        assert run.ended_on == "weight average over 4 epochs (ema 0.9, 48 steps)" and run.best_epoch == 4
        assert run.val_rmse_px == pytest.approx(average_score, rel=1e-5)
        expected = average
    else:                           # the better of the two, and why
        assert run.ended_on == f"best epoch {int(run.history['val_rmse_px'].idxmin()) + 1} of 4"
        assert f"scores {average_score:.3f} px, the best epoch" in out and "ends on the better" in out
        assert run.val_rmse_px == pytest.approx(best, rel=1e-4)
        expected = train.load_model(run.run_dir / "best.keras")
    np.testing.assert_allclose(run.model.predict(run.X_val[:4], verbose=0),
                               expected.predict(run.X_val[:4], verbose=0), atol=1e-5)
    saved = train.load_model(run.model_path)
    np.testing.assert_allclose(saved.predict(run.X_val[:4], verbose=0),
                               run.model.predict(run.X_val[:4], verbose=0), atol=1e-5)
    info = json.loads((run.model_path.parent / "model.json").read_text())
    assert info["ended_on"] == run.ended_on
    with pytest.raises(ValueError, match="ema is a momentum"):
        quick(tmp_path, model="v1_single_layer", data=str(tiny_csv), epochs=1, ema=1.5, run_id="bad")


def test_a_cold_weight_average_gives_way_to_the_best_epoch_and_says_so(tmp_path, tiny_csv, capsys):
    """The notebook's old ending: 2 epochs with ema 0.998 ended on the average of barely
    trained weights (17.5 px where epoch 2 scored 11.3) and called it the best epoch."""
    run = quick(tmp_path, model="v1_single_layer", data=str(tiny_csv), epochs=2, batch_size=32, optimizer="adam",
                learning_rate=1e-3, schedule="constant", ema=0.998, verbose=2)
    out = capsys.readouterr().out
    assert "is not warm after 12 steps (it needs 1500" in out
    val = run.history["val_rmse_px"].to_numpy()
    assert run.ended_on == f"best epoch {int(np.argmin(val)) + 1} of 2"
    assert run.val_rmse_px == pytest.approx(val.min(), rel=1e-4)
    predicted = run.model.predict(run.X_val, verbose=0)
    assert float(train.rmse_px(run.Y_val, predicted)) == pytest.approx(val.min(), rel=1e-3)
    assert not (run.run_dir / "average.keras").exists()
    assert json.loads((run.run_dir / "state.json").read_text())["final_model"] == "best.keras"


def test_masked_training_on_incomplete_rows(tmp_path, faces_csv):
    images, keypoints = synthetic_faces.make_faces(300, seed=2, missing="kaggle")
    data = input_data.write_csv(tmp_path / "missing.csv", images, keypoints)
    run = quick(tmp_path, model="v1_single_layer", data=str(data), all_rows=True, epochs=2,
                optimizer="adam", learning_rate=1e-3, schedule="constant", augment="all")
    assert run.n_train + run.n_val == 300
    assert np.isfinite(run.history["loss"]).all() and np.isfinite(run.val_rmse_px)


def test_time_limit_stops_after_the_epoch_that_reaches_it(tmp_path, faces_csv):
    run = quick(tmp_path, model="v1_single_layer", data=str(faces_csv), epochs=5, time_limit=1e-6)
    assert run.epochs_run == 1 and run.best_epoch == 1


def test_schedules():
    steps = 10
    settings = train.resolve_settings(model="v2_convnet", epochs=5)
    settings.update(optimizer="nesterov", learning_rate=0.03, final_learning_rate=0.0001,
                    momentum=0.9, final_momentum=0.999, schedule="linear")
    sgd = train.make_optimizer(settings, steps)
    assert train.current_hyperparameters(sgd) == pytest.approx((0.03, 0.9))
    sgd.iterations.assign(25)
    assert train.current_hyperparameters(sgd) == pytest.approx((0.03 + (0.0001 - 0.03) / 2, 0.9495))
    sgd.iterations.assign(50)
    assert train.current_hyperparameters(sgd) == pytest.approx((0.0001, 0.999))
    settings.update(schedule="exponential", lr_decay=0.5, decay_step=10, optimizer="adam")
    adam = train.make_optimizer(settings, steps)
    adam.iterations.assign(20)
    assert train.current_hyperparameters(adam) == pytest.approx((0.03 * 0.25, None))
    settings.update(schedule="cosine")
    cosine = train.make_optimizer(settings, steps)
    cosine.iterations.assign(25)
    assert train.current_hyperparameters(cosine)[0] == pytest.approx((0.03 + 0.0001) / 2, rel=1e-3)
    onecycle = train.make_optimizer({**settings, "schedule": "onecycle"}, steps)     # 50 steps, 5 warming up
    for step, rate in ((0, 0.003), (4, 0.03 * (0.1 + 0.9 * 0.8)), (5, 0.03), (50, 0.0001)):
        onecycle.iterations.assign(step)
        assert train.current_hyperparameters(onecycle)[0] == pytest.approx(rate, rel=1e-3), step
    with pytest.raises(ValueError, match="schedule must be one of"):
        train.make_optimizer({**settings, "schedule": "zigzag"}, steps)
    with pytest.raises(TypeError, match="unknown setting"):
        train.resolve_settings(learnig_rate=0.1)


def test_tensorboard_logs_carry_the_expected_tags(learned):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run = learned
    tags = {}
    for folder in ("train", "validation", "images"):
        events = EventAccumulator(str(run.log_dir / folder), size_guidance={"tensors": 0})
        events.Reload()
        tags[folder] = set(events.Tags()["tensors"]) | ({"graph"} if events.Tags()["graph"] else set())
    # "graph": the op graph; "keras": the conceptual graph that Keras writes.
    assert {"epoch_loss", "epoch_rmse_px", "epoch_learning_rate", "graph", "keras"} <= tags["train"]
    assert any(tag.endswith("/histogram") for tag in tags["train"]), tags["train"]
    assert {"epoch_loss", "epoch_rmse_px"} <= tags["validation"]
    assert "validation_faces" in tags["images"]
    assert {"loss", "val_loss", "rmse_px", "val_rmse_px", "learning_rate"} <= set(run.history.columns)


def test_split_by_person(tmp_path, faces_csv):
    people = np.array([f"person_{i // 10}" for i in range(1200)])
    X = np.zeros(1200)
    train_idx, val_idx = train.split_validation(len(X), 0.2, seed=0, people=people)
    assert not set(people[train_idx]) & set(people[val_idx])
    assert 0.2 <= len(val_idx) / 1200 < 0.22
    # The engine finds OUT.sources.csv next to OUT.csv, as convert-68 writes it.
    sources = faces_csv.with_suffix(".sources.csv")
    sources.write_text("row,file,person\n" + "".join(f"{i},f{i}.jpg,{p}\n" for i, p in enumerate(people)))
    try:
        _, _, found = train.load_arrays(faces_csv)
        np.testing.assert_array_equal(found, people)
    finally:
        sources.unlink()


def test_resume_continues_epochs_and_schedules(tmp_path, faces_csv):
    first = quick(tmp_path, model="v1_single_layer", data=str(faces_csv), epochs=2, optimizer="nesterov",
                  schedule="linear", learning_rate=0.01, final_learning_rate=0.0001,
                  momentum=0.9, final_momentum=0.999)
    steps = int(first.model.optimizer.iterations) // 2
    resumed = quick(tmp_path, model="v1_single_layer", epochs=3, resume=True)
    assert resumed.epochs_run == 3 and list(resumed.history["epoch"]) == [0, 1, 2]
    assert resumed.settings["data"] == str(faces_csv)          # kept from the first run
    last = train.keras.models.load_model(resumed.run_dir / "last.keras")
    assert int(last.optimizer.iterations) == 3 * steps         # the step count went on
    lr, momentum = resumed.history["learning_rate"], resumed.history["momentum"]
    # The schedules continue rather than restart: the 2-epoch schedule has ended, so the
    # third epoch stays at its final values instead of jumping back to 0.03 / 0.9.
    assert lr[0] > lr[1] == pytest.approx(0.0001) and lr[2] == pytest.approx(0.0001)
    assert momentum[0] < momentum[1] == pytest.approx(0.999) and momentum[2] == pytest.approx(0.999)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(resumed.log_dir / "train"))
    events.Reload()
    assert {"epoch_momentum", "epoch_learning_rate"} <= set(events.Tags()["tensors"])


def test_early_stopping_restores_the_best_epoch(tmp_path, faces_csv):
    # A learning rate that grows 100x per epoch: an early epoch is the best, then it blows up.
    run = quick(tmp_path, model="v1_single_layer", data=str(faces_csv), epochs=8, patience=2,
                optimizer="adam", learning_rate=1e-4, schedule="exponential", lr_decay=100.0,
                decay_step=34, batch_size=32, augment="none")
    val = run.history["val_rmse_px"].to_numpy()
    assert run.epochs_run == run.best_epoch + 2 < 8             # stopped after patience epochs
    assert run.val_rmse_px == pytest.approx(np.nanmin(val), rel=1e-4)
    X, Y, _ = train.load_arrays(faces_csv)
    _, val_idx = train.split_validation(len(X), 0.1, 0)
    restored = float(train.rmse_px(Y[val_idx], run.model.predict(X[val_idx], verbose=0)))
    assert restored == pytest.approx(run.val_rmse_px, rel=1e-3)


def test_ctrl_c_saves_and_exits_cleanly_then_resume(tmp_path, faces_csv):
    command = [sys.executable, str(ROOT / "train.py"), "--model", "v1_single_layer", "--data", str(faces_csv),
               "--epochs", "300", "--root", str(tmp_path), "--run-id", "interrupted", "--batch-size", "32",
               "--optimizer", "nesterov", "--schedule", "linear", "--learning-rate", "0.01"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = tmp_path / "runs" / "interrupted"
    deadline = time.time() + 180
    while not (run_dir / "state.json").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)                        # Ctrl-C, mid-run
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    done = json.loads((run_dir / "state.json").read_text())["epoch"]
    assert 1 <= done < 300 and f"interrupted after epoch {done}" in output and "--resume" in output, output
    assert (tmp_path / "models" / "v1_single_layer" / "model.keras").exists()
    assert not list(run_dir.glob("*.tmp*"))
    stopped_at = int(train.keras.models.load_model(run_dir / "last.keras").optimizer.iterations)

    resumed = quick(tmp_path, model="v1_single_layer", run_id="interrupted", resume=True,
                    epochs=done + 2, image_every=50)
    assert resumed.epochs_run == done + 2 and list(resumed.history["epoch"]) == list(range(done + 2))
    last = train.keras.models.load_model(run_dir / "last.keras")
    assert int(last.optimizer.iterations) == stopped_at + 2 * 34   # 1,080 faces / 32 per step
    assert (np.diff(resumed.history["learning_rate"]) < 0).all()  # the 300-epoch schedule goes on


def test_cli_dry_run():
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "--model", "v1_single_layer", "--dry-run"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dry run ok: 1 epoch" in result.stdout


def test_the_command_without_data_trains_on_synthetic_faces_it_writes(tmp_path, monkeypatch, capsys):
    """A fresh clone has no Kaggle files: `python train.py --model v2_convnet` (the README's
    step) writes synthetic faces into ROOT/data/synthetic/ and trains on them."""
    write = synthetic_faces.write_kaggle_files                  # fewer faces: the path is the point
    monkeypatch.setattr(synthetic_faces, "write_kaggle_files", lambda folder: write(folder, 300, 20))
    train.main(["--model", "v1_single_layer", "--epochs", "1", "--root", str(tmp_path), "--quiet",
                "--run-id", "fresh"])
    out = capsys.readouterr().out
    assert "writing synthetic faces" in out and "validation RMSE" in out
    assert (tmp_path / "data" / "synthetic" / "training.csv").is_file()
    split = json.loads((tmp_path / "runs" / "fresh" / "split.json").read_text())
    assert split["path"] == str((tmp_path / "data" / "synthetic" / "training.csv").resolve())


def test_subset_of_columns_with_pretraining(tmp_path, faces_csv):
    """A specialist: 4 outputs, every layer but `out` starting from a general model's weights."""
    import models
    general = models.load("v1_single_layer").network()
    general.save(tmp_path / "general.keras")
    cols = ["left_eye_center_x", "left_eye_center_y", "right_eye_center_x", "right_eye_center_y"]
    run = quick(tmp_path, model="v1_single_layer", data=str(faces_csv), cols=cols, epochs=1,
                init_from=str(tmp_path / "general.keras"), model_dir=str(tmp_path / "eyes"),
                learning_rate=0.0, final_learning_rate=0.0, schedule="constant", augment="flip")
    assert run.model.output_shape == (None, 4) and run.Y_val.shape[1] == 4
    # With a learning rate of 0, the trained weights are the pre-trained ones, but for `out`.
    np.testing.assert_array_equal(run.model.get_layer("fc1").get_weights()[0], general.get_layer("fc1").get_weights()[0])
    assert run.model.get_layer("out").get_weights()[0].shape == (100, 4)
    assert (tmp_path / "eyes" / "model.keras").exists()


def test_an_earlier_run_is_never_overwritten_by_accident(tmp_path, faces_csv):
    first = quick(tmp_path, model="v1_single_layer", data=str(faces_csv), epochs=1)
    with pytest.raises(FileExistsError, match="--resume.*--overwrite"):
        quick(tmp_path, model="v1_single_layer", data=str(faces_csv), epochs=1)
    assert (first.run_dir / "best.keras").exists()
    again = quick(tmp_path, model="v1_single_layer", data=str(faces_csv), epochs=1, overwrite=True)
    assert again.epochs_run == 1 and list(again.history["epoch"]) == [0]


def test_bfloat16_precision_keeps_coordinates_float32_and_reloads(tmp_path, faces_csv):
    run = quick(tmp_path, model="v1_single_layer", data=str(faces_csv), epochs=1, mirror_axis=49.0,
                precision="bfloat16", optimizer="adam", learning_rate=1e-3, schedule="constant")
    model = run.model
    assert model.get_layer("fc1").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("out").dtype_policy.name == "float32"
    X = np.zeros((2, 96, 96, 1), np.float32)
    assert model(X).dtype == "float32" and np.isfinite(run.val_rmse_px)
    # model.keras is float32 (what predict.py, export.py and ONNX Runtime read: its CPU
    # convolutions take no bfloat16); the run's checkpoints keep bfloat16 for --resume.
    saved = train.load_model(run.model_path)
    assert {layer.dtype_policy.name for layer in saved.layers} == {"float32"}
    np.testing.assert_allclose(saved.predict(X, verbose=0), model.predict(X, verbose=0), atol=0.01)
    checkpoint = run.run_dir / "best.keras"
    assert train.load_model(checkpoint).get_layer("fc1").dtype_policy.name == "mixed_bfloat16"
    import export
    path, parity = export.export_predictor(checkpoint, tmp_path / "exported.onnx")
    import onnx
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert float(metadata["mirror_axis_px"]) == run.mirror_axis == 49.0          # kept for flip TTA
    with pytest.raises(ValueError, match="precision must be one of auto, float32, bfloat16, float16"):
        train.build_network(train.resolve_settings(model="v1", precision="float8"))


def test_v6_bfloat16_keeps_its_integral_head_float32():
    model = train.build_network(train.resolve_settings(model="v6", precision="bfloat16"))
    import models
    for layer in model.layers:
        expected = "float32" if layer.name in models.load("v6").FLOAT32_LAYERS else "mixed_bfloat16"
        if layer.name != "image":
            assert layer.dtype_policy.name == expected, layer.name


def test_mirror_axis_is_measured_saved_and_reloaded(tmp_path, faces_csv):
    """auto: the training labels' midline, used by the flip augmentation, written to
    model.json and state.json, and read back by load_model for flip TTA."""
    import augment
    run = quick(tmp_path, model="v1_single_layer", data=str(faces_csv), epochs=1, augment="flip")
    X, Y, _ = train.load_arrays(faces_csv)
    train_idx, _ = train.split_validation(len(X), 0.1, 0)
    assert run.mirror_axis == pytest.approx(augment.mirror_axis(Y[train_idx]), abs=1e-3)
    assert run.model.mirror_axis == run.mirror_axis
    info = json.loads((run.model_path.parent / "model.json").read_text())
    assert info["mirror_axis_px"] == run.mirror_axis and info["settings"]["mirror_axis"] == "auto"
    assert train.load_model(run.model_path).mirror_axis == run.mirror_axis
    assert train.load_model(run.run_dir / "last.keras").mirror_axis == run.mirror_axis   # state.json
    import inference
    assert inference.fast_model(run.model_path).mirror_axis == run.mirror_axis
    # A number is taken as it is; nonsense is refused before anything trains.
    fixed = quick(tmp_path, model="v1_single_layer", data=str(faces_csv), epochs=1, mirror_axis=47.5,
                  run_id="fixed", save_model=False)
    assert fixed.mirror_axis == 47.5
    for bad in ("left", 95):
        with pytest.raises(ValueError, match="mirror_axis"):
            quick(tmp_path, model="v1_single_layer", data=str(faces_csv), epochs=1, mirror_axis=bad,
                  run_id="bad", overwrite=True)
    # A model file with no model.json or state.json beside it: the image's own axis.
    import shutil
    shutil.copy(run.model_path, tmp_path / "bare.keras")
    assert train.load_model(tmp_path / "bare.keras").mirror_axis == augment.CENTER


# ---------------------------------------------------------------------------------------
# Issue 14: the shipped model is never replaced by accident; budgets fit the schedule;
# every figure can be checked; the help says what a model trains with.

def repo_copy(destination, with_git=True):
    """A copy of the repository's files (as they are in the working tree, not data, runs or
    environments), committed into a fresh git repository when with_git."""
    import shutil
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    if with_git:
        git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
        subprocess.run(git + ["init", "-q"], cwd=destination, check=True)
        subprocess.run(git + ["add", "-A"], cwd=destination, check=True)
        subprocess.run(git + ["commit", "-q", "-m", "copy"], cwd=destination, check=True)
    return destination


def shipped_bytes(root):
    import models
    return {p: p.read_bytes() for v in models.SHIPPED for p in sorted((root / "models" / v).iterdir())}


def test_shipped_models_are_never_replaced_by_a_run(tmp_path, tiny_csv, capsys):
    """Every shipped version, one step, from a copy of the repository root: through the
    command line and through train.train(), with and without .git; then the explicit way."""
    import models
    copy = repo_copy(tmp_path / "repo")
    before = shipped_bytes(copy)
    assert before, "nothing ships?"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    step = ["--data", str(tiny_csv), "--epochs", "1", "--batch-size", "256", "--validation", "0", "--quiet"]
    for version in models.SHIPPED:
        result = subprocess.run([sys.executable, "train.py", "--model", version, "--run-id", f"cli-{version}", *step],
                                cwd=copy, capture_output=True, text=True, timeout=600, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "holds the shipped model (git tracks" in result.stdout
        assert f"model: runs/cli-{version}/model.keras" in result.stdout
        assert (copy / "runs" / f"cli-{version}" / "model.keras").exists()
        # Naming the folder is not enough: it needs --overwrite too, and says so before any work.
        code, _, err = run_cli(["--model", version, "--model-dir", str(copy / "models" / version),
                                "--root", str(copy), "--run-id", f"named-{version}", *step], capsys)
        assert code == 2 and "pass --overwrite" in err, err
        assert not (copy / "runs" / f"named-{version}").exists()
    assert shipped_bytes(copy) == before
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=copy,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", status
    # Through train.train(), and without .git (a downloaded zip): models.SHIPPED still protects them.
    import shutil
    shutil.rmtree(copy / ".git")
    for version in models.SHIPPED:
        run = train.train(model=version, data=str(tiny_csv), epochs=1, batch_size=256, validation=0,
                          root=str(copy), run_id=f"api-{version}", verbose=0)
        assert run.model_path == copy / "runs" / f"api-{version}" / "model.keras"
    assert shipped_bytes(copy) == before


def test_explicit_model_dir_with_overwrite_replaces_a_shipped_model_and_marks_it(tmp_path, tiny_csv):
    folder = tmp_path / "models" / "v1_single_layer"
    folder.mkdir(parents=True)
    (folder / "model.json").write_text('{"shipped": true}')
    (folder / "model.keras").write_bytes(b"shipped weights")
    run = quick(tmp_path, model="v1_single_layer", data=str(tiny_csv), epochs=1)
    assert run.model_path == run.run_dir / "model.keras"
    assert (folder / "model.keras").read_bytes() == b"shipped weights"
    with pytest.raises(train.cli.UsageError, match="pass --overwrite"):
        quick(tmp_path, model="v1_single_layer", data=str(tiny_csv), epochs=1, model_dir=str(folder), run_id="b")
    run = quick(tmp_path, model="v1_single_layer", data=str(tiny_csv), epochs=1, model_dir=str(folder),
                run_id="c", overwrite=True)
    assert run.model_path == folder / "model.keras"
    assert json.loads((folder / "model.json").read_text())["shipped"] is True    # still protected
    # The student's own version: models/<version>/ as the course card has it.
    mine = quick(tmp_path / "other", model="v1_single_layer", data=str(tiny_csv), epochs=1, run_id="d")
    assert mine.model_path == tmp_path / "other" / "models" / "v1_single_layer" / "model.keras"


def test_time_limit_fits_the_schedule_to_the_budget(tmp_path, tiny_csv, capsys):
    # 12 s: the first epoch (tracing, the graph for TensorBoard) takes up to ~6 s on a busy
    # 2-core machine, the next ones ~0.3 s.
    run = quick(tmp_path, model="v1_single_layer", data=str(tiny_csv), time_limit=12, batch_size=32,
                optimizer="nesterov", schedule="cosine", learning_rate=0.01, final_learning_rate=0.0001,
                momentum=0.9, final_momentum=0.99, verbose=2, image_every=1000)
    out = capsys.readouterr().out
    print(out)
    assert run.settings["epochs"] is None and "fitted to --time-limit" in out
    assert run.planned_epochs >= 3 and run.epochs_run == run.planned_epochs
    lr, momentum = run.history["learning_rate"].iloc[-1], run.history["momentum"].iloc[-1]
    assert lr == pytest.approx(0.0001, rel=0.1) and momentum == pytest.approx(0.99, rel=0.01)
    # (a plan line is printed when the plan moves by 2 epochs or 10%; the progress lines follow every move)
    assert "the cosine schedule now ends at epoch" in out and f"Epoch {run.planned_epochs}/{run.planned_epochs}" in out
    assert f"{run.planned_epochs} epochs; learning rate 0.0001 (the schedule has ended)" in out


def test_evaluate_run_reproduces_the_printed_validation_rmse(tmp_path, tiny_csv, capsys):
    import evaluate
    run = quick(tmp_path, model="v1_single_layer", data=str(tiny_csv), epochs=3, optimizer="adam",
                learning_rate=1e-3, schedule="constant", run_id="checked")
    capsys.readouterr()
    evaluate.main(["--run", "checked", "--root", str(tmp_path)])
    lines = capsys.readouterr().out.strip().split("\n")
    assert lines[0].startswith(f"run checked: {run.n_val} validation faces")
    assert float(lines[-1].split()[1]) == pytest.approx(run.val_rmse_px, abs=0.01)
    # Scoring the model on the file it trained on: a warning, with how many faces it had seen.
    evaluate.main(["--model", str(run.model_path), "--data", str(tiny_csv)])
    err = capsys.readouterr().err
    assert f"{run.n_train} of the 200 faces in {tiny_csv} are faces" in err and "not a held-out" in err
    # Other faces: no warning.
    images, keypoints = synthetic_faces.make_faces(20, seed=99)
    other = input_data.write_csv(tmp_path / "other.csv", images, keypoints)
    evaluate.main(["--model", str(run.model_path), "--data", str(other)])
    assert "warning" not in capsys.readouterr().err


def test_every_option_has_help_and_the_models_values(capsys):
    parser = train.build_parser(["--model", "v2"])
    for action in parser._actions:
        assert action.help and "\n" not in action.help, action.option_strings
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "[adam: model SETTINGS]" in text and "[0.001: model SETTINGS]" in text
    assert "[mse: engine default]" in text
    six = " ".join(train.build_parser(["--model", "v6_resnet_integral"]).format_help().split())
    assert "[adamw: model SETTINGS]" in six and "[wing: model SETTINGS]" in six


# ---------------------------------------------------------------------------------------
# Issue 15: bad settings fail before any work with one line naming the option; NaN never
# saved; run folders owned, locked and resumable after a kill at any instant.

BAD_SETTINGS = [
    (["--batch-size", "0"], "--batch-size: got 0"),
    (["--epochs", "0"], "--epochs: got 0"),
    (["--epochs", "2.5"], "--epochs: got 2.5; must be an integer"),
    (["--patience", "-1"], "--patience: got -1"),
    (["--optimizer", "rmsprop"], "--optimizer: got 'rmsprop'; must be one of sgd, nesterov, adam, adamw"),
    (["--loss", "huber"], "--loss: got 'huber'"),
    (["--augment", "flip,spin"], "--augment: got 'flip,spin'"),
    (["--precision", "float8"], "--precision: got 'float8'; must be one of auto, float32, bfloat16, float16"),
    (["--schedule", "zigzag"], "--schedule: got 'zigzag'"),
    (["--model", "v99"], "--model: no model 'v99'"),
    (["--model", "v1", "--option", "units=-5"], "--option units=-5: v1_single_layer.network(): units must be"),
    (["--model", "v1", "--option", "colour=3"], "--option colour=3: v1_single_layer.network() got unknown"),
    (["--option", "units"], "--option: got 'units'; must be KEY=VALUE"),
    (["--learning-rate", "nan"], "--learning-rate: got nan"),
    (["--learning-rate", "-0.1"], "--learning-rate: got -0.1"),
    (["--learning-rate", "abc"], "--learning-rate: got 'abc'; must be a number"),
    (["--validation", "-0.2"], "--validation: got -0.2"),
    (["--validation", "1"], "--validation: got 1"),
    (["--ema", "1.5"], "--ema: got 1.5"),
    (["--time-limit", "0"], "--time-limit: got 0"),
    (["--time-limit", "inf"], "--time-limit: got inf"),
    (["--final-momentum", "2"], "--final-momentum: got 2"),
    (["--mirror-axis", "left"], "--mirror-axis: mirror_axis must be 'auto' or a pixel x"),
    (["--init", "bogus"], "--init: got 'bogus'"),
    (["--cols", "nose_x"], "--cols: unknown nose_x"),
    (["--seed", "-3"], "--seed: got -3"),
    (["--strategy", "magic"], "--strategy: got 'magic'"),
    (["--run-id", ".."], "--run-id: got '..'; a run id is a plain folder name"),
    (["--run-id", "."], "--run-id: got '.'"),
    (["--run-id", "/tmp/elsewhere"], "--run-id: got '/tmp/elsewhere'"),
    (["--run-id", "a/../b"], "--run-id: got 'a/../b'"),
    (["--resume"], "--resume needs --run-id"),
    (["--resume", "--run-id", "../x"], "--run-id: got '../x'"),
]


def run_cli(argv, capsys):
    """train.py's command line in this process, as cli.run ends it: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as stopped:
        train.cli.run(train.main, argv)
    out, err = capsys.readouterr()
    return stopped.value.code, out, err


@pytest.mark.parametrize("argv, message", BAD_SETTINGS, ids=[" ".join(a) for a, _ in BAD_SETTINGS])
def test_bad_settings_are_refused_before_any_work(tmp_path, tiny_csv, capsys, argv, message):
    code, out, err = run_cli(["--data", str(tiny_csv), "--root", str(tmp_path), *argv], capsys)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err
    assert not list(tmp_path.glob("runs/*/*")) and not list(tmp_path.glob("models/*"))


def test_bad_files_are_one_line_errors(tmp_path, tiny_csv, capsys):
    import pickle
    evil = tmp_path / "evil.p"
    evil.write_bytes(pickle.dumps(os.system))     # a pickle that would call a function
    code, _, err = run_cli(["--data", str(evil), "--root", str(tmp_path), "--model", "v1"], capsys)
    assert code == 1 and err.startswith(f"error: --data {evil}: cannot be read") and "Traceback" not in err, err
    import serializer
    serializer.save(((np.zeros((3, 5)), None), (None, None)), tmp_path / "odd.p", zip_too=False)
    code, _, err = run_cli(["--data", str(tmp_path / "odd.p"), "--root", str(tmp_path), "--model", "v1"], capsys)
    assert code == 1 and "odd.p: not a data.p holding ((X, Y), (X_test, _))" in err, err
    code, _, err = run_cli(["--data", str(tmp_path / "missing.csv"), "--root", str(tmp_path)], capsys)
    assert code == 1 and "missing.csv: no such file" in err, err
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(["--data", str(tiny_csv), "--root", str(blocker / "sub"), "--model", "v1"], capsys)
    assert code == 1 and "is not writable" in err and err.count("\n") == 1, err
    code, _, err = run_cli(["--data", str(tiny_csv), "--root", str(tmp_path), "--model", "v1",
                            "--init-from", str(tiny_csv)], capsys)
    assert code == 1 and "--init-from" in err and "not a Keras model file" in err, err


def test_nan_loss_stops_the_run_and_nothing_non_finite_is_written(tmp_path, tiny_csv, capsys):
    with pytest.raises(train.TrainingDiverged, match="training diverged: the loss became"):
        quick(tmp_path, model="v1_single_layer", data=str(tiny_csv), epochs=5, batch_size=16,
              optimizer="sgd", learning_rate=10.0, schedule="constant", final_momentum=None, augment="none")
    run_dir = tmp_path / "runs" / "run"
    for path in run_dir.glob("*.keras"):
        model = train.keras.models.load_model(path, compile=False)
        assert train.weights_are_finite(model), path
    assert not (tmp_path / "models").exists()
    state = json.loads((run_dir / "state.json").read_text()) if (run_dir / "state.json").exists() else {}
    assert state.get("epoch", 0) < 5
    code, _, err = run_cli(["--model", "v1", "--data", str(tiny_csv), "--root", str(tmp_path), "--run-id", "cli",
                            "--optimizer", "sgd", "--learning-rate", "10", "--schedule", "constant",
                            "--final-momentum", "none", "--augment", "none", "--batch-size", "16"], capsys)
    assert code == 1 and "error: training diverged" in err and err.count("\n") == 1, err


def test_a_run_folder_is_locked_while_training_and_a_stale_lock_is_reported(tmp_path, tiny_csv, capsys):
    run_dir = tmp_path / "runs" / "busy"
    with train.RunLock(run_dir):
        with pytest.raises(train.cli.UsageError, match="is being trained by pid"):
            quick(tmp_path, model="v1_single_layer", data=str(tiny_csv), epochs=1, run_id="busy")
    # A lock file left by a process that died (its flock went with it).
    (tmp_path / "runs" / "busy.lock").write_text("pid 999999 on elsewhere")
    run = quick(tmp_path, model="v1_single_layer", data=str(tiny_csv), epochs=1, run_id="busy", overwrite=True)
    assert "was left by pid 999999 on elsewhere, which is no longer running" in capsys.readouterr().out
    assert run.epochs_run == 1 and not (tmp_path / "runs" / "busy.lock").exists()


def test_resume_after_a_kill_at_any_instant_continues_exactly(tmp_path, tiny_csv):
    common = dict(model="v1_single_layer", data=str(tiny_csv), batch_size=32, optimizer="adam",
                  learning_rate=1e-3, schedule="constant", augment="none")
    quick(tmp_path, epochs=3, **common)
    run_dir = tmp_path / "runs" / "run"
    # A kill after last.keras (epoch 3) but before state.json: state.json says 2, history has a
    # row for an epoch 4 that never reached its checkpoint.
    state = json.loads((run_dir / "state.json").read_text())
    (run_dir / "state.json").write_text(json.dumps({**state, "epoch": 2}))
    rows = (run_dir / "history.csv").read_text().splitlines()
    with open(run_dir / "history.csv", "a") as history:
        history.write("3," + rows[-1].split(",", 1)[1] + "\n")
    steps = int(train.keras.models.load_model(run_dir / "last.keras").optimizer.iterations)
    resumed = quick(tmp_path, model="v1_single_layer", epochs=4, resume=True)
    assert list(resumed.history["epoch"]) == [0, 1, 2, 3] and resumed.history["loss"].iloc[-1] > 0
    assert int(train.keras.models.load_model(run_dir / "last.keras").optimizer.iterations) == steps + 6
    # A kill during the first epoch: settings.json, no checkpoint. --resume starts it afresh.
    quick(tmp_path, epochs=1, run_id="early", **common)
    (tmp_path / "runs" / "early" / "last.keras").unlink()
    (tmp_path / "runs" / "early" / "best.keras").unlink()
    again = quick(tmp_path, model="v1_single_layer", epochs=1, run_id="early", resume=True)
    assert again.epochs_run == 1 and list(again.history["epoch"]) == [0]


def test_a_full_disk_leaves_no_temporary_file(tmp_path, tiny_csv, capsys, monkeypatch):
    import errno
    real_save = train.keras.Model.save

    def save_then_disk_full(self, path, *args, **kwargs):
        if ".tmp" in str(path) and "last" in str(path):
            with open(path, "wb") as half:
                half.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(self, path, *args, **kwargs)
    monkeypatch.setattr(train.keras.Model, "save", save_then_disk_full)
    code, _, err = run_cli(["--model", "v1", "--data", str(tiny_csv), "--root", str(tmp_path), "--epochs", "1",
                            "--run-id", "full", "--quiet"], capsys)
    assert code == 1 and "No space left on device" in err and err.count("\n") == 1, err
    assert not list((tmp_path / "runs").rglob("*.tmp*"))
    assert not (tmp_path / "runs" / "full.lock").exists()


def test_the_learning_curve_legend_says_what_the_train_figure_is():
    v1 = train.build_network(train.resolve_settings(model="v1"))
    assert train.train_curve_label(v1, train.resolve_settings(model="v1")) == "train"
    v3 = train.build_network(train.resolve_settings(model="v3"))
    assert train.train_curve_label(v3, train.resolve_settings(model="v3", augment="flip")) == \
        "train (augmented: flip, dropout on)"
