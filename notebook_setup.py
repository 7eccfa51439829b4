"""What train.ipynb's first cell does, wherever the notebook runs.

On Colab or Kaggle (where the cell has cloned the repository): installs requirements-notebook.txt
with pip, only what the platform lacks and never over its TensorFlow, Keras or numpy (their
installed versions, and those of what they require, are pip constraints: replacing Colab's
TensorFlow loses its GPU, a newer protobuf breaks it); links
or downloads Kaggle's competition files into data/ (a Kaggle notebook's attached input, or the
`kaggle` tool with a kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY). Everywhere: prints the Python,
TensorFlow and Keras versions and the device training will use. Locally (the README's .venv,
already pinned) it installs and downloads nothing.

Also: whether `%tensorboard` can show TensorBoard inline here (`inline_tensorboard`).
"""
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent
REQUIREMENTS = REPO / "requirements-notebook.txt"
COMPETITION = "facial-keypoints-detection"
RULES_URL = f"https://www.kaggle.com/c/{COMPETITION}/rules"
KAGGLE_INPUT = Path("/kaggle/input") / COMPETITION   # a Kaggle notebook's attached competition data
# The platform's own builds: pip may add packages beside them, never replace them.
KEEP = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tf-keras", "keras",
        "tensorboard", "numpy")


def platform(environ=None):
    """"colab", "kaggle" or None (a local Jupyter, VS Code, papermill)."""
    environ = os.environ if environ is None else environ
    if "COLAB_RELEASE_TAG" in environ or _importable("google.colab"):
        return "colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in environ:
        return "kaggle"
    return None


def _importable(name):
    try:
        return name in sys.modules or importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def kept_versions():
    """{distribution: installed version} of KEEP's that are installed and of what they require
    (protobuf, ml-dtypes, h5py, ...): a newer onnx wants a protobuf that Colab's TensorFlow
    cannot import, so pip must pick versions that fit the platform's, not upgrade them."""
    versions = {}
    for name in KEEP:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for requirement in importlib.metadata.requires(name) or []:
            used = _distribution(requirement)
            if "extra ==" not in requirement and used not in versions:
                try:
                    versions[used] = importlib.metadata.version(used)
                except importlib.metadata.PackageNotFoundError:
                    pass
    return versions


def install(requirements=REQUIREMENTS):
    """pip install -r requirements, with the installed versions of KEEP and of their requirements
    as constraints (pip then fails rather than replace one). The file itself must not name any of KEEP."""
    named = [line.split("#")[0].strip() for line in Path(requirements).read_text().splitlines()]
    clash = sorted(req for req in named
                   if req and _distribution(req) in KEEP)
    if clash:
        raise ValueError(f"{requirements}: {', '.join(clash)} would replace the platform's own build; "
                         "a notebook requirements file names only what the platform lacks")
    kept = kept_versions()
    constraints = Path(tempfile.mkdtemp()) / "keep-platform.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in kept.items()))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "-r", str(requirements),
               "-c", str(constraints)]
    print(f"installing what this platform lacks: pip install -r {Path(requirements).name} "
          f"(keeping its {', '.join(f'{n} {v}' for n, v in kept.items() if n in KEEP)} and what they use)")
    subprocess.run(command, check=True)
    return command


def _distribution(requirement):
    """The normalised distribution name of a requirement line ("Keras[x]>=3" -> "keras")."""
    name = requirement
    for stop in "[<>=!~;@ ":
        name = name.split(stop)[0]
    return name.strip().lower().replace("_", "-")


# -------------------------------------------------------------------------------------------
# Kaggle's files

def kaggle_key(environ=None, home=None, uploaded=()):
    """Where the kaggle tool will find an API key, or None. A kaggle.json uploaded into one of
    the `uploaded` folders is copied to ~/.kaggle/kaggle.json (mode 600, as the tool wants)."""
    environ = os.environ if environ is None else environ
    if environ.get("KAGGLE_USERNAME") and environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME and KAGGLE_KEY"
    if environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    folder = Path(environ.get("KAGGLE_CONFIG_DIR") or Path(home or Path.home()) / ".kaggle")
    if (folder / "kaggle.json").is_file():
        return str(folder / "kaggle.json")
    for place in uploaded:
        if (Path(place) / "kaggle.json").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(place) / "kaggle.json", folder / "kaggle.json")
            (folder / "kaggle.json").chmod(0o600)
            return f"{Path(place) / 'kaggle.json'} (copied to {folder / 'kaggle.json'})"
    return None


