"""Label rows that cannot be a face: left and right swapped, two keypoints swapped, a keypoint
far from where the rest of its face puts it.

    import label_check
    # keypoints: (N, 30) pixels in Kaggle's column order, NaN = missing
    result = label_check.check(keypoints, input_data.KEYPOINT_NAMES)
    for flag in result.flags:
        print(flag.row, flag.reason)            # rows count from 0
    keep = label_check.rows_to_keep(keypoints)  # what training's skip_flagged setting keeps

The command line is `python input_data.py check-labels FILE` (docs/kaggle-data.md#checking-labels).

The shape model is fitted on the data itself (numpy only, no labels known to be right):
- the mean shape of the complete rows, each aligned to it by a similarity (shift, turn, scale),
  and their first MODES principal components (a turned head, an open mouth, raised brows),
  fitted on the complete rows that fit the mean shape alone;
- each keypoint's place is predicted from the row's OTHER keypoints (a similarity plus the
  components, these held to their usual size), and the offset from that place is measured in
  robust spreads (median and MAD, so a few bad rows do not widen them), separately for each set
  of keypoints a row can have: Kaggle's 4-keypoint rows get the spread that 4 keypoints allow.
A row is flagged when a keypoint is more than THRESHOLD spreads off, or its keypoints span a
size no face in the file has. The reason then names the simplest repair that makes the row a
face again: left and right exchanged, two keypoints exchanged, or else the keypoint that is off.
"""
from typing import NamedTuple

import warnings

import numpy as np

# A keypoint this many robust spreads from where the rest of its face puts it is flagged. On
# synthetic faces with planted errors this finds >= 95% of them with no false flags; see
# docs/kaggle-data.md#checking-labels and bench/check_labels.py.
THRESHOLD = 6.0
MODES = 4               # shape components beyond the similarity (turn, open mouth, brows, ...)
MIN_POINTS = 3          # a row with fewer keypoints cannot be checked (two fix any similarity)
MIN_COMPLETE = 30       # complete rows needed to learn the shape
OWN_SPREAD_ROWS = 100   # a set of keypoints this common gets the spread of its own rows
SIMULATED_ROWS = 500    # rarer sets: measured on (at most) this many complete rows, others hidden
SIZE_FACTOR = 3         # a face 3 times narrower or wider than the file's usual one is flagged
_MAD_TO_SD = 1.4826     # the MAD of a normal distribution times this is its standard deviation


class Flag(NamedTuple):
    """A row that cannot be a face: its index (from 0), why, and how far off, in spreads."""
    row: int
    reason: str
    score: float


class Result(NamedTuple):
    flags: list             # of Flag, in row order
    checked: int            # rows with at least MIN_POINTS keypoints
    rows: int


def _complex(keypoints):
    """(..., 2K) x, y columns -> (..., K) complex x + iy."""
    keypoints = np.asarray(keypoints, np.float64)
    return keypoints[..., 0::2] + 1j * keypoints[..., 1::2]


