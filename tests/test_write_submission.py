"""write_submission.py: one checked RowId,Location line per IdLookupTable row, or no file at all."""
import os
import sys
from datetime import datetime
from types import SimpleNamespace

import numpy as np
import pytest

import augment
import cli
import input_data
import synthetic_faces
import train
import write_submission
from input_data import COLUMNS

N_KAGGLE_TEST = 1783
N_KAGGLE_ROWS = 27124


def random_faces(n, seed):
    """Random uint8 images, each with its own brightness, so each gets its own prediction."""
    rng = np.random.default_rng(seed)
    top = rng.integers(1, 256, size=(n, 1, 1))
    return rng.integers(0, top + 1, size=(n, 96, 96)).astype(np.uint8)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny saved Keras model: out_j = w_j * mean(image) + b_j, with w in [-3, 3], so some
    predictions leave [-1, 1] and must be clipped. Returns (path, loaded model)."""
    import keras
    inputs = keras.Input((96, 96, 1), name="image")
    mean = keras.layers.GlobalAveragePooling2D(name="mean")(inputs)
    outputs = keras.layers.Dense(30, name="out")(mean)
    net = keras.Model(inputs, outputs)
    net.get_layer("out").set_weights([np.linspace(-3, 3, 30, dtype=np.float32)[None, :],
                                      np.linspace(-0.5, 0.5, 30, dtype=np.float32)])
    path = tmp_path_factory.mktemp("model") / "model.keras"
    net.save(path)
    return path, train.load_model(path)


@pytest.fixture(scope="module")
def kaggle_size_test_csv(tmp_path_factory):
    """A test.csv with Kaggle's 1,783 ImageIds (1..1783) and random faces."""
    path = tmp_path_factory.mktemp("kaggle_test") / "test.csv"
    return input_data.write_csv(path, random_faces(N_KAGGLE_TEST, seed=0),
                                image_ids=np.arange(1, N_KAGGLE_TEST + 1))


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    """12 test faces whose ImageIds are neither 1..12 nor in the lookup table's order."""
    folder = tmp_path_factory.mktemp("small")
    ids = np.array([205, 17, 3, 98, 44, 1000, 12, 7, 61, 350, 9, 130])
    test = input_data.write_csv(folder / "test.csv", random_faces(len(ids), seed=1), image_ids=ids)
    lookup = synthetic_faces.write_lookup_table(folder / "IdLookupTable.csv", sorted(ids))
    return test, lookup


@pytest.fixture(scope="module")
def kaggle_size_set(kaggle_size_test_csv, tmp_path_factory):
    """Kaggle's 1,783 test ImageIds with a lookup table for them: what --submit accepts."""
    lookup = tmp_path_factory.mktemp("kaggle_lookup") / "IdLookupTable.csv"
    return kaggle_size_test_csv, synthetic_faces.write_lookup_table(lookup, range(1, N_KAGGLE_TEST + 1))


def expected_pixels(predictor, test_csv, flip_tta=False):
    """{ImageId: 30 clipped pixel values}, predicted here independently of write_submission."""
    ids, X = input_data.load_test(test_csv)
    unit = augment.predict_with_flip(predictor, X) if flip_tta else predictor.predict(X, verbose=0)
    pixels = np.clip(input_data.keypoints_to_pixels(unit), 0, 96)
    return dict(zip(ids.tolist(), pixels))


def asked(expected, lookup):
    """The expected value of each lookup row: its image's prediction for its feature."""
    return np.array([expected[image_id][COLUMNS.index(feature)] for _, image_id, feature in lookup])


def read_submission(path):
    text = path.read_bytes().decode()
    lines = text.split("\n")
    assert lines[-1] == "" and "\r" not in text              # LF endings, a final newline
    rows = [line.split(",") for line in lines[1:-1]]
    return lines[0], [int(r) for r, _ in rows], np.array([float(v) for _, v in rows])


def cli_error(argv, capsys):
    """The command line as a user sees it: (exit status, the last line of stderr)."""
    with pytest.raises(SystemExit) as exit:
        cli.run(write_submission.main, [str(a) for a in argv])
    return exit.value.code, capsys.readouterr().err.strip().split("\n")[-1]


def run_cli(out_dir, *args):
    write_submission.main([*map(str, args), "--out-dir", str(out_dir)])
    files = sorted(out_dir.iterdir())
    assert len(files) == 1 and files[0].name.startswith("submission-")   # no temp file left
    return files[0]


