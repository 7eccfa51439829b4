"""The model versions keep the convention the training engine relies on (models/__init__.py)."""
import re

import keras
import numpy as np
import pytest

import augment
import input_data
import models

VERSIONS = models.names()
EXPECTED = ["v1_single_layer", "v2_convnet", "v3_convnet_dropout", "v4_lenet", "v5_vgg"]

_built = {}


def build(name):
    """Default network of a version, built once per test session (building v5 takes time)."""
    if name not in _built:
        _built[name] = models.load(name).network()
    return _built[name]


def documented_parameters(module):
    found = re.findall(r"^Parameters: ([\d,]+)\s*$", module.__doc__ or "", re.MULTILINE)
    assert len(found) == 1, f"{module.__name__}: the docstring needs one 'Parameters: N' line"
    return int(found[0].replace(",", ""))


def kernels(model):
    """The learned kernels (not v6's fixed soft-argmax grid)."""
    return {layer.name: layer.kernel.numpy() for layer in model.layers
            if hasattr(layer, "kernel") and layer.trainable}


def test_the_ladder_is_all_there_in_order():
    assert VERSIONS[:len(EXPECTED)] == EXPECTED


@pytest.mark.parametrize("name", VERSIONS)
def test_docstring_states_the_parameter_count_and_architecture(name):
    module = models.load(name)
    assert documented_parameters(module) == build(name).count_params()
    assert re.search(r"^Architecture: \S.*$", module.__doc__, re.MULTILINE)


@pytest.mark.parametrize("name", VERSIONS)
def test_input_output_and_model_name(name):
    model = build(name)
    assert model.name == name
    assert len(model.inputs) == 1 and len(model.outputs) == 1
    assert model.layers[0].name == "image"
    assert tuple(model.inputs[0].shape) == (None, input_data.IMAGE_SIZE, input_data.IMAGE_SIZE, 1)
    out = model.get_layer("out")
    assert model.layers[-1] is out
    assert tuple(model.outputs[0].shape) == (None, len(input_data.COLUMNS)) == (None, 30)
    if isinstance(out, keras.layers.Dense):
        assert out.activation is keras.activations.linear
    else:   # the integral head: `out` lays the soft-argmax's (15, 2) out as Kaggle's 30 columns
        assert isinstance(out, keras.layers.Reshape) and model.get_layer("soft_argmax")


@pytest.mark.parametrize("name", VERSIONS)
def test_forward_pass_on_two_blank_faces(name):
    y = build(name).predict(np.zeros((2, 96, 96, 1), np.float32), verbose=0)
    assert y.shape == (2, 30)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("name", VERSIONS)
def test_layer_names_follow_the_convention_and_are_stable(name):
    model = build(name)
    again = models.load(name).network()        # a second build in the same session
    names = [layer.name for layer in model.layers]
    assert names == [layer.name for layer in again.layers]
    pattern = re.compile(r"^(image|flatten|out|conv\d+(_\d+)?|pool\d+|fc\d+|drop\d+"
                         # v6: batch norm, residual blocks, the feature pyramid, the integral head
                         r"|(conv\d+[a-z]?(_\d+)?|down\d+|conv_head)(_relu)?|bn\d+[a-z]?(_\d+)?|bn_down\d+|bn_head"
                         r"|add\d+[a-z]?|block\d+[a-z]?|lateral\d+|up\d+|merge\d+"
                         r"|heatmaps(_flat|_by_keypoint|_softmax)?|soft_argmax)$")
    assert all(pattern.match(n) for n in names), [n for n in names if not pattern.match(n)]
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            assert layer.name.startswith(("conv", "down", "lateral", "heatmaps"))
        if isinstance(layer, keras.layers.Dense):
            assert layer.name in ("out", "soft_argmax") or layer.name.startswith("fc")
        if isinstance(layer, keras.layers.MaxPooling2D):
            assert layer.name.startswith("pool")
        if isinstance(layer, keras.layers.Dropout):
            assert layer.name.startswith("drop")


def test_weights_transfer_by_name_from_v2_to_v3():
    v2, v3 = build("v2_convnet"), build("v3_convnet_dropout")
    # Every weighted layer of v2 is in v3 under the same name with the same shapes.
    for layer in v2.layers:
        if layer.weights:
            target = v3.get_layer(layer.name)
            assert [w.shape for w in target.weights] == [w.shape for w in layer.weights]
    fresh = models.load("v3").network()
    assert not np.allclose(fresh.get_layer("conv1").kernel.numpy(), v2.get_layer("conv1").kernel.numpy())
    fresh.get_layer("conv1").set_weights(v2.get_layer("conv1").get_weights())
    np.testing.assert_array_equal(fresh.get_layer("conv1").kernel.numpy(),
                                  v2.get_layer("conv1").kernel.numpy())


@pytest.mark.parametrize("name", VERSIONS)
def test_init_zeros_versus_glorot(name):
    zero = models.load(name).network(init="zeros")
    zero_kernels = kernels(zero)
    assert zero_kernels and all(not k.any() for k in zero_kernels.values())
    default_kernels = kernels(build(name))
    assert default_kernels.keys() == zero_kernels.keys()
    assert all(k.any() for k in default_kernels.values())
    # Biases stay zeros whatever the init.
    for layer in build(name).layers:
        if getattr(layer, "bias", None) is not None:
            assert not layer.bias.numpy().any()


