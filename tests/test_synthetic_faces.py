"""Tests for synthetic_faces: keypoint statistics, faces drawn on their keypoints, Kaggle's
missing labels, the written files, learnability by a small convnet, and identities.

Run: .venv/bin/python -m pytest tests/test_synthetic_faces.py -q
The checks against Kaggle's real tables run only when ../shared/data (or $FKD_SHARED_DATA) is there.
"""
import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

import cli
import input_data
import synthetic_faces as sf

# As in conftest.py: the real tables beside the repo, or where FKD_SHARED_DATA says.
SHARED_DATA = Path(os.environ.get("FKD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
REAL_TABLE = SHARED_DATA / "fkd" / "training_keypoints_only.csv"
REAL_LOOKUP = SHARED_DATA / "fkd" / "IdLookupTable.csv"
needs_real_data = pytest.mark.skipif(not REAL_TABLE.exists(), reason=f"real data not present at {SHARED_DATA}")

INDEX = {name: k for k, name in enumerate(sf.KEYPOINT_NAMES)}


def point(keypoints30, name):
    return keypoints30.reshape(-1, 2)[INDEX[name]]


def brightness(image, xy, radius=1):
    """Mean grey level of the (2 radius + 1)^2 pixels around xy."""
    x, y = int(round(float(xy[0]))), int(round(float(xy[1])))
    return image[max(y - radius, 0):y + radius + 1, max(x - radius, 0):x + radius + 1].astype(float).mean()


def cheek(keypoints30, side):
    """Halfway between an eye centre and the mouth corner on that side: plain skin."""
    return (point(keypoints30, f"{side}_eye_center") + point(keypoints30, f"mouth_{side}_corner")) / 2


@pytest.fixture(scope="module")
def samples():
    return sf.sample_keypoints(20000, np.random.default_rng(0))


@pytest.fixture(scope="module")
def faces():
    return sf.make_faces(300, seed=7)


@pytest.fixture(scope="module")
def real_complete_rows():
    pd = pytest.importorskip("pandas")
    return pd.read_csv(REAL_TABLE)[sf.COLUMNS].dropna().to_numpy(np.float64)


def model_covariance():
    return (sf.PC_AXES.T * sf.PC_STD ** 2) @ sf.PC_AXES + np.diag(sf.RESIDUAL_STD ** 2)


def correlation(covariance):
    sd = np.sqrt(np.diag(covariance))
    return covariance / np.outer(sd, sd)


# ---------------------------------------------------------------------------------------
# Keypoint statistics

def test_sampled_keypoints_follow_the_stored_statistics(samples):
    assert samples.shape == (20000, 30) and samples.dtype == np.float32
    covariance = model_covariance()
    np.testing.assert_allclose(samples.mean(axis=0), sf.KEYPOINT_MEAN, atol=1.0)
    np.testing.assert_allclose(samples.std(axis=0), np.sqrt(np.diag(covariance)), rtol=0.15)
    assert np.abs(np.corrcoef(samples.T) - correlation(covariance)).max() < 0.05


def test_sampled_keypoints_are_inside_the_frame_and_the_right_way_round(samples):
    assert samples.min() >= sf.FRAME_MARGIN and samples.max() <= 95 - sf.FRAME_MARGIN
    # 'left' is the subject's left: on the image's right.
    assert (samples[:, 0] > samples[:, 2]).all()
    assert (point(samples.T, "mouth_center_bottom_lip")[1] > point(samples.T, "nose_tip")[1]).mean() > 0.99


@needs_real_data
def test_sampled_keypoints_follow_the_real_table(samples, real_complete_rows):
    real = real_complete_rows
    assert real.shape == (2140, 30)
    np.testing.assert_allclose(samples.mean(axis=0), real.mean(axis=0), atol=1.0)
    np.testing.assert_allclose(samples.std(axis=0), real.std(axis=0), rtol=0.15)
    difference = np.abs(np.corrcoef(samples.T) - np.corrcoef(real.T))
    assert difference.mean() < 0.03 and difference.max() < 0.2


@needs_real_data
def test_stored_numbers_are_what_fit_keypoint_stats_computes(capsys):
    fitted = sf.fit_keypoint_stats(REAL_TABLE)
    assert "KEYPOINT_MEAN = np.array(" in capsys.readouterr().out
    np.testing.assert_allclose(sf.KEYPOINT_MEAN, fitted["mean"], atol=0.006)
    np.testing.assert_allclose(sf.PC_STD, fitted["pc_std"], atol=1e-4)
    np.testing.assert_allclose(sf.PC_AXES, fitted["pc_axes"], atol=1e-4)
    np.testing.assert_allclose(sf.RESIDUAL_STD, fitted["residual_std"], atol=1e-4)
    assert sf.KAGGLE_PRESENCE_PATTERNS == fitted["patterns"]


# ---------------------------------------------------------------------------------------
# The face parts are drawn on their keypoints

def test_pupils_are_dark_spots_on_the_eye_centres(faces):
    images, keypoints = faces
    darker, distances = [], []
    for image, kp in zip(images, keypoints):
        smooth = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.0)
        for side in ("left", "right"):
            eye = point(kp, f"{side}_eye_center")
            darker.append(brightness(image, eye) < brightness(image, cheek(kp, side)) - 20)
            x, y, r = int(round(eye[0])), int(round(eye[1])), 4
            window = smooth[y - r:y + r + 1, x - r:x + r + 1]
            if window.shape == (2 * r + 1, 2 * r + 1):
                dy, dx = np.unravel_index(window.argmin(), window.shape)
                distances.append(np.hypot(x - r + dx - eye[0], y - r + dy - eye[1]))
    assert np.mean(darker) >= 0.98
    # The darkest spot near an eye centre is the pupil, on the keypoint (to the pixel grid).
    assert np.mean(np.array(distances) < 2.5) >= 0.95


def test_mouth_and_nostrils_are_drawn_on_their_keypoints(faces):
    images, keypoints = faces
    mouth, nostrils = [], []
    for image, kp in zip(images, keypoints):
        top, bottom = point(kp, "mouth_center_top_lip"), point(kp, "mouth_center_bottom_lip")
        lips = (top + bottom) / 2
        mouth.append(brightness(image, lips) < brightness(image, cheek(kp, "left")) - 10)
        # Nostrils sit either side just below the tip, which carries a highlight.
        across = point(kp, "left_eye_center") - point(kp, "right_eye_center")
        distance = np.hypot(*across)
        ex = across / distance
        ey = np.array([-ex[1], ex[0]])
        tip = point(kp, "nose_tip")
        holes = [tip + sign * 0.11 * distance * ex + 3.5 * ey for sign in (-1, 1)]
        nostrils.append(np.mean([brightness(image, h, 0) for h in holes]) < brightness(image, tip) - 10)
    assert np.mean(mouth) >= 0.98
    assert np.mean(nostrils) >= 0.95


def test_eyebrows_are_dark_strokes_through_their_ends():
    # Without an arch the brow's middle is halfway between its two keypoints.
    people = [replace(t, brow_arch=0.0) for t in sf.make_identities(150, seed=3)]
    images, keypoints = sf.make_faces(150, seed=8, identities=people)
    darker = []
    for image, kp in zip(images, keypoints):
        for side in ("left", "right"):
            middle = (point(kp, f"{side}_eyebrow_inner_end") + point(kp, f"{side}_eyebrow_outer_end")) / 2
            darker.append(brightness(image, middle) < brightness(image, cheek(kp, side)) - 15)
    assert np.mean(darker) >= 0.97


def test_images_are_8_bit_and_vary(faces):
    images, keypoints = faces
    assert images.shape == (300, 96, 96) and images.dtype == np.uint8
    assert keypoints.shape == (300, 30) and keypoints.dtype == np.float32
    means = images.reshape(300, -1).mean(axis=1)
    assert means.std() > 10  # lighting, skin and background differ from face to face


# ---------------------------------------------------------------------------------------
# Determinism and Kaggle's missing labels

def test_same_seed_same_faces():
    images, keypoints = sf.make_faces(12, seed=3)
    again_images, again_keypoints = sf.make_faces(12, seed=3)
    np.testing.assert_array_equal(images, again_images)
    np.testing.assert_array_equal(keypoints, again_keypoints)
    other_images, other_keypoints = sf.make_faces(12, seed=4)
    assert not np.array_equal(images, other_images) and not np.array_equal(keypoints, other_keypoints)
    # The first faces do not depend on how many are made, nor on missing labels.
    first_images, first_keypoints = sf.make_faces(5, seed=3)
    np.testing.assert_array_equal(first_images, images[:5])
    np.testing.assert_array_equal(first_keypoints, keypoints[:5])
    masked_images, masked_keypoints = sf.make_faces(12, seed=3, missing="kaggle")
    np.testing.assert_array_equal(masked_images, images)
    present = ~np.isnan(masked_keypoints)
    np.testing.assert_array_equal(masked_keypoints[present], keypoints[present])


def test_kaggle_missingness_fractions():
    absent = sf.kaggle_missing_mask(20000, np.random.default_rng(1))
    assert (absent[:, 0::2] == absent[:, 1::2]).all()  # x and y go together
    present = ~absent[:, 0::2]
    four = np.zeros(15, bool)
    four[[INDEX[n] for n in ("left_eye_center", "right_eye_center", "nose_tip", "mouth_center_bottom_lip")]] = True
    total = sum(count for _, count in sf.KAGGLE_PRESENCE_PATTERNS)
    assert abs((present == four).all(axis=1).mean() - 4755 / total) < 0.015   # ~68%
    assert abs(present.all(axis=1).mean() - 2140 / total) < 0.015              # ~30%
    assert present[:, INDEX["nose_tip"]].all()

    _, keypoints = sf.make_faces(60, seed=2, missing="kaggle")
    patterns = {p for p, _ in sf.KAGGLE_PRESENCE_PATTERNS}
    for row in keypoints:
        assert "".join("0" if np.isnan(v) else "1" for v in row[0::2]) in patterns
    with pytest.raises(ValueError):
        sf.make_faces(2, missing="sometimes")


@needs_real_data
def test_kaggle_missingness_matches_the_real_table():
    pd = pytest.importorskip("pandas")
    real_present = pd.read_csv(REAL_TABLE)[sf.COLUMNS].notna().to_numpy().mean(axis=0)
    present = ~sf.kaggle_missing_mask(20000, np.random.default_rng(2))
    np.testing.assert_allclose(present.mean(axis=0), real_present, atol=0.015)


# ---------------------------------------------------------------------------------------
# Files in Kaggle's format

def read_lines(path):
    return Path(path).read_text().splitlines()


def test_written_files_have_kaggles_format(tmp_path):
    paths = sf.write_kaggle_files(tmp_path, n_train=30, n_test=10, seed=1, missing="kaggle")
    assert set(paths) == {"training", "test", "IdLookupTable"}

    lines = read_lines(paths["training"])
    assert lines[0] == ",".join(sf.COLUMNS + ["Image"]) and len(lines) == 31
    cells = lines[1].split(",")
    pixels = np.array(cells[-1].split(), int)
    assert len(cells) == 31 and pixels.size == 96 * 96 and 0 <= pixels.min() <= pixels.max() <= 255

    images, keypoints = sf.make_faces(30, seed=1, missing="kaggle")
    X, Y = input_data.load(paths["training"], complete_only=False)
    assert X.shape == (30, 96, 96, 1) and X.dtype == np.float32
    np.testing.assert_allclose(X[..., 0], images / 255.0, atol=1e-6)
    np.testing.assert_array_equal(np.isnan(Y), np.isnan(keypoints))
    np.testing.assert_allclose(Y, (keypoints - 48) / 48, atol=1e-4)  # NaN compare equal here

    lines = read_lines(paths["test"])
    assert lines[0] == "ImageId,Image" and len(lines) == 11
    ids, X_test = input_data.load_test(paths["test"])
    np.testing.assert_array_equal(ids, np.arange(1, 11))
    assert X_test.shape == (10, 96, 96, 1) and not np.array_equal(X_test, X[:10])

    lines = read_lines(paths["IdLookupTable"])
    assert lines[0] == "RowId,ImageId,FeatureName,Location"
    rows = [line.split(",") for line in lines[1:]]
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    assert all(len(r) == 4 and r[3] == "" for r in rows)
    asked = {}
    for _, image_id, feature, _ in rows:
        asked.setdefault(int(image_id), []).append(feature)
    assert sorted(asked) == list(range(1, 11))
    # Like Kaggle: the first third of the images ask for all 30 values, the rest for 8.
    assert [asked[i] for i in (1, 2, 3)] == [sf.COLUMNS] * 3
    assert all(asked[i] == sf.FEW_FEATURES for i in range(4, 11))


@needs_real_data
def test_lookup_features_are_kaggles():
    pd = pytest.importorskip("pandas")
    real = pd.read_csv(REAL_LOOKUP).groupby("ImageId").FeatureName.apply(list)
    eight = [features for features in real if len(features) == 8]
    assert eight and all(features == sf.FEW_FEATURES for features in eight)
    assert all(features == sf.COLUMNS for features in real if len(features) == 30)


def test_command_line_writes_files_and_preview(tmp_path, capsys):
    preview = tmp_path / "preview.png"
    sf.main(["--out", str(tmp_path / "out"), "--n-train", "20", "--n-test", "6", "--seed", "2",
             "--missing", "kaggle", "--preview", str(preview)])
    printed = capsys.readouterr().out
    for name in ("training.csv", "test.csv", "IdLookupTable.csv"):
        assert (tmp_path / "out" / name).is_file() and name in printed
    assert cv2.imread(str(preview)) is not None


def refused(argv, capsys):
    """(exit status, stderr) of the command as a user runs it."""
    with pytest.raises(SystemExit) as stopped:
        cli.run(sf.main, [str(a) for a in argv])
    return stopped.value.code, capsys.readouterr().err


@pytest.mark.parametrize("present", [["training.csv", "test.csv", "IdLookupTable.csv"], ["training.zip"],
                                     ["preview.png"]])
def test_command_line_never_replaces_files_unasked(tmp_path, capsys, present):
    """--out data/ with Kaggle's files (or a zip that a training.csv would shadow, or --preview's
    picture) already there: refused before any work, naming the file; --overwrite replaces."""
    out = tmp_path / "data"
    out.mkdir()
    kept = {name: f"the user's own {name}\n" for name in present}
    for name, text in kept.items():
        (out / name).write_text(text)
    argv = ["--out", out, "--n-train", "3", "--n-test", "2", "--preview", out / "preview.png"]
    status, err = refused(argv, capsys)
    assert status == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("error: --out") and present[0] in err and "--overwrite" in err, err
    assert {p.name: p.read_text() for p in out.iterdir()} == kept        # untouched, nothing added
    sf.main([str(a) for a in argv + ["--overwrite"]])
    assert (out / "training.csv").read_text().startswith(",".join(input_data.COLUMNS))
    assert (out / "preview.png").read_bytes() != kept.get("preview.png", "").encode()


# ---------------------------------------------------------------------------------------
# A small convnet learns the keypoints from the pixels

def test_a_small_convnet_learns_the_keypoints():
    keras = pytest.importorskip("keras")
    images, keypoints = sf.make_faces(1800, seed=11)
    X = input_data.images_to_unit(images)
    Y = input_data.keypoints_to_unit(keypoints)
    X_train, Y_train, X_val, Y_val = X[:1500], Y[:1500], X[1500:], Y[1500:]

    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((96, 96, 1)),
        layers.AveragePooling2D(2),  # 48x48 is plenty for this and keeps the test fast
        layers.Conv2D(16, 3, activation="relu", padding="same"), layers.MaxPooling2D(2),
        layers.Conv2D(32, 3, activation="relu", padding="same"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu", padding="same"), layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dense(30),
    ])
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    model.fit(X_train, Y_train, batch_size=32, epochs=12, verbose=0)

    rmse = np.sqrt(np.mean((model.predict(X_val, verbose=0) - Y_val) ** 2)) * 48
    mean_shape_rmse = np.sqrt(np.mean((Y_train.mean(axis=0) - Y_val) ** 2)) * 48
    assert rmse < 0.7 * mean_shape_rmse, (rmse, mean_shape_rmse)


