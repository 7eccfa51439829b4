"""predict.py on the pictures a class has, not only well-framed photos: faces cut by the picture's
edge, pictures with no face, two faces side by side, a video whose face leaves the picture.

    python bench/open_world.py [--faces ../shared/data/cvnd_youtube_faces] [--model PATH]
                               [--kinds edge,no-face,group,whole,video] [--limit N]

Every picture is made from the held-out people of the person split the models are trained with
(bench/predict_speed.held_out_photos: train.split_validation(2820, 0.2, 0, people)), with the
truth from their 68 landmarks (input_data.keypoints_from_68), and written to a temporary folder
(nothing in the repository):

  edge: top     the picture's top edge cuts the forehead: between the highest of the 15 keypoints
                and the top of the face's Kaggle frame (input_data.frame_from_68), 5-50% of the eye
                distance above the keypoints; the other three edges as in the photo
  edge: bottom  the bottom edge 5-40% of the eye distance below the lower lip, above the chin
  edge: left / right  a side edge 5-30% of the eye distance outside the outermost keypoint
                (all 15 keypoints stay inside the picture in every edge case)
  no face       scikit-image's sample pictures that hold no face (scikit-image ships them), noise
                and generated textures (stripes, checkers, blurred noise, gradients)
  group         two photos of different people side by side, scaled to one height
  whole         the photos as they are (the pictures predict_accuracy.py measures)
  video         held-out photos as short videos in which the head moves up and out of the top
                edge (the picture keeps its size): 12 whole frames, then 28 frames moving out

Each picture goes through predict.py's own path for a folder (predict.process_photos, the CSV
rows it writes; one process, one thread) and each video through predict.process_video. A row
with keypoints is right when the mean distance of its 15 keypoints to a true face's is at most
25% of that face's eye distance; any row on a no-face picture is wrong. Printed per kind: faces
found (a true face with a right row, any status), found as `ok`, `ok` rows that are wrong, rows
by status, repeated rows of one face, the mean error of the right rows (% of the eye distance)
and the time per picture (video: per frame, and per frame with the face partly or wholly out).

The shipped model saw every CVND person in training: its keypoint errors here are optimistic
(bench/predict_accuracy.py measures them with a model trained on the training people only); the
detection figures (found, wrong `ok` rows, time) do not depend on that.
"""
import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402

import cli  # noqa: E402
import input_data  # noqa: E402
import predict  # noqa: E402
from predict_speed import held_out_photos  # noqa: E402

DEFAULT_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "cvnd_youtube_faces"
KINDS = ("edge", "no-face", "group", "whole", "video")
RIGHT = 0.25                  # a row within this mean error (x eye distance) of a true face is right
EDGE_COUNTS = {"top": 120, "bottom": 120, "left": 60, "right": 60}
GROUPS = 150
VIDEOS = 6
VIDEO_STILL, VIDEO_MOVING = 12, 28
# scikit-image's sample pictures without a face (astronaut, camera and the GIF show people).
NO_FACE_SAMPLES = ("brick", "cell", "chelsea", "checkerboard", "clock", "coffee", "coins", "colorwheel",
                   "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo",
                   "microaneurysms", "moon", "page", "retina", "rocket", "text")


class Picture:
    def __init__(self, kind, name, gray, truths):
        self.kind, self.name, self.gray, self.truths = kind, name, gray, truths    # truths: [(15, 2)]


