"""Every figure of docs/recognition.md, from one script, on the shared real faces.

    python bench/recognition.py orl        # ORL, 8 train / 2 test per person, seeds 0-4: every method
    python bench/recognition.py unseen     # people never trained on, across videos: top-1, ROC AUC, EER
    python bench/recognition.py rules --protocol-model PATH   # identify's and verify's rules, from unseen's model
    python bench/recognition.py knn        # face_recognition's knn_examples, as a user runs the commands
    python bench/recognition.py all        # the three
    python bench/recognition.py all --quick            # a smoke run in a few minutes (fewer seeds/epochs)
    python bench/recognition.py ship --out models/face_embedding   # train the shipped embedding

Results print as tables and go as JSON to --json-dir (default /tmp/fkd-recognition/bench/),
never into the repository; nothing derived from the real faces is kept.

orl: 40 people x 10 photos (92x112 ready crops: the whole image is the face, --no-detect),
  aligned with the keypoint net. Rows: raw-pixel 1-NN; the chopped keypoint net (conv
  features) with a softmax head, frozen and fine-tuned; the same architecture from scratch;
  the shipped embedding (1-NN, class means, softmax head = `recognize.py train --no-detect`'s
  defaults).
unseen: cvnd_youtube_faces (282 people, 3-4 YouTube videos of 3 frames each; the video is the
  first digit after the last `_`). People with >= 2 videos are split: 82 test people, never
  trained on; the embedding is trained on the other 200 with the shipped recipe (the shipped
  model itself saw all 282, so it is not measured here). Gallery = one video per test person
  (its frames' mean vector), probes = the frames of their other videos; top-1 among the 82.
  ROC AUC and EER over pairs of frames from different videos. Then the rules (open_set):
  identify's `unknown` threshold and margin (the most probes named right with at most
  --max-strangers of strangers named) and verify's "not sure" band, chosen on half of the
  test people and measured on the other half, and again on --splits other halvings.
rules: the same rules from a protocol model saved by `unseen --save-protocol-model PATH` (no
  training: 8-9 minutes on a busy 2-core machine, most of it aligning the faces), then checked
  on ORL with the shipped embedding (people it never saw). It prints the SHIPPED_RULES that
  recognition/settings.py takes, and what settings.py's rules do on the same people.
knn: enroll knn_examples/train (1-2 photos per person), identify knn_examples/test, through
  recognize.py's own commands (detector, alignment, shipped embedding).
"""
import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cli  # noqa: E402
import input_data  # noqa: E402
from recognition import align, embedding, faces, gallery, head  # noqa: E402
from recognition.settings import RULE_TARGETS, SHIPPED_RULES  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"
JSON_DIR = Path("/tmp/fkd-recognition/bench")
# The recipe without a teacher (recognize.py embed-train's defaults, but for the data path):
# ArcFace on the v6 trunk (block4), 20 epochs of the head on frozen features, then 30 epochs
# of everything at 5e-4 with identity-preserving augmentation. `--recipe arcface`.
ARCFACE_RECIPE = dict(loss="arcface", features="conv", dim=128, head_epochs=20, head_learning_rate=1e-3,
                      finetune_epochs=30, finetune_learning_rate=5e-4, finetune_decay="constant", batch_size=32,
                      seed=0, augment="flip,rotate=8,shift=0.04,scale=0.06,light", erase=0.0, blur=0.0)
# The shipped embedding's recipe: the same, also imitating dlib's encoder (recognition/teacher.py;
# the cosine distance to its vectors, weight 50), for 60 fine-tuning epochs.
SHIP_RECIPE = dict(ARCFACE_RECIPE, finetune_epochs=60, distill=50.0)
# The recipe of the second study (docs/recognition.md: 45.1% on unseen people with ZOOMS, but
# the knn check's obama_and_biden faces fell beyond its threshold): `--recipe study`.
STUDY_RECIPE = dict(ARCFACE_RECIPE, finetune_epochs=40, finetune_learning_rate=1e-3, finetune_decay="cosine",
                    erase=0.5, blur=0.3)
RECIPES = {"shipped": SHIP_RECIPE, "arcface": ARCFACE_RECIPE, "study": STUDY_RECIPE}
SHIP_COMMAND = ("make teacher && python bench/recognition.py unseen && "
                "python bench/recognition.py ship --out models/face_embedding")
TEACHER = "dlib_face_recognition_resnet_model_v1 (requirements-teacher.txt), on the 68 points' bounding box"
QUICK = dict(head_epochs=5, finetune_epochs=2)
assert all(embedding.EMBED_DEFAULTS[k] == v for k, v in ARCFACE_RECIPE.items() if k in embedding.EMBED_DEFAULTS), \
    "recognize.py embed-train's defaults must stay the shipped recipe without its teacher"


