"""Tests for augment: the mirror, keypoints that move exactly with the pixels, NaN, seeds,
the tf.data pipeline and flip test-time augmentation.

Run: .venv/bin/python -m pytest tests/test_augment.py -q

The central check draws a small Gaussian blob at a sub-pixel keypoint, augments image and
keypoint together, and measures where the blob went: its centroid must be within a fraction
of a pixel of where augment says the keypoint went. An off-by-one mirror (96 - x), a rotation
about (48, 48), or an inverted affine would each miss by a pixel or more.
"""
from dataclasses import replace

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

import augment
import input_data
import synthetic_faces

GRID = np.arange(96, dtype=np.float64)          # pixel index i has coordinate i
STRONG = augment.AugmentConfig(flip=0.5, rotate=30.0, shift=0.1, scale=(0.8, 1.25),
                               brightness=0.1, contrast=(0.8, 1.2))
PERMUTATION = augment._flip_layout(30, None)[0]


def blob(x, y, sigma=1.5, amplitude=0.4, background=0.2):
    """A 96x96 image: a Gaussian spot centred at pixel coordinates (x, y), sub-pixel."""
    spot = np.exp(-((GRID[None, :] - x) ** 2 + (GRID[:, None] - y) ** 2) / (2 * sigma ** 2))
    return (background + amplitude * spot).astype(np.float32)


def centroid(image):
    """(x, y) centroid of the image above its background (its median), in pixels."""
    weight = np.clip(image - np.median(image), 0, None).astype(np.float64)
    return np.array([(weight * GRID[None, :]).sum(), (weight * GRID[:, None]).sum()]) / weight.sum()


def to_pixels(Y):
    return input_data.keypoints_to_pixels(Y).astype(np.float64)


def blob_batch(n=64, seed=0, spread=12.0):
    """n images, each with one blob on one keypoint (a random one of the 15); the other
    keypoints are missing (NaN). Returns images (n, 96, 96, 1), Y (n, 30) unit coordinates."""
    rng = np.random.default_rng(seed)
    points = 47.5 + rng.uniform(-spread, spread, size=(n, 2))
    which = rng.integers(0, 15, size=n)
    images = np.stack([blob(x, y) for x, y in points])[..., None]
    Y = np.full((n, 30), np.nan, np.float32)
    Y[np.arange(n), 2 * which] = input_data.keypoints_to_unit(points[:, 0])
    Y[np.arange(n), 2 * which + 1] = input_data.keypoints_to_unit(points[:, 1])
    return images, Y


# ---------------------------------------------------------------------------------------
# The mirror

def test_flip_twice_is_the_identity():
    rng = np.random.default_rng(0)
    images = rng.random((5, 96, 96, 1), dtype=np.float32)
    Y = rng.uniform(-1.2, 1.2, (5, 30)).astype(np.float32)
    Y[rng.random((5, 30)) < 0.2] = np.nan
    np.testing.assert_array_equal(augment.flip_images(augment.flip_images(images)), images)
    np.testing.assert_array_equal(augment.flip_images(augment.flip_images(images[..., 0])), images[..., 0])
    twice = augment.flip_keypoints(augment.flip_keypoints(Y))
    # To float32 rounding (see flip_keypoints): within one unit in the last place of 1.
    np.testing.assert_allclose(twice, Y, rtol=0, atol=np.spacing(np.float32(1)))
    np.testing.assert_array_equal(np.isnan(twice), np.isnan(Y))
    # The tf versions give the same numbers.
    np.testing.assert_array_equal(augment.flip_images(tf.constant(images)).numpy(), augment.flip_images(images))
    np.testing.assert_array_equal(augment.flip_keypoints(tf.constant(Y)).numpy(), augment.flip_keypoints(Y))