def has_kaggle_data(data_dir):
    import input_data
    return input_data.find_kaggle_file("training", data_dir) is not None


def link_kaggle_input(data_dir, source=KAGGLE_INPUT):
    """A Kaggle notebook with the competition attached has its files read-only in `source`:
    link them into data/. True if they were there."""
    if not Path(source).is_dir():
        return False
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    for path in Path(source).iterdir():
        target = Path(data_dir) / path.name
        if not target.exists():
            target.symlink_to(path)
    print(f"Kaggle's files: linked from {source} into {data_dir}/")
    return True


def download(data_dir):
    """`kaggle competitions download` into data_dir. True if it worked; else one message that
    says why (the 403 before the rules are accepted, a rejected key, no tool)."""
    tool = shutil.which("kaggle")
    if tool is None:
        print("no `kaggle` tool here: `pip install kaggle`, then run this cell again")
        return False
    command = [tool, "competitions", "download", "-c", COMPETITION, "-p", str(data_dir)]
    print(f"downloading Kaggle's files: kaggle competitions download -c {COMPETITION} -p {data_dir}")
    done = subprocess.run(command, capture_output=True, text=True)
    said = f"{done.stdout}\n{done.stderr}"
    if done.returncode == 0:
        return True
    if "403" in said or "Forbidden" in said:
        print(f"Kaggle refused the download (403 Forbidden): your account has not accepted the "
              f"competition's rules yet. Open {RULES_URL}, click 'I Understand and Accept' (signed "
              "in as the account of your kaggle.json), then run this cell again. Until then the "
              "notebook trains on synthetic faces.")
    elif "401" in said or "Unauthorized" in said:
        print("Kaggle rejected the key (401 Unauthorized): make a new one on kaggle.com, Settings > "
              "API > Create New Token, and upload that kaggle.json. Until then the notebook trains "
              "on synthetic faces.")
    else:
        print(f"the download failed (exit status {done.returncode}); the kaggle tool said:\n{said.strip()}")
    return False


def get_kaggle_data(data_dir, uploaded=(), environ=None):
    """Kaggle's files into data_dir unless they are there: the attached input, else a download
    with a key; without a key, how to give one."""
    if has_kaggle_data(data_dir) or link_kaggle_input(data_dir):
        return True
    key = kaggle_key(environ, uploaded=uploaded)
    if key is None:
        print(f"no Kaggle key: the notebook trains on synthetic faces. For Kaggle's faces, upload the "
              f"kaggle.json of kaggle.com > Settings > API > Create New Token (or set KAGGLE_USERNAME "
              f"and KAGGLE_KEY), accept the rules at {RULES_URL}, and run this cell again")
        return False
    print(f"Kaggle key: {key}")
    return download(data_dir)


# -------------------------------------------------------------------------------------------
# What the notebook will train with

def versions():
    """One line: Python, TensorFlow and Keras (what the run's results depend on)."""
    import keras
    import tensorflow as tf
    return (f"Python {sys.version.split()[0]}, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
            f"numpy {importlib.metadata.version('numpy')}")


def device():
    """The device training uses: the GPUs' names, else the CPU and its cores."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
    if names:
        return f"GPU: {', '.join(names)}"
    return f"CPU ({os.cpu_count()} cores; no GPU visible to TensorFlow)"


def inline_tensorboard(environ=None, user_ns=None):
    """True where `%tensorboard` shows TensorBoard in the notebook: Colab, or a kernel a Jupyter
    server (JupyterLab, Notebook) or VS Code started. Not on Kaggle (no way to its port), and not
    under papermill or nbconvert, which have no frontend: there the magic would leave a server
    running with nobody to see it."""
    environ = os.environ if environ is None else environ
    where = platform(environ)
    if where is not None:
        return where == "colab"
    return bool(environ.get("JPY_SESSION_NAME")) or "__vsc_ipynb_file__" in (user_ns or {})


def main(environ=None):
    """The first cell: set up the platform (Colab, Kaggle) or nothing (locally), then say what
    the run will use. Returns the platform's name or None."""
    environ = os.environ if environ is None else environ
    where = platform(environ)
    if where is not None:
        print(f"on {where.capitalize()}: repository {REPO}")
        install()
        get_kaggle_data(REPO / "data", uploaded=[REPO.parent, REPO], environ=environ)
    print(versions())
    print(f"training on: {device()}")
    return where
