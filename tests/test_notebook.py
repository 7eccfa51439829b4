"""train.ipynb runs headless (papermill) on tiny settings and leaves what it says it leaves,
all of it under ROOT and nothing in the repository; its first cell (notebook_setup.py) on a
faked Colab or Kaggle installs nothing that replaces TensorFlow, and locally does nothing."""
import importlib.metadata
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

import input_data
import notebook_setup
import synthetic_faces
from conftest import ROOT as REPO

NOTEBOOK = REPO / "train.ipynb"

def written(copy):
    """What git sees changed or added in a committed copy of the repository, ignored files
    included (logs/, runs/, data.p, *.csv: where a stray write would hide from `git status`);
    only Python's caches (the kernel imports the repository's modules) are left out."""
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--ignored"], cwd=copy,
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "__pycache__/" not in line]


def run_notebook(tmp_path, **parameters):
    """Execute train.ipynb with `parameters` (ROOT is tmp_path) in a committed copy of the
    repository (tmp_path/repo: other work in the tree cannot blur the check); the output
    notebook and its text. The notebook must leave the copy as it was."""
    import papermill
    from test_train import repo_copy
    copy = repo_copy(tmp_path / "repo")
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(copy / "train.ipynb"), str(out), parameters={"ROOT": str(tmp_path), **parameters},
                               kernel_name="python3", cwd=str(copy), progress_bar=False)
    assert written(copy) == [], "the notebook wrote into the repository"
    return out, "\n".join(output_text(nbformat.read(out, as_version=4)))


def output_text(nb):
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                yield output.text
            elif output.output_type == "error":
                yield f"{output.ename}: {output.evalue}"
            else:
                yield output.get("data", {}).get("text/plain", "")


def parameters_cell():
    return next(c for c in nbformat.read(NOTEBOOK, as_version=4).cells if "parameters" in c.metadata.get("tags", []))


def printed_rmse(text, tta):
    match = re.search(rf"validation RMSE {tta} flip TTA: ([0-9.]+) px", text)
    assert match, f"no 'validation RMSE {tta} flip TTA' in the output"
    return float(match.group(1))


def test_committed_notebook_is_clean_with_one_parameters_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "commit it without outputs"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    names = re.findall(r"^([A-Z_]+) = ", tagged[0].source, re.M)
    assert names == ["MODEL", "DATA", "EPOCHS", "TIME_LIMIT", "BATCH_SIZE", "AUGMENT", "LEARNING_RATE",
                     "VALIDATION", "ROOT", "SEED", "RUN_ID", "SMALL"]


@pytest.mark.platform    # the notebook once, small, on the oldest supported versions too
def test_notebook_small_reads_the_kaggle_layout_without_building_data_p(tmp_path):
    # DATA = None: the notebook reads ROOT/data/ like Kaggle's layout. No Kaggle files there, so
    # it takes the synthetic faces in ROOT/data/synthetic/, written here small (300 + 20 faces)
    # by the function the engine's default calls, to save the 2,140-face default's ~18 s.
    synthetic_faces.write_kaggle_files(tmp_path / "data" / "synthetic", n_train=300, n_test=20)
    out, text = run_notebook(tmp_path, MODEL="v1_single_layer", SMALL=200, EPOCHS=2, BATCH_SIZE=64,
                             RUN_ID="nb")

    # SMALL: the first 200 faces straight from the CSV, without the whole data.p first.
    assert not (tmp_path / "data.p").exists() and (tmp_path / "data-first200.p").exists()
    assert "X (200, 96, 96, 1) float32" in text and "X_test (20, 96, 96, 1)" in text
    assert "180 training and 20 validation faces" in text
    # The settings table says where each value comes from.
    assert re.search(r"epochs +2 +given", text) and re.search(r"optimizer +nesterov +model SETTINGS", text)
    # What the notebook says it wrote.
    model_dir = tmp_path / "models" / "v1_single_layer"
    assert (model_dir / "model.keras").exists()
    assert f"model: {model_dir / 'model.keras'}" in text
    events = list((tmp_path / "logs" / "nb").rglob("events.out.tfevents.*"))
    assert {p.parent.name for p in events} >= {"train", "validation", "images"}
    for name in ("learning_curve.png", "samples.png", "history.csv"):
        assert (tmp_path / "runs" / "nb" / name).exists(), name
    # Before training it says how long; then one line per epoch (what Jupyter shows too).
    limit = re.search(r"^TIME_LIMIT = (\d+)", parameters_cell().source, re.M).group(1)
    assert f"training takes about {limit} s (TIME_LIMIT; less if EPOCHS ends it sooner)" in text
    epochs = (tmp_path / "runs" / "nb" / "history.csv").read_text().strip().count("\n")
    assert len(re.findall(r"^\d+/\d+ - .* val_rmse_px: [0-9.]+", text, re.M)) == epochs == 2
    nb = nbformat.read(out, as_version=4)
    pictures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert pictures == 3   # the faces, the learning curve, the validation grid
    # The validation RMSE it printed is the run's (model.json), and flip TTA was measured too.
    info = json.loads((model_dir / "model.json").read_text())
    assert printed_rmse(text, "without") == pytest.approx(info["val_rmse_px"], abs=2e-3, rel=1e-3)
    assert f"the run ends on the {info['ended_on']}: validation RMSE {info['val_rmse_px']:.3f} px" in text
    assert info["ended_on"].startswith("best epoch")
    assert f"python evaluate.py --run nb --root {tmp_path}" in text
    assert 0 < printed_rmse(text, "with") < 96
    # Synthetic faces: no Kaggle submission.
    assert "no submission" in text


