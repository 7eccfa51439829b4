"""The Kaggle loader: formats, exact values, and one clear error per kind of bad input."""
import zipfile
from pathlib import Path

import numpy as np
import pytest

import input_data
from input_data import COLUMNS, DataError


def random_set(n=12, seed=0, missing_fraction=0.0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 96, 96), dtype=np.uint8)
    keypoints = rng.uniform(10, 86, size=(n, 30)).round(4).astype(np.float32)
    keypoints[rng.random((n, 30)) < missing_fraction] = np.nan
    return images, keypoints


@pytest.fixture
def training_csv(tmp_path):
    images, keypoints = random_set(n=12, missing_fraction=0.3)
    keypoints[:3] = np.round(keypoints[:3])  # a few complete rows for certain
    keypoints[:3][np.isnan(keypoints[:3])] = 50.0
    path = input_data.write_csv(tmp_path / "training.csv", images, keypoints)
    return path, images, keypoints


def test_constants_match_kaggle_and_nouri():
    assert len(COLUMNS) == 30
    assert COLUMNS[0] == "left_eye_center_x" and COLUMNS[-1] == "mouth_center_bottom_lip_y"
    assert input_data.flip_indices() == input_data.FLIP_INDICES
    # Subsets (for specialists) get their own pairs, by name.
    assert input_data.flip_indices(["nose_tip_x", "left_eye_center_x", "right_eye_center_x"]) == [(1, 2)]


def test_load_exact_values(training_csv):
    path, images, keypoints = training_csv
    X, Y = input_data.load(path, complete_only=False)
    assert X.dtype == np.float32 and X.shape == (12, 96, 96, 1)
    assert Y.dtype == np.float32 and Y.shape == (12, 30)
    np.testing.assert_array_equal(X[..., 0], images.astype(np.float32) / 255)
    np.testing.assert_allclose(Y, (keypoints - 48) / 48, atol=1e-6)
    assert np.isnan(Y).sum() == np.isnan(keypoints).sum() > 0


def test_complete_only_and_cols(training_csv):
    path, images, keypoints = training_csv
    complete = ~np.isnan(keypoints).any(axis=1)
    X, Y = input_data.load(path)
    assert len(X) == complete.sum() >= 3 and not np.isnan(Y).any()
    np.testing.assert_array_equal(X[..., 0], images[complete] / np.float32(255))
    cols = ["nose_tip_x", "nose_tip_y"]
    X, Y = input_data.load(path, cols=cols)
    present = ~np.isnan(keypoints[:, 20:22]).any(axis=1)
    assert Y.shape == (present.sum(), 2)
    np.testing.assert_allclose(Y, (keypoints[present][:, 20:22] - 48) / 48, atol=1e-6)


