"""Careless and hostile input through every command line (issue 15): a table of cases.

Each case runs one command on one bad input, as a user would type it, and asserts:
  - the exit status: 2 for a bad option or setting, 1 for a bad file/row/field (or 0 where the
    right answer is to skip the bad item and finish, e.g. an unreadable photo among good ones);
  - exactly one `error: ...` line on stderr (argparse's `prog: error: ...` counts), naming the
    option, file or row (`names`), and no Python traceback;
  - the case's own folder unchanged on failure (no half-written output, no temporary files),
    or, for a case that should finish, its output complete.

Cheap cases run in this process (runpy, exactly as `python SCRIPT ...` would, stdout/stderr
captured); cases that can crash the interpreter (a segfault in cv2 on a non-UTF-8 name), train
for real in the original code, or need a timeout run in a subprocess. Every case works in its own
tmp folder (the working directory too), on inputs written once per module to another.

    make check-inputs            # this module alone
    pytest tests/test_bad_inputs.py -k train.py
"""
import contextlib
import io
import os
import pickle
import re
import runpy
import subprocess
import sys
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

import input_data
import synthetic_faces
from input_data import COLUMNS

MODEL = ROOT / "models" / "v6_resnet_integral" / "model.keras"   # the shipped model
ONNX = MODEL.with_suffix(".onnx")                                 # the same network, for onnxruntime
ERROR_LINE = re.compile(r"^(?:[\w.\-]+(?: [\w.\-]+)?: )?error: ")   # also `prog subcommand: error:`
# TensorFlow's start-up lines on stderr (not ours; left out of failure messages only).
NOISE = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} |To enable the following instructions)")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass
class Case:
    script: str
    argv: list
    status: object            # 0, 1, 2 or a tuple of allowed statuses
    names: str = ""           # must appear in the error line ({inp}/{case} are filled in)
    name: str = ""            # case id
    env: dict = field(default_factory=dict)
    subprocess: bool = False  # True: a separate interpreter with a timeout
    complete: str = ""        # status 0: a glob that must match a non-empty file in the case folder
    setup: object = None      # callable(case_dir, inp): prepares the case folder
    skip: str = ""            # a reason to skip (e.g. read-only folders mean nothing to root)

    def __post_init__(self):
        self.argv = [str(a) for a in self.argv]


def C(name, script, argv, status, names="", **kw):
    return Case(script, argv, status, names, name=name, **kw)


# ---------------------------------------------------------------------------------------
# The inputs, written once: good ones to start from, and every kind of bad one.

def _csv_text(images, keypoints):
    """Training-style CSV text, header and rows, to cut and edit."""
    header = ",".join(COLUMNS + ["Image"])
    rows = [",".join(f"{v:.2f}" for v in k) + "," + input_data.format_pixels(im).decode()
            for im, k in zip(images, keypoints)]
    return header, rows


def _zip(name, data, method=zipfile.ZIP_DEFLATED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as z:
        z.writestr(name, data)
    return buffer.getvalue()


def _photo(path, image, size=192):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).resize((size, size)).save(path)


class BigArray:
    """A pickle of ~150 bytes declaring a 2 GB array (above serializer's 1 GB limit)."""

    def __reduce__(self):
        return (np._core.multiarray._reconstruct, (np.ndarray, (2_200_000_000,), b"b"))


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _write_checkpoint(prefix, rng):
    """A TF1 name-based checkpoint shaped like TFLearn's v1 (fc1 50 units, fc2 30)."""
    import tensorflow as tf
    shapes = {"fc1/W": (9216, 50), "fc1/b": (50,), "fc2/W": (50, 30), "fc2/b": (30,)}
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=list(shapes), shape_and_slices=[""] * len(shapes),
                      tensors=[tf.constant(rng.normal(0, 0.01, s).astype(np.float32)) for s in shapes.values()])


