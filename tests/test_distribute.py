"""--strategy mirrored on two logical CPUs: the same training as one device, split in two."""
import json
import subprocess
import sys

import numpy as np

import input_data
import synthetic_faces
from conftest import ROOT

SCRIPT = """
import json, sys
import numpy as np
import train
strategy = None if sys.argv[2] == "none" else sys.argv[2]
run = train.train(model="v1_single_layer", data=sys.argv[1], epochs=3, batch_size=64, optimizer="sgd",
                  learning_rate=0.01, momentum=0.9, final_momentum=None, schedule="constant",
                  augment="none", strategy=strategy, devices=2, root=sys.argv[3], verbose=0,
                  save_model=False, run_id="run")
np.save(sys.argv[3] + "/weights.npy", np.concatenate([w.ravel() for w in run.model.get_weights()]))
import tensorflow as tf
print(json.dumps(dict(loss=list(run.history["loss"]), replicas=tf.distribute.get_strategy().num_replicas_in_sync,
                      devices=[d.name for d in tf.config.list_logical_devices("CPU")])))
"""


def run(tmp_path, data, strategy):
    out = tmp_path / strategy
    out.mkdir()
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(data), strategy, str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 replicas" in result.stdout or strategy == "none", result.stdout
    return json.loads(result.stdout.strip().split("\n")[-1]), np.load(out / "weights.npy")


def test_mirrored_on_two_cpus_matches_one_device(tmp_path):
    images, keypoints = synthetic_faces.make_faces(400, seed=7)
    data = input_data.write_csv(tmp_path / "faces.csv", images, keypoints)
    single, single_weights = run(tmp_path, data, "none")
    mirrored, mirrored_weights = run(tmp_path, data, "mirrored")
    assert len(mirrored["devices"]) == 2
    assert mirrored["loss"][-1] < mirrored["loss"][0]                       # it learns
    np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=1e-3)  # the same steps
    assert np.abs(mirrored_weights - single_weights).max() < 1e-4
