"""Kaggle Facial Keypoints data: CSVs to arrays, and real photos into the same 96x96 frame.

    import input_data
    X, Y = input_data.load("data/training.csv")     # X (N, 96, 96, 1) in [0, 1]; Y (N, 30) = (y - 48) / 48
    ids, X_test = input_data.load_test("data/test.csv")

This module is the project's one preprocessing path: every tool (training, evaluation,
prediction, submission) reads images with `read_gray`, crops them with `Frame.crop` and
scales them with `images_to_unit` / `keypoints_to_unit`, so a face means the same thing
everywhere. Its parts live in dataset/ (the format, Kaggle's files, the CSV reader and
writer, photos and the Frame, the 68-point conversion); this file hands on their public names
(`input_data.load`, `input_data.Frame`, ...) and holds the command line.

Command line:
    python input_data.py summary [--data DIR]     # describe the Kaggle files in data/ (or synthetic faces)
    python input_data.py convert-68 --csv LABELS.csv --images DIR --out OUT.csv
    python input_data.py check-labels FILE [--out CLEAN.csv]   # rows that cannot be a face
"""
import argparse
import csv
import time
from pathlib import Path

import numpy as np

import cli
import label_check
from dataset.files import (  # noqa: F401  (re-exported: input_data.<name> is public)
    DEFAULT_MAX_CSV_MB, KAGGLE_BUNDLE, KAGGLE_STEMS, MAX_CSV_MB_VARIABLE, MAX_ZIP_DEPTH, file_sha256,
    find_kaggle_file, kaggle_files, max_csv_bytes, read_bytes)
from dataset.kaggle_csv import (  # noqa: F401
    KNOWN_COLUMNS, MAX_IMAGE_ID, Table, format_pixels, load, load_test, parse_coordinate, read_keypoints,
    read_labels, read_lookup, read_table, write_csv)
from dataset.kaggle_format import (  # noqa: F401
    COLUMNS, FLIP_INDICES, IMAGE_SIZE, KEYPOINT_NAMES, MIRROR_AXIS_EXPECTED, N_PIXELS, DataError,
    flip_indices, images_to_unit, is_mirror_axis, keypoints_to_pixels, keypoints_to_unit, one_sided)
from dataset.landmarks68 import (  # noqa: F401
    CROP_SCALE, CROP_SHIFT, FROM_68, _parse_68, convert_68, frame_from_68, keypoints_from_68, person_of,
    sources_path)
from dataset.photos import IMAGE_EXTENSIONS, Frame, read_gray, to_gray8  # noqa: F401


# ---------------------------------------------------------------------------------------
# Command line.

def summarise(data_dir="data", plot_path=None):
    files, synthetic = kaggle_files(data_dir)
    if files["training"] is None:
        raise DataError(f"no Kaggle training data in {data_dir}/ (training.csv, training.zip or "
                        f"{KAGGLE_BUNDLE}) nor synthetic faces in {Path(data_dir) / 'synthetic'}/: put "
                        f"Kaggle's files there, or write synthetic ones with `python synthetic_faces.py "
                        f"--out {Path(data_dir) / 'synthetic'}`")
    started = time.perf_counter()
    images, keypoints = read_keypoints(files["training"])
    seconds = time.perf_counter() - started
    complete = ~np.isnan(keypoints).any(axis=1)
    print(f"{files['training']}{' (synthetic)' if synthetic else ''}: {len(images)} faces, "
          f"{complete.sum()} with all 15 keypoints, parsed in {seconds:.2f} s")
    print(f"{'keypoint':<26}{'present':>8}{'mean x':>9}{'mean y':>9}{'sd x':>7}{'sd y':>7}")
    for k, name in enumerate(KEYPOINT_NAMES):
        xy = keypoints[:, 2 * k:2 * k + 2]
        present = ~np.isnan(xy[:, 0])
        mean, sd = np.nanmean(xy, axis=0), np.nanstd(xy, axis=0)
        print(f"{name:<26}{present.sum():>8}{mean[0]:>9.1f}{mean[1]:>9.1f}{sd[0]:>7.1f}{sd[1]:>7.1f}")
    if files["test"] is not None:
        ids, _ = load_test(files["test"])
        print(f"{files['test']}: {len(ids)} test faces")
    if files["IdLookupTable"] is not None:
        lookup = read_lookup(files["IdLookupTable"])
        print(f"{files['IdLookupTable']}: {len(lookup)} values asked for, "
              f"{len(set(r[1] for r in lookup))} images")
    plot_path = Path(plot_path or Path(data_dir) / "samples.png")
    plot_samples(images[complete][:16], keypoints[complete][:16], plot_path)
    print(f"wrote {plot_path}")


