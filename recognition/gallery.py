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


def identify(embeddings, gallery_names, gallery_vectors, threshold=None):
    """(names, distances): the nearest enrolled person of each embedding; `unknown` when
    farther than threshold."""
    d = distances(embeddings, gallery_vectors)
    nearest = np.argmin(d, axis=1)
    best = d[np.arange(len(d)), nearest]
    names = np.asarray(gallery_names, object)[nearest]
    if threshold is not None:
        names = np.where(best > threshold, UNKNOWN, names)
    return list(names), best


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



def threshold_rates(pair_dist, same, threshold):
    """(true accept rate, false accept rate) of pairs at this distance threshold."""
    pair_dist, same = np.asarray(pair_dist), np.asarray(same, bool)
    accepted = pair_dist <= threshold
    return float(accepted[same].mean()), float(accepted[~same].mean())


# ---------------------------------------------------------------------------------------
# The gallery file: names and one unit vector per enrolled photo.

def save_gallery(path, names, vectors, embedding):
    """names (n,) and vectors (n, dim): one row per enrolled face; embedding: which model
    made them (a gallery is only comparable with its own embedding). Atomic write."""
    import cli
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        with open(tmp, "wb") as f:        # a file object: np.savez adds no .npz to the name
            np.savez(f, names=np.array(names, dtype=str), vectors=np.asarray(vectors, np.float32),
                     embedding=np.array(str(embedding)))
    cli.write_atomically(path, write)
    return path


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


def identify_people(embeddings, gallery_names, gallery_vectors, threshold=None, mode="mean"):
    """identify() against a gallery of enrolled photos: mode "mean" compares with each
    person's mean vector, "nearest" with each enrolled photo."""
    if mode == "mean":
        names = np.asarray(gallery_names)
        people = sorted(set(gallery_names))
        labels = np.array([people.index(n) for n in names])
        _, centres = centroids(gallery_vectors, labels)
        return identify(embeddings, people, centres, threshold)
    return identify(embeddings, gallery_names, gallery_vectors, threshold)


def open_set_rates(d, same, threshold):
    """Identification with `unknown`, from probe-to-person distances d (probes, people) and
    same (probes, people; each probe's own person is enrolled, at most one True per row):
    (named right: the nearest is the own person and within threshold; strangers rejected:
    with the own person taken out of the gallery, nothing is within threshold)."""
    d, same = np.asarray(d, np.float64), np.asarray(same, bool)
    nearest = d.argmin(axis=1)
    rows = np.arange(len(d))
    named_right = same[rows, nearest] & (d[rows, nearest] <= threshold)
    others = np.where(same, np.inf, d).min(axis=1)
    return float(named_right.mean()), float((others > threshold).mean())


def choose_open_set_threshold(d, same):
    """The distance threshold for `identify`, chosen on held-out people (d, same as for
    open_set_rates): the best balanced accuracy of its accept / reject decision, where the
    probes whose nearest person is right should be accepted (a threshold can only keep or lose
    those names) and strangers (the same probes with their own person taken out of the
    gallery, at their nearest) should be rejected."""
    d, same = np.asarray(d, np.float64), np.asarray(same, bool)
    rows = np.arange(len(d))
    nearest = d.argmin(axis=1)
    right = same[rows, nearest]
    if not right.any():
        raise ValueError("no probe's nearest person is right: no threshold can name anyone")
    right_d = d[rows, nearest][right]
    stranger_d = np.where(same, np.inf, d).min(axis=1)
    candidates = np.unique(np.r_[right_d, stranger_d[np.isfinite(stranger_d)]])
    kept = np.searchsorted(np.sort(right_d), candidates, side="right") / len(right_d)
    rejected = 1.0 - np.searchsorted(np.sort(stranger_d), candidates, side="right") / len(stranger_d)
    k = int(np.argmax(kept + rejected))
    following = candidates[k + 1] if k + 1 < len(candidates) else candidates[k]
    return float((candidates[k] + following) / 2)
