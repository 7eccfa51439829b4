"""Write a Kaggle submission: predict the test faces, one value per row of IdLookupTable.csv.

    python write_submission.py --model models/v3_convnet_dropout/model.keras [--flip-tta]
    python write_submission.py --specialists models/specialists
    python write_submission.py --model M --test data/test.csv --lookup data/IdLookupTable.csv --out-dir submission
    python write_submission.py --model M --submit -m "v3 with flip TTA"

    import write_submission
    path = write_submission.write_submission(predictions, ids, "data/IdLookupTable.csv")
    rows = write_submission.submission_rows(predictions, ids, lookup)    # [(RowId, pixels), ...]

Kaggle does not want all 30 values of every test face: IdLookupTable.csv names the
(ImageId, FeatureName) pairs it scores, 27,124 of them for 1,783 faces, and the submission
has one `RowId,Location` line per lookup row, in the same order. Locations are pixels
(`input_data.keypoints_to_pixels`), clipped to the frame [0, 96]; a model that predicts a
keypoint more than a frame's width outside it is broken, and refused.

The file is written to submission/submission-<timestamp>.csv only after every check has
passed (each RowId once, in order; every feature and ImageId known; no NaN; all values in
[0, 96]), through a temporary file, so a bad or half-written submission never appears.
--submit then hands it to the `kaggle` command line tool when that is installed and has
credentials, and otherwise says how to set it up and exits with status 1 (the file stays).
"""
import argparse
import os
import shlex
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import numpy as np

import cli
import evaluate
import input_data
from input_data import COLUMNS, DataError

COMPETITION = "facial-keypoints-detection"
HEADER = "RowId,Location"
LOW, HIGH = 0.0, float(input_data.IMAGE_SIZE)
# A prediction a little outside the frame is clipped (a keypoint at the edge, a mouth corner of a
# turned face); one more than a frame's width outside it (the bound the CSV reader puts on labels)
# is not a keypoint, and clipping it would hide a broken model behind a file of 0s and 96s.
FAR_UNIT = 3.0           # |(px - 48) / 48| beyond this: outside [-96, 192] px
# Kaggle's test.csv: ImageIds 1..1783. --submit refuses other test faces (synthetic_faces.py's,
# written to data/synthetic/): Kaggle would refuse or score them as noise.
KAGGLE_TEST_IDS = range(1, 1784)


# ---------------------------------------------------------------------------------------
# Checks: each names the lookup row (data rows count from 1, after the header).

def _lookup_and_source(lookup):
    """A path (read with input_data.read_lookup) or a list of (RowId, ImageId, FeatureName)."""
    if isinstance(lookup, (str, os.PathLike)):
        return input_data.read_lookup(lookup), str(lookup)
    return [(int(r), int(i), str(f)) for r, i, f in lookup], "the lookup table"


def _first_of(bad, describe):
    """Describe the first bad row, and say how many more there are."""
    more = f" (and {len(bad) - 1} more rows like it)" if len(bad) > 1 else ""
    return describe(bad[0]) + more


