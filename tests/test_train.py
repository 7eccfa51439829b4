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
    with pytest.raises(ValueError, match="loss must be one of mse, l1, wing"):
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


def test_ema_ends_the_run_as_the_weight_average_and_scores_it(tmp_path, faces_csv):
    run = quick(tmp_path, model="v1_single_layer", data=str(faces_csv), epochs=2, optimizer="adam",
                learning_rate=1e-3, schedule="constant", ema=0.9)
    optimizer = run.model.optimizer
    assert optimizer.use_ema
    pairs = list(zip(optimizer._trainable_variables, optimizer._model_variables_moving_average))
    assert len(pairs) == len(run.model.trainable_weights) > 0
    for weight, average in pairs:        # the model holds the average, not the last step's weights
        np.testing.assert_allclose(weight.numpy(), average.numpy(), rtol=1e-6, atol=1e-7)
    last = train.load_model(run.run_dir / "last.keras")
    assert any(not np.allclose(a, b) for a, b in zip(last.get_weights(), run.model.get_weights()))
    # The score is the average's, on the validation faces, and the saved model is the average.
    expected = train.rmse_px(run.Y_val, run.model.predict(run.X_val, verbose=0))
    assert run.best_epoch == 2 and run.val_rmse_px == pytest.approx(expected, rel=1e-5)
    saved = train.load_model(run.model_path)
    np.testing.assert_allclose(saved.predict(run.X_val[:4], verbose=0),
                               run.model.predict(run.X_val[:4], verbose=0), atol=1e-5)
    with pytest.raises(ValueError, match="ema is a momentum"):
        quick(tmp_path, model="v1_single_layer", data=str(faces_csv), epochs=1, ema=1.5, run_id="bad")


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
    run = quick(tmp_path, model="v1_single_layer", data=str(faces_csv), epochs=1,
                precision="bfloat16", optimizer="adam", learning_rate=1e-3, schedule="constant")
    model = run.model
    assert model.get_layer("fc1").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("out").dtype_policy.name == "float32"
    X = np.zeros((2, 96, 96, 1), np.float32)
    assert model(X).dtype == "float32" and np.isfinite(run.val_rmse_px)
    again = train.load_model(run.model_path)
    assert again.get_layer("fc1").dtype_policy.name == "mixed_bfloat16"
    np.testing.assert_allclose(again.predict(X, verbose=0), model.predict(X, verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16"):
        train.build_network(train.resolve_settings(model="v1", precision="float16"))


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
