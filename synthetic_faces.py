"""Synthetic faces in Kaggle's Facial Keypoints format: 96x96 grayscale drawings, labelled.

Kaggle's pixels are not in this repository, so tests and the first demo run on drawn faces.
They are cartoons, but honest ones: the 15 keypoints are sampled from the statistics of
Kaggle's real labels (means, spreads and correlations, stored below as numbers), and every
part of the face is drawn ON its keypoints: the pupil at the eye centre, the almond from the
inner to the outer corner, the brow from its inner to its outer end, nostrils around the nose
tip, lips through the mouth corners and lip centres. A network that learns to find the parts
therefore learns the keypoints.

    import synthetic_faces
    images, keypoints = synthetic_faces.make_faces(500, seed=0)   # uint8 (500, 96, 96), (500, 30)
    synthetic_faces.write_kaggle_files("data/synthetic")         # training.csv, test.csv, IdLookupTable.csv

    python synthetic_faces.py --out data/synthetic --missing kaggle --preview data/synthetic/preview.png
    (files already in --out, an earlier run's or Kaggle's own, are replaced only with --overwrite)

Each image also varies the way photos do (tone of skin and background, lighting gradient,
contrast, blur, noise), and each face belongs to a person whose traits (proportions, head
shape, eyes, brows, nose, lips, hair, glasses, a mole) stay fixed across that person's
images, for the face-recognition extension: see `make_identities`.

The parts live in synthesis/ (Kaggle's keypoint statistics and sampling, people, drawing); this
file hands on their public names and makes the data sets and the command line.
"""
import argparse
import os
import time
from pathlib import Path

import numpy as np

import cli
import input_data
from synthesis.drawing import MOUTH, N_KEYPOINTS, SHIFT, render_face  # noqa: F401  (re-exported)
from synthesis.keypoints import (  # noqa: F401
    FRAME_MARGIN, KAGGLE_PRESENCE_PATTERNS, KEYPOINT_MEAN, N_NORMALS, PC_AXES, PC_STD, RESIDUAL_STD,
    fit_keypoint_stats, kaggle_missing_mask, keypoints_from_normals, sample_keypoints)
from synthesis.people import (  # noqa: F401
    GLASSES_RATE, IDENTITY_SHAPE_SHARE, MOLE_RATE, TRAIT_RANGES, Traits, make_identities, random_traits)

IMAGE_SIZE = input_data.IMAGE_SIZE
COLUMNS = input_data.COLUMNS
KEYPOINT_NAMES = input_data.KEYPOINT_NAMES

# ---------------------------------------------------------------------------------------
# Data sets.

# Kaggle's test set asks for all 30 values for about a third of the images (the first ones)
# and for these 8 for the rest; 1,190 of its 1,783 test images ask for just these.
FEW_FEATURES = ["left_eye_center_x", "left_eye_center_y", "right_eye_center_x", "right_eye_center_y",
                "nose_tip_x", "nose_tip_y", "mouth_center_bottom_lip_x", "mouth_center_bottom_lip_y"]
ALL_FEATURES_FRACTION = 1 / 3


def make_faces(n, seed=0, missing=None, identities=None, person_ids=None):
    """n labelled faces: (images uint8 (n, 96, 96), keypoints float32 (n, 30) in pixels).

    missing="kaggle" empties (NaN) the labels the way Kaggle's table does; the images are
    the same either way. identities (from make_identities) with person_ids (one index per
    face; default 0, 1, 2, ... cycling) draws those people; otherwise every face is a new
    person. The same arguments always give the same faces, and the first k faces of n are
    the faces of make_faces(k).
    """
    if missing not in (None, "kaggle"):
        raise ValueError(f"missing must be None or 'kaggle', not {missing!r}")
    if identities is None and person_ids is not None:
        raise ValueError("person_ids needs identities")
    if identities is not None and person_ids is None:
        person_ids = np.arange(n) % len(identities)
    # Separate random streams, so masking labels does not change the faces.
    keypoint_seed, drawing_seed, missing_seed = np.random.SeedSequence(seed).spawn(3)
    normals = np.random.default_rng(keypoint_seed).standard_normal((n, N_NORMALS))
    if identities is not None:
        own = np.array([identities[p].shape for p in person_ids]).reshape(n, N_NORMALS)
        normals = np.sqrt(IDENTITY_SHAPE_SHARE) * own + np.sqrt(1 - IDENTITY_SHAPE_SHARE) * normals
    keypoints = keypoints_from_normals(normals)
    drawing = np.random.default_rng(drawing_seed)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for i in range(n):
        traits = None if identities is None else identities[person_ids[i]]
        images[i] = render_face(keypoints[i], drawing, traits)
    if missing == "kaggle":
        keypoints[kaggle_missing_mask(n, np.random.default_rng(missing_seed))] = np.nan
    return images, keypoints


def lookup_rows(image_ids):
    """(ImageId, FeatureName) pairs as Kaggle's IdLookupTable asks for them: all 30 features
    for the first third of the images, the 8 of FEW_FEATURES for the rest."""
    n_all = round(len(image_ids) * ALL_FEATURES_FRACTION)
    return [(int(image_id), name)
            for k, image_id in enumerate(image_ids)
            for name in (COLUMNS if k < n_all else FEW_FEATURES)]