def check_ids(ids, source="the test images"):
    """The test ImageIds: a flat list of integers, each once."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{source}: ImageIds must be a flat array of integers, got {ids.dtype} {ids.shape}")
    values, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        twice = values[counts > 1]
        rows = np.flatnonzero(ids == twice[0]) + 1
        raise DataError(f"{source}: ImageId {twice[0]} appears {len(rows)} times (rows "
                        f"{', '.join(map(str, rows))}); {len(twice)} ImageIds are not unique")
    return ids


def check_lookup(lookup, ids, source="the lookup table"):
    """RowIds run 1, 2, ..., M in order (as in Kaggle's table), every FeatureName is one of the
    30 keypoint columns, no (ImageId, FeatureName) is asked for twice and every ImageId is a
    test image. Raises DataError naming the row."""
    if not lookup:
        raise DataError(f"{source}: no rows")
    for n, (row_id, image_id, feature) in enumerate(lookup, start=1):
        if row_id != n:
            raise DataError(f"{source}, row {n}: RowId {row_id}, expected {n} (the RowIds must "
                            "run 1, 2, 3, ... in order, each once, as in Kaggle's table)")
    known = set(COLUMNS)
    unknown = [row for row in enumerate(lookup, start=1) if row[1][2] not in known]
    if unknown:
        raise DataError(_first_of(unknown, lambda r: (
            f"{source}, row {r[0]} (RowId {r[1][0]}, ImageId {r[1][1]}): FeatureName "
            f"{r[1][2]!r} is not one of the 30 keypoint columns (input_data.COLUMNS)")))
    first_row = {}
    for n, (row_id, image_id, feature) in enumerate(lookup, start=1):
        earlier = first_row.setdefault((image_id, feature), n)
        if earlier != n:
            raise DataError(f"{source}, row {n} (RowId {row_id}): asks again for ImageId {image_id} "
                            f"{feature}, already asked for in row {earlier}; each (ImageId, "
                            "FeatureName) pair must appear once")
    test_ids = set(int(i) for i in ids)
    missing = [row for row in enumerate(lookup, start=1) if row[1][1] not in test_ids]
    if missing:
        raise DataError(_first_of(missing, lambda r: (
            f"{source}, row {r[0]} (RowId {r[1][0]}, {r[1][2]}): ImageId {r[1][1]} is not "
            f"among the {len(test_ids)} test images")))
    return lookup


# ---------------------------------------------------------------------------------------
# The submission: rows, then the file.

def submission_rows(predictions, ids, lookup):
    """[(RowId, Location in pixels), ...], one per lookup row, after every check.

    predictions: (N, 30) unit coordinates for the test images whose ImageIds are `ids` (N);
    lookup: IdLookupTable.csv's path or input_data.read_lookup's list. Values are clipped
    to [0, 96]; a NaN or infinite prediction that Kaggle asks for is refused, and so is one
    beyond [-96, 192] px (FAR_UNIT): that model is broken.
    """
    lookup, source = _lookup_and_source(lookup)
    ids = check_ids(ids)
    predictions = np.asarray(predictions, np.float64)
    if predictions.shape != (len(ids), len(COLUMNS)):
        raise ValueError(f"predictions have shape {predictions.shape}, expected ({len(ids)}, "
                         f"{len(COLUMNS)}): 30 unit coordinates for each of the {len(ids)} test images")
    check_lookup(lookup, ids, source)

    row_of_image = {int(image_id): i for i, image_id in enumerate(ids)}
    column = {name: j for j, name in enumerate(COLUMNS)}
    picked = predictions[[row_of_image[image_id] for _, image_id, _ in lookup],
                         [column[feature] for _, _, feature in lookup]]
    bad = np.flatnonzero(~np.isfinite(picked))
    if len(bad):
        raise ValueError(_first_of(bad, lambda k: (
            f"{source}, row {k + 1} (RowId {lookup[k][0]}, ImageId {lookup[k][1]}, "
            f"{lookup[k][2]}): the prediction is {picked[k]}; no submission with missing values")))
    far = np.flatnonzero(np.abs(picked) > FAR_UNIT)
    if len(far):
        k = far[np.argmax(np.abs(picked[far]))]
        raise ValueError(f"{len(far)} of the {len(picked)} predictions asked for are more than a frame's width "
                         f"outside the {HIGH:g}-px frame (the worst {picked[k] * HIGH / 2 + HIGH / 2:.4g} px: "
                         f"{source}, row {k + 1}, ImageId {lookup[k][1]}, {lookup[k][2]}); not a working "
                         "keypoint model, no submission written")
    pixels = np.clip(input_data.keypoints_to_pixels(picked).astype(np.float64), LOW, HIGH)
    rows = [(row_id, float(value)) for (row_id, _, _), value in zip(lookup, pixels)]
    check_rows(rows, len(lookup))
    return rows


def check_rows(rows, n_rows):
    """The last look before writing: RowIds 1..n_rows in order, values finite in [0, 96]."""
    row_ids = np.array([r for r, _ in rows])
    values = np.array([v for _, v in rows], np.float64)
    if len(rows) != n_rows or not np.array_equal(row_ids, np.arange(1, n_rows + 1)):
        raise ValueError(f"the submission's RowIds are not 1..{n_rows} in order")
    if not (np.isfinite(values) & (values >= LOW) & (values <= HIGH)).all():
        raise ValueError(f"the submission has values outside [{LOW:g}, {HIGH:g}] or NaN")


def format_rows(rows):
    """The CSV text: header RowId,Location, then one line per row, LF endings as Kaggle's."""
    return "".join([HEADER + "\n"] + [f"{row_id},{value:.4f}\n" for row_id, value in rows])


def write_submission(predictions, ids, lookup, out_dir="submission", now=None):
    """Check everything, then write out_dir/submission-<timestamp>.csv atomically; its Path.

    now (a datetime, default the local time now) names the file, e.g.
    submission-2026-11-22T08-12-33.csv; an existing file of that name is never replaced.
    """
    text = format_rows(submission_rows(predictions, ids, lookup))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now()).strftime("%Y-%m-%dT%H-%M-%S")
    path, n = out_dir / f"submission-{stamp}.csv", 1
    while path.exists():
        n += 1
        path = out_dir / f"submission-{stamp}-{n}.csv"
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", newline="") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------------------------------
# Predicting, and handing the file to Kaggle.

