"""Bad data that used to get past the readers (the data half of issue 15's review).

Each test runs a command in this process through cli.run, as `python SCRIPT ...` would, and
asserts its exit status, that stderr is one `error: ...` line naming the file, row or option,
that there is no traceback, and that the files already there are unchanged (no half-written or
truncated output, no temporary files). Everything is written under tmp_path.
"""
import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

import cli
import evaluate
import input_data
import serializer
import synthetic_faces
import train
import write_submission


def run(main, argv, capsys, monkeypatch, cwd):
    """(exit status, stdout, stderr) of cli.run(main, argv) in the folder cwd."""
    monkeypatch.chdir(cwd)
    with pytest.raises(SystemExit) as stopped:
        cli.run(main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return stopped.value.code, out, err


def assert_error(result, status, *names):
    code, _, err = result
    assert "Traceback" not in err, err
    assert code == status, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert str(name) in lines[0], f"{name!r} not named in {lines[0]!r}"


def snapshot(folder):
    """Every file under folder -> its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_unchanged(before, folder):
    after = snapshot(folder)
    assert {path: after.get(path) for path in before} == before, "an existing file changed"
    leftovers = [p for p in after if p.name.endswith(".tmp") or p.name.startswith(".write-test-")]
    assert not leftovers, leftovers


# ---------------------------------------------------------------------------------------
# convert-68: a folder of photos and a labels CSV of 68 points per face.

def face_68():
    """68 points of a face inside a 300x320 photo (its inner box runs from (100, 200) to (200, 260))."""
    points = np.random.default_rng(0).uniform([110, 210], [190, 250], size=(68, 2))
    points[[17, 26, 19, 57]] = [(100, 230), (200, 225), (150, 200), (150, 260)]
    return points


def label_row(name, points):
    return [name] + [repr(float(v)) for v in np.ravel(points)]


def write_labels(path, rows, header=True):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow([""] + [str(i) for i in range(136)])
        writer.writerows(rows)
    return path


@pytest.fixture
def photos(tmp_path):
    """tmp_path/imgs with two photos, and tmp_path/labels.csv labelling them."""
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(1)
    for name in ("Ann_Lee_00.png", "Bo_Ek_01.png"):
        Image.fromarray(rng.integers(0, 256, size=(320, 300), dtype=np.uint8)).save(images / name)
    write_labels(tmp_path / "labels.csv", [label_row(n, face_68()) for n in ("Ann_Lee_00.png", "Bo_Ek_01.png")])
    return tmp_path


def convert(folder, *extra, csv_name="labels.csv", out="out.csv"):
    return ["convert-68", "--csv", folder / csv_name, "--images", folder / "imgs", "--out", folder / out, *extra]


@pytest.mark.parametrize("case", ["same", "sources", "inside-images", "hard-link", "symlink"])
def test_convert_68_never_writes_over_its_inputs(photos, case, capsys, monkeypatch):
    """Defect 1: --out, OUT.sources.csv resolving to the labels, or an output among the photos."""
    labels = photos / "labels.csv"
    csv_name, out, names = "labels.csv", "labels.csv", ["--out", "labels.csv"]
    if case == "sources":      # --csv lab.sources.csv --out lab.csv: the sources file is the labels
        os.replace(labels, photos / "lab.sources.csv")
        csv_name, out, names = "lab.sources.csv", "lab.csv", ["--out's sources file", "lab.sources.csv"]
    elif case == "inside-images":
        out, names = "imgs/faces.csv", ["--out", "--images"]
    elif case == "hard-link":
        os.link(labels, photos / "other.csv")
        out, names = "other.csv", ["--out", "other.csv", "--csv"]
    elif case == "symlink":
        (photos / "other.csv").symlink_to(labels)
        out, names = "other.csv", ["--out", "other.csv", "--csv"]
    before = snapshot(photos)
    result = run(input_data.main, convert(photos, csv_name=csv_name, out=out), capsys, monkeypatch, photos)
    assert_error(result, 2, *names)
    assert_unchanged(before, photos)
    assert not (photos / "lab.csv").exists()


def test_convert_68_plot_never_overwrites_a_photo(photos, capsys, monkeypatch):
    """Defect 2: --plot imgs/photo.png used to replace the photo with the sample grid."""
    before = snapshot(photos)
    result = run(input_data.main, convert(photos, "--plot", photos / "imgs" / "Ann_Lee_00.png"),
                 capsys, monkeypatch, photos)
    assert_error(result, 2, "--plot", "Ann_Lee_00.png", "--images")
    assert_unchanged(before, photos)
    assert not (photos / "out.csv").exists()


def test_convert_68_writes_both_outputs_or_neither(photos, capsys, monkeypatch):
    """Defect 3: a folder named OUT.sources.csv left OUT.csv written without its sources."""
    (photos / "out.csv").write_text("an earlier good output\n")
    (photos / "out.sources.csv").mkdir()
    before = snapshot(photos)
    result = run(input_data.main, convert(photos, "--overwrite"), capsys, monkeypatch, photos)
    assert_error(result, 1, "out.sources.csv", "folder")
    assert_unchanged(before, photos)


def test_serializer_writes_both_outputs_or_neither(tmp_path, capsys, monkeypatch):
    """Defect 3: `mkdir z.p.zip` left z.p written (and an earlier z.p replaced) before failing."""
    images, keypoints = synthetic_faces.make_faces(6, seed=0)
    input_data.write_csv(tmp_path / "training.csv", images, keypoints)
    (tmp_path / "z.p").write_bytes(b"an earlier good data.p")
    (tmp_path / "z.p.zip").mkdir()
    before = snapshot(tmp_path)
    result = run(serializer.main, ["--train", tmp_path / "training.csv", "--out", tmp_path / "z.p"],
                 capsys, monkeypatch, tmp_path)
    assert_error(result, 1, "z.p.zip", "folder")
    assert_unchanged(before, tmp_path)


def test_files_written_together_are_all_or_none(tmp_path):
    """The mechanism: a failure while writing the second file leaves the first as it was."""
    (tmp_path / "a.csv").write_text("old a")

    def fail(path):
        path.write_text("half")
        raise OSError(28, "No space left on device", str(path))
    with pytest.raises(OSError):
        cli.write_all_atomically([(tmp_path / "a.csv", lambda p: p.write_text("new a")), (tmp_path / "b.csv", fail)])
    assert (tmp_path / "a.csv").read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


# ---------------------------------------------------------------------------------------
# ImageIds that no int64 holds.

@pytest.fixture
def bad_test_csv(tmp_path):
    """tmp_path/data: training.csv, test.csv whose row 2 has ImageId 10**20, and a lookup table."""
    data = tmp_path / "data"
    data.mkdir()
    images, keypoints = synthetic_faces.make_faces(8, seed=0)
    input_data.write_csv(data / "training.csv", images[:5], keypoints[:5])
    input_data.write_csv(data / "test.csv", images[5:], image_ids=[1, 10**20, 3])
    synthetic_faces.write_lookup_table(data / "IdLookupTable.csv", [1, 2, 3])
    return data


@pytest.mark.parametrize("command", ["summary", "serializer", "write_submission"])
def test_image_id_out_of_range(bad_test_csv, command, capsys, monkeypatch):
    """Defect 4: OverflowError tracebacks from np.array(ids, np.int64)."""
    data = bad_test_csv
    (data / "m.keras").write_bytes(b"never loaded: the test file is read first")
    argv = {"summary": ["summary", "--data", data, "--plot", data / "s.png"],
            "serializer": ["--train", data / "training.csv", "--test", data / "test.csv", "--out", data / "d.p"],
            "write_submission": ["--model", data / "m.keras", "--test", data / "test.csv",
                                 "--lookup", data / "IdLookupTable.csv", "--out-dir", data / "sub"]}[command]
    main = {"summary": input_data.main, "serializer": serializer.main, "write_submission": write_submission.main}
    before = snapshot(data)
    result = run(main[command], argv, capsys, monkeypatch, data)
    assert_error(result, 1, "test.csv, row 2", "ImageId 100000000000000000000")
    assert_unchanged(before, data)
    assert not (data / "d.p").exists() and not (data / "s.png").exists()


@pytest.mark.parametrize("value", ["0", "-3"])
def test_image_ids_are_positive(tmp_path, value):
    input_data.write_csv(tmp_path / "test.csv", synthetic_faces.make_faces(2, seed=0)[0], image_ids=[1, value])
    with pytest.raises(input_data.DataError, match=f"test.csv, row 2: ImageId {value} is out of range"):
        input_data.load_test(tmp_path / "test.csv")


# ---------------------------------------------------------------------------------------
# evaluate.py --run on a damaged run folder, and --specialists on a damaged manifest.

@pytest.fixture
def run_root(tmp_path):
    """tmp_path/runs/r1 as train.py leaves it (without the model: the checks come first)."""
    images, keypoints = synthetic_faces.make_faces(20, seed=0)
    data = input_data.write_csv(tmp_path / "faces.csv", images, keypoints)
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "state.json").write_text(json.dumps(dict(
        epoch=1, best_epoch=1, best_val_rmse_px=3.2, mirror_axis_px=47.5, final_model="best.keras",
        ended_on="best epoch 1 of 1")))
    (run_dir / "split.json").write_text(json.dumps(dict(
        path=str(data.resolve()), rows=20, sha256=input_data.file_sha256(data), all_rows=False, cols=None,
        validation_rows=[2, 4, 6], validation_people=None)))
    return tmp_path


def damage(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps({k: v for k, v in data.items() if v is not ...}))


@pytest.mark.parametrize("case, names", [
    ("row-out-of-range", ["split.json", "validation_rows", "999"]),
    ("no-sha256", ["split.json", "sha256"]),
    ("unknown-column", ["split.json", "cols", "ear_x"]),
    ("truncated-state", ["state.json", "not readable JSON"]),
    ("state-a-list", ["state.json", "list"]),
    ("model-outside-the-run", ["state.json", "final_model"]),
    ("mirror-axis-outside-the-frame", ["state.json", "mirror_axis_px", "0 to 96"]),
])
def test_evaluate_run_with_a_damaged_run_folder(run_root, case, names, capsys, monkeypatch):
    """Defect 5: IndexError, KeyError, ValueError, or a JSONDecodeError that named no file."""
    run_dir = run_root / "runs" / "r1"
    if case == "row-out-of-range":
        damage(run_dir / "split.json", validation_rows=[2, 999])
    elif case == "no-sha256":
        damage(run_dir / "split.json", sha256=...)
    elif case == "unknown-column":
        damage(run_dir / "split.json", cols=["ear_x"])
    elif case == "truncated-state":
        (run_dir / "state.json").write_text((run_dir / "state.json").read_text()[:30])
    elif case == "state-a-list":
        (run_dir / "state.json").write_text("[1, 2]")
    elif case == "mirror-axis-outside-the-frame":
        damage(run_dir / "state.json", mirror_axis_px=-480.0)
    else:
        damage(run_dir / "state.json", final_model="../../elsewhere/model.keras")
    before = snapshot(run_root)
    result = run(evaluate.main, ["--run", "r1", "--root", run_root], capsys, monkeypatch, run_root)
    assert_error(result, 1, *names)
    assert_unchanged(before, run_root)


@pytest.mark.parametrize("manifest, names", [
    ({"run": "x"}, ["specialists.json", "no field 'specialists'"]),
    ({"run": "x", "specialists": []}, ["specialists.json", "'specialists' is []"]),
    ({"run": "x", "specialists": [{"path": "../m.keras", "columns": ["nose_tip_x"]}]},
     ["specialists.json", "specialists[0]"]),
    ("{\"run\": ", ["specialists.json", "not readable JSON"]),
])
def test_evaluate_specialists_with_a_damaged_manifest(tmp_path, manifest, names, capsys, monkeypatch):
    """Defects 5 and 7: a KeyError, and an empty list that scored `RMSE 0.0000 px`."""
    images, keypoints = synthetic_faces.make_faces(6, seed=0)
    data = input_data.write_csv(tmp_path / "faces.csv", images, keypoints)
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "specialists.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    result = run(evaluate.main, ["--specialists", tmp_path / "spec", "--data", data], capsys, monkeypatch, tmp_path)
    assert_error(result, 1, *names)


# ---------------------------------------------------------------------------------------
# convert-68: rows that are no face, and a labels file without a header.

def test_convert_68_skips_degenerate_faces_and_detects_the_header(photos, capsys, monkeypatch):
    """Defect 6: one point (side 0) and a huge face were tracebacks, a face off the photo became
    a flat crop, and a file without a header lost its first face."""
    good = face_68()
    far_left = good - (400, 0)
    write_labels(photos / "degenerate.csv", [
        label_row("Ann_Lee_00.png", good),
        label_row("Ann_Lee_00.png", np.full((68, 2), 50.0)),        # every point at (50, 50)
        label_row("Ann_Lee_00.png", good * 1e6),                     # far outside, side 8e7
        label_row("Bo_Ek_01.png", far_left),                         # entirely left of the photo
    ])
    code, out, _ = run(input_data.main, convert(photos, csv_name="degenerate.csv"), capsys, monkeypatch, photos)
    assert code == 0
    assert "1 faces, 3 skipped" in out, out
    assert "row 2 (Ann_Lee_00.png): the landmarks span less than a pixel" in out, out
    assert "row 3 (Ann_Lee_00.png): 68 of the 68 landmarks lie outside the 300x320 photo" in out, out
    assert "row 4 (Bo_Ek_01.png): 68 of the 68 landmarks lie outside" in out, out
    assert len(input_data.read_keypoints(photos / "out.csv")[0]) == 1

    write_labels(photos / "no_header.csv", [label_row(n, good) for n in ("Ann_Lee_00.png", "Bo_Ek_01.png")],
                 header=False)
    code, out, _ = run(input_data.main, convert(photos, csv_name="no_header.csv", out="nh.csv"),
                       capsys, monkeypatch, photos)
    assert code == 0 and "2 faces, 0 skipped" in out, out
    with open(photos / "nh.sources.csv") as f:
        assert [row["file"] for row in csv.DictReader(f)] == ["Ann_Lee_00.png", "Bo_Ek_01.png"]


@pytest.mark.parametrize("number", ["1_10.5", "\u0661\u0661\u0660.5", "inf"])
def test_keypoint_numbers_are_read_strictly(photos, number, capsys, monkeypatch):
    """Issue 30: Python's float() reads '1_10.5' and other scripts' digits as 110.5."""
    row = label_row("Ann_Lee_00.png", face_68())
    row[5] = number
    write_labels(photos / "odd.csv", [label_row("Bo_Ek_01.png", face_68()), row])
    code, out, _ = run(input_data.main, convert(photos, csv_name="odd.csv"), capsys, monkeypatch, photos)
    assert code == 0 and "1 faces, 1 skipped" in out, out
    assert f"row 2 (Ann_Lee_00.png): coordinate 5: {number!r} is not a plain decimal number" in out, out
    table = photos / "keypoints.csv"
    table.write_text(",".join(input_data.COLUMNS) + "\n" + ",".join([number] + ["50"] * 29) + "\n",
                     encoding="utf-8")
    result = run(synthetic_faces.main, ["--fit-stats", table], capsys, monkeypatch, photos)
    assert_error(result, 1, f"{table}, row 1, column left_eye_center_x: {number!r} is not a plain decimal")


def test_convert_68_with_no_face_left_names_a_reason(photos, capsys, monkeypatch):
    write_labels(photos / "none.csv", [label_row("Ann_Lee_00.png", np.full((68, 2), 50.0))])
    before = snapshot(photos)
    result = run(input_data.main, convert(photos, csv_name="none.csv"), capsys, monkeypatch, photos)
    code, _, err = result
    assert code == 1 and "Traceback" not in err
    assert "none.csv: no face could be converted (1 skipped; row 1: the landmarks span less" in err.splitlines()[-1]
    assert_unchanged(before, photos)
    assert not (photos / "out.csv").exists()


# ---------------------------------------------------------------------------------------
# Nothing to score, or NaN predictions scored as missing labels.

def test_evaluate_data_without_labels(tmp_path, capsys, monkeypatch):
    """Defect 7: a file with every keypoint empty printed `RMSE 0.0000 px`, exit 0."""
    images, keypoints = synthetic_faces.make_faces(6, seed=0)
    data = input_data.write_csv(tmp_path / "nolabels.csv", images, np.full_like(keypoints, np.nan))
    (tmp_path / "m.keras").write_bytes(b"never loaded: the data is read first")
    result = run(evaluate.main, ["--model", tmp_path / "m.keras", "--data", data], capsys, monkeypatch, tmp_path)
    assert_error(result, 1, "nolabels.csv", "no face has a labelled keypoint")


def test_evaluate_refuses_nan_predictions(tmp_path, capsys, monkeypatch):
    """Defect 7: NaN predictions were dropped as if their labels were missing."""
    images, keypoints = synthetic_faces.make_faces(6, seed=0)
    data = input_data.write_csv(tmp_path / "faces.csv", images, keypoints)
    (tmp_path / "m.keras").write_bytes(b"stands for a diverged model")

    class Diverged:
        def predict(self, X, batch_size=256, verbose=0):
            return np.full((len(X), 30), np.nan, np.float32)
    monkeypatch.setattr(evaluate, "load_predictor", lambda *args: Diverged())
    result = run(evaluate.main, ["--model", tmp_path / "m.keras", "--data", data], capsys, monkeypatch, tmp_path)
    assert_error(result, 1, "m.keras", "NaN")


def test_rmse_px_drops_only_missing_labels():
    Y = np.array([[0.0, np.nan], [0.5, 1.0]])
    assert np.isnan(train.rmse_px(Y, [[0.0, 0.0], [np.nan, 1.0]]))          # a NaN where a label is
    assert float(train.rmse_px(Y, [[0.1, np.nan], [0.5, 1.0]])) == pytest.approx(4.8 / np.sqrt(3))
    assert np.isnan(train.rmse_px(np.full((2, 2), np.nan), np.zeros((2, 2))))   # nothing to score


# ---------------------------------------------------------------------------------------
# serializer.py: no complete row.

def test_serializer_without_a_complete_row(tmp_path, capsys, monkeypatch):
    """Defect 8: an empty data.p (X of shape (0, 96, 96, 1)) was written, exit 0."""
    images, keypoints = synthetic_faces.make_faces(6, seed=0)
    keypoints[:, 4] = np.nan
    input_data.write_csv(tmp_path / "nocomplete.csv", images, keypoints)
    before = snapshot(tmp_path)
    result = run(serializer.main, ["--train", tmp_path / "nocomplete.csv", "--out", tmp_path / "d.p"],
                 capsys, monkeypatch, tmp_path)
    assert_error(result, 1, "nocomplete.csv", "--all-rows")
    assert_unchanged(before, tmp_path)
    assert not (tmp_path / "d.p").exists()
    code, _, _ = run(serializer.main, ["--train", tmp_path / "nocomplete.csv", "--out", tmp_path / "d.p",
                                       "--all-rows"], capsys, monkeypatch, tmp_path)
    assert code == 0 and serializer.load(tmp_path / "d.p")[0][0].shape == (6, 96, 96, 1)