def _median(values, axis=0):
    """Median of real and imaginary parts apart, ignoring NaN (NaN where all are)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # an all-NaN column
        return np.nanmedian(values.real, axis) + 1j * np.nanmedian(values.imag, axis)


def _similarity(model, points, weights):
    """Least-squares points ~ a * model + b over the weighted keypoints; batched over leading
    axes: model, points complex (..., K), weights (..., K) -> complex a, b (...)."""
    total = weights.sum(-1)
    model_mean = (weights * model).sum(-1) / total
    points_mean = (weights * np.where(weights > 0, points, 0)).sum(-1) / total
    dm = model - model_mean[..., None]
    dp = np.where(weights > 0, points - points_mean[..., None], 0)
    a = (weights * dp * dm.conj()).sum(-1) / (weights * np.abs(dm) ** 2).sum(-1)
    return a, points_mean - a * model_mean


def _unit(shape):
    shape = shape - shape.mean()
    return shape / np.sqrt((np.abs(shape) ** 2).sum())


class ShapeModel:
    """What a face looks like in a table of keypoints, learned from the table itself."""

    def __init__(self, keypoints, modes=MODES):
        points = _complex(keypoints)
        present = np.isfinite(points)
        complete = points[present.all(axis=1)]
        if len(complete) < MIN_COMPLETE:
            raise ValueError(f"{len(complete)} rows have all {points.shape[1]} keypoints; at least "
                             f"{MIN_COMPLETE} are needed to learn what a face looks like")
        mean = _unit(_median(complete))
        for _ in range(5):      # Procrustes: align every complete row to the mean, take the median
            a, b = _similarity(complete, np.broadcast_to(mean, complete.shape), np.ones(complete.shape))
            mean = _unit(_median(a[:, None] * complete + b[:, None]))
        self.mean, self.modes, self.variances, self.noise = mean, np.zeros((0, len(mean)), complex), None, 1.0
        step = max(1, len(complete) // SIMULATED_ROWS)
        self._reference = complete[::step][:SIMULATED_ROWS]
        self._spreads = {}
        if modes:
            # Components of the complete rows that the similarity alone finds to be faces.
            scores, _ = self._fit_and_score(complete, np.ones(complete.shape, bool))
            fine = complete[np.nanmax(scores, axis=1) <= THRESHOLD]
            a, b = _similarity(fine, np.broadcast_to(mean, fine.shape), np.ones(fine.shape))
            aligned = a[:, None] * fine + b[:, None] - mean
            stacked = np.concatenate([aligned.real, aligned.imag], axis=1)
            _, singular, axes = np.linalg.svd(stacked - stacked.mean(axis=0), full_matrices=False)
            variances = singular ** 2 / len(stacked)
            k = len(mean)
            self.modes = axes[:modes, :k] + 1j * axes[:modes, k:]
            self.variances = variances[:modes]
            self.noise = variances[modes:].sum() / (2 * k - 4 - modes)   # per coordinate, what is left
            self._spreads = {}
        # Spreads for the sets of keypoints the table has, and the size of its faces.
        self.scores, self.pixels, self.widths = self.score(points, present)
        usable = np.isfinite(self.widths) & (self.widths > 0) & (present.sum(axis=1) >= MIN_POINTS)
        self.usual_width = float(np.median(self.widths[usable]))

    def _offsets(self, points, present):
        """Each present keypoint's offset from where the row's other keypoints put it, in units
        of the mean shape (complex (N, K), NaN where absent), and the row's scale (N,) in
        pixels per unit."""
        n, k = points.shape
        points = np.where(present, points, 0)
        leave_out = (present[:, None, :] & ~np.eye(k, dtype=bool)).astype(np.float64)   # (N, K out, K)
        with np.errstate(invalid="ignore", divide="ignore"):
            a, b = _similarity(self.mean, points[:, None, :], leave_out)               # (N, K out)
            scale = _median(np.where(present, a, np.nan), axis=1)                      # robust to one bad point
            if not len(self.modes):
                return np.where(present, (points - b) / a - self.mean, np.nan), scale
        usable = np.isfinite(scale) & (scale != 0)
        turn = np.where(usable, scale, 1.0)
        # The prediction is linear in its parameters: a * mean (a complex: 2 real), a shift
        # (2), and real coefficients of the components, turned and scaled with the face.
        basis = np.stack([np.broadcast_to(self.mean, (n, k)), np.broadcast_to(1j * self.mean, (n, k)),
                          np.ones((n, k), complex), np.full((n, k), 1j)]
                         + [turn[:, None] * mode for mode in self.modes], axis=-1)          # (N, K, P)
        weight = present.astype(np.float64)[..., None]
        x, y = basis.real, basis.imag
        # Normal equations of all keypoints, minus the left-out one's share.
        each = (x[..., :, None] * x[..., None, :] + y[..., :, None] * y[..., None, :]) * weight[..., None]
        rhs_each = (x * points.real[..., None] + y * points.imag[..., None]) * weight
        lhs = each.sum(axis=1, keepdims=True) - each
        rhs = rhs_each.sum(axis=1, keepdims=True) - rhs_each
        ridge = np.zeros((n, basis.shape[-1]))
        ridge[:, :4] = 1e-9
        ridge[:, 4:] = self.noise * np.abs(turn)[:, None] ** 2 / self.variances
        lhs = lhs + ridge[:, None, :, None] * np.eye(basis.shape[-1])
        with np.errstate(invalid="ignore", divide="ignore"):
            params = np.linalg.solve(lhs, rhs[..., None])[..., 0]                          # (N, K out, P)
            offsets = (points - (basis * params).sum(axis=-1)) / turn[:, None]
        return np.where(present & usable[:, None], offsets, np.nan), np.where(usable, scale, np.nan)

    def _spread(self, pattern, own=None):
        """Centre and spread (x + iy) of each keypoint's offset for rows with this set of
        keypoints: from the rows themselves when there are enough, else from complete rows
        with the other keypoints hidden."""
        key = np.packbits(pattern).tobytes()
        if key not in self._spreads:
            if own is None or len(own) < OWN_SPREAD_ROWS:
                own, _ = self._offsets(self._reference, np.broadcast_to(pattern, self._reference.shape))
            centre = _median(own)
            deviation = own - centre
            spread = _MAD_TO_SD * _median(np.abs(deviation.real) + 1j * np.abs(deviation.imag))
            self._spreads[key] = centre, spread
        return self._spreads[key]

    def _fit_and_score(self, points, present, with_scale=False):
        offsets, scale = self._offsets(points, present)
        scores = np.full(points.shape, np.nan)
        for pattern in np.unique(present, axis=0):
            if pattern.sum() < MIN_POINTS:
                continue
            rows = (present == pattern).all(axis=1)
            centre, spread = self._spread(pattern, offsets[rows])
            deviation = offsets[rows] - centre
            with np.errstate(invalid="ignore", divide="ignore"):
                scores[rows] = np.hypot(deviation.real / spread.real, deviation.imag / spread.imag)
        pixels = np.abs(offsets) * np.abs(scale)[:, None]
        return (scores, pixels, np.abs(scale)) if with_scale else (scores, pixels)

    def score(self, points, present):
        """(scores, pixels, widths): each keypoint's offset from where the rest of its face puts
        it, in spreads and in pixels (N, K; NaN where absent or unchecked), and the width the
        face's keypoints would have if it were the mean shape, in pixels (N,)."""
        scores, pixels, scale = self._fit_and_score(points, present, with_scale=True)
        return scores, pixels, scale * np.ptp(self.mean.real)

    def wrong_size(self, widths):
        """Whether each face is more than SIZE_FACTOR times narrower or wider than the file's
        usual face (or on one spot)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = widths / self.usual_width
            return ~(np.isfinite(ratio) & (ratio * SIZE_FACTOR >= 1) & (ratio <= SIZE_FACTOR))


def _names(names, count):
    if names is None:
        return [f"keypoint {i + 1}" for i in range(count)]
    if len(names) != count:
        raise ValueError(f"{len(names)} keypoint names for {count} keypoints")
    return list(names)


def _swap_reason(model, points, present, names):
    """For one flagged row, the exchange that makes it a face: left and right (every left/right
    pair), or two keypoints; None when none does."""
    k = len(points)
    pairs = [(i, names.index(name.replace("left", "right"))) for i, name in enumerate(names)
             if "left" in name and name.replace("left", "right") in names]
    swapped = [(i, j) for i, j in pairs if present[i] or present[j]]
    orders, labels = [], []
    if len(swapped) > 1:        # one pair alone is tried below, as two keypoints
        mirrored = np.arange(k)
        for i, j in pairs:
            mirrored[i], mirrored[j] = j, i
        orders.append(mirrored)
        labels.append(None)
    shown = np.flatnonzero(present)
    for n, i in enumerate(shown):
        for j in shown[n + 1:]:
            order = np.arange(k)
            order[i], order[j] = j, i
            orders.append(order)
            labels.append((i, j))
    if not orders:
        return None
    orders = np.array(orders)
    scores, _, widths = model.score(points[orders], present[orders])
    worst = np.nan_to_num(np.nanmax(scores, axis=1), nan=np.inf)
    worst[model.wrong_size(widths)] = np.inf
    pick = int(np.argmin(worst))
    if worst[pick] > THRESHOLD:
        return None
    if labels[pick] is None:
        return ("left and right are swapped: the subject's left keypoints are on the image's left "
                "(in Kaggle's labels the subject's left is on the image's right, left_eye_center_x "
                "the larger x)")
    i, j = labels[pick]
    return f"{names[i]} and {names[j]} are swapped"


def _odd_one_out(model, points, present):
    """For one flagged row, the keypoint without which the rest is a face (None if none is)."""
    shown = np.flatnonzero(present)
    if len(shown) <= MIN_POINTS:
        return None
    hidden = np.repeat(present[None], len(shown), axis=0)
    hidden[np.arange(len(shown)), shown] = False
    scores, _, widths = model.score(np.repeat(points[None], len(shown), axis=0), hidden)
    worst = np.nan_to_num(np.nanmax(scores, axis=1), nan=np.inf)
    worst[model.wrong_size(widths)] = np.inf
    pick = int(np.argmin(worst))
    return int(shown[pick]) if worst[pick] <= THRESHOLD else None


def check(keypoints, names=None):
    """Flag the rows of a keypoint table that cannot be a face.

    keypoints: (N, 2K) pixels, x and y of each keypoint in turn (Kaggle's 30 columns), NaN
    where missing. names: the K keypoints' names (input_data.KEYPOINT_NAMES for Kaggle's), for
    the reasons; a 'left' name paired with its 'right' one is what a left/right swap exchanges.
    Needs MIN_COMPLETE complete rows (ValueError otherwise). Rows with fewer than MIN_POINTS
    keypoints are not checked."""
    keypoints = np.asarray(keypoints, np.float64)
    if keypoints.ndim != 2 or keypoints.shape[1] % 2:
        raise ValueError(f"keypoints must be (N, 2K) x, y columns, got shape {keypoints.shape}")
    model = ShapeModel(keypoints)
    points = _complex(keypoints)
    present = np.isfinite(points)
    names = _names(names, points.shape[1])
    scores, pixels, widths = model.scores, model.pixels, model.widths
    checked = present.sum(axis=1) >= MIN_POINTS
    worst = np.nanmax(np.where(np.isnan(scores), -np.inf, scores), axis=1)
    wrong_size = model.wrong_size(widths) & checked
    flagged = (worst > THRESHOLD) | wrong_size
    flags = []
    for row in np.flatnonzero(flagged):
        reason = _swap_reason(model, points[row], present[row], names)
        if reason is None and wrong_size[row]:
            reason = (f"the keypoints make a face {widths[row]:.1f} px wide where this file's faces "
                      f"are about {model.usual_width:.0f} px wide")
        if reason is None:
            odd = _odd_one_out(model, points[row], present[row])
            j = int(np.nanargmax(scores[row])) if odd is None else odd
            others = int(present[row].sum()) - 1
            reason = f"{names[j]} is {pixels[row, j]:.1f} px from where the other {others} keypoints put it"
            off = int((scores[row] > THRESHOLD).sum())
            if odd is not None:
                reason += " (without it they are a face)"
            elif off > 1:
                reason = f"{off} keypoints do not fit a face; the worst: {reason} ({scores[row, j]:.1f} spreads)"
            else:
                reason += f" ({scores[row, j]:.1f} spreads)"
        flags.append(Flag(int(row), reason, float(worst[row])))
    return Result(flags, int(checked.sum()), len(points))


def rows_to_keep(keypoints):
    """Boolean (N,): True for the rows that check() does not flag. keypoints (N, 2K), NaN where
    missing, in pixels or in any shifted and scaled unit (the check does not depend on them,
    e.g. training's (px - 48) / 48). A table with too few complete rows to learn a face from
    keeps every row."""
    keypoints = np.asarray(keypoints, np.float64)
    keep = np.ones(len(keypoints), bool)
    if (np.isfinite(keypoints).all(axis=1)).sum() < MIN_COMPLETE:
        return keep
    keep[[flag.row for flag in check(keypoints).flags]] = False
    return keep