def test_real_lookup_table_gives_kaggles_27124_rows(shared_data, model, kaggle_size_test_csv, tmp_path, capsys):
    model_path, net = model
    lookup_path = shared_data / "fkd" / "IdLookupTable.csv"
    path = run_cli(tmp_path / "out", "--model", model_path, "--test", kaggle_size_test_csv,
                   "--lookup", lookup_path)
    assert f"{N_KAGGLE_ROWS} rows for {N_KAGGLE_TEST} test faces" in capsys.readouterr().out

    header, row_ids, values = read_submission(path)
    assert header == "RowId,Location"
    assert row_ids == list(range(1, N_KAGGLE_ROWS + 1))
    assert ((values >= 0) & (values <= 96)).all()
    assert (values == 0).any() and (values == 96).any() and ((values > 0) & (values < 96)).any()

    # Every value is the model's prediction for that lookup row's image and feature.
    lookup = input_data.read_lookup(lookup_path)
    np.testing.assert_allclose(values, asked(expected_pixels(net, kaggle_size_test_csv), lookup), atol=1e-4)
    assert lookup[27123] == (27124, 1783, "mouth_center_bottom_lip_y")   # e.g. the last row

    sample_header, sample_ids, _ = read_submission(shared_data / "fkd" / "SampleSubmission.csv")
    assert (header, row_ids) == (sample_header, sample_ids)


def test_synthetic_lookup_table_without_shared_data(model, small_set, tmp_path):
    model_path, net = model
    test, lookup_path = small_set
    path = run_cli(tmp_path / "out", "--model", model_path, "--test", test, "--lookup", lookup_path)
    header, row_ids, values = read_submission(path)
    lookup = input_data.read_lookup(lookup_path)
    assert header == "RowId,Location"
    assert len(lookup) == len(synthetic_faces.lookup_rows(list(range(12)))) < 12 * 30
    assert row_ids == list(range(1, len(lookup) + 1))
    np.testing.assert_allclose(values, asked(expected_pixels(net, test), lookup), atol=1e-4)


def test_flip_tta_averages_with_the_mirror(model, small_set, tmp_path):
    model_path, net = model
    test, lookup_path = small_set
    path = run_cli(tmp_path / "out", "--model", model_path, "--test", test, "--lookup", lookup_path,
                   "--flip-tta")
    _, _, values = read_submission(path)
    lookup = input_data.read_lookup(lookup_path)
    np.testing.assert_allclose(values, asked(expected_pixels(net, test, flip_tta=True), lookup), atol=1e-4)
    assert np.abs(values - asked(expected_pixels(net, test), lookup)).max() > 1


def test_specialists_are_loaded_lazily_and_used_like_a_model(small_set, tmp_path, monkeypatch):
    test, lookup_path = small_set
    loaded = []

    class Constant:
        def predict(self, X, batch_size=256, verbose=0):
            return np.full((len(X), 30), 0.25, np.float32)

    def load(folder):
        loaded.append(folder)
        return Constant()
    monkeypatch.setitem(sys.modules, "specialists", SimpleNamespace(load=load))
    (tmp_path / "spec").mkdir()
    path = run_cli(tmp_path / "out", "--specialists", tmp_path / "spec", "--test", test, "--lookup", lookup_path)
    assert loaded == [str(tmp_path / "spec")]
    assert set(read_submission(path)[2]) == {60.0}                # 0.25 * 48 + 48


def test_rows_are_pixels_clipped_to_the_frame():
    ids = [5, 6]
    predictions = np.zeros((2, 30), np.float32)
    predictions[0, :5] = [-2.0, -1.0, 0.5, 1.0, 3.0]
    predictions[1, 0] = -1.01
    lookup = [(1, 5, COLUMNS[0]), (2, 5, COLUMNS[1]), (3, 5, COLUMNS[2]), (4, 5, COLUMNS[3]),
              (5, 5, COLUMNS[4]), (6, 6, COLUMNS[0]), (7, 6, COLUMNS[29])]
    rows = write_submission.submission_rows(predictions, ids, lookup)
    assert rows == [(1, 0.0), (2, 0.0), (3, 72.0), (4, 96.0), (5, 96.0), (6, 0.0), (7, 48.0)]


def test_far_outside_the_frame_is_a_broken_model_not_a_clipped_row():
    """Just outside the frame is clipped (above); a frame's width or more outside is refused."""
    predictions = np.zeros((2, 30))
    predictions[0, 1] = 3.0 + 1e-6                               # 192.00005 px
    with pytest.raises(ValueError, match=r"^1 of the 7 predictions asked for are more than a frame's width "
                       r"outside the 96-px frame \(the worst 192 px: the lookup table, row 2, ImageId 5, "
                       r"left_eye_center_y\); not a working keypoint model"):
        write_submission.submission_rows(predictions, [5, 6], [(1, 5, COLUMNS[0]), (2, 5, COLUMNS[1]),
                                         (3, 5, COLUMNS[2]), (4, 5, COLUMNS[3]), (5, 5, COLUMNS[4]),
                                         (6, 6, COLUMNS[0]), (7, 6, COLUMNS[29])])