def labelled_photos(faces_dir):
    """[(name, gray uint8, 68 points)] of the held-out people's photos, in the CSV's order."""
    faces_dir = Path(faces_dir)
    with open(faces_dir / "training_frames_keypoints.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    points = {row[0]: np.array([float(v) for v in row[1:]]).reshape(68, 2) for row in rows}
    return [(path.name, input_data.read_gray(path, exif=False), points[path.name])
            for path, _ in held_out_photos(faces_dir)]


def edge_cut(gray, points68, edge, rng):
    """(picture, 15 true keypoints in it) with `edge` cutting the face (see the docstring), or
    None when this photo leaves no room for such a cut."""
    keypoints = input_data.keypoints_from_68(points68)
    frame = input_data.frame_from_68(points68)
    eyes = np.linalg.norm(keypoints[0] - keypoints[1])
    low, high = keypoints.min(axis=0), keypoints.max(axis=0)
    height, width = gray.shape
    if edge == "top":
        cut = int(np.floor(low[1] - rng.uniform(0.05, 0.5) * eyes))
        if not frame.cy - frame.side / 2 < cut < low[1] - 1:
            return None
        return gray[cut:], keypoints - [0, cut]
    if edge == "bottom":
        cut = int(np.ceil(high[1] + rng.uniform(0.05, 0.4) * eyes))
        if not high[1] + 1 < cut < min(points68[8, 1], height):
            return None
        return gray[:cut], keypoints
    if edge == "left":
        cut = int(np.floor(low[0] - rng.uniform(0.05, 0.3) * eyes))
        if not max(frame.cx - frame.side / 2, 1) < cut < low[0] - 1:
            return None
        return gray[:, cut:], keypoints - [cut, 0]
    cut = int(np.ceil(high[0] + rng.uniform(0.05, 0.3) * eyes))
    if not high[0] + 1 < cut < min(frame.cx + frame.side / 2, width - 1):
        return None
    return gray[:, :cut], keypoints


def edge_pictures(photos, rng, counts=EDGE_COUNTS):
    pictures = []
    for edge, count in counts.items():
        for k in rng.permutation(len(photos)):
            if sum(p.kind == f"edge: {edge}" for p in pictures) == count:
                break
            name, gray, points = photos[k]
            cut = edge_cut(gray, points, edge, rng)
            if cut is not None:
                pictures.append(Picture(f"edge: {edge}", f"{edge}-{name}", np.ascontiguousarray(cut[0]), [cut[1]]))
    return pictures


def textures(rng, size=256):
    """Generated pictures with no face: noise, blurred noise, stripes, checkers, a gradient."""
    import cv2
    y, x = np.mgrid[:size, :size]
    out = {"uniform noise": rng.integers(0, 256, (size, size)),
           "gaussian noise": np.clip(rng.normal(128, 50, (size, size)), 0, 255),
           "gradient": (x + y) * 255 / (2 * size - 2)}
    for sigma in (2, 6, 15):
        blurred = cv2.GaussianBlur(rng.normal(0, 1, (size, size)), (0, 0), sigma)
        out[f"blurred noise {sigma}"] = 128 + 60 * blurred / blurred.std()
    for period in (8, 24, 64):
        out[f"stripes {period}"] = 128 + 100 * np.sin(2 * np.pi * x / period)
        out[f"checkers {period}"] = 255 * (((x // period) + (y // period)) % 2)
    return {name: np.clip(image, 0, 255).astype(np.uint8) for name, image in out.items()}


def no_face_pictures(rng):
    import skimage.data
    pictures = []
    for name in NO_FACE_SAMPLES:
        try:
            image = getattr(skimage.data, name)()
        except Exception:                           # a sample this scikit-image cannot load offline
            continue
        gray = image if image.ndim == 2 else np.asarray(
            np.round(image[..., :3] @ [0.299, 0.587, 0.114]), np.float64)
        if gray.dtype == bool or gray.max() <= 1:
            gray = gray * 255.0
        pictures.append(Picture("no face", f"skimage-{name}", np.clip(gray, 0, 255).astype(np.uint8), []))
    for name, image in textures(rng).items():
        pictures.append(Picture("no face", name.replace(" ", "-"), image, []))
    return pictures


def group_pictures(photos, rng, count=GROUPS):
    """Two photos of different people side by side, each scaled to the taller one's height."""
    import cv2
    pictures = []
    while len(pictures) < count:
        a, b = rng.choice(len(photos), 2, replace=False)
        (name_a, gray_a, points_a), (name_b, gray_b, points_b) = photos[a], photos[b]
        if input_data.person_of(name_a) == input_data.person_of(name_b):
            continue
        height = max(gray_a.shape[0], gray_b.shape[0])
        parts, truths, left = [], [], 0
        for gray, points in ((gray_a, points_a), (gray_b, points_b)):
            scale = height / gray.shape[0]
            resized = cv2.resize(gray, (round(gray.shape[1] * scale), height), interpolation=cv2.INTER_LINEAR)
            truths.append(input_data.keypoints_from_68((points + 0.5) * scale - 0.5) + [left, 0])
            parts.append(resized)
            left += resized.shape[1]
        pictures.append(Picture("group", f"pair-{Path(name_a).stem}-{Path(name_b).stem}",
                                np.hstack(parts), truths))
    return pictures


def video_frames(gray, points68):
    """A video of one photo: VIDEO_STILL frames as it is, then VIDEO_MOVING frames in which its
    content moves up until the face's lowest keypoint is above the top edge (the bottom filled
    with the last row). Returns (frames, the 15 true keypoints per frame)."""
    keypoints = input_data.keypoints_from_68(points68)
    end = keypoints[:, 1].max() + 2
    shifts = [0.0] * VIDEO_STILL + list(np.linspace(0, end, VIDEO_MOVING + 1)[1:])
    frames = []
    for shift in shifts:
        s = int(round(shift))
        frames.append(np.vstack([gray[s:], np.repeat(gray[-1:], s, axis=0)]) if s else gray)
    return frames, [keypoints - [0, round(s)] for s in shifts]


def mean_errors(keypoints, truths):
    """Mean keypoint distance of one row to each true face, in units of that face's eye distance."""
    return [float(np.linalg.norm(keypoints - truth, axis=1).mean() / np.linalg.norm(truth[0] - truth[1]))
            for truth in truths]


def row_keypoints(row):
    if not row.get(input_data.COLUMNS[0]):
        return None
    return np.array([float(row[c]) for c in input_data.COLUMNS]).reshape(15, 2)


class Tally:
    """The figures of one kind of picture."""

    def __init__(self):
        self.pictures = self.truths = self.found = self.found_ok = self.ok = self.ok_wrong = 0
        self.repeated = 0
        self.statuses = {}
        self.right_errors = []
        self.seconds = 0.0

    def add(self, rows, truths):
        self.pictures += 1
        self.truths += len(truths)
        hits = [[] for _ in truths]                   # per true face: the statuses of its right rows
        for row in rows:
            status = row["status"].split(":")[0]
            self.statuses[status] = self.statuses.get(status, 0) + 1
            keypoints = row_keypoints(row)
            if keypoints is None:
                continue
            errors = mean_errors(keypoints, truths)
            best = int(np.argmin(errors)) if errors else None
            right = best is not None and errors[best] <= RIGHT
            if status == "ok":
                self.ok += 1
                self.ok_wrong += not right
            if right:
                hits[best].append(status)
                self.right_errors.append(errors[best])
        self.found += sum(bool(h) for h in hits)
        self.found_ok += sum("ok" in h for h in hits)
        self.repeated += sum(max(0, len(h) - 1) for h in hits)

    def line(self, name, unit="picture"):
        found = f"{100 * self.found / self.truths:6.1f}" if self.truths else "     -"
        found_ok = f"{100 * self.found_ok / self.truths:6.1f}" if self.truths else "     -"
        error = f"{100 * np.mean(self.right_errors):6.2f}" if self.right_errors else "     -"
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        return (f"  {name:<16}{self.pictures:>6}{self.truths:>6}{found:>8}{found_ok:>8}"
                f"{self.ok_wrong:>5} of {self.ok:<5}{self.repeated:>5}{error:>8}"
                f"{1000 * self.seconds / max(self.pictures, 1):9.1f} ms/{unit}   {statuses}")


HEADER = (f"  {'kind':<16}{'pics':>6}{'faces':>6}{'found%':>8}{'as ok%':>8}{'ok rows wrong':>14}"
          f"{'rep.':>5}{'err %':>8}{'time':>12}")


def run_pictures(pictures, folder, options):
    """{kind: Tally} for the pictures through predict.process_photos, in groups as a folder run."""
    import cv2
    tallies = {}
    by_kind = {}
    for picture in pictures:
        by_kind.setdefault(picture.kind, []).append(picture)
    for kind, group in by_kind.items():
        jobs = []
        for picture in group:
            path = folder / f"{picture.name}.png"
            cv2.imwrite(str(path), picture.gray)
            jobs.append((predict.Item(path, path.name, ""), None))
        tally = tallies[kind] = Tally()
        for first in range(0, len(jobs), predict.PHOTO_GROUP):
            started = time.perf_counter()
            results = predict.process_photos(jobs[first:first + predict.PHOTO_GROUP], options)
            tally.seconds += time.perf_counter() - started
            for picture, result in zip(group[first:first + predict.PHOTO_GROUP], results):
                tally.add(result.rows, picture.truths)
    return tallies


class Rows(list):
    """Collects process_video's CSV rows (its csv_writer)."""

    def write(self, rows):
        self.extend(rows)


def run_videos(photos, rng, folder, options):
    """(Tally of the frames where the face is whole, Tally of those where it is partly or wholly
    out of the picture) over VIDEOS videos made by video_frames."""
    import cv2
    whole, out = Tally(), Tally()
    for k in rng.choice(len(photos), VIDEOS, replace=False):
        name, gray, points = photos[k]
        frames, truths = video_frames(gray, points)
        path = folder / f"video-{Path(name).stem}.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (gray.shape[1], gray.shape[0]))
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        writer.release()
        rows, times = Rows(), []

        class Timer:                                   # the time of each frame, as process_video reads on
            last = time.perf_counter()

            @staticmethod
            def update(_):
                now = time.perf_counter()
                times.append(now - Timer.last)
                Timer.last = now
        Timer.last = time.perf_counter()
        predict.process_video(str(path), path.name, "", options, rows, progress=Timer)
        by_frame = {}
        for row in rows:
            by_frame.setdefault(int(row["frame"]), []).append(row)
        for index, truth in enumerate(truths):
            inside = (truth >= 0).all() and (truth[:, 1] < gray.shape[0]).all()
            tally = whole if inside else out
            # a face wholly above the picture has no truth to be right about
            tally.add(by_frame.get(index, []), [truth] if (truth[:, 1] >= 0).any() else [])
            tally.seconds += times[index] if index < len(times) else 0.0
    return whole, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", default=str(DEFAULT_FACES), help="the CVND faces folder")
    parser.add_argument("--model", default=None, help="a .keras or .onnx model (default: the shipped one)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"a comma list of the kinds of picture to measure (default: {','.join(KINDS)})")
    parser.add_argument("--limit", type=cli.positive_int, default=None,
                        help="at most this many pictures of each kind (a quick look)")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0, help="which cuts, pairs and videos")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise cli.UsageError(f"--kinds: {', '.join(unknown) or args.kinds!r} not one of {', '.join(KINDS)}")
    if not (Path(args.faces) / "training_frames_keypoints.csv").is_file():
        raise cli.InputError(f"{args.faces}: no training_frames_keypoints.csv (the real faces live beside the repository)")
    import cv2
    cv2.setNumThreads(1)
    options = predict.Options(model=predict.load_model(args.model, threads=1), sheet=False)
    photos = labelled_photos(args.faces)
    rng = np.random.default_rng(args.seed)
    pictures = []
    if "edge" in kinds:
        pictures += edge_pictures(photos, rng)
    if "no-face" in kinds:
        pictures += no_face_pictures(rng)
    if "group" in kinds:
        pictures += group_pictures(photos, rng)
    if "whole" in kinds:
        pictures += [Picture("whole", Path(name).stem, gray, [input_data.keypoints_from_68(points)])
                     for name, gray, points in photos]
    if args.limit:
        kept = {}
        for picture in pictures:
            kept.setdefault(picture.kind, [])
            if len(kept[picture.kind]) < args.limit:
                kept[picture.kind].append(picture)
        pictures = [p for group in kept.values() for p in group]
    print(f"{len(photos)} held-out photos; model {args.model or 'shipped'} (confidence bar {predict.bar_of(options.model):g}); "
          f"detector {predict.detector_settings()}")
    print(HEADER)
    with tempfile.TemporaryDirectory(prefix="open-world-") as folder:
        tallies = run_pictures(pictures, Path(folder), options)
        for kind, tally in tallies.items():
            print(tally.line(kind))
        edges = [t for k, t in tallies.items() if k.startswith("edge")]
        if edges:
            total = Tally()
            for t in edges:
                for field in ("pictures", "truths", "found", "found_ok", "ok", "ok_wrong", "repeated", "seconds"):
                    setattr(total, field, getattr(total, field) + getattr(t, field))
                total.right_errors += t.right_errors
                for status, n in t.statuses.items():
                    total.statuses[status] = total.statuses.get(status, 0) + n
            print(total.line("edge: all"))
        if "video" in kinds:
            whole, out = run_videos(photos, rng, Path(folder), options)
            print(whole.line("video: whole", "frame"))
            print(out.line("video: leaving", "frame"))
    print(f"found: a true face with a row whose keypoints are within {RIGHT:.0%} of its eye distance "
          "(mean); ok rows wrong: `ok` rows that are no true face; rep.: extra right rows of one face; "
          "err: mean error of the right rows, % of the eye distance")


if __name__ == "__main__":
    cli.run(main)
