"""A run's checkpoints: the model and the run's state (epoch, best score, ...) written together
into one .keras file through a rename, so that --resume after a kill finds the weights and the
epoch they belong to, or the previous pair, never half of one."""
import json

import keras
import numpy as np

import cli

CHECKPOINT_STATE = "fkd_state.json"   # the run's state inside a checkpoint's .keras zip

# The kind of each value of a run's state that a checkpoint may hold.
_STATE_KINDS = dict(epoch=int, best_epoch=int, wait=int, seconds=(int, float), epoch_seconds=list,
                    planned_epochs=(int, type(None)), best_val_rmse_px=(int, float, type(None)),
                    best_train_rmse_px=(int, float, type(None)))


def weights_are_finite(model):
    return all(np.isfinite(w).all() for w in model.get_weights())


def atomic_save(model, path, state=None):
    """model.save to `path` through a temporary file and a rename: a reader (or a --resume
    after a kill) sees the old file or the new one, never half of one. `state` (the run's
    epoch count, best score...) goes inside the same file, so the weights and the epoch they
    belong to are written together."""
    if not weights_are_finite(model):
        raise FloatingPointError(f"refusing to write {path}: the weights are not finite")

    def write(tmp):
        model.save(tmp)
        if state is not None:
            import zipfile
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(CHECKPOINT_STATE, json.dumps(state, default=str))
    cli.write_atomically(path, write)


def resumed_network(settings, run_dir, n_outputs, state):
    """The network of run_dir/last.keras, with the run's state (written inside it with its
    weights) put into `state`; None when no epoch was checkpointed (a run killed in its first
    epoch starts again). A checkpoint that is there but cannot be read is an InputError: starting
    again would delete the run's epochs."""
    import zipfile
    import zlib
    path = run_dir / "last.keras"
    if not path.exists():
        return None
    model = None
    try:
        with zipfile.ZipFile(path) as archive:
            saved = json.loads(archive.read(CHECKPOINT_STATE))
        problem = _state_problem(saved)
        model = None if problem else keras.models.load_model(path)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, EOFError, zipfile.BadZipFile,
            zlib.error) as error:   # a damaged file: Keras and zipfile raise all of these
        problem = f"{error.__class__.__name__}: {cli.one_line(error)[:200]}"
    if model is not None and (model.name != settings["model"] or model.output_shape[-1] != n_outputs):
        problem = (f"it holds {model.name} with {model.output_shape[-1]} outputs; the run's settings say "
                   f"{settings['model']} with {n_outputs}")
    if problem:
        raise cli.InputError(f"{path}: not a checkpoint to continue from ({problem}); nothing was "
                             "changed: restore the file, or start the run again with --overwrite")
    state.update(saved)
    return model


def _state_problem(saved):
    """What is wrong with the state read from a checkpoint, or None."""
    if not isinstance(saved, dict) or "epoch" not in saved:
        return f"its {CHECKPOINT_STATE} is not an object holding the run's epoch"
    for key, kinds in _STATE_KINDS.items():
        if key in saved and (isinstance(saved[key], bool) or not isinstance(saved[key], kinds)):
            return f"its {CHECKPOINT_STATE} has {key} = {cli.one_line(repr(saved[key]))[:40]}"
    return None
