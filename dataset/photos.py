"""Real photos: any image file as 8-bit grayscale, and the square crop (Frame) that becomes the
96x96 Kaggle frame."""
from typing import NamedTuple

import numpy as np

import cli
from dataset.kaggle_format import IMAGE_SIZE, DataError

# What a folder of photos is searched for (predict.py, recognize.py): every still format Pillow
# reads that people keep photos in. A file given by name is read whatever its suffix.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".pgm", ".ppm", ".pbm", ".tif",
                              ".tiff", ".webp"})


def read_gray(path, exif=True):
    """Any image file -> uint8 (H, W) grayscale. EXIF orientation applied unless exif=False."""
    from PIL import Image, ImageOps
    try:
        with Image.open(path) as image:
            image.load()
            if exif:
                image = ImageOps.exif_transpose(image)
            return to_gray8(image)
    except Image.DecompressionBombError as error:
        # PIL refuses images above ~179 megapixels: a decompression bomb, or a photo far larger
        # than a face needs. A DataError is a ValueError: callers that skip bad photos skip it.
        raise DataError(f"{path}: {cli.one_line(error)}") from None


def to_gray8(image):
    """A PIL image of any mode (RGB, RGBA, CMYK, P, 16-bit, float) -> uint8 (H, W)."""
    from PIL import Image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, np.float64)
        top = 1.0 if image.mode == "F" and pixels.max() <= 1.0 else (65535.0 if pixels.max() > 255 else 255.0)
        return np.clip(np.round(pixels / top * 255.0), 0, 255).astype(np.uint8)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent parts become white, as the photo looks on a page.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "L":
        image = image.convert("RGB").convert("L")   # ITU-R 601 luma, as OpenCV's cvtColor
    return np.asarray(image, np.uint8)


class Frame(NamedTuple):
    """A square in a photo (centre and side, in photo pixels) that becomes the 96x96 frame.

    frame = (photo - corner) * 96 / side, with corner = centre - side / 2: the square's
    top-left corner goes to (0, 0) and its centre to (48, 48), for pixels and keypoints alike.
    """
    cx: float
    cy: float
    side: float

    @property
    def scale(self):
        return IMAGE_SIZE / self.side

    @property
    def corner(self):
        return np.array([self.cx - self.side / 2, self.cy - self.side / 2])

    def to_frame(self, points):
        """(..., 2) photo pixel coordinates -> 96-px frame coordinates."""
        return (np.asarray(points, np.float64) - self.corner) * self.scale

    def to_photo(self, points):
        """(..., 2) frame coordinates -> photo pixel coordinates."""
        return np.asarray(points, np.float64) / self.scale + self.corner

    def crop(self, gray):
        """uint8 (H, W) photo -> uint8 (96, 96) crop; outside the photo, edges are replicated.

        Shrinking averages areas: warp (bilinear) to a whole multiple f x 96, where the warp
        barely resamples, then average f x f blocks. Enlarging is bilinear. The block average
        puts output pixel u at u * f + (f - 1) / 2 of the big warp, hence the offset below.
        """
        import cv2
        if not (np.isfinite([self.cx, self.cy, self.side]).all() and self.side > 0):
            raise ValueError(f"cannot crop a square at ({self.cx}, {self.cy}) of side {self.side}")
        gray = np.asarray(gray)
        if gray.ndim != 2 or gray.dtype != np.uint8 or min(gray.shape) < 1:
            raise ValueError(f"cannot crop a {gray.dtype} image of shape {gray.shape}; expected uint8 (H, W)")
        if self.side > 64 * max(gray.shape):   # the warp below is ~side pixels square
            raise ValueError(f"cannot crop a square of side {self.side:g} from a {gray.shape[1]}x{gray.shape[0]} image")
        f = max(1, int(np.ceil(self.side / IMAGE_SIZE)))
        k = f * self.scale
        offset = (f - 1) / 2 - k * self.corner
        matrix = np.array([[k, 0, offset[0]], [0, k, offset[1]]])
        size = IMAGE_SIZE * f
        warped = cv2.warpAffine(gray, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        if f > 1:
            warped = cv2.resize(warped, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
        return warped
