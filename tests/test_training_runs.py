"""A run's life in the engine's corners: Ctrl-C once and twice, a full disk, a run killed while
it was being set up, the ending when the weight average scores worse, the epoch counter of a
time-limited run, the device's precision choice, and what TensorBoard gets (HParams, legends)."""
import errno
import json
import os
import re
import signal

import keras
import numpy as np
import pytest

import cli
import input_data
import synthetic_faces
import train
from training import device

COMMON = dict(model="v1_single_layer", batch_size=32, optimizer="adam", learning_rate=1e-3,
              schedule="constant", augment="none", verbose=0, image_every=1, run_id="run")
STEPS = 6          # 180 training faces of tiny_csv / 32 per step


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    images, keypoints = synthetic_faces.make_faces(200, seed=4)
    return str(input_data.write_csv(folder / "tiny.csv", images, keypoints))


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.run(train.main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return stopped.value.code, out, err


def iterations(path):
    return int(keras.models.load_model(path).optimizer.iterations)


class PressCtrlC(keras.callbacks.Callback):
    """Sends this process SIGINT (Ctrl-C) `times` times after batch `batch` of epoch `epoch`."""

    def __init__(self, epoch, batch, times=1):
        super().__init__()
        self.at, self.times, self.epoch = (epoch, batch), times, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)


def pressing(monkeypatch, *args):
    real = train.run_callbacks
    monkeypatch.setattr(train, "run_callbacks", lambda *a, **k: [PressCtrlC(*args)] + real(*a, **k))


def test_ctrl_c_mid_epoch_records_it_unfinished_and_resume_trains_it_whole(tmp_path, tiny_csv, monkeypatch,
                                                                            capsys):
    whole = train.train(root=str(tmp_path / "whole"), data=tiny_csv, epochs=3, **COMMON)
    pressing(monkeypatch, 1, 2)                         # in epoch 2, after its 3rd of 6 steps
    cut = train.train(root=str(tmp_path / "cut"), data=tiny_csv, epochs=3, **COMMON)
    assert "epoch 2 was cut short by Ctrl-C after 3 of 6 steps: it is not recorded" in capsys.readouterr().out
    run_dir = tmp_path / "cut" / "runs" / "run"
    assert cut.interrupted and cut.epochs_run == 1 and list(cut.history["epoch"]) == [0]
    assert json.loads((run_dir / "state.json").read_text())["epoch"] == 1
    assert iterations(run_dir / "last.keras") == STEPS     # epoch 1's checkpoint, not 1 + 3/6 epochs
    monkeypatch.undo()
    resumed = train.train(root=str(tmp_path / "cut"), model="v1_single_layer", run_id="run", resume=True,
                          verbose=0)
    assert resumed.epochs_run == 3 and iterations(run_dir / "last.keras") == 3 * STEPS
    assert list(resumed.history["epoch"]) == [0, 1, 2]
    # Resuming at the start of the cut epoch continues the uninterrupted run's losses.
    np.testing.assert_allclose(resumed.history["loss"], whole.history["loss"], rtol=1e-4)


def test_ctrl_c_twice_stops_at_once_and_exits_130(tmp_path, tiny_csv, monkeypatch, capsys):
    pressing(monkeypatch, 1, 2, 2)
    code, out, err = run_cli(["--model", "v1", "--data", tiny_csv, "--root", tmp_path, "--run-id", "twice",
                              "--epochs", "3", "--batch-size", "32", "--quiet"], capsys)
    run_dir = tmp_path / "runs" / "twice"
    assert code == 130 and err.strip().endswith("interrupted"), (out, err)
    assert f"interrupted at once in epoch 2; {run_dir / 'last.keras'} holds epoch 1" in out and "--resume" in out
    assert iterations(run_dir / "last.keras") == STEPS
    assert not list(run_dir.glob("*.tmp*")) and not (tmp_path / "runs" / "twice.lock").exists()