def test_mirror_is_95_minus_x_and_swaps_left_and_right():
    x, y = 30.3, 41.7
    Y = np.full((1, 30), np.nan, np.float32)
    Y[0, 0:2] = input_data.keypoints_to_unit([x, y])            # left_eye_center
    flipped = to_pixels(augment.flip_keypoints(Y))[0]
    assert np.isnan(flipped[0:2]).all()
    np.testing.assert_allclose(flipped[2:4], [95 - x, y], atol=1e-4)   # now right_eye_center
    # The mirrored blob is where the mirrored keypoint says (Nouri's * -1 would be 1 px off).
    image = augment.flip_images(blob(x, y)[None, ..., None])[0, ..., 0]
    np.testing.assert_allclose(centroid(image), flipped[2:4], atol=1e-3)


def test_flip_puts_the_mirrored_keypoints_on_the_mirrored_features():
    images, keypoints = synthetic_faces.make_faces(12, seed=3)
    X, Y = input_data.images_to_unit(images), input_data.keypoints_to_unit(keypoints)
    flipped_images = augment.flip_images(X)[..., 0]
    flipped = to_pixels(augment.flip_keypoints(Y))
    np.testing.assert_array_equal(flipped_images, X[:, :, ::-1, 0])
    for image, original, kp in zip(flipped_images, keypoints, flipped):
        # The subject's left eye of the mirrored face is the mirror image of the right eye...
        np.testing.assert_allclose(kp[0:2], [95 - original[2], original[3]], atol=1e-4)
        assert kp[0] > kp[2]          # ... and is again on the image's right
        for side in (0, 2):           # the pupils (dark) are on the mirrored eye centres
            assert pupil_offset(image, kp[side:side + 2]) < 2.5
    # The nose keeps its name and only mirrors.
    np.testing.assert_allclose(flipped[:, 20], 95 - keypoints[:, 20], atol=1e-4)


def test_flip_indices_for_a_subset_of_columns():
    cols = ["nose_tip_x", "left_eye_center_x", "left_eye_center_y", "right_eye_center_x",
            "right_eye_center_y"]
    Y = input_data.keypoints_to_unit([[50.0, 66.0, 38.0, 30.0, 37.0]])
    flipped = to_pixels(augment.flip_keypoints(Y, cols))
    np.testing.assert_allclose(flipped, [[45.0, 65.0, 37.0, 29.0, 38.0]], atol=1e-4)
    with pytest.raises(ValueError, match="cols"):
        augment.flip_keypoints(Y)     # 5 columns are not the 30 COLUMNS


# ---------------------------------------------------------------------------------------
# Augmented keypoints stay on the drawn features

def pupil_offset(image, eye, radius=4):
    """Distance (px) from eye to the darkest spot of the lightly smoothed image near it."""
    smooth = cv2.GaussianBlur(np.asarray(image, np.float32), (0, 0), 1.0)
    x, y = int(round(eye[0])), int(round(eye[1]))
    window = smooth[y - radius:y + radius + 1, x - radius:x + radius + 1]
    if window.shape != (2 * radius + 1, 2 * radius + 1):
        return np.nan                 # too close to the border to tell
    dy, dx = np.unravel_index(window.argmin(), window.shape)
    return np.hypot(x - radius + dx - eye[0], y - radius + dy - eye[1])


@pytest.mark.parametrize("spec", ["flip", "rotate", "shift", "scale", "light", "strong"])
def test_augmented_keypoints_stay_on_the_blobs(spec):
    config = STRONG if spec == "strong" else augment.parse(spec)
    if spec == "rotate":
        config = replace(config, rotate=30.0)
    images, Y = blob_batch(64, seed=1)
    out_images, out_Y = (t.numpy() for t in augment.augment_batch(images, Y, config, seed=11))
    flipped = augment.random_transforms(64, config, 11)["flipped"].numpy()
    if config.flip:
        assert flipped.sum() == 32
    errors = []
    for image, before, after, mirrored in zip(out_images[..., 0], Y, out_Y, flipped):
        # The one known keypoint keeps its column, or moves to its mirror partner's.
        expected = np.isnan(before[PERMUTATION] if mirrored else before)
        np.testing.assert_array_equal(np.isnan(after), expected)
        point = to_pixels(after[~np.isnan(after)])
        errors.append(np.hypot(*(centroid(image) - point)))
    assert max(errors) < 0.3, f"blob centroids off by up to {max(errors):.3f} px"
    assert np.isfinite(out_images).all() and out_images.min() >= 0 and out_images.max() <= 1


