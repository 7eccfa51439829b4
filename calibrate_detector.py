"""Fit the maps from each detector's box (Haar, LBP, BlazeFace) to the Kaggle frame, on faces with 68 landmarks.

    python calibrate_detector.py [--faces ../shared/data/cvnd_youtube_faces] [--out FILE] [--overwrite]

The Kaggle frame of a face is input_data.frame_from_68's square (1.47 x the box of landmarks
17..67, shifted a little). The Haar cascade's square box (x, y, w, w) is smaller and sits a
little differently; predict.py turns it into a frame as

    centre = box centre + (dx, dy) * w,     side = side_scale * w.

BlazeFace's two models and the LBP cascade, which predict.py tries before Haar, have their own
three numbers each (blazeface_box_to_frame, blazeface_full_box_to_frame, lbp_box_to_frame). The
three numbers are fitted by least squares on the photos of the TRAINING people of the
person split the models use (train.split_validation(2820, 0.2, 0, people)), each residual
measured in units of the true frame side (so a big face counts as much as a small one). The
script prints the residuals on the training and on the held-out people, and writes the three
numbers, the six of the keypoints -> frame map (predict.frame_from_keypoints, for the
refinement pass: the frame from the keypoint box, fitted on the true keypoints of the same
training faces) and the detector settings they belong to into prediction/detector_calibration.json
(beside the detection code that reads it). Nothing of the photos themselves is written. An
existing --out (by default the shipped file every predict.py run reads) is replaced only with
--overwrite. The fitting is prediction/calibration.py; this file is its command line.
"""
import argparse
import csv
import json
from pathlib import Path

import numpy as np

import cli
import input_data
from prediction import calibration, detection

DEFAULT_FACES = Path(__file__).resolve().parent.parent / "shared" / "data" / "cvnd_youtube_faces"

# The fewest detected faces a fit may use. The three numbers are means of per-face offsets that
# scatter by a few pixels of the 96-px frame, so their error shrinks as 1/sqrt(faces): about
# 0.3 px from 100 faces, over 1 px from 5, where one odd box moves the map every predict.py
# crop goes through.
MIN_FIT_FACES = 100


def load_labelled(faces_dir):
    """(files, people, points68 (N, 68, 2)) from the CVND landmark CSV, in row order."""
    faces_dir = Path(faces_dir)
    labels = faces_dir / "training_frames_keypoints.csv"
    if not labels.is_file():
        raise cli.InputError(f"{labels} not found (the real faces live beside the repository)")
    try:
        with open(labels, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))[1:]
    except (UnicodeDecodeError, csv.Error) as error:
        raise cli.InputError(f"{labels}: not a UTF-8 CSV ({cli.one_line(error)})") from None
    if not rows:
        raise cli.InputError(f"{labels}: no label rows")
    files, points = [], []
    for number, row in enumerate(rows, start=2):
        try:
            values = np.array([float(v) for v in row[1:]], np.float64)
        except ValueError as error:
            raise cli.InputError(f"{labels}, row {number}: {cli.one_line(error)}") from None
        if values.size != 136 or not np.isfinite(values).all():
            raise cli.InputError(f"{labels}, row {number}: needs a file name and 136 finite numbers "
                                 f"(68 x, y pairs), got {values.size} values"
                                 + ("" if np.isfinite(values).all() else " with NaN or infinity"))
        files.append(row[0])
        points.append(values.reshape(68, 2))
    return files, [input_data.person_of(f) for f in files], np.array(points)


def person_split(people):
    """(train, validation) indices: the split the models were trained with."""
    import train
    return train.split_validation(len(people), 0.2, 0, people)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", default=str(DEFAULT_FACES), help="the CVND faces folder "
                        "(training/ and training_frames_keypoints.csv)")
    parser.add_argument("--out", default=str(detection.CALIBRATION_PATH), help="the JSON file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists (the default "
                        "--out is the shipped calibration)")
    args = parser.parse_args(argv)
    # Before any work: --out is a file in a writable folder, and never the labels, a photo or
    # anything else under --faces (a JSON over training_frames_keypoints.csv destroys the labels).
    cli.check_outputs([("--out", args.out)], [("--faces", args.faces)])
    if Path(args.out).exists() and not args.overwrite:
        shipped = " (the shipped calibration every predict.py run reads)" \
            if cli.same_file(args.out, detection.CALIBRATION_PATH) else ""
        raise cli.UsageError(f"--out {args.out}: exists{shipped}; pass --overwrite to replace it, "
                             "or name another --out")

    files, people, points = load_labelled(args.faces)
    train_idx, val_idx = person_split(people)
    if not len(train_idx):
        raise cli.InputError(f"--faces {args.faces}: {len(files)} photos of {len(set(people))} people, all "
                             "held out by the person split; the fit needs photos of more people")
    print(f"{len(files)} faces of {len(set(people))} people; fitting on {len(train_idx)} faces of "
          f"{len(set(people[i] for i in train_idx))} training people, checking on {len(val_idx)} "
          f"faces of {len(set(people[i] for i in val_idx))} held-out people")
    out = calibration.calibrate(args.faces, files, points, train_idx, val_idx, MIN_FIT_FACES)
    cli.write_atomically(args.out, lambda tmp: Path(tmp).write_text(json.dumps(out, indent=1) + "\n"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli.run(main)