def test_cli_refuses_a_model_predicting_far_outside_the_frame(small_set, tmp_path, capsys):
    """A model that puts every keypoint 1e6 px away once became a file of 96.0000s, exit 0."""
    import keras
    inputs = keras.Input((96, 96, 1))
    flat = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(30, name="out", kernel_initializer="zeros",
                                 bias_initializer=keras.initializers.Constant(1e6 / 48))(flat)
    wild = tmp_path / "wild.keras"
    keras.Model(inputs, outputs).save(wild)
    test, lookup_path = small_set
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    earlier = out_dir / "submission-2026-11-22T08-12-33.csv"
    earlier.write_text("RowId,Location\n1,48.0000\n")
    with pytest.raises(SystemExit) as exit:
        cli.run(write_submission.main, [str(a) for a in ("--model", wild, "--test", test, "--lookup", lookup_path,
                                                         "--out-dir", out_dir)])
    err = capsys.readouterr().err
    assert exit.value.code == 1 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {wild}: ") and "not a working keypoint model" in err, err
    assert [p.name for p in out_dir.iterdir()] == [earlier.name]
    assert earlier.read_text() == "RowId,Location\n1,48.0000\n"


def test_file_name_is_a_safe_timestamp_and_never_replaces_a_file(tmp_path):
    ids, lookup = [1], [(1, 1, "nose_tip_x")]
    now = datetime(2026, 11, 22, 8, 12, 33)
    first = write_submission.write_submission(np.zeros((1, 30)), ids, lookup, tmp_path, now=now)
    second = write_submission.write_submission(np.ones((1, 30)), ids, lookup, tmp_path, now=now)
    assert first.name == "submission-2026-11-22T08-12-33.csv"
    assert second.name == "submission-2026-11-22T08-12-33-2.csv"
    assert first.read_text() == "RowId,Location\n1,48.0000\n"
    assert second.read_text() == "RowId,Location\n1,96.0000\n"
    assert {p.name for p in tmp_path.iterdir()} == {first.name, second.name}   # no temp file left


# ---------------------------------------------------------------------------------------
# Refusals: a clear error, and nothing in out_dir.

LOOKUP = [(1, 1, "left_eye_center_x"), (2, 1, "nose_tip_y"), (3, 2, "left_eye_center_x")]
GOOD = dict(predictions=np.zeros((2, 30)), ids=[1, 2], lookup=LOOKUP)


@pytest.mark.parametrize("change, message", [
    (dict(lookup=LOOKUP[:1] + [(2, 1, "nose_y")] + LOOKUP[2:]),
     "row 2 (RowId 2, ImageId 1): FeatureName 'nose_y' is not one of the 30 keypoint columns"),
    (dict(lookup=LOOKUP[:2] + [(3, 9, "left_eye_center_x")]),
     "row 3 (RowId 3, left_eye_center_x): ImageId 9 is not among the 2 test images"),
    (dict(lookup=[LOOKUP[0], (1, 1, "nose_tip_y"), LOOKUP[2]]), "row 2: RowId 1, expected 2"),
    (dict(lookup=[LOOKUP[1], LOOKUP[0], LOOKUP[2]]), "row 1: RowId 2, expected 1"),
    (dict(lookup=[(r - 1, i, f) for r, i, f in LOOKUP]), "row 1: RowId 0, expected 1"),
    (dict(lookup=[]), "no rows"),
    (dict(predictions=np.where(np.arange(30) == COLUMNS.index("nose_tip_y"), np.nan, 0.0)[None].repeat(2, 0)),
     "row 2 (RowId 2, ImageId 1, nose_tip_y): the prediction is nan"),
    (dict(predictions=np.zeros((2, 15))), "predictions have shape (2, 15), expected (2, 30)"),
    (dict(predictions=np.zeros((3, 30))), "predictions have shape (3, 30), expected (2, 30)"),
    (dict(predictions=np.zeros(60)), "predictions have shape (60,), expected (2, 30)"),
    (dict(ids=[2, 2]), "ImageId 2 appears 2 times (rows 1, 2)"),
    (dict(lookup=LOOKUP[:2] + [(3, 1, "left_eye_center_x")]),
     "row 3 (RowId 3): asks again for ImageId 1 left_eye_center_x, already asked for in row 1"),
])
def test_refuses_a_bad_submission_and_writes_nothing(tmp_path, change, message):
    out_dir = tmp_path / "submission"
    with pytest.raises(ValueError) as error:                   # DataError is a ValueError
        write_submission.write_submission(**{**GOOD, **change}, out_dir=out_dir)
    assert message in str(error.value)
    assert not out_dir.exists()


