"""A run's settings and final figures for TensorBoard's HParams dashboard, where runs (a
student's, bench/compare_models.py's) sit side by side in one table and can be sorted and
filtered by any setting: `tensorboard --logdir logs` -> HPARAMS."""
from pathlib import Path

from training.settings import SETTINGS, options_text

# The figures a run ends with, as scalars under logs/<run_id>/ (the dashboard's metrics columns).
FINAL_FIGURES = ("val_rmse_px", "train_rmse_px", "best_epoch", "epochs_run", "seconds_per_epoch")


def hparam_value(value):
    """A setting as the dashboard takes it: a bool, number or text (None -> "none")."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if value is None:
        return "none"
    if isinstance(value, dict):
        return options_text(value)
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def log_hparams(log_dir, run_id, settings, figures):
    """Write the run's settings (those the settings table shows, and the model options) and
    `figures` ({name: number or None}) into log_dir: one session of the HParams dashboard."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp
    shown = {key: hparam_value(settings[key]) for key, setting in SETTINGS.items()
             if setting.table and key in settings}
    with tf.summary.create_file_writer(str(Path(log_dir))).as_default():
        hp.hparams(shown, trial_id=run_id)
        for name, value in figures.items():
            if value is not None:
                tf.summary.scalar(f"final/{name}", float(value), step=0)
    return shown
