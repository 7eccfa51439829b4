"""Alignment: warp each face so that its eyes and mouth sit where a template has them.

The keypoint network finds the eye centres and the mouth; a similarity transform (rotation,
uniform scale, shift: a face is not stretched) fitted to those three points by least squares
(Umeyama 1991) maps them onto the template, and the photo is warped once into an upright
96x96 face. Every recognition feature is computed on these aligned faces, as in the FaceNet
and ArcFace pipelines: the network then compares faces, not poses.
"""
import numpy as np

import input_data

SIZE = input_data.IMAGE_SIZE
# Where the aligned face has its left eye centre, right eye centre and mouth centre (96-px
# frame, x right, y down; "left" is the person's left, on the image's right as in Kaggle's
# labels). The means of Kaggle's labels (eyes 66.4/30.3 at y 37.7-38.0, mouth points'
# mean 48.2, 76.0) made symmetric about the image's own axis 47.5, so that the mirror image
# of an aligned face is an aligned face (test-time flip needs no second alignment).
KAGGLE_TEMPLATE = np.array([[65.5, 38.0], [29.5, 38.0], [47.5, 76.0]])
# The recognition template (the aligned faces every feature is computed on). The Kaggle frame
# above is where the keypoint net reads best, so faces.Aligner's later keypoint passes warp onto
# KAGGLE_TEMPLATE and only the last warp uses TEMPLATE. A wider face (eyes 30 px apart at y 40,
# mouth at y 72: more hair, jaw and face shape) was worse on people never trained on (41.0%
# top-1 against 43.0%, docs/recognition.md): the recognition template is the Kaggle frame.
TEMPLATE = KAGGLE_TEMPLATE.copy()
# Kaggle's 15 keypoints (input_data.KEYPOINT_NAMES order) -> the three template points.
LEFT_EYE, RIGHT_EYE = 0, 1
MOUTH = (11, 12, 13, 14)   # the mouth's corners and lip centres: their mean


def template_points(keypoints):
    """(..., 15, 2) Kaggle keypoints -> (..., 3, 2): left eye, right eye, mouth centre."""
    k = np.asarray(keypoints, np.float64)
    return np.stack([k[..., LEFT_EYE, :], k[..., RIGHT_EYE, :], k[..., MOUTH, :].mean(axis=-2)], axis=-2)


def similarity(source, target):
    """The 2x3 similarity transform (rotation, uniform scale, shift) that maps the points
    source (n, 2) onto target (n, 2) with the least squared error (Umeyama 1991)."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    mu_s, mu_t = source.mean(0), target.mean(0)
    s, t = source - mu_s, target - mu_t
    variance = (s ** 2).sum() / len(s)
    if not np.isfinite(variance) or variance <= 1e-12:
        raise ValueError("degenerate points: they do not span a face")
    covariance = t.T @ s / len(s)
    u, d, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / variance)
    shift = mu_t - scale * rotation @ mu_s
    return np.hstack([scale * rotation, shift[:, None]])


def apply(matrix, points):
    """(..., 2) points through a 2x3 affine matrix."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp(gray, matrix, size=SIZE):
    """uint8 (H, W) photo -> uint8 (size, size) through the 2x3 matrix (photo -> output
    pixels). Shrinking averages areas as input_data.Frame.crop does: warp to a whole
    multiple f x size, then average f x f blocks (pixel u of the output is at u * f + (f - 1) / 2
    of the big warp). Outside the photo, edges are replicated."""
    import cv2
    matrix = np.asarray(matrix, np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    f = max(1, int(np.ceil(1.0 / max(scale, 1e-12))))
    big = matrix * f
    big[:, 2] += (f - 1) / 2
    warped = cv2.warpAffine(np.asarray(gray, np.uint8), big, (size * f, size * f), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    if f > 1:
        warped = cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA)
    return warped


def alignment_matrix(keypoints, template=None):
    """2x3 photo -> aligned-face matrix from a face's 15 keypoints (photo pixels), onto
    template (default TEMPLATE)."""
    return similarity(template_points(keypoints), TEMPLATE if template is None else template)


def align(gray, keypoints):
    """uint8 (96, 96): the face with these 15 keypoints (photo pixels), upright, its eyes and
    mouth at TEMPLATE."""
    return warp(gray, alignment_matrix(keypoints))
