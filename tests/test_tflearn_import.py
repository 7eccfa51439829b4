"""tflearn_import: TF1 checkpoints named like TFLearn's, written by a tf.compat.v1 graph in a
subprocess, imported into Keras models that must predict what the checkpoint's network does."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import ROOT

import synthetic_faces
import tflearn_import
import train

# Writes the checkpoints the way TFLearn's model.save() does (tf.compat.v1.train.Saver, TF1
# name-based format, with .meta), with TFLearn's variable names and bookkeeping, and runs the
# convnet as TFLearn's layers compute it, so that the test can compare Keras with it.
WRITER = textwrap.dedent(r'''
    import sys
    from pathlib import Path
    import numpy as np
    import tensorflow as tf
    tf1 = tf.compat.v1
    tf1.disable_eager_execution()
    out = Path(sys.argv[1])
    faces = np.load(out / "faces.npy")
    rng = np.random.default_rng(0)

    def variable(name, shape, scale):
        init = (rng.standard_normal(shape) * scale).astype(np.float32)
        return tf1.get_variable(name, initializer=init)

    def bookkeeping(loss, optimizer):
        # TFLearn's trainer state, an optimizer with slots, a moving average of the loss.
        tf1.Variable(0.0, name="Global_Step", trainable=False)
        tf1.Variable(0, name="Training_step", trainable=False)
        tf1.Variable(False, name="is_training", trainable=False)
        train_op = optimizer.minimize(loss)
        tf1.train.ExponentialMovingAverage(0.9).apply([loss])
        return train_op

    def fully_connected(x, units, scope, relu, bias=True):
        # tflearn.layers.core.fully_connected: flatten NHWC with reshape, x W + b
        n_inputs = int(np.prod(x.get_shape().as_list()[1:]))
        with tf1.variable_scope(scope):
            W = variable("W", [n_inputs, units], np.sqrt(2.0 / n_inputs) * (1.0 if relu else 0.1))
            y = tf1.matmul(tf1.reshape(x, [-1, n_inputs]), W)
            if bias:
                y = y + variable("b", [units], 0.05)
        return tf1.nn.relu(y) if relu else y

    def conv_2d(x, filters, scope):
        # tflearn.layers.conv.conv_2d: 3x3, stride 1, padding 'same', bias, relu
        channels = x.get_shape().as_list()[-1]
        with tf1.variable_scope(scope):
            W = variable("W", [3, 3, channels, filters], np.sqrt(2.0 / (9 * channels)))
            b = variable("b", [filters], 0.05)
        return tf1.nn.relu(tf1.nn.bias_add(tf1.nn.conv2d(x, W, [1, 1, 1, 1], "SAME"), b))

    def max_pool_2d(x):
        return tf1.nn.max_pool2d(x, [1, 2, 2, 1], [1, 2, 2, 1], "SAME")

    def save(name, build, optimizer=lambda: tf1.train.AdamOptimizer(0.001)):
        with tf.Graph().as_default():
            image = tf1.placeholder(tf.float32, [None, 96, 96, 1], name="input")
            target = tf1.placeholder(tf.float32, [None, 30])
            y = build(image)
            loss = tf1.reduce_mean(tf1.square(y - target))
            bookkeeping(loss, optimizer())
            with tf1.Session() as session:
                session.run(tf1.global_variables_initializer())
                prediction = session.run(y, {image: faces})
                (out / name).mkdir()
                tf1.train.Saver().save(session, str(out / name / "model.tflearn"))
        np.save(out / name / "prediction.npy", prediction)

    # COS 429 v1_single_layer.py: fc1 50 relu, fc2 30 linear
    save("v1", lambda x: fully_connected(fully_connected(x, 50, "fc1", True), 30, "fc2", False))
    # the same with TFLearn's default scopes (no scope= given)
    save("v1_default_names", lambda x: fully_connected(
        fully_connected(x, 50, "FullyConnected", True), 30, "FullyConnected_1", False))
    # fc2 without its bias
    save("v1_missing_bias", lambda x: fully_connected(
        fully_connected(x, 50, "fc1", True), 30, "fc2", False, bias=False))

    def cos429_v2_convnet(x):   # COS 429 v2_convnet.py (dropout is the identity here)
        x = max_pool_2d(conv_2d(x, 32, "conv1_1"))
        x = max_pool_2d(conv_2d(conv_2d(x, 64, "conv2_1"), 64, "conv2_2"))
        return fully_connected(fully_connected(x, 512, "fc3", True), 30, "fc4", False)

    # plain SGD: no optimizer slots, so that the 19M-weight checkpoint stays 76 MB
    save("cos429_v2", cos429_v2_convnet, lambda: tf1.train.GradientDescentOptimizer(0.7))
''')


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    out = tmp_path_factory.mktemp("tflearn")
    images, _ = synthetic_faces.make_faces(6, seed=8)
    faces = (images.astype(np.float32) / 255.0)[..., None]
    np.save(out / "faces.npy", faces)
    subprocess.run([sys.executable, "-c", WRITER, str(out)], check=True, cwd=ROOT,
                   capture_output=True, text=True, timeout=180)
    return out, faces


def _numpy_v1(prefix, faces):
    """The checkpoint's single-layer net in numpy: relu(x W1 + b1) W2 + b2."""
    import tensorflow as tf
    reader = tf.train.load_checkpoint(str(prefix))
    w = {name: reader.get_tensor(name) for name in ("fc1/W", "fc1/b", "fc2/W", "fc2/b")}
    hidden = np.maximum(faces.reshape(len(faces), -1) @ w["fc1/W"] + w["fc1/b"], 0.0)
    return hidden @ w["fc2/W"] + w["fc2/b"]


