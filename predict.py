"""Facial keypoints on real photos and videos: find the faces, crop them to the Kaggle frame,
predict, map the keypoints back into the photo, and write a CSV and pictures.

    python predict.py                              # every photo under faces/ (sample photos if empty)
    python predict.py PATH... [--out DIR]          # photos, folders, glob patterns, videos
    python predict.py --faces DIR                  # the same as `python predict.py DIR`
    python predict.py clip.mp4 [--no-smooth]       # keypoints per frame + an annotated copy
    python predict.py --camera 0 --max-frames 300  # a webcam

    import predict
    gray = predict.read_photo("faces/ada/1.jpg")    # uint8 (H, W), EXIF orientation applied
    frames = predict.detect_faces(gray)              # [input_data.Frame], largest first (upright)
    faces = predict.predict_keypoints(gray)          # [Face], rotated faces too
    faces[0].keypoints, faces[0].confidence          # (15, 2) photo pixels; 0..1

The network runs with onnxruntime from the ONNX file shipped beside the model (model.onnx beside
model.keras, made by `python export.py --format predictor`): no TensorFlow is imported, so one
photo takes well under a second from start to exit. docs/predict.md is the user's guide: what is
written, how faces are found (also turned ones), the confidence, speed and accuracy.

How a face is found and cropped:
1. Detectors on shrunk copies of the photo, and on turned copies when no upright face is sure
   (prediction/detection.py).
2. The detector's box -> the Kaggle frame (input_data.frame_from_68's crop) by a transform fitted
   on the training people (calibrate_detector.py -> prediction/detector_calibration.json).
3. The network (prediction/runtime.py) predicts the 15 keypoints in that 96x96 crop; the frame
   and roll are re-estimated from them and the network predicts again on the upright crop
   (REFINE_PASSES times); an unsure face is retried from moved and resized squares
   (prediction/keypoints.py).

This file is the command line: its inputs, the folder run (worker processes), main. The parts
are in prediction/ (its __init__ lists them; docs/architecture.md shows how they fit); their
public names are also predict.<name>, as the notebook, docs and other tools use them.
"""
import argparse
import glob
import os
import sys
import time
from pathlib import Path
from typing import NamedTuple, Optional

import cli
from prediction.detection import (  # noqa: F401  (re-exported: predict.<name> is public)
    CALIBRATION_PATH, CASCADE, DETECT_SIDES, FALLBACKS, FRAME_DECIMALS, LBP_MIN_NEIGHBORS, LBP_SCALE_FACTOR, LBP_SIDE,
    MIN_FACE, MIN_NEIGHBORS, NEAR_LIMIT, ROLLS, SCALE_FACTOR, box_to_frame, calibration, detect_boxes, detect_faces,
    detector_settings, frame_from_keypoints, is_face_crop, lbp_boxes, lbp_cascade, whole_frame)
from prediction.images import PhotoError, View, read_image, read_photo, read_scaled, upright_view, write_image  # noqa: F401
from prediction.inputs import (  # noqa: F401
    IMAGE_EXTENSIONS, STAMP, VIDEO_EXTENSIONS, Item, expand_inputs, find_photos, glob_inputs, is_own_output,
    write_demo_photos)
from prediction.keypoints import (  # noqa: F401
    MIN_ROLL, RETRY_BEST, RETRY_MARGIN, RETRY_SCALES, RETRY_SHIFTS, Face, crop_faces, eye_roll, find_and_predict,
    find_and_predict_many, predict_batch, predict_keypoints, refine_passes)
from prediction.options import (  # noqa: F401
    FLIP_TTA, LOW_CONFIDENCE, LOW_SHARE, LOW_SHARE_MIN_FACES, NO_FACE, OK, REFINE, REFINE_PASSES, UNREADABLE,
    Options)
from prediction.outputs import (  # noqa: F401
    COLOURS, CSV_COLUMNS, OVERLAY_MAX_SIDE, SHEET_CELL, SHEET_COLUMNS, SHEET_ROWS, ContactSheets, CsvWriter,
    csv_rows, draw_overlay, drawn_names, is_low, new_csv, overlay_name, plot_faces, sheet_page, write_csv, write_overlay)
from prediction.photos import PhotoResult, process_photo, process_photos, worker_init, worker_run  # noqa: F401
from prediction.runtime import (  # noqa: F401
    CACHE_DIR, KEYPOINT_PAIRS, MAX_UNIT, NETWORK_BATCH, KerasPredictor, ModelError, OnnxPredictor,
    bar_of, crop_keypoints, heatmap_confidence, load_model, no_face_confidence, onnx_for, run_network, with_bar)
from prediction.video import OneEuro, open_capture, process_video  # noqa: F401

HERE = Path(__file__).resolve().parent
DEFAULT_FACES_DIR = HERE / "faces"
PHOTO_GROUP = 8              # a folder's photos go to the network in groups of this many