def check_kaggle_test(ids, test_path):
    """With --submit: the test faces must be Kaggle's, never synthetic ones (a one-line reason)."""
    if Path(test_path).resolve().parent.name == "synthetic":
        raise DataError(f"--submit: {test_path} holds synthetic faces (synthetic_faces.py writes them "
                        "to data/synthetic/), not Kaggle's test set; put Kaggle's test.csv in data/ "
                        "or leave out --submit")
    if len(ids) != len(KAGGLE_TEST_IDS) or sorted(ids) != list(KAGGLE_TEST_IDS):
        raise DataError(f"--submit: {test_path} holds {len(ids)} test faces, not Kaggle's "
                        f"{len(KAGGLE_TEST_IDS)} (ImageIds 1-{KAGGLE_TEST_IDS[-1]}): synthetic or other "
                        "faces, which Kaggle does not score; leave out --submit")


def kaggle_credentials():
    """Where the kaggle tool will find credentials, or None (KAGGLE_CONFIG_DIR, ~/.kaggle)."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME and KAGGLE_KEY"
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    folder = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    for name in ("kaggle.json", "access_token", "access_token.txt"):
        if (folder / name).is_file():
            return str(folder / name)
    return None


HOW_TO_SUBMIT = """\
Not submitted: {reason}. To submit from this machine:
  1. pip install kaggle
  2. on kaggle.com: Settings > API > Create New Token, which downloads kaggle.json
  3. mkdir -p ~/.kaggle && mv kaggle.json ~/.kaggle/ && chmod 600 ~/.kaggle/kaggle.json
     (or set KAGGLE_USERNAME and KAGGLE_KEY; newer versions of the tool also take KAGGLE_API_TOKEN)
  4. accept the competition's rules on https://www.kaggle.com/c/{competition}
then run this again, or submit the file yourself:
  kaggle competitions submit -c {competition} -f {path} -m {message}
