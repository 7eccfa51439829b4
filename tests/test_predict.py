"""predict.py: the crop -> predict -> map-back geometry, detection on real photos, every kind of
bad file, the CSV and the embedded demo. Runs without ../shared (those tests skip) and without
a shipped model (stub models, or a small untrained Keras model where only geometry matters)."""
import csv

import numpy as np
import pytest
from PIL import Image

import augment
import input_data
import predict
import synthetic_faces
from input_data import Frame


class ConstantModel:
    """A stand-in network: every crop gets the same keypoints (unit coordinates)."""

    def __init__(self, keypoints_px):
        self.unit = input_data.keypoints_to_unit(np.asarray(keypoints_px).reshape(1, 30))
        self.seen = []

    def predict_on_batch(self, X):
        self.seen.append(np.asarray(X))
        return np.repeat(self.unit, len(X), axis=0)


@pytest.fixture(scope="module")
def keras_model_path(tmp_path_factory):
    """A small untrained Keras model saved as .keras (only the plumbing matters)."""
    import models
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    models.load("v1").network(units=4).save(path)
    return path


def paste(face, scale, x0, y0, size):
    """The 96x96 face drawn into a (h, w) canvas so that photo = scale * frame + (x0, y0)."""
    import cv2
    matrix = np.array([[scale, 0, x0], [0, scale, y0]], np.float64)
    return cv2.warpAffine(face, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=90)


# ---------------------------------------------------------------------------------------
# Geometry.

def test_crop_predict_map_back_on_a_pasted_synthetic_face():
    images, keypoints = synthetic_faces.make_faces(1, seed=3)
    face, truth_frame_px = images[0], keypoints[0].reshape(15, 2)
    scale, x0, y0 = 1.7, 57.3, 31.6
    canvas = paste(face, scale, x0, y0, (400, 300))
    frame = Frame(x0 + 48 * scale, y0 + 48 * scale, 96 * scale)     # the known box
    model = ConstantModel(keypoints[0])                               # "predicts" the truth

    faces = predict.predict_keypoints(canvas, model=model, frames=[frame], refine=False, flip_tta=False)

    assert len(faces) == 1
    got = faces[0]
    assert got.frame == frame and got.box is None
    np.testing.assert_allclose(got.keypoints, truth_frame_px * scale + [x0, y0], atol=1e-4)
    assert got.crop.dtype == np.uint8 and got.crop.shape == (96, 96)
    # The crop is the face that was pasted (resampled twice, so not bit for bit).
    difference = np.abs(got.crop.astype(float) - face.astype(float))
    assert difference[4:-4, 4:-4].mean() < 4
    assert np.corrcoef(got.crop[4:-4, 4:-4].ravel(), face[4:-4, 4:-4].ravel())[0, 1] > 0.97
    # The network got that crop, scaled to [0, 1] by input_data.images_to_unit.
    np.testing.assert_array_equal(model.seen[0], input_data.images_to_unit(got.crop[None]))
    # crop_faces is the same crop.
    np.testing.assert_array_equal(predict.crop_faces(canvas, [frame])[0], got.crop)
    # The CSV row: the crop square and the keypoints in photo pixels.
    row = predict.csv_rows(predict.Path("ann/1.jpg"), "ann", faces)[0]
    assert (float(row["x0"]), float(row["y0"]), float(row["size"])) == pytest.approx(
        (x0, y0, 96 * scale), abs=0.006)
    assert float(row["nose_tip_x"]) == pytest.approx(truth_frame_px[10, 0] * scale + x0, abs=0.006)


