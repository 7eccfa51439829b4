"""How sure a heatmap network is of a face, and the bar below which a face is not trusted.

The confidence of a crop is read from the integral network's heatmaps (heatmap_confidence).
Its scale is the model's own: the shipped v6 gives faces 0.2-0.45, a v6 trained with a higher
learning rate gives them 0.6-0.9 and crops of noise as much as the shipped one's faces. So the
bar is chosen for each model when its training ends (choose_bar) and travels with it: in
model.json, then in its ONNX file's metadata, where predict.py and the web page read it.

The bar is the higher of two. It sits above what the model gives crops that hold no face
(no_face_crops: noise, smooth blobs, faces cut into shuffled tiles, zooms into a face's
corners, faces upside down and sideways): the false boxes of a face detector and the crops of a
face cut by the picture's edge look like those, and a crop like them must not be an `ok` face.
And it is no lower than the 1st percentile of the model's held-out faces (FACE_PERCENTILE): a
face the model is less sure of than of 99% of the faces it never saw is marked `low`, which
also keeps out pictures that resemble a face more than those crops do. (A model trained on
every face has no held-out faces: its training faces, fitted, say nothing of new ones.) When the
held-out faces fall below the crops' bar, the model cannot tell faces from such crops, and
training says so. docs/predict.md ("Confidence") has the measurements behind the rule.
"""
import json
from pathlib import Path

import numpy as np

import cli
from input_data import IMAGE_SIZE
# bar = MARGIN x the NO_FACE_PERCENTILE-th percentile of the no-face scores, rounded: for the
# shipped model 1.25 x 0.16 = 0.20, the bar chosen for it by hand on held-out photos
# (docs/predict.md, "Confidence"). A percentile, not the highest: the highest of 672 crops moved
# by 0.04 from one seed to the next, the 99th by 0.001.
MARGIN = 1.25
NO_FACE_PERCENTILE = 99
BAR_DECIMALS = 2
NO_FACE_PER_KIND = 96            # crops of each kind (no_face_crops): 672 in all
FACE_PERCENTILE = 1              # the bar is at least this percentile of the held-out faces
FACE_QUANTILES = (1, 5, 50)      # percentiles of the faces' confidence recorded beside the bar
# Below this share of faces over the bar the model cannot tell faces from crops with none.
MIN_FACES_OVER_BAR = 0.95

_windows = {}


def heatmap_confidence(heatmaps):
    """(n, 15, cells) softmax heatmaps -> (n,) confidence in 0..1: per keypoint the probability
    in the 3x3 cells around its peak (a sharp, single peak: high; a spread or split one: low),
    averaged over the 15 keypoints."""
    heatmaps = np.asarray(heatmaps, np.float32)
    n, k, cells = heatmaps.shape
    flat = np.concatenate([heatmaps.reshape(n * k, cells), np.zeros((n * k, 1), np.float32)], axis=1)
    window = _peak_windows(cells)[flat[:, :cells].argmax(axis=1)]        # (n * k, 9) cell indices
    total = np.take_along_axis(flat, window, axis=1).sum(axis=1)
    return total.reshape(n, k).mean(axis=1).astype(np.float64)


def _peak_windows(cells):
    """(cells, 9): for each cell of the square grid, the indices of its 3x3 neighbourhood; a
    neighbour outside the grid is index `cells` (a zero column heatmap_confidence appends)."""
    if cells not in _windows:
        grid = int(round(np.sqrt(cells)))
        rows, cols = np.divmod(np.arange(cells), grid)
        windows = []
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                r, c = rows + dy, cols + dx
                inside = (r >= 0) & (r < grid) & (c >= 0) & (c < grid)
                windows.append(np.where(inside, r * grid + c, cells))
        _windows[cells] = np.stack(windows, axis=1)
    return _windows[cells]


