"""People: one person's looks (Traits), the same in every image of that person, for the
face-recognition extension."""
from dataclasses import dataclass, fields

import numpy as np

from synthesis.keypoints import N_NORMALS


@dataclass(frozen=True)
class Traits:
    """One person's looks. Tones run from 0 (black) to 1 (white); sizes are relative to the face."""
    skin: float            # skin tone
    hair: float            # hair tone
    hairline: float        # where the hair starts above the eye line, in eye-to-mouth distances
    face_width: float      # head width relative to the eye distance (1 = average)
    face_length: float     # head length relative to the eye-to-mouth distance (1 = average)
    jaw: float             # how much narrower the jaw is than the forehead (0 = an ellipse)
    eye_open: float        # eye opening, as the almond's height / width
    iris: float            # iris radius / eye width
    iris_tone: float
    brow_thickness: float  # at the inner end, in eye distances
    brow_arch: float       # arch height / brow length
    brow_tone: float
    nose_size: float       # nose width relative to average
    lip_tone: float        # lips' tone as a fraction of the skin tone
    glasses: bool
    mole_u: float          # a mole: across the face from the eye midpoint, in eye distances,
    mole_v: float          # down from it in eye-to-mouth distances,
    mole_size: float       # and its radius in eye distances (0 = no mole)
    shape: tuple           # the person's own face proportions: N_NORMALS numbers, see make_faces

    def as_vector(self):
        """All traits as one float64 vector (looks, then shape)."""
        looks = [getattr(self, f.name) for f in fields(self) if f.name != "shape"]
        return np.concatenate([np.array(looks, np.float64), self.shape])


TRAIT_RANGES = {
    "skin": (0.5, 0.85), "hair": (0.05, 0.6), "hairline": (0.6, 1.1),
    "face_width": (0.9, 1.12), "face_length": (0.9, 1.1), "jaw": (0.05, 0.3),
    "eye_open": (0.32, 0.5), "iris": (0.18, 0.26), "iris_tone": (0.08, 0.35),
    "brow_thickness": (0.055, 0.11), "brow_arch": (0.0, 0.22), "brow_tone": (0.05, 0.3),
    "nose_size": (0.85, 1.2), "lip_tone": (0.5, 0.8),
}
GLASSES_RATE = 0.25
MOLE_RATE = 0.4

# make_faces mixes a person's own `shape` normals with each image's fresh ones so that
# this share of the keypoint variance is the person's (their proportions, and, as in most
# photo sets of one person, part of their usual pose) and the rest changes from image to
# image. The mix is again standard normal, so every face still follows Kaggle's statistics.
IDENTITY_SHAPE_SHARE = 0.6


def random_traits(rng):
    """A random person. Always draws the same amount from rng, so sequences stay reproducible."""
    values = {name: rng.uniform(low, high) for name, (low, high) in TRAIT_RANGES.items()}
    glasses = bool(rng.random() < GLASSES_RATE)
    has_mole = rng.random() < MOLE_RATE
    mole_u = rng.choice([-1, 1]) * rng.uniform(0.5, 0.95)  # on a cheek, clear of eyes and mouth
    mole_v, mole_size = rng.uniform(0.35, 1.1), rng.uniform(0.025, 0.045) * has_mole
    shape = tuple(rng.standard_normal(N_NORMALS))
    return Traits(**values, glasses=glasses, mole_u=mole_u, mole_v=mole_v, mole_size=mole_size,
                  shape=shape)


def make_identities(n_people, seed=0):
    """n_people people (a list of Traits) for make_faces(identities=..., person_ids=...)."""
    rng = np.random.default_rng(seed)
    return [random_traits(rng) for _ in range(n_people)]
