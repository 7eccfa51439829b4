"""How long `python predict.py` takes as a whole process: one photo, and a folder of photos.

    python bench/predict_speed.py [--faces ../shared/data/cvnd_youtube_faces] [--repeats 5]
                                  [--peers /work/venv-peers/bin/python] [--baseline /path/to/old/checkout]

The photos: the 573 frames of the 57 held-out people of the person split the models use
(train.split_validation(2820, 0.2, 0, people), as bench/predict_accuracy.py; 72-494 px JPEGs),
linked into a work folder as <person>/<file> (outside the repository, nothing copied). Each figure
is the wall time of a fresh process, start to exit, outputs written (CSV and contact sheets, the
defaults), the median of --repeats runs (the commands take turns, run after run, after one untimed
run of each; Python caches compiled modules, as it does by default):

  one photo    `python predict.py PHOTO --out TMP` (the first held-out photo);
  folder       `python predict.py FOLDER --out TMP`, divided by the number of photos.

--peers: a Python with mediapipe installed (a separate venv; never the project's) runs
MediaPipe's face mesh the same way (bench/predict_speed.py's own _mediapipe_script: read, detect,
468 landmarks, one CSV), in the same run, for the ratio. --baseline: a checkout of an older
predict.py (e.g. `git worktree add /tmp/old <commit>`) timed the same way (its old CLI: --faces
DIR for a folder). The machine may be shared: the load average is printed; quote medians.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402

import cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FACES = ROOT.parent / "shared" / "data" / "cvnd_youtube_faces"


def held_out_photos(faces):
    """The held-out people's photos as (path, person), without importing TensorFlow (the split
    is train.split_validation's: numpy only, repeated here to keep this benchmark light)."""
    import csv
    import input_data
    labels = Path(faces) / "training_frames_keypoints.csv"
    if not labels.is_file():
        raise cli.InputError(f"{labels} not found (the real faces live beside the repository)")
    with open(labels, newline="") as f:
        files = [row[0] for row in list(csv.reader(f))[1:]]
    people = np.array([input_data.person_of(name) for name in files])
    rng = np.random.default_rng(0)
    names = np.unique(people)
    rng.shuffle(names)
    counts = dict(zip(*np.unique(people, return_counts=True)))
    chosen, total = [], 0
    for name in names:
        if total >= 0.2 * len(files):
            break
        chosen.append(name)
        total += counts[name]
    held = np.isin(people, chosen)
    return [(Path(faces) / "training" / files[i], people[i]) for i in np.flatnonzero(held)]


def link_folder(photos, folder):
    """<folder>/<person>/<file> symlinks to the photos (a copy where links are not allowed)."""
    for path, person in photos:
        target = folder / person / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.symlink_to(path.resolve())
        except OSError:
            shutil.copyfile(path, target)
    return folder