def test_zip_and_kaggle_bundle(training_csv, tmp_path):
    path, images, _ = training_csv
    with zipfile.ZipFile(tmp_path / "training.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(path, "training.csv")
    X, _ = input_data.load(tmp_path / "training.zip", complete_only=False)
    np.testing.assert_array_equal(X[..., 0], images / np.float32(255))
    # Kaggle's all-in-one download nests training.zip inside facial-keypoints-detection.zip.
    bundle = tmp_path / "bundle" / input_data.KAGGLE_BUNDLE
    bundle.parent.mkdir()
    with zipfile.ZipFile(bundle, "w") as z:
        z.write(tmp_path / "training.zip", "training.zip")
    assert input_data.find_kaggle_file("training", bundle.parent) == bundle
    X2, _ = input_data.load(bundle, complete_only=False)
    np.testing.assert_array_equal(X, X2)


def test_load_test(tmp_path):
    images, _ = random_set(n=5, seed=1)
    path = input_data.write_csv(tmp_path / "test.csv", images, image_ids=np.arange(1, 6))
    ids, X = input_data.load_test(path)
    np.testing.assert_array_equal(ids, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(X[..., 0], images / np.float32(255))


def test_windows_line_endings_and_quotes(tmp_path):
    images, keypoints = random_set(n=2, seed=2)
    text = input_data.write_csv(tmp_path / "a.csv", images, keypoints).read_bytes()
    lines = text.rstrip(b"\n").split(b"\n")
    quoted = [lines[0]] + [l.rpartition(b",")[0] + b',"' + l.rpartition(b",")[2] + b'"' for l in lines[1:]]
    (tmp_path / "b.csv").write_bytes(b"\r\n".join(quoted) + b"\r\n")
    X, _ = input_data.load(tmp_path / "b.csv")
    np.testing.assert_array_equal(X[..., 0], images / np.float32(255))


# --- bad input: one clear error naming the file, the row and the problem -------------------

def good_lines():
    images, keypoints = random_set(n=3, seed=3)
    return (input_data.format_pixels(images[0]).decode(),
            ",".join(f"{v:.2f}" for v in keypoints[0]))


def write(tmp_path, text):
    path = tmp_path / "training.csv"
    path.write_text(text)
    return path


def expect_error(path, *fragments, loader=input_data.load):
    with pytest.raises(DataError) as error:
        loader(path)
    message = str(error.value)
    assert "training.csv" in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_image_column(tmp_path):
    _, values = good_lines()
    expect_error(write(tmp_path, ",".join(COLUMNS) + "\n" + values + "\n"), "no 'Image' column")


def test_wrong_column_names(tmp_path):
    pixels, values = good_lines()
    header = ",".join(["left_eye_x"] + COLUMNS[1:] + ["Image"])
    expect_error(write(tmp_path, f"{header}\n{values},{pixels}\n"),
                 "missing keypoint columns left_eye_center_x", "left_eye_x")


def row_with(pixels_text):
    _, values = good_lines()
    return ",".join(COLUMNS + ["Image"]) + f"\n{values},{good_lines()[0]}\n{values},{pixels_text}\n"


def test_wrong_pixel_count(tmp_path):
    pixels = good_lines()[0]
    expect_error(write(tmp_path, row_with(pixels.rpartition(" ")[0])),
                 "row 2", "9215 pixel values, expected 9216")
    expect_error(write(tmp_path, row_with(pixels + " 7")), "row 2", "9217 pixel values")


def test_non_numeric_pixel(tmp_path):
    pixels = good_lines()[0].split(" ")
    pixels[100] = "abc"
    expect_error(write(tmp_path, row_with(" ".join(pixels))), "row 2, pixel 101", "'abc' is not a number")
    pixels[100] = "12.5"
    expect_error(write(tmp_path, row_with(" ".join(pixels))), "row 2, pixel 101", "not a plain integer")


@pytest.mark.parametrize("value", ["256", "-3", "1000", "99999"])
def test_out_of_range_pixel(tmp_path, value):
    pixels = good_lines()[0].split(" ")
    pixels[9215] = value
    expect_error(write(tmp_path, row_with(" ".join(pixels))), "row 2, pixel 9216", f"{value} is out of range 0-255")


@pytest.mark.parametrize("image", ["", "NaN"])
def test_nan_image(tmp_path, image):
    expect_error(write(tmp_path, row_with(image)), "row 2", "Image is missing")


def test_non_numeric_keypoint(tmp_path):
    pixels, values = good_lines()
    bad = "oops," + values.partition(",")[2]
    text = ",".join(COLUMNS + ["Image"]) + f"\n{values},{pixels}\n{bad},{pixels}\n"
    expect_error(write(tmp_path, text), "row 2, column left_eye_center_x", "'oops' is not a plain decimal number")


@pytest.mark.parametrize("value", ["6_6.5", "\u0666\u0666.5", "\uff16\uff16.5", "inf", "0x42", "66.5.1"])
def test_keypoints_are_read_as_strictly_as_pixels(tmp_path, value):
    # Python's float() reads '6_6.5' and Arabic-Indic or full-width digits as 66.5.
    pixels, values = good_lines()
    bad = ",".join([value] + values.split(",")[1:])
    text = ",".join(COLUMNS + ["Image"]) + f"\n{values},{pixels}\n{bad},{pixels}\n"
    path = tmp_path / "training.csv"
    path.write_text(text, encoding="utf-8")
    message = expect_error(path, "row 2, column left_eye_center_x", "is not a plain decimal number")
    assert "\n" not in message


@pytest.mark.parametrize("text, value", [("66.03", 66.03), (" -1.5 ", -1.5), ("1e1", 10.0), (".5", 0.5),
                                         ("", None), ("NaN", None), ("null", None)])
def test_plain_keypoint_numbers_still_read(text, value):
    number = input_data.parse_coordinate(text)
    assert (np.isnan(number) if value is None else number == pytest.approx(value))


def test_empty_and_header_only(tmp_path):
    expect_error(write(tmp_path, ""), "empty")
    expect_error(write(tmp_path, ",".join(COLUMNS + ["Image"]) + "\n"), "no data rows")


def test_truncated_file(tmp_path):
    images, keypoints = random_set(n=3, seed=4)
    full = input_data.write_csv(tmp_path / "full.csv", images, keypoints).read_bytes()
    # Cut inside the last row's pixels, and inside its keypoints.
    (tmp_path / "training.csv").write_bytes(full[: len(full) - 5000])
    expect_error(tmp_path / "training.csv", "row 3", "pixel values, expected 9216")
    last_row_start = full.rstrip(b"\n").rfind(b"\n") + 1
    (tmp_path / "training.csv").write_bytes(full[: last_row_start + 30])
    expect_error(tmp_path / "training.csv", "row 3", "fields, expected 31")


def test_corrupt_zip_and_missing_file(tmp_path):
    (tmp_path / "training.zip").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(DataError, match="training.zip: not a readable zip"):
        input_data.load(tmp_path / "training.zip")
    with pytest.raises(DataError, match="nope.csv: file not found"):
        input_data.load(tmp_path / "nope.csv")


# --- hostile shapes (issue 15, class 4) -----------------------------------------------------

def test_repeated_columns_are_refused_by_name(tmp_path):
    pixels, values = good_lines()
    header = ",".join(COLUMNS + ["Image", "Image"])
    expect_error(write(tmp_path, f"{header}\n{values},{pixels},{pixels}\n"), "Image appears more than once")
    header = ",".join(COLUMNS + ["nose_tip_x", "Image"])
    nose = values.split(",")[COLUMNS.index("nose_tip_x")]
    expect_error(write(tmp_path, f"{header}\n{values},{nose},{pixels}\n"), "nose_tip_x appears more than once")


def test_unknown_columns_are_refused_by_name(tmp_path):
    pixels, values = good_lines()
    header = ",".join(COLUMNS + ["age", "Image"])
    expect_error(write(tmp_path, f"{header}\n{values},37,{pixels}\n"), "unknown column 'age'")


def test_invalid_utf8_names_file_row_and_column(tmp_path):
    pixels, values = good_lines()
    header = ",".join(COLUMNS + ["Image"])
    bad = b"66.0\xff," + values.split(",", 1)[1].encode()
    path = tmp_path / "training.csv"
    path.write_bytes(f"{header}\n{values},{pixels}\n".encode() + bad + b"," + pixels.encode() + b"\n")
    expect_error(path, "row 2, column left_eye_center_x", "byte 0xff", "not valid UTF-8")
    path.write_bytes(b"\xff\xfeI\x00m\x00" + bytes(100))          # UTF-16 or binary
    expect_error(path, "not a CSV text file")
    path.write_bytes(b"Ima\xe9ge,x\n1,2\n")
    expect_error(path, "the header (line 1) is not UTF-8 text")


def test_size_limit_is_checked_before_reading_and_says_how_to_raise_it(tmp_path, monkeypatch):
    images, keypoints = random_set(n=40, seed=5)                      # ~1.5 MB
    path = input_data.write_csv(tmp_path / "training.csv", images, keypoints)
    monkeypatch.setenv("FKD_MAX_CSV_MB", "1")
    expect_error(path, "above the 1 MB limit", "FKD_MAX_CSV_MB=<megabytes>")
    monkeypatch.setenv("FKD_MAX_CSV_MB", "2")
    assert input_data.load(path, complete_only=False)[0].shape == (40, 96, 96, 1)
    monkeypatch.setenv("FKD_MAX_CSV_MB", "-3")
    import cli
    with pytest.raises(cli.UsageError, match="FKD_MAX_CSV_MB='-3'"):
        input_data.load(path)


def test_zip_bomb_is_refused_by_declared_and_by_actual_size(tmp_path, monkeypatch):
    monkeypatch.setenv("FKD_MAX_CSV_MB", "4")
    with zipfile.ZipFile(tmp_path / "training.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("training.csv", b"0 " * 3_000_000)                  # 6 MB in ~6 kB
    assert (tmp_path / "training.zip").stat().st_size < 50_000
    expect_error(tmp_path / "training.zip", "zip member, unpacked,", "above the 4 MB limit")
    # A member whose header claims a small size: the bytes read are bounded all the same.
    lying = bytearray((tmp_path / "training.zip").read_bytes())
    real = (6_000_000).to_bytes(4, "little")
    small = (1000).to_bytes(4, "little")
    (tmp_path / "training.zip").write_bytes(bytes(lying).replace(real, small))
    with pytest.raises(DataError, match="training.zip"):
        input_data.load(tmp_path / "training.zip")


def test_zip_nesting_is_bounded(tmp_path):
    images, keypoints = random_set(n=1, seed=6)
    data = input_data.write_csv(tmp_path / "one.csv", images, keypoints).read_bytes()
    import io

    def zipped(name, payload):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr(name, payload)
        return buffer.getvalue()
    blob = zipped("training.csv", data)
    (tmp_path / "training.zip").write_bytes(zipped("training.zip", blob))        # Kaggle's bundle: fine
    assert input_data.load(tmp_path / "training.zip", complete_only=False)[0].shape == (1, 96, 96, 1)
    for _ in range(1000):
        blob = zipped("training.zip", blob)
    (tmp_path / "training.zip").write_bytes(blob)
    with pytest.raises(DataError, match="training.zip:training.zip:training.zip: a zip inside a zip inside a zip"):
        input_data.load(tmp_path / "training.zip")


def test_a_folder_is_not_a_csv(tmp_path):
    (tmp_path / "training.csv").mkdir()
    expect_error(tmp_path / "training.csv", "is a folder")


def test_lookup_table_checks(tmp_path):
    path = tmp_path / "IdLookupTable.csv"
    path.write_bytes(b"RowId,ImageId,FeatureName,Location\n1,1,nose_tip_x,\n2,\xff,nose_tip_y,\n")
    with pytest.raises(DataError, match="IdLookupTable.csv, row 2: byte 0xff"):
        input_data.read_lookup(path)
    path.write_text("RowId,ImageId,ImageId,FeatureName\n1,1,1,nose_tip_x\n")
    with pytest.raises(DataError, match="ImageId appears more than once"):
        input_data.read_lookup(path)
    path.write_text("RowId,Image,FeatureName\n1,1,nose_tip_x\n")
    with pytest.raises(DataError, match="no ImageId column"):
        input_data.read_lookup(path)


# --- real tables, when ../shared is present ----------------------------------------------

def test_real_lookup_table(shared_data):
    lookup = input_data.read_lookup(shared_data / "fkd" / "IdLookupTable.csv")
    assert len(lookup) == 27124
    assert [r[0] for r in lookup] == list(range(1, 27125))
    assert len({r[1] for r in lookup}) == 1783
    assert {r[2] for r in lookup} == set(COLUMNS)


def test_real_keypoint_table_columns(shared_data):
    header = (shared_data / "fkd" / "training_keypoints_only.csv").read_text().split("\n", 1)[0]
    assert header.split(",") == COLUMNS


def test_summary_demo_on_an_empty_data_folder(tmp_path, capsys):
    """`make demo-train`: input_data never writes synthetic faces itself (it is the lower layer);
    on an empty folder it says how to make them, and synthetic_faces.kaggle_files makes them."""
    import synthetic_faces
    with pytest.raises(DataError, match="synthetic_faces.py --out"):
        input_data.main(["summary", "--data", str(tmp_path)])
    files, synthetic = synthetic_faces.kaggle_files(tmp_path)
    assert synthetic and files["training"] == tmp_path / "synthetic" / "training.csv"
    input_data.main(["summary", "--data", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "synthetic" in printed and "2140 faces, 2140 with all 15 keypoints" in printed
    assert "300 test faces" in printed
    assert (tmp_path / "samples.png").stat().st_size > 10_000
    X, Y = input_data.load(tmp_path / "synthetic" / "training.csv")
    assert X.shape == (2140, 96, 96, 1) and abs(float(np.mean(Y[:, 0])) * 48 + 48 - 66.2) < 1


def test_crop_and_read_gray_refuse_what_they_cannot_do(tmp_path, monkeypatch):
    gray = np.zeros((50, 40), np.uint8)
    for frame in (input_data.Frame(20, 20, 0), input_data.Frame(np.nan, 20, 30),
                  input_data.Frame(20, 20, 1e9)):
        with pytest.raises(ValueError, match="cannot crop"):
            frame.crop(gray)
    with pytest.raises(ValueError, match="cannot crop a float64 image"):
        input_data.Frame(20, 20, 30).crop(np.zeros((50, 40)))
    from PIL import Image
    Image.new("L", (200, 200)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)              # 40,000 px > 2 x 100: a "bomb"
    with pytest.raises(DataError, match="big.png: Image size"):
        input_data.read_gray(tmp_path / "big.png")


def imported_modules(path):
    """The top-level names of the modules a source file imports."""
    import ast
    tree = ast.parse(Path(path).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    return imported | {node.module.split(".")[0] for node in ast.walk(tree)
                       if isinstance(node, ast.ImportFrom) and node.module}


def test_input_data_does_not_import_synthetic_faces():
    """The layers: cli < dataset/ < input_data < synthesis/ < synthetic_faces; no import back
    down-up (issue 18), and neither package imports the command above it (issue 30)."""
    root = Path(input_data.__file__).parent
    higher = {"synthetic_faces", "synthesis", "serializer", "augment", "base", "inference", "train",
              "evaluate", "predict", "recognize", "specialists", "export", "write_submission", "models"}
    for path in [root / "input_data.py", *sorted((root / "dataset").glob("*.py"))]:
        imported = imported_modules(path)
        assert not imported & (higher | ({"input_data"} if path.parent.name == "dataset" else set())), path
    for path in sorted((root / "synthesis").glob("*.py")):
        assert not imported_modules(path) & {"synthetic_faces", "input_data"}, path