class Summary(NamedTuple):
    photos: int
    faces: int
    no_face: int
    unreadable: int
    csv: Path
    plots: list
    overlays: Optional[Path]
    videos: int = 0
    video_frames: int = 0
    low_faces: int = 0          # photos' faces below the confidence bar


def _workers(n_photos, workers):
    """Processes for a folder: one per core when there are enough photos to pay for starting
    them (~0.1 s each)."""
    if workers is not None:
        return max(1, workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cores, 8) if n_photos >= 16 else 1


def _count(n, noun):
    """'1 photo', '2 photos'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


class _NoBar:
    """What run() asks of a progress bar, where none is shown."""
    def update(self, n=1):
        pass

    def close(self):
        pass

    @staticmethod
    def write(message):
        print(message)                    # where tqdm.write prints: stdout


def progress_bar(shown, **options):
    """tqdm's bar with these options, or a _NoBar: tqdm is imported only to show one (its import
    is ~10% of a one-photo run)."""
    if not shown:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(**options)


def run(items, out, model=None, n_plot=None, detect=True, refine=REFINE, flip_tta=FLIP_TTA,
        rotations=True, plot=True, overlays=False, smooth=True, workers=None, progress=True,
        timestamp=None, max_frames=None, low_confidence=None):
    """Predict every Item (photos and videos) and write into `out`: prediction-<time>.csv, the
    contact sheet(s) plot-<time>.jpg (plot), overlays-<time>/<photo>.png (overlays) and, for
    videos, overlays-<time>/<video>.mp4. low_confidence: the run's bar (faces below it are
    searched again and marked low; None: the model's own, bar_of). Returns a Summary."""
    out = Path(out)
    writer, stamp = new_csv(out, "prediction", timestamp, also=("plot-{}.jpg", "plot-{}-1.jpg", "overlays-{}"))
    csv_path = writer.path
    overlay_dir = out / f"overlays-{stamp}"
    photos = [item for item in items if not item.is_video]
    videos = [item for item in items if item.is_video]
    options = Options(load_model(model), detect, refine, flip_tta, rotations,
                      overlay_dir if overlays else None, plot and (n_plot is None or n_plot > 0),
                      low_confidence=low_confidence)
    predictor = options.model
    names = drawn_names(photos + videos)
    overlay_names, video_names = names[:len(photos)], names[len(photos):]

    counts = {"faces": 0, NO_FACE: 0, UNREADABLE: 0, "low_faces": 0}
    # JPEG: a page of 64 faces encodes ~5x faster than as PNG, and photos look the same.
    sheets = ContactSheets(out / f"plot-{stamp}.jpg", n_plot) if options.sheet else None
    try:
        jobs = list(zip(photos, overlay_names))
        groups = [jobs[k:k + PHOTO_GROUP] for k in range(0, len(jobs), PHOTO_GROUP)]
        n_workers = min(_workers(len(photos), workers), max(1, len(groups)))   # no idle processes
        # (one photo's bar tells nothing its summary line does not)
        bar = progress_bar(progress and len(photos) > 1, total=len(photos), desc="photos", unit="photo")
        if n_workers > 1:
            import multiprocessing
            context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            base = options._replace(model=predictor.source if isinstance(predictor, OnnxPredictor) else predictor)
            import cv2
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)            # before the fork (see worker_init); restored after
            try:
                with context.Pool(n_workers, worker_init, (base,)) as pool:
                    _collect(pool.imap(worker_run, groups), writer, counts, sheets, bar)
            finally:
                cv2.setNumThreads(threads)
        else:
            _collect((process_photos(group, options) for group in groups), writer, counts, sheets, bar)
        bar.close()
        frames = 0
        for item, video_name in zip(videos, video_names):
            bar = progress_bar(progress, desc=item.name, unit="frame")
            annotated = overlay_dir / video_name
            annotated.parent.mkdir(parents=True, exist_ok=True)
            try:
                n, _ = process_video(item.path, item.name, item.person, options, writer, annotated,
                                     smooth=smooth, max_frames=max_frames, progress=bar)
            except ModelError:                  # the model, not the video: the run stops
                raise
            except cli.InputError as error:     # one bad video does not end the run
                try:
                    annotated.parent.rmdir()    # made for its annotated copy; gone if nothing is in it
                except OSError:
                    pass
                reason = str(error).removeprefix(f"{item.name}: ")
                writer.write(csv_rows(item.name, item.person, status=f"{UNREADABLE}: {reason}"))
                counts[UNREADABLE] += 1
                n = 0
            bar.close()
            frames += n
    except BaseException:
        writer.close()
        if writer.rows == 0:                 # failed before any row: leave no empty CSV behind
            writer.path.unlink(missing_ok=True)
        raise
    finally:
        writer.close()
        plots = sheets.close() if sheets is not None else []
    return Summary(len(photos), counts["faces"], counts[NO_FACE], counts[UNREADABLE], csv_path,
                   plots, overlay_dir if overlay_dir.is_dir() else None, len(videos), frames,
                   counts["low_faces"])


