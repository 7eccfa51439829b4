"""A prediction run's choices (Options) and their defaults; the statuses a photo can have.

Every per-run choice travels in Options, also into worker processes: no module global is
rewritten at run time.
"""
from pathlib import Path
from typing import NamedTuple, Optional

# Defaults chosen by measurement (bench/predict_accuracy.py, docs/predict.md).
# On 287 held-out photos (a v6 trained on the training people): refine 1 pass + flip on both
# passes (the earlier default) 6.85% of the IOD; 2 passes, flip on the last only 6.61%, for the
# same four network calls per face; 3 passes 6.64%.
REFINE = True
REFINE_PASSES = 2            # re-crops from the keypoints (refine=True)
FLIP_TTA = "final"           # the mirrored crop too, on the last pass only (True: on every pass)
# Below this confidence a face is marked in the pictures and turned copies of the photo are
# searched for a better one. The shipped model's bar, measured on held-out people with its recipe
# (docs/predict.md): faces 0.19-0.35 (1st-95th percentile); noise and flat crops under 0.1, the
# photos' corners under 0.18, upside-down and wrong faces 0.16-0.19. A model trained for fewer
# epochs is less sure of everything (95 epochs: faces 0.155-0.225, wanting 0.15).
LOW_CONFIDENCE = 0.2
# A run where more than this share of at least this many faces is below the bar says so: the
# bar, not the photos, is then likely wrong (the shipped model: 0.5% of held-out faces).
LOW_SHARE, LOW_SHARE_MIN_FACES = 0.5, 10

# A photo's status (the CSV's status column, PhotoResult.status): faces found and predicted, no
# face found, or the file could not be read (the CSV says "unreadable: <reason>").
OK, NO_FACE, UNREADABLE = "ok", "no_face", "unreadable"


class Options(NamedTuple):
    model: object = None
    detect: bool = True
    refine: bool = REFINE
    flip_tta: bool = FLIP_TTA
    rotations: bool = True
    overlay_dir: Optional[Path] = None     # write <name>.png overlays here, or None
    sheet: bool = True                     # return the crops for the contact sheet
    threads: Optional[int] = None
    low_confidence: float = LOW_CONFIDENCE  # the bar below which a face is searched again and marked low