def wall(command, repeats, env=None):
    """Median wall seconds of running `command` (a list) `repeats` times; output kept quiet."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, command))} failed ({done.returncode}): "
                               f"{done.stderr.decode(errors='replace')[-500:]}")
    return float(np.median(times)), times


_mediapipe_script = r'''
import csv, sys
from pathlib import Path
import cv2, mediapipe as mp
paths = [p for p in sorted(Path(sys.argv[1]).rglob("*")) if p.suffix.lower() in (".jpg", ".png")] \
    if Path(sys.argv[1]).is_dir() else [Path(sys.argv[1])]
with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=4) as mesh, \
        open(Path(sys.argv[2]) / "mediapipe.csv", "w", newline="") as out:
    writer = csv.writer(out)
    for path in paths:
        image = cv2.imread(str(path))
        result = mesh.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        for face in result.multi_face_landmarks or []:
            writer.writerow([path.name] + [f"{p.x * image.shape[1]:.2f}" for p in face.landmark[:15]])
'''


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", default=str(DEFAULT_FACES), help="the CVND faces folder")
    parser.add_argument("--repeats", type=cli.positive_int, default=5, help="runs per figure; the median counts")
    parser.add_argument("--photos", type=cli.positive_int, default=None, help="use only the first N held-out photos")
    parser.add_argument("--peers", default=None, help="a Python with mediapipe installed, timed the same way")
    parser.add_argument("--baseline", default=None, help="a checkout of an older predict.py, timed the same way")
    parser.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.peers and not Path(args.peers).is_file():
        raise cli.UsageError(f"--peers {args.peers}: no such Python")
    if args.baseline and not (Path(args.baseline) / "predict.py").is_file():
        raise cli.UsageError(f"--baseline {args.baseline}: no predict.py there")

    photos = held_out_photos(args.faces)[:args.photos]
    work = Path(args.work or tempfile.mkdtemp(prefix="predict-speed-"))
    cli.writable_folder(work)
    folder = link_folder(photos, work / "photos")
    out = work / "out"
    one = str(photos[0][0])
    python = sys.executable
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{len(photos)} held-out photos in {folder}; {os.cpu_count()} cores, load average "
          f"{load:.1f} at the start; median of {args.repeats} runs, whole process, outputs written")

    single = work / "single"                       # the old CLI reads folders only
    single.mkdir(exist_ok=True)
    shutil.copyfile(one, single / Path(one).name)
    commands = [("predict.py", [python, str(ROOT / "predict.py"), one, "--out", str(out), "--no-progress"],
                 [python, str(ROOT / "predict.py"), str(folder), "--out", str(out), "--no-progress"])]
    if args.baseline:
        old = str(Path(args.baseline) / "predict.py")
        commands.append(("predict.py (baseline)", [python, old, "--faces", str(single), "--no-progress"],
                         [python, old, "--faces", str(folder), "--no-progress"]))
    if args.peers:
        script = work / "mediapipe_run.py"
        script.write_text(_mediapipe_script)
        out.mkdir(exist_ok=True)
        commands.append(("MediaPipe face mesh", [args.peers, str(script), one, str(out)],
                         [args.peers, str(script), str(folder), str(out)]))
    # Python as a student runs it: compiled modules cached in __pycache__ (git-ignored; a machine
    # that sets PYTHONDONTWRITEBYTECODE recompiles the repository's modules, ~35 ms, every run),
    # and one untimed run of each command first, so that no figure counts the first compile or a
    # cold disk cache.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for _, photo_cmd, _ in commands:
        wall(photo_cmd, 1, env)
    # The commands take turns, run after run, so that a slow spell of a shared machine falls on
    # all of them alike; each figure is the median of its runs.
    times = {name: ([], []) for name, _, _ in commands}
    for _ in range(args.repeats):
        for name, photo_cmd, folder_cmd in commands:
            times[name][0].extend(wall(photo_cmd, 1, env)[1])
            times[name][1].extend(wall(folder_cmd, 1, env)[1])
    rows = []
    for name, _, _ in commands:
        one_all, folder_all = times[name]
        one_s, folder_s = float(np.median(one_all)), float(np.median(folder_all))
        rows.append((name, one_s, 1000 * folder_s / len(photos)))
        print(f"  {name}: one photo {one_s:.2f} s (runs {', '.join(f'{t:.2f}' for t in one_all)}); "
              f"{len(photos)} photos {folder_s:.2f} s = {1000 * folder_s / len(photos):.2f} ms per photo "
              f"(runs {', '.join(f'{t:.2f}' for t in folder_all)})")
    print(f"\n| whole process | {' | '.join(r[0] for r in rows)} |")
    print(f"|---|{'---:|' * len(rows)}")
    print(f"| one photo, start to exit | {' | '.join(f'{r[1]:.2f} s' for r in rows)} |")
    print(f"| {len(photos)} photos (72-494 px), per photo | {' | '.join(f'{r[2]:.1f} ms' for r in rows)} |")
    if len(rows) > 1:
        print("\n" + "; ".join(f"{rows[0][0]} / {r[0]}: one photo {rows[0][1] / r[1]:.2f}x the time, "
                               f"a folder {rows[0][2] / r[2]:.2f}x" for r in rows[1:]))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    cli.run(main)