def test_transforms_have_their_documented_sizes():
    """Rotation turns the face rigidly by up to 15 degrees, scale zooms about the centre by
    0.9-1.1, shift moves by up to 9.6 px: measured on keypoints of 400 samples."""
    n = 400
    Y = input_data.keypoints_to_unit(synthetic_faces.sample_keypoints(n, np.random.default_rng(0)))
    images = np.zeros((n, 96, 96, 1), np.float32)

    def moved(spec):
        return to_pixels(augment.augment_batch(images, Y, spec, seed=9)[1].numpy()).reshape(n, 15, 2)

    before = to_pixels(Y).reshape(n, 15, 2)
    # rotate: distances between keypoints kept, the eye line turned by up to +-15 degrees.
    after = moved("rotate")
    distances = lambda p: np.linalg.norm(p[:, :, None] - p[:, None, :], axis=-1)   # noqa: E731
    np.testing.assert_allclose(distances(after), distances(before), atol=1e-3)
    eye_line = lambda p: np.degrees(np.arctan2(*(p[:, 0] - p[:, 1]).T[::-1]))    # noqa: E731
    turned = eye_line(after) - eye_line(before)
    assert np.abs(turned).max() <= 15.0001 and np.abs(turned).max() > 14.5 and abs(turned.mean()) < 1.5
    # scale: about the centre (47.5, 47.5), by one factor per image in [0.9, 1.1].
    ratio = np.linalg.norm(moved("scale") - 47.5, axis=-1) / np.linalg.norm(before - 47.5, axis=-1)
    np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones((1, 15)), rtol=1e-4)
    assert 0.9 <= ratio.min() < 0.91 and 1.09 < ratio.max() <= 1.1
    # shift: the same for every keypoint of an image, up to 10% of 96 px per axis.
    shift = moved("shift") - before
    np.testing.assert_allclose(shift, shift[:, :1] * np.ones((1, 15, 1)), atol=1e-3)
    assert 9.6 - 0.3 < np.abs(shift).max() <= 9.6 + 1e-3


def test_augmented_synthetic_faces_keep_pupils_on_the_eye_centres():
    images, keypoints = synthetic_faces.make_faces(32, seed=5)
    X, Y = input_data.images_to_unit(images), input_data.keypoints_to_unit(keypoints)
    out_images, out_Y = (t.numpy() for t in augment.augment_batch(X, Y, STRONG, seed=2))
    assert np.abs(out_Y - Y).max() > 0.1                         # they did move
    points = to_pixels(out_Y)
    # The subject's left eye stays on the image's right, flipped or not (rotations <= 30 deg).
    assert (points[:, 0] > points[:, 2]).all()
    offsets = np.array([pupil_offset(image, kp[side:side + 2])
                        for image, kp in zip(out_images[..., 0], points) for side in (0, 2)])
    offsets = offsets[np.isfinite(offsets)]
    assert len(offsets) >= 48 and np.mean(offsets < 2.5) >= 0.9
    # The pupil is darker than the skin of the cheek below it.
    darker = []
    for image, kp in zip(out_images[..., 0], points):
        for eye, mouth in ((0, 22), (2, 24)):
            cheek = (kp[eye:eye + 2] + kp[mouth:mouth + 2]) / 2
            if np.all((kp[eye:eye + 2] > 1) & (kp[eye:eye + 2] < 94) & (cheek > 1) & (cheek < 94)):
                darker.append(sample(image, kp[eye:eye + 2]) < sample(image, cheek) - 0.08)
    assert len(darker) >= 48 and np.mean(darker) >= 0.95


