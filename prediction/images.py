"""Photos as pixels: read an image file (PhotoError for one that cannot be), write a picture,
and the shrunk and turned copies that detection, pictures and refinement work on."""
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

import cli
import input_data


# A photo whose longer side is over this is read shrunk to it. OpenCV's warps (every 96x96
# crop, every turned copy) stop below 32,767 px a side (SHRT_MAX), and a photo taken whole as
# one face (--no-detect) is warped at about its own size; 16,384 px holds a 200 MP camera's.
MAX_SIDE = 16384


class PhotoError(cli.InputError):
    """A file that cannot be read as a photo; the message names the file and the reason."""


def read_image(path, colour=False):
    """Any image file -> (uint8 (H, W) grayscale, uint8 (H, W, 3) RGB or None): the gray is
    input_data.read_gray's (EXIF orientation applied); the colour only when asked and the file has
    colour; shrunk to MAX_SIDE when larger (read_scaled says by how much). PhotoError naming the
    file and the reason when it cannot be read."""
    return read_scaled(path, colour)[:2]


def read_scaled(path, colour=False, max_side=None):
    """(gray, rgb, shrink): read_image's pictures and pixels read per photo pixel, 1.0 unless
    the photo's longer side was over max_side (default MAX_SIDE; to_photo_pixels maps back)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise PhotoError(f"{path}: cannot open ({error.strerror or error})") from None
    if size == 0:
        raise PhotoError(f"{path}: empty file (0 bytes)")
    from PIL import Image, ImageOps, UnidentifiedImageError
    rgb = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
                gray = input_data.to_gray8(image)
                if colour and image.mode not in ("L", "LA", "1", "I", "I;16", "I;16B", "I;16L", "F"):
                    rgb = np.asarray(image.convert("RGB"), np.uint8)
    except UnidentifiedImageError:
        raise PhotoError(f"{path}: not an image (unknown or corrupt file format)") from None
    except (PermissionError, IsADirectoryError, FileNotFoundError, NotADirectoryError) as error:
        raise PhotoError(f"{path}: cannot open ({error.strerror or type(error).__name__})") from None
    except Image.DecompressionBombError as error:
        raise PhotoError(f"{path}: too large to read ({error})") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as error:
        raise PhotoError(f"{path}: corrupt or truncated image ({type(error).__name__}: {error})") from None
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise PhotoError(f"{path}: no pixels (shape {gray.shape})")
    shrink, size = shrunk_size(*gray.shape[::-1], max_side)
    if shrink == 1.0:
        return gray, rgb, 1.0
    import cv2                                      # its resize reads pictures of any size
    gray, rgb = (None if a is None else cv2.resize(a, size, interpolation=cv2.INTER_AREA) for a in (gray, rgb))
    return gray, rgb, shrink


def shrunk_size(width, height, max_side=None):
    """(shrink, (width, height)) a photo is read at: 1.0 and its own size unless its longer side
    is over max_side (default MAX_SIDE)."""
    max_side = max_side or MAX_SIDE
    if max(height, width) <= max_side:
        return 1.0, (width, height)
    shrink = max_side / max(height, width)
    return shrink, (max(1, round(width * shrink)), max(1, round(height * shrink)))


def to_photo_pixels(points, shrink):
    """Points (any shape) in a photo read shrunk by `shrink` (read_scaled) -> the photo's own
    pixels (pixel i's centre is coordinate i in both)."""
    return (np.asarray(points, np.float64) + 0.5) / shrink - 0.5


def read_photo(path):
    """Any image file -> uint8 (H, W) grayscale (input_data's conversion, EXIF orientation
    applied; shrunk to MAX_SIDE when larger). PhotoError naming the file and the reason when it
    cannot be read."""
    return read_image(path)[0]


def write_image(path, image):
    """Write a picture by encoding it in memory and writing the bytes: cv2.imwrite on a path
    that is not valid UTF-8 crashes the process; this cannot. image: gray, or BGR."""
    import cv2
    path = Path(path)
    suffix = path.suffix.lower() or ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if suffix in (".jpg", ".jpeg") else \
        [cv2.IMWRITE_PNG_COMPRESSION, 1] if suffix == ".png" else []
    ok, data = cv2.imencode(suffix, image, params)
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the picture")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())
    return path


def shrunk(gray, side):
    """(copy whose longer side is at most `side`, its scale): the detector's working copy (and
    the overlay's; a colour image works too)."""
    import cv2
    shrink = min(1.0, side / max(gray.shape[:2]))
    if shrink == 1.0:
        return gray, shrink
    if min(round(gray.shape[0] * shrink), round(gray.shape[1] * shrink)) < 1:     # a 1-px strip stays 1 px
        size = (max(1, round(gray.shape[1] * shrink)), max(1, round(gray.shape[0] * shrink)))
        return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), shrink
    return cv2.resize(gray, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA), shrink


class View(NamedTuple):
    roll: float
    image: np.ndarray             # uint8: the turned copy (the photo itself for roll 0)
    matrix: np.ndarray            # (2, 3): photo pixel -> copy pixel
    inverse: np.ndarray           # (2, 3): copy pixel -> photo pixel


def upright_view(gray, roll):
    """The photo turned clockwise by `roll` degrees on a canvas that holds all of it, so that a
    face turned counter-clockwise by `roll` stands upright. Multiples of 90 are exact (pixel
    centres land on pixel centres), other angles bilinear with replicated edges."""
    import cv2
    roll = float(roll) % 360
    height, width = gray.shape[:2]
    if roll == 0:
        identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
        return View(0.0, gray, identity, identity)
    radians = np.deg2rad(roll)
    cos, sin = np.round(np.cos(radians), 12), np.round(np.sin(radians), 12)
    new_w = int(round(abs(cos) * width + abs(sin) * height))
    new_h = int(round(abs(sin) * width + abs(cos) * height))
    # Turning the picture clockwise by roll with y down: x' = cos x - sin y, y' = sin x + cos y,
    # about the old centre, to the new centre.
    rotation = np.array([[cos, -sin], [sin, cos]])
    centre_old = np.array([(width - 1) / 2, (height - 1) / 2])
    centre_new = np.array([(new_w - 1) / 2, (new_h - 1) / 2])
    matrix = np.hstack([rotation, (centre_new - rotation @ centre_old)[:, None]])
    image = cv2.warpAffine(gray, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    roll = roll if roll <= 180 else roll - 360
    return View(roll, image, matrix, cv2.invertAffineTransform(matrix))


def apply(matrix, points):
    """(n, 2) points through a (2, 3) affine matrix (a View's matrix or inverse)."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]
