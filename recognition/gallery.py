"""The gallery: enrolled people as unit vectors, nearest-person identification with an
`unknown` threshold, and the verification measures (ROC AUC, EER, the threshold's accept
rates) that choose and report that threshold.

Distances are Euclidean between unit vectors (0 = the same direction, 2 = opposite);
d^2 = 2 - 2 cos, so nearest by distance is nearest by cosine.
"""
import os
import zipfile
from pathlib import Path

import numpy as np

from recognition.faces import RecognitionError

UNKNOWN = "unknown"


def l2_normalize(v):
    v = np.asarray(v, np.float64)
    return (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def nearest_neighbour(train_vectors, train_labels, test_vectors, metric="cosine"):
    """Label of each test vector's nearest training vector (the feature baseline)."""
    a, b = np.asarray(train_vectors, np.float64), np.asarray(test_vectors, np.float64)
    if metric == "cosine":
        a, b = l2_normalize(a), l2_normalize(b)
        distance = -b @ a.T
    else:
        distance = (b ** 2).sum(1)[:, None] - 2 * b @ a.T + (a ** 2).sum(1)[None]
    return np.asarray(train_labels)[np.argmin(distance, axis=1)]


def centroids(embeddings, labels):
    """(people, unit centres): each person's mean embedding, renormalised."""
    people = np.unique(labels)
    centres = np.stack([np.asarray(embeddings)[np.asarray(labels) == p].mean(0) for p in people])
    return people, l2_normalize(centres)


def distances(queries, gallery):
    """Euclidean distances between unit vectors, (len(queries), len(gallery)), in [0, 2]."""
    dot = np.clip(l2_normalize(queries) @ l2_normalize(gallery).T, -1.0, 1.0)
    return np.sqrt(np.maximum(2.0 - 2.0 * dot, 0.0))


def nearest_two(d):
    """(column of the nearest person, its distance, margin) of each row of d (faces, people):
    margin = the second-nearest person's distance minus the nearest's (inf with one person)."""
    d = np.asarray(d, np.float64)
    rows = np.arange(len(d))
    order = np.argsort(d, axis=1, kind="stable")
    best = d[rows, order[:, 0]]
    second = d[rows, order[:, 1]] if d.shape[1] > 1 else np.full(len(d), np.inf)
    return order[:, 0], best, second - best


def accepted(best, margin, threshold=None, min_margin=None):
    """Whether a face gets its nearest person's name: within threshold of them, and at least
    min_margin nearer to them than to the second-nearest person (None: no such rule)."""
    ok = np.ones(len(best), bool)
    if threshold is not None:
        ok &= np.asarray(best) <= threshold
    if min_margin:
        ok &= np.asarray(margin) >= min_margin
    return ok


def identify(embeddings, gallery_names, gallery_vectors, threshold=None, min_margin=None):
    """(names, distances, margins): the nearest enrolled person of each embedding (one row of
    gallery_vectors per person), `unknown` unless accepted() (threshold, min_margin)."""
    nearest, best, margin = nearest_two(distances(embeddings, gallery_vectors))
    names = np.asarray(gallery_names, object)[nearest]
    names = np.where(accepted(best, margin, threshold, min_margin), names, UNKNOWN)
    return list(names), best, margin


def pair_distances(embeddings, labels, groups=None):
    """Distances and same-person flags of all pairs (i < j). groups: pairs within one group
    (e.g. the same video) are left out, so that a near-copy frame is never its own match."""
    d = distances(embeddings, embeddings)
    i, j = np.triu_indices(len(labels), k=1)
    keep = np.ones(len(i), bool) if groups is None else np.asarray(groups)[i] != np.asarray(groups)[j]
    labels = np.asarray(labels)
    return d[i[keep], j[keep]], labels[i[keep]] == labels[j[keep]]


def _ranks(values):
    """Average ranks (1-based), ties sharing their mean rank."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2
    return ranks


def roc_auc(scores, positive):
    """ROC AUC of scores (higher = more likely positive), ties counted half (Mann-Whitney U)."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both positive and negative pairs")
    ranks = _ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def verification_curve(pair_dist, same):
    """(thresholds, false accept rate, false reject rate): accept a pair as one person when
    its distance <= threshold; thresholds at every distinct distance (and below all)."""
    pair_dist, same = np.asarray(pair_dist, np.float64), np.asarray(same, bool)
    thresholds = np.r_[-np.inf, np.unique(pair_dist)]
    order = np.argsort(pair_dist, kind="mergesort")
    sorted_d = pair_dist[order]
    accepted_same = np.r_[0, np.cumsum(same[order])]
    accepted_diff = np.r_[0, np.cumsum(~same[order])]
    upto = np.searchsorted(sorted_d, thresholds, side="right")
    far = accepted_diff[upto] / max((~same).sum(), 1)
    frr = 1.0 - accepted_same[upto] / max(same.sum(), 1)
    return thresholds, far, frr


