"""Careless and hostile input through recognize.py and calibrate_detector.py (the reviewer's
defects 1-7): each case asserts the exit status (2: a bad option, 1: a bad file or its
contents), exactly one `error: ...` line on stderr naming the option or file, no traceback,
every file that was there before byte for byte unchanged (the shipped models are checked in a
COPY of their folders: no test writes into the repository's models/), and no temporary files.

Everything runs on synthetic faces and a tiny keypoint net (tests/test_recognition_parts.py);
no case needs ../shared, and no case trains: the refusals come before any work.
"""
import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import calibrate_detector
import cli
import input_data
import recognize
from conftest import ROOT
from recognition import embedding, gallery, head
from test_recognition_parts import base_path, synthetic_people, write_people  # noqa: F401 (fixture)
from test_bad_inputs_tools import labelled_faces

SHIPPED_V6 = ROOT / "models" / "v6_resnet_integral"
SHIPPED_EMBEDDING = ROOT / "models" / "face_embedding"
NON_UTF8 = os.fsdecode(b"Jos\xe9")          # a name whose bytes are Latin-1, not UTF-8


# ---------------------------------------------------------------------------------------
# Running a command and checking what it left.

def run(main, argv, capsys):
    """(exit status, stdout, stderr) of the command as a user runs it (cli.run)."""
    with pytest.raises(SystemExit) as stop:
        cli.run(main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return stop.value.code, out, err


def snapshot(folder):
    """Every file under folder: relative path -> sha256 of its bytes."""
    files = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = Path(dirpath) / name
            files[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def leftovers(folder):
    return [p for p in Path(folder).rglob("*") if p.name.endswith((".tmp", ".tmp.keras", ".tmp.npz"))
            or p.name.startswith(".write-test-")]


def refused(main, argv, capsys, folder, status, *words):
    """Run argv; it must end in `status` with one error line naming `words`, leaving every file
    under folder as it was and no temporary file. -> the error line."""
    before = snapshot(folder)
    got, _, err = run(main, argv, capsys)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err, err
    assert got == status, err
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    for word in words:
        assert str(word) in errors[0], (word, errors[0])
    after = snapshot(folder)
    assert after == before, sorted(set(after.items()) ^ set(before.items()))
    assert not leftovers(folder), leftovers(folder)
    return errors[0]


# ---------------------------------------------------------------------------------------
# Inputs: synthetic people, a tiny embedding run (not trained: its answers do not matter
# here), a photo.

@pytest.fixture(scope="module")
def inputs(tmp_path_factory, base_path):  # noqa: F811
    d = tmp_path_factory.mktemp("recognize-inputs")
    images, person_ids = synthetic_people(3, 2, seed=5)
    write_people(d / "people", images, person_ids)
    Image.fromarray(images[0]).save(d / "probe.png")
    # An embedding run: the tiny keypoint net's trunk, a 16-number embedding, untrained.
    run_dir = d / "embed-run"
    run_dir.mkdir()
    keras.utils.set_random_seed(0)
    embedder = embedding.build_embedder(head.feature_extractor(head.load_base(base_path), "conv"), 16)
    embedder.save(run_dir / "embedder.keras")
    (run_dir / "run.json").write_text(json.dumps(dict(kind="embedding", name="tiny", detect=False, fit="max",
                                                      threshold=1.0, align_model=str(base_path))))
    enrolled_with = f"tiny ({input_data.file_sha256(run_dir / 'embedder.keras')[:12]})"
    # Not a keypoint model: an embedder (96x96x1 -> 16), as --align-model.
    shutil.copy(run_dir / "embedder.keras", d / "embedder.keras")
    return dict(dir=d, people=d / "people", probe=d / "probe.png", run=run_dir, id=enrolled_with,
                base=base_path)


@pytest.fixture
def case(tmp_path, inputs):
    """A private copy of the inputs (so that a case that writes cannot spoil another's)."""
    for name in ("people", "probe.png", "embed-run", "embedder.keras"):
        source = inputs["dir"] / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    return dict(inputs, dir=tmp_path, people=tmp_path / "people", probe=tmp_path / "probe.png",
                run=tmp_path / "embed-run", embedder=tmp_path / "embedder.keras")


def a_gallery(path, case, dim=16, names=("person0", "person1"), enrolled_with=None):
    vectors = gallery.l2_normalize(np.random.default_rng(0).standard_normal((len(names), dim)))
    return gallery.save_gallery(path, list(names), vectors[:len(names)],
                                case["id"] if enrolled_with is None else enrolled_with)


def train_argv(case, command, run_dir, *more):
    extra = ["--finetune-epochs", "0", "--val-people", "0.5"] if command == "embed-train" else []
    return [command, case["people"], "--no-detect", "--run", run_dir, "--head-epochs", "1", *extra,
            "--base", case["base"], "--align-model", case["base"], *more]


# ---------------------------------------------------------------------------------------
# 1. A run never replaces a shipped model, nor a model that is not an earlier run of its kind.

def _looks_shipped_v6(root, case):
    folder = root / "models" / "v6_resnet_integral"
    folder.mkdir(parents=True)
    shutil.copy(case["base"], folder / "model.keras")
    (folder / "model.json").write_text(json.dumps({"model": "v6_resnet_integral", "shipped": True}))
    return folder


def _looks_shipped_embedding(root, case):
    folder = root / "models" / "face_embedding"
    folder.mkdir(parents=True)
    shutil.copy(case["embedder"], folder / "embedder.keras")
    (folder / "model.json").write_text(json.dumps({"kind": "embedding", "name": "face_embedding",
                                                   "detect": True, "threshold": 0.44}))
    return folder


def _copy_of_the_real_one(source):
    def make(root, case):
        if not source.is_dir():
            pytest.skip(f"no {source} in this checkout")
        folder = root / "models" / source.name
        shutil.copytree(source, folder)        # a copy: the test never writes near the real one
        return folder
    return make


def _other_model(root, case):
    folder = root / "someone-elses"
    folder.mkdir(parents=True)
    shutil.copy(case["base"], folder / "model.keras")
    (folder / "notes.txt").write_text("my keypoint model")
    return folder


def _softmax_run(root, case):
    folder = root / "softmax-run"
    folder.mkdir(parents=True)
    shutil.copy(case["base"], folder / "model.keras")
    (folder / "run.json").write_text(json.dumps({"kind": "softmax", "labels": ["a", "b"], "detect": False}))
    return folder


def _run_json_damaged(root, case):
    folder = _other_model(root, case)
    (folder / "run.json").write_text("[]")
    return folder


@pytest.mark.parametrize("command", ["train", "embed-train"])
@pytest.mark.parametrize("make, words", [
    (_looks_shipped_v6, ["ships with the repository"]),
    (_looks_shipped_embedding, ["ships with the repository"]),
    (_copy_of_the_real_one(SHIPPED_V6), ["ships with the repository"]),
    (_copy_of_the_real_one(SHIPPED_EMBEDDING), ["ships with the repository"]),
    (_other_model, ["model.keras", "no run.json"]),
    (_run_json_damaged, ["run.json"]),
], ids=["shipped-v6", "shipped-embedding", "copy-of-v6", "copy-of-face_embedding", "other-model",
        "damaged-run-json"])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["", "overwrite"])
def test_a_run_never_replaces_a_model_it_did_not_make(case, capsys, command, make, words, overwrite):
    folder = make(case["dir"] / "elsewhere", case)
    refused(recognize.main, train_argv(case, command, folder, *overwrite), capsys, case["dir"], 2,
            "--run", folder, *words)


def test_a_run_of_the_other_kind_is_not_replaced(case, capsys):
    folder = _softmax_run(case["dir"], case)
    refused(recognize.main, train_argv(case, "embed-train", folder, "--overwrite"), capsys, case["dir"], 2,
            "--run", "kind 'softmax'")
    refused(recognize.main, train_argv(case, "train", case["run"], "--overwrite"), capsys, case["dir"], 2,
            "--run", "kind 'embedding'")


# ---------------------------------------------------------------------------------------
# 2. No output over an input (photos, folders, the gallery), derived ones included.

def test_outputs_never_replace_inputs(case, capsys):
    g = a_gallery(case["dir"] / "g.npz", case)
    run_ = ["--run", case["run"], "--no-detect"]
    # --out PROBE.png: OUT.png is the photo itself
    refused(recognize.main, ["identify", case["probe"], "--gallery", g, "--out", case["probe"], *run_], capsys,
            case["dir"], 2, "--out", "probe.png", "input")
    # --out PROBE (no suffix): OUT.png is still the photo
    refused(recognize.main, ["identify", case["probe"], "--gallery", g, "--out", case["dir"] / "probe", *run_],
            capsys, case["dir"], 2, "--out", "probe.png")
    # OUT.csv among the photos read
    refused(recognize.main, ["identify", case["people"], "--gallery", g, "--out", case["people"] / "who", *run_],
            capsys, case["dir"], 2, "--out", "people")
    # the gallery over one of the photos enrolled, with --replace
    photo = case["people"] / "person0" / "0.png"
    refused(recognize.main, ["enroll", case["people"], "--gallery", photo, "--replace", *run_], capsys,
            case["dir"], 2, "--gallery", "0.png")
    # the gallery over the embedding it is made with
    refused(recognize.main, ["enroll", case["people"], "--gallery", case["run"] / "run.json", *run_], capsys,
            case["dir"], 2, "--gallery", "run.json")
    # --replace never replaces a file that is not a gallery
    notes = case["dir"] / "notes.npz"
    notes.write_text("my notes")
    refused(recognize.main, ["enroll", case["people"], "--gallery", notes, "--replace", *run_], capsys,
            case["dir"], 1, "notes.npz", "not a gallery")
    # a softmax run's predictions over the photo
    softmax = _softmax_run(case["dir"], case)
    refused(recognize.main, ["predict", case["probe"], "--run", softmax, "--out", case["probe"]], capsys,
            case["dir"], 2, "--out", "probe.png")
    # a run folder inside the people folder
    refused(recognize.main, train_argv(case, "train", case["people"] / "run"), capsys, case["dir"], 2,
            "--run", "people")
    refused(recognize.main, train_argv(case, "embed-train", case["people"] / "run"), capsys, case["dir"], 2,
            "--run", "people")


def test_an_out_of_ones_own_choosing_is_replaced_only_with_overwrite(case, capsys):
    """OUT.csv / OUT.png named by --out may be anything of the user's; the default name is ours."""
    g = a_gallery(case["dir"] / "g.npz", case)
    run_ = ["--run", case["run"], "--no-detect"]
    mine = case["dir"] / "mine.csv"
    mine.write_text("precious\n")
    refused(recognize.main, ["identify", case["probe"], "--gallery", g, "--out", case["dir"] / "mine", *run_],
            capsys, case["dir"], 2, "--out", "mine.csv", "--overwrite")
    assert mine.read_text() == "precious\n"
    argv = ["identify", case["probe"], "--gallery", g, *run_]
    for extra in (["--out", case["dir"] / "mine", "--overwrite"], [], []):    # the default: again and again
        assert recognize.main([str(a) for a in argv + extra]) == 0
    capsys.readouterr()
    assert mine.read_text().startswith("photo") and (case["dir"] / "identified.csv").is_file()


# ---------------------------------------------------------------------------------------
# 3. File names that are not UTF-8.

def test_non_utf8_names(case, capsys):
    try:
        (case["dir"] / NON_UTF8).touch()
        (case["dir"] / NON_UTF8).unlink()
    except (OSError, UnicodeError):
        pytest.skip("this file system takes only UTF-8 names")
    # a person folder named in Latin-1: refused at enroll, nothing written
    people = case["dir"] / "latin1-people"
    shutil.copytree(case["people"], people)
    os.rename(people / "person1", people / NON_UTF8)
    g = case["dir"] / "g.npz"
    line = refused(recognize.main, ["enroll", people, "--gallery", g, "--run", case["run"], "--no-detect"],
                   capsys, case["dir"], 1, "latin1-people", "not valid UTF-8")
    assert "\\udce9" in line or "\\xe9" in line
    assert not g.exists()
    # a photo named in Latin-1: identified, its name escaped in the CSV; no .tmp left
    photos = case["dir"] / "photos"
    photos.mkdir()
    shutil.copy(case["probe"], photos / f"{NON_UTF8}.png")
    shutil.copy(case["probe"], photos / "plain.png")
    a_gallery(g, case)
    status, out, err = run(recognize.main, ["identify", photos, "--gallery", g, "--run", case["run"],
                                            "--no-detect", "--out", case["dir"] / "who"], capsys)
    assert status == 0 and "Traceback" not in err, err
    with open(case["dir"] / "who.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and any("\\udce9" in r["photo"] for r in rows), rows
    assert (case["dir"] / "who.png").stat().st_size > 0 and not leftovers(case["dir"])
    # a gallery an older version enrolled with such a name still identifies
    a_gallery(g, case, names=("person0", NON_UTF8))
    status, out, err = run(recognize.main, ["identify", photos, "--gallery", g, "--run", case["run"],
                                            "--no-detect", "--threshold", "2.1", "--out", case["dir"] / "who2"],
                           capsys)
    assert status == 0 and "Traceback" not in err, err
    assert (case["dir"] / "who2.csv").read_text(encoding="utf-8").count("\n") == 3
    assert not leftovers(case["dir"])


# ---------------------------------------------------------------------------------------
# 4. A gallery's rows and vector size, against the embedding used.

def test_gallery_rows_and_dimension(case, capsys):
    run_ = ["--run", case["run"], "--no-detect"]
    empty = a_gallery(case["dir"] / "empty.npz", case, names=())
    refused(recognize.main, ["identify", case["probe"], "--gallery", empty, "--out", case["dir"] / "o", *run_],
            capsys, case["dir"], 1, "empty.npz", "0 enrolled faces")
    wide = a_gallery(case["dir"] / "wide.npz", case, dim=64)
    refused(recognize.main, ["identify", case["probe"], "--gallery", wide, "--out", case["dir"] / "o", *run_],
            capsys, case["dir"], 1, "wide.npz", "64", "16")
    refused(recognize.main, ["enroll", case["people"], "--gallery", wide, *run_], capsys, case["dir"], 1,
            "wide.npz", "64", "--replace")
    np.savez(case["dir"] / "scalar.npz", names=np.array("a"), vectors=np.ones((1, 16), np.float32),
             embedding=np.array(case["id"]))
    refused(recognize.main, ["identify", case["probe"], "--gallery", case["dir"] / "scalar.npz", *run_], capsys,
            case["dir"], 1, "scalar.npz", "not a gallery file")


# ---------------------------------------------------------------------------------------
# 5. A run folder's run.json and split.csv.

@pytest.mark.parametrize("command", ["identify", "verify", "enroll"])
@pytest.mark.parametrize("text, words", [
    ("[]", ["run.json", "JSON list"]),
    ("{not json", ["run.json", "not readable JSON"]),
    ('{"kind": "embedding", "threshold": 0.5}', ["run.json", "'detect'"]),
    ('{"kind": "embedding", "detect": false}', ["run.json", "'threshold'"]),
    ('{"kind": "embedding", "detect": false, "threshold": "near"}', ["run.json", "'threshold'"]),
    ('{"kind": "embedding", "detect": "no", "threshold": 0.5}', ["run.json", "'detect'"]),
], ids=["list", "invalid", "no-detect", "no-threshold", "threshold-text", "detect-text"])
def test_an_embedding_run_json_that_cannot_be_used(case, capsys, command, text, words):
    (case["run"] / "run.json").write_text(text)
    g = a_gallery(case["dir"] / "g.npz", case)
    argv = {"identify": ["identify", case["probe"], "--gallery", g, "--out", case["dir"] / "o"],
            "verify": ["verify", case["probe"], case["probe"]],
            "enroll": ["enroll", case["people"], "--gallery", g]}[command]
    refused(recognize.main, argv + ["--run", case["run"], "--no-detect"], capsys, case["dir"], 1, *words)


def test_an_embedding_run_json_without_a_name_is_used(case, capsys):
    (case["run"] / "run.json").write_text(json.dumps({"kind": "embedding", "detect": False, "threshold": 1.0,
                                                      "align_model": str(case["base"])}))
    status, out, err = run(recognize.main, ["verify", case["probe"], case["probe"], "--run", case["run"]], capsys)
    assert status == 0 and "same person" in out, err


@pytest.mark.parametrize("run_json, split, command, words", [
    ({"kind": "softmax", "labels": ["person0"], "detect": False}, "photo,person\n{photo},person0\n",
     "evaluate", ["split.csv", "subset"]),
    ({"kind": "softmax", "labels": ["person0"]}, "photo,person,subset\n{photo},person0,test\n",
     "evaluate", ["run.json", "'detect'"]),
    ({"kind": "softmax", "labels": ["person0"], "detect": False}, None, "evaluate", ["split.csv", "missing"]),
    ({"kind": "softmax", "labels": ["person0"], "detect": False}, "photo,person,subset\n{photo},person0,train\n",
     "evaluate", ["split.csv", "'test'"]),
    ({"kind": "softmax", "detect": False}, "", "predict", ["run.json", "'labels'"]),
    ({"kind": "softmax", "labels": ["person0"], "detect": False, "settings": []}, "", "predict",
     ["run.json", "'settings'"]),
    ({"kind": "softmax", "labels": ["person0"], "detect": False, "data": "/elsewhere"},
     "photo,person,subset\n{photo},person0,test\n", "evaluate --data", ["split.csv", "not under"]),
], ids=["split-no-subset", "no-detect", "no-split", "no-test-rows", "no-labels", "settings-list",
        "data-moved-elsewhere"])
def test_a_softmax_run_that_cannot_be_used(case, capsys, run_json, split, command, words):
    folder = case["dir"] / "softmax-run"
    folder.mkdir()
    shutil.copy(case["base"], folder / "model.keras")
    (folder / "run.json").write_text(json.dumps(run_json))
    if split is not None:
        (folder / "split.csv").write_text(split.format(photo=case["probe"]))
    argv = {"evaluate": ["evaluate", "--run", folder],
            "evaluate --data": ["evaluate", "--run", folder, "--data", case["dir"]],
            "predict": ["predict", case["probe"], "--run", folder, "--out", case["dir"] / "o"]}[command]
    refused(recognize.main, argv, capsys, case["dir"], 1, *words)


# ---------------------------------------------------------------------------------------
# 6. --align-model must be a keypoint model.

def test_the_align_model_must_be_a_keypoint_model(case, capsys):
    argv = train_argv(case, "train", case["dir"] / "r")
    argv[argv.index("--align-model") + 1] = case["embedder"]
    refused(recognize.main, argv, capsys, case["dir"], 1, "--align-model", "embedder.keras", "not a keypoint model")
    assert not (case["dir"] / "r").exists()
    argv[argv.index("--align-model") + 1] = case["probe"]
    refused(recognize.main, argv, capsys, case["dir"], 2, "--align-model", "probe.png")
    garbage = case["dir"] / "garbage.keras"
    garbage.write_bytes(b"not a zip at all" * 100)
    argv[argv.index("--align-model") + 1] = garbage
    refused(recognize.main, argv, capsys, case["dir"], 1, "--align-model", "garbage.keras")
    # a run whose align_model is not a keypoint model
    info = json.loads((case["run"] / "run.json").read_text())
    (case["run"] / "run.json").write_text(json.dumps({**info, "align_model": str(case["embedder"])}))
    refused(recognize.main, ["verify", case["probe"], case["probe"], "--run", case["run"]], capsys, case["dir"], 1,
            "align_model", "embedder.keras", "not a keypoint model")


# ---------------------------------------------------------------------------------------
# 7. calibrate_detector.py: --out against --faces, and photos without a face.

def _labelled_faces(folder, n=3):
    """A CVND-style folder: training/<Person_Name_NN>.jpg (blank, no face) and the 68-point CSV."""
    labelled_faces(folder, n)
    return folder


def test_calibrate_never_writes_over_its_inputs(tmp_path, capsys):
    faces_dir = _labelled_faces(tmp_path / "faces")
    labels = faces_dir / "training_frames_keypoints.csv"
    refused(calibrate_detector.main, ["--faces", faces_dir, "--out", labels], capsys, tmp_path, 2,
            "--out", "training_frames_keypoints.csv")
    refused(calibrate_detector.main, ["--faces", faces_dir, "--out", faces_dir / "training" / "c.json"], capsys,
            tmp_path, 2, "--out", "c.json")
    existing = tmp_path / "existing-folder"
    existing.mkdir()
    (existing / "kept.txt").write_text("kept")
    refused(calibrate_detector.main, ["--faces", faces_dir, "--out", existing], capsys, tmp_path, 1,
            "--out", "existing-folder", "is a folder")


def test_calibrate_on_photos_without_faces(tmp_path, capsys):
    faces_dir = _labelled_faces(tmp_path / "faces")
    out = tmp_path / "calibration.json"
    refused(calibrate_detector.main, ["--faces", faces_dir, "--out", out], capsys, tmp_path, 1,
            "--faces", "no faces were detected", "photos")
    assert not out.exists()


@pytest.mark.parametrize("command", ["train", "embed-train"])
def test_a_run_of_no_epochs_is_refused(case, capsys, command):
    """--head-epochs 0 with no fine-tuning saved the untrained head as a model, exit 0."""
    argv = [str(a) for a in train_argv(case, command, case["dir"] / "r0", "--finetune-epochs", "0")]
    argv[argv.index("--head-epochs") + 1] = "0"
    refused(recognize.main, argv, capsys, case["dir"], 2, "--head-epochs 0", "--finetune-epochs 0", "learn nothing")


@pytest.mark.parametrize("what", ["base", "embedder"])
def test_a_model_file_that_is_not_a_keras_file_is_called_so(case, capsys, what):
    """Keras says "File not found" for a .keras that is not a zip: wrong about the cause."""
    junk = case["dir"] / "junk.keras"
    junk.write_bytes(b"these are a few bytes, not a zip archive")
    if what == "base":
        argv = [str(a) for a in train_argv(case, "train", case["dir"] / "r1")]
        argv[argv.index("--base") + 1] = str(junk)
    else:
        shutil.copy(junk, case["run"] / "embedder.keras")
        argv = ["verify", case["probe"], case["probe"], "--run", case["run"]]
    line = refused(recognize.main, argv, capsys, case["dir"], 1, "is not a Keras model file")
    assert "File not found" not in line


# ---------------------------------------------------------------------------------------
# A photo wider than OpenCV's warps take (32,767 px), and verify's "not sure".

def test_a_photo_wider_than_32767_px_is_shrunk_not_a_traceback(case, capsys, tmp_path):
    """--no-detect makes the whole photo the face; its warp was about the photo's own size and
    ended in OpenCV's SHRT_MAX assertion (issue 30). It is read shrunk (faces.read_scaled), and
    the face is reported in the photo's own pixels."""
    wide = np.full((60, 33000), 90, np.uint8)
    wide[:, 16000:17000] = 200
    Image.fromarray(wide).save(tmp_path / "wide.png")
    status, out, err = run(recognize.main, ["verify", tmp_path / "wide.png", case["probe"], "--run", case["run"],
                                            "--no-detect"], capsys)
    assert status == 0 and "Traceback" not in err and "distance" in out, err
    a_gallery(tmp_path / "g.npz", case)
    status, out, err = run(recognize.main, ["identify", tmp_path / "wide.png", "--run", case["run"], "--no-detect",
                                            "--gallery", tmp_path / "g.npz", "--out", tmp_path / "who"], capsys)
    assert status == 0, err
    with open(tmp_path / "who.csv") as f:
        row = next(csv.DictReader(f))
    assert float(row["cx"]) == pytest.approx(16500, abs=3) and float(row["side"]) == pytest.approx(33000, abs=5)


def test_verify_near_the_threshold_is_not_sure(case, capsys, tmp_path):
    """An embedding whose rules have a band (verify_same < verify_different, as the shipped
    rules in recognition/settings.py): a pair inside it is answered "not sure", with both
    limits; beyond it "different people"; --threshold gives one threshold and no band."""
    other = tmp_path / "other.png"
    Image.open(case["people"] / "person1" / sorted(os.listdir(case["people"] / "person1"))[0]).save(other)
    argv = ["verify", case["probe"], other, "--run", case["run"]]
    status, out, err = run(recognize.main, argv, capsys)
    assert status == 0, err
    d = float(out.split("distance ")[1].split(",")[0].split(")")[0])
    assert d > 0.01, out
    info = json.loads((case["run"] / "run.json").read_text())
    rules = dict(info, verify_same=round(d - 0.01, 4), verify_different=round(d + 0.01, 4))
    (case["run"] / "run.json").write_text(json.dumps(rules))
    status, out, err = run(recognize.main, argv, capsys)
    assert status == 0 and out.startswith("not sure") and f"between {d - 0.01:.3f} and {d + 0.01:.3f}" in out, out
    (case["run"] / "run.json").write_text(json.dumps(dict(info, verify_same=d / 3, verify_different=d / 2)))
    assert run(recognize.main, argv, capsys)[1].startswith("different people")
    assert run(recognize.main, argv + ["--threshold", str(d + 0.01)], capsys)[1].startswith("same person")
    (case["run"] / "run.json").write_text(json.dumps(dict(info, verify_same=d, verify_different=d / 2)))
    refused(recognize.main, argv, capsys, case["dir"], 1, "run.json", "verify_different", "at least verify_same")