def sample(image, xy, radius=1):
    x, y = int(round(xy[0])), int(round(xy[1]))
    return image[y - radius:y + radius + 1, x - radius:x + radius + 1].mean()


# ---------------------------------------------------------------------------------------
# NaN, seeds, "none", the flipped half

def test_nan_stays_nan_and_the_rest_stays_finite():
    rng = np.random.default_rng(4)
    images = rng.random((40, 96, 96, 1), dtype=np.float32)
    Y = rng.uniform(-0.6, 0.6, (40, 30)).astype(np.float32)
    Y[np.repeat(rng.random((40, 15)) < 0.4, 2, axis=1)] = np.nan     # missing x and y together
    for spec in ("flip", "light", "all", STRONG):
        config = augment.parse(spec)
        _, out = augment.augment_batch(images, Y, config, seed=(5, 6))
        out = out.numpy()
        flipped = augment.random_transforms(40, config, (5, 6))["flipped"].numpy()
        expected = np.where(flipped[:, None], np.isnan(Y[:, PERMUTATION]), np.isnan(Y))
        np.testing.assert_array_equal(np.isnan(out), expected)
        assert np.isfinite(out[~expected]).all()


def test_a_fixed_seed_reproduces_the_batch_and_other_seeds_do_not():
    images, Y = blob_batch(16, seed=2)
    first = [t.numpy() for t in augment.augment_batch(images, Y, "all", seed=7)]
    again = [t.numpy() for t in augment.augment_batch(images, Y, "all", seed=tf.constant([7, 0]))]
    other = [t.numpy() for t in augment.augment_batch(images, Y, "all", seed=8)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first[0], other[0])
    assert not np.allclose(np.nan_to_num(first[1]), np.nan_to_num(other[1]))


def test_none_returns_the_inputs_unchanged():
    images, Y = blob_batch(4)
    out_images, out_Y = augment.augment_batch(images, Y, "none", seed=1)
    assert out_images is images and out_Y is Y


def test_half_of_a_batch_is_flipped():
    config = augment.parse("flip")
    for seed in range(3):
        assert augment.random_transforms(1000, config, seed)["flipped"].numpy().sum() == 500
    counts = [augment.random_transforms(7, config, seed)["flipped"].numpy().sum() for seed in range(40)]
    assert set(counts) == {3, 4}      # odd batches: rounded up or down at random
    # And it is the images that are mirrored, exactly.
    rng = np.random.default_rng(0)
    images = rng.random((200, 96, 96, 1), dtype=np.float32)
    out, _ = augment.augment_batch(images, np.zeros((200, 30), np.float32), config, seed=3)
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out.numpy(), images)]
    same = [np.array_equal(o, i) for o, i in zip(out.numpy(), images)]
    assert sum(mirrored) == 100 and sum(same) == 100


def test_parse():
    assert augment.parse("none") == augment.parse(None) == augment.AugmentConfig()
    assert not augment.parse("none").enabled
    flip = augment.parse("flip")
    assert flip.flip == augment.FLIP_FRACTION and not flip.geometric and not flip.light
    full = augment.parse("flip, rotate,shift,scale,light")
    assert full == augment.parse("all") == augment.ALL
    assert (full.rotate, full.shift, full.scale) == (15.0, 0.1, (0.9, 1.1))
    assert (full.brightness, full.contrast) == (0.1, (0.8, 1.2))
    assert str(full) == "flip,rotate,shift,scale,light" and str(augment.parse("none")) == "none"
    assert augment.parse(STRONG) is STRONG
    with pytest.raises(ValueError, match="sharpen"):
        augment.parse("flip,sharpen")
    texture = augment.parse("blur,erase=0.3")       # not part of "all"
    assert (texture.blur, texture.erase) == (augment.BLUR_SIGMA, 0.3) and texture.texture
    assert not texture.geometric and str(texture) == "blur,erase=0.3" and augment.parse(str(texture)) == texture


