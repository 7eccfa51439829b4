"""A prediction run's choices (Options) and their defaults; the statuses a photo can have.

Every per-run choice travels in Options, also into worker processes: no module global is
rewritten at run time.
"""
from pathlib import Path
from typing import NamedTuple, Optional

# Defaults chosen by measurement with bench/predict_accuracy.py (the figures: docs/experiments.md).
REFINE = True
REFINE_PASSES = 2            # re-crops from the keypoints (refine=True)
FLIP_TTA = "final"           # the mirrored crop too, on the last pass only (True: on every pass)
# Below the confidence bar a face is marked `low` and turned copies of the photo are searched for
# a better one. Each model carries its own bar (chosen when train.py ends: confidence.py; read by
# runtime.bar_of); this is the bar of a model that carries none, the shipped model's own
# (docs/predict.md, "Confidence").
LOW_CONFIDENCE = 0.2
# A run where more than this share of at least this many faces is below the bar says so: the
# bar, not the photos, is then likely wrong.
LOW_SHARE, LOW_SHARE_MIN_FACES = 0.5, 10

# A photo's status (the CSV's status column, PhotoResult.status): faces found and predicted, no
# face found, or the file could not be read (the CSV says "unreadable: <reason>"). A face row
# below the confidence bar says LOW instead of OK (its keypoints are written all the same): a
# face cut by the picture's edge, a face not quite a face, or no face at all.
OK, NO_FACE, UNREADABLE, LOW = "ok", "no_face", "unreadable", "low"


class Options(NamedTuple):
    model: object = None
    detect: bool = True
    refine: bool = REFINE
    flip_tta: bool = FLIP_TTA
    rotations: bool = True
    overlay_dir: Optional[Path] = None     # write <name>.png overlays here, or None
    sheet: bool = True                     # return the crops for the contact sheet
    threads: Optional[int] = None
    low_confidence: Optional[float] = None  # the run's bar; None: the model's own (runtime.with_bar)
