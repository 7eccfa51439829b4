"""Data augmentation that moves the keypoints exactly with the pixels, and the tf.data pipeline.

    import augment
    train = augment.pipeline(X, Y, batch_size=128, augment="all", seed=0)   # a tf.data.Dataset
    model.fit(train, epochs=100)
    Y_hat = augment.predict_with_flip(model, X_test)                        # flip test-time augmentation

    augment.parse("flip,rotate")   # -> AugmentConfig(flip=0.5, rotate=15.0, shift=0.0, ...)

A face that is mirrored, turned a little, moved or zoomed is still a face, and its keypoints
are where the same geometric map sends them. Training on such variants is the cheapest way to
more data (Nouri's tutorial gains most of its score from the mirror alone). The whole point is
that the labels move *exactly* with the pixels; a keypoint that is off by one pixel after
augmentation teaches the network to be off by one pixel.

Coordinates (the repo's one convention, see `input_data.Frame`): pixel index i has coordinate
i, so pixel centres are at integers and the 96-pixel frame spans 0..95 with its centre at 47.5.
The network's targets are unit coordinates Y = (y - 48) / 48 (`input_data.keypoints_to_unit`).
Hence:

  - a horizontal mirror sends pixel x to 95 - x, i.e. unit x to -x - 1/48. Nouri's tutorial
    multiplies the unit x by -1, which is the mirror 96 - x: one pixel off for every mirrored
    keypoint (his targets were (y - 48) / 48 too);
  - rotations and scalings turn about the image centre (47.5, 47.5), not about (48, 48).

Labels need not be centred on the pixels' mirror. On the real faces the labelled midline (nose
tip, lip centres) lies on average at x = 48.9, not 47.5, and a model trained on exact mirrors
(x -> 95 - x) sees that offset with one sign on half its faces and the other sign on the
other half: it learnt neither, and was 0.8 px left on every x of its own training faces. So
every transform here takes `mirror_axis`, the x (pixels) about which the labels mirror: the
image still flips exactly, but a keypoint x goes to 2 * mirror_axis - x, so that the offset
b = mirror_axis - 47.5 survives the mirror, and rotations and scalings move the content
point (x - b) and put the offset back. `mirror_axis(Y)` measures it on the labels: the mean x
of the centre-line keypoints. 47.5 (CENTER) is the image's own axis, the classic mirror.

Missing keypoints are NaN and stay NaN through every transform (arithmetic keeps NaN, and
nothing here replaces it). A rotation mixes x and y, so a keypoint with only one of them
known becomes missing in both; Kaggle's table only ever lacks both.

`augment_batch` works on whole batches in TensorFlow ops, so that it runs in graph mode inside
`tf.data`'s `.map` on the CPU cores next to the training step: the mirror, rotation, shift and
scale of each image are composed into one affine map and applied with one bilinear resampling
(`ImageProjectiveTransformV3`), so an image is interpolated once, not once per transform.
"""
import os
from dataclasses import dataclass, replace

import numpy as np
import tensorflow as tf

import input_data
from input_data import COLUMNS, IMAGE_SIZE

# ---------------------------------------------------------------------------------------
# Defaults: what "all" means. Each is the size of the random change, drawn per image.

FLIP_FRACTION = 0.5             # mirror half of each batch, as Nouri's FlipBatchIterator does
ROTATE_DEGREES = 15.0           # angle uniform in [-15, +15] degrees
SHIFT_FRACTION = 0.1            # shift uniform in [-10%, +10%] of the side (+-9.6 px) per axis
SCALE = 0.1                     # zoom factor uniform in [0.9, 1.1]
BRIGHTNESS = 0.1                # add uniform [-0.1, +0.1] to images in [0, 1], and stretch
                                # about the image's mean by uniform [0.8, 1.2] (2x the size)
BLUR_SIGMA = 1.5                # blend each image with its Gaussian blur (sigma 1.5 px) by a
                                # uniform [0, 1] share: from sharp to about that blur
ERASE_SIDE = 0.4                # half of the images get one rectangle of sides uniform in
                                # [0.1, 0.4] of the frame ([E / 4, E]) filled with one random
                                # grey; the keypoints under it keep their labels