@pytest.fixture(scope="module")
def inp(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    images, keypoints = synthetic_faces.make_faces(16, seed=0)
    input_data.write_csv(d / "train.csv", images[:12], keypoints[:12])
    input_data.write_csv(d / "test.csv", images[12:], image_ids=[1, 2, 3, 4])
    lookup = ["RowId,ImageId,FeatureName,Location"] + [
        f"{r},{i},{f}," for r, (i, f) in enumerate([(i, f) for i in (1, 2, 3, 4)
                                                     for f in ("left_eye_center_x", "nose_tip_y")], 1)]
    (d / "lookup.csv").write_text("\n".join(lookup) + "\n")
    twice = list(lookup)
    twice[3] = "3,1,left_eye_center_x,"                       # row 3 asks again for row 1's value
    (d / "lookup_twice.csv").write_text("\n".join(twice) + "\n")
    (d / "lookup_badutf8.csv").write_bytes(("\n".join(lookup[:3]) + "\n").encode() + b"3,\xff\xfe,nose_tip_y,\n")

    header, rows = _csv_text(images[:4], keypoints[:4])
    pixels = [r.rsplit(",", 1)[1] for r in rows]
    values = [r.rsplit(",", 1)[0] for r in rows]
    write = lambda name, text: (d / name).write_text(text)   # noqa: E731
    write("dup_image_test.csv", "ImageId,Image,Image\n" + "\n".join(f"{i},{p},{p}" for i, p in enumerate(pixels, 1))
          + "\n")
    write("dup_image.csv", header + ",Image\n" + "\n".join(f"{r},{p}" for r, p in zip(rows, pixels)) + "\n")
    write("dup_keypoint.csv", header.replace("Image", f"{COLUMNS[0]},Image") + "\n"
          + "\n".join(f"{v},{v.split(',')[0]},{p}" for v, p in zip(values, pixels)) + "\n")
    write("unknown_col.csv", header.replace("Image", "age,Image") + "\n"
          + "\n".join(f"{v},37,{p}" for v, p in zip(values, pixels)) + "\n")
    (d / "bad_utf8.csv").write_bytes((header + "\n" + rows[0] + "\n").encode()
                                     + b"66.1\xff," + (rows[1].split(",", 1)[1]).encode() + b"\n")
    write("nan_image.csv", header + "\n" + rows[0] + "\n" + values[1] + ",NaN\n")
    write("inf_keypoint.csv", header + "\n" + rows[0] + "\n" + "inf," + rows[1].split(",", 1)[1] + "\n")
    (d / "empty.csv").write_bytes(b"")
    (d / "binary.csv").write_bytes(rng.integers(0, 256, 6000, dtype=np.uint8).tobytes())
    full = (d / "train.csv").read_bytes()
    (d / "truncated.csv").write_bytes(full[: len(full) * 2 // 3])
    write("huge_header.csv", "Image," + ",".join(f"c{i}" for i in range(200_000)) + "\n1,2\n")
    big_images, big_keypoints = synthetic_faces.make_faces(60, seed=1)
    input_data.write_csv(d / "big.csv", big_images, big_keypoints)          # ~2 MB, above 1 MB
    (d / "bomb.zip").write_bytes(_zip("training.csv", header.encode() + b"\n" + b"0 " * 20_000_000))
    blob = _zip("training.csv", (header + "\n" + rows[0] + "\n").encode())
    for _ in range(1000):                                                   # a zip 1000 deep
        blob = _zip("training.zip", blob, zipfile.ZIP_STORED)
    (d / "nested.zip").write_bytes(blob)
    (d / "notzip.zip").write_bytes(b"PK\x03\x04" + bytes(200))
    (d / "folder.csv").mkdir()

    X = (images[:12].astype(np.float32) / 255)[..., None]
    Y = ((keypoints[:12] - 48) / 48).astype(np.float32)
    (d / "evil.p").write_bytes(pickle.dumps(((X, Exploit(d / "pwned")), (None, None))))
    (d / "objfield.p").write_bytes(pickle.dumps(((np.zeros(12, dtype=[("x", "f4"), ("o", "O")]), Y),
                                                 (None, None)), protocol=2))
    (d / "bigdecl.p").write_bytes(pickle.dumps(((BigArray(), Y), (None, None)), protocol=2))
    (d / "truncated.p").write_bytes(pickle.dumps(((X, Y), (None, None)))[:5000])
    (d / "garbage.keras").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (d / "garbage.onnx").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (d / "garbage.tflite").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())

    _write_checkpoint(d / "ckpt_trunc" / "model.tflearn", rng)
    data = next((d / "ckpt_trunc").glob("model.tflearn.data-*"))
    data.write_bytes(data.read_bytes()[:1000])
    _write_checkpoint(d / "ckpt_nodata" / "model.tflearn", rng)
    next((d / "ckpt_nodata").glob("model.tflearn.data-*")).unlink()

    for person in ("alice", "bob"):
        for k in range(3):
            _photo(d / "photos" / person / f"{k}.jpg", images[k + (3 if person == "bob" else 0)])
    for k in range(4):
        _photo(d / "people_one" / "alice" / f"{k}.jpg", images[k])
    (d / "noise.jpg").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())

    cvnd = d / "cvnd_binary"
    cvnd.mkdir()
    (cvnd / "training_frames_keypoints.csv").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    cvnd_nan = d / "cvnd_nan"
    cvnd_nan.mkdir()
    (cvnd_nan / "training_frames_keypoints.csv").write_text(
        "," + ",".join(map(str, range(136))) + "\nx_01.jpg," + ",".join(["nan"] * 136) + "\n")

    dup_dir = d / "dupdir"
    dup_dir.mkdir()
    (dup_dir / "training.csv").write_bytes((d / "dup_image.csv").read_bytes())
    good_dir = d / "gooddir"
    good_dir.mkdir()
    (good_dir / "training.csv").write_bytes(full)
    return d


def _copy_photos_with_bad_names(case_dir, inp):
    """A photo folder whose files have names that are not UTF-8, and one that is noise."""
    folder = case_dir / "faces" / "someone"
    folder.mkdir(parents=True)
    good = (inp / "photos" / "alice" / "0.jpg").read_bytes()
    (folder / "ok.jpg").write_bytes(good)
    with open(os.path.join(os.fsencode(folder), b"caf\xe9-\xff.jpg"), "wb") as f:
        f.write(good)
    (folder / "noise.jpg").write_bytes((inp / "noise.jpg").read_bytes())


def _read_only_folder(case_dir, inp):
    """A read-only folder holding one photo (predict.py's default output goes beside photos)."""
    (case_dir / "ro" / "someone").mkdir(parents=True)
    (case_dir / "ro" / "someone" / "0.jpg").write_bytes((inp / "photos" / "alice" / "0.jpg").read_bytes())
    for folder in (case_dir / "ro" / "someone", case_dir / "ro"):
        folder.chmod(0o555)


RO_SKIP = "root can write into read-only folders" if IS_ROOT else ""


# ---------------------------------------------------------------------------------------
# The table.

TRAIN = ["--data", "{inp}/train.csv", "--epochs", "1", "--root", "{case}", "--no-save",
         "--validation", "0.25", "--run-id", "r1", "--model", "v1_single_layer", "--batch-size", "4"]


def _train(*changes):
    """TRAIN with some options replaced or added."""
    argv = list(TRAIN)
    changes = list(changes)
    while changes:
        flag, value = changes.pop(0), changes.pop(0)
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


EVAL = ["--model", MODEL, "--data"]
SUB = ["--model", MODEL, "--test", "{inp}/test.csv", "--lookup", "{inp}/lookup.csv", "--out-dir", "{case}/sub"]
SPEC = ["train", "--data", "{inp}/train.csv", "--epochs", "1", "--run", "s1", "--only", "eye_centers"]
TFL = ["import-tflearn", "{inp}/ckpt_trunc/model.tflearn", "--model", "v1_single_layer", "--out", "{case}/m.keras"]
REC = ["train", "{inp}/photos", "--no-detect", "--run", "{case}/run", "--head-epochs", "1", "--finetune-epochs", "0"]

CASES = [
    # train.py: settings (issue 15, class 1), run ids (class 3), data (classes 4, 5)
    C("train-batch-size-0", "train.py", _train("--batch-size", "0"), 2, "--batch-size"),
    C("train-epochs-0", "train.py", _train("--epochs", "0"), 2, "--epochs"),
    C("train-patience-neg", "train.py", _train("--patience", "-1"), 2, "--patience"),
    C("train-optimizer", "train.py", _train("--optimizer", "adamx"), 2, "--optimizer"),
    C("train-loss", "train.py", _train("--loss", "hinge"), 2, "--loss"),
    C("train-augment", "train.py", _train("--augment", "twirl"), 2, "--augment"),
    C("train-precision", "train.py", _train("--precision", "float8"), 2, "--precision"),
    C("train-option-units-neg", "train.py", _train("--option", "units=-5"), 2, "units"),
    C("train-option-no-equals", "train.py", _train("--option", "units"), 2, "--option"),
    C("train-model-unknown", "train.py", _train("--model", "v99_nothing"), 2, "v99_nothing"),
    C("train-lr-nan", "train.py", _train("--learning-rate", "nan"), 2, "--learning-rate"),
    C("train-lr-neg", "train.py", _train("--learning-rate", "-0.1"), 2, "--learning-rate"),
    C("train-validation-neg", "train.py", _train("--validation", "-0.2"), 2, "--validation"),
    C("train-run-id-dotdot", "train.py", _train("--run-id", ".."), 2, "--run-id"),
    C("train-run-id-absolute", "train.py", _train("--run-id", "/tmp"), 2, "--run-id"),
    C("train-data-missing", "train.py", _train("--data", "{case}/nope.csv"), 1, "nope.csv"),
    C("train-data-dup-image", "train.py", _train("--data", "{inp}/dup_image.csv"), 1, "Image appears"),
    C("train-data-binary", "train.py", _train("--data", "{inp}/binary.csv"), 1, "binary.csv"),
    C("train-data-evil-pickle", "train.py", _train("--data", "{inp}/evil.p"), 1, "evil.p"),
    C("train-data-big-pickle", "train.py", _train("--data", "{inp}/bigdecl.p"), 1, "bigdecl.p", subprocess=True),
    C("train-root-is-a-file", "train.py", _train("--root", "{inp}/train.csv"), (1, 2), "train.csv"),
    C("train-root-read-only", "train.py", _train("--root", "{case}/ro"), 1, "{case}/ro", setup=_read_only_folder,
      skip=RO_SKIP),

    # evaluate.py: every kind of bad data file
    C("evaluate-dup-keypoint", "evaluate.py", EVAL + ["{inp}/dup_keypoint.csv"], 1, f"{COLUMNS[0]} appears"),
    C("evaluate-dup-image", "evaluate.py", EVAL + ["{inp}/dup_image.csv"], 1, "Image appears"),
    C("evaluate-unknown-column", "evaluate.py", EVAL + ["{inp}/unknown_col.csv"], 1, "age"),
    C("evaluate-bad-utf8", "evaluate.py", EVAL + ["{inp}/bad_utf8.csv"], 1, "bad_utf8.csv"),
    C("evaluate-nan-image", "evaluate.py", EVAL + ["{inp}/nan_image.csv"], 1, "row 2"),
    C("evaluate-inf-keypoint", "evaluate.py", EVAL + ["{inp}/inf_keypoint.csv"], 1, "row 2"),
    C("evaluate-empty", "evaluate.py", EVAL + ["{inp}/empty.csv"], 1, "empty.csv"),
    C("evaluate-binary", "evaluate.py", EVAL + ["{inp}/binary.csv"], 1, "binary.csv"),
    C("evaluate-truncated", "evaluate.py", EVAL + ["{inp}/truncated.csv"], 1, "truncated.csv"),
    C("evaluate-huge-header", "evaluate.py", EVAL + ["{inp}/huge_header.csv"], 1, "huge_header.csv"),
    C("evaluate-folder-as-data", "evaluate.py", EVAL + ["{inp}/folder.csv"], 1, "folder.csv"),
    C("evaluate-size-limit", "evaluate.py", EVAL + ["{inp}/big.csv"], 1, "FKD_MAX_CSV_MB",
      env={"FKD_MAX_CSV_MB": "1"}),
    C("evaluate-zip-bomb", "evaluate.py", EVAL + ["{inp}/bomb.zip"], 1, "FKD_MAX_CSV_MB",
      env={"FKD_MAX_CSV_MB": "8"}),
    C("evaluate-nested-zip", "evaluate.py", EVAL + ["{inp}/nested.zip"], 1, "nested.zip", subprocess=True),
    C("evaluate-not-a-zip", "evaluate.py", EVAL + ["{inp}/notzip.zip"], 1, "notzip.zip"),
    C("evaluate-evil-pickle", "evaluate.py", EVAL + ["{inp}/evil.p"], 1, "evil.p"),
    C("evaluate-object-field-pickle", "evaluate.py", EVAL + ["{inp}/objfield.p"], 1, "objfield.p"),
    C("evaluate-truncated-pickle", "evaluate.py", EVAL + ["{inp}/truncated.p"], 1, "truncated.p"),
    C("evaluate-big-pickle", "evaluate.py", EVAL + ["{inp}/bigdecl.p"], 1, "bigdecl.p", subprocess=True),
    C("evaluate-model-garbage", "evaluate.py", ["--model", "{inp}/garbage.keras", "--data", "{inp}/train.csv"],
      1, "garbage.keras"),
    C("evaluate-model-missing", "evaluate.py", ["--model", "{case}/nope.keras", "--data", "{inp}/train.csv"],
      1, "nope.keras"),
    C("evaluate-no-model", "evaluate.py", ["--data", "{inp}/train.csv"], 2, "--model"),

    # write_submission.py (class 7: a lookup asking twice)
    C("submission-lookup-twice", "write_submission.py", SUB[:4] + ["--lookup", "{inp}/lookup_twice.csv"] + SUB[6:],
      1, "lookup_twice.csv, row 3"),
    C("submission-lookup-bad-utf8", "write_submission.py",
      SUB[:4] + ["--lookup", "{inp}/lookup_badutf8.csv"] + SUB[6:], 1, "lookup_badutf8.csv"),
    C("submission-test-dup-image", "write_submission.py",
      SUB[:2] + ["--test", "{inp}/dup_image_test.csv"] + SUB[4:], 1, "Image appears"),
    C("submission-test-binary", "write_submission.py", SUB[:2] + ["--test", "{inp}/binary.csv"] + SUB[4:],
      1, "binary.csv"),
    C("submission-model-garbage", "write_submission.py", ["--model", "{inp}/garbage.keras"] + SUB[2:],
      1, "garbage.keras"),
    C("submission-model-missing", "write_submission.py", ["--model", "{case}/nope.keras"] + SUB[2:],
      1, "nope.keras"),
    C("submission-out-dir-is-a-file", "write_submission.py", SUB[:6] + ["--out-dir", "{inp}/train.csv"],
      1, "train.csv"),
    C("submission-out-dir-read-only", "write_submission.py", SUB[:6] + ["--out-dir", "{case}/ro"], 1, "{case}/ro",
      setup=_read_only_folder, skip=RO_SKIP),
    C("submission-submit-no-message", "write_submission.py", SUB + ["--submit"], 2, "-m"),

    # input_data.py
    C("input-data-summary-data-is-a-file", "input_data.py", ["summary", "--data", "{inp}/train.csv"], 1,
      "train.csv"),
    C("input-data-summary-dup-image", "input_data.py", ["summary", "--data", "{inp}/dupdir", "--plot",
                                                        "{case}/s.png"], 1, "Image appears"),
    C("input-data-summary-plot-not-png", "input_data.py", ["summary", "--data", "{inp}/gooddir", "--plot",
                                                           "{case}/s.txt"], 2, "--plot"),
    C("input-data-bad-limit-env", "input_data.py", ["summary", "--data", "{inp}/gooddir", "--plot",
                                                    "{case}/s.png"], 2, "FKD_MAX_CSV_MB",
      env={"FKD_MAX_CSV_MB": "lots"}),
    C("input-data-convert-missing-csv", "input_data.py", ["convert-68", "--csv", "{case}/nope.csv", "--images",
                                                          "{inp}/photos", "--out", "{case}/o.csv"], 1, "nope.csv"),
    C("input-data-convert-binary-csv", "input_data.py", ["convert-68", "--csv", "{inp}/binary.csv", "--images",
                                                         "{inp}/photos", "--out", "{case}/o.csv"], 1, "binary.csv"),
    C("input-data-convert-out-not-csv", "input_data.py", ["convert-68", "--csv", "{inp}/train.csv", "--images",
                                                          "{inp}/photos", "--out", "{case}/o.txt"], 2, "--out"),
    C("input-data-convert-images-is-a-file", "input_data.py", ["convert-68", "--csv", "{inp}/train.csv",
                                                               "--images", "{inp}/train.csv", "--out",
                                                               "{case}/o.csv"], 1, "--images"),

    # serializer.py
    C("serializer-dup-keypoint", "serializer.py", ["--train", "{inp}/dup_keypoint.csv", "--out", "{case}/d.p"],
      1, f"{COLUMNS[0]} appears"),
    C("serializer-out-not-p", "serializer.py", ["--train", "{inp}/train.csv", "--out", "{case}/d.csv"], 2,
      "--out"),
    C("serializer-train-missing", "serializer.py", ["--train", "{case}/nope.csv", "--out", "{case}/d.p"], 1,
      "nope.csv"),
    C("serializer-train-binary", "serializer.py", ["--train", "{inp}/binary.csv", "--out", "{case}/d.p"], 1,
      "binary.csv"),
    C("serializer-test-nan-image", "serializer.py", ["--train", "{inp}/train.csv", "--test", "{inp}/nan_image.csv",
                                                     "--out", "{case}/d.p"], 1, "nan_image.csv"),
    C("serializer-out-under-a-file", "serializer.py", ["--train", "{inp}/train.csv", "--out",
                                                       "{inp}/train.csv/d.p"], 1, "train.csv"),
    C("serializer-nested-zip", "serializer.py", ["--train", "{inp}/nested.zip", "--out", "{case}/d.p"], 1,
      "nested.zip", subprocess=True),

    # synthetic_faces.py
    C("synthetic-n-train-0", "synthetic_faces.py", ["--n-train", "0", "--out", "{case}/s"], 2, "--n-train"),
    C("synthetic-n-train-neg", "synthetic_faces.py", ["--n-train", "-5", "--out", "{case}/s"], 2, "--n-train"),
    C("synthetic-n-test-text", "synthetic_faces.py", ["--n-test", "many", "--out", "{case}/s"], 2, "--n-test"),
    C("synthetic-seed-neg", "synthetic_faces.py", ["--seed", "-1", "--out", "{case}/s"], 2, "--seed"),
    C("synthetic-n-train-huge", "synthetic_faces.py", ["--n-train", "1000000000", "--out", "{case}/s"], 2,
      "--n-train", subprocess=True),
    C("synthetic-out-is-a-file", "synthetic_faces.py", ["--n-train", "5", "--n-test", "2", "--out",
                                                        "{inp}/train.csv"], 1, "train.csv"),
    C("synthetic-preview-not-png", "synthetic_faces.py", ["--n-train", "5", "--n-test", "2", "--out", "{case}/s",
                                                          "--preview", "{case}/p.jpg"], 2, "--preview"),
    C("synthetic-fit-stats-binary", "synthetic_faces.py", ["--fit-stats", "{inp}/binary.csv"], 1, "binary.csv"),
    C("synthetic-fit-stats-missing", "synthetic_faces.py", ["--fit-stats", "{case}/nope.csv"], 1, "nope.csv"),

    # tflearn_import.py (class 1: truncated or missing .data)
    C("tflearn-truncated-data", "tflearn_import.py", TFL, 1, "model.tflearn"),
    C("tflearn-missing-data", "tflearn_import.py",
      [TFL[0], "{inp}/ckpt_nodata/model.tflearn"] + TFL[2:], 1, "model.tflearn"),
    C("tflearn-units-0", "tflearn_import.py", TFL + ["--units", "0"], 2, "--units"),
    C("tflearn-model-unknown", "tflearn_import.py", TFL[:3] + ["v99_nothing"] + TFL[4:], 2, "--model"),
    C("tflearn-option-units-neg", "tflearn_import.py", TFL + ["--option", "units=-5"], 2, "units"),
    C("tflearn-out-not-keras", "tflearn_import.py", TFL[:5] + ["{case}/m.h5"], 2, "--out"),
    C("tflearn-list-missing", "tflearn_import.py", ["list", "{case}/nope/model.tflearn"], 1, "nope"),

    # test_inference.py
    C("test-inference-batch-0", "test_inference.py", ["{inp}/garbage.onnx", "--data", "{inp}/train.csv",
                                                      "--batch", "0"], 2, "--batch"),
    C("test-inference-threads-neg", "test_inference.py", ["{inp}/garbage.onnx", "--data", "{inp}/train.csv",
                                                          "--threads", "-2"], 2, "--threads"),
    C("test-inference-limit-neg", "test_inference.py", ["{inp}/garbage.onnx", "--data", "{inp}/train.csv",
                                                        "--limit", "-1"], 2, "--limit"),
    C("test-inference-dup-image", "test_inference.py", [str(ONNX), "--data", "{inp}/dup_image.csv"],
      1, "Image appears"),
    C("test-inference-data-missing", "test_inference.py", ["{inp}/garbage.onnx", "--data", "{case}/nope.csv"],
      1, "nope.csv"),
    C("test-inference-model-garbage", "test_inference.py", ["{inp}/garbage.onnx", "--data", "{inp}/train.csv"],
      1, "garbage.onnx"),
    C("test-inference-model-missing", "test_inference.py", ["{case}/nope.onnx", "--data", "{inp}/train.csv"],
      1, "nope.onnx"),
    C("test-inference-out-under-a-file", "test_inference.py", [str(ONNX), "--data", "{inp}/train.csv",
                                                               "--out", "{inp}/train.csv/p.csv"], 1, "train.csv"),

    # export.py
    C("export-opset-low", "export.py", ["--model", MODEL, "--format", "onnx", "--out", "{case}/m.onnx",
                                        "--opset", "5"], 2, "--opset"),
    C("export-tolerance-nan", "export.py", ["--model", MODEL, "--format", "tflite", "--out", "{case}/m.tflite",
                                            "--tolerance", "nan"], 2, "--tolerance"),
    C("export-tolerance-neg", "export.py", ["--model", MODEL, "--format", "tflite", "--out", "{case}/m.tflite",
                                            "--tolerance", "-1"], 2, "--tolerance"),
    C("export-format-unknown", "export.py", ["--model", MODEL, "--format", "pt", "--out", "{case}/m.pt"], 2,
      "--format"),
    C("export-model-garbage", "export.py", ["--model", "{inp}/garbage.keras", "--format", "tflite", "--out",
                                            "{case}/m.tflite"], 1, "garbage.keras"),
    C("export-data-dup-image", "export.py", ["--model", MODEL, "--format", "tflite", "--out", "{case}/m.tflite",
                                             "--data", "{inp}/dup_image.csv"], 1, "Image appears", subprocess=True),
    C("export-out-under-a-file", "export.py", ["--model", MODEL, "--format", "tflite", "--out",
                                               "{inp}/train.csv/m.tflite"], 1, "train.csv", subprocess=True),

    # predict.py (class 6): subprocesses, since a bad name could crash inside OpenCV
    C("predict-faces-missing", "predict.py", ["--faces", "{case}/nope", "--no-progress"], 1, "nope",
      subprocess=True),
    C("predict-faces-is-a-file", "predict.py", ["--faces", "{inp}/train.csv", "--no-progress"], 1, "train.csv",
      subprocess=True),
    C("predict-n-plot-neg", "predict.py", ["--faces", "{inp}/photos", "--n-plot", "-1", "--no-progress"], 2,
      "--n-plot", subprocess=True),
    C("predict-model-garbage", "predict.py", ["--faces", "{inp}/photos", "--model", "{inp}/garbage.keras",
                                              "--no-progress"], 1, "garbage.keras", subprocess=True),
    C("predict-non-utf8-and-noise-photos", "predict.py", ["--faces", "{case}/faces", "--no-detect", "--no-progress",
                                                          "--no-flip-tta"], 0, subprocess=True,
      setup=_copy_photos_with_bad_names, complete="faces/prediction-*.csv"),
    C("predict-read-only-folder", "predict.py", ["--faces", "{case}/ro", "--no-progress"], 1, "{case}/ro",
      subprocess=True, setup=_read_only_folder, skip=RO_SKIP),

    # recognize.py (class 7: one person)
    C("recognize-train-one-person", "recognize.py", [REC[0], "{inp}/people_one"] + REC[2:], (1, 2), "people_one",
      subprocess=True),
    C("recognize-train-folder-missing", "recognize.py", [REC[0], "{case}/nope"] + REC[2:], 1, "nope",
      subprocess=True),
    C("recognize-train-batch-size-0", "recognize.py", REC + ["--batch-size", "0"], 2, "--batch-size",
      subprocess=True),
    C("recognize-train-head-lr-nan", "recognize.py", REC + ["--head-learning-rate", "nan"], 2,
      "--head-learning-rate", subprocess=True),
    C("recognize-predict-run-missing", "recognize.py", ["predict", "{inp}/photos", "--run", "{case}/nope"], 1,
      "nope"),
    C("recognize-predict-threshold-nan", "recognize.py", ["predict", "{inp}/photos", "--run", "{case}/nope",
                                                          "--threshold", "nan"], 2, "--threshold"),
    C("recognize-verify-run-missing", "recognize.py", ["verify", "{inp}/noise.jpg", "{inp}/noise.jpg", "--run",
                                                       "{case}/nope"], 1, "nope"),

    # specialists.py
    C("specialists-images-0", "specialists.py", SPEC + ["--images", "0"], 2, "--images", subprocess=True),
    C("specialists-epochs-neg", "specialists.py", SPEC[:4] + ["-1"] + SPEC[5:], 2, "--epochs", subprocess=True),
    C("specialists-time-limit-nan", "specialists.py", SPEC + ["--time-limit", "nan"], 2, "--time-limit",
      subprocess=True),
    C("specialists-only-unknown", "specialists.py", SPEC[:-1] + ["cheeks"], 2, "cheeks", subprocess=True),
    C("specialists-data-dup-keypoint", "specialists.py", [SPEC[0], "--data", "{inp}/dup_keypoint.csv"] + SPEC[3:]
      + ["--model", "v1_single_layer"],
      1, f"{COLUMNS[0]} appears", subprocess=True),
    C("specialists-pretrained-garbage", "specialists.py", SPEC + ["--pretrained", "{inp}/garbage.keras"], 1,
      "garbage.keras", subprocess=True),

    # calibrate_detector.py
    C("calibrate-faces-missing", "calibrate_detector.py", ["--faces", "{case}/nope", "--out", "{case}/c.json"], 1,
      "nope"),
    C("calibrate-labels-binary", "calibrate_detector.py", ["--faces", "{inp}/cvnd_binary", "--out",
                                                           "{case}/c.json"], 1, "training_frames_keypoints.csv"),
    C("calibrate-labels-nan", "calibrate_detector.py", ["--faces", "{inp}/cvnd_nan", "--out", "{case}/c.json"], 1,
      "training_frames_keypoints.csv"),
    C("calibrate-out-under-a-file", "calibrate_detector.py", ["--faces", "{inp}/cvnd_nan", "--out",
                                                              "{inp}/train.csv/c.json"], 1, "train.csv"),
]

SCRIPTS = sorted({case.script for case in CASES})


def test_every_command_line_is_in_the_table():
    """A new CLI (a file ending in cli.run(main) or `__main__`) must get its cases here."""
    scripts = {p.name for p in ROOT.glob("*.py")
               if re.search(r'^if __name__ == "__main__":', p.read_text(), re.MULTILINE)}
    missing = scripts - set(SCRIPTS)
    assert not missing, f"no bad-input cases for {sorted(missing)}"


# ---------------------------------------------------------------------------------------
# Running a case.

def _snapshot(folder):
    """Every file under folder: relative path -> (size, mtime). Empty folders do not count."""
    files = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            files[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
    return files


def _run_in_process(script, argv, cwd, env, monkeypatch):
    """`python SCRIPT ARGV` in this interpreter: (status, stdout, stderr)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [str(ROOT / script)] + argv)
    out, err = io.StringIO(), io.StringIO()
    status = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(str(ROOT / script), run_name="__main__")
        except SystemExit as exit:
            if exit.code is None:
                status = 0
            elif isinstance(exit.code, int):
                status = exit.code
            else:                          # sys.exit("message"): Python prints it, status 1
                print(exit.code, file=sys.stderr)
                status = 1
        except KeyboardInterrupt:
            raise
        except BaseException:              # what the interpreter would print
            traceback.print_exc()
            status = 1
    return status, out.getvalue(), err.getvalue()


def _run_subprocess(script, argv, cwd, env, timeout=180):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg",
                   "CUDA_VISIBLE_DEVICES": "", **env}
    environment["PYTHONPATH"] = str(ROOT)
    try:
        done = subprocess.run([sys.executable, str(ROOT / script), *argv], cwd=cwd, env=environment,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "", f"timed out after {timeout} s"
    return done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")


@pytest.mark.parametrize("case", CASES, ids=[f"{c.script}:{c.name}" for c in CASES])
def test_bad_input(case, inp, tmp_path, monkeypatch):
    if case.skip:
        pytest.skip(case.skip)
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    if case.setup:
        case.setup(case_dir, inp)
    fill = lambda text: text.replace("{inp}", str(inp)).replace("{case}", str(case_dir))   # noqa: E731
    argv = [fill(a) for a in case.argv]
    before = _snapshot(case_dir)
    try:
        if case.subprocess:
            status, out, err = _run_subprocess(case.script, argv, case_dir, case.env)
        else:
            status, out, err = _run_in_process(case.script, argv, case_dir, case.env, monkeypatch)
    finally:
        for folder in (case_dir / "ro", case_dir / "ro" / "someone"):
            if folder.exists():
                folder.chmod(0o755)
    allowed = case.status if isinstance(case.status, tuple) else (case.status,)
    errors = [line for line in err.splitlines() if ERROR_LINE.match(line)]
    shown = "\n".join(line for line in err.splitlines() if not NOISE.match(line))
    where = f"exit {status}; stderr tail: {shown.strip()[-1500:]!r}"
    assert "Traceback (most recent call last)" not in err, where
    assert status in allowed, where
    if status == 0:
        assert not errors, where
        found = [p for p in case_dir.glob(case.complete) if p.stat().st_size > 0]
        assert found, f"no complete output {case.complete} in the case folder; {where}"
    else:
        assert len(errors) == 1, f"expected one error line; {where}"
        names = fill(case.names)
        assert names in errors[0], f"the error does not name {names!r}: {errors[0]!r}"
        after = _snapshot(case_dir)
        assert after == before, f"the case folder changed: {sorted(set(after) ^ set(before))[:10]}"
    leftovers = [p for p in case_dir.rglob("*") if p.name.endswith((".tmp", ".tmp.keras"))
                 or p.name.startswith(".write-test-")]
    assert not leftovers, f"temporary files left: {leftovers}"
    assert not (inp / "pwned").exists(), "a pickle ran code"


@pytest.mark.parametrize("script, argv", [
    ("export.py", ["--model", "m.keras", "--format", "onnx", "--out", "x", "--opset-typo", "17"]),
    ("export.py", ["--format", "pt"]),
    ("recognize.py", ["enroll", "people", "--galery", "g.npz"]),
    ("recognize.py", ["identify"]),
    ("evaluate.py", ["--modle", "m.keras"]),
    ("write_submission.py", ["--bogus"]),
    ("predict.py", ["--bogus"]),
    ("train.py", ["--model", "v6", "--epochz", "5"]),
    ("train.py", ["--learning-rate"]),
    ("train.py", ["--model", "v9_missing", "--epochs", "3"]),
])
def test_a_mistyped_option_is_told_before_tensorflow_loads(script, argv, tmp_path):
    """A typo is told in a fraction of a second, not after TensorFlow's 5-9 s import."""
    code = ("import os, runpy, sys; sys.argv = sys.argv[1:]; sys.path.insert(0, os.path.dirname(sys.argv[0]))\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "except SystemExit as exit:\n"
            "    print('status', exit.code, 'tensorflow' in sys.modules, 'keras' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / script), *argv],
                          capture_output=True, text=True, cwd=tmp_path)
    assert "status 2 False False" in done.stdout, done.stdout + done.stderr[-1500:]
    assert done.stderr.count("error: ") == 1, done.stderr
