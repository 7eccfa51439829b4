"""Drawing one face: the tools (anti-aliased masks on a float32 canvas, curves, strokes, the
face's own axes), then its parts painted on their keypoints, then the photo's light, blur and
noise (render_face)."""
from functools import lru_cache
from typing import NamedTuple

import cv2
import numpy as np

from dataset.kaggle_format import IMAGE_SIZE, KEYPOINT_NAMES
from synthesis.people import random_traits

N_KEYPOINTS = len(KEYPOINT_NAMES)


# ---------------------------------------------------------------------------------------
# Drawing tools. Everything is painted on a float32 canvas in [0, 1] through anti-aliased
# coverage masks, with sub-pixel coordinates, so a part lands exactly where its keypoint is.

SHIFT = 4  # cv2's fractional bits: points are drawn to 1/16 of a pixel
_ONE = 1 << SHIFT


class _Patch(NamedTuple):
    """A coverage mask (float32 in [0, 1]) for the part of the canvas at rows top.., cols left.."""
    mask: np.ndarray
    top: int
    left: int

    @property
    def box(self):
        return self.top, self.left, self.top + self.mask.shape[0], self.left + self.mask.shape[1]

    def __mul__(self, other):
        """Where both cover (other must share the box: made with box=self.box)."""
        return _Patch(self.mask * other.mask, self.top, self.left)


def _mask(*polygons, blur=0.0, box=None):
    """Filled polygons ((k, 2) pixel coordinates) -> their anti-aliased coverage as a _Patch.

    Several polygons fill with holes where they overlap (a ring = outer + inner outline).
    blur softens the edge (Gaussian sigma, pixels). Only the polygons' bounding box is drawn,
    which keeps small parts cheap; box=(top, left, bottom, right) draws in a given box instead.
    """
    if box is None:
        points = polygons[0] if len(polygons) == 1 else np.concatenate(polygons)
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        margin = 3 * blur + 2
        top, left = min(max(int(y0 - margin), 0), IMAGE_SIZE), min(max(int(x0 - margin), 0), IMAGE_SIZE)
        box = (top, left, max(min(int(y1 + margin) + 1, IMAGE_SIZE), top),
               max(min(int(x1 + margin) + 1, IMAGE_SIZE), left))
    top, left, bottom, right = box
    mask = np.zeros((bottom - top, right - left), np.uint8)
    if mask.size == 0:  # the part is outside the frame
        return _Patch(mask.astype(np.float32), top, left)
    offset = np.array([left, top], np.float64)
    fixed = [np.rint((p - offset) * _ONE).astype(np.int32) for p in polygons]
    cv2.fillPoly(mask, fixed, 255, cv2.LINE_AA, SHIFT)
    mask = mask.astype(np.float32) * (1.0 / 255)
    if blur > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), blur)
    return _Patch(mask, top, left)


def _paint(canvas, patch, tone, alpha=1.0):
    """Paint `tone` over the canvas where the patch covers it (in place)."""
    top, left, bottom, right = patch.box
    region = canvas[top:bottom, left:right]
    region += (alpha * patch.mask) * (tone - region)


@lru_cache(maxsize=None)
def _bezier_weights(n):
    t = np.linspace(0.0, 1.0, n)[:, None]
    return np.hstack([(1 - t) ** 2, 2 * (1 - t) * t, t ** 2])


@lru_cache(maxsize=None)
def _unit_circle(n):
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.cos(t), np.sin(t)


def _curve(start, through, end, n=12):
    """n points of the quadratic Bezier from start to end that passes through `through`."""
    control = 2 * through - (start + end) / 2
    return _bezier_weights(n) @ np.stack([start, control, end])


def _stroke(points, width):
    """Outline polygon of a line of `width` (one number, or one per point) along points."""
    direction = np.empty_like(points)
    direction[1:-1] = points[2:] - points[:-2]
    direction[0], direction[-1] = points[1] - points[0], points[-1] - points[-2]
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
    half = np.reshape(width, (-1, 1)) / 2
    return np.concatenate([points + normal * half, (points - normal * half)[::-1]])


MOUTH = ("mouth_left_corner", "mouth_right_corner", "mouth_center_top_lip", "mouth_center_bottom_lip")


