"""predict.py's inputs: PATH arguments (photos, videos, folders, glob patterns) -> Items, and
the sample photos a run without photos uses."""
import glob
import os
import re
import shutil
from pathlib import Path
from typing import NamedTuple

import cli
import input_data

IMAGE_EXTENSIONS = input_data.IMAGE_EXTENSIONS
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".webm", ".mkv", ".m4v"})

STAMP = r"\d{8}-\d{6}(?:_\d+)?"      # run() names its outputs <kind>-<date>-<time>[_n]
_OWN_FILE = re.compile(rf"(?:plot|prediction|camera)-{STAMP}(?:-\d+)?\.(?:jpg|png|csv|mp4)", re.I)
_OWN_FOLDER = re.compile(rf"overlays-{STAMP}", re.I)


def is_own_output(rel):
    """This script's outputs, wherever they were written (a photo's folder can be a person's):
    plot-<stamp>.jpg, prediction-<stamp>.csv, camera-<stamp>.*, anything under overlays-<stamp>/.
    A photo of yours named plot-twist.jpg is not one of them."""
    parts = Path(rel).parts
    return bool(parts) and (bool(_OWN_FILE.fullmatch(parts[-1]))
                            or any(_OWN_FOLDER.fullmatch(part) for part in parts[:-1]))


def _is_input_file(path):
    """A regular file, or a broken link (it becomes an `unreadable` row rather than vanishing);
    not a pipe or a device, which reading would block on."""
    return path.is_file() or (path.is_symlink() and not path.exists())


def find_photos(folder, videos=False, unreadable=None):
    """Every image (and with videos, video) under `folder` as sorted (path relative to folder,
    person) pairs; the person is the first sub-folder's name ("" for files directly in folder).
    Follows linked folders, each real folder once and none that holds `folder` (a link to a
    parent would read the whole parent); leaves out this script's own outputs and hidden files
    and folders. Folders that cannot be listed are appended to `unreadable` as OSErrors."""
    folder = Path(folder)
    kinds = IMAGE_EXTENSIONS | (VIDEO_EXTENSIONS if videos else frozenset())
    found, visited = [], set()
    top = os.path.join(os.path.realpath(folder), "")
    for root, dirs, files in os.walk(folder, followlinks=True, onerror=None if unreadable is None else unreadable.append):
        real = os.path.realpath(root)
        if real in visited or (top.startswith(os.path.join(real, "")) and real != top.rstrip(os.sep)):
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(root, name)
            rel = path.relative_to(folder)
            if (name.startswith(".") or path.suffix.lower() not in kinds or is_own_output(rel)
                    or not _is_input_file(path)):
                continue
            found.append((rel, rel.parts[0] if len(rel.parts) > 1 else ""))
    return sorted(found, key=lambda item: item[0].as_posix())


def glob_inputs(pattern):
    """The photos and videos a glob pattern matches, sorted. `**` does not follow linked folders
    (pathlib's rule), so a link to a parent cannot make it run forever."""
    parts = Path(pattern).parts
    first = next(k for k, part in enumerate(parts) if glob.has_magic(part))
    base, rest = Path(*parts[:first]) if first else Path("."), Path(*parts[first:]).as_posix()
    try:
        matches = list(base.glob(rest)) if base.is_dir() else []
    except (OSError, ValueError):
        matches = []
    kinds = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    return sorted(m for m in matches if m.suffix.lower() in kinds and _is_input_file(m)
                  and not is_own_output(m))


class Item(NamedTuple):
    """One input: its path, its name in the CSV, its person."""
    path: Path
    name: str
    person: str

    @property
    def is_video(self):
        return self.path.suffix.lower() in VIDEO_EXTENSIONS


def expand_inputs(paths, out, empty=None, unreadable=None):
    """PATH arguments (photos, videos, folders, glob patterns) -> [Item], in the order given. A
    folder's photos are named relative to --out when inside it (the default: the folder itself),
    else relative to the folder's parent. UsageError for a pattern that matches nothing,
    InputError for a path that does not exist or a folder given that cannot be listed; folders
    without a photo are added to `empty`, sub-folders that cannot be listed to `unreadable`
    (OSErrors: their photos are missing from the run, which must be said)."""
    items, seen = [], set()
    outs = [(os.path.abspath, Path(os.path.abspath(out))), (os.path.realpath, Path(os.path.realpath(out)))]

    def name_of(path, base):
        for absolute, folder in outs:           # as given (a linked folder keeps its name), then resolved
            try:
                return Path(absolute(path)).relative_to(folder).as_posix()
            except ValueError:
                pass
        return Path(path).relative_to(base).as_posix() if base else Path(path).as_posix()

    for text in paths:
        path = Path(text)
        if path.is_dir():
            errors = []
            found = find_photos(path, videos=True, unreadable=errors)
            for error in errors:
                if os.path.realpath(error.filename or "") == os.path.realpath(path):
                    raise cli.InputError(f"{text}: cannot list this folder ({error.strerror or error})")
            if unreadable is not None:
                unreadable.extend(errors)
            if not found and empty is not None:
                empty.append(text)
            for rel, person in found:
                full = path / rel
                key = os.path.realpath(full)
                if key not in seen:
                    seen.add(key)
                    items.append(Item(full, name_of(full, path.parent), person))
            continue
        if _is_input_file(path):
            matches = [path]
        elif path.exists():
            raise cli.InputError(f"{text}: not a file or folder predict.py can read (a pipe or a device?)")
        elif glob.has_magic(text):
            matches = glob_inputs(text)
            if not matches:
                raise cli.UsageError(f"{text}: the pattern matches no photo or video")
        else:
            raise cli.InputError(f"{text}: no such file or folder")
        for match in matches:
            key = os.path.realpath(match)
            if key not in seen:
                seen.add(key)
                items.append(Item(match, name_of(match, None), ""))
    return items


def write_demo_photos(folder):
    """Copy scikit-image's astronaut (Eileen Collins, NASA) and matplotlib's grace_hopper
    (both public domain) into `folder`; returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        import matplotlib
        source = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        shutil.copyfile(source, folder / "grace_hopper.jpg")
        written.append(folder / "grace_hopper.jpg")
    except (ImportError, OSError, ValueError) as error:
        print(f"matplotlib's grace_hopper.jpg is not available ({error})")
    try:
        import skimage.data
        from PIL import Image
        Image.fromarray(skimage.data.astronaut()).save(folder / "astronaut.png")
        written.append(folder / "astronaut.png")
    except (ImportError, OSError, ValueError) as error:
        print(f"scikit-image's astronaut is not available ({error}); pip install scikit-image")
    return written