def test_parse_sizes():
    mild = augment.parse("flip,rotate=10,shift=0.03,scale=0.05,light=0.05")
    assert mild == augment.AugmentConfig(flip=0.5, rotate=10.0, shift=0.03, scale=(0.95, 1.05),
                                         brightness=0.05, contrast=(0.9, 1.1))
    assert str(mild) == "flip,rotate=10,shift=0.03,scale=0.05,light=0.05"
    assert augment.parse(str(mild)) == mild
    assert augment.parse("rotate=15") == augment.parse("rotate")
    with pytest.raises(ValueError, match="must be a number"):
        augment.parse("rotate=ten")
    with pytest.raises(ValueError, match="out of range"):
        augment.parse("shift=2")


def test_blur_and_erase_change_pixels_not_keypoints_nor_the_other_draws():
    images, Y = blob_batch(64, seed=2)
    base = "flip,rotate=10,shift=0.03,scale=0.05"
    plain_images, plain_Y = (t.numpy() for t in augment.augment_batch(images, Y, base, seed=5))
    out_images, out_Y = (t.numpy() for t in augment.augment_batch(images, Y, base + ",blur,erase", seed=5))
    again, _ = augment.augment_batch(images, Y, base + ",blur,erase", seed=5)
    np.testing.assert_array_equal(out_Y, plain_Y)             # same transforms, NaN kept
    np.testing.assert_array_equal(out_images, again.numpy())  # a seed repeats
    assert 0 <= out_images.min() and out_images.max() <= 1
    assert np.mean([not np.allclose(o, p) for o, p in zip(out_images, plain_images)]) > 0.9


def test_blur_keeps_a_spot_where_it_was_and_a_flat_image_flat():
    images = np.stack([blob(30.3, 60.7), np.full((96, 96), 0.7, np.float32)])[..., None]
    out = augment.augment_batch(images, np.zeros((2, 30), np.float32), "blur=2", seed=1)[0].numpy()
    assert not np.allclose(out[0], images[0])
    np.testing.assert_allclose(centroid(out[0, ..., 0]), [30.3, 60.7], atol=0.05)
    np.testing.assert_allclose(out[1], 0.7, atol=1e-5)        # no dark rim from the zero padding


def test_erase_fills_one_rectangle_on_about_half_the_images():
    images = np.full((200, 96, 96, 1), 0.5, np.float32)
    images[:, ::2, ::2] = 0.6                                 # a texture no grey fill matches
    out = augment.augment_batch(images, np.zeros((200, 30), np.float32), "erase=0.4", seed=3)[0].numpy()
    changed = (out != images)[..., 0]
    erased = changed.any(axis=(1, 2))
    assert 70 < erased.sum() < 130
    for mask in changed[erased]:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert 0.1 * 96 - 1 <= min(height, width) and max(height, width) <= 0.4 * 96 + 1


# ---------------------------------------------------------------------------------------
# The pipeline

def numbered_set(n=50):
    """Image i is constant i / n, Y[i, 0] = i; a few NaNs elsewhere."""
    X = np.broadcast_to((np.arange(n, dtype=np.float32) / n)[:, None, None, None], (n, 96, 96, 1)).copy()
    Y = np.zeros((n, 30), np.float32)
    Y[:, 0] = np.arange(n)
    Y[::3, 6:8] = np.nan
    return X, Y