def test_notebook_defaults_leave_a_copy_of_the_repository_unchanged(tmp_path):
    """MODEL = v6 and ROOT = "." (the repository): the shipped model is kept, and everything the
    run writes is git-ignored. Only EPOCHS and SMALL are set, to keep it cheap; the write
    paths are the defaults'."""
    import papermill
    from test_train import repo_copy, shipped_bytes
    copy = repo_copy(tmp_path / "repo")
    before = shipped_bytes(copy)
    synthetic_faces.write_kaggle_files(copy / "data" / "synthetic", n_train=80, n_test=10)
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(copy / "train.ipynb"), str(out), parameters={"EPOCHS": 1, "SMALL": 64},
                               kernel_name="python3", cwd=str(copy), progress_bar=False)
    text = "\n".join(output_text(nbformat.read(out, as_version=4)))
    assert shipped_bytes(copy) == before
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=copy,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", status
    assert "holds the shipped model" in text and re.search(r"model: runs/v6_resnet_integral-[0-9-]+/model.keras", text)
    assert "the run ends on the " in text


def test_notebook_trains_on_a_csv(tmp_path):
    images, keypoints = synthetic_faces.make_faces(120, seed=3)
    csv = input_data.write_csv(tmp_path / "faces.csv", images, keypoints)
    out, text = run_notebook(tmp_path, MODEL="v1", DATA=str(csv), EPOCHS=1, AUGMENT="flip",
                             LEARNING_RATE=0.005)
    assert "108 training and 12 validation faces" in text
    assert (tmp_path / "models" / "v1_single_layer" / "model.keras").exists()
    assert re.search(r"learning-rate +0.005 +given", text) and re.search(r"augment +flip +given", text)
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*"))
    assert printed_rmse(text, "without") > 0
    assert not (tmp_path / "data.p").exists()   # a CSV is trained on as it is


# ---------------------------------------------------------------------------------------------
# The first cell: Colab and Kaggle faked by their environment variable or module, every
# subprocess (git, pip, kaggle) recorded instead of run.

PLATFORM_VARIABLES = ("COLAB_RELEASE_TAG", "KAGGLE_KERNEL_RUN_TYPE", "JPY_SESSION_NAME", "KAGGLE_USERNAME",
                      "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR")


