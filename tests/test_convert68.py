"""68-point photos -> the Kaggle frame: the maths by hand, the crop, and the real shared faces."""
import csv

import numpy as np
import pytest
from PIL import Image

import cli
import input_data
from input_data import Frame


def hand_made_68():
    """68 points whose inner box (17..67) runs from (100, 200) to (200, 260)."""
    rng = np.random.default_rng(0)
    points = rng.uniform([110, 210], [190, 250], size=(68, 2))
    points[17] = (100, 230)   # right eyebrow outer end: leftmost
    points[26] = (200, 225)   # left eyebrow outer end: rightmost
    points[19] = (150, 200)   # top
    points[57] = (150, 260)   # bottom lip centre: bottom
    points[0:17] = (0, 0)     # the jaw line is ignored, however far off
    return points


def test_frame_from_68_by_hand():
    frame = input_data.frame_from_68(hand_made_68())
    # m = max(100, 60) = 100; centre (150, 230) + (0.01, -0.08) * 100; side 1.47 * 100.
    assert frame == pytest.approx(Frame(151.0, 222.0, 147.0))
    np.testing.assert_allclose(frame.corner, [77.5, 148.5])
    # The corner goes to 0, the centre to 48, the far corner to 96; and back.
    np.testing.assert_allclose(frame.to_frame([[77.5, 148.5], [151, 222], [224.5, 295.5]]),
                               [[0, 0], [48, 48], [96, 96]], atol=1e-9)
    np.testing.assert_allclose(frame.to_photo(frame.to_frame([[3.0, 4.0]])), [[3.0, 4.0]])


def test_keypoints_from_68_by_hand():
    points = hand_made_68()
    keypoints = input_data.keypoints_from_68(points)
    assert keypoints.shape == (15, 2)
    np.testing.assert_allclose(keypoints[0], points[42:48].mean(axis=0))   # left eye centre
    np.testing.assert_allclose(keypoints[1], points[36:42].mean(axis=0))   # right eye centre
    expected = {2: 42, 3: 45, 4: 39, 5: 36, 6: 22, 7: 26, 8: 21, 9: 17, 10: 30,
                11: 54, 12: 48, 13: 51, 14: 57}
    for k, index in expected.items():
        np.testing.assert_array_equal(keypoints[k], points[index])


@pytest.mark.parametrize("side", [40.0, 96.0, 147.0, 500.0])
def test_crop_puts_pixels_where_the_keypoints_go(side):
    """A bright dot in the photo lands where Frame.to_frame sends its coordinates."""
    frame = Frame(400.3, 350.7, side)
    dot = np.array([frame.cx + 0.21 * side, frame.cy - 0.17 * side])
    ys, xs = np.mgrid[0:700, 0:800]
    sigma = side / 30  # a smooth blob, so its centroid is exact to a small fraction of a pixel
    photo = np.round(255 * np.exp(-((xs - dot[0]) ** 2 + (ys - dot[1]) ** 2) / (2 * sigma ** 2)))
    photo = photo.astype(np.uint8)
    crop = frame.crop(photo).astype(np.float64)
    weights = crop / crop.sum()
    found = [(weights * np.arange(96)[None, :]).sum(), (weights * np.arange(96)[:, None]).sum()]
    np.testing.assert_allclose(found, frame.to_frame(dot), atol=0.15)


def test_crop_replicates_edges_outside_the_photo():
    photo = np.full((50, 50), 200, np.uint8)
    photo[:, :25] = 30
    crop = Frame(10, 25, 120).crop(photo)
    assert crop.shape == (96, 96) and crop.dtype == np.uint8
    assert crop[:, :5].max() == 30 and crop[:, -5:].min() == 200