def test_init_glorot_uniform_is_the_default_and_within_its_limit():
    fc1 = build("v1_single_layer").get_layer("fc1")
    fan_in, fan_out = fc1.kernel.shape
    limit = np.sqrt(6 / (fan_in + fan_out))
    assert np.abs(fc1.kernel.numpy()).max() <= limit * (1 + 1e-6)     # float32 rounding
    assert np.abs(fc1.kernel.numpy()).max() > 0.9 * limit


def test_he_normal_init_is_accepted():
    model = models.load("v1").network(init="he_normal")
    std = model.get_layer("fc1").kernel.numpy().std()
    assert 0.5 * np.sqrt(2 / 9216) < std < 1.5 * np.sqrt(2 / 9216)


def test_v1_units_option():
    default = build("v1_single_layer")
    narrow = models.load("v1").network(units=50)
    assert narrow.get_layer("fc1").units == 50
    assert default.get_layer("fc1").units == 100
    # 9216 inputs + 1 bias into each unit, each unit + 1 bias into 30 outputs.
    assert narrow.count_params() == 9217 * 50 + 51 * 30 == 462380
    assert default.count_params() - narrow.count_params() == 50 * (9217 + 30)


def test_v3_dense_units_option_is_net7():
    net7 = models.load("v3").network(dense_units=1000)
    assert net7.get_layer("fc1").units == net7.get_layer("fc2").units == 1000
    # fc1: 15488 inputs + bias; fc2: 1000 + bias; out: 1000 + bias, each per unit.
    convs = 320 + 8256 + 32896
    assert net7.count_params() == convs + 15489 * 1000 + 1001 * 1000 + 1001 * 30 == 16561502
    assert [l.rate for l in net7.layers if isinstance(l, keras.layers.Dropout)] == [0.1, 0.2, 0.3, 0.5]


@pytest.mark.parametrize("name", VERSIONS)
def test_unknown_option_raises_type_error(name):
    with pytest.raises(TypeError, match=rf"{name}.*no_such_option"):
        models.load(name).network(no_such_option=1)


def test_bad_option_value_raises():
    with pytest.raises(ValueError, match="units must be a positive integer"):
        models.load("v1").network(units=0)
    with pytest.raises(ValueError, match="dense_units"):
        models.load("v3").network(dense_units="1000")


def test_load_by_short_and_full_name():
    full = models.load("v2_convnet")
    assert models.load("v2") is full
    assert models.load("V2") is full
    assert models.load("v2_convnet.py") is full
    assert models.load("models.v2_convnet") is full
    assert full.__name__ == "models.v2_convnet"


def test_unknown_name_error_lists_the_versions():
    with pytest.raises(models.UnknownModelError) as error:
        models.load("v99_nothing")
    assert isinstance(error.value, ValueError)
    for name in EXPECTED:
        assert name in str(error.value)
    with pytest.raises(ValueError, match="available"):
        models.load("v1_single")          # only the version number is a short name


def test_names_are_discovered_from_file_names(tmp_path, monkeypatch):
    for file in ["v1_a.py", "v10_b.py", "v2.py", "v7_MyNet.py", "vx_not.py", "helper.py", "v3_c.txt"]:
        (tmp_path / file).write_text("")
    (tmp_path / "v4_weights").mkdir()
    monkeypatch.setattr(models, "HERE", tmp_path)
    assert models.names() == ["v1_a", "v2", "v7_MyNet", "v10_b"]
    assert models.resolve("v1") == "v1_a"
    assert models.resolve("v2") == "v2"
    assert models.resolve("v7") == models.resolve("v7_mynet") == "v7_MyNet"
    assert models.resolve("v10") == "v10_b"
    (tmp_path / "v10_c.py").write_text("")
    with pytest.raises(models.UnknownModelError, match="ambiguous.*v10_b, v10_c"):
        models.resolve("v10")


@pytest.mark.parametrize("name", VERSIONS)
def test_settings_use_only_known_keys_and_values(name):
    settings = models.load(name).SETTINGS
    assert set(settings) <= models.SETTING_KEYS, set(settings) - models.SETTING_KEYS
    assert settings["optimizer"] in {"sgd", "nesterov", "adam", "adamw"}
    assert settings.get("schedule", "constant") in {"constant", "linear", "exponential", "cosine", "onecycle"}
    assert 40 <= settings["epochs"] <= 400
    assert 0 < settings["patience"]          # >= epochs: no early stopping (v6)
    assert 0 <= settings.get("ema", 0) < 1
    augment.parse(settings.get("augment", "none"))      # a spec the engine reads
    assert settings["batch_size"] in (32, 64, 128)
    assert 0 < settings["learning_rate"] < 1
    if "final_learning_rate" in settings:
        assert 0 < settings["final_learning_rate"] < settings["learning_rate"]
    if settings.get("final_momentum") is not None:
        assert 0 < settings["momentum"] < settings["final_momentum"] < 1


