"""Videos and the camera: keypoints frame by frame, each face followed from the previous frame's
keypoints (detection only when a face is lost), smoothed by the One Euro filter; an annotated
copy of the video."""
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

import cli
from prediction.detection import ROLLS, blazeface_faces, box_to_frame, frame_from_keypoints
from prediction.images import apply, upright_view
from prediction.keypoints import merge_same, predict_batch, predict_keypoints
from prediction.outputs import csv_rows, draw_overlay
from prediction.runtime import with_bar


class OneEuro:
    """The One Euro filter (Casiez, Roussel and Vogel, CHI 2012) on an array of values: an
    exponential smoother whose cut-off frequency rises with speed, so a still face does not
    jitter and a moving one does not lag. min_cutoff (Hz) sets the smoothing at rest, beta how
    fast it opens up with speed."""

    def __init__(self, min_cutoff=1.0, beta=0.05, d_cutoff=1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.value = self.speed = None

    @staticmethod
    def _alpha(cutoff, dt):
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, value, dt):
        value = np.asarray(value, np.float64)
        if self.value is None:
            self.value, self.speed = value, np.zeros_like(value)
            return value
        speed = (value - self.value) / dt
        a = self._alpha(self.d_cutoff, dt)
        self.speed = a * speed + (1 - a) * self.speed
        cutoff = self.min_cutoff + self.beta * np.abs(self.speed)
        a = self._alpha(cutoff, dt)
        self.value = a * value + (1 - a) * self.value
        return self.value


def _safe_video_writer(path, fps, size):
    """cv2.VideoWriter to an ASCII temporary name in the system's temporary folder (OpenCV's
    own path handling is not safe for every name); the caller moves it into place."""
    import cv2
    tmp = Path(tempfile.mkdtemp(prefix="fkd-video-")) / "annotated.mp4"
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        shutil.rmtree(tmp.parent, ignore_errors=True)
        raise OSError(f"{path}: OpenCV cannot write an mp4 video here")
    return writer, tmp


def open_capture(source):
    """cv2.VideoCapture of a camera index or a video file. A file whose name is not plain ASCII
    is opened through an ASCII-named link (OpenCV can crash on such names). Returns (capture,
    folder to remove afterwards or None)."""
    import cv2
    if isinstance(source, int):
        try:
            return cv2.VideoCapture(source), None
        except (cv2.error, OverflowError, SystemError):
            return None, None
    name, link_dir = str(source), None
    if not name.isascii():
        link_dir = tempfile.mkdtemp(prefix="fkd-video-")
        name = os.path.join(link_dir, "video" + Path(source).suffix.lower())
        os.symlink(os.path.abspath(source), name)
    try:
        return cv2.VideoCapture(name), link_dir
    except cv2.error:
        return None, link_dir


def process_video(source, name, person, options, csv_writer, annotated=None, smooth=True,
                  max_frames=None, progress=None):
    """Every frame of a video file (or a camera index) -> CSV rows (one per face per frame, or
    a no_face row) and, with annotated (a .mp4 path), a copy with the faces drawn. Returns
    (frames, frames with a face)."""
    import cv2
    options = with_bar(options)
    capture, link_dir = open_capture(source)
    if capture is None or not capture.isOpened():
        if link_dir:
            shutil.rmtree(link_dir, ignore_errors=True)
        raise cli.InputError(f"{name}: not a video OpenCV can read")
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and np.isfinite(fps) and 1 <= fps <= 1000 else 30.0
    writer = tmp = None
    tracks = []                  # [(keypoints in photo px, roll, OneEuro)] of the previous frame
    count = found = 0
    seen = False                 # a confident face was found (see below)
    try:
        while max_frames is None or count < max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
            faces = []
            if tracks:                           # follow the previous frame's faces
                rolls = [roll for _, roll, _ in tracks]
                frames = []
                for keypoints, roll, _ in tracks:
                    view = upright_view(gray, roll)
                    try:
                        frames.append(frame_from_keypoints(apply(view.matrix, keypoints)))
                    except ValueError:
                        frames = []
                        break
                if frames:
                    faces = predict_batch([gray], options.model, [frames], refine=options.refine,
                                          flip_tta=options.flip_tta, rolls=[rolls])[0]
                    faces = [f for f in faces if not f.confidence < options.low_confidence]
                    if len(faces) < len(tracks):
                        faces = []                 # a face was lost: detect afresh
            if not faces and seen:
                # Once a face was seen, a lost one is looked for by BlazeFace alone, without the
                # cascades, second chances and turned copies: a frame whose face is leaving the
                # picture costs what a normal one does. Faces below the bar are LOW rows, and
                # the next frame detects afresh rather than follow them.
                boxes = blazeface_faces(gray)
                if boxes:
                    faces = merge_same(predict_batch([gray], options.model, [[box_to_frame(b) for b in boxes]],
                                                     [boxes], refine=options.refine, flip_tta=options.flip_tta)[0])
                tracks = []
            elif not faces:
                faces = predict_keypoints(gray, options.model, refine=options.refine,
                                          flip_tta=options.flip_tta,
                                          rolls=ROLLS if options.rotations else (),
                                          low_confidence=options.low_confidence)
                tracks = []
                seen = any(not f.confidence < options.low_confidence for f in faces)
            new_tracks = []
            shown = []
            for index, face in enumerate(faces):
                points = face.keypoints
                old = tracks[index] if index < len(tracks) else None
                smoother = old[2] if old is not None else OneEuro()
                if smooth:
                    points = smoother(points, 1.0 / fps)
                shown.append(face._replace(keypoints=points))
                new_tracks.append((face.keypoints, face.roll, smoother))
            tracks = new_tracks if all(not f.confidence < options.low_confidence for f in faces) else []
            csv_writer.write(csv_rows(name, person, shown, frame=count, low_confidence=options.low_confidence))
            found += bool(shown)
            if annotated is not None:
                if writer is None:
                    writer, tmp = _safe_video_writer(annotated, fps, (bgr.shape[1], bgr.shape[0]))
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr.ndim == 3 else gray
                writer.write(draw_overlay(rgb, shown, options.low_confidence, max_side=None))
            count += 1
            if progress is not None:
                progress.update(1)
    except BaseException:
        if tmp is not None:
            if writer is not None:
                writer.release()
                writer = None
            shutil.rmtree(tmp.parent, ignore_errors=True)
        raise
    finally:
        capture.release()
        if link_dir:
            shutil.rmtree(link_dir, ignore_errors=True)
        if writer is not None:
            writer.release()
    if tmp is not None:
        shutil.move(tmp, annotated)
        shutil.rmtree(tmp.parent, ignore_errors=True)
    return count, found