class EyeFinder:
    """A stand-in network that really looks: it finds the two bright blobs (the eyes) in the
    crop and places a reference face shape by their position and distance."""

    def __init__(self, reference):
        self.reference = np.asarray(reference, np.float64)        # (15, 2), eyes first

    def predict_on_batch(self, X):
        out = []
        ys, xs = np.mgrid[0:96, 0:96]
        for image in np.asarray(X)[..., 0]:
            eyes = []
            for half in (xs >= 48, xs < 48):                        # left eye is on the right
                weight = np.where(half, image, 0.0)
                eyes.append([(weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()])
            out.append(place(self.reference, np.array(eyes)).ravel())
        return input_data.keypoints_to_unit(np.array(out))


def place(reference, eyes):
    """The reference shape moved and scaled so that its eye centres land on `eyes`."""
    ref_eyes = reference[:2]
    k = np.linalg.norm(eyes[0] - eyes[1]) / np.linalg.norm(ref_eyes[0] - ref_eyes[1])
    return (reference - ref_eyes.mean(axis=0)) * k + eyes.mean(axis=0)


def test_refine_recentres_the_crop_and_still_maps_back_exactly():
    import cv2
    reference = synthetic_faces.KEYPOINT_MEAN.reshape(15, 2).astype(np.float64)
    eyes_photo = np.array([[262.0, 141.0], [196.0, 139.0]])          # left eye, right eye
    truth = place(reference, eyes_photo)
    canvas = np.zeros((320, 420), np.float64)
    ys, xs = np.mgrid[0:320, 0:420]
    for x, y in eyes_photo:
        canvas += 250 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 4.0 ** 2))
    canvas = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    # A detector-like first frame: off-centre and too big.
    first = Frame(240.0, 175.0, 190.0)
    model = EyeFinder(reference)

    plain = predict.predict_keypoints(canvas, model=model, frames=[first], refine=False, flip_tta=False)[0]
    refined = predict.predict_keypoints(canvas, model=model, frames=[first], refine=True, flip_tta=False)[0]

    np.testing.assert_allclose(plain.keypoints, truth, atol=0.5)
    np.testing.assert_allclose(refined.keypoints, truth, atol=0.5)
    assert refined.frame != first
    expected = predict.frame_from_keypoints(plain.keypoints)
    assert refined.frame == pytest.approx(expected, abs=1e-6)
    np.testing.assert_array_equal(refined.crop, expected.crop(canvas))
    assert cv2 is not None


def test_flip_tta_is_the_default_and_averages_with_the_mirrored_crop():
    images, keypoints = synthetic_faces.make_faces(1, seed=4)
    model = ConstantModel(keypoints[0])
    plain = predict.predict_keypoints(images[0], model=model, refine=False, flip_tta=False)[0]
    default = predict.predict_keypoints(images[0], model=model, refine=False)[0]
    assert predict.FLIP_TTA and len(model.seen) == 3     # one crop, then the crop and its mirror
    np.testing.assert_array_equal(model.seen[2], model.seen[1][:, :, ::-1])
    # A constant answer is mirrored back (x -> 95 - x, left/right swapped) and averaged with itself.
    mirrored = input_data.keypoints_to_pixels(augment.flip_keypoints(model.unit)).reshape(15, 2)
    np.testing.assert_allclose(default.keypoints, (plain.keypoints + mirrored) / 2, atol=1e-4)


def test_a_96x96_photo_is_one_face_crop_without_detection():
    images, keypoints = synthetic_faces.make_faces(1, seed=5)
    model = ConstantModel(keypoints[0])
    faces = predict.predict_keypoints(images[0], model=model, refine=False, flip_tta=False)
    assert len(faces) == 1
    assert faces[0].frame == Frame(48.0, 48.0, 96.0)
    np.testing.assert_array_equal(faces[0].crop, images[0])            # the identity crop
    np.testing.assert_allclose(faces[0].keypoints, keypoints[0].reshape(15, 2), atol=1e-4)


def test_whole_frame_is_the_centred_square_around_the_photo():
    frame = predict.whole_frame(np.zeros((112, 92), np.uint8))
    assert frame == Frame(46.0, 56.0, 112.0)
    np.testing.assert_allclose(frame.to_frame([[0, 0], [92, 112]]), [[10 * 96 / 112, 0], [102 * 96 / 112, 96]])