def test_a_full_disk_names_the_file(tmp_path, tiny_csv, monkeypatch, capsys):
    def disk_full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")    # as h5py/zipfile raise it: no file named
    monkeypatch.setattr(keras.Model, "save", disk_full)
    code, _, err = run_cli(["--model", "v1", "--data", tiny_csv, "--root", tmp_path, "--run-id", "full",
                            "--epochs", "1", "--quiet"], capsys)
    assert code == 1 and err == f"error: {tmp_path / 'runs' / 'full' / 'last.keras'}: No space left on device\n"
    monkeypatch.undo()

    def history_disk_full(self, epoch, logs=None):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(keras.callbacks.CSVLogger, "on_epoch_end", history_disk_full)
    code, _, err = run_cli(["--model", "v1", "--data", tiny_csv, "--root", tmp_path, "--run-id", "full2",
                            "--epochs", "1", "--quiet"], capsys)
    assert code == 1 and err == f"error: {tmp_path / 'runs' / 'full2' / 'history.csv'}: No space left on device\n"


def test_a_run_killed_while_being_set_up_gets_one_answer(tmp_path, tiny_csv, capsys, monkeypatch):
    base = ["--model", "v1", "--data", tiny_csv, "--root", tmp_path]
    argv = base + ["--run-id", "early", "--epochs", "1", "--quiet"]
    # What a kill between split.json and settings.json left (the engine now writes them together).
    (tmp_path / "runs" / "early").mkdir(parents=True)
    (tmp_path / "runs" / "early" / "split.json").write_text("{}")
    answers = [run_cli(argv + extra, capsys) for extra in ([], ["--resume"])]
    assert answers[0][0] == answers[1][0] == 2 and answers[0][2] == answers[1][2], answers
    assert "stopped before its settings.json was written" in answers[0][2] and "--overwrite" in answers[0][2]
    # A kill between the two renames leaves settings.json alone: both answers say --resume, which works.
    real_replace = os.replace

    def killed_at_split(source, target):
        if str(target).endswith("split.json"):
            raise KeyboardInterrupt
        real_replace(source, target)
    monkeypatch.setattr(cli.os, "replace", killed_at_split)
    code, _, _ = run_cli(base + ["--run-id", "late", "--epochs", "1", "--quiet"], capsys)
    monkeypatch.undo()
    assert code == 130 and sorted(p.name for p in (tmp_path / "runs" / "late").iterdir()) == ["settings.json"]
    code, _, err = run_cli(base + ["--run-id", "late", "--epochs", "1", "--quiet"], capsys)
    assert code == 2 and "continue it with --resume" in err, err
    code, out, err = run_cli(base + ["--run-id", "late", "--resume", "--quiet"], capsys)
    assert code == 0 and "no epoch was checkpointed; starting from epoch 1" in out, (out, err)
    assert (tmp_path / "runs" / "late" / "split.json").exists()


@pytest.mark.parametrize("average_scores", ["worse", "better"])
def test_a_warm_average_ends_the_run_only_when_it_scores_no_worse(tmp_path, tiny_csv, monkeypatch, capsys,
                                                                  average_scores):
    real = train.rmse_px           # only _end_run scores with train.rmse_px: the average's figure
    shifted = (lambda *a: real(*a) + 50.0) if average_scores == "worse" else (lambda *a: 0.0)
    monkeypatch.setattr(train, "rmse_px", shifted)
    run = train.train(root=str(tmp_path), data=tiny_csv, epochs=2, ema=0.5, **COMMON)
    out = capsys.readouterr().out
    state = json.loads((run.run_dir / "state.json").read_text())
    assert (run.run_dir / "average.keras").exists()
    if average_scores == "better":
        assert run.ended_on == f"weight average over 2 epochs (ema 0.5, {2 * STEPS} steps)"
        assert state["final_model"] == "average.keras" and run.val_rmse_px == 0.0
        return
    assert re.search(r"the weight average \(ema 0.5\) scores \d+\.\d{3} px, the best epoch \(\d\) \d+\.\d{3} px: "
                     r"the run ends on the better", out), out
    assert run.ended_on.startswith("best epoch") and run.val_rmse_px < 50
    assert state["final_model"] == "best.keras"
    best = keras.models.load_model(run.run_dir / "best.keras", compile=False)
    for ours, theirs in zip(run.model.get_weights(), best.get_weights()):
        np.testing.assert_array_equal(ours, theirs)