# Outside the original picture, repeat its edge pixels. The alternative, REFLECT, fills the
# border with a mirror image of the face's own edge: shifting by 10 px can then show half an
# ear, an eyebrow end or the chin again, features the network is trained to find. NEAREST
# only smears the edge outwards, which adds nothing that looks like a keypoint, and it is what
# the rest of the repo does outside a photo (`input_data.Frame.crop` replicates edges).
FILL_MODE = "NEAREST"
INTERPOLATION = "BILINEAR"

AUGMENTATIONS = ("flip", "rotate", "shift", "scale", "light", "blur", "erase")
# "all" is Nouri's kind: the mirror, the geometry and the light. Blur and erase are asked for by name.
ALL_NAMES = ("flip", "rotate", "shift", "scale", "light")

CENTER = (IMAGE_SIZE - 1) / 2          # 47.5: the frame's centre in pixel coordinates
UNIT = IMAGE_SIZE / 2                  # 48: one unit of Y in pixels (Y = (y - 48) / 48)
# Unit coordinates are measured from 48, the pixel frame's symmetry centre is 47.5: half a
# pixel, 1/96 of a unit, lower. The mirror about it is x -> -x - 2 * HALF_PIXEL.
HALF_PIXEL = 0.5 / UNIT

_NUMBER_OF_DRAWS = 8                   # uniform numbers drawn per image, see random_transforms


# ---------------------------------------------------------------------------------------
# Which augmentations: the config and its parser.

@dataclass(frozen=True)
class AugmentConfig:
    """How strongly to augment; a zero (or a range of (1, 1)) turns that augmentation off."""
    flip: float = 0.0                    # fraction of each batch mirrored
    rotate: float = 0.0                  # maximum angle, degrees
    shift: float = 0.0                   # maximum shift per axis, fraction of the side
    scale: tuple = (1.0, 1.0)            # zoom factor range
    brightness: float = 0.0              # maximum added brightness, on [0, 1] images
    contrast: tuple = (1.0, 1.0)         # contrast factor range
    blur: float = 0.0                    # sigma (px) of the blur blended in by a random share
    erase: float = 0.0                   # largest side of the erased rectangle, fraction of 96

    @property
    def geometric(self):
        """Does it move pixels (and so keypoints) other than by the mirror?"""
        return self.rotate > 0 or self.shift > 0 or tuple(self.scale) != (1.0, 1.0)

    @property
    def light(self):
        return self.brightness > 0 or tuple(self.contrast) != (1.0, 1.0)

    @property
    def texture(self):
        """Does it change pixels without moving them (blur, erase)?"""
        return self.blur > 0 or self.erase > 0

    @property
    def enabled(self):
        return self.flip > 0 or self.geometric or self.light or self.texture

    @property
    def names(self):
        """The augmentations that are on, in AUGMENTATIONS' order."""
        on = {"flip": self.flip > 0, "rotate": self.rotate > 0, "shift": self.shift > 0,
              "scale": tuple(self.scale) != (1.0, 1.0), "light": self.light,
              "blur": self.blur > 0, "erase": self.erase > 0}
        return [name for name in AUGMENTATIONS if on[name]]

    def sizes(self):
        """{name: size} of the augmentations that are on, as parse() reads them."""
        sizes = {"flip": self.flip, "rotate": self.rotate, "shift": self.shift,
                 "scale": (self.scale[1] - self.scale[0]) / 2, "light": self.brightness,
                 "blur": self.blur, "erase": self.erase}
        return {name: sizes[name] for name in self.names}

    def __str__(self):
        """The spec that parse() reads back: "flip,rotate=10,..." (bare names at their defaults)."""
        return ",".join(name if np.isclose(size, DEFAULT_SIZES[name]) else f"{name}={size:g}"
                        for name, size in self.sizes().items()) or "none"


NONE = AugmentConfig()


def _around_one(size):
    return round(1 - size, 9), round(1 + size, 9)     # 0.9, not 0.8999999999999999


# What each name sets from its size, and the size a bare name means ("all": the defaults
# above). scale=S is the zoom range [1 - S, 1 + S]; light=B is brightness +-B with contrast
# [1 - 2B, 1 + 2B].
_SIZED = {
    "flip": lambda size: dict(flip=size),
    "rotate": lambda size: dict(rotate=size),
    "shift": lambda size: dict(shift=size),
    "scale": lambda size: dict(scale=_around_one(size)),
    "light": lambda size: dict(brightness=size, contrast=_around_one(2 * size)),
    "blur": lambda size: dict(blur=size),
    "erase": lambda size: dict(erase=size),
}
_MAX_SIZE = {"flip": 1, "rotate": 90, "shift": 1, "scale": 1, "light": 0.5, "blur": 5, "erase": 1}
DEFAULT_SIZES = {"flip": FLIP_FRACTION, "rotate": ROTATE_DEGREES, "shift": SHIFT_FRACTION,
                 "scale": SCALE, "light": BRIGHTNESS, "blur": BLUR_SIGMA, "erase": ERASE_SIDE}