# ---------------------------------------------------------------------------------------
# Identities

def test_identities_are_fixed_and_differ():
    people = sf.make_identities(20, seed=5)
    assert people == sf.make_identities(20, seed=5)
    vectors = np.array([p.as_vector() for p in people])
    distances = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
    assert (distances + np.eye(20) > 0).all()
    # One person, the same keypoints and the same camera: the same picture.
    keypoints = sf.sample_keypoints(1, np.random.default_rng(0))[0]
    first = sf.render_face(keypoints, np.random.default_rng(1), people[0])
    np.testing.assert_array_equal(first, sf.render_face(keypoints, np.random.default_rng(1), people[0]))
    assert not np.array_equal(first, sf.render_face(keypoints, np.random.default_rng(1), people[1]))
    with pytest.raises(ValueError):
        sf.make_faces(2, person_ids=[0, 1])


ALIGN_ON = [INDEX[n] for n in ("left_eye_center", "right_eye_center", "nose_tip", "mouth_center_bottom_lip")]


def aligned_face(image, keypoints30):
    """Warp a face so that its eyes, nose and mouth land on the mean positions; remove the
    lighting (subtract a heavy blur); return the inner face as a unit vector."""
    source = keypoints30.reshape(-1, 2)[ALIGN_ON].astype(np.float32)
    target = sf.KEYPOINT_MEAN.reshape(-1, 2)[ALIGN_ON].astype(np.float32)
    matrix, _ = cv2.estimateAffinePartial2D(source, target)
    warped = cv2.warpAffine(image, matrix, (96, 96), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    detail = warped - cv2.GaussianBlur(warped, (0, 0), 8)
    vector = cv2.resize(detail[8:92, 8:88], (40, 42), interpolation=cv2.INTER_AREA).ravel()
    vector -= vector.mean()
    return vector / np.linalg.norm(vector)


def test_images_of_one_person_look_alike():
    n_people, per_person = 12, 6
    people = sf.make_identities(n_people, seed=4)
    person_ids = np.repeat(np.arange(n_people), per_person)
    images, keypoints = sf.make_faces(len(person_ids), seed=104, identities=people, person_ids=person_ids)
    vectors = np.array([aligned_face(i, k) for i, k in zip(images, keypoints)])
    distances = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
    same = person_ids[:, None] == person_ids[None]
    others = ~np.eye(len(person_ids), dtype=bool)
    assert distances[same & others].mean() < distances[~same].mean()
    # Nearest neighbour among the other images names the person far above chance (1/12).
    nearest = np.where(others, distances, np.inf).argmin(axis=1)
    assert (person_ids[nearest] == person_ids).mean() >= 0.5


def test_cli_checks_every_setting_before_writing(tmp_path, capsys):
    import cli
    for argv, option in ([["--n-train", "0"], "--n-train"], [["--n-test", "-3"], "--n-test"],
                         [["--seed", "x"], "--seed"]):
        with pytest.raises(SystemExit) as exit:
            sf.main(argv + ["--out", str(tmp_path / "s")])
        assert exit.value.code == 2 and option in capsys.readouterr().err
    with pytest.raises(cli.UsageError, match="--n-train: got 1000000000; must be at most 100,000"):
        sf.main(["--n-train", "1000000000", "--out", str(tmp_path / "s")])
    with pytest.raises(cli.UsageError, match="--preview: got .*p.jpg'; must be a .png"):
        sf.main(["--n-train", "3", "--preview", str(tmp_path / "p.jpg"), "--out", str(tmp_path / "s")])
    assert not list(tmp_path.rglob("*.csv"))


def test_kaggle_files_writes_synthetic_faces_only_without_kaggles(tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr(sf, "write_kaggle_files", lambda out: written.append(out) or
                        input_data.write_csv(Path(out) / "training.csv", *sf.make_faces(3, seed=0)))
    files, synthetic = sf.kaggle_files(tmp_path)
    assert synthetic and written == [tmp_path / "synthetic"]
    assert files["training"] == tmp_path / "synthetic" / "training.csv"
    files, synthetic = sf.kaggle_files(tmp_path)                      # already there: not rewritten
    assert synthetic and len(written) == 1
    input_data.write_csv(tmp_path / "training.csv", *sf.make_faces(3, seed=1))
    files, synthetic = sf.kaggle_files(tmp_path)
    assert not synthetic and files["training"] == tmp_path / "training.csv"