def _collect(groups, writer, counts, sheets, bar):
    for group in groups:
        for result in group:
            writer.write(result.rows)
            if result.status == OK:
                counts["faces"] += result.faces
                counts["low_faces"] += result.low_faces
            else:
                counts[result.status] += 1
            if sheets is not None:
                sheets.add(result.sheet)
            if result.message:
                bar.write(result.message)
        bar.update(len(group))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Facial keypoints on photos and videos: find the faces, crop, predict, write a "
                    "CSV (one row per face) and pictures. See docs/predict.md.")
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="photos, videos (.mp4 .avi .mov .webm), folders (DIR/<person>/<photo>) or "
                             f"glob patterns (quoted); default: {DEFAULT_FACES_DIR.name}/")
    parser.add_argument("--faces", default=None, metavar="DIR", help="a photo folder (the same as "
                        "giving it as a PATH)")
    parser.add_argument("--out", default=None, metavar="DIR", help="where the outputs go (default: the "
                        "folder given, or the folder of the first photo)")
    parser.add_argument("--model", default=None, help="a .onnx or .keras model (default: the shipped "
                        "model's ONNX; a .keras is converted once and cached)")
    parser.add_argument("--camera", type=cli.non_negative_int, default=None, metavar="INDEX",
                        help="also read this webcam (with --max-frames)")
    parser.add_argument("--max-frames", type=cli.positive_int, default=None,
                        help="stop each video (or the camera) after N frames")
    parser.add_argument("--n-plot", type=cli.non_negative_int, default=None,
                        help="put only the first N faces on the contact sheet (0: no sheet)")
    parser.add_argument("--no-plot", action="store_true", help="no contact sheet")
    parser.add_argument("--overlays", action="store_true", help="also write each photo with its "
                        "faces drawn, as overlays-<time>/<photo>.png")
    parser.add_argument("--no-detect", action="store_true", help="every photo is one face (the "
                        "whole photo is the crop), as for 96x96 face crops")
    parser.add_argument("--no-rotate", dest="rotations", action="store_false",
                        help="do not look for turned faces when no upright face is found")
    parser.add_argument("--no-refine", dest="refine", action="store_false", default=REFINE,
                        help=f"predict once on the detector's crop (default: {REFINE_PASSES} more passes, "
                             "each re-cropped from the keypoints)")
    parser.add_argument("--no-flip-tta", dest="flip_tta", action="store_false", default=FLIP_TTA,
                        help="one prediction per crop, not the mean with the mirrored crop's on the last pass")
    parser.add_argument("--no-smooth", dest="smooth", action="store_false",
                        help="videos: raw keypoints per frame, no One Euro smoothing")
    parser.add_argument("--low-confidence", type=cli.fraction, default=None, metavar="BAR",
                        help="faces below this confidence are searched again and marked low (default: the "
                             "model's own bar, chosen when train.py trained it; "
                             f"{LOW_CONFIDENCE} for a model that has none; docs/predict.md, \"Confidence\")")
    parser.add_argument("--workers", type=cli.positive_int, default=None,
                        help="processes for a folder (default: one per core for 16 photos or more)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    if args.model is not None and Path(args.model).suffix.lower() not in (".keras", ".onnx"):
        raise cli.UsageError(f"--model {args.model}: must be a .keras or .onnx file")
    if args.faces is not None and not Path(args.faces).is_dir():
        raise cli.InputError(f"--faces {args.faces}: " + ("not a folder (give a photo as a PATH)"
                             if Path(args.faces).exists() else "no such folder"))
    model = load_model(args.model)              # a missing or broken model: before anything is written
    paths = list(args.paths) + ([args.faces] if args.faces else [])
    if not paths and args.camera is None:
        folder = DEFAULT_FACES_DIR
        if not folder.is_dir() or not find_photos(folder, videos=True):
            demo = folder / "demo"
            print(f"No photos in {folder}/: running on sample photos copied into {demo}/ "
                  f"(put yours in {folder}/<person>/*.jpg)")
            if not write_demo_photos(demo):
                raise cli.InputError("no sample photos available (pip install scikit-image matplotlib)")
        paths = [str(folder)]
    if args.out is not None:
        if not args.out.strip():
            raise cli.UsageError("--out '': an empty folder name (leave the option out for the default)")
        out = Path(args.out)
    elif paths and Path(paths[0]).is_dir():
        out = Path(paths[0])
    elif paths and (Path(paths[0]).exists() or Path(paths[0]).is_symlink()):
        out = Path(paths[0]).parent
    elif paths and glob.has_magic(paths[0]) and (matches := glob_inputs(paths[0])):
        out = matches[0].parent                 # a pattern: beside its first photo, as for a photo
    else:
        out = Path(".")
    empty, unreadable = [], []
    items = expand_inputs(paths, out, empty, unreadable) if paths else []
    kinds = " ".join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))
    if paths and not items and args.camera is None:
        raise cli.InputError(f"{', '.join(paths)}: no photos or videos to read ({kinds})" + "".join(
            f"; {error.filename}: cannot list this folder ({error.strerror or error})" for error in unreadable[:1]))
    for folder in empty:
        print(f"note: {folder}: no photos or videos in this folder ({kinds})", file=sys.stderr)
    for error in unreadable:
        print(f"note: {error.filename}: cannot list this folder ({error.strerror or error}); "
              "its photos are left out", file=sys.stderr)
    if out.exists() and not out.is_dir():
        raise cli.UsageError(f"--out {out}: is a file; expected a folder for the outputs")
    made = [folder for folder in [out, *out.absolute().parents] if not folder.exists()]
    cli.writable_folder(out)
    try:
        return _report(args, items, out, model)
    except BaseException:
        for folder in made:                 # refused before anything was written: leave no folders
            try:
                folder.rmdir()              # only if empty
            except OSError:
                break
        raise