def test_box_to_frame_uses_the_calibration():
    fit = predict.calibration()["box_to_frame"]
    frame = predict.box_to_frame((100.0, 50.0, 80.0, 80.0))
    assert frame.cx == pytest.approx(140 + fit["dx"] * 80)
    assert frame.cy == pytest.approx(90 + fit["dy"] * 80)
    assert frame.side == pytest.approx(fit["side"] * 80)
    # The calibrated frame is about the size of the detector box (Haar boxes are tight).
    assert 0.7 < fit["side"] < 1.4 and abs(fit["dx"]) < 0.1 and abs(fit["dy"]) < 0.15


# ---------------------------------------------------------------------------------------
# Detection on real photos.

EXPECTED_FACES = {
    "photos/face_recognition_examples/obama.jpg": 1,
    "photos/face_recognition_examples/biden.jpg": 1,
    "photos/face_recognition_examples/obama-240p.jpg": 1,
    "photos/face_recognition_examples/lin-manuel-miranda.png": 1,      # RGBA
    "photos/face_recognition_examples/alex-lacamoire.png": 1,          # RGBA
    "photos/face_recognition_examples/two_people.jpg": 2,
    "photos/face_recognition_examples/knn_examples/test/obama_and_biden.jpg": 2,
    "photos/face_recognition_examples/knn_examples/test/kit_with_rose.jpg": 2,
    "photos/pypi_sample_images/astronaut.png": 1,
    "photos/pypi_sample_images/grace_hopper.jpg": 1,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_FACES))
def test_detector_finds_the_faces_in_the_shared_photos(shared_data, name):
    gray = predict.read_photo(shared_data / name)
    frames = predict.detect_faces(gray)
    assert len(frames) == EXPECTED_FACES[name]
    sides = [f.side for f in frames]
    assert sides == sorted(sides, reverse=True)                        # largest first
    height, width = gray.shape
    for frame in frames:
        assert 0 <= frame.cx <= width and 0 <= frame.cy <= height
        assert 48 <= frame.side <= max(height, width)


def test_detector_frames_match_the_landmark_frames_of_real_faces(shared_data):
    """On a few labelled photos the calibrated frame is close to input_data.frame_from_68's."""
    import calibrate_detector
    files, _, points = calibrate_detector.load_labelled(shared_data / "cvnd_youtube_faces")
    for i in range(0, 2820, 470):
        gray = input_data.read_gray(shared_data / "cvnd_youtube_faces" / "training" / files[i], exif=False)
        truth = input_data.frame_from_68(points[i])
        frame = predict.detect_faces(gray)[0]
        assert np.hypot(frame.cx - truth.cx, frame.cy - truth.cy) < 0.15 * truth.side, files[i]
        assert 0.7 < frame.side / truth.side < 1.4, files[i]


def test_tiny_and_blank_photos_have_no_face():
    assert predict.detect_faces(np.full((10, 10), 128, np.uint8)) == []
    assert predict.detect_faces(np.full((200, 300), 128, np.uint8)) == []


# ---------------------------------------------------------------------------------------
# Reading every kind of file.

def jpeg_bytes(image, **options):
    import io
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def test_unreadable_files_raise_a_photo_error_naming_file_and_reason(tmp_path):
    good = jpeg_bytes(Image.fromarray(synthetic_faces.make_faces(1)[0][0]).resize((300, 300)))
    cases = {
        "empty.jpg": (b"", "empty file"),
        "text.jpg": (b"this is not a photo\n", "not an image"),
        "corrupt.jpg": (good[:len(good) // 3], "corrupt or truncated"),
        "garbage.png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, ""),
    }
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(predict.PhotoError) as error:
            predict.read_photo(tmp_path / name)
        assert name in str(error.value) and reason in str(error.value)
        assert isinstance(error.value, ValueError)
    with pytest.raises(predict.PhotoError, match="missing.jpg"):
        predict.read_photo(tmp_path / "missing.jpg")


def test_any_colour_mode_and_bit_depth_reads_as_8_bit_gray(tmp_path):
    # CMYK JPEG: pure cyan is light-ish gray, not garbage.
    Image.new("CMYK", (40, 30), (255, 0, 0, 0)).save(tmp_path / "cmyk.jpg")
    gray = predict.read_photo(tmp_path / "cmyk.jpg")
    assert gray.dtype == np.uint8 and gray.shape == (30, 40)
    expected = np.asarray(Image.new("RGB", (1, 1), (0, 255, 255)).convert("L"))[0, 0]
    assert abs(int(gray.mean()) - int(expected)) <= 6

    # 16-bit PNG: the full 16-bit range becomes the full 8-bit range.
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    gray = predict.read_photo(tmp_path / "deep.png")
    assert gray.dtype == np.uint8 and gray.shape == (8, 64)
    assert gray[0, 0] == 0 and gray[0, -1] == 255 and (np.diff(gray[0].astype(int)) >= 0).all()

    # RGBA: transparent parts are white, opaque black stays black.
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:, 10:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    gray = predict.read_photo(tmp_path / "alpha.png")
    assert (gray[:, :10] == 255).all() and (gray[:, 10:] == 0).all()


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40), np.uint8)
    pixels[:, 20:] = 255                                   # left half black, right half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6                                       # "rotate 90 CW to display"
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    gray = predict.read_photo(tmp_path / "rotated.jpg")
    assert gray.shape == (40, 20)
    assert gray[:16].mean() < 30 and gray[24:].mean() > 225   # top black, bottom white


