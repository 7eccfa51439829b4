"""A run's folders: where its model goes (never over a shipped model by accident), the lock that
keeps one process per run, the settings a resumed run continues with, and its history. No
TensorFlow here: export.py and other tools check a folder with protected_model_dir at once.

    runs/<run_id>/        last.keras, best.keras, state.json, split.json, settings.json, history.csv
    runs/<run_id>.lock    held while a process trains the run
    logs/<run_id>/        TensorBoard
"""
import json
import os
import shutil
from pathlib import Path

import cli
import models
from training.settings import flag, options_text, resolve_settings, validate_settings, _show


class RunExistsError(cli.UsageError, FileExistsError):
    """The run folder holds an earlier run, and neither --resume nor --overwrite was given."""


def json_writer(data):
    """A write(tmp) for cli.write_atomically: data as indented JSON."""
    return lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=str))


def atomic_json(data, path):
    cli.write_atomically(path, json_writer(data))


# ---------------------------------------------------------------------------------------
# Where models go: never over the model that ships with the repository by accident.

SHIPPED_FILES = ("model.keras", "model.json", "learning_curve.png")


def protected_model_dir(folder):
    """Why `folder` holds a model that ships with the repository (so a run must not replace
    it), or None. Shipped: git tracks one of its SHIPPED_FILES; or its model.json says
    "shipped": true (set when the shipped weights are reproduced); or, in a copy without
    .git, it is models/<a version in models.SHIPPED>/ with a model.keras in it."""
    folder = Path(folder)
    present = [name for name in SHIPPED_FILES if (folder / name).exists()]
    if not present:
        return None
    tracked = _git_tracked(folder, present)
    if tracked:
        return f"git tracks {folder / tracked[0]}"
    try:
        if json.loads((folder / "model.json").read_text()).get("shipped") is True:
            return f"{folder / 'model.json'} says it is the shipped model"
    except (OSError, ValueError, AttributeError):
        pass
    if folder.parent.name == "models" and folder.name in models.SHIPPED and (folder / "model.keras").exists():
        return f"{folder.name} is a version whose model ships with the repository (models.SHIPPED)"
    return None


def _git_tracked(folder, names):
    """The names (files in `folder`) that git tracks; [] outside a repository or without git."""
    import subprocess
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", *names], cwd=folder, capture_output=True,
                             timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    listed = {Path(p).name for p in out.stdout.decode(errors="replace").split("\0") if p}
    return [name for name in names if name in listed]