def test_cli_imports_v1_and_predicts_like_the_checkpoint(checkpoints, tmp_path):
    out, faces = checkpoints
    target = tmp_path / "models" / "v1" / "model.keras"
    result = subprocess.run(
        [sys.executable, "-m", "tflearn_import", "import-tflearn", str(out / "v1" / "model.tflearn"),
         "--model", "v1_single_layer", "--units", "50", "--out", str(target)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "fc1/W [9216, 50]" in result.stdout and "-> out" in result.stdout
    assert "ignored" in result.stdout and target.exists()

    model = train.load_model(target)
    assert model.get_layer("fc1").units == 50
    ours = model.predict(faces, verbose=0)
    np.testing.assert_allclose(ours, _numpy_v1(out / "v1" / "model.tflearn", faces), atol=1e-5)
    np.testing.assert_allclose(ours, np.load(out / "v1" / "prediction.npy"), atol=1e-5)


def test_default_tflearn_scopes_match_by_order_and_units_come_from_the_checkpoint(checkpoints):
    out, faces = checkpoints
    ckpt = tflearn_import.Checkpoint(out / "v1_default_names")     # the folder works too
    assert list(ckpt.scopes) == ["FullyConnected", "FullyConnected_1"]
    assert ckpt.order_source == "the .meta graph"
    model = tflearn_import.import_tflearn(out / "v1_default_names" / "model.tflearn.index",
                                          "v1_single_layer")
    assert model.get_layer("fc1").units == 50
    np.testing.assert_allclose(model.predict(faces, verbose=0),
                               np.load(out / "v1_default_names" / "prediction.npy"), atol=1e-5)


def test_cos429_convnet_flattens_like_tflearn(checkpoints):
    # conv -> pool -> conv -> conv -> pool -> fc: the dense weights after the flatten are used
    # as they are, and Keras must give what the TF1 graph (TFLearn's reshape) gave.
    out, faces = checkpoints
    model = tflearn_import.import_tflearn(out / "cos429_v2" / "model.tflearn", "cos429_v2_convnet")
    expected = np.load(out / "cos429_v2" / "prediction.npy")
    assert np.abs(expected).max() > 0.05          # not a degenerate all-zero network
    np.testing.assert_allclose(model.predict(faces, verbose=0), expected, atol=1e-4)


def test_our_v2_convnet_is_not_cos429s(checkpoints):
    out, _ = checkpoints
    with pytest.raises(tflearn_import.TFLearnImportError) as error:
        tflearn_import.import_tflearn(out / "cos429_v2" / "model.tflearn", "v2_convnet")
    message = str(error.value)
    assert "--model cos429_v2_convnet" in message
    assert "conv2_1/W" in message and "[3, 3, 32, 64]" in message


def test_mismatched_shape_lists_the_checkpoint(checkpoints, capsys):
    out, _ = checkpoints
    import cli
    with pytest.raises(SystemExit) as exit:
        cli.run(tflearn_import.main, ["import-tflearn", str(out / "v1" / "model.tflearn"),
                                      "--model", "v1_single_layer", "--units", "100",
                                      "--out", str(out / "unused.keras")])
    message = capsys.readouterr().err
    assert exit.value.code == 1 and not (out / "unused.keras").exists()
    assert message.count("\n") == 1 and message.startswith("error: ")
    assert "fc1/W is [9216, 50] in the checkpoint, layer fc1 kernel is [9216, 100]" in message
    assert "(--units 50)" in message
    for line in ("fc1/W       [9216, 50]", "fc2/b       [30]", "Global_Step", "fc1/W/Adam_1",
                 "Training_step", "is_training"):
        assert line.split()[0] in message
    assert "(bookkeeping, ignored)" in message


def test_missing_variable_lists_the_checkpoint(checkpoints):
    out, _ = checkpoints
    with pytest.raises(tflearn_import.TFLearnImportError) as error:
        tflearn_import.import_tflearn(out / "v1_missing_bias" / "model.tflearn", "v1_single_layer")
    message = str(error.value)
    assert "missing fc2/b" in message
    assert "the checkpoint holds" in message and "fc2/W" in message and "Global_Step" in message


def test_list_command(checkpoints, capsys):
    out, _ = checkpoints
    assert tflearn_import.main(["list", str(out / "v1" / "model.tflearn")]) == 0
    text = capsys.readouterr().out
    assert "fc1, fc2" in text and "beta1_power" in text


def _copy_checkpoint(source, target):
    import shutil
    shutil.copytree(source, target)
    return target / "model.tflearn"


@pytest.mark.parametrize("damage", ["truncated", "missing", "empty index", "garbage index"])
def test_damaged_checkpoint_is_one_clear_error(checkpoints, tmp_path, capsys, damage):
    """A .data file cut short or gone, or a broken .index: exit 1 and one line naming the file."""
    import cli
    out, _ = checkpoints
    prefix = _copy_checkpoint(out / "v1", tmp_path / "v1")
    data = next(prefix.parent.glob("model.tflearn.data-*"))
    if damage == "truncated":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    elif damage == "missing":
        data.unlink()
    elif damage == "empty index":
        (prefix.parent / "model.tflearn.index").write_bytes(b"")
    else:
        (prefix.parent / "model.tflearn.index").write_bytes(b"\x00garbage" * 100)
    target = tmp_path / "out" / "model.keras"
    with pytest.raises(SystemExit) as exit:
        cli.run(tflearn_import.main, ["import-tflearn", str(prefix), "--model", "v1_single_layer",
                                      "--out", str(target)])
    err = capsys.readouterr().err.strip().split("\n")
    assert exit.value.code == 1 and err[-1].startswith("error: ") and "model.tflearn" in err[-1], err
    assert "Traceback" not in "\n".join(err) and not target.exists()


@pytest.mark.parametrize("argv, message", [
    (["--model", "v9_nothing"], "--model: got 'v9_nothing'"),
    (["--model", "v1_single_layer", "--units", "0"], "--units"),
    (["--model", "v1_single_layer", "--option", "units=-5"], "--option"),
    (["--model", "v1_single_layer", "--out", "model.h5"], "--out: got 'model.h5'; must be a .keras"),
])
def test_bad_settings_are_usage_errors_before_reading(tmp_path, capsys, argv, message):
    import cli
    argv = ["import-tflearn", str(tmp_path / "nowhere" / "model.tflearn"), *argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "m.keras")]
    with pytest.raises(SystemExit) as exit:
        cli.run(tflearn_import.main, argv)
    err = capsys.readouterr().err.strip().split("\n")[-1]
    assert exit.value.code == 2 and message in err, err