def write_label_rows(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([""] + [str(i) for i in range(136)])
        writer.writerows(rows)


def test_convert_cli_with_broken_rows_and_image_modes(tmp_path, capsys):
    points = hand_made_68()
    photo = np.random.default_rng(1).integers(0, 256, size=(320, 300, 3), dtype=np.uint8)
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(photo).save(images / "Ann_Lee_00.jpg", quality=95)
    Image.fromarray(photo).save(tmp_path / "outside.jpg", quality=95)
    # An RGBA PNG named .jpg, as found upstream, and a 16-bit grayscale PNG.
    Image.fromarray(np.dstack([photo, np.full((320, 300), 255, np.uint8)])).save(images / "Ann_Lee_01.jpg", format="PNG")
    Image.fromarray((photo[..., 0].astype(np.uint16) * 257)).save(images / "Bo_Ek_10.png")
    flat = [repr(float(v)) for v in points.ravel()]
    write_label_rows(tmp_path / "labels.csv", [
        ["Ann_Lee_00.jpg"] + flat,
        ["Ann_Lee_01.jpg"] + flat,
        ["Bo_Ek_10.png"] + flat,
        ["Bo_Ek_11.jpg"] + flat,                     # image file missing
        ["Cy_Yu_00.jpg"] + flat[:100],               # short row
        ["Cy_Yu_01.jpg"] + ["x"] + flat[1:],         # non-numeric coordinate
        ["../outside.jpg"] + flat,                   # a photo, but not in --images
        [str(tmp_path / "outside.jpg")] + flat,      # the same by its absolute path
    ])
    out = tmp_path / "out" / "faces.csv"
    input_data.main(["convert-68", "--csv", str(tmp_path / "labels.csv"),
                     "--images", str(images), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "3 faces, 5 skipped" in printed
    for row in ("row 4 (Bo_Ek_11.jpg)", "row 5 (Cy_Yu_00.jpg)", "row 6 (Cy_Yu_01.jpg)"):
        assert row in printed
    assert printed.count("is not a file inside --images") == 2
    crops, keypoints = input_data.read_keypoints(out)
    assert crops.shape == (3, 96, 96)
    expected = input_data.frame_from_68(points).to_frame(input_data.keypoints_from_68(points)).ravel()
    np.testing.assert_allclose(keypoints, np.tile(expected, (3, 1)), atol=1e-4)
    # The JPEG and the RGBA PNG hold the same picture (up to JPEG loss); 16-bit scaled to 8.
    assert np.abs(crops[0].astype(int) - crops[1]).mean() < 8
    gray16 = input_data.frame_from_68(points).crop(photo[..., 0])
    assert np.abs(crops[2].astype(int) - gray16).max() <= 1
    with open(out.with_suffix(".sources.csv")) as f:
        sources = list(csv.DictReader(f))
    assert [(s["row"], s["file"], s["person"]) for s in sources] == [
        ("0", "Ann_Lee_00.jpg", "Ann_Lee"), ("1", "Ann_Lee_01.jpg", "Ann_Lee"), ("2", "Bo_Ek_10.png", "Bo_Ek")]

    # Run again onto the same --out: an existing file (a Kaggle training.csv of the same name, an
    # earlier conversion) is replaced only with --overwrite.
    out.write_text("precious\n")
    argv = ["convert-68", "--csv", str(tmp_path / "labels.csv"), "--images", str(images), "--out", str(out)]
    with pytest.raises(cli.UsageError, match=r"faces\.csv: exists; pass --overwrite"):
        input_data.main(argv)
    assert out.read_text() == "precious\n"
    input_data.main(argv + ["--overwrite"])
    assert input_data.read_keypoints(out)[0].shape == (3, 96, 96)


def test_read_gray_modes(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(rgb).convert("L"))
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    assert np.abs(input_data.read_gray(tmp_path / "cmyk.jpg").astype(int) - expected).mean() < 4
    rgba = np.dstack([rgb, np.zeros((20, 30), np.uint8)])  # fully transparent -> white
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    assert (input_data.read_gray(tmp_path / "clear.png") == 255).all()
    # EXIF orientation 6 (rotate 90 degrees clockwise to display) is applied by default.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    assert input_data.read_gray(tmp_path / "rotated.jpg").shape == (30, 20)
    assert input_data.read_gray(tmp_path / "rotated.jpg", exif=False).shape == (20, 30)


def test_real_faces_match_kaggle_means(shared_data, tmp_path):
    faces = shared_data / "cvnd_youtube_faces"
    out = tmp_path / "faces.csv"
    written, skipped = input_data.convert_68(faces / "training_frames_keypoints.csv",
                                             faces / "training", out, progress=False)
    assert (written, skipped) == (2820, [])
    _, keypoints = input_data.read_keypoints(out)
    assert keypoints.shape == (2820, 30) and not np.isnan(keypoints).any()
    kaggle = np.genfromtxt(shared_data / "fkd" / "training_keypoints_only.csv", delimiter=",", skip_header=1)
    kaggle_mean = kaggle[~np.isnan(kaggle).any(axis=1)].mean(axis=0)
    assert np.abs(keypoints.mean(axis=0) - kaggle_mean).max() < 3.0
    with open(out.with_suffix(".sources.csv")) as f:
        assert len({row["person"] for row in csv.DictReader(f)}) == 282
