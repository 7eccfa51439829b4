"""Careless input through calibrate_detector.py: an existing --out (by default the shipped
detector_calibration.json every predict.py run reads) is replaced only with --overwrite, and a
fit on too few faces is refused. Each case asserts the exit status, one `error: ...` line naming
the file or option, and that the files already there are byte for byte unchanged. Everything is
written under tmp_path; the shipped calibration is checked, never written.
"""
import csv
import hashlib

import numpy as np
import pytest
from PIL import Image

import calibrate_detector
import cli
import input_data
from prediction import detection


def run(argv, capsys):
    """(exit status, stdout, the one error line) of `python calibrate_detector.py ARGV`."""
    with pytest.raises(SystemExit) as stopped:
        cli.run(calibrate_detector.main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and len(err.splitlines()) <= 1, err
    return stopped.value.code, out, err.strip()


def labelled_faces(folder, n):
    """A CVND-style folder of n people, one blank photo each (training/<Person_Name_NN>.jpg), all
    labelled with the same 68 points; -> the square the detector must find for each."""
    (folder / "training").mkdir(parents=True)
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    points = np.stack([100 + 40 * np.cos(angles), 100 + 50 * np.sin(angles)], axis=1)
    rows = [[""] + [str(k) for k in range(136)]]
    for k in range(n):
        name = f"Person_Number{k}_0{k}.jpg"
        Image.fromarray(np.full((200, 200), 128, np.uint8)).save(folder / "training" / name)
        rows.append([name] + [f"{v:.1f}" for v in points.ravel()])
    with open(folder / "training_frames_keypoints.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    frame = input_data.frame_from_68(points)
    w = 0.9 * frame.side
    return (int(frame.cx - w / 2), int(frame.cy - w / 2), int(w), int(w))


@pytest.fixture
def found(monkeypatch):
    """Every detector finds each photo's labelled face (blank photos hold none to find)."""
    def finds(folder, n):
        box = labelled_faces(folder, n)
        monkeypatch.setattr(detection, "detect_boxes", lambda gray, **options: [box])
        monkeypatch.setattr(detection, "lbp_boxes", lambda gray, **options: [box])
        monkeypatch.setattr(detection, "blazeface_boxes", lambda gray, model="short": [box])
        return folder
    return finds


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_shipped_calibration_is_not_replaced_without_overwrite(tmp_path, capsys, monkeypatch, found):
    faces = found(tmp_path / "faces", 12)
    shipped = detection.CALIBRATION_PATH
    before = sha(shipped)
    # The default --out, pointed at a copy: the refusal comes before any work, naming file and option.
    copy = tmp_path / "detector_calibration.json"
    copy.write_bytes(shipped.read_bytes())
    monkeypatch.setattr(detection, "CALIBRATION_PATH", copy)
    status, _, error = run(["--faces", faces], capsys)
    assert status == 2 and error == (f"error: --out {copy}: exists (the shipped calibration every predict.py "
                                     "run reads); pass --overwrite to replace it, or name another --out")
    assert sha(copy) == sha(shipped) == before
    # Any other existing --out likewise; --overwrite replaces it.
    mine = tmp_path / "mine.json"
    mine.write_text('{"mine": true}\n')
    status, _, error = run(["--faces", faces, "--out", mine], capsys)
    assert status == 2 and f"--out {mine}: exists;" in error and "--overwrite" in error, error
    assert mine.read_text() == '{"mine": true}\n'
    monkeypatch.setattr(calibrate_detector, "MIN_FIT_FACES", 5)
    status, out, _ = run(["--faces", faces, "--out", mine, "--overwrite"], capsys)
    assert status == 0 and f"wrote {mine}" in out
    assert cli.read_json_object(mine)["fitted_on_faces"] >= 5


def test_a_fit_on_too_few_faces_is_refused(tmp_path, capsys, found):
    faces = found(tmp_path / "faces", 12)          # the reviewer's case had 5 faces, 4 in the fit
    out = tmp_path / "calibration.json"
    status, _, error = run(["--faces", faces, "--out", out], capsys)
    assert status == 1 and error.startswith(f"error: --faces {faces}: the Haar cascade found "), error
    assert f"a fit needs at least {calibrate_detector.MIN_FIT_FACES}" in error
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["faces"]
