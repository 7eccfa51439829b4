"""label_check: rows that cannot be a face are flagged with the right reason, clean faces are
not, and `input_data.py check-labels` lists them by file and row or ends in a one-line error."""
import numpy as np
import pytest

import input_data
import label_check
import synthetic_faces
from input_data import COLUMNS, KEYPOINT_NAMES

ROWS = 800


def clean_table(rows=ROWS, seed=0, missing=True):
    rng = np.random.default_rng(seed)
    keypoints = synthetic_faces.sample_keypoints(rows, rng).astype(np.float64)
    if missing:
        keypoints[synthetic_faces.kaggle_missing_mask(rows, rng)] = np.nan
    return keypoints


def swap(keypoints, row, a, b):
    i, j = KEYPOINT_NAMES.index(a), KEYPOINT_NAMES.index(b)
    for axis in (0, 1):
        keypoints[row, [2 * i + axis, 2 * j + axis]] = keypoints[row, [2 * j + axis, 2 * i + axis]]


def planted_table():
    """A clean table with one error of each kind planted in known complete rows."""
    keypoints = clean_table()
    complete = np.flatnonzero(np.isfinite(keypoints).all(axis=1))
    rows = {int(row): kind for row, kind in zip(complete[:4], ("mirror", "eyes", "pair", "moved"))}
    mirror, eyes, pair, moved = rows
    for name in KEYPOINT_NAMES:
        if "left" in name:
            swap(keypoints, mirror, name, name.replace("left", "right"))
    swap(keypoints, eyes, "left_eye_center", "right_eye_center")
    swap(keypoints, pair, "nose_tip", "mouth_left_corner")
    keypoints[moved, 2 * KEYPOINT_NAMES.index("mouth_right_corner")] += 30.0
    few = int(np.flatnonzero(np.isfinite(keypoints).sum(axis=1) == 8)[0])   # a 4-keypoint row
    swap(keypoints, few, "left_eye_center", "right_eye_center")
    rows[few] = "eyes"
    return keypoints, rows


def test_planted_errors_are_flagged_with_their_reason():
    keypoints, planted = planted_table()
    result = label_check.check(keypoints, KEYPOINT_NAMES)
    reasons = {flag.row: flag.reason for flag in result.flags}
    assert set(planted) <= set(reasons), (planted, reasons)
    mirror, eyes, pair, moved, few = planted
    assert reasons[mirror].startswith("left and right are swapped")
    assert reasons[eyes] == "left_eye_center and right_eye_center are swapped"
    assert reasons[few] == "left_eye_center and right_eye_center are swapped"
    assert reasons[pair] == "nose_tip and mouth_left_corner are swapped"
    assert reasons[moved].startswith("mouth_right_corner is ")
    assert len(set(reasons) - set(planted)) <= 0.005 * ROWS      # the target: <= 0.5% false flags
    assert result.rows == ROWS and result.checked == ROWS


def test_clean_synthetic_faces_are_not_flagged():
    result = label_check.check(clean_table(seed=1), KEYPOINT_NAMES)
    assert len(result.flags) <= 0.005 * ROWS, result.flags


def test_rows_to_keep_does_not_depend_on_units():
    keypoints, planted = planted_table()
    keep = label_check.rows_to_keep(keypoints)
    assert not keep[list(planted)].any()
    assert (label_check.rows_to_keep((keypoints - 48) / 48) == keep).all()   # training's units
    assert label_check.rows_to_keep(keypoints[:20]).all()     # too few faces to learn one from


def test_check_labels_command_lists_file_and_row(tmp_path, capsys):
    keypoints, planted = planted_table()
    path = tmp_path / "keypoints.csv"
    with open(path, "w") as f:
        f.write(",".join(COLUMNS) + "\n")
        for row in keypoints:
            f.write(",".join("" if np.isnan(v) else f"{v:.4f}" for v in row) + "\n")
    assert input_data.main(["check-labels", str(path)]) == 0
    out = capsys.readouterr().out
    for row in planted:
        assert f"{path}, row {row + 1}: " in out
    assert f"{path}: {len(out.splitlines()) - 1} of {ROWS} checked rows cannot be a face" in out