def check_labels(path):
    """The rows of a keypoint table that cannot be a face (label_check.check): a list of
    (row from 1, photo name or None, reason), and the number of rows checked. The photo names
    come from PATH.sources.csv when convert-68 wrote one."""
    keypoints = read_labels(path)
    try:
        result = label_check.check(keypoints, KEYPOINT_NAMES)
    except ValueError as error:
        raise DataError(f"{path}: cannot check its labels: {error}") from None
    names = [None] * len(keypoints)
    sources = sources_path(path)
    if sources.is_file():
        with open(sources, newline="", encoding="utf-8", errors="replace") as f:
            files = [row.get("file") for row in csv.DictReader(f)]
        if len(files) == len(keypoints):
            names = files
    return [(flag.row + 1, names[flag.row], flag.reason) for flag in result.flags], result.checked


def print_label_check(path):
    flagged, checked = check_labels(path)
    print(f"{path}: {len(flagged)} of {checked} checked rows cannot be a face (threshold "
          f"{label_check.THRESHOLD:g} spreads; rows with fewer than {label_check.MIN_POINTS} keypoints "
          "are not checked)")
    for row, name, reason in flagged:
        print(f"{path}, row {row}{f' ({name})' if name else ''}: {reason}")
    return flagged


def write_without(path, out_csv, rows):
    """PATH's faces without the given rows (counted from 1) to OUT_CSV, and PATH.sources.csv's
    rows likewise to OUT.sources.csv when it exists: a training file with the flagged rows left
    out. Both are written or neither."""
    data, source = read_bytes(path, "training")
    header = data[:data.find(b"\n") if b"\n" in data else len(data)]
    if b"Image" not in [h.strip().strip(b'"') for h in header.split(b",")]:
        raise DataError(f"{source}: has no Image column; --out writes faces to train on")
    del data
    images, keypoints = read_keypoints(path)
    keep = np.ones(len(images), bool)
    keep[np.asarray(rows, int) - 1] = False
    writes = [(out_csv, lambda tmp: write_csv(tmp, images[keep], keypoints[keep]))]
    if sources_path(path).is_file():
        with open(sources_path(path), newline="", encoding="utf-8") as f:
            sources = list(csv.DictReader(f))
        if len(sources) != len(images):
            raise DataError(f"{sources_path(path)}: {len(sources)} rows but {path} has {len(images)}")

        def write_sources(tmp):
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["row", "file", "person"])
                kept = (row for row, k in zip(sources, keep) if k)
                writer.writerows((i, row.get("file"), row.get("person")) for i, row in enumerate(kept))
        writes.append((sources_path(out_csv), write_sources))
    cli.write_all_atomically(writes)
    return int(keep.sum())