def first_cell():
    code = [c for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    assert "notebook_setup.main()" in code[0].source, "the set-up is the first code cell"
    return code[0].source


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """No platform, no Kaggle key (KAGGLE_CONFIG_DIR, where the tool looks, is empty); sys.path
    and the working folder restored after; subprocess.run records git, pip and kaggle commands
    instead of running them (`git clone` links the repository where it was asked to; a command
    whose second word is in `replies` gets that CompletedProcess)."""
    for name in PLATFORM_VARIABLES[:-1]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "home" / ".kaggle"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    box = types.SimpleNamespace(calls=[], constraints=[], replies={})

    real_run = subprocess.run

    def run(command, *args, **kwargs):
        if not {"git", "-m", "/usr/bin/kaggle"} & set(map(str, command[:2])):
            return real_run(command, *args, **kwargs)      # matplotlib's fc-list, ...
        command = [str(part) for part in command]
        box.calls.append(command)
        if command[:2] == ["git", "clone"]:
            Path(command[-1]).symlink_to(REPO)
        if "pip" in command:
            box.constraints.append(Path(command[command.index("-c") + 1]).read_text())
        reply = box.replies.get(command[1] if len(command) > 1 else None)
        return reply or subprocess.CompletedProcess(command, 0, "", "")
    monkeypatch.setattr(subprocess, "run", run)
    return box


@pytest.mark.platform    # Colab's own versions are the low end
@pytest.mark.parametrize("colab", ["environment variable", "module"])
def test_first_cell_on_colab_clones_and_installs_nothing_that_replaces_tensorflow(sandbox, tmp_path, monkeypatch,
                                                                                    capsys, colab):
    if colab == "module":
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20250601-060000_RC00")
    (tmp_path / "content").mkdir()
    monkeypatch.chdir(tmp_path / "content")     # Colab's folder, without the repository
    exec(compile(first_cell(), "train.ipynb's first cell", "exec"), {})
    out = capsys.readouterr().out

    git, pip = sandbox.calls[0], sandbox.calls[1]
    clone = tmp_path / "content" / re.search(r'REPOSITORY_URL = "(.+)"', first_cell()).group(1).split("/")[-1]
    assert git[:4] == ["git", "clone", "--depth", "1"] and git[-1] == str(clone)
    assert Path.cwd() == clone.resolve()        # the next cells import the repository's modules (the
                                                # clone here is a link to it)
    assert pip == [sys.executable, "-m", "pip", "install", "--quiet", "-r",
                   str(REPO / "requirements-notebook.txt"), "-c", pip[-1]]
    # Nothing on pip's command line or in the file it installs names TensorFlow or Keras...
    named = [line.split("#")[0].strip() for line in (REPO / "requirements-notebook.txt").read_text().splitlines()]
    assert not [req for req in named if re.match(r"(tensorflow|tf-keras|keras|numpy)\b", req, re.I)]
    # ...and the installed ones are constraints, so pip fails rather than replace them.
    pins = sandbox.constraints[0].splitlines()
    assert f"keras=={importlib.metadata.version('keras')}" in pins
    assert f"numpy=={importlib.metadata.version('numpy')}" in pins
    assert [p for p in pins if p.startswith("tensorflow")], pins
    assert f"protobuf=={importlib.metadata.version('protobuf')}" in pins     # TensorFlow's, which onnx could upgrade
    assert "on Colab" in out and re.search(r"TensorFlow 2\.\d+.*Keras 3\.\d+", out)
    assert "training on: CPU" in out


def test_first_cell_says_what_to_do_when_the_clone_fails(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("COLAB_RELEASE_TAG", "x")
    sandbox.replies["clone"] = subprocess.CompletedProcess([], 128, "", "remote: Repository not found.")
    with pytest.raises(SystemExit, match="could not clone https://github.com/.*: set REPOSITORY_URL to the address"):
        exec(compile(first_cell(), "train.ipynb's first cell", "exec"), {})
    assert [call[:2] for call in sandbox.calls] == [["git", "clone"]]     # nothing installed


def test_first_cell_locally_only_prints_versions_and_device(sandbox, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    exec(compile(first_cell(), "train.ipynb's first cell", "exec"), {})
    out = capsys.readouterr().out
    assert sandbox.calls == []                  # no clone, no pip, no kaggle
    assert out.splitlines()[0].startswith("Python ") and "training on: CPU" in out and len(out.splitlines()) == 2


def test_install_refuses_a_requirements_file_that_names_keras(sandbox, tmp_path):
    requirements = tmp_path / "requirements-notebook.txt"
    requirements.write_text("onnxruntime>=1.20\nKeras[backend] >= 3.11  # newer\n")
    with pytest.raises(ValueError, match=r"Keras\[backend\] >= 3.11 would replace the platform's own build"):
        notebook_setup.install(requirements)
    assert sandbox.calls == []


def test_kaggle_403_says_to_accept_the_rules(sandbox, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setattr(notebook_setup.shutil, "which", lambda name: f"/usr/bin/{name}")
    sandbox.replies["competitions"] = subprocess.CompletedProcess([], 1, "", (
        "403 Client Error: Forbidden for url: "
        "https://www.kaggle.com/api/v1/competitions/data/download-all/facial-keypoints-detection"))
    (tmp_path / "kaggle.json").write_text('{"username": "student", "key": "0123"}')   # uploaded
    data = tmp_path / "data"
    assert notebook_setup.get_kaggle_data(data, uploaded=[tmp_path]) is False
    out = capsys.readouterr().out
    assert sandbox.calls == [["/usr/bin/kaggle", "competitions", "download", "-c", "facial-keypoints-detection",
                              "-p", str(data)]]
    # The key was put where the tool reads it, private as it wants.
    key = tmp_path / "home" / ".kaggle" / "kaggle.json"
    assert key.read_text() == (tmp_path / "kaggle.json").read_text() and key.stat().st_mode & 0o777 == 0o600
    message = [line for line in out.splitlines() if "(403" in line]
    assert len(message) == 1 and "https://www.kaggle.com/c/facial-keypoints-detection/rules" in message[0]
    assert "accepted the competition's rules" in message[0]


def test_kaggle_without_a_key_says_how_and_with_attached_input_links_it(sandbox, tmp_path, capsys):
    data = tmp_path / "data"
    assert notebook_setup.get_kaggle_data(data) is False
    assert "no Kaggle key" in capsys.readouterr().out and sandbox.calls == []
    attached = tmp_path / "input"      # a Kaggle notebook's /kaggle/input/facial-keypoints-detection
    attached.mkdir()
    (attached / "training.zip").write_bytes(b"zip")
    assert notebook_setup.link_kaggle_input(data, attached)
    assert notebook_setup.has_kaggle_data(data) and (data / "training.zip").resolve() == attached / "training.zip"


@pytest.mark.parametrize("environ, user_ns, inline", [
    ({}, {}, False),                                                  # papermill, nbconvert
    ({"JPY_SESSION_NAME": "/home/me/train.ipynb"}, {}, True),         # JupyterLab, Notebook
    ({}, {"__vsc_ipynb_file__": "train.ipynb"}, True),                # VS Code
    ({"COLAB_RELEASE_TAG": "x"}, {}, True),
    ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive", "JPY_SESSION_NAME": "x"}, {}, False),
])
def test_inline_tensorboard_only_where_a_frontend_shows_it(sandbox, environ, user_ns, inline):
    assert notebook_setup.inline_tensorboard(environ, user_ns) is inline