(or upload it on the competition's 'Submit Predictions' page)."""


def not_set_up():
    """Why the kaggle tool cannot submit from here, or None when it can."""
    if shutil.which("kaggle") is None:
        return "the `kaggle` command is not on PATH"
    return None if kaggle_credentials() else "the `kaggle` command has no credentials"


def submit(path, message, competition=COMPETITION):
    """Run `kaggle competitions submit` when the tool and its credentials are there: True if
    it succeeded, False if it failed. Otherwise print how to set it up and return None."""
    reason = not_set_up()
    if reason:
        print(HOW_TO_SUBMIT.format(reason=reason, competition=competition, path=shlex.quote(str(path)),
                                   message=shlex.quote(message)))
        return None
    command = [shutil.which("kaggle"), "competitions", "submit", "-c", competition, "-f", str(path), "-m", message]
    print(f"submitting: kaggle competitions submit -c {competition} -f {shlex.quote(str(path))} "
          f"-m {shlex.quote(message)}")
    return subprocess.run(command).returncode == 0


# ---------------------------------------------------------------------------------------
# Command line.

def _default_file(stem):
    path = input_data.find_kaggle_file(stem, "data")
    if path is None:
        flag = "--test" if stem == "test" else "--lookup"
        raise DataError(f"no {stem}.csv in data/ (nor {stem}.zip or {input_data.KAGGLE_BUNDLE}): "
                        f"put Kaggle's file there or name it with {flag}")
    return path


def _existing(path, option, folder=False):
    path = Path(path)
    if not path.exists():
        raise DataError(f"{option} {path}: no such {'folder' if folder else 'file'}")
    if folder and not path.is_dir():
        raise DataError(f"{option} {path}: is a file, expected a folder")
    if not folder and path.is_dir():
        raise DataError(f"{option} {path}: is a folder, expected a file")
    return path


def _load_predictor(model, specialists):
    """evaluate.load_predictor, with a file that is not a model named as bad input."""
    import zipfile
    try:
        predictor = evaluate.load_predictor(model, specialists)
    except (cli.InputError, FileNotFoundError, PermissionError):     # they name the file already
        raise
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile, EOFError) as error:
        option, path = ("--model", model) if model is not None else ("--specialists", specialists)
        raise DataError(f"{option} {path}: not a model this code can load "
                        f"({error.__class__.__name__}: {cli.one_line(error)[:300]})") from None
    if getattr(predictor, "columns", None):
        raise DataError(f"--model {model}: predicts only {len(predictor.columns)} of the 30 keypoint columns "
                        "(trained with --cols); Kaggle asks for all of them: use a model of all 30, or "
                        "--specialists")
    return predictor


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a model.keras written by train.py")
    which.add_argument("--specialists", metavar="DIR", help="a folder of specialists (specialists.load)")
    parser.add_argument("--test", help="Kaggle's test.csv (default: data/test.csv, .zip or Kaggle's bundle)")
    parser.add_argument("--lookup", help="IdLookupTable.csv (default: the one in data/)")
    parser.add_argument("--flip-tta", action="store_true", help="average with the mirrored face's prediction")
    parser.add_argument("--out-dir", default="submission", help="where to write submission-<time>.csv")
    parser.add_argument("--submit", action="store_true", help="then submit it with the kaggle tool")
    parser.add_argument("-m", "--message", help="the submission's description on Kaggle (with --submit)")
    args = parser.parse_args(argv)
    if args.submit and not (args.message or "").strip():
        parser.error('--submit needs -m "MESSAGE": Kaggle shows it beside the score')
    if args.message is not None and not args.submit:
        parser.error("-m/--message is only used with --submit")

    # Every check before the slow part: the files, the output folder, the data's consistency.
    input_data.max_csv_bytes()
    if args.model is not None:
        _existing(args.model, "--model")
        if Path(args.model).suffix != ".keras":
            raise cli.UsageError(f"--model: got {args.model!r}; must be a .keras file written by train.py")
    else:
        _existing(args.specialists, "--specialists", folder=True)
    test_path = _existing(args.test, "--test") if args.test else _default_file("test")
    lookup_path = _existing(args.lookup, "--lookup") if args.lookup else _default_file("IdLookupTable")
    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise DataError(f"--out-dir {args.out_dir}: is a file, expected a folder")
    ids, X = input_data.load_test(test_path)
    check_lookup(input_data.read_lookup(lookup_path), check_ids(ids, str(test_path)), str(lookup_path))
    if args.submit:
        check_kaggle_test(ids, test_path)
    cli.writable_folder(args.out_dir, "--out-dir")
    predictor = _load_predictor(args.model, args.specialists)
    started = time.perf_counter()
    predictions = evaluate.predict(predictor, X, flip_tta=args.flip_tta)
    seconds = time.perf_counter() - started
    try:
        path = write_submission(predictions, ids, lookup_path, args.out_dir)
    except ValueError as error:  # a NaN prediction, or predictions of the wrong shape
        if isinstance(error, cli.InputError):
            raise
        raise DataError(f"{args.model or args.specialists}: {error}") from None
    n_rows = path.read_text().count("\n") - 1
    print(f"wrote {path}: {n_rows} rows for {len(ids)} test faces "
          f"({args.model or args.specialists}{', flip TTA' if args.flip_tta else ''}; "
          f"predicted in {seconds:.1f} s)")
    submitted = submit(path, args.message) if args.submit else True
    if submitted is False:
        raise cli.InputError(f"kaggle competitions submit failed (see above); {path} is written, "
                             "submit it by hand")
    if submitted is None:       # a script's `--submit && ...` must not go on as if it were
        raise cli.InputError(f"not submitted: {not_set_up()}; {path} is written: set the tool up "
                             "as above, or submit it by hand")
    return 0


if __name__ == "__main__":
    cli.run(main)