def test_huge_photo_is_read_and_detected_without_trouble(tmp_path):
    Image.new("L", (8000, 8000), 120).save(tmp_path / "huge.jpg")
    gray = predict.read_photo(tmp_path / "huge.jpg")
    assert gray.shape == (8000, 8000)
    assert predict.detect_faces(gray) == []


# ---------------------------------------------------------------------------------------
# Files, the CSV, the command line.

def test_find_photos_lists_images_with_their_person(tmp_path):
    for name in ["a.JPG", "ann/1.png", "ann/deep/2.webp", "bob/x.TIFF", "bob/y.pgm", "notes.txt",
                 "plot-20250101-000000.png", "overlays-20250101-000000/ann/1.png.png",
                 ".hidden/z.jpg", "c.bmp", "d.tif", "e.jpeg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = predict.find_photos(tmp_path)
    assert [(p.as_posix(), person) for p, person in found] == [
        ("a.JPG", ""), ("ann/1.png", "ann"), ("ann/deep/2.webp", "ann"), ("bob/x.TIFF", "bob"),
        ("bob/y.pgm", "bob"), ("c.bmp", ""), ("d.tif", ""), ("e.jpeg", "")]
    assert {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".tif", ".tiff", ".webp"} == set(predict.IMAGE_EXTENSIONS)


def make_bad_folder(folder):
    """One of every kind of file; returns {file: expected status prefix}."""
    images, _ = synthetic_faces.make_faces(1, seed=1)
    (folder / "ann").mkdir(parents=True)
    (folder / "bob").mkdir()
    Image.fromarray(images[0]).save(folder / "ann" / "crop96.png")             # a face crop
    (folder / "ann" / "empty.jpg").write_bytes(b"")
    (folder / "ann" / "text.jpg").write_text("not a photo")
    good = jpeg_bytes(Image.fromarray(images[0]).resize((300, 300)))
    (folder / "bob" / "corrupt.jpg").write_bytes(good[:len(good) // 3])
    Image.new("CMYK", (200, 160), (0, 0, 0, 40)).save(folder / "bob" / "cmyk.jpg")
    Image.fromarray(np.full((120, 90), 30000, np.uint16)).save(folder / "bob" / "deep16.png")
    Image.new("RGBA", (150, 150), (0, 0, 0, 0)).save(folder / "bob" / "alpha.png")
    image = Image.new("L", (120, 80), 200)
    exif = image.getexif()
    exif[0x0112] = 8
    image.save(folder / "bob" / "rotated.jpg", exif=exif)
    Image.new("L", (8000, 8000), 100).save(folder / "huge.jpg")
    Image.new("L", (10, 10), 100).save(folder / "tiny.bmp")
    return {"ann/crop96.png": "ok", "ann/empty.jpg": "unreadable: empty file",
            "ann/text.jpg": "unreadable: not an image", "bob/corrupt.jpg": "unreadable: corrupt",
            "bob/cmyk.jpg": "no_face", "bob/deep16.png": "no_face", "bob/alpha.png": "no_face",
            "bob/rotated.jpg": "no_face", "huge.jpg": "no_face", "tiny.bmp": "no_face"}


def test_cli_reports_every_bad_file_and_writes_csv_plot_overlays(tmp_path, keras_model_path, capsys):
    expected = make_bad_folder(tmp_path)
    summary = predict.main(["--faces", str(tmp_path), "--model", str(keras_model_path), "--no-progress"])

    out = capsys.readouterr().out
    assert "10 photos: 1 faces, 6 without a face, 3 unreadable" in out
    assert (summary.photos, summary.faces, summary.no_face, summary.unreadable) == (10, 1, 6, 3)
    assert summary.csv.name.startswith("prediction-") and summary.csv.parent == tmp_path
    with open(summary.csv, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [dict(zip(header, r)) for r in reader]
    assert header == ["file", "person", "face", "status", "x0", "y0", "size"] + input_data.COLUMNS
    assert header == predict.CSV_COLUMNS and len(header) == 37
    assert {r["file"]: r["status"] for r in rows}.keys() == expected.keys()
    for row in rows:
        assert row["status"].startswith(expected[row["file"]]), row
        assert row["person"] == (row["file"].split("/")[0] if "/" in row["file"] else "")
        coordinates = [row[c] for c in header[4:]]
        if row["status"] == "ok":
            assert row["face"] == "0"
            values = np.array(coordinates, float)
            assert np.isfinite(values).all()
            assert values[:3].tolist() == [0.0, 0.0, 96.0]            # a 96x96 crop is its own frame
        else:
            assert row["face"] == "" and all(v == "" for v in coordinates)
    assert summary.plot.is_file() and summary.plot.name.startswith("plot-")
    overlays = sorted(p.relative_to(summary.overlays).as_posix() for p in summary.overlays.rglob("*.png"))
    assert "ann/crop96.png.png" in overlays and "huge.jpg.png" in overlays
    assert not any("empty" in name for name in overlays)
    assert not (tmp_path / (summary.csv.name + ".tmp")).exists()
    # A second run does not take the first run's outputs for photos.
    assert len(predict.find_photos(tmp_path)) == 10


def test_no_detect_makes_every_photo_one_face(tmp_path, keras_model_path):
    Image.new("L", (92, 112), 128).save(tmp_path / "s1.pgm")
    summary = predict.run(tmp_path, keras_model_path, detect=False, progress=False, timestamp="t")
    rows = list(csv.DictReader(open(tmp_path / "prediction-t.csv")))
    assert summary.faces == 1 and rows[0]["status"] == "ok"
    assert (float(rows[0]["x0"]), float(rows[0]["y0"]), float(rows[0]["size"])) == (-10.0, 0.0, 112.0)


def test_embedded_demo_runs_without_any_data(tmp_path, keras_model_path, monkeypatch):
    pytest.importorskip("skimage")
    faces_dir = tmp_path / "faces"
    monkeypatch.setattr(predict, "DEFAULT_FACES_DIR", faces_dir)
    summary = predict.main(["--model", str(keras_model_path), "--no-progress"])
    assert sorted(p.name for p in (faces_dir / "demo").iterdir()) == ["astronaut.png", "grace_hopper.jpg"]
    rows = list(csv.DictReader(open(summary.csv)))
    assert {(r["file"], r["person"], r["status"]) for r in rows} == {
        ("demo/astronaut.png", "demo", "ok"), ("demo/grace_hopper.jpg", "demo", "ok")}
    assert summary.plot.is_file()


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    import models

    def no_model():
        raise models.NoShippedModelError("no trained model in models/")
    monkeypatch.setattr(models, "shipped_model_path", no_model)
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(SystemExit, match="no trained model"):
        predict.main(["--faces", str(tmp_path)])
    with pytest.raises(SystemExit, match="no such model file"):
        predict.main(["--faces", str(tmp_path), "--model", str(tmp_path / "nope.keras")])
