"""predict.py: the crop -> predict -> map-back geometry, detection on real photos, every kind of
bad file, the CSV and the embedded demo. Runs without ../shared (those tests skip) and without
a shipped model (stub models, or a small untrained Keras model where only geometry matters)."""
import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import augment
import cli
import input_data
import predict
import synthetic_faces
from prediction import detection, images, runtime
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
    row = predict.csv_rows("ann/1.jpg", "ann", faces)[0]
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
    refined = predict.predict_keypoints(canvas, model=model, frames=[first], refine=1, flip_tta=False)[0]

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
    assert predict.FLIP_TTA and len(model.seen) == 2     # one crop, then the crop and its mirror
    np.testing.assert_array_equal(model.seen[1][1], model.seen[1][0][:, ::-1])
    # A constant answer is mirrored back (x -> 95 - x, left/right swapped) and averaged with
    # itself: augment.py's rule (predict.py has its own copy so that it needs no TensorFlow).
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


def test_frames_are_snapped_so_that_every_runtime_crops_alike():
    # Two boxes 0.001 px apart (what onnxruntime and onnxruntime-web make of one BlazeFace
    # output) give the same square, and so do keypoints 0.001 px apart.
    assert predict.box_to_frame((100.0, 50.0, 80.0, 80.0)) == predict.box_to_frame((100.001, 49.999, 80.001, 80.0))
    points = np.array([[30.0, 40.0], [60.0, 40.0], [45.0, 55.0], [35.0, 70.0], [55.0, 70.0]])
    assert predict.frame_from_keypoints(points) == predict.frame_from_keypoints(points + 0.001)
    frame = predict.frame_from_keypoints(points)
    assert all(round(v, predict.FRAME_DECIMALS) == v for v in (frame.cx, frame.cy, frame.side))


def test_box_to_frame_uses_the_calibration():
    fit = predict.calibration()["box_to_frame"]
    frame = predict.box_to_frame((100.0, 50.0, 80.0, 80.0))
    assert frame.cx == round(140 + fit["dx"] * 80, predict.FRAME_DECIMALS)
    assert frame.cy == round(90 + fit["dy"] * 80, predict.FRAME_DECIMALS)
    assert frame.side == round(fit["side"] * 80, predict.FRAME_DECIMALS)
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
    """On labelled photos the final crop square is close to input_data.frame_from_68's for 90%
    or more (a Haar box can hold more than the face on a few photos: docs/predict.md)."""
    import calibrate_detector
    files, _, points = calibrate_detector.load_labelled(shared_data / "cvnd_youtube_faces")
    close = []
    for i in range(0, 2820, 141):
        gray = input_data.read_gray(shared_data / "cvnd_youtube_faces" / "training" / files[i], exif=False)
        truth = input_data.frame_from_68(points[i])
        frame = predict.predict_keypoints(gray)[0].frame          # detected, then refined
        close.append(np.hypot(frame.cx - truth.cx, frame.cy - truth.cy) < 0.15 * truth.side
                     and 0.7 < frame.side / truth.side < 1.4)
    assert np.mean(close) >= 0.9, close


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


def test_a_photo_wider_than_opencv_can_warp_is_read_shrunk_not_unreadable(tmp_path):
    """OpenCV's warps stop at 32,767 px a side (`dst.cols < SHRT_MAX`): such a photo is read
    shrunk to MAX_SIDE, so it is searched (no face here) and --no-detect crops it, not `unreadable`."""
    Image.new("L", (40000, 8), 120).save(tmp_path / "wide.png")
    gray, _, shrink = images.read_scaled(tmp_path / "wide.png")
    assert gray.shape == (3, images.MAX_SIDE) and shrink == images.MAX_SIDE / 40000
    for extra, status in (((), "no_face"), (("--no-detect",), "low")):     # a blank crop: below the bar
        assert predict.main([str(tmp_path / "wide.png"), "--out", str(tmp_path / status), "--no-progress",
                             "--no-plot", *extra]) == 0
        [row] = read_rows(next((tmp_path / status).glob("prediction-*.csv")))
        assert row["status"] == status, row["status"]
    assert 0 < float(row["left_eye_center_x"]) < 40000 and float(row["size"]) == pytest.approx(40000, rel=0.01)