def log(message):
    print(message, flush=True)


def shipped_aligner():
    """The keypoint model the shipped embedding aligns faces with (its aligner.onnx), as
    recognize.py aligns them: a newer shipped keypoint model does not move these figures."""
    return faces.Aligner(embedding.shipped_info().get("align_model"))


def need(folder):
    if not folder.is_dir():
        raise cli.InputError(f"{folder}: not found (the real faces live beside the repository, in ../shared/data)")
    return folder


# ---------------------------------------------------------------------------------------
# Data: aligned faces, as recognize.py makes them.

def orl_faces(aligner):
    """(aligned faces, whole-image crops, labels) of ORL, in natural order."""
    folder = need(SHARED_DATA / "orl_faces")
    aligned, labels, names, paths = faces.people_faces(folder, aligner, detect=False)
    raw = np.stack([faces.whole_image_frame(g.shape).crop(g) for g in map(faces.read_photo, paths)])
    return aligned, raw, labels


def cvnd_rows():
    folder = need(SHARED_DATA / "cvnd_youtube_faces")
    with open(folder / "training_frames_keypoints.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    return folder, rows, [np.array(row[1:], np.float64).reshape(68, 2) for row in rows]


def cvnd_faces(aligner):
    """(aligned faces, Kaggle-frame crops, person labels, names, video ids) of cvnd_youtube_faces;
    the first crop is the frame of the labelled 68 points, then the keypoint net aligns."""
    folder, rows, points = cvnd_rows()
    grays = [faces.read_photo(folder / "training" / row[0]) for row in rows]
    frames = [input_data.frame_from_68(p) for p in points]
    aligned = aligner.align(grays, frames)
    raw = np.stack([frame.crop(gray) for gray, frame in zip(grays, frames)])
    people = [input_data.person_of(row[0]) for row in rows]
    videos = np.array([f"{p}/{Path(row[0]).stem.rpartition('_')[2][:1]}" for p, row in zip(people, rows)])
    names = sorted(set(people))
    return aligned, raw, np.array([names.index(p) for p in people]), names, videos


def cvnd_teacher_vectors():
    """dlib's vectors of the cvnd faces (recognition/teacher.py; the box: the 68 labelled points'
    bounding box), in cvnd_faces' order. Cached in /tmp (6 minutes to make; never committed)."""
    folder, rows, points = cvnd_rows()
    cache = JSON_DIR.parent / f"teacher-dlib-{input_data.file_sha256(folder / 'training_frames_keypoints.csv')[:12]}.npy"
    from recognition.teacher import DlibTeacher
    if cache.is_file():
        try:
            vectors = np.load(cache, allow_pickle=False)
            if vectors.shape == (len(rows), DlibTeacher.dim):
                return vectors
        except (ValueError, OSError, EOFError):
            pass
        log(f"{cache}: not the teacher's vectors of these faces; making them again")
    from tqdm import tqdm
    teacher = DlibTeacher()
    grays = [faces.read_photo(folder / "training" / row[0]) for row in rows]
    boxes = [np.concatenate([p.min(0), p.max(0)]) for p in points]
    with tqdm(total=len(grays), desc="dlib teacher", unit="face") as bar:
        vectors = teacher.vectors(grays, boxes, progress=lambda n: bar.update(1))
    cache.parent.mkdir(parents=True, exist_ok=True)
    def save(tmp):
        with open(tmp, "wb") as f:      # a file object: np.save would add .npy to the tmp name
            np.save(f, vectors)
    cli.write_atomically(cache, save)
    return vectors


# ---------------------------------------------------------------------------------------
# ORL.

def top1_nearest(V, labels, train, test, means=False):
    V = gallery.l2_normalize(V)
    if means:
        people, centres = gallery.centroids(V[train], labels[train])
        predicted = people[np.argmax(V[test] @ centres.T, axis=1)]
    else:
        predicted = labels[train][np.argmax(V[test] @ V[train].T, axis=1)]
    return float((predicted == labels[test]).mean())


def softmax_top1(X, labels, train, test, base_path, settings, pretrained=True):
    import keras
    base = head.load_base(base_path)
    if not pretrained:
        base = head.scratch_like(base)
    model, _ = head.train_classifier(X[train], labels[train], int(labels.max()) + 1, base, pretrained, settings)
    accuracy = float((head.embed(model, X[test]).argmax(1) == labels[test]).mean())
    keras.backend.clear_session()
    return accuracy


def _orl_conv(quick):
    """The keypoint-net rows' settings as measured (docs/recognition.md): 30 head epochs, then 10
    of everything (QUICK's with --quick)."""
    return {**head.DEFAULTS, "features": "conv", "head_epochs": 30, "finetune_epochs": 10,
            **(QUICK if quick else {})}


def orl_row_names(quick=False):
    """The rows of the ORL table, in order (bench_orl measures them under these names)."""
    conv = _orl_conv(quick)
    return ["raw pixels, 1-NN (whole image)",
            "raw pixels, 1-NN (aligned)",
            "keypoint net chopped (block4), softmax, frozen",
            f"keypoint net chopped (block4), softmax, fine-tuned {conv['finetune_epochs']} epochs",
            f"v6 architecture from scratch ({conv['head_epochs'] + conv['finetune_epochs']} epochs)",
            "shipped embedding, 1-NN",
            "shipped embedding, class means",
            "shipped embedding + softmax (`train --no-detect` defaults)"]


def select_orl_rows(text, quick=False):
    """The row names that hold one of the words of the comma list `text` (all rows for None);
    a word that names no row is a cli.UsageError, before any work."""
    names = orl_row_names(quick)
    if text is None:
        return names
    words = [word.strip() for word in text.split(",") if word.strip()]
    unmatched = [word for word in words if not any(word in name for name in names)]
    if unmatched or not words:
        raise cli.UsageError(f"--rows: got {text!r}; {'no row holds ' + ', '.join(map(repr, unmatched)) if unmatched else 'no words'}"
                             f"; the rows are: {'; '.join(names)}")
    return [name for name in names if any(word in name for word in words)]


def bench_orl(args):
    selected = select_orl_rows(args.rows, args.quick)
    aligned, raw, labels = orl_faces(shipped_aligner())
    X = faces.to_unit(aligned)
    shipped_vectors = {}

    def vectors():
        if not shipped_vectors:
            embedder, _ = embedding.load_shipped()
            shipped_vectors["v"] = embedding.embed_faces(embedder, aligned)
        return shipped_vectors["v"]
    keypoint_base = str(args.base or head.default_base())
    shipped = str(embedding.SHIPPED / "embedder.keras")
    epochs = QUICK if args.quick else {}
    conv = _orl_conv(args.quick)
    measures = [
        lambda tr, te: top1_nearest(
            raw.reshape(len(raw), -1) - raw.reshape(len(raw), -1).mean(1, keepdims=True), labels, tr, te),
        lambda tr, te: top1_nearest(
            aligned.reshape(len(raw), -1) - aligned.reshape(len(raw), -1).mean(1, keepdims=True), labels, tr, te),
        lambda tr, te: softmax_top1(X, labels, tr, te, keypoint_base, dict(conv, finetune_epochs=0)),
        lambda tr, te: softmax_top1(X, labels, tr, te, keypoint_base, conv),
        lambda tr, te: softmax_top1(X, labels, tr, te, keypoint_base, dict(conv, augment="all"), pretrained=False),
        lambda tr, te: top1_nearest(vectors(), labels, tr, te),
        lambda tr, te: top1_nearest(vectors(), labels, tr, te, means=True),
        lambda tr, te: softmax_top1(X, labels, tr, te, shipped, dict(head.DEFAULTS, **epochs)),
    ]
    rows = {name: measure for name, measure in zip(orl_row_names(args.quick), measures) if name in selected}
    results = {}
    for name, measure in rows.items():
        started = time.perf_counter()
        runs = [measure(*faces.split_per_person(labels, 2, seed)) for seed in range(args.seeds)]
        results[name] = dict(mean=float(np.mean(runs)), runs=runs, seconds=round(time.perf_counter() - started, 1))
        log(f"{name:<62} {np.mean(runs):7.1%}  " + " ".join(f"{r:.3f}" for r in runs)
            + f"  ({results[name]['seconds']:.0f} s)")
    return results


# ---------------------------------------------------------------------------------------
# Unseen people across videos.

def test_people(labels, videos, seed=0, n_test=82):
    """82 of the people with >= 2 videos, chosen with seed: the test people."""
    eligible = [p for p in np.unique(labels) if len(set(videos[labels == p])) >= 2]
    return np.sort(np.random.default_rng(seed).permutation(eligible)[:n_test])


GALLERY_DRAWS = 10   # which video is enrolled moves top-1 by +-5 points: the mean of 10 draws


def across_videos(V, labels, videos, people, seed=0):
    """Identification top-1 (gallery: one video per person, its mean; probes: the other
    videos' frames; the mean over GALLERY_DRAWS random choices of the enrolled video) and
    verification (pairs from different videos) among `people`."""
    rng = np.random.default_rng(seed)
    V = gallery.l2_normalize(V)
    draws = []
    for _ in range(GALLERY_DRAWS):
        enrol, probes = enrolment(labels, videos, people, rng)
        enrolled, centres = gallery.centroids(V[enrol], labels[enrol])
        predicted = enrolled[np.argmax(V[probes] @ centres.T, axis=1)]
        draws.append(float((predicted == labels[probes]).mean()))
    mine = np.isin(labels, people)
    d, same = gallery.pair_distances(V[mine], labels[mine], videos[mine])
    result = gallery.verification_report(d, same)
    result.update(top1=float(np.mean(draws)), top1_draws=draws, people=len(people), probes=len(probes))
    return result, (d, same)


def enrolment(labels, videos, group, rng):
    """(enrolled frames, probe frames): one video of each person of `group` enrolled (chosen
    with rng), the frames of their other videos the probes."""
    enrol, probes = [], []
    for p in group:
        mine = np.flatnonzero(labels == p)
        vids = sorted(set(videos[mine]))
        chosen = vids[rng.integers(len(vids))]
        enrol += list(mine[videos[mine] == chosen])
        probes += list(mine[videos[mine] != chosen])
    return np.array(enrol), np.array(probes)


def identify_cases(V, labels, videos, group, seed=0, draws=GALLERY_DRAWS):
    """gallery.open_set_cases of the probes of `group` (as `identify` sees them: a gallery of
    one video per person, its mean vector), pooled over `draws` choices of the enrolled video.
    A stranger: the same probe with its own person taken out of the gallery."""
    rng, W = np.random.default_rng(seed), gallery.l2_normalize(V)
    pooled = []
    for _ in range(draws):
        enrol, probes = enrolment(labels, videos, group, rng)
        enrolled, centres = gallery.centroids(W[enrol], labels[enrol])
        pooled.append(gallery.open_set_cases(gallery.distances(W[probes], centres),
                                             labels[probes][:, None] == enrolled[None]))
    return {k: np.concatenate([c[k] for c in pooled]) for k in pooled[0]}


def verify_pairs(V, labels, videos, group):
    """Distances and same-person flags of the pairs of single frames (from different videos)
    of the people of `group`: what `verify` compares."""
    mine = np.isin(labels, group)
    return gallery.pair_distances(gallery.l2_normalize(V[mine]), labels[mine], videos[mine])


def choose_rules(V, labels, videos, group, targets, seed=0):
    """identify's threshold and margin and verify's band, chosen on the people of `group`."""
    threshold, margin = gallery.choose_open_set_rule(identify_cases(V, labels, videos, group, seed),
                                                     targets["max_strangers"])
    same_below, different_above = gallery.choose_verify_band(*verify_pairs(V, labels, videos, group),
                                                             targets["max_false_accept"], targets["max_false_reject"])
    return dict(threshold=threshold, margin=margin, verify_same=same_below, verify_different=different_above)


def measure_rules(rules, cases, pairs):
    """What the rules do on other people: identify's shares of probes named right and wrong
    and of strangers named; verify's answers on pairs of frames."""
    right, wrong, strangers = gallery.open_set_rates(cases, rules["threshold"], rules.get("margin"))
    pair_d, same = pairs
    said_same, said_different = pair_d <= rules["verify_same"], pair_d > rules["verify_different"]
    return dict(named_right=right, named_wrong=wrong, strangers_named=strangers,
                verify_same_pairs_said_same=float(said_same[same].mean()),
                verify_different_pairs_said_same=float(said_same[~same].mean()),
                verify_same_pairs_said_different=float(said_different[same].mean()),
                verify_different_pairs_said_different=float(said_different[~same].mean()),
                verify_not_sure=float((~said_same & ~said_different).mean()))


def verify_curve(pair_d, same, step=0.05):
    """At each distance (0 to 1.4 by step): the share of different-person pairs within it and
    of same-person pairs beyond it (what `verify` prints beside its answer)."""
    grid = np.round(np.arange(0.0, 1.4 + 1e-9, step), 3)
    different, together = np.sort(pair_d[~same]), np.sort(pair_d[same])
    return dict(distance=grid.tolist(),
                different_within=np.round(np.searchsorted(different, grid, side="right") / len(different), 4).tolist(),
                same_beyond=np.round(1 - np.searchsorted(together, grid, side="right") / len(together), 4).tolist())


def describe(name, m):
    log(f"{name}: identify named right {m['named_right']:.1%}, wrong {m['named_wrong']:.1%}, strangers named "
        f"{m['strangers_named']:.1%}; verify: same-person pairs said same {m['verify_same_pairs_said_same']:.1%}, "
        f"different {m['verify_same_pairs_said_different']:.1%}; different-person pairs said same "
        f"{m['verify_different_pairs_said_same']:.1%}, different {m['verify_different_pairs_said_different']:.1%}; "
        f"not sure {m['verify_not_sure']:.1%} of pairs")


def open_set(V, labels, videos, people, args):
    """identify's `unknown` rule (threshold and margin) and verify's band, chosen on half of
    the test people (never trained on) and measured on the other half; the same again for
    args.splits other random halvings (does the choice carry over to other people?); and the
    rules in recognition/settings.py (the defaults) measured on the same half."""
    targets = dict(max_strangers=args.max_strangers, max_false_accept=args.max_false_accept,
                   max_false_reject=args.max_false_reject)
    halves = np.array_split(np.random.default_rng(args.seed + 1).permutation(people), 2)
    rules = choose_rules(V, labels, videos, halves[0], targets, args.seed)
    cases, pairs = identify_cases(V, labels, videos, halves[1], args.seed), verify_pairs(V, labels, videos, halves[1])
    result = dict(targets=targets, people_choose=len(halves[0]), people_measure=len(halves[1]),
                  probes=len(cases["best"]), pairs_same=int(pairs[1].sum()),
                  pairs_different=int((~pairs[1]).sum()), chosen=rules, measured=measure_rules(rules, cases, pairs))
    log(f"chosen on {len(halves[0])} test people (at most {targets['max_strangers']:.1%} of strangers named, "
        f"{targets['max_false_accept']:.1%} of different pairs said same, {targets['max_false_reject']:.1%} of same "
        f"pairs said different): threshold {rules['threshold']:.3f}, margin {rules['margin']:.2f}; verify same up to "
        f"{rules['verify_same']:.3f}, different beyond {rules['verify_different']:.3f}")
    describe(f"measured on the other {len(halves[1])} ({len(cases['best'])} probes over {GALLERY_DRAWS} "
             f"enrolled videos; {pairs[1].sum()} same and {(~pairs[1]).sum()} different pairs)", result["measured"])
    defaults = {k: SHIPPED_RULES[k] for k in ("threshold", "margin", "verify_same", "verify_different")}
    result["defaults"], result["defaults_measured"] = defaults, measure_rules(defaults, cases, pairs)
    describe(f"recognition/settings.py's rules {defaults} on the same people", result["defaults_measured"])
    splits = []
    for k in range(args.splits):        # other halvings: choose on one half, measure on the other
        a, b = np.array_split(np.random.default_rng(1000 + k).permutation(people), 2)
        chosen = choose_rules(V, labels, videos, a, targets, args.seed)
        splits.append(dict(chosen, **measure_rules(chosen, identify_cases(V, labels, videos, b, args.seed),
                                                   verify_pairs(V, labels, videos, b))))
    if splits:
        keys = ("threshold", "margin", "named_right", "named_wrong", "strangers_named",
                "verify_different_pairs_said_same", "verify_same_pairs_said_different", "verify_not_sure")
        result["splits"] = splits
        result["splits_summary"] = {k: dict(mean=float(np.mean([s[k] for s in splits])),
                                            min=float(np.min([s[k] for s in splits])),
                                            max=float(np.max([s[k] for s in splits]))) for k in keys}
        log(f"over {len(splits)} other halvings (chosen on one half, measured on the other): " + "; ".join(
            f"{k} {v['mean']:.3f} ({v['min']:.3f}-{v['max']:.3f})" for k, v in result["splits_summary"].items()))
    result["verify_curve"] = verify_curve(*pairs)
    return result


def bench_unseen(args):
    import keras
    settings = dict(RECIPES[args.recipe], **(QUICK if args.quick else {}))
    needs_teacher = (settings.get("distill") and not args.protocol_model) or args.teacher_row
    teacher = cvnd_teacher_vectors() if needs_teacher else None     # first: a missing dlib is told at once
    aligned, raw, labels, names, videos = cvnd_faces(shipped_aligner())
    people = test_people(labels, videos, args.seed)
    train = ~np.isin(labels, people)
    log(f"unseen people: {len(people)} test people ({int((~train).sum())} frames), the embedding trained on "
        f"{len(names) - len(people)} others ({int(train.sum())} frames)")
    results = {}

    def row(name, V, extra=None):
        result, _ = across_videos(V, labels, videos, people, args.seed)
        result.update(extra or {})
        results[name] = result
        log(f"{name:<58} top-1 {result['top1']:6.1%}  ROC AUC {result['roc_auc']:.3f}  EER {result['eer']:6.1%}")

    flat = raw.reshape(len(raw), -1).astype(np.float64)
    row("raw pixels (Kaggle-frame crops), nearest mean", flat - flat.mean(1, keepdims=True))
    flat = aligned.reshape(len(raw), -1).astype(np.float64)
    row("raw pixels (aligned), nearest mean", flat - flat.mean(1, keepdims=True))
    trunk = head.feature_extractor(head.load_base(args.base), "conv")
    row("keypoint net block4 (aligned), no training", head.embed(trunk, faces.to_unit(aligned)))
    keras.backend.clear_session()
    if args.teacher_row:
        row("peer: dlib's ResNet encoder (the teacher; its own crops)", teacher)
    started = time.perf_counter()
    if args.protocol_model:     # measure a protocol model saved before (--save-protocol-model)
        embedder = keras.models.load_model(args.protocol_model, compile=False)
    else:
        embedder, _ = embedding.train_embedder(faces.to_unit(aligned[train]), labels[train], head.load_base(args.base), True,
                                               settings, verbose=1 if args.verbose else 0,
                                               teacher=None if teacher is None else teacher[train])
    seconds = time.perf_counter() - started
    if args.save_protocol_model:
        embedder.save(args.save_protocol_model)
    V = embedding.embed_faces(embedder, aligned, flip=False, scales=(1.0,))
    row(f"embedding, {args.recipe} recipe, trained without them", V, dict(seconds=round(seconds, 1)))
    row("  + test-time flip", embedding.embed_faces(embedder, aligned, flip=True, scales=(1.0,)))
    V = embedding.embed_faces(embedder, aligned, flip=True, scales=embedding.TTA_SCALES)
    row(f"  + flip and zooms {embedding.TTA_SCALES} (what recognize.py does)", V)
    results["rules"] = open_set(V, labels, videos, people, args)
    return results


def orl_rules(rules):
    """The shipped embedding on ORL's 40 people (never trained on): for each rule, identify
    with 5 photos of each person enrolled and the other 5 as probes (seeds 0-4; a stranger: the
    probe with its own person taken out), and verify on all pairs of single photos."""
    aligned, _, labels = orl_faces(shipped_aligner())
    embedder, _ = embedding.load_shipped()
    W = gallery.l2_normalize(embedding.embed_faces(embedder, aligned))
    cases = []
    for seed in range(5):
        enrol, probes = faces.split_per_person(labels, 5, seed)
        enrolled, centres = gallery.centroids(W[enrol], labels[enrol])
        cases.append(gallery.open_set_cases(gallery.distances(W[probes], centres),
                                            labels[probes][:, None] == enrolled[None]))
    cases = {k: np.concatenate([c[k] for c in cases]) for k in cases[0]}
    pairs = gallery.pair_distances(W, labels)
    result = {}
    for name, rule in rules.items():
        result[name] = dict(rule=rule, measured=measure_rules(rule, cases, pairs))
        describe(f"ORL, shipped embedding, {name} {rule}", result[name]["measured"])
    return result


def bench_rules(args):
    """The rules of identify and verify from a saved protocol model (`unseen
    --save-protocol-model PATH`): open_set on its test people, without the other rows; then
    recognition/settings.py's rules and the new ones on ORL with the shipped embedding."""
    import keras
    if not args.protocol_model:
        raise cli.UsageError("rules: --protocol-model PATH is required (an embedding trained without the test "
                             "people: python bench/recognition.py unseen --save-protocol-model PATH)")
    aligned, _, labels, names, videos = cvnd_faces(shipped_aligner())
    people = test_people(labels, videos, args.seed)
    embedder = keras.models.load_model(args.protocol_model, compile=False)
    result = open_set(embedding.embed_faces(embedder, aligned), labels, videos, people, args)
    keras.backend.clear_session()
    chosen = dict(result["chosen"], verify_curve=result["verify_curve"])
    log("recognition/settings.py SHIPPED_RULES for these choices:\n" + json.dumps(chosen))
    if not args.no_orl:
        result["orl"] = orl_rules({"recognition/settings.py's rules": result["defaults"], "chosen": result["chosen"]})
    return result


# ---------------------------------------------------------------------------------------
# knn_examples, as a user.

def bench_knn(args):
    folder = need(SHARED_DATA / "photos" / "face_recognition_examples" / "knn_examples")
    work = JSON_DIR / "knn"
    gallery_path = work / "gallery.npz"
    python = [sys.executable, str(ROOT / "recognize.py")]
    commands = [python + ["enroll", str(folder / "train"), "--gallery", str(gallery_path), "--replace"],
                python + ["identify", str(folder / "test"), "--gallery", str(gallery_path),
                          "--out", str(work / "identified")]]
    for command in commands:
        log("$ " + " ".join(command))
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise cli.InputError(f"{' '.join(command)} failed: {done.stderr.strip().splitlines()[-1:]}")
    with open(work / "identified.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # Who is where (from the file names and by looking): a stranger is anyone not enrolled.
    expected = {"alex_lacamoire1.jpg": ["alex_lacamoire"], "johnsnow_test1.jpg": ["kit_harington"],
                "obama1.jpg": ["obama"], "kit_with_rose.jpg": ["kit_harington", "rose_leslie"],
                "obama_and_biden.jpg": ["obama", "biden"]}
    right = 0
    for r in rows:
        wanted = expected.get(Path(r["photo"]).name, [])
        ok = r["name"] in wanted
        right += ok
        log(f"{Path(r['photo']).name} face {r['face']}: {r['name']} (distance {float(r['distance']):.3f})"
            f"{'' if ok else '  <- expected one of ' + ', '.join(wanted)}")
    faces_expected = sum(len(v) for v in expected.values())
    log(f"knn_examples: {right} of {len(rows)} detected faces named right ({faces_expected} faces in the photos)")
    # Strangers: people in ../shared/data/photos who are not enrolled.
    strangers = work / "strangers"
    strangers.mkdir(parents=True, exist_ok=True)
    for photo in (SHARED_DATA / "photos" / "face_recognition_examples" / "lin-manuel-miranda.png",
                  SHARED_DATA / "photos" / "pypi_sample_images" / "grace_hopper.jpg",
                  SHARED_DATA / "photos" / "pypi_sample_images" / "astronaut.png"):
        link = strangers / photo.name
        if not link.exists():
            link.symlink_to(photo)
    command = python + ["identify", str(strangers), "--gallery", str(gallery_path), "--out", str(work / "strangers")]
    log("$ " + " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise cli.InputError(f"{' '.join(command)} failed: {done.stderr.strip().splitlines()[-1:]}")
    with open(work / "strangers.csv", newline="") as f:
        stranger_rows = list(csv.DictReader(f))
    for r in stranger_rows:
        log(f"{Path(r['photo']).name} face {r['face']}: {r['name']} (distance {float(r['distance']):.3f})")
    flagged = sum(r["name"] == gallery.UNKNOWN for r in stranger_rows)
    log(f"strangers: {flagged} of {len(stranger_rows)} faces flagged unknown")
    return dict(right=right, detected=len(rows), faces=faces_expected, rows=rows,
                strangers_flagged=flagged, stranger_faces=len(stranger_rows))


# ---------------------------------------------------------------------------------------
# The shipped embedding.

def ship(args):
    """Train the shipped embedding on all 282 people with SHIP_RECIPE. model.json records the
    protocol model's figures (the same recipe without the test people), read from the `unseen`
    part's JSON (run it first; waited for if it is still running). Its rules (identify's
    threshold and margin, verify's band) are those chosen for the protocol model, kept in
    recognition/settings.py (the `rules` part prints them)."""
    out = Path(args.out)
    cli.writable_folder(out)
    settings = dict(RECIPES[args.recipe], **(QUICK if args.quick else {}))
    teacher = cvnd_teacher_vectors() if settings.get("distill") else None
    aligner = shipped_aligner()
    aligned, _, labels, names, _ = cvnd_faces(aligner)
    started = time.perf_counter()
    embedder, _ = embedding.train_embedder(faces.to_unit(aligned), labels, head.load_base(args.base), True, settings,
                                           verbose=1 if args.verbose else 0, teacher=teacher)
    seconds = time.perf_counter() - started
    from recognition import report
    report.atomic_save(embedder, out / "embedder.keras")
    if aligner.model_path and not cli.same_file(aligner.model_path, out / "aligner.onnx"):
        shutil.copyfile(aligner.model_path, out / "aligner.onnx")     # the embedding keeps its aligner
    unseen = Path(args.json_dir) / "unseen.json"
    for _ in range(120):
        if unseen.exists():
            break
        log(f"waiting for {unseen} (python bench/recognition.py unseen) for the protocol's figures")
        time.sleep(30)
    protocol = json.loads(unseen.read_text())["result"]
    info = dict(kind="embedding", name="face_embedding", created=report.now(),
                command=SHIP_COMMAND if args.recipe == "shipped" else "python bench/recognition.py " + " ".join(sys.argv[1:]),
                teacher=TEACHER if settings.get("distill") else None,
                data="../shared/data/cvnd_youtube_faces (282 people, 2,820 frames)", people=len(names),
                base=str(Path(args.base) if args.base else head.default_base().relative_to(ROOT)),
                align_model="aligner.onnx" if aligner.model_path else None, detect=True, fit="max",
                settings=settings, template=align.TEMPLATE.tolist(), tta_scales=list(embedding.TTA_SCALES),
                seconds=round(seconds, 1), protocol=protocol)
    report.atomic_json(info, out / "model.json")
    log(f"wrote {out / 'embedder.keras'} and {out / 'model.json'}")
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=["orl", "unseen", "rules", "knn", "all", "ship"], help="which measurements")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 ORL seed, a few epochs")
    parser.add_argument("--seeds", type=cli.positive_int, default=None, help="ORL splits (default 5; 1 with --quick)")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0, help="unseen: the test people and training seed")
    parser.add_argument("--rows", default=None, help="orl: only the rows whose name holds one of these words (comma list)")
    parser.add_argument("--out", default=None, help="ship: the folder for embedder.keras and model.json")
    parser.add_argument("--save-protocol-model", default=None, help="unseen: save the embedding trained without the test people")
    parser.add_argument("--protocol-model", default=None, help="unseen: measure this saved protocol model "
                        "instead of training one (it must come from --save-protocol-model with the same --seed)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="shipped",
                        help="unseen, ship: the training recipe (shipped: SHIP_RECIPE, which needs requirements-teacher.txt; "
                             "arcface: the same without the teacher; study: STUDY_RECIPE)")
    parser.add_argument("--teacher-row", action="store_true",
                        help="unseen: also measure the teacher itself, dlib's encoder (requirements-teacher.txt)")
    parser.add_argument("--base", default=None,
                        help="orl, unseen, ship: the keypoint model.keras whose trunk the keypoint-net rows and the "
                             "trained embeddings start from (default: the shipped keypoint model; the figures of "
                             "docs/recognition.md used the one the shipped embedding was trained from, see there)")
    parser.add_argument("--max-strangers", type=cli.fraction, default=RULE_TARGETS["max_strangers"],
                        help="unseen, rules: choose identify's rule naming at most this share of strangers")
    parser.add_argument("--max-false-accept", type=cli.fraction, default=RULE_TARGETS["max_false_accept"],
                        help="unseen, rules: verify says 'same person' where at most this share of different-person pairs are")
    parser.add_argument("--max-false-reject", type=cli.fraction, default=RULE_TARGETS["max_false_reject"],
                        help="unseen, rules: verify says 'different people' where at most this share of same-person pairs are")
    parser.add_argument("--splits", type=cli.non_negative_int, default=20,
                        help="unseen, rules: other random halvings of the test people to choose on one, measure on the other")
    parser.add_argument("--no-orl", action="store_true", help="rules: skip the check of the rules on ORL")
    parser.add_argument("--verbose", action="store_true", help="print training epochs")
    parser.add_argument("--json-dir", default=str(JSON_DIR), help="where the JSON results go")
    args = parser.parse_args(argv)
    args.seeds = args.seeds or (1 if args.quick else 5)
    if args.part == "ship" and not args.out:
        raise cli.UsageError("ship: --out FOLDER is required (models/face_embedding to replace the shipped one)")
    parts = ["orl", "unseen", "knn"] if args.part == "all" else [args.part]
    if args.base is not None and not (Path(args.base).is_file() and Path(args.base).suffix.lower() == ".keras"):
        raise cli.UsageError(f"--base {args.base}: not a keypoint model.keras file")
    if args.rows is not None:
        if "orl" not in parts:
            raise cli.UsageError(f"--rows is for the orl part (orl or all), not {args.part}")
        select_orl_rows(args.rows, args.quick)          # before any work: a word naming no row
    json_dir = Path(cli.writable_folder(args.json_dir))
    for part in parts:
        started = time.perf_counter()
        log(f"\n== {part} ==")
        result = {"orl": bench_orl, "unseen": bench_unseen, "rules": bench_rules, "knn": bench_knn,
                  "ship": ship}[part](args)
        minutes = (time.perf_counter() - started) / 60
        log(f"{part}: {minutes:.1f} min")
        record = dict(part=part, minutes=round(minutes, 1), quick=args.quick,
                      command="python bench/recognition.py " + " ".join(sys.argv[1:]), result=result)
        text = json.dumps(record, indent=2, default=str)
        cli.write_atomically(json_dir / f"{part}.json", lambda tmp: tmp.write_text(text))
    return 0


if __name__ == "__main__":
    cli.run(main)
