"""The alignment (recognition/align.py): a rotated and scaled synthetic face comes back upright,
its eyes and mouth at the template's positions."""
import numpy as np
import pytest

from recognition import align
import synthetic_faces


def rotation_scale(angle_degrees, scale, centre=(47.5, 47.5), shift=(0.0, 0.0)):
    """2x3 matrix: rotate by angle and scale about centre, then shift."""
    a = np.deg2rad(angle_degrees)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    c = np.asarray(centre)
    return np.hstack([r, (c - r @ c + np.asarray(shift))[:, None]])


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 96, (5, 2))
    truth = rotation_scale(23.0, 0.7, shift=(4.0, -3.0))
    found = align.similarity(source, align.apply(truth, source))
    np.testing.assert_allclose(found, truth, atol=1e-9)


def test_similarity_refuses_degenerate_points():
    with pytest.raises(ValueError, match="degenerate"):
        align.similarity(np.ones((3, 2)), align.TEMPLATE)


def test_template_is_its_own_mirror_image():
    mirrored = align.TEMPLATE.copy()
    mirrored[:, 0] = 95 - mirrored[:, 0]
    np.testing.assert_allclose(np.sort(mirrored[:, 0]), np.sort(align.TEMPLATE[:, 0]))


@pytest.mark.parametrize("angle, scale", [(25.0, 0.8), (-18.0, 1.25), (0.0, 0.6)])
def test_rotated_scaled_face_comes_back_upright_at_the_template(angle, scale):
    images, keypoints = synthetic_faces.make_faces(1, seed=3)
    face, points = images[0], keypoints[0].reshape(15, 2)
    upright = align.align(face, points)
    # the same face turned and resized in a larger photo
    transform = rotation_scale(angle, scale * 2, shift=(40.0, 30.0))
    photo = align.warp(face, transform, size=200)
    moved = align.apply(transform, points)
    again = align.align(photo, moved)
    matrix = align.alignment_matrix(moved)
    eyes_and_mouth = align.apply(matrix, align.template_points(moved))
    # upright: the eyes level, at the template's eye positions within the face's own
    # deviation from the template (the least-squares fit of three points)
    eye_line = eyes_and_mouth[0] - eyes_and_mouth[1]
    assert abs(np.degrees(np.arctan2(eye_line[1], eye_line[0]))) < 4.0
    np.testing.assert_allclose(eyes_and_mouth, align.TEMPLATE, atol=4.0)
    np.testing.assert_allclose(eyes_and_mouth, align.apply(align.alignment_matrix(points),
                                                           align.template_points(points)), atol=1e-6)
    # and the pixels: the face aligned from the turned photo is the face aligned from the original
    inner = (slice(20, 84), slice(15, 81))
    difference = np.abs(again[inner].astype(float) - upright[inner].astype(float)).mean()
    assert difference < 6.0, difference
    assert np.abs(photo[:96, :96].astype(float) - face.astype(float)).mean() > 20   # it did move


def test_warp_shrinks_by_averaging():
    """A large photo shrunk to 96 px averages areas: a fine checkerboard becomes flat grey."""
    board = (np.indices((960, 960)).sum(0) % 2 * 255).astype(np.uint8)
    shrunk = align.warp(board, np.array([[0.1, 0.0, 0.0], [0.0, 0.1, 0.0]]))
    assert shrunk.shape == (96, 96)
    assert abs(float(shrunk.mean()) - 127.5) < 2 and shrunk.std() < 3