def test_a_photo_read_shrunk_has_its_keypoints_in_its_own_pixels(tmp_path, monkeypatch):
    """The faces of a photo read shrunk come back in the photo's pixels: as read whole, up to the
    network's own difference on the smaller face."""
    photo = face_photo(tmp_path / "a.png")                     # 200 x 200
    item = predict.Item(photo, "a.png", "")
    whole = predict.process_photos([(item, None)], predict.Options())[0]
    monkeypatch.setattr(images, "MAX_SIDE", 150)
    shrunk = predict.process_photos([(item, None)], predict.Options())[0]
    assert images.read_scaled(photo)[2] == 150 / 200
    [a], [b] = whole.rows, shrunk.rows
    columns = list(input_data.COLUMNS) + ["x0", "y0", "size"]
    error = np.abs(np.array([float(a[c]) for c in columns]) - [float(b[c]) for c in columns])
    assert error.max() < 3.0, error                            # pixels of the 200-px photo


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
    assert {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".pgm", ".ppm", ".pbm", ".tif", ".tiff", ".webp"} == set(predict.IMAGE_EXTENSIONS)


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


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_cli_reports_every_bad_file_and_writes_csv_and_sheet(tmp_path, capsys):
    expected = make_bad_folder(tmp_path)
    assert predict.main([str(tmp_path), "--no-progress", "--overlays"]) == 0

    out = capsys.readouterr().out
    assert "10 photos: 1 face, 6 without a face, 3 unreadable" in out
    [csv_path] = tmp_path.glob("prediction-*.csv")
    rows = read_rows(csv_path)
    header = list(rows[0].keys())
    assert header == ["file", "person", "frame", "face", "status", "x0", "y0", "size", "roll"] \
        + input_data.COLUMNS + ["confidence"]
    assert header == predict.CSV_COLUMNS
    assert {r["file"]: r["status"] for r in rows}.keys() == expected.keys()
    for row in rows:
        assert row["status"].startswith(expected[row["file"]]), row
        assert row["person"] == (row["file"].split("/")[0] if "/" in row["file"] else "")
        coordinates = [row[c] for c in header[5:]]
        if row["status"] == "ok":
            assert row["face"] == "0"
            values = np.array(coordinates, float)
            assert np.isfinite(values).all()
            assert values[:4].tolist() == [0.0, 0.0, 96.0, 0.0]      # a 96x96 crop is its own frame
            assert 0 < values[-1] <= 1                               # the confidence
        else:
            assert row["face"] == "" and all(v == "" for v in coordinates)
    assert len(list(tmp_path.glob("plot-*.jpg"))) == 1
    [overlays] = tmp_path.glob("overlays-*")
    names = sorted(p.relative_to(overlays).as_posix() for p in overlays.rglob("*.png"))
    assert "ann/crop96.png" in names and "huge.png" in names         # <photo>.png, not .jpg.png
    assert not any("empty" in name for name in names)
    # A second run does not take the first run's outputs for photos.
    assert len(predict.find_photos(tmp_path)) == 10


