"""A group of photos start to end: read, find the faces, predict, draw -> PhotoResult, never
raising for a bad photo. What each worker process of a folder run does (the worker_* hooks)."""
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

import cli
from input_data import IMAGE_SIZE, Frame
from prediction.detection import ROLLS, is_face_crop, whole_frame
from prediction.images import PhotoError, read_scaled, to_photo_pixels
from prediction.keypoints import find_and_predict_many, predict_batch
from prediction.options import NO_FACE, OK, UNREADABLE
from prediction.outputs import csv_rows, is_low, overlay_name, write_overlay
from prediction.runtime import ModelError, load_model, with_bar


class PhotoResult(NamedTuple):
    rows: list
    sheet: list                            # [(crop, keypoints in the crop frame, title, confidence, low)]
    status: str                            # OK, NO_FACE or UNREADABLE (prediction.options)
    faces: int
    message: Optional[str] = None          # a problem to print (an overlay not written)
    low_faces: int = 0                     # faces below the confidence bar


def process_photo(item, options, overlay_as=None):
    """Read, find, predict and (if asked) draw one photo -> PhotoResult. Never raises for a bad
    photo: it becomes an `unreadable: <reason>` row."""
    return process_photos([(item, overlay_as)], options)[0]


def _unreadable(item, error):
    path, name, person = item
    if isinstance(error, PhotoError):
        reason = str(error).removeprefix(f"{path}: ")
    else:                                            # a photo OpenCV cannot handle, say
        reason = f"{type(error).__name__}: {cli.one_line(error)}"
    return PhotoResult(csv_rows(name, person, status=f"{UNREADABLE}: {reason}"), [], UNREADABLE, 0)


def process_photos(jobs, options):
    """process_photo for a group of (item, overlay name or None): the photos are read one by
    one, their upright faces predicted together (find_and_predict_many); a photo that fails is
    an `unreadable` row and does not take the others with it."""
    import cv2
    options = with_bar(options)
    results, read, shrink = [None] * len(jobs), [], {}
    for k, (item, _) in enumerate(jobs):
        try:
            gray, rgb, shrink[k] = read_scaled(item.path, colour=options.overlay_dir is not None)
            read.append((k, gray, rgb))
        except (PhotoError, MemoryError, ValueError) as error:
            results[k] = _unreadable(item, error)
    crops = [(k, g, c) for k, g, c in read if not options.detect or is_face_crop(g)]
    photos = [(k, g, c) for k, g, c in read if options.detect and not is_face_crop(g)]
    found = {}
    try:
        if crops:
            faces = predict_batch([g for _, g, _ in crops], options.model, [[whole_frame(g)] for _, g, _ in crops],
                                  refine=False, flip_tta=options.flip_tta)
            found.update((k, f) for (k, _, _), f in zip(crops, faces))
        if photos:
            faces = find_and_predict_many([g for _, g, _ in photos], options.model, options.refine,
                                          options.flip_tta, ROLLS if options.rotations else (),
                                          options.low_confidence)
            found.update((k, f) for (k, _, _), f in zip(photos, faces))
    except (MemoryError, ValueError, cv2.error) as error:       # a photo OpenCV cannot handle
        if isinstance(error, ModelError):
            raise
        if len(read) == 1:
            results[read[0][0]] = _unreadable(jobs[read[0][0]][0], error)
            return results
        for k, _, _ in read:                         # which photo was it: one at a time
            results[k] = process_photos([jobs[k]], options)[0]
        return results
    for k, gray, rgb in read:
        (path, name, person), overlay_as = jobs[k]
        faces = found[k]
        message = None
        if options.overlay_dir is not None:
            try:
                write_overlay(Path(options.overlay_dir) / (overlay_as or overlay_name(name)),
                              rgb if rgb is not None else gray, faces, options.low_confidence)
            except OSError as error:                 # an overlay never stops the run
                message = f"{name}: overlay not written ({cli.describe_os_error(error)})"
            except cv2.error as error:
                message = f"{name}: overlay not written (OpenCV: {cli.one_line(error)[:200]})"
        sheet = []
        if options.sheet:
            for index, face in enumerate(faces):
                sheet.append((face.crop, _crop_points(face), name + (f" #{index}" if index else ""),
                              face.confidence, is_low(face, options.low_confidence)))
        status = OK if faces else NO_FACE
        in_photo = faces if shrink[k] == 1 else [in_photo_pixels(face, shrink[k]) for face in faces]
        rows = csv_rows(name, person, in_photo, low_confidence=options.low_confidence)   # low faces: LOW rows
        results[k] = PhotoResult(rows, sheet, status, len(faces), message,
                                 sum(face.confidence < options.low_confidence or face.unsure for face in faces))
    return results


def in_photo_pixels(face, shrink):
    """A face found in a photo read shrunk (images.read_scaled) in the photo's own pixels."""
    cx, cy = to_photo_pixels([face.frame.cx, face.frame.cy], shrink)
    box = face.box and (*to_photo_pixels(face.box[:2], shrink), face.box[2] / shrink, face.box[3] / shrink)
    return face._replace(frame=Frame(float(cx), float(cy), face.frame.side / shrink), box=box,
                         keypoints=to_photo_pixels(face.keypoints, shrink))


def _crop_points(face):
    """A face's keypoints in its 96x96 crop's pixels (undoing the roll)."""
    view_points = face.keypoints - [face.frame.cx, face.frame.cy]
    radians = np.deg2rad(face.roll)
    cos, sin = np.cos(radians), np.sin(radians)
    upright = view_points @ np.array([[cos, -sin], [sin, cos]]).T   # turn back clockwise by roll
    return (upright + face.frame.side / 2) * IMAGE_SIZE / face.frame.side


_worker = {}


def worker_init(options):
    """A worker process's start: its own single-threaded predictor; the run's other choices
    (the confidence bar among them) come in `options`."""
    import cv2
    # One process per core already: threads would only contend. A forked worker has it from the
    # parent (predict.run sets it before the pool): calling setNumThreads in a child forked from a
    # process whose OpenCV thread pool has run waits forever on that pool's lock.
    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)
    _worker["options"] = options._replace(model=load_model(options.model, threads=1))


def worker_run(jobs):
    """process_photos in a worker process (worker_init ran first)."""
    return process_photos(jobs, _worker["options"])