def test_nan_where_kaggle_asks_nothing_is_fine(tmp_path):
    predictions = np.zeros((2, 30))
    predictions[1, 1:] = np.nan                                 # image 2 is only asked for column 0
    rows = write_submission.submission_rows(predictions, [1, 2], LOOKUP)
    assert [v for _, v in rows] == [48.0, 48.0, 48.0]


def test_cli_names_the_lookup_file_and_row(model, small_set, tmp_path, capsys):
    model_path, _ = model
    test, lookup_path = small_set
    lines = lookup_path.read_text().split("\n")
    lines[5] = lines[5].replace(lines[5].split(",")[2], "left_ear_x")
    bad_feature = tmp_path / "bad_feature.csv"
    bad_feature.write_text("\n".join(lines))
    lines = lookup_path.read_text().split("\n")
    lines[7] = ",".join([lines[7].split(",")[0], "4242"] + lines[7].split(",")[2:])
    bad_image = tmp_path / "bad_image.csv"
    bad_image.write_text("\n".join(lines))
    for lookup, message in [
            (bad_feature, f"{bad_feature}, row 5 (RowId 5, ImageId 3): FeatureName 'left_ear_x' is not one of"),
            (bad_image, f"{bad_image}, row 7 (RowId 7, {COLUMNS[6]}): ImageId 4242 is not among the 12 test images"),
            (tmp_path / "absent.csv", f"--lookup {tmp_path / 'absent.csv'}: no such file")]:
        status, error = cli_error(["--model", model_path, "--test", test, "--lookup", lookup,
                                   "--out-dir", tmp_path / "out"], capsys)
        assert status == 1 and error.startswith("error: ") and message in error, error
    assert not (tmp_path / "out").exists()


def test_cli_refuses_duplicate_test_ids(model, small_set, tmp_path, capsys):
    model_path, _ = model
    _, lookup_path = small_set
    test = input_data.write_csv(tmp_path / "test.csv", random_faces(3, seed=2), image_ids=[3, 17, 3])
    status, error = cli_error(["--model", model_path, "--test", test, "--lookup", lookup_path,
                               "--out-dir", tmp_path / "out"], capsys)
    assert (status, error) == (1, f"error: {test}: ImageId 3 appears 2 times (rows 1, 3); 1 ImageIds are not unique")
    assert not (tmp_path / "out").exists()