def epoch(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_pipeline_yields_every_sample_once_per_epoch_in_new_orders():
    X, Y = numbered_set(50)
    dataset = augment.pipeline(X, Y, batch_size=16, seed=3)
    assert dataset.element_spec[0].dtype == tf.float32 and dataset.element_spec[1].dtype == tf.float32
    orders = []
    for _ in range(2):
        batches = epoch(dataset)
        assert [len(x) for x, _ in batches] == [16, 16, 16, 2]
        assert all(x.shape[1:] == (96, 96, 1) and y.shape[1:] == (30,) for x, y in batches)
        images, targets = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
        order = targets[:, 0].astype(int)
        np.testing.assert_array_equal(np.sort(order), np.arange(50))
        np.testing.assert_array_equal(images, X[order])                   # untouched
        np.testing.assert_array_equal(targets, Y[order])                  # NaN included
        orders.append(order)
    assert not np.array_equal(orders[0], orders[1])
    # Not shuffled: in order; repeat: endless.
    in_order = np.concatenate([y for _, y in epoch(augment.pipeline(X, Y, 16, shuffle=False))])[:, 0]
    np.testing.assert_array_equal(in_order, np.arange(50))
    endless = augment.pipeline(X, Y, 16, repeat=True)
    sizes = [len(x) for x, _ in endless.take(10)]
    assert sizes == [16, 16, 16, 2] * 2 + [16, 16]                   # epochs end with their rest


def test_pipeline_gives_every_batch_and_epoch_its_own_transform_reproducibly():
    image, Y = blob_batch(1, seed=4)
    X, Y = np.repeat(image, 32, axis=0), np.repeat(Y, 32, axis=0)     # 32 copies of one sample

    def two_epochs(seed):
        dataset = augment.pipeline(X, Y, batch_size=8, augment="all", seed=seed, shuffle=False)
        return [y for _ in range(2) for _, y in epoch(dataset)]

    runs = two_epochs(seed=1)
    assert len(runs) == 8
    flat = [np.nan_to_num(y) for y in runs]
    for i in range(8):
        for j in range(i):
            assert not np.allclose(flat[i], flat[j]), f"batches {j} and {i} were augmented alike"
    for a, b in zip(runs, two_epochs(seed=1)):                        # same seed, same run
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(flat[0], np.nan_to_num(two_epochs(seed=2)[0]))


def test_pipeline_with_a_subset_of_columns():
    cols = ["left_eye_center_x", "left_eye_center_y", "right_eye_center_x", "right_eye_center_y"]
    images, Y = blob_batch(10)
    Y4 = np.nan_to_num(Y[:, :4], nan=0.1)
    x, y = next(iter(augment.pipeline(images, Y4, 10, augment="all", cols=cols)))
    assert x.shape == (10, 96, 96, 1) and y.shape == (10, 4)
    with pytest.raises(ValueError):
        augment.pipeline(images, Y4, 10, augment="flip")             # 4 columns need cols=
    with pytest.raises(ValueError, match="partner"):
        augment.pipeline(images, Y4[:, :3], 10, augment="rotate", cols=cols[:3])


# ---------------------------------------------------------------------------------------
# Flip test-time augmentation

def blob_finder(offset_px=0.0):
    """A 'model' that finds the blob exactly (its centroid) and reports it offset_px to the
    right, for every keypoint: what a network trained on labels with that offset should do."""
    def find_blob(images):
        weight = images[..., 0]
        grid = keras.ops.arange(96, dtype="float32")
        total = keras.ops.sum(weight, axis=(1, 2))
        x = keras.ops.sum(weight * grid[None, None, :], axis=(1, 2)) / total + offset_px
        y = keras.ops.sum(weight * grid[None, :, None], axis=(1, 2)) / total
        return keras.ops.tile((keras.ops.stack([x, y], axis=1) - 48.0) / 48.0, (1, 15))
    return keras.Sequential([keras.Input((96, 96, 1)), keras.layers.Lambda(find_blob)])


def test_predict_with_flip_of_a_constant_model():
    c = np.linspace(-0.5, 0.5, 30).astype(np.float32)
    model = keras.Sequential([keras.Input((96, 96, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(30, kernel_initializer="zeros",
                                                 bias_initializer=keras.initializers.Constant(c))])
    X = np.random.default_rng(0).random((5, 96, 96, 1), dtype=np.float32)
    predicted = augment.predict_with_flip(model, X, batch_size=2)
    assert predicted.shape == (5, 30) and predicted.dtype == np.float32
    np.testing.assert_allclose(predicted, np.tile((c + augment.flip_keypoints(c[None]))[0] / 2, (5, 1)),
                               atol=1e-6)


def test_predict_with_flip_of_an_exact_model_changes_nothing():
    """A 'model' that finds the blob exactly (its centroid) is mirror-equivariant, so the
    flip-averaged prediction equals its plain prediction, if and only if the mirror is
    right: with 96 - x the average would be half a pixel off."""
    model = blob_finder()
    rng = np.random.default_rng(1)
    points = rng.uniform(20, 76, (6, 2))
    X = np.stack([blob(x, y, background=0.0) for x, y in points])[..., None]
    plain = model.predict(X, verbose=0)
    np.testing.assert_allclose(plain[:, :2], input_data.keypoints_to_unit(points), atol=1e-5)
    np.testing.assert_allclose(augment.predict_with_flip(model, X), plain, atol=1e-5)


# ---------------------------------------------------------------------------------------
# Labels that sit off the pixels' mirror: mirror_axis

OFFSET = 0.8                     # px: labels this far right of the feature they mark
AXIS = augment.CENTER + OFFSET   # the x about which such labels mirror


@pytest.mark.parametrize("spec", ["flip", "strong"])
def test_a_label_offset_survives_every_transform_with_its_mirror_axis(spec):
    """Labels 0.8 px right of their blobs stay 0.8 px right of them after mirroring, turning,
    zooming and shifting when the transforms know the axis; with the image's own axis the
    mirrored half would be 0.8 px left instead (the bias a model then learns half of)."""
    config = STRONG if spec == "strong" else augment.parse(spec)
    images, Y = blob_batch(64, seed=2)
    Y = Y + np.where(np.arange(30) % 2 == 0, OFFSET / 48, 0).astype(np.float32)   # x += 0.8 px
    flipped = augment.random_transforms(64, config, 5)["flipped"].numpy()
    # (47.5 with rotations would also turn the offset itself: only the mirror is compared.)
    cases = [(AXIS, OFFSET)] + ([(augment.CENTER, -OFFSET)] if spec == "flip" else [])
    for axis, expected_when_mirrored in cases:
        out_images, out_Y = (t.numpy() for t in augment.augment_batch(images, Y, config, 5, mirror_axis=axis))
        label_minus_blob = np.array([to_pixels(after[~np.isnan(after)]) - centroid(image)
                                     for image, after in zip(out_images[..., 0], out_Y)])
        np.testing.assert_allclose(label_minus_blob[~flipped, 0], OFFSET, atol=0.3)
        np.testing.assert_allclose(label_minus_blob[flipped, 0], expected_when_mirrored, atol=0.3)
        np.testing.assert_allclose(label_minus_blob[:, 1], 0, atol=0.3)


def test_flip_keypoints_about_an_axis():
    Y = input_data.keypoints_to_unit(synthetic_faces.sample_keypoints(4, np.random.default_rng(3)))
    flipped = to_pixels(augment.flip_keypoints(Y, mirror_axis=AXIS))
    np.testing.assert_allclose(flipped[:, 0::2][:, PERMUTATION[0::2] // 2], 2 * AXIS - to_pixels(Y)[:, 0::2], atol=1e-4)
    np.testing.assert_allclose(augment.flip_keypoints(augment.flip_keypoints(Y, mirror_axis=AXIS),
                                                      mirror_axis=AXIS), Y, atol=1e-6)
    np.testing.assert_allclose(augment.flip_keypoints(Y, mirror_axis=augment.CENTER), augment.flip_keypoints(Y))


def test_mirror_axis_is_the_labels_midline():
    # Symmetric faces about 47.5, moved 0.7 px right: the axis is 48.2; NaN keypoints skipped.
    pixels = synthetic_faces.sample_keypoints(50, np.random.default_rng(4))
    symmetric = (to_pixels(input_data.keypoints_to_unit(pixels)) + to_pixels(
        augment.flip_keypoints(input_data.keypoints_to_unit(pixels)))) / 2
    Y = input_data.keypoints_to_unit(symmetric + np.where(np.arange(30) % 2 == 0, 0.7, 0))
    Y[::3, 20:30] = np.nan
    assert augment.mirror_axis(Y) == pytest.approx(48.2, abs=1e-4)
    # By hand: the nose tip (the midline) at 52, 53 -> 52.5; without it, the eyes' midpoints 50.
    cols = ["left_eye_center_x", "left_eye_center_y", "right_eye_center_x", "right_eye_center_y", "nose_tip_x"]
    Y = input_data.keypoints_to_unit(np.array([[70.0, 40, 30, 40, 52], [71, 40, 29, 40, 53]]))
    assert augment.mirror_axis(Y, cols) == pytest.approx(52.5, abs=1e-4)
    assert augment.mirror_axis(Y[:, :4], cols[:4]) == pytest.approx(50.0, abs=1e-4)
    # Nothing to measure it on (one eye only): the image's own axis.
    assert augment.mirror_axis(Y[:, :2], cols[:2]) == augment.CENTER


def test_predict_with_flip_keeps_a_models_label_offset():
    """A model that finds its blob and reports it 0.8 px to the right, as it was taught:
    flip TTA with the model's axis changes nothing; with 47.5 it would drag x 0.8 px left."""
    model = blob_finder(OFFSET)
    points = np.random.default_rng(5).uniform(20, 76, (6, 2))
    X = np.stack([blob(x, y, background=0.0) for x, y in points])[..., None]
    plain = model.predict(X, verbose=0)
    np.testing.assert_allclose(augment.predict_with_flip(model, X, mirror_axis=AXIS), plain, atol=1e-5)
    model.mirror_axis = AXIS                                      # as train.load_model sets it
    np.testing.assert_allclose(augment.predict_with_flip(model, X), plain, atol=1e-5)
    centred = augment.predict_with_flip(model, X, mirror_axis=augment.CENTER)
    np.testing.assert_allclose(48 * (centred - plain)[:, 0::2], -OFFSET, atol=1e-3)


def test_pipeline_with_an_epoch_variable_depends_on_the_epoch_alone():
    """The engine's mode: order and transforms follow (seed, epoch), not how often it was iterated."""
    n = 50
    X = np.random.default_rng(0).random((n, 96, 96, 1), dtype=np.float32)
    Y = np.tile(np.arange(n, dtype=np.float32)[:, None], (1, 30)) / 100
    epoch = tf.Variable(0, dtype=tf.int64)
    dataset = augment.pipeline(X, Y, 16, "flip", seed=3, epoch=epoch)

    def one_pass():
        ys, xs = zip(*[(b[1].numpy(), b[0].numpy()) for b in dataset])
        return np.concatenate(ys), np.concatenate(xs)

    first, first_x = one_pass()
    again, again_x = one_pass()                      # a second iterator, same epoch
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first_x, again_x)
    order = np.round(first[:, 21] * 100).astype(int)  # nose_tip_y: the mirror leaves it alone
    assert sorted(order) == list(range(n)) and list(order) != list(range(n))
    epoch.assign(1)
    second, _ = one_pass()
    assert sorted(np.round(second[:, 21] * 100).astype(int)) == list(range(n))
    assert not np.array_equal(second[:, 21], first[:, 21])


def test_pipeline_does_not_autotune():
    # tf.data's autotuner made every epoch wait for its backoff sleep (epochs of exactly 5.1,
    # 10.2, 20.5 s; README, "Training speed"): the pipeline runs with fixed parallelism.
    X = np.zeros((8, 96, 96, 1), np.float32)
    Y = np.zeros((8, 30), np.float32)
    for spec in ("none", "all"):
        dataset = augment.pipeline(X, Y, 4, spec, seed=0)
        assert dataset.options().autotune.enabled is False
        assert sum(len(x) for x, _ in dataset) == 8
