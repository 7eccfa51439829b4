"""Draw docs/teaching-experiments.png: the validation curves of the runs in teaching-experiments.md.

    python docs/teaching_figure.py --root /tmp/fkd [--out docs/teaching-experiments.png]

Reads runs/<run_id>/history.csv under --root (train.py's --root) for the run ids the page's
commands use; a run that is missing is left out of its panel. One panel per experiment:
validation RMSE in pixels per epoch, with the mean face's score as a dashed line.
"""
import argparse
import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import cli  # noqa: E402

MEAN_FACE_PX = 4.91      # predicting the training people's mean face, on these validation people
PANELS = [
    ("Xavier against zero initialisation (v1)", [("v1-glorot", "--init glorot_uniform (Xavier)"),
                                                 ("v1-zeros", "--init zeros")]),
    ("Nesterov momentum against Adam", [("v1-glorot", "v1, Nesterov 0.01 (net1)"),
                                        ("v1-adam", "v1, Adam 0.001"),
                                        ("v2-adam-30", "v2, Adam 0.001, cosine"),
                                        ("v2-nesterov-12", "v2, Nouri's Nesterov recipe")]),
    ("Dropout over a longer budget", [("v2-adam-30", "v2_convnet: valid"),
                                      ("v3-30", "v3_convnet_dropout: valid")]),
]


def history(root, run_id):
    path = Path(root) / "runs" / run_id / "history.csv"
    if not path.exists():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return ([int(r["epoch"]) + 1 for r in rows], [float(r["val_rmse_px"]) for r in rows],
            [float(r["rmse_px"]) for r in rows])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="train.py's --root of the runs (holds runs/)")
    parser.add_argument("--out", default=str(HERE / "teaching-experiments.png"), help="the PNG to write")
    args = parser.parse_args(argv)
    if not (Path(args.root) / "runs").is_dir():
        raise cli.InputError(f"--root {args.root}: no runs/ folder there (train.py --root)")
    cli.writable_folder(Path(args.out).parent)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 3.8))
    drawn = 0
    for ax, (title, runs) in zip(figure.subplots(1, len(PANELS)), PANELS):
        for run_id, label in runs:
            curve = history(args.root, run_id)
            if curve is None:
                continue
            line, = ax.plot(curve[0], curve[1], label=label)
            if title.startswith("Dropout"):       # the training figure too: the gap is the point
                ax.plot(curve[0], curve[2], color=line.get_color(), linestyle=":",
                        label=label.replace("valid", "train"))
            drawn += 1
        ax.axhline(MEAN_FACE_PX, color="gray", linestyle="--", linewidth=1, label="the mean face")
        ax.set(title=title, xlabel="epoch", ylabel="RMSE px", ylim=(0, 12))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if not drawn:
        raise cli.InputError(f"--root {args.root}: none of the page's runs are there")
    figure.tight_layout()
    figure.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli.run(main)