def test_cli_without_data_files_says_where_it_looked(model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, error = cli_error(["--model", model[0]], capsys)
    assert status == 1 and error.startswith("error: no test.csv in data/") and "--test" in error


def test_cli_refuses_a_lookup_asking_twice(model, small_set, tmp_path, capsys):
    test, lookup_path = small_set
    lines = lookup_path.read_text().split("\n")
    _, image_id, feature, _ = lines[1].split(",")
    lines[4] = f"4,{image_id},{feature},"
    twice = tmp_path / "twice.csv"
    twice.write_text("\n".join(lines))
    status, error = cli_error(["--model", model[0], "--test", test, "--lookup", twice,
                               "--out-dir", tmp_path / "out"], capsys)
    assert status == 1 and f"{twice}, row 4 (RowId 4): asks again for ImageId {image_id} {feature}, " \
        "already asked for in row 1" in error
    assert not (tmp_path / "out").exists()


def test_cli_needs_exactly_one_predictor_and_a_message_to_submit(model, capsys):
    for argv in ([], ["--model", "a.keras", "--specialists", "b"], ["--model", "a.keras", "--submit"]):
        with pytest.raises(SystemExit) as exit:
            write_submission.main(argv)
        assert exit.value.code == 2
    assert '--submit needs -m "MESSAGE"' in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# --submit: the kaggle tool when it is there and set up, the how-to otherwise.

@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def fake_kaggle(tmp_path, monkeypatch):
    """A `kaggle` first on PATH that writes its arguments, one a line, to a log."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "kaggle"
    log = tmp_path / "kaggle-args.txt"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{log}'\nexit ${{FAKE_KAGGLE_STATUS:-0}}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return log


def submit_cli(model, kaggle_size_set, out_dir, message="tiny model, flip TTA"):
    test, lookup_path = kaggle_size_set
    return run_cli(out_dir, "--model", model[0], "--test", test, "--lookup", lookup_path,
                   "--submit", "-m", message)


def not_submitted(model, kaggle_size_set, out_dir, capsys):
    """--submit where nothing can be submitted, as a user runs it: (exit status, stdout, the one
    error line, the submission file it still wrote)."""
    test, lookup_path = kaggle_size_set
    with pytest.raises(SystemExit) as exit:
        cli.run(write_submission.main, [str(a) for a in ("--model", model[0], "--test", test, "--lookup",
                                                         lookup_path, "--submit", "-m", "tiny model, flip TTA",
                                                         "--out-dir", out_dir)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    files = sorted(out_dir.iterdir())
    assert len(files) == 1 and files[0].name.startswith("submission-")   # kept, no temp file left
    return exit.value.code, out, err.strip(), files[0]


def test_submit_without_kaggle_tool_prints_how_and_still_writes(model, kaggle_size_set, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(write_submission.shutil, "which", lambda name, *args, **kwargs: None)
    status, out, error, path = not_submitted(model, kaggle_size_set, tmp_path / "out", capsys)
    # Not submitted is a failure of what was asked: `--submit && echo submitted` must not echo.
    assert status == 1 and error == (f"error: not submitted: the `kaggle` command is not on PATH; {path} is "
                                     "written: set the tool up as above, or submit it by hand")
    assert f"wrote {path}" in out and "Not submitted: the `kaggle` command is not on PATH" in out
    for step in ("pip install kaggle", "Create New Token", "~/.kaggle", "chmod 600 ~/.kaggle/kaggle.json",
                 f"kaggle competitions submit -c facial-keypoints-detection -f {path} -m 'tiny model, flip TTA'"):
        assert step in out
    assert read_submission(path)[0] == "RowId,Location"


def test_submit_without_credentials_prints_how(model, kaggle_size_set, tmp_path, fake_kaggle, no_credentials, capsys):
    status, out, error, path = not_submitted(model, kaggle_size_set, tmp_path / "out", capsys)
    assert status == 1 and error.startswith("error: not submitted: the `kaggle` command has no credentials; "
                                            f"{path} is written"), error
    assert "Not submitted: the `kaggle` command has no credentials" in out
    assert not fake_kaggle.exists() and read_submission(path)[0] == "RowId,Location"


@pytest.mark.parametrize("credentials", ["env", "kaggle.json"])
def test_submit_calls_kaggle(model, kaggle_size_set, tmp_path, fake_kaggle, no_credentials, monkeypatch, credentials):
    if credentials == "env":
        monkeypatch.setenv("KAGGLE_USERNAME", "someone")
        monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")
    else:
        (tmp_path / "home" / ".kaggle").mkdir(parents=True)
        (tmp_path / "home" / ".kaggle" / "kaggle.json").write_text('{"username": "someone", "key": "x"}')
    path = submit_cli(model, kaggle_size_set, tmp_path / "out", message="v1 'tiny' $HOME; flip")
    assert fake_kaggle.read_text().split("\n")[:-1] == [
        "competitions", "submit", "-c", "facial-keypoints-detection", "-f", str(path), "-m", "v1 'tiny' $HOME; flip"]


def test_a_failed_kaggle_submit_is_an_error_but_keeps_the_file(model, kaggle_size_set, tmp_path, fake_kaggle,
                                                                no_credentials, monkeypatch):
    monkeypatch.setenv("KAGGLE_API_TOKEN", "token")
    monkeypatch.setenv("FAKE_KAGGLE_STATUS", "1")
    with pytest.raises(cli.InputError, match="^kaggle competitions submit failed"):
        submit_cli(model, kaggle_size_set, tmp_path / "out")
    assert len(list((tmp_path / "out").glob("submission-*.csv"))) == 1


def test_submit_refuses_synthetic_test_faces(model, small_set, tmp_path, fake_kaggle, capsys):
    folder = tmp_path / "data" / "synthetic"
    synthetic = synthetic_faces.write_kaggle_files(folder, n_train=2, n_test=3)
    for test, lookup, reason in [
            (synthetic["test"], synthetic["IdLookupTable"], "holds synthetic faces (synthetic_faces.py writes them"),
            (*small_set, "holds 12 test faces, not Kaggle's 1783 (ImageIds 1-1783)")]:
        status, error = cli_error(["--model", model[0], "--test", test, "--lookup", lookup, "--submit",
                                   "-m", "x", "--out-dir", tmp_path / "out"], capsys)
        assert status == 1 and error.startswith(f"error: --submit: {test} ") and reason in error, error
    assert not fake_kaggle.exists() and not (tmp_path / "out").exists()