def equal_error_rate(pair_dist, same):
    """(EER, threshold): where the false accept and false reject rates cross."""
    thresholds, far, frr = verification_curve(pair_dist, same)
    k = int(np.argmin(np.abs(far - frr)))
    return float((far[k] + frr[k]) / 2), float(thresholds[k])


def choose_threshold(pair_dist, same):
    """The distance threshold with the best balanced accuracy (mean of the same-person and
    different-person accuracies) on validation pairs, half-way to the next distance."""
    thresholds, far, frr = verification_curve(pair_dist, same)
    k = int(np.argmax(1.0 - (far + frr) / 2))
    if not np.isfinite(thresholds[k]):
        return float(np.min(pair_dist) / 2)
    following = thresholds[k + 1] if k + 1 < len(thresholds) else thresholds[k]
    return float((thresholds[k] + following) / 2)


def verification_report(pair_dist, same, threshold=None):
    """dict: ROC AUC, EER, and accuracies at threshold (same-person, different-person, balanced)."""
    pair_dist, same = np.asarray(pair_dist), np.asarray(same, bool)
    eer, _ = equal_error_rate(pair_dist, same)
    report = dict(pairs_same=int(same.sum()), pairs_different=int((~same).sum()),
                  roc_auc=roc_auc(-pair_dist, same), eer=eer)
    if threshold is not None:
        accepted = pair_dist <= threshold
        report.update(threshold=float(threshold), true_accept=float(accepted[same].mean()),
                      true_reject=float((~accepted[~same]).mean()))
        report["balanced_accuracy"] = (report["true_accept"] + report["true_reject"]) / 2
    return report


# ---------------------------------------------------------------------------------------
# The gallery file: names and one unit vector per enrolled photo.

THUMBNAIL = 48      # side of the enrolled faces kept in the gallery (the projector's sprite)


def save_gallery(path, names, vectors, embedding, faces=None, photos=None):
    """names (n,) and vectors (n, dim): one row per enrolled face; embedding: which model
    made them (a gallery is only comparable with its own embedding); faces (n, THUMBNAIL,
    THUMBNAIL) uint8 and photos (n,), if given: what each row was enrolled from (for the
    projector). Atomic write."""
    import cli
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extras = {} if faces is None else dict(faces=np.asarray(faces, np.uint8), photos=np.array(photos, dtype=str))

    def write(tmp):
        with open(tmp, "wb") as f:        # a file object: np.savez adds no .npz to the name
            np.savez(f, names=np.array(names, dtype=str), vectors=np.asarray(vectors, np.float32),
                     embedding=np.array(str(embedding)), **extras)
    cli.write_atomically(path, write)
    return path


def gallery_faces(path, n):
    """(faces uint8 (n, THUMBNAIL, THUMBNAIL), photos) kept in a gallery file of n rows; a
    gallery from before they were kept: grey faces and empty photo names."""
    try:
        with np.load(path, allow_pickle=False) as data:
            faces, photos = np.asarray(data["faces"], np.uint8), [str(p) for p in data["photos"]]
        if faces.shape == (n, THUMBNAIL, THUMBNAIL) and len(photos) == n:
            return faces, photos
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile):
        pass
    return np.full((n, THUMBNAIL, THUMBNAIL), 128, np.uint8), [""] * n