ALL = replace(NONE, **{k: v for name in ALL_NAMES for k, v in _SIZED[name](DEFAULT_SIZES[name]).items()})


def parse(spec):
    """"none", "all", or a comma list of AUGMENTATIONS -> AugmentConfig.

    Each name switches on its default size; "name=value" sets the size: flip=F (fraction of
    each batch mirrored), rotate=DEGREES, shift=FRACTION of the side, scale=S (zoom factor in
    [1 - S, 1 + S]), light=B (brightness +-B, contrast in [1 - 2B, 1 + 2B]), blur=SIGMA (px),
    erase=E (largest side of the rectangle, fraction of the frame). So
    "flip,rotate=10,shift=0.03,scale=0.05,light" is a milder "all".
    None means "none"; an AugmentConfig is returned as it is (so callers can pass either).
    """
    if spec is None:
        return NONE
    if isinstance(spec, AugmentConfig):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"an augmentation spec is a string like 'flip,rotate', not {spec!r}")
    items = [item.strip().lower() for item in spec.split(",") if item.strip()]
    if items in ([], ["none"]):
        return NONE
    if items == ["all"]:
        return ALL
    settings = {}
    for item in items:
        name, _, value = (part.strip() for part in item.partition("="))
        if name not in _SIZED:
            raise ValueError(f"unknown augmentation {name!r} in {spec!r}; use 'none', 'all' or a "
                             f"comma list of {', '.join(AUGMENTATIONS)}, each optionally =size")
        try:
            size = float(value) if value else DEFAULT_SIZES[name]
        except ValueError:
            raise ValueError(f"{item!r} in {spec!r}: the size after '=' must be a number") from None
        if not 0 <= size <= _MAX_SIZE[name]:
            raise ValueError(f"{item!r} in {spec!r}: size out of range [0, {_MAX_SIZE[name]}]")
        settings.update(_SIZED[name](size))
    return replace(NONE, **settings)


# ---------------------------------------------------------------------------------------
# The mirror, for numpy arrays and tf tensors alike.

def _flip_layout(n_cols, cols, mirror_axis=CENTER):
    """(permutation, sign, offset) so that flipped Y = Y[..., permutation] * sign + offset."""
    cols = list(COLUMNS if cols is None else cols)
    if len(cols) != n_cols:
        raise ValueError(f"Y has {n_cols} columns but cols names {len(cols)}; pass cols= for "
                         f"a subset of the 30 keypoint columns")
    permutation = np.arange(n_cols)
    for a, b in input_data.flip_indices(cols):
        permutation[a], permutation[b] = b, a
    is_x = np.array([name.endswith("_x") for name in cols])
    sign = np.where(is_x, -1.0, 1.0).astype(np.float32)
    # pixel x -> 2 a - x, in unit coordinates u -> (2 a - 96) / 48 - u (a = 47.5: -u - 1/48)
    offset = np.where(is_x, (2 * float(mirror_axis) - IMAGE_SIZE) / UNIT, 0.0).astype(np.float32)
    return permutation, sign, offset


def mirror_axis(Y, cols=None):
    """The x in pixels about which the faces' labels mirror: the mean x of the keypoints on the
    face's midline (nose tip, lip centres: those with no left/right partner), else of the
    midpoints of the left/right pairs; CENTER (47.5) if Y has neither. Missing values skipped.

    Why the midline: a flip-trained v6 had a mean x error on its own training faces of -0.81 px
    with the image's axis 47.5, -0.39 px with the mean of all pairs and midline keypoints
    (48.16), +0.05 px with 48.8 (40-epoch runs on the real faces); the midline's 48.9 is
    where the labels' own evidence of the face's symmetry plane lies."""
    cols = list(COLUMNS if cols is None else cols)
    Y = np.asarray(Y, np.float64)
    all_pairs = input_data.flip_indices(cols)
    pairs = [(a, b) for a, b in all_pairs if cols[a].endswith("_x")]
    paired = {i for pair in all_pairs for i in pair}
    midline = [Y[:, i] for i, name in enumerate(cols)
               if name.endswith("_x") and i not in paired and "left" not in name and "right" not in name]
    for values in (midline, [(Y[:, a] + Y[:, b]) / 2 for a, b in pairs]):
        values = np.concatenate(values) if values else np.array([])
        values = values[np.isfinite(values)]
        if len(values):
            return float(values.mean() * UNIT + UNIT)     # unit coordinates -> pixels
    return CENTER