def model_destination(settings, run_dir):
    """(folder for model.keras and model.json, a note for the user or None), decided before
    any work: an explicit --model-dir that holds a shipped model needs --overwrite; the
    default models/<version>/ falls back to runs/<run_id>/ when a shipped model is there."""
    if settings["model_dir"]:
        out = Path(settings["model_dir"])
        existing = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
        if not existing.is_dir():
            raise cli.InputError(f"--model-dir {out}: {existing} is a file; the model goes into a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise cli.InputError(f"--model-dir {out}: {existing} is not writable")
        why = protected_model_dir(out)
        if why and not settings["overwrite"]:
            raise cli.UsageError(f"--model-dir {out}: holds the shipped model ({why}); pass --overwrite "
                                 "as well to replace it (that is how the shipped weights are reproduced), "
                                 "or leave --model-dir out: the run's model then goes to runs/RUN_ID/")
        held = [out / name for name in ("model.keras", "model.json") if (out / name).exists()]
        # A resumed run replaces the model it saved itself when it was stopped.
        if held and not settings["overwrite"] and not (settings["resume"] and _saved_by(out, run_dir)):
            raise cli.UsageError(f"--model-dir {out}: holds a model ({held[0]}); pass --overwrite to "
                                 "replace it, or name another folder")
        return out, (f"replacing the shipped model in {out} (--overwrite)" if why else None)
    out = Path(settings["root"]) / "models" / settings["model"]
    why = protected_model_dir(out)
    if why:
        return run_dir, (f"{out} holds the shipped model ({why}); it is kept, and this run's model "
                         f"goes to {run_dir / 'model.keras'}")
    return out, None


def _saved_by(folder, run_dir):
    """Whether folder/model.json says that the run in run_dir saved it."""
    try:
        saved = json.loads((folder / "model.json").read_text())["run_dir"]
        return Path(saved).resolve() == run_dir.resolve()
    except (OSError, ValueError, TypeError, KeyError):
        return False


# ---------------------------------------------------------------------------------------
# One process per run.

class RunLock:
    """One process trains in a run folder at a time: an exclusive flock on runs/<run_id>.lock
    (beside the folder, so that --overwrite can replace the folder), held while training.
    The kernel drops a flock when its process dies, so a lock left by a crash is stale by
    construction: it is taken over, and reported."""

    def __init__(self, run_dir):
        self.path = run_dir.with_name(run_dir.name + ".lock")
        self.file = None

    def __enter__(self):
        import fcntl
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise cli.UsageError(f"run {self.path.stem} is being trained by {holder} (lock {self.path}); "
                                 "wait for it, or pick another --run-id") from None
        self.file.seek(0)
        previous = self.file.read().strip()
        if previous:
            print(f"note: {self.path} was left by {previous}, which is no longer running "
                  "(a crash or a kill); taking it over")
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {os.uname().nodename}")
        self.file.flush()
        return self

    def __exit__(self, *exc):
        import fcntl
        self.file.seek(0)
        self.file.truncate()          # empty: released cleanly
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
        self.path.unlink(missing_ok=True)
        return False


# ---------------------------------------------------------------------------------------
# Starting, continuing and reading a run.

# What a run's network was built with: its checkpoint holds that network, so --resume keeps them.
BUILT_WITH = ("model", "model_options", "cols", "precision")


def resumed_settings(settings, overrides):
    """A resumed run keeps its saved settings (checked as if given); what is passed again
    changes, but for BUILT_WITH, which may only be repeated."""
    run_id = settings["run_id"]
    if not run_id:
        raise cli.UsageError("--resume needs --run-id (the folder name under runs/)")
    path = Path(settings["root"]) / "runs" / run_id / "settings.json"
    check_started(path.parent)
    if not path.exists():
        raise cli.InputError(f"--run-id {run_id}: nothing to resume: {path} does not exist")
    saved = cli.read_json_object(path)
    cli.json_field(saved, "model", lambda v: isinstance(v, str), "a model version such as v2_convnet", path)
    try:        # a setting missing from an older engine's file is that version's default
        saved = validate_settings(resolve_settings(**saved))
    except cli.UsageError as error:
        raise cli.InputError(f"{path}: {cli.one_line(error)}") from None
    for key in BUILT_WITH:
        if key in overrides and settings[key] != saved[key]:
            option, show = ("--option", options_text) if key == "model_options" else (flag(key), _show)
            raise cli.UsageError(f"{option} {show(settings[key])}: run {run_id} was built with "
                                 f"{show(saved[key])}, and --resume continues that network; leave "
                                 f"{option} out, or start a new run")
    # settings: the given values, the model's name normalised ('v1' -> v1_single_layer).
    return {**saved, **{key: settings[key] for key in overrides}, "root": settings["root"]}


def prepare_run_dir(settings, run_dir, log_dir, state, resumed):
    """Make the run folder ready, once everything is checked: continuing a checkpoint (resumed),
    drop history rows past it (a kill after the history but before the checkpoint); resuming
    a run without one, start it again; else an empty folder (--overwrite empties it)."""
    if resumed:
        history = run_dir / "history.csv"
        if history.exists():
            rows = read_history(history)
            rows[rows["epoch"] < state["epoch"]].to_csv(history, index=False)
        best = state.get("best_val_rmse_px")
        print(f"resuming {settings['run_id']} after epoch {state['epoch']}"
              + (f" (best validation RMSE so far {best:.3f} px)" if best is not None else ""))
        return
    if settings["resume"]:
        print(f"resuming {settings['run_id']}: no epoch was checkpointed; starting from epoch 1")
        for name in ("history.csv", "best.keras", "state.json"):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(log_dir, ignore_errors=True)
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if not settings["overwrite"]:
            check_started(run_dir)
            raise RunExistsError(f"{run_dir} holds an earlier run: continue it with --resume, "
                                 "pick another --run-id, or pass --overwrite")
        shutil.rmtree(run_dir)
        shutil.rmtree(log_dir, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)


def check_started(run_dir):
    """A run folder with files but no settings.json (killed while it was being set up, before
    any epoch): the same answer for --resume and for a plain rerun (RunExistsError)."""
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / "settings.json").exists():
        raise RunExistsError(f"{run_dir} holds a run that stopped before its settings.json was written "
                             "(no epoch was trained): start it again with --overwrite, or pick another --run-id")


def read_history(path):
    """A run's history.csv (one row per epoch) as a DataFrame; empty when there is none."""
    import pandas as pd
    if not path.exists():
        return pd.DataFrame()
    try:
        history = pd.read_csv(path)
        return history.drop_duplicates("epoch", keep="last").reset_index(drop=True)
    except (ValueError, KeyError) as error:     # pandas' parser errors are ValueErrors
        raise cli.InputError(f"{path}: not a readable history ({error.__class__.__name__}: "
                             f"{cli.one_line(error)[:200]})") from None