def load_gallery(path, command="enroll", allow_empty=False):
    """(names, vectors, embedding) of a gallery file, with a clear error naming the file when
    there is none, it is damaged, or (unless allow_empty) nobody is in it."""
    path = Path(path)
    if not path.exists():
        raise RecognitionError(f"{path}: nobody enrolled yet; run `python recognize.py {command} "
                               "FOLDER_OF_PEOPLE` first")
    if path.is_dir():
        raise RecognitionError(f"{path}: is a folder, not a gallery file")
    try:
        if not zipfile.is_zipfile(path):
            raise ValueError("not an .npz archive")
        with np.load(path, allow_pickle=False) as data:
            raw_names, vectors = np.asarray(data["names"]), np.asarray(data["vectors"], np.float32)
            embedding = str(data["embedding"]) if "embedding" in data else ""
        if raw_names.ndim != 1:
            raise ValueError(f"names of shape {raw_names.shape}, expected a list")
        names = [str(n) for n in raw_names]
    except (ValueError, TypeError, KeyError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise RecognitionError(f"{path}: not a gallery file ({type(error).__name__}: {error})") from None
    if not names and vectors.size == 0:
        if not allow_empty:
            raise RecognitionError(f"{path}: an empty gallery (0 enrolled faces); enrol people with "
                                   f"`python recognize.py {command} FOLDER_OF_PEOPLE --gallery {path}`")
        return [], np.zeros((0, vectors.shape[-1] if vectors.ndim == 2 else 0), np.float32), embedding
    if vectors.ndim != 2 or len(vectors) != len(names) or vectors.shape[1] == 0 or not np.isfinite(vectors).all():
        raise RecognitionError(f"{path}: not a gallery file (names and vectors do not match: "
                               f"{len(names)} names, vectors of shape {vectors.shape})")
    return names, vectors, embedding


def check_dimension(path, vectors, dim, embedding_name, remedy):
    """A gallery's vectors must have the size of the embedding's vectors."""
    if len(vectors) and vectors.shape[1] != dim:
        raise RecognitionError(f"{path}: its vectors have {vectors.shape[1]} numbers, the embedding "
                               f"{embedding_name} gives {dim}; {remedy}")


def person_distances(embeddings, gallery_names, gallery_vectors, mode="mean"):
    """(people, d): each embedding's distance to each enrolled person, (n, people): to the
    person's mean vector (mode "mean") or to their nearest enrolled photo ("nearest")."""
    names = np.asarray(gallery_names)
    people = sorted(set(gallery_names))
    if mode == "mean":
        _, centres = centroids(gallery_vectors, np.array([people.index(n) for n in names]))
        return people, distances(embeddings, centres)
    d = distances(embeddings, gallery_vectors)
    return people, np.stack([d[:, names == p].min(axis=1) for p in people], axis=1)


def identify_people(embeddings, gallery_names, gallery_vectors, threshold=None, min_margin=None, mode="mean"):
    """identify() against a gallery of enrolled photos (several rows per person): (names,
    distances, margins), the margin to the second-nearest person, not photo."""
    people, d = person_distances(embeddings, gallery_names, gallery_vectors, mode)
    nearest, best, margin = nearest_two(d)
    names = np.asarray(people, object)[nearest]
    names = np.where(accepted(best, margin, threshold, min_margin), names, UNKNOWN)
    return list(names), best, margin


SAME, DIFFERENT, NOT_SURE = "same person", "different people", "not sure"


def verify_answer(d, same_below, different_above, curve=None):
    """`verify`'s answer for a pair at distance d, and what backs it: "same person" up to
    same_below, "different people" beyond different_above, "not sure" between. curve (the
    shares of held-out different-person pairs within each distance and of same-person pairs
    beyond it, SHIPPED_RULES["verify_curve"]) adds how often held-out pairs were this close or
    this far; without it, the thresholds are said."""
    answer = SAME if d <= same_below else DIFFERENT if d > different_above else NOT_SURE
    if curve is None:
        if same_below == different_above:
            return answer, f"distance {d:.3f}, threshold {same_below:.3f}"
        return answer, f"distance {d:.3f}; not sure between {same_below:.3f} and {different_above:.3f}"
    grid = np.asarray(curve["distance"])
    closer = float(np.interp(d, grid, curve["different_within"]))
    farther = float(np.interp(d, grid, curve["same_beyond"]))
    close = f"{closer:.1%} of different-person pairs were this close"
    far = f"{farther:.1%} of same-person pairs were this far apart"
    said = {SAME: close, DIFFERENT: far, NOT_SURE: f"{close}, {far}"}[answer]
    band = f", between {same_below:.3f} and {different_above:.3f}" if answer == NOT_SURE else ""
    return answer, f"distance {d:.3f}{band}; on held-out people {said}"


# ---------------------------------------------------------------------------------------
# Choosing the decisions on held-out people (bench/recognition.py open-set).

def open_set_cases(d, same):
    """From probe-to-person distances d (probes, people) and same (each probe's own person is
    enrolled, one True per row): dict of arrays, per probe: right (the nearest person is its
    own), best, margin; and as a stranger (its own person taken out of the gallery):
    stranger_best, stranger_margin."""
    d, same = np.asarray(d, np.float64), np.asarray(same, bool)
    if not same.any(axis=1).all():
        raise ValueError("every probe's own person must be enrolled")
    nearest, best, margin = nearest_two(d)
    _, stranger_best, stranger_margin = nearest_two(np.where(same, np.inf, d))
    stranger_margin = np.where(np.isfinite(stranger_margin), stranger_margin, np.inf)
    return dict(right=same[np.arange(len(d)), nearest], best=best, margin=margin,
                stranger_best=stranger_best, stranger_margin=stranger_margin)


def open_set_rates(cases, threshold, min_margin=None):
    """(named right, named wrong, strangers named): shares of the probes given their own
    person's name, another's, and of the strangers given anybody's, under accepted()."""
    named = accepted(cases["best"], cases["margin"], threshold, min_margin)
    stranger_named = accepted(cases["stranger_best"], cases["stranger_margin"], threshold, min_margin)
    return (float((named & cases["right"]).mean()), float((named & ~cases["right"]).mean()),
            float(stranger_named.mean()))


def choose_open_set_rule(cases, max_strangers, margins=np.arange(0.0, 0.205, 0.01)):
    """(threshold, min_margin) that name the most probes right while naming at most
    max_strangers of the strangers, over the margins given and, for each, the largest
    threshold that allows it (half-way between two distances seen)."""
    best_rule, best_right = None, -1.0
    allowed = int(np.floor(max_strangers * len(cases["stranger_best"]) + 1e-9))
    for m in margins:
        # strangers that pass the margin rule; the threshold may let `allowed` of them through
        passing = np.sort(cases["stranger_best"][cases["stranger_margin"] >= m])
        if allowed >= len(passing):
            threshold = float(cases["best"].max())
        else:
            upper = passing[allowed]            # the first stranger that must stay unknown
            observed = np.r_[passing[:allowed], cases["best"][cases["best"] < upper]]
            threshold = float((observed.max() + upper) / 2) if len(observed) else float(upper / 2)
        right, _, _ = open_set_rates(cases, threshold, m)
        if right > best_right + 1e-12:
            best_rule, best_right = (threshold, float(m)), right
    return best_rule


def choose_verify_band(pair_dist, same, max_false_accept, max_false_reject):
    """(same_below, different_above): `verify` says "same person" up to same_below, where at
    most max_false_accept of the different-person pairs are; "different people" beyond
    different_above, where at most max_false_reject of the same-person pairs are; "not sure"
    between. Each half-way between two pairs' distances."""
    pair_dist, same = np.asarray(pair_dist, np.float64), np.asarray(same, bool)
    different = np.sort(pair_dist[~same])
    upper = different[int(np.floor(max_false_accept * len(different) + 1e-9))]   # must not be said same
    below = pair_dist[pair_dist < upper]
    same_below = float((below.max() + upper) / 2) if len(below) else float(upper / 2)
    together = np.sort(pair_dist[same])[::-1]             # farthest first
    lower = together[int(np.floor(max_false_reject * len(together) + 1e-9))]      # must not be said different
    above = pair_dist[pair_dist > lower]
    different_above = float((lower + above.min()) / 2) if len(above) else float(lower + 1e-3)
    if different_above < same_below:                     # separable: one threshold between
        same_below = different_above = (same_below + different_above) / 2
    return same_below, different_above