def flip_images(images):
    """Mirror left-right: (..., 96, 96, 1) or (..., 96, 96), numpy or tf. Exact (a reversal)."""
    axis = -2 if images.shape[-1] in (1, 3) else -1    # channels last, or no channel axis
    if tf.is_tensor(images):
        return tf.reverse(images, axis=[len(images.shape) + axis])
    return np.ascontiguousarray(np.flip(images, axis))


def flip_keypoints(Y, cols=None, mirror_axis=CENTER):
    """Keypoints of the mirrored image: x -> 2 * mirror_axis - x in pixels (95 - x, i.e.
    -x - 1/48 in unit coordinates, for the image's own axis 47.5) and the left/right columns
    swapped. Y (..., k) unit coordinates, numpy or tf; cols names the k columns (default the
    30 of input_data.COLUMNS). NaN stays NaN.

    Flipping twice gives Y back to float32 rounding (within one unit in the last place, about
    1e-7 of a unit, 5e-6 px), not bit for bit: the mirror axis, -1/96 in unit coordinates, is
    not a binary fraction, and x and -x - 1/48 can lie in binades of different float spacing,
    so no float32 mirror about it can be its own exact inverse. The images flip exactly.
    """
    permutation, sign, offset = _flip_layout(Y.shape[-1], cols, mirror_axis)
    if tf.is_tensor(Y):
        return tf.gather(Y, permutation, axis=-1) * sign + offset
    Y = np.asarray(Y, np.float32)
    return Y[..., permutation] * sign + offset


def predict_with_flip(model, X, batch_size=256, cols=None, mirror_axis=None):
    """Flip test-time augmentation: the mean of the model's prediction on X and the
    un-mirrored prediction on the mirrored X. -> numpy float32 (N, k) unit coordinates.
    mirror_axis: the labels' axis the model was trained with; None: the model's own
    `mirror_axis` attribute (train.load_model and inference.fast_model read it from the
    model.json beside the file), else CENTER. A predictor made of parts with their own axes
    (specialists.Specialists) does it itself, through its predict_with_flip.

    A model that is slightly biased to one side cancels its bias; the two predictions' errors
    are partly independent, so their mean is usually a little closer than either.
    """
    X = np.asarray(X, np.float32)
    if hasattr(model, "predict_with_flip"):     # made of parts, each with its own axis (specialists)
        return model.predict_with_flip(X, batch_size=batch_size)
    if hasattr(model, "predict"):
        def run(images):
            return model.predict(images, batch_size=batch_size, verbose=0)
    else:       # anything with predict_on_batch (predict.py accepts such stand-ins)
        run = model.predict_on_batch
    if mirror_axis is None:
        mirror_axis = getattr(model, "mirror_axis", CENTER)
    direct = np.asarray(run(X), np.float32)
    mirrored = np.asarray(run(flip_images(X)), np.float32)
    return ((direct + flip_keypoints(mirrored, cols, mirror_axis)) / 2).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Random transforms, drawn per image from a stateless seed.

def _seed_tensor(seed):
    """An int, a pair or a (2,) tensor -> the (2,) int64 seed that stateless ops take."""
    if isinstance(seed, (int, np.integer)):
        seed = (int(seed), 0)
    return tf.cast(tf.convert_to_tensor(seed), tf.int64)