class _Face:
    """A face's keypoints and its own axes: ex along the eye line towards the subject's left
    (image right), ey down the face. Parts are placed in these axes so they turn with the head."""

    def __init__(self, keypoints30):
        points = np.asarray(keypoints30, np.float64).reshape(N_KEYPOINTS, 2)
        self.point = dict(zip(KEYPOINT_NAMES, points))
        across = self["left_eye_center"] - self["right_eye_center"]
        length = np.hypot(*across)
        self.ex = across / length if length > 1e-6 else np.array([1.0, 0.0])
        self.ey = np.array([-self.ex[1], self.ex[0]])
        self.eye_distance = max(length, 8.0)
        self.eye_mid = (self["left_eye_center"] + self["right_eye_center"]) / 2
        mouth = np.mean([self[name] for name in MOUTH], axis=0)
        self.eye_to_mouth = max((mouth - self.eye_mid) @ self.ey, 0.5 * self.eye_distance)

    def __getitem__(self, name):
        return self.point[name]

    def at(self, origin, u, v):
        """The points origin + u ex + v ey (u, v in pixels, numbers or arrays)."""
        return origin + np.asarray(u)[..., None] * self.ex + np.asarray(v)[..., None] * self.ey

    def ellipse(self, center, a, b, n=28):
        """Polygon of an ellipse with half-axes a (along ex) and b (along ey)."""
        cos, sin = _unit_circle(n)
        return self.at(center, a * cos, b * sin)


# ---------------------------------------------------------------------------------------
# The parts of a face, in the order they are painted.

_GRID = np.linspace(-1.0, 1.0, IMAGE_SIZE, dtype=np.float32)