def is_bar(value):
    """Whether value is a usable confidence bar: a number strictly between 0 and 1."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1


def saved_bar(model_path):
    """The bar recorded in the model.json beside a saved model (train.py writes it), or None
    (no model.json, or none recorded: a model trained before bars were chosen). A recorded
    value that is not a usable bar (is_bar) is a cli.InputError naming the file: it would mark
    every face `ok`, or every face `low`."""
    source = Path(model_path).parent / "model.json"
    try:
        info = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError):          # absent or unreadable: it says nothing
        return None
    if not isinstance(info, dict) or info.get("low_confidence") is None:
        return None
    return float(cli.json_field(info, "low_confidence", is_bar, "a number between 0 and 1", source))


def noise_and_flat(n, seed=0):
    """uint8 (2n, 96, 96): n crops of uniform noise, n of flat grey (30 to 225)."""
    rng = np.random.default_rng(seed)
    flat = np.repeat(np.linspace(30, 225, n).astype(np.uint8), IMAGE_SIZE * IMAGE_SIZE)
    return np.concatenate([rng.integers(0, 256, (n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8),
                           flat.reshape(n, IMAGE_SIZE, IMAGE_SIZE)])


def no_face_crops(faces, n=NO_FACE_PER_KIND, seed=0):
    """{kind: uint8 (m, 96, 96)} crops that hold no upright face, made from uint8 (N, 96, 96)
    face crops (the model's validation faces) and from nothing: noise and flat grey; smooth
    blobs (blurred noise: walls, sky, out-of-focus backgrounds); faces cut into 12- and 24-px
    tiles and shuffled (a face's textures without its layout); zooms into a face's four corners
    (hair, cheek, background); faces upside down and turned sideways (the wrong way up, which
    predict.py's search of turned copies must not take for upright). Deterministic for a seed."""
    import cv2
    rng = np.random.default_rng(seed)
    faces = np.asarray(faces, np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    chosen = faces[rng.choice(len(faces), min(n, len(faces)), replace=False)] if len(faces) else faces
    crops = {"noise and flat grey": noise_and_flat(n // 2, seed)}
    blobs = []
    for sigma in np.linspace(2, 12, n):
        blob = cv2.GaussianBlur(rng.random((IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32), (0, 0), float(sigma))
        blobs.append(cv2.normalize(blob, None, 0, 255, cv2.NORM_MINMAX))
    crops["smooth blobs"] = np.stack(blobs).astype(np.uint8)
    if not len(chosen):
        return crops
    for tile in (12, 24):
        crops[f"shuffled {tile}-px tiles"] = np.stack([_shuffled_tiles(face, tile, rng) for face in chosen])
    side = 40
    corners = [cv2.resize(face[y:y + side, x:x + side], (IMAGE_SIZE, IMAGE_SIZE))
               for face in chosen[: max(1, n // 4)]
               for y in (0, IMAGE_SIZE - side) for x in (0, IMAGE_SIZE - side)]
    crops["face corners"] = np.stack(corners)
    crops["upside down"] = np.ascontiguousarray(chosen[:, ::-1, ::-1])
    crops["sideways"] = np.ascontiguousarray(np.rot90(chosen, 1, axes=(1, 2)))
    return crops


def _shuffled_tiles(face, tile, rng):
    grid = IMAGE_SIZE // tile
    blocks = face.reshape(grid, tile, grid, tile).transpose(0, 2, 1, 3).reshape(grid * grid, tile, tile)
    blocks = blocks[rng.permutation(grid * grid)]
    return blocks.reshape(grid, grid, tile, tile).transpose(0, 2, 1, 3).reshape(IMAGE_SIZE, IMAGE_SIZE)


def choose_bar(face_scores, no_face_scores, held_out=True):
    """The bar for a model from its confidences: face_scores (its held-out faces, held_out=True;
    or its training faces) and no_face_scores ({kind: scores} of no_face_crops). Returns a dict
    for model.json: low_confidence (the higher of MARGIN x the no-face scores'
    NO_FACE_PERCENTILE-th percentile and, for held-out faces, their FACE_PERCENTILE-th; rounded
    to BAR_DECIMALS), set_by ("no-face crops" or "held-out faces"), faces_held_out, faces (percentiles),
    no_face (that percentile, and the highest score of each kind), faces_over_bar (their share)
    and separates (whether at least MIN_FACES_OVER_BAR of the faces are over the crops' bar)."""
    faces = np.asarray(face_scores, np.float64)
    highest = {kind: float(np.max(scores)) for kind, scores in no_face_scores.items() if len(scores)}
    pooled = float(np.percentile(np.concatenate([np.asarray(s, np.float64) for s in no_face_scores.values()]),
                                 NO_FACE_PERCENTILE))
    step = 10 ** BAR_DECIMALS

    def rounded(value):
        return float(np.clip(np.round(value * step) / step, 1 / step, 1 - 1 / step))

    crops_bar = rounded(MARGIN * pooled)
    faces_bar = rounded(np.percentile(faces, FACE_PERCENTILE)) if held_out and len(faces) else 0.0
    bar = max(crops_bar, faces_bar)
    return {"low_confidence": bar,
            "set_by": "held-out faces" if faces_bar > crops_bar else "no-face crops",
            "faces_held_out": bool(held_out),
            "faces": {f"p{q}": round(float(np.percentile(faces, q)), 3) for q in FACE_QUANTILES} if len(faces) else {},
            "no_face": {f"p{NO_FACE_PERCENTILE}": round(pooled, 3),
                        **{kind: round(value, 3) for kind, value in highest.items()}},
            "faces_over_bar": round(float(np.mean(faces >= bar)), 3) if len(faces) else None,
            "separates": bool(len(faces) == 0 or np.mean(faces >= crops_bar) >= MIN_FACES_OVER_BAR)}


def bar_line(bar):
    """One line saying what choose_bar's dict means."""
    faces = bar["faces"]
    crops = f"{MARGIN:g} x the {NO_FACE_PERCENTILE}th percentile of crops with no face ({bar['no_face'][f'p{NO_FACE_PERCENTILE}']:.3f})"
    line = f"confidence bar {bar['low_confidence']:g}: " + (
        f"the {FACE_PERCENTILE}st percentile of the held-out faces, over {crops}"
        if bar["set_by"] == "held-out faces" else crops)
    if faces:
        which = "held-out" if bar.get("faces_held_out", True) else "training"
        line += (f"; {which} faces {faces['p1']:.3f} / {faces['p5']:.3f} / {faces['p50']:.3f} "
                 f"(1st / 5th / 50th percentile), {bar['faces_over_bar']:.0%} of them over it")
    if not bar["separates"]:
        line += ("; the model does not tell faces from crops without one: predict.py will mark many "
                 "faces low (train longer, or give predict.py --low-confidence)")
    return line