def random_transforms(batch_size, config, seed):
    """Draw each image's transform: dict of (batch_size,) tensors
    flipped (bool), angle (radians), scale, shift_x, shift_y (unit coordinates),
    brightness, contrast.

    All numbers come from one stateless_uniform call, so the same seed gives the same
    transforms, and the same draws are used whichever augmentations are on ("flip" alone
    mirrors the same images as "all" with that seed). Turned-off ones give the identity.
    """
    config = parse(config)
    u = tf.random.stateless_uniform([batch_size, _NUMBER_OF_DRAWS], seed=_seed_tensor(seed))
    symmetric = 2 * u - 1                              # uniform in [-1, 1)

    def between(low_high, column):
        low, high = (float(v) for v in low_high)
        return low + (high - low) * u[:, column]

    # A fixed share of the batch is mirrored, as Nouri mirrors bs / 2 of each batch: the
    # images whose random key ranks lowest. The count is floor(fraction * B + u) with u
    # uniform (u[0, 7]): exactly fraction * B when that is whole (64 of 128), else rounded
    # up or down at random, so that odd batches are mirrored the right share on average.
    rank = tf.argsort(tf.argsort(u[:, 0]))
    count = tf.floor(float(config.flip) * tf.cast(batch_size, tf.float32) + u[0, 7])
    flipped = tf.cast(rank, tf.float32) < count
    return {
        "flipped": flipped,
        "angle": symmetric[:, 1] * np.deg2rad(config.rotate),
        "scale": between(config.scale, 2),
        # shift is a fraction of the 96-px side; a unit is 48 px, so 2 units per side.
        "shift_x": symmetric[:, 3] * (config.shift * IMAGE_SIZE / UNIT),
        "shift_y": symmetric[:, 4] * (config.shift * IMAGE_SIZE / UNIT),
        "brightness": symmetric[:, 5] * config.brightness,
        "contrast": between(config.contrast, 6),
    }


def _affine(params):
    """Each image's forward map, input -> output pixel coordinates p' = A (p - c) + c + t:
    mirror, then rotate and scale about the centre c = (47.5, 47.5), then shift by t.
    A = scale * R(angle) * F, with F = diag(-1, 1) for mirrored images.
    Returns A's entries (a, b, c, d) = ((A00, A01), (A10, A11)) and t in pixels."""
    mirror = tf.where(params["flipped"], -1.0, 1.0)
    cos = tf.cos(params["angle"]) * params["scale"]
    sin = tf.sin(params["angle"]) * params["scale"]
    a, b = cos * mirror, -sin
    c, d = sin * mirror, cos
    return (a, b, c, d), (params["shift_x"] * UNIT, params["shift_y"] * UNIT)


def _projective_transforms(matrix, shift):
    """The 8 numbers per image that ImageProjectiveTransformV3 wants. It asks, for every
    OUTPUT pixel p', where to read the INPUT: p = A^-1 (p' - c - t) + c, the inverse of the
    forward map that the keypoints take."""
    (a, b, c, d), (tx, ty) = matrix, shift
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det   # A^-1
    ox, oy = CENTER + tx, CENTER + ty                        # p' - (c + t): subtract this
    zero = tf.zeros_like(a)
    return tf.stack([ia, ib, CENTER - ia * ox - ib * oy,
                     ic, id_, CENTER - ic * ox - id_ * oy,
                     zero, zero], axis=1)


def _keypoint_pairs(cols):
    """Positions of the x and of the y column of each keypoint in cols (matched by name)."""
    cols = list(cols)
    xs, ys = [], []
    for i, name in enumerate(cols):
        if name.endswith("_x") and name[:-2] + "_y" in cols:
            xs.append(i)
            ys.append(cols.index(name[:-2] + "_y"))
    unpaired = sorted(set(range(len(cols))) - set(xs) - set(ys))
    if unpaired:
        raise ValueError(f"rotating, shifting or scaling needs both x and y of each keypoint; "
                         f"{', '.join(cols[i] for i in unpaired)} has no partner")
    return np.array(xs), np.array(ys), np.argsort(np.concatenate([xs, ys]))