@pytest.mark.parametrize("text, fragment", [
    (",".join(COLUMNS) + "\n" + ",".join(["50"] * 30) + "\n", "cannot check its labels: 1 rows have all 15"),
    (",".join(COLUMNS) + "\n" + ",".join(["6_6.5"] + ["50"] * 29) + "\n",
     "row 1, column left_eye_center_x: '6_6.5' is not a plain decimal number"),
    ("left_eye_x,nose_tip_x\n1,2\n", "missing keypoint columns left_eye_center_x"),
])
def test_check_labels_bad_input_is_one_line(tmp_path, text, fragment, capsys):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(SystemExit) as stopped:
        input_data.cli.run(input_data.main, ["check-labels", str(path)])
    code, err = stopped.value.code, capsys.readouterr().err
    assert code == 1 and fragment in err and str(path) in err and len(err.strip().splitlines()) == 1, err


def test_real_cvnd_rows_that_cannot_be_a_face(shared_data, tmp_path):
    faces = shared_data / "cvnd_youtube_faces"
    import csv
    with open(faces / "training_frames_keypoints.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    keypoints = np.array([input_data.frame_from_68(p).to_frame(input_data.keypoints_from_68(p)).ravel()
                          for p in (input_data._parse_68(row) for row in rows)])
    flagged = {rows[flag.row][0] for flag in label_check.check(keypoints, KEYPOINT_NAMES).flags}
    assert "Marieta_Chrousala_12.jpg" in flagged and len(flagged) <= 10, flagged


def test_check_labels_out_writes_the_faces_without_the_flagged_rows(tmp_path, capsys):
    keypoints, planted = planted_table()
    keypoints = np.clip(keypoints, 0, 95)           # write_csv's frame; NaN stays missing
    images = np.zeros((len(keypoints), 96, 96), np.uint8)
    images[:, 0, 0] = np.arange(len(keypoints)) % 256           # tells the rows apart
    path = input_data.write_csv(tmp_path / "faces.csv", images, keypoints)
    with open(input_data.sources_path(path), "w") as f:
        f.write("row,file,person\n" + "".join(f"{i},f{i}.jpg,p{i // 10}\n" for i in range(ROWS)))
    out = tmp_path / "clean.csv"
    assert input_data.main(["check-labels", str(path), "--out", str(out)]) == 0
    flagged = [int(line.split(", row ")[1].split(" ")[0]) - 1 for line in capsys.readouterr().out.splitlines()
               if ", row " in line]
    assert set(planted) <= set(flagged)
    kept_images, kept_keypoints = input_data.read_keypoints(out)
    keep = np.setdiff1d(np.arange(ROWS), flagged)
    assert (kept_images[:, 0, 0] == images[keep, 0, 0]).all()
    np.testing.assert_allclose(kept_keypoints, keypoints[keep], atol=1e-4)
    sources = input_data.sources_path(out).read_text().splitlines()
    assert sources[0] == "row,file,person" and sources[1:3] == [f"0,f{keep[0]}.jpg,p{keep[0] // 10}",
                                                                f"1,f{keep[1]}.jpg,p{keep[1] // 10}"]
    assert len(sources) == len(keep) + 1
    with pytest.raises(input_data.cli.UsageError, match="exists; pass --overwrite"):
        input_data.main(["check-labels", str(path), "--out", str(out)])


def test_check_labels_out_needs_faces(tmp_path, capsys):
    keypoints, _ = planted_table()
    path = tmp_path / "keypoints.csv"
    path.write_text(",".join(COLUMNS) + "\n" + "".join(
        ",".join("" if np.isnan(v) else f"{v:.4f}" for v in row) + "\n" for row in keypoints))
    with pytest.raises(SystemExit) as stopped:
        input_data.cli.run(input_data.main, ["check-labels", str(path), "--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert stopped.value.code == 1 and err == f"error: {path}: has no Image column; --out writes faces to train on\n"
    assert not (tmp_path / "o.csv").exists()