def test_only_what_is_asked_is_written_and_out_is_respected(tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "results"
    photos.mkdir()
    Image.fromarray(synthetic_faces.make_faces(1, seed=2)[0][0]).save(photos / "a.png")
    assert predict.main([str(photos / "a.png"), "--out", str(out), "--no-progress", "--no-plot"]) == 0
    assert sorted(p.name.split("-")[0] for p in out.iterdir()) == ["prediction"]
    assert list(photos.iterdir()) == [photos / "a.png"]
    rows = read_rows(next(out.glob("prediction-*.csv")))
    assert [r["status"] for r in rows] == ["ok"]


def test_glob_patterns_and_several_paths(tmp_path):
    for name in ["x/1.png", "x/2.png", "y/3.jpg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (50, 40), 90).save(tmp_path / name)
    items = predict.expand_inputs([str(tmp_path / "x" / "*.png"), str(tmp_path / "y")], tmp_path)
    assert [i.name for i in items] == ["x/1.png", "x/2.png", "y/3.jpg"]
    assert [i.person for i in items] == ["", "", ""]
    with pytest.raises(predict.cli.UsageError, match="matches no photo"):
        predict.expand_inputs([str(tmp_path / "*.gif")], tmp_path)
    with pytest.raises(predict.cli.InputError, match="no such file"):
        predict.expand_inputs([str(tmp_path / "missing.jpg")], tmp_path)


def test_no_detect_makes_every_photo_one_face(tmp_path):
    Image.new("L", (92, 112), 128).save(tmp_path / "s1.pgm")
    items = predict.expand_inputs([str(tmp_path)], tmp_path)
    summary = predict.run(items, tmp_path, detect=False, progress=False, timestamp="t")
    rows = read_rows(tmp_path / "prediction-t.csv")
    assert summary.faces == 1 and rows[0]["status"] == "low"              # a blank crop: below the bar
    assert (float(rows[0]["x0"]), float(rows[0]["y0"]), float(rows[0]["size"])) == (-10.0, 0.0, 112.0)


def test_embedded_demo_runs_without_any_data(tmp_path, monkeypatch):
    pytest.importorskip("skimage")
    faces_dir = tmp_path / "faces"
    monkeypatch.setattr(predict, "DEFAULT_FACES_DIR", faces_dir)
    assert predict.main(["--no-progress"]) == 0
    assert sorted(p.name for p in (faces_dir / "demo").iterdir()) == ["astronaut.png", "grace_hopper.jpg"]
    rows = read_rows(next(faces_dir.glob("prediction-*.csv")))
    assert {(r["file"], r["person"], r["status"]) for r in rows} == {
        ("demo/astronaut.png", "demo", "ok"), ("demo/grace_hopper.jpg", "demo", "ok")}
    assert float(rows[0]["confidence"]) > predict.LOW_CONFIDENCE
    assert list(faces_dir.glob("plot-*.jpg"))


def run_cli(*args, cwd=None):
    import subprocess
    import sys
    return subprocess.run([sys.executable, str(predict.HERE / "predict.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("args, status, words", [
    (["--model", "x.txt"], 2, "--model"),
    (["--model", "missing.keras"], 1, "missing.keras"),
    (["--n-plot", "-1"], 2, "--n-plot"),
    (["--workers", "0"], 2, "--workers"),
    (["--low-confidence", "1.5"], 2, "--low-confidence"),
    (["--low-confidence", "nan"], 2, "--low-confidence"),
    (["nothing-here/*.jpg"], 2, "matches no photo"),
    (["no-such-folder"], 1, "no-such-folder"),
])
def test_bad_options_end_in_one_line(tmp_path, args, status, words):
    done = run_cli(*args, "--no-progress", cwd=tmp_path)
    assert done.returncode == status, done.stderr
    lines = done.stderr.strip().splitlines()
    if status == 2 and lines[0].startswith("usage:"):         # argparse's own: usage, then the error
        lines = lines[-1:]
        assert "error: argument" in lines[0]
    assert len(lines) == 1 and "error:" in lines[0] and words in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    import models

    def no_model():
        raise models.NoShippedModelError("no trained model in models/")
    monkeypatch.setattr(models, "shipped_model_path", no_model)
    monkeypatch.setattr(runtime, "_cache", {})
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no trained model"):
        predict.main([str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="no such model file"):
        predict.main([str(tmp_path), "--model", str(tmp_path / "nope.keras")])


# ---------------------------------------------------------------------------------------
# Issue 15, class 6: one file or folder never loses the run.

def test_a_name_that_is_not_utf8_does_not_crash_the_run(tmp_path):
    import os
    folder = tmp_path / "photos"
    folder.mkdir()
    image = synthetic_faces.make_faces(1, seed=6)[0][0]
    name = os.fsdecode(b"caf\xe9-\xff.png")                   # latin-1 bytes: not UTF-8
    try:
        Image.fromarray(image).save(folder / name, format="PNG")
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    done = run_cli(folder, "--overlays", "--no-progress", "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    rows = read_rows(next((tmp_path / "out").glob("prediction-*.csv")))
    assert len(rows) == 1 and rows[0]["status"] == "ok"
    assert len(list((tmp_path / "out").rglob("*.png"))) == 1          # its overlay too


def test_an_unwritable_out_folder_is_refused_before_any_work(tmp_path):
    import os
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        done = run_cli(tmp_path, "--out", locked, "--no-progress")
    finally:
        locked.chmod(0o700)
    assert done.returncode == 2 and "is a file; expected a folder" in done.stderr and "photos:" not in done.stdout
    assert (tmp_path / "file").read_text() == "x"


def test_an_out_path_that_is_a_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    Image.new("L", (50, 40), 90).save(tmp_path / "a.png")
    done = run_cli(tmp_path / "a.png", "--out", tmp_path / "file", "--no-progress")
    assert done.returncode == 2 and "is a file; expected a folder" in done.stderr and "photos:" not in done.stdout
    assert (tmp_path / "file").read_text() == "x"


def test_rows_reach_the_csv_as_each_photo_is_done(tmp_path):
    writer = predict.CsvWriter(tmp_path / "p.csv")
    writer.flushed = -1e9                                        # as if the last flush was long ago
    writer.write(predict.csv_rows("a.png", "", status="no_face"))
    assert len(read_rows(tmp_path / "p.csv")) == 1              # on disk before the run ends
    writer.close()


# ---------------------------------------------------------------------------------------
# Issue 16: the light runtime, turned faces, confidence, videos, pictures.

@pytest.fixture(scope="module")
def astronaut():
    skimage = pytest.importorskip("skimage.data")
    import cv2
    return cv2.cvtColor(skimage.astronaut(), cv2.COLOR_RGB2GRAY)


def test_the_shipped_onnx_is_the_shipped_keras_to_0_01_px(astronaut):
    import models
    import train
    keras_path = models.shipped_model_path()
    onnx_path = keras_path.with_suffix(".onnx")
    predictor = predict.load_model(keras_path)
    assert predictor.path == onnx_path                          # the file shipped beside, not a conversion
    assert predictor.metadata["keras_sha256"] == input_data.file_sha256(keras_path)
    faces = predict.predict_keypoints(astronaut, model=predictor, refine=False, flip_tta=False)
    crops = np.concatenate([np.stack([f.crop for f in faces]),
                            synthetic_faces.make_faces(8, seed=11)[0]])
    keras_model = train.load_model(keras_path)
    X = input_data.images_to_unit(crops)
    theirs = input_data.keypoints_to_pixels(keras_model.predict(X, verbose=0))
    ours, _ = predictor.raw(X)
    assert np.abs(input_data.keypoints_to_pixels(ours) - theirs).max() <= 0.01
    # ... and flip TTA as predict.py does it is augment.predict_with_flip's.
    import augment
    keras_model.mirror_axis = predictor.mirror_axis
    expected = input_data.keypoints_to_pixels(augment.predict_with_flip(keras_model, X)).reshape(-1, 15, 2)
    got, _ = predict.run_network(predictor, crops, flip_tta=True)
    assert np.abs(got - expected).max() <= 0.01


def test_a_folder_run_never_imports_tensorflow(tmp_path):
    import subprocess
    import sys
    for k in range(20):                              # enough photos for the process pool
        image = synthetic_faces.make_faces(1, seed=k)[0][0]
        big = np.pad(np.kron(image, np.ones((2, 2), np.uint8)), 60, mode="edge")
        (tmp_path / "p" / f"s{k // 5}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(big).save(tmp_path / "p" / f"s{k // 5}" / f"{k}.png")
    code = ("import sys, predict; status = predict.main([sys.argv[1], '--out', sys.argv[2], '--no-progress', "
            "'--overlays']); heavy = [m for m in ('tensorflow', 'keras', 'matplotlib', 'onnx') if m in sys.modules]; "
            "print('heavy', heavy); sys.exit(status or bool(heavy))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "p"), str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=predict.HERE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "heavy []" in done.stdout and "20 photos: 20 faces" in done.stdout


@pytest.mark.parametrize("turn", [90, 180, -90, 30])
def test_a_turned_face_is_found_and_its_keypoints_come_back_in_place(turn):
    from PIL import Image as PILImage
    face = synthetic_faces.make_faces(1, seed=7)[0][0]
    photo = np.pad(np.kron(face, np.ones((3, 3), np.uint8)), 90, mode="edge")      # 468 x 468
    upright = predict.predict_keypoints(photo)
    assert len(upright) == 1 and upright[0].roll == 0
    turned = np.asarray(PILImage.fromarray(photo).rotate(turn, resample=PILImage.BILINEAR, expand=True,
                                                         fillcolor=int(photo[0, 0])))
    faces = predict.predict_keypoints(turned)
    # The roll is the crop's turn: the refinement turns the crop again only when the eye line is
    # more than MIN_ROLL off it, so it may stay that far from the face's own.
    assert len(faces) == 1 and faces[0].roll == pytest.approx(turn, abs=predict.MIN_ROLL + 1)
    # The upright keypoints turned counter-clockwise by `turn` about the photo's centre.
    radians = np.deg2rad(turn)
    centre_old = (np.array(photo.shape[::-1]) - 1) / 2
    centre_new = (np.array(turned.shape[::-1]) - 1) / 2
    offset = upright[0].keypoints - centre_old
    expected = np.stack([np.cos(radians) * offset[:, 0] + np.sin(radians) * offset[:, 1],
                         -np.sin(radians) * offset[:, 0] + np.cos(radians) * offset[:, 1]], 1) + centre_new
    iod = np.linalg.norm(expected[0] - expected[1])
    tolerance = 0.01 if turn % 90 == 0 else 0.08 * iod          # exact turns are exact
    assert np.abs(faces[0].keypoints - expected).max() <= tolerance


def test_a_pasted_face_is_more_confident_than_noise(astronaut):
    rng = np.random.default_rng(0)
    face = predict.predict_keypoints(astronaut)[0]
    noise = (rng.random((400, 400)) * 255).astype(np.uint8)
    canvas = noise.copy()
    crop = face.frame.crop(astronaut)
    canvas[100:292, 100:292] = np.kron(crop, np.ones((2, 2), np.uint8))
    [pasted] = predict.predict_keypoints(canvas, frames=[Frame(196, 196, 192)], refine=False)
    [random] = predict.predict_keypoints(noise, frames=[Frame(196, 196, 192)], refine=False)
    assert pasted.confidence > predict.LOW_CONFIDENCE > random.confidence
    assert pasted.confidence > 2 * random.confidence


def test_contact_sheets_for_1_and_600_faces(tmp_path):
    import cv2
    faces, keypoints = synthetic_faces.make_faces(6, seed=8)
    points = keypoints.reshape(-1, 15, 2)
    [one] = predict.plot_faces(tmp_path / "one.jpg", faces[:1], points[:1], ["ann/1.jpg"], [0.3])
    image = cv2.imdecode(np.fromfile(one, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[1] >= predict.SHEET_CELL and image.shape[0] >= predict.SHEET_CELL
    crops = np.repeat(faces, 100, axis=0)
    titles = [f"person{k // 10}/a-rather-long-photo-name-{k}.jpg" for k in range(600)]
    pages = predict.plot_faces(tmp_path / "many.jpg", crops, np.repeat(points, 100, axis=0), titles,
                               [0.05 if k % 7 == 0 else 0.3 for k in range(600)])
    assert len(pages) == 10 and [p.name for p in pages[:2]] == ["many-1.jpg", "many-2.jpg"]
    first = cv2.imdecode(np.fromfile(pages[0], np.uint8), cv2.IMREAD_COLOR)
    assert first.shape[1] == predict.SHEET_COLUMNS * predict.SHEET_CELL      # 2x crops, 8 a row
    # the low-confidence faces are framed in orange: the first cell is one
    cell = first[:predict.SHEET_CELL, :predict.SHEET_CELL].reshape(-1, 3).astype(int)
    orange = (np.abs(cell - predict.COLOURS["low"]).sum(axis=1) < 60).mean()
    assert orange > 0.02
    second = first[:predict.SHEET_CELL, predict.SHEET_CELL:2 * predict.SHEET_CELL].reshape(-1, 3).astype(int)
    assert (np.abs(second - predict.COLOURS["low"]).sum(axis=1) < 60).mean() < 0.005


def test_colour_photos_keep_their_colour_in_the_overlay(tmp_path):
    skimage = pytest.importorskip("skimage.data")
    Image.fromarray(skimage.astronaut()).save(tmp_path / "astro.png")
    assert predict.main([str(tmp_path / "astro.png"), "--overlays", "--no-progress", "--no-plot"]) == 0
    [overlay] = tmp_path.glob("overlays-*/astro.png")
    import cv2
    image = cv2.imdecode(np.fromfile(overlay, np.uint8), cv2.IMREAD_COLOR).astype(int)
    assert np.abs(image[..., 0] - image[..., 2]).mean() > 10          # not gray


def write_video(path, frames=12, size=(320, 240), fps=10):
    import cv2
    face = synthetic_faces.make_faces(1, seed=9)[0][0]
    big = cv2.resize(face, (144, 144))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for k in range(frames):
        canvas = np.full((size[1], size[0]), int(face[0, 0]), np.uint8)
        x = 60 + 4 * k
        canvas[40:184, x:x + 144] = big
        writer.write(cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


@pytest.mark.parametrize("smooth", [True, False])
def test_a_video_gives_one_row_per_frame_and_an_annotated_copy(tmp_path, smooth):
    import cv2
    video = write_video(tmp_path / "clip.avi")
    args = [str(video), "--no-progress"] + ([] if smooth else ["--no-smooth"])
    assert predict.main(args) == 0
    rows = read_rows(next(tmp_path.glob("prediction-*.csv")))
    assert [int(r["frame"]) for r in rows] == list(range(12))
    assert all(r["status"] == "ok" and r["file"] == "clip.avi" for r in rows)
    x = np.array([float(r["nose_tip_x"]) for r in rows])
    assert 5 < np.median(np.diff(x)) * 144 / 96 < 10 or 2 < np.median(np.diff(x)) < 6   # follows the face
    [annotated] = tmp_path.glob("overlays-*/clip.mp4")
    capture = cv2.VideoCapture(str(annotated))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 12
    assert not list(tmp_path.glob("overlays-*/.video-*"))


def test_one_euro_smooths_a_still_point_and_follows_a_moving_one():
    rng = np.random.default_rng(0)
    still = predict.OneEuro()
    out = np.array([still(5 + rng.normal(0, 1), 1 / 30) for _ in range(300)])
    assert out[50:].std() < 0.5                           # the jitter (std 1) mostly gone
    moving = predict.OneEuro()
    out = np.array([moving(10.0 * k, 1 / 30) for k in range(60)])
    assert abs(out[-1] - 590) < 20                        # little lag at speed


def test_a_broken_video_is_a_row_not_the_end_of_the_run(tmp_path):
    Image.fromarray(synthetic_faces.make_faces(1, seed=2)[0][0]).save(tmp_path / "a.png")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    assert predict.main([str(tmp_path), "--no-progress"]) == 0
    rows = read_rows(next(tmp_path.glob("prediction-*.csv")))
    assert {r["file"]: r["status"].split(":")[0] for r in rows} == {"a.png": "ok", "broken.mp4": "unreadable"}


def test_a_missing_camera_is_refused_before_any_work(tmp_path):
    done = run_cli("--camera", "57", "--no-progress", cwd=tmp_path)
    assert done.returncode == 1 and "--camera 57" in done.stderr.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def test_contact_sheet_pages_are_on_disk_as_they_fill(tmp_path):
    faces, keypoints = synthetic_faces.make_faces(3, seed=9)
    entries = [(faces[k % 3], keypoints[k % 3].reshape(15, 2), f"p{k}.jpg", 0.3, False) for k in range(70)]
    sheets = predict.ContactSheets(tmp_path / "plot.jpg", limit=66, per_page=32)
    sheets.add(entries[:40])
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["plot-1.jpg"]      # a stopped run keeps it
    sheets.add(entries[40:])
    pages = sheets.close()
    assert [p.name for p in pages] == ["plot-1.jpg", "plot-2.jpg", "plot-3.jpg"] and sheets.faces == 66
    single = predict.ContactSheets(tmp_path / "one.jpg", per_page=32)
    single.add(entries[:32])
    assert [p.name for p in single.close()] == ["one.jpg"] and not (tmp_path / "one-1.jpg").exists()


def test_a_bad_photo_in_a_group_is_a_row_and_the_others_are_predicted(tmp_path, astronaut):
    import cv2
    good = tmp_path / "astronaut.png"
    cv2.imwrite(str(good), astronaut)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    jobs = [(predict.Item(path, path.name, ""), None) for path in (good, bad, good)]
    results = predict.process_photos(jobs, predict.Options(model=predict.load_model()))
    assert [r.status for r in results] == ["ok", "unreadable", "ok"]
    assert results[1].rows[0]["status"].startswith("unreadable: ")
    assert results[0].rows == results[2].rows                # the same photo, the same answer


def test_the_quick_lbp_cascade_loads_and_haar_is_still_there_without_it(monkeypatch):
    monkeypatch.setattr(detection, "blazeface_faces", lambda gray: [])    # where BlazeFace finds none
    face = synthetic_faces.make_faces(1, seed=7)[0][0]
    photo = np.pad(np.kron(face, np.ones((3, 3), np.uint8)), 90, mode="edge")      # 468 x 468
    assert predict.lbp_cascade() is not None                # from scikit-image's copy, tag mended
    [lbp] = predict.lbp_boxes(photo)
    [quick] = predict.detect_boxes(photo)                   # the LBP box in Haar's terms
    assert predict.box_to_frame(quick) == pytest.approx(predict.box_to_frame(detection._as_haar_box(lbp)))
    haar = predict.detect_boxes(photo, quick=False)
    monkeypatch.setitem(detection._cache, "lbp", None)       # as where scikit-image has no cascade
    assert predict.detect_boxes(photo) == haar and len(haar) == 1


def test_one_pixel_strips_are_photos_without_a_face_not_a_crash(tmp_path):
    Image.fromarray(np.zeros((1, 10000), np.uint8)).save(tmp_path / "strip.png")
    Image.fromarray(np.zeros((10000, 2), np.uint8)).save(tmp_path / "tall.png")
    summary = predict.run(predict.expand_inputs([tmp_path], tmp_path), tmp_path, progress=False, overlays=True)
    assert (summary.photos, summary.no_face) == (2, 2)
    assert sorted(p.name for p in summary.overlays.iterdir()) == ["strip.png", "tall.png"]


def test_faces_side_by_side_are_all_found(monkeypatch):
    # Three faces in a row: on the coarse copy each is near the smallest size it can hold, and a
    # search that stopped at the first face found would keep one of them (the LBP cascade does).
    # The cascades' search, where BlazeFace finds none (it finds two of these three drawn faces;
    # real faces side by side: tests/test_open_world.py).
    monkeypatch.setattr(detection, "blazeface_faces", lambda gray: [])
    faces = synthetic_faces.make_faces(4, seed=7)[0]
    photo = np.hstack([np.pad(np.kron(faces[k], np.ones((2, 2), np.uint8)), 70, mode="edge") for k in (0, 1, 3)])
    centres = sorted(b[0] + b[2] / 2 for b in predict.detect_boxes(photo))
    assert len(centres) == 3
    np.testing.assert_allclose(centres, [166, 498, 830], atol=30)       # one box per face


# ---------------------------------------------------------------------------------------
# Careless and hostile input found by a review (2026-12-03): outputs never land on inputs or on
# each other, links and own outputs are told apart, a broken model is named.

def face_photo(path, seed=11):
    """A synthetic face pasted into a 200x200 photo (a photo, not a 96x96 crop)."""
    face = synthetic_faces.make_faces(1, seed=seed)[0][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(paste(face, 1.4, 33, 33, (200, 200))).save(path)
    return path


def test_a_bar_most_faces_miss_is_used_said_and_not_kept(tmp_path, capsys):
    """--low-confidence is the bar of the run (and its workers'); when most faces fall below it,
    the run says the bar is likely wrong for this model; the module's default is back after.
    Worker processes are started in a fresh process (run_cli), as the other folder-run tests do:
    forked from this long-lived test worker they can inherit its locks."""
    for k in range(12):
        face_photo(tmp_path / "p" / f"{k}.png", seed=k)
    done = run_cli(tmp_path / "p", "--no-progress", "--no-plot", "--no-rotate", "--workers", "2")
    assert done.returncode == 0 and "confidence bar" not in done.stderr, done.stderr
    done = run_cli(tmp_path / "p", "--no-progress", "--no-plot", "--no-rotate", "--workers", "2",
                   "--low-confidence", "0.99")
    assert done.returncode == 0, done.stderr
    assert "note: 12 of 12 faces are below the confidence bar 0.99" in done.stderr
    assert "--low-confidence" in done.stderr
    first, second = sorted((tmp_path / "p").glob("prediction-*.csv"))
    assert [r["status"] for r in read_rows(first)] == ["ok"] * 12
    assert [r["status"] for r in read_rows(second)] == ["low"] * 12        # written, marked below the bar
    assert predict.main([str(tmp_path / "p"), "--no-progress", "--no-plot", "--no-rotate", "--workers", "1",
                         "--low-confidence", "0.99"]) == 0
    assert "note: 12 of 12 faces" in capsys.readouterr().err
    assert predict.LOW_CONFIDENCE == 0.2


def test_own_outputs_are_told_from_photos_named_alike(tmp_path):
    for name in ["plot-twist.jpg", "prediction-day.png", "overlays-holiday/a.jpg", "ann/1.jpg",
                 "ann/plot-20261203-065529_2.jpg", "ann/plot-20261203-065529-3.jpg",
                 "ann/overlays-20261203-065529/1.png", "camera-20261203-065529.mp4"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = [p.as_posix() for p, _ in predict.find_photos(tmp_path, videos=True)]
    assert found == ["ann/1.jpg", "overlays-holiday/a.jpg", "plot-twist.jpg", "prediction-day.png"]


def test_linked_folders_are_read_once_and_broken_links_are_rows(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "bob"
    face_photo(elsewhere / "1.png")
    folder = tmp_path / "class"
    face_photo(folder / "ann" / "1.png")
    try:
        (folder / "bob").symlink_to(elsewhere, target_is_directory=True)
        (folder / "again").symlink_to(elsewhere, target_is_directory=True)
        (folder / "ann" / "up").symlink_to(tmp_path, target_is_directory=True)   # a loop, and the parent
        (folder / "gone.jpg").symlink_to(tmp_path / "no-such.jpg")
    except OSError:
        pytest.skip("no symbolic links here")
    found = [(p.as_posix(), person) for p, person in predict.find_photos(folder)]
    assert found == [("ann/1.png", "ann"), ("bob/1.png", "bob"), ("gone.jpg", "")] or \
        found == [("again/1.png", "again"), ("ann/1.png", "ann"), ("gone.jpg", "")]
    done = run_cli(folder, "--no-progress", "--no-plot", "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    rows = {r["file"]: r["status"] for r in read_rows(next((tmp_path / "out").glob("prediction-*.csv")))}
    assert rows["class/gone.jpg"].startswith("unreadable: cannot open") and len(rows) == 3


def test_a_glob_through_a_link_loop_ends(tmp_path):
    face_photo(tmp_path / "in" / "a" / "1.png")
    try:
        (tmp_path / "in" / "a" / "up").symlink_to(tmp_path / "in", target_is_directory=True)
    except OSError:
        pytest.skip("no symbolic links here")
    assert predict.glob_inputs(str(tmp_path / "in" / "**" / "*.png")) == [tmp_path / "in" / "a" / "1.png"]


def test_overlays_and_annotated_videos_never_share_a_name_or_leave_their_folder(tmp_path):
    photos = tmp_path / "d"
    face_photo(photos / "photo.png")
    (photos / "photo.jpg").write_bytes((photos / "photo.png").read_bytes())
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    write_video(tmp_path / "clip.avi", frames=2)
    (tmp_path / "clip.mp4").write_bytes((tmp_path / "clip.avi").read_bytes())
    done = run_cli("d/photo.png", "d/photo.jpg", "../" + tmp_path.name + "/d/photo.jpg", "clip.avi",
                   "clip.mp4", "--overlays", "--no-progress", "--out", "o", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before        # inputs untouched
    (overlays,) = (tmp_path / "o").glob("overlays-*")
    assert sorted(p.relative_to(overlays).as_posix() for p in overlays.rglob("*") if p.is_file()) == [
        "clip.mp4", "clip.mp4.mp4", "d/photo.jpg.png", "d/photo.png"]


def test_runs_in_the_same_second_write_their_own_files(tmp_path):
    face_photo(tmp_path / "a.png")
    first = predict.run(predict.expand_inputs([tmp_path / "a.png"], tmp_path), tmp_path, ConstantModel(
        np.full(30, 48.0)), progress=False, timestamp="20261203-070000")
    second = predict.run(predict.expand_inputs([tmp_path / "a.png"], tmp_path), tmp_path, ConstantModel(
        np.full(30, 48.0)), progress=False, timestamp="20261203-070000")
    assert first.csv.name == "prediction-20261203-070000.csv"
    assert second.csv.name == "prediction-20261203-070000_2.csv"
    assert first.plots[0] != second.plots[0] and first.plots[0].exists()
    assert len(read_rows(first.csv)) == len(read_rows(second.csv)) == 1


def test_a_video_whose_name_is_not_ascii_or_utf8_is_read(tmp_path):
    import os
    path = tmp_path / os.fsdecode(b"caf\xe9.avi")
    try:                                    # (OpenCV itself crashes on such a name: rename after)
        write_video(tmp_path / "plain.avi", frames=3).rename(path)
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    done = run_cli(path, "--no-progress", "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    rows = read_rows(next((tmp_path / "out").glob("prediction-*.csv")))
    assert [r["frame"] for r in rows] == ["0", "1", "2"]


def onnx_model(path, input_shape=("N", 96, 96, 1), fill=0.0, dtype=None, metadata=None):
    """A one-node ONNX 'keypoint model': the mean pixel times a constant, per coordinate."""
    import onnx
    from onnx import TensorProto, helper
    dtype = dtype or TensorProto.FLOAT
    weights = helper.make_tensor("w", dtype, [1, 30], [fill] * 30)
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=0),
         helper.make_node("Unsqueeze", ["m", "one"], ["m1"]),
         helper.make_node("Mul", ["m1", "w"], ["out"])],
        "stub", [helper.make_tensor_value_info("image", dtype, list(input_shape))],
        [helper.make_tensor_value_info("out", dtype, ["N", 30])],
        initializer=[weights, helper.make_tensor("one", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8                    # what the pinned onnxruntime reads
    onnx.helper.set_model_props(model, metadata or {})
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("kind, words", [
    ("small", "expected float32 [N, 96, 96, 1]"), ("nchw", "expected float32 [N, 96, 96, 1]"),
    ("double", "tensor(double)"), ("nan", "non-finite keypoints"), ("huge", "half-widths"),
    ("axis=abc", "mirror_axis_px is 'abc'"), ("axis=nan", "mirror_axis_px is 'nan'"),
    ("axis=-5", "0 to 96"), ("axis=1e300", "0 to 96"),
    ("bar=abc", "low_confidence is 'abc'"), ("bar=nan", "between 0 and 1"), ("bar=1.5", "between 0 and 1"),
    ("bar=0", "between 0 and 1")])
def test_a_broken_onnx_model_is_one_line_naming_it_and_no_photo_is_blamed(tmp_path, kind, words):
    """...including metadata no export writes: flip TTA mirrors about mirror_axis_px, so a
    mirror axis outside the frame would turn every keypoint into garbage without a word; a
    confidence bar of 0 or over 1 would make every face `ok` or every face `low`."""
    pytest.importorskip("onnx")
    from onnx import TensorProto
    shapes = {"small": ("N", 64, 64, 1), "nchw": ("N", 1, 96, 96)}
    model = onnx_model(tmp_path / "model.onnx", shapes.get(kind, ("N", 96, 96, 1)),
                       fill={"nan": float("nan"), "huge": 1e30}.get(kind, 0.0),
                       dtype=TensorProto.DOUBLE if kind == "double" else None,
                       metadata={"mirror_axis_px" if kind.startswith("axis=") else "low_confidence": kind[kind.find("=") + 1:]}
                       if "=" in kind else None)
    face_photo(tmp_path / "in" / "a.png")
    done = run_cli(tmp_path / "in", "--model", model, "--no-progress")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(model) in lines[0] and words in lines[0], done.stderr
    assert not list((tmp_path / "in").glob("prediction-*.csv"))        # no empty CSV left behind


def test_a_refused_model_leaves_no_output_folder_even_where_no_face_is_found(tmp_path):
    """The model runs once when loaded: a NaN model is refused before --out is made, also for a
    blank photo (no face: the model never ran and the run passed) and a video (its overlay folder)."""
    pytest.importorskip("onnx")
    model = onnx_model(tmp_path / "nan.onnx", fill=float("nan"))
    Image.new("L", (200, 200), 100).save(tmp_path / "blank.png")
    for extra in ((), ("--no-detect",)):
        with pytest.raises(predict.ModelError, match=r"nan\.onnx: the model gives non-finite keypoints"):
            predict.main([str(tmp_path / "blank.png"), str(write_video(tmp_path / "clip.avi", frames=2)),
                          "--out", str(tmp_path / "new" / "out"), "--model", str(model), "--no-progress", *extra])
        assert not (tmp_path / "new").exists()


def test_out_defaults_beside_a_patterns_photos_and_empty_inputs_are_refused(tmp_path):
    face_photo(tmp_path / "photos" / "a.png")
    (tmp_path / "cwd").mkdir()
    (tmp_path / "empty").mkdir()
    done = run_cli(str(tmp_path / "photos" / "*.png"), "--no-progress", "--no-plot", cwd=tmp_path / "cwd")
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "photos").glob("prediction-*.csv")) and not list((tmp_path / "cwd").iterdir())
    for args, status, words in [(["empty"], 1, "no photos or videos"), (["photos", "--out", ""], 2, "--out")]:
        done = run_cli(*args, "--no-progress", cwd=tmp_path)
        assert done.returncode == status and words in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_a_folder_that_cannot_be_listed_is_named_not_skipped(tmp_path, monkeypatch):
    """os.walk drops folders it cannot list unless asked: their photos vanished without a word,
    and a locked folder given alone was reported as holding no photos."""
    face_photo(tmp_path / "in" / "ann" / "a.png")
    locked = tmp_path / "in" / "bob"
    locked.mkdir()
    real_scandir = os.scandir

    def scandir(path="."):
        if os.path.realpath(path) == os.path.realpath(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    empty, unreadable = [], []
    items = predict.expand_inputs([tmp_path / "in"], tmp_path / "in", empty, unreadable)
    assert [item.name for item in items] == ["ann/a.png"]
    assert [Path(error.filename).name for error in unreadable] == ["bob"]
    with pytest.raises(cli.InputError, match=r"bob: cannot list this folder \(Permission denied\)"):
        predict.expand_inputs([locked], tmp_path, [], [])


def test_a_photo_that_cannot_be_opened_is_not_called_corrupt(tmp_path):
    (tmp_path / "folder.jpg").mkdir()
    with pytest.raises(predict.PhotoError, match=r"folder\.jpg: cannot open \(Is a directory\)"):
        predict.read_image(tmp_path / "folder.jpg")


def test_out_that_is_a_file_and_a_run_with_nothing_readable(tmp_path):
    photo = face_photo(tmp_path / "in" / "a.png")
    done = run_cli(photo, "--out", photo, "--no-progress")
    assert done.returncode == 2 and "is a file; expected a folder" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "empty.jpg").write_bytes(b"")
    (tmp_path / "bad" / "clip.mp4").write_bytes(b"not a video")
    done = run_cli(tmp_path / "bad", "--no-progress")
    assert done.returncode == 1 and "none of the 2 inputs could be read" in done.stderr, done.stderr
    csv_files = list((tmp_path / "bad").glob("prediction-*.csv"))
    assert len(csv_files) == 1                                           # the reasons are kept
    assert csv_files[0].read_text().count("unreadable") == 2
    assert not list((tmp_path / "bad").glob("overlays-*"))               # no empty folder for the video


def test_a_converted_model_is_named_by_the_file_the_user_gave(tmp_path):
    pytest.importorskip("onnx")
    model = onnx_model(tmp_path / "cache.onnx", metadata={"mirror_axis_px": "abc"})
    with pytest.raises(predict.ModelError, match=r"^\S*mine\.keras: its metadata mirror_axis_px"):
        predict.OnnxPredictor(model, source=tmp_path / "mine.keras")


def test_a_folder_is_searched_for_what_a_named_photo_may_be(tmp_path):
    """One list of photo suffixes for predict.py and recognize.py: a .gif was read when named and
    silently skipped in a folder."""
    from recognition import faces
    assert predict.IMAGE_EXTENSIONS is input_data.IMAGE_EXTENSIONS is faces.IMAGE_EXTENSIONS
    face_photo(tmp_path / "a.png")
    Image.open(tmp_path / "a.png").convert("P").save(tmp_path / "b.gif")
    assert [item.name for item in predict.expand_inputs([tmp_path], tmp_path)] == ["a.png", "b.gif"]


def test_a_run_refused_at_the_first_face_leaves_no_out_folder_it_made(tmp_path):
    pytest.importorskip("onnx")
    model = onnx_model(tmp_path / "nan.onnx", fill=float("nan"))
    photo = face_photo(tmp_path / "in" / "a.png")
    done = run_cli(photo, "--model", model, "--out", tmp_path / "new" / "out", "--no-progress")
    assert done.returncode == 1 and "non-finite keypoints" in done.stderr, done.stderr
    assert not (tmp_path / "new").exists()