def augment_batch(images, Y, config, seed, cols=None, mirror_axis=CENTER):
    """Augment one batch in TensorFlow ops (graph-mode safe, vectorised over the batch).

    images: float32 (B, 96, 96, 1) in [0, 1]; Y: float32 (B, k) unit coordinates, NaN where
    missing; config: AugmentConfig or spec string; seed: int, pair or (2,) int tensor;
    cols: names of Y's k columns (default the 30 COLUMNS); mirror_axis: the labels' mirror
    axis in pixels (see the module docstring).
    Returns (images, Y) augmented: images clipped to [0, 1]; keypoints mapped by the same
    affine as the pixels (those pushed out of the frame are kept, NaN stays NaN).
    """
    config = parse(config)
    if not config.enabled:
        return images, Y
    images = tf.cast(images, tf.float32)
    Y = tf.cast(Y, tf.float32)
    cols = list(COLUMNS if cols is None else cols)
    batch_size = tf.shape(images)[0]
    params = random_transforms(batch_size, config, seed)

    if config.geometric:
        matrix, shift = _affine(params)
        images = tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=_projective_transforms(matrix, shift),
            output_shape=[IMAGE_SIZE, IMAGE_SIZE], fill_value=0.0,
            interpolation=INTERPOLATION, fill_mode=FILL_MODE)
        Y = _move_keypoints(Y, params["flipped"], matrix, shift, cols, mirror_axis)
    elif config.flip > 0:
        # Mirror only: reversing each row is exact and cheaper than resampling.
        flipped = params["flipped"]
        images = tf.where(flipped[:, None, None, None], flip_images(images), images)
        Y = tf.where(flipped[:, None], flip_keypoints(Y, cols, mirror_axis), Y)

    if config.light:
        # Contrast about each image's own mean, so that it does not also change brightness.
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        contrast = params["contrast"][:, None, None, None]
        brightness = params["brightness"][:, None, None, None]
        images = (images - mean) * contrast + mean + brightness
    if config.texture:
        images = _blur_and_erase(images, config, seed)
    if config.geometric or config.light:
        images = tf.clip_by_value(images, 0.0, 1.0)
    return images, Y


def _gaussian_kernel(sigma):
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k = np.outer(k, k) / k.sum() ** 2
    return tf.constant(k[:, :, None, None], tf.float32)


def _blur_and_erase(images, config, seed):
    """Pixels changed where they are, keypoints untouched: a random share of a Gaussian blur
    (a blurred or low-resolution face is still that face), and one rectangle of random grey on
    half the images (the keypoints under it must come from the rest of the face). Drawn from
    their own stateless numbers, so the other augmentations of a seed stay as they were."""
    batch_size = tf.shape(images)[0]
    u = tf.random.stateless_uniform([batch_size, 6],
                                    seed=tf.random.experimental.stateless_fold_in(_seed_tensor(seed), 1))
    if config.blur > 0:
        kernel = _gaussian_kernel(config.blur)
        blurred = tf.nn.conv2d(images, kernel, strides=1, padding="SAME")
        # SAME pads with zeros: divide by the kernel's weight inside the frame
        inside = tf.nn.conv2d(tf.ones_like(images[:1]), kernel, strides=1, padding="SAME")
        share = u[:, 0][:, None, None, None]
        images = images + share * (blurred / inside - images)
    if config.erase > 0:
        size = IMAGE_SIZE * config.erase * (0.25 + 0.75 * u[:, 1:3])           # (B, 2): w, h
        corner = (IMAGE_SIZE - size) * u[:, 3:5]
        pixel = tf.range(IMAGE_SIZE, dtype=tf.float32)
        in_x = (pixel[None, :] >= corner[:, :1]) & (pixel[None, :] < corner[:, :1] + size[:, :1])
        in_y = (pixel[None, :] >= corner[:, 1:2]) & (pixel[None, :] < corner[:, 1:2] + size[:, 1:2])
        erased = in_y[:, :, None] & in_x[:, None, :] & (u[:, 5] < 0.5)[:, None, None]
        grey = tf.random.stateless_uniform([batch_size, 1, 1],
                                           seed=tf.random.experimental.stateless_fold_in(_seed_tensor(seed), 2))
        images = tf.where(erased[..., None], grey[..., None], images)
    return images


def _move_keypoints(Y, flipped, matrix, shift, cols, mirror_axis=CENTER):
    """Y (B, k) unit coordinates through the forward map of `_affine`.

    The labels sit b = mirror_axis - 47.5 px right of the content they mark; the content point
    (x - b, y) moves with the pixels, and the new label is b right of where it lands. With
    b = 0 this is the plain map; a mirrored face's x becomes 2 * mirror_axis - x.

    In unit coordinates u = (p - 48) / 48 the centre 47.5 is at -h (h = 1/96), so
    p' = A (p - c) + c + t becomes u' = A (u + h) - h + t / 48. Mirrored samples first swap
    their left and right columns: the subject's left eye of the mirrored face is the mirror
    image of the right eye of the original.
    """
    permutation, _, _ = _flip_layout(len(cols), cols)
    Y = tf.where(flipped[:, None], tf.gather(Y, permutation, axis=1), Y)
    xs, ys, restore = _keypoint_pairs(cols)
    label_offset = (float(mirror_axis) - CENTER) / UNIT
    x = tf.gather(Y, xs, axis=1) + HALF_PIXEL - label_offset
    y = tf.gather(Y, ys, axis=1) + HALF_PIXEL
    a, b, c, d = (entry[:, None] for entry in matrix)
    tx, ty = (t[:, None] for t in shift)
    new_x = a * x + b * y - HALF_PIXEL + tx / UNIT + label_offset
    new_y = c * x + d * y - HALF_PIXEL + ty / UNIT
    return tf.gather(tf.concat([new_x, new_y], axis=1), restore, axis=1)