def test_a_time_limit_without_epochs_shows_no_million(tmp_path, tiny_csv, capsys):
    code, out, err = run_cli(["--model", "v1", "--data", tiny_csv, "--root", tmp_path, "--time-limit", "2",
                              "--batch-size", "32"], capsys)
    assert code == 0, err
    assert "1000000" not in out and "Epoch 1 (the time plan fits the number of epochs" in out, out
    planned = json.loads((tmp_path / "runs" / os.listdir(tmp_path / "runs")[0] / "state.json").read_text())
    if planned["epoch"] >= 3:           # the plan is made after epochs 1 and 2
        # ...and may change later in the run's first third: epoch 3 shows the first plan.
        first = int(re.search(r"time plan: [\d.]+ s per epoch -> (\d+) epochs", out).group(1))
        assert f"Epoch 3/{first}" in out


@pytest.mark.parametrize("times,planned_before,planned", [
    ([30, 10], None, 18),                  # after the second epoch: 160 s left at 10 s -> 16 more
    ([30, 10, 8, 8], 18, 22),              # the median (8 s) makes room: longer
    ([30, 10, 12, 12], 18, 15),            # slower than planned: shorter, so the budget holds
    ([30] + [10] * 9 + [5] * 4, 18, 18),   # past two thirds of the plan (12 epochs): never longer
    ([30] + [10] * 9 + [14] * 4, 18, 15),  # ...but shorter when the last five epochs' pace would overrun
    ([30], None, None),                    # the first epoch alone (it also traces): no plan yet
    ([120], None, 1),                      # ...unless it leaves no room for another at its pace
])
def test_the_time_plan_follows_the_epochs_and_never_overruns_the_budget(times, planned_before, planned,
                                                                          monkeypatch, tmp_path):
    from training import callbacks
    steps = []
    monkeypatch.setattr(callbacks, "plan_steps", lambda optimizer, n: steps.append(n))
    settings = dict(time_limit=200, epochs=None, schedule="cosine")
    state = dict(epoch_seconds=times, planned_epochs=planned_before)
    checkpoints = callbacks.Checkpoints(settings, tmp_path, state, True, steps_per_epoch=5, ctrl_c=None)
    checkpoints.set_model(type("Stub", (), {"optimizer": None})())
    checkpoints.plan_to_budget(len(times) - 1)
    assert state["planned_epochs"] == planned
    assert steps == ([] if planned in (planned_before, None) or planned <= len(times) else [5 * planned])


def test_the_device_choice_builds_and_compiles_the_network(tmp_path, tiny_csv, monkeypatch, capsys):
    t4 = device.Device("GPU", "Tesla T4", (7, 5), 16 * 10 ** 9)
    monkeypatch.setattr(device, "local_devices", lambda: [t4, device.Device("CPU")])
    run = train.train(root=str(tmp_path), data=tiny_csv, epochs=1, **COMMON)
    assert "device: GPU 0: Tesla T4 (compute capability 7.5, 16 GB): float16 (float32 output), XLA" \
        in capsys.readouterr().out
    saved = json.loads((run.run_dir / "settings.json").read_text())
    assert saved["precision"] == "float16" and run.model.get_layer("fc1").dtype_policy.name == "mixed_float16"
    assert run.model.get_layer("out").dtype_policy.name == "float32"
    last = keras.models.load_model(run.run_dir / "last.keras")
    assert isinstance(last.optimizer, keras.optimizers.LossScaleOptimizer)


def test_tensorboard_gets_the_runs_settings_and_figures_and_legended_faces(tmp_path, tiny_csv, monkeypatch):
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.hparams import metadata
    titles = []
    real_plot = input_data.plot_samples
    monkeypatch.setattr(input_data, "plot_samples", lambda *a, **k: titles.append(k["title"]) or real_plot(*a, **k))
    run = train.train(root=str(tmp_path), data=tiny_csv, epochs=2, **COMMON)
    assert titles and all(t.endswith("red x: predicted, green +: true keypoints") for t in titles), titles
    events = event_accumulator.EventAccumulator(str(run.log_dir), size_guidance={"tensors": 0})
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    start = metadata.parse_session_start_info_plugin_data(content)
    assert start.hparams["model"].string_value == "v1_single_layer"
    assert start.hparams["learning_rate"].number_value == pytest.approx(1e-3)
    assert start.hparams["batch_size"].number_value == 32 and start.hparams["augment"].string_value == "none"
    assert start.group_name == "run"
    from tensorboard.util import tensor_util
    final = tensor_util.make_ndarray(events.Tensors("final/val_rmse_px")[0].tensor_proto)
    assert float(final) == pytest.approx(run.val_rmse_px, rel=1e-6)