def _report(args, items, out, model):
    """main's work once the inputs and --out are checked: the run, the camera, the summary."""
    if args.camera is not None:                 # before any work: is there such a camera?
        capture, _ = open_capture(args.camera)
        opened = capture is not None and capture.isOpened()
        if capture is not None:
            capture.release()
        if not opened:
            raise cli.InputError(f"--camera {args.camera}: no camera OpenCV can open with that index")
    args.low_confidence = bar_of(model, args.low_confidence)     # for the notes below and the camera
    if args.model is not None:                  # a model of the user's: does the bar suit it?
        above = no_face_confidence(model)
        if above >= args.low_confidence:
            print(f"note: {args.model} gives crops with no face in them (noise, flat grey) a confidence up to "
                  f"{above:.2f}, not under the confidence bar {args.low_confidence:g}: such crops could be ok "
                  "rows; give it its own bar with --low-confidence (docs/predict.md, \"Confidence\", says how "
                  "to measure it)", file=sys.stderr)
    started = time.perf_counter()
    summary = run(items, out, model, n_plot=args.n_plot, detect=not args.no_detect, refine=args.refine,
                  flip_tta=args.flip_tta, rotations=args.rotations, plot=not args.no_plot,
                  overlays=args.overlays, smooth=args.smooth, workers=args.workers,
                  progress=not args.no_progress, max_frames=args.max_frames, low_confidence=args.low_confidence)
    if args.camera is not None:
        writer, stamp = new_csv(out, "camera", also=("camera-{}.mp4",))
        try:
            options = Options(model, not args.no_detect, args.refine, args.flip_tta, args.rotations,
                              low_confidence=args.low_confidence)
            n, _ = process_video(args.camera, f"camera:{args.camera}", "", options, writer,
                                 out / f"camera-{stamp}.mp4", smooth=args.smooth, max_frames=args.max_frames)
        finally:
            writer.close()
        print(f"camera {args.camera}: {n} frames; wrote {writer.path}")
    seconds = time.perf_counter() - started
    low = f" ({summary.low_faces} below the confidence bar: status low)" if summary.low_faces else ""
    print(f"{_count(summary.photos, 'photo')}: {_count(summary.faces, 'face')}{low}, {summary.no_face} without a "
          f"face, {summary.unreadable} unreadable" + (f"; {_count(summary.videos, 'video')}, "
                                                     f"{_count(summary.video_frames, 'frame')}"
                                                     if summary.videos else "") + f" ({seconds:.1f} s)")
    if summary.faces >= LOW_SHARE_MIN_FACES and summary.low_faces > LOW_SHARE * summary.faces:
        print(f"note: {summary.low_faces} of {summary.faces} faces are below the confidence bar "
              f"{args.low_confidence:g}, so each was searched again (slower) and is marked low: the model "
              "is unsure of them (train.py says when a model cannot tell faces from crops without one), or "
              "the bar is too high for it (--low-confidence; docs/predict.md, \"Confidence\")", file=sys.stderr)
    print(f"wrote {summary.csv}")
    for plot in summary.plots:
        print(f"wrote {plot}")
    if summary.overlays:
        print(f"wrote {summary.overlays}/")
    if items and summary.unreadable == summary.photos + summary.videos:
        what = f"none of the {len(items)} inputs could" if len(items) > 1 else "the input could not"
        print(f"error: {what} be read (the CSV's status column says why)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    cli.run(main)