def write_lookup_table(path, image_ids):
    """IdLookupTable.csv: RowId,ImageId,FeatureName,Location with Location left empty."""
    lines = ["RowId,ImageId,FeatureName,Location"]
    lines += [f"{row},{image_id},{name}," for row, (image_id, name) in enumerate(lookup_rows(image_ids), 1)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def write_kaggle_files(out_dir, n_train=2140, n_test=300, seed=0, missing=None):
    """Write training.csv, test.csv and IdLookupTable.csv in Kaggle's format to out_dir.

    Returns {"training": path, "test": path, "IdLookupTable": path}. The test faces are
    other faces than the training ones (a seed of their own, derived from `seed`).
    """
    out_dir = Path(out_dir)
    images, keypoints = make_faces(n_train, seed, missing)
    paths = {"training": input_data.write_csv(out_dir / "training.csv", images, keypoints)}
    test_seed = int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])
    test_images, _ = make_faces(n_test, test_seed)
    image_ids = np.arange(1, n_test + 1)
    paths["test"] = input_data.write_csv(out_dir / "test.csv", test_images, image_ids=image_ids)
    paths["IdLookupTable"] = write_lookup_table(out_dir / "IdLookupTable.csv", image_ids)
    return paths


def kaggle_files(data_dir="data", allow_synthetic=True):
    """input_data.kaggle_files, but when Kaggle's training file is absent (and allow_synthetic),
    synthetic faces are written to data_dir/synthetic/ first: ({stem: path or None}, synthetic?).

    It lives here, not in input_data, so that the lower layer never imports this one."""
    found, synthetic = input_data.kaggle_files(data_dir, allow_synthetic)
    if found["training"] is not None or not allow_synthetic:
        return found, synthetic
    synthetic_dir = Path(data_dir) / "synthetic"
    print(f"No Kaggle training.csv in {data_dir}/: writing synthetic faces to {synthetic_dir}/ "
          "(put Kaggle's files in data/ to use the real ones).")
    write_kaggle_files(synthetic_dir)
    return input_data.kaggle_files(data_dir, allow_synthetic)


# ---------------------------------------------------------------------------------------
# Command line.

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/synthetic", help="folder for the three CSVs")
    parser.add_argument("--n-train", type=cli.positive_int, default=2140, help="training faces (1 or more)")
    parser.add_argument("--n-test", type=cli.positive_int, default=300, help="test faces (1 or more)")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0, help="random seed (0 or more)")
    parser.add_argument("--missing", choices=["kaggle"], default=None,
                        help="leave labels empty the way Kaggle's training.csv does")
    parser.add_argument("--preview", metavar="PNG", help="also draw the first 16 faces with their keypoints")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the Kaggle files (and --preview) already in --out")
    parser.add_argument("--fit-stats", metavar="CSV",
                        help="only print the keypoint statistics of a Kaggle keypoint table, as code")
    args = parser.parse_args(argv)
    # Bounded so a typo cannot fill the disk: Kaggle has 7,049 training and 1,783 test faces.
    for option, value in (("--n-train", args.n_train), ("--n-test", args.n_test)):
        if value > MAX_FACES:
            raise cli.UsageError(f"{option}: got {value}; must be at most {MAX_FACES:,}")
    if args.fit_stats:
        if not Path(args.fit_stats).is_file():
            raise input_data.DataError(f"--fit-stats {args.fit_stats}: no such file")
        fit_keypoint_stats(args.fit_stats)
        return 0
    if args.preview is not None:
        if Path(args.preview).suffix.lower() != ".png":
            raise cli.UsageError(f"--preview: got {args.preview!r}; must be a .png file name")
        cli.writable_folder(str(Path(args.preview).parent), "--preview's folder")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise input_data.DataError(f"--out {args.out}: is a file, expected a folder")
    # Before any work: --out may be data/ with Kaggle's real files in it, or an earlier run's;
    # a zip there counts too, as training.csv beside it would take its place for every reader.
    held = [input_data.find_kaggle_file(stem, args.out) for stem in input_data.KAGGLE_STEMS]
    held = list(dict.fromkeys(str(path) for path in held if path is not None))   # Kaggle's bundle once
    if args.preview is not None and Path(args.preview).exists():
        held.append(args.preview)
    if held and not args.overwrite:
        raise cli.UsageError(f"--out {args.out}: {held[0]} is already there"
                             f"{f' (and {len(held) - 1} more of the outputs)' if len(held) > 1 else ''}; "
                             "pass --overwrite to replace what is there, or pick another --out")
    cli.writable_folder(args.out, "--out")
    started = time.perf_counter()
    paths = write_kaggle_files(args.out, args.n_train, args.n_test, args.seed, args.missing)
    seconds = time.perf_counter() - started
    lookup_count = len(lookup_rows(range(args.n_test)))
    print(f"wrote {paths['training']}: {args.n_train} faces with keypoints"
          f"{' (labels missing as in Kaggle)' if args.missing else ''}")
    print(f"wrote {paths['test']}: {args.n_test} faces")
    print(f"wrote {paths['IdLookupTable']}: {lookup_count} values asked for")
    print(f"in {seconds:.1f} s")
    if args.preview:
        images, keypoints = make_faces(16, args.seed)  # the first 16 training faces, all labels
        input_data.plot_samples(images, keypoints, args.preview)
        print(f"wrote {args.preview}")
    return 0


MAX_FACES = 100_000

if __name__ == "__main__":
    cli.run(main)