# ---------------------------------------------------------------------------------------
# The input pipeline.

def pipeline(X, Y, batch_size, augment="none", seed=0, shuffle=True, repeat=False, cols=None,
             epoch=None, mirror_axis=CENTER):
    """tf.data.Dataset of (images, Y) batches from numpy arrays, for model.fit.

    X float32 (N, 96, 96, 1), Y (N, k) unit coordinates, NaN allowed. Each pass (epoch) visits
    every sample once, in a new order when shuffle (reproducible given seed); the last batch
    may be smaller. repeat=True makes it endless (then give fit steps_per_epoch).
    augment: spec or AugmentConfig; every batch of every epoch gets its own seed, drawn by
    Dataset.random(seed, rerandomize_each_iteration=True), so transforms never repeat but a
    run with the same seed repeats exactly. With "none" no augmentation op is built at all.
    mirror_axis: the labels' mirror axis in pixels (module docstring; `mirror_axis(Y)`).

    epoch: an int64 tf.Variable that the trainer sets at the start of every epoch. Then the
    order and the transforms are functions of (seed, epoch, batch) alone, not of how many
    times the dataset was iterated: a resumed run, or Keras peeking at a batch before
    training (it does under tf.distribute), sees exactly the epochs an uninterrupted
    single-device run sees.
    """
    config = parse(augment)
    X = np.asarray(X, np.float32)
    Y = np.asarray(Y, np.float32)
    if X.ndim != 4 or X.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 1):
        raise ValueError(f"X must be (N, 96, 96, 1), got {X.shape}")
    if Y.ndim != 2 or len(Y) != len(X):
        raise ValueError(f"Y must be (N, k) with N = {len(X)}, got {Y.shape}")
    if config.enabled:
        _flip_layout(Y.shape[1], cols)      # fail now, not inside tf.data, if cols do not fit
        if config.geometric:
            _keypoint_pairs(COLUMNS if cols is None else cols)

    # Shuffle and batch indices, then gather whole batches: one gather per batch instead of
    # slicing and re-stacking N image tensors, and the shuffle buffer holds only N integers.
    images, targets = tf.constant(X), tf.constant(Y)
    n = len(X)
    dataset = tf.data.Dataset.range(n)
    if shuffle and epoch is not None:
        # A permutation drawn from (seed, epoch), without state: element i goes to place
        # index_shuffle(i), which is read when the element is produced.
        dataset = dataset.map(lambda i: tf.random.experimental.index_shuffle(
            i, tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)]), n - 1))
    elif shuffle:
        dataset = dataset.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if repeat:
        dataset = dataset.repeat()
    parallel = os.cpu_count() or 2
    dataset = dataset.map(lambda index: (tf.gather(images, index), tf.gather(targets, index)),
                          num_parallel_calls=parallel)
    if config.enabled:
        if epoch is not None:   # batch b of epoch e: the stateless seed (seed, e * 2**20 + b)
            seeds = tf.data.Dataset.range(2**62).map(
                lambda b: tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64) * 2**20 + b]))
        else:                   # an endless stream of seed pairs, fresh for each pass
            seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, seeds).map(
            lambda batch, batch_seed: augment_batch(batch[0], batch[1], config, batch_seed, cols,
                                                    mirror_axis),
            num_parallel_calls=parallel)
    # No autotuning: tf.data's autotuner thread sleeps 10 ms, 20 ms, 40 ms, ... between rounds,
    # and the iterator Keras drops at the end of each epoch waits for the current sleep to end,
    # which stretched epochs to 5.1, 10.2, 20.5 s (2.9 s of work took 5.1 s; bench/train_speed.py).
    # Fixed parallelism and a 2-batch prefetch do as well here.
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(2).with_options(options)