def _background(rng, skin):
    """Mostly darker than the skin, sometimes lighter, with a soft uneven texture."""
    if rng.random() < 0.75:
        tone = max(skin - rng.uniform(0.15, 0.45), 0.03)
    else:
        tone = min(skin + rng.uniform(0.12, 0.3), 0.97)
    blotches = cv2.resize(rng.uniform(-0.08, 0.08, (4, 4)).astype(np.float32),
                          (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_CUBIC)
    return np.float32(tone) + blotches


def _head_outline(face, traits, grow=1.0):
    """(u, v) of the head outline around the eye midpoint: an egg, narrower at the jaw.

    Sizes follow the face: ~1.2 eye distances to each side, the chin ~1.6 eye-to-mouth
    distances below the eyes, so that like Kaggle's crops the face fills most of the frame.
    The outline shifts away from the nose when the head turns.
    """
    a = 1.2 * traits.face_width * face.eye_distance * grow
    b = 1.42 * traits.face_length * face.eye_to_mouth * grow
    nose_u = (face["nose_tip"] - face.eye_mid) @ face.ex
    cos, sin = _unit_circle(48)
    u = a * cos * (1 - traits.jaw * np.clip(sin, 0, 1)) - 0.3 * nose_u
    v = b * sin + 0.18 * face.eye_to_mouth
    return u, v, a


def _draw_head(canvas, face, traits):
    """Hair, neck and ears, then the skin of the face below the hairline, darker towards its edges."""
    u, v, a = _head_outline(face, traits, grow=1.1)
    hair = face.at(face.eye_mid, u, v - 0.2 * face.eye_to_mouth)
    _paint(canvas, _mask(hair, blur=0.8), traits.hair)
    u, v, a = _head_outline(face, traits)
    middle = u.mean()  # the outline's centre line, off the eye midpoint when the head turns
    for side in (-1, 1):
        ear = face.ellipse(face.at(face.eye_mid, middle + side * 0.97 * a, 0.25 * face.eye_to_mouth),
                           0.15 * a, 0.3 * face.eye_to_mouth, n=16)
        _paint(canvas, _mask(ear, blur=0.6), 0.85 * traits.skin)

    neck_u = np.array([-0.42, 0.42, 0.5, -0.5]) * a
    neck_v = np.array([0.9, 0.9, 4.0, 4.0]) * face.eye_to_mouth
    _paint(canvas, _mask(face.at(face.eye_mid, neck_u, neck_v)), 0.75 * traits.skin)

    # The hairline: flat across the forehead, lower at the temples.
    hairline = (-traits.hairline + 0.45 * (u / a) ** 2) * face.eye_to_mouth
    skin = _mask(face.at(face.eye_mid, u, np.maximum(v, hairline)), blur=0.5)
    _paint(canvas, skin, traits.skin)
    rim = _Patch(skin.mask * (1 - cv2.GaussianBlur(skin.mask, (0, 0), 0.12 * a)), skin.top, skin.left)
    _paint(canvas, rim, 0.6 * traits.skin, alpha=0.8)


def _draw_eye(canvas, face, side, traits):
    """Almond from the inner to the outer corner, iris and pupil centred on the eye centre."""
    center = face[f"{side}_eye_center"]
    inner, outer = face[f"{side}_eye_inner_corner"], face[f"{side}_eye_outer_corner"]
    width = max(np.hypot(*(outer - inner)), 4.0)
    up = -face.ey
    skin = traits.skin

    socket = face.ellipse(center - 0.15 * width * face.ey, 0.8 * width, 0.5 * width)
    _paint(canvas, _mask(socket, blur=0.15 * width), 0.8 * skin, alpha=0.8)

    opening = traits.eye_open * width
    upper = _curve(inner, center + 0.55 * opening * up, outer)
    lower = _curve(outer, center - 0.45 * opening * up, inner)
    almond = _mask(np.concatenate([upper, lower]))
    _paint(canvas, almond, min(skin + 0.25, 0.92))

    radius = traits.iris * width
    glint = center + 0.45 * radius * (face.ex + up)  # a reflection of the light, off the pupil
    for spot, size, tone in ((center, radius, traits.iris_tone), (center, 0.5 * radius, 0.03),
                             (glint, 0.18 * radius, 0.9)):
        _paint(canvas, almond * _mask(face.ellipse(spot, size, size, n=16), box=almond.box), tone)

    # The lash line is dark but thin and lighter than the pupil, which stays the darkest spot.
    _paint(canvas, _mask(_stroke(upper, 0.8)), 0.3 * skin, alpha=0.8)
    _paint(canvas, _mask(_stroke(lower, 0.6)), 0.6 * skin, alpha=0.6)


def _draw_brow(canvas, face, side, traits):
    """A thick dark stroke from the inner to the outer end, arched, thinning outwards."""
    inner, outer = face[f"{side}_eyebrow_inner_end"], face[f"{side}_eyebrow_outer_end"]
    length = np.hypot(*(outer - inner))
    arch = (inner + outer) / 2 - traits.brow_arch * length * face.ey
    line = _curve(inner, arch, outer)
    width = np.linspace(1.0, 0.55, len(line)) * traits.brow_thickness * face.eye_distance
    _paint(canvas, _mask(_stroke(line, width), blur=0.5), traits.brow_tone, alpha=0.9)


def _draw_nose(canvas, face, traits, light_from_left):
    """A shadow down the side of the bridge away from the light, the wings of the nose,
    nostrils either side just below the tip, a shadow under the tip and a highlight on it."""
    tip, skin = face["nose_tip"], traits.skin
    width = 0.55 * traits.nose_size * face.eye_distance
    tall = face.eye_to_mouth
    dark = 1 if light_from_left else -1  # +1: the side towards the image's right
    bridge = np.stack([face.at(face.eye_mid, 0.12 * dark * face.eye_distance, 0.1 * tall),
                       face.at(tip, 0.35 * dark * width, -0.2 * tall)])
    _paint(canvas, _mask(_stroke(bridge, 0.2 * width), blur=0.15 * width), 0.7 * skin, 0.6)
    wings = [_stroke(_curve(face.at(tip, 0.3 * side * width, -0.18 * tall),
                            face.at(tip, 0.5 * side * width, 0.03 * tall),
                            face.at(tip, 0.28 * side * width, 0.11 * tall), n=8), 0.07 * width)
             for side in (-1, 1)]
    _paint(canvas, _mask(*wings, blur=0.6), 0.55 * skin, 0.8)
    nostrils = [face.ellipse(face.at(tip, 0.2 * side * width, 0.09 * tall), 0.12 * width, 0.045 * tall)
                for side in (-1, 1)]
    _paint(canvas, _mask(*nostrils, blur=0.5), 0.3 * skin, 0.9)
    under = face.ellipse(face.at(tip, 0, 0.15 * tall), 0.25 * width, 0.035 * tall)
    _paint(canvas, _mask(under, blur=0.8), 0.6 * skin, 0.7)
    highlight = face.ellipse(face.at(tip, 0, -0.03 * tall), 0.14 * width, 0.05 * tall)
    _paint(canvas, _mask(highlight, blur=1.0), min(1.2 * skin + 0.05, 1.0), 0.7)


def _draw_mouth(canvas, face, traits):
    """Upper lip from the corners up through the top-lip centre, lower lip down through the
    bottom-lip centre, and the dark line between them."""
    left, right = face["mouth_left_corner"], face["mouth_right_corner"]
    top, bottom = face["mouth_center_top_lip"], face["mouth_center_bottom_lip"]
    parting = top + 0.42 * (bottom - top)
    lip = traits.lip_tone * traits.skin

    shadow = face.ellipse(face.at(bottom, 0, 0.07 * face.eye_to_mouth),
                          0.22 * np.hypot(*(left - right)), 0.05 * face.eye_to_mouth)
    _paint(canvas, _mask(shadow, blur=1.2), 0.75 * traits.skin, 0.8)

    line = _curve(left, parting, right)
    upper = np.concatenate([_curve(right, top, left), line])
    lower = np.concatenate([line, _curve(right, bottom, left)])
    _paint(canvas, _mask(upper, blur=0.3), 0.8 * lip, 0.95)
    _paint(canvas, _mask(lower, blur=0.3), lip, 0.9)
    shine = face.ellipse(parting + 0.5 * (bottom - parting), 0.15 * np.hypot(*(left - right)),
                         0.12 * np.hypot(*(bottom - parting)))
    _paint(canvas, _mask(shine, blur=0.8), min(1.25 * lip, 1.0), 0.5)
    _paint(canvas, _mask(_stroke(line, 1.0)), 0.1, 0.85)


def _draw_glasses(canvas, face):
    """Round frames centred on the eyes, a bridge, and the arms towards the ears."""
    a, b = 0.36 * face.eye_distance, 0.27 * face.eye_distance
    frame = 0.035 * face.eye_distance
    rims = []
    for side in ("left", "right"):
        center = face[f"{side}_eye_center"] - 0.05 * face.eye_distance * face.ey
        rims += [face.ellipse(center, a + frame, b + frame, n=40), face.ellipse(center, a, b, n=40)]
    _paint(canvas, _mask(*rims), 0.1, 0.85)
    left = face.at(face["left_eye_center"], -a, -0.1 * face.eye_distance)
    right = face.at(face["right_eye_center"], a, -0.1 * face.eye_distance)
    bridge = _curve(right, (left + right) / 2 - 0.06 * face.eye_distance * face.ey, left, n=6)
    _paint(canvas, _mask(_stroke(bridge, 1.5 * frame)), 0.1, 0.85)
    for sign, side in ((1, "left"), (-1, "right")):
        start = face.at(face[f"{side}_eye_center"], sign * (a + frame), -0.1 * face.eye_distance)
        arm = np.stack([start, face.at(start, sign * 0.3 * face.eye_distance, 0.0)])
        _paint(canvas, _mask(_stroke(arm, 1.5 * frame)), 0.1, 0.85)


def _photograph(canvas, rng, light_angle):
    """Light gradient, contrast and brightness, lens blur, sensor noise -> uint8."""
    strength = rng.uniform(0.0, 0.35)
    ramp = np.cos(light_angle) * _GRID[None, :] + np.sin(light_angle) * _GRID[:, None]
    image = canvas * (1 + strength * ramp)
    contrast, brightness = rng.uniform(0.7, 1.2), rng.uniform(-0.12, 0.12)
    image = (image - 0.5) * contrast + 0.5 + brightness
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 0.9))
    image += rng.uniform(0.005, 0.03) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def render_face(keypoints30, rng, traits=None):
    """Draw one face with its parts on the 30 keypoints (pixels) -> uint8 (96, 96).

    traits: the person (a Traits); None draws a new random person.
    """
    traits = random_traits(rng) if traits is None else traits
    face = _Face(keypoints30)
    light_angle = rng.uniform(-np.pi, np.pi)
    canvas = _background(rng, traits.skin)
    _draw_head(canvas, face, traits)
    for side in ("left", "right"):
        _draw_eye(canvas, face, side, traits)
        _draw_brow(canvas, face, side, traits)
    _draw_nose(canvas, face, traits, light_from_left=np.cos(light_angle) < 0)
    _draw_mouth(canvas, face, traits)
    if traits.mole_size > 0:
        mole = face.at(face.eye_mid, traits.mole_u * face.eye_distance, traits.mole_v * face.eye_to_mouth)
        radius = traits.mole_size * face.eye_distance
        _paint(canvas, _mask(face.ellipse(mole, radius, radius, n=12), blur=0.4), 0.35 * traits.skin)
    if traits.glasses:
        _draw_glasses(canvas, face)
    return _photograph(canvas, rng, light_angle)
