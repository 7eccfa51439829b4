"""Pictures of a run: the learning curve (train and validation RMSE, and the figure the run
ends on) and grids of faces with the predicted and the true keypoints."""
import keras
import numpy as np

import augment
import input_data


def face_grid_png(model, X, Y_true=None, title=None, path=None):
    """4x4 faces with predicted (red x) and true (green +) keypoints, as PNG bytes; the title's
    last line says which mark is which."""
    predicted = input_data.keypoints_to_pixels(model.predict(X, verbose=0))
    truth = None if Y_true is None else input_data.keypoints_to_pixels(Y_true)
    legend = "red x: predicted" + ("" if truth is None else ", green +: true keypoints")
    title = f"{title}\n{legend}" if title else legend
    return input_data.plot_samples(X, predicted, path, truth=truth, title=title)


def train_curve_label(model, settings):
    """The training curve's legend: what the train figure is measured with."""
    conditions = []
    if augment.parse(settings["augment"]) != augment.NONE:
        conditions.append(f"augmented: {settings['augment']}")
    if any(isinstance(layer, keras.layers.Dropout) for layer in model.layers):
        conditions.append("dropout on")
    return "train" + (f" ({', '.join(conditions)})" if conditions else "")


def plot_learning_curve(history, path, title=None, ending=None, train_label="train"):
    """Train vs validation RMSE (the score, whatever the loss) on a log scale, as in the
    tutorials' loss plots, and the figure the run ends with: ending = (text, state)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(history["epoch"] + 1, history["rmse_px"], label=train_label)
    if "val_rmse_px" in history and history["val_rmse_px"].notna().any():
        ax.plot(history["epoch"] + 1, history["val_rmse_px"], label="valid")
    if ending is not None:
        text, state = ending
        value = state.get("best_val_rmse_px")
        value = state.get("best_train_rmse_px") if value is None else value
        if value is not None and np.isfinite(value) and state.get("best_epoch"):
            ax.plot([state["best_epoch"]], [value], "k*", markersize=12,
                    label=f"ends on: {text.split(' (')[0]}, {value:.3f} px")
    ax.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE (px of the 96-px frame)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