def test_v1_keeps_nouri_net1_constant_rate_and_momentum():
    settings = models.load("v1").SETTINGS
    assert settings["schedule"] == "constant"
    assert settings["final_momentum"] is None     # else the engine's default 0.999 applies
    augment = settings.get("augment", "none")
    assert augment == "none" or set(augment.split(",")) <= {"flip", "rotate", "shift", "scale", "light"}


@pytest.mark.parametrize("grid", [24, 48])
def test_v6_soft_argmax_puts_each_keypoint_at_its_heatmap_peak(grid):
    model = models.load("v6").network(grid=grid)
    head = keras.Model(model.get_layer("heatmaps").output, model.output)
    assert head.input.shape[1:3] == (grid, grid)
    heatmaps = np.zeros((1, grid, grid, 15), np.float32)
    rng = np.random.default_rng(0)
    cells = rng.integers(0, grid, size=(15, 2))                    # (row, col) per keypoint
    for k, (row, col) in enumerate(cells):
        heatmaps[0, row, col, k] = 60.0                            # all the softmax mass there
    out = head.predict(heatmaps, verbose=0)[0]
    cell = 96 / grid
    expected_x = (cells[:, 1] * cell + (cell - 1) / 2 - 48) / 48   # cell centres, unit coords
    expected_y = (cells[:, 0] * cell + (cell - 1) / 2 - 48) / 48
    np.testing.assert_allclose(out[0::2], expected_x, atol=1e-5)
    np.testing.assert_allclose(out[1::2], expected_y, atol=1e-5)
    # A flat heatmap gives the frame's mirror centre, 47.5 px, for every keypoint.
    flat = head.predict(np.zeros_like(heatmaps), verbose=0)[0]
    np.testing.assert_allclose(input_data.keypoints_to_pixels(flat), 47.5, atol=1e-4)
    assert not model.get_layer("soft_argmax").trainable


def test_v6_width_option_scales_channels():
    narrow = models.load("v6").network(width=8)
    assert narrow.get_layer("conv1").filters == 8 and narrow.get_layer("conv4_2").filters == 64
    assert narrow.count_params() < build("v6_resnet_integral").count_params() / 3


def test_v6_deep_blocks_add_residual_blocks_at_12_and_6_px_only():
    deep = models.load("v6").network(deep_blocks=3)
    names = {layer.name for layer in deep.layers}
    assert {"block3", "block3b", "block3c", "block4", "block4b", "block4c"} <= names
    assert "block1b" not in names and "block2b" not in names
    assert deep.get_layer("block4c").output.shape[1:] == (6, 6, 128)
    with pytest.raises(ValueError, match="grid must be 24 or 48"):
        models.load("v6").network(grid=32)


def test_the_shipped_models_describe_themselves_without_the_faces_they_saw():
    """The shipped model.json files say how the model was made, but carry nothing made from the
    course's faces (train.py writes per-face hashes into a run's model.json; the shipped copy
    leaves them out); the embedding names the aligner it ships with (test_predict.py checks that
    model.onnx is model.keras's export)."""
    import json
    shipped = models.shipped_model_path()
    info = json.loads((shipped.parent / "model.json").read_text())
    assert "train_face_hashes" not in info and info["model"] == shipped.parent.name
    assert info["epochs_run"] == info["settings"]["epochs"] and info["train_faces"] > 0
    embedding_info = json.loads((models.HERE / "face_embedding" / "model.json").read_text())
    assert "train_face_hashes" not in embedding_info
    assert (models.HERE / "face_embedding" / embedding_info["align_model"]).is_file()


@pytest.mark.parametrize("name", VERSIONS)
def test_settings_read_without_importing_are_the_modules_own(name):
    """train.py reads SETTINGS from the file (no Keras) to check its options first."""
    assert models.settings(name) == getattr(models.load(name), "SETTINGS", {})


@pytest.mark.parametrize("body, expected", [
    ('SETTINGS = {"epochs": 3}\n', {"epochs": 3}),
    ('SETTINGS = dict(epochs=3, augment="flip")\n', {"epochs": 3, "augment": "flip"}),
    ('EPOCHS = 7\nSETTINGS = {"epochs": EPOCHS}\n', {"epochs": 7}),            # not a literal
    ('SETTINGS = {"epochs": 3}\nSETTINGS["epochs"] = 9\n', {"epochs": 9}),      # changed later
    ('SETTINGS = {"epochs": 3}\nSETTINGS.update(epochs=8)\n', {"epochs": 8}),
    ('x = 1\n', {}),
])
def test_settings_of_a_students_version_read_or_imported(body, expected, monkeypatch, tmp_path):
    import importlib
    import sys
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "__init__.py").write_text((models.HERE / "__init__.py").read_text())
    (folder / "v9_mine.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [n for n in sys.modules if n == "models" or n.startswith("models.")]:
        monkeypatch.delitem(sys.modules, name)
    fresh = importlib.import_module("models")
    assert fresh.settings("v9") == expected