def plot_samples(images, keypoints, path=None, titles=None, truth=None, title=None):
    """A 4x4 grid of faces with keypoints (pixels, red x) and optionally the true ones (green +).

    images: uint8 (N, 96, 96) or floats in [0, 1], with or without a channel axis.
    Writes `path` when given; returns the PNG bytes either way.
    """
    import io
    from matplotlib.figure import Figure  # no pyplot: works headless and inside notebooks
    images = np.asarray(images)
    images = images[..., 0] if images.ndim == 4 else images
    top = 255 if images.dtype == np.uint8 else 1
    fig = Figure(figsize=(6, 6))
    for i, ax in enumerate(fig.subplots(4, 4).flat):
        ax.axis("off")
        if i >= len(images):
            continue
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=top)
        if truth is not None:
            ax.scatter(truth[i, 0::2], truth[i, 1::2], s=10, c="lime", marker="+")
        ax.scatter(keypoints[i, 0::2], keypoints[i, 1::2], s=8, c="red", marker="x")
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        cli.write_atomically(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
    return buffer.getvalue()


def _existing_file(path, option):
    if not Path(path).exists():
        raise DataError(f"{option} {path}: no such file")
    if Path(path).is_dir():
        raise DataError(f"{option} {path}: is a folder, expected a file")
    return path


def _png_path(path, option, inputs=()):
    if path is not None:
        if Path(path).suffix.lower() != ".png":
            raise cli.UsageError(f"{option}: got {path!r}; must be a .png file name")
        cli.check_outputs([(option, path)], inputs)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("summary", help="describe the Kaggle files in --data (or data/synthetic/)")
    summary.add_argument("--data", default="data", help="folder with Kaggle's files (default data/)")
    summary.add_argument("--plot", default=None, help="where to write the sample grid (default DATA/samples.png)")
    convert = commands.add_parser("convert-68", help="68-landmark photos -> Kaggle-format training CSV")
    convert.add_argument("--csv", required=True, help="labels: file name, then x0,y0,...,x67,y67")
    convert.add_argument("--images", required=True, help="folder holding the photos")
    convert.add_argument("--out", required=True, help="output CSV (also writes OUT.sources.csv)")
    convert.add_argument("--plot", default=None, help="also write a 4x4 grid of converted faces")
    convert.add_argument("--overwrite", action="store_true", help="replace OUT.csv and OUT.sources.csv "
                         "when they exist (e.g. a Kaggle training.csv of the same name is never replaced without it)")
    check = commands.add_parser("check-labels", help="list the rows of a keypoint table that cannot be a "
                                "face (swapped left/right or keypoints, a keypoint far off)")
    check.add_argument("csv", help="Kaggle-format CSV or zip, with or without its Image column")
    check.add_argument("--out", help="also write CSV's faces without the flagged rows to OUT.csv "
                       "(and OUT.sources.csv): a training file with them left out")
    check.add_argument("--overwrite", action="store_true", help="replace OUT.csv and OUT.sources.csv")
    args = parser.parse_args(argv)
    max_csv_bytes()  # a bad $FKD_MAX_CSV_MB is a usage error before any work
    if args.command == "summary":
        if not Path(args.data).is_dir():
            raise DataError(f"--data {args.data}: not a folder")
        _png_path(args.plot or str(Path(args.data) / "samples.png"), "--plot")
        summarise(args.data, args.plot)
        return 0
    if args.command == "check-labels":
        _existing_file(args.csv, "check-labels")
        if args.out is not None:
            if Path(args.out).suffix.lower() != ".csv":
                raise cli.UsageError(f"--out: got {args.out!r}; must be a .csv file name")
            cli.check_outputs([("--out", args.out), ("--out's sources file", sources_path(args.out))],
                              [("CSV", args.csv), ("CSV's sources file", sources_path(args.csv))], args.overwrite)
        flagged = print_label_check(args.csv)
        if args.out is not None:
            kept = write_without(args.csv, args.out, [row for row, _, _ in flagged])
            print(f"wrote {args.out}: {kept} faces, {len(flagged)} flagged rows left out")
        return 0
    _existing_file(args.csv, "--csv")
    if not Path(args.images).is_dir():
        raise DataError(f"--images {args.images}: not a folder")
    if Path(args.out).suffix.lower() != ".csv":
        raise cli.UsageError(f"--out: got {args.out!r}; must be a .csv file name")
    _png_path(args.plot, "--plot", [("--csv", args.csv), ("--images", args.images)])
    started = time.perf_counter()
    written, skipped = convert_68(args.csv, args.images, args.out, overwrite=args.overwrite)
    for row, name, reason in skipped:
        print(f"skipped {args.csv} row {row} ({name or 'no file name'}): {reason}")
    print(f"wrote {args.out}: {written} faces, {len(skipped)} skipped, "
          f"in {time.perf_counter() - started:.1f} s")
    if written >= label_check.MIN_COMPLETE:
        print_label_check(args.out)
    if args.plot:
        images, keypoints = read_keypoints(args.out)
        plot_samples(images[:16], keypoints[:16], args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    cli.run(main)
