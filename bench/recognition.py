"""Every number of the face-recognition README section (issue 7), from one script.

    python bench/recognition.py orl  --base /tmp/fkd-interim/v2_person_split.keras [--seeds 5]
    python bench/recognition.py cvnd --base ...        # softmax across videos, 282 people
    python bench/recognition.py embed --base ...       # triplet vs ArcFace, verification on new people
    python bench/recognition.py all --base ...         # all three

--base defaults to the shipped keypoint model (models.shipped_model_path()), so once v6
ships `python bench/recognition.py all` re-measures everything on it. Results are printed as
tables and written as JSON to --out (default /tmp/fkd-recognition/bench/), never into the
repository; the real faces are read from ../shared/data and nothing derived from them is kept.

orl: ORL / AT&T faces (40 people x 10, 92x112, ready crops, `--no-detect` path: the whole
image is the face), 8 train / 2 test per person, --seeds splits. Per seed:
  nn-pixels        nearest neighbour on the 96x96 pixels (a reference point)
  nn-out, nn-conv  nearest neighbour (cosine) on the base's penultimate (`out` input) and
                   convolutional features: the keypoint features with no training at all
  head-X, ft-X     softmax head on the frozen base (features X), then + fine-tuning everything
  scratch          the same architecture (conv features) from random weights, trained end to end
cvnd: the 282 people of cvnd_youtube_faces (3-4 YouTube videos of 3 frames each); per person
  one video to train on and another to test on (chosen with the seed). Faces are cut in the
  Kaggle frame from the labelled 68 points (input_data.frame_from_68), or with --detect by
  predict.py's detector (the CLI's path).
embed: people split three ways: 160 train the embedding, 40 choose the distance threshold,
  82 are never seen in training and give the verification ROC AUC / EER (pairs of frames
  from different videos) and identification accuracy (enrol one video per person, identify
  the frames of the others, nearest centroid among the 82).
"""
import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import input_data  # noqa: E402
import recognize  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path("/tmp/fkd-recognition/bench")


def log(message):
    print(message, flush=True)


# ---------------------------------------------------------------------------------------
# Data.

def orl_faces(fit="max"):
    folder = SHARED_DATA / "orl_faces"
    if not folder.is_dir():
        sys.exit(f"error: {folder} not found (the real faces live beside the repository)")
    crops, labels, names, _ = recognize.people_faces(folder, detect=False, fit=fit)
    return crops, labels, names


def cvnd_faces(detect=False):
    """(crops uint8, person labels, person names, video ids) of cvnd_youtube_faces."""
    folder = SHARED_DATA / "cvnd_youtube_faces"
    if not folder.is_dir():
        sys.exit(f"error: {folder} not found (the real faces live beside the repository)")
    with open(folder / "training_frames_keypoints.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    crops, people, videos = [], [], []
    for row in rows:
        name = row[0]
        path = folder / "training" / name
        if detect:
            faces, _ = recognize.faces_in_photo(path, detect=True)
            if not len(faces):
                log(f"no face found in {name}; left out")
                continue
            crops.append(faces[0])
        else:
            points = np.array(row[1:], np.float64).reshape(68, 2)
            crops.append(input_data.frame_from_68(points).crop(recognize.read_photo(path)))
        person = input_data.person_of(name)
        people.append(person)
        videos.append(f"{person}/{Path(name).stem.rpartition('_')[2][:-1]}")
    names = sorted(set(people))
    labels = np.array([names.index(p) for p in people])
    return np.stack(crops), labels, names, np.array(videos)


def video_split(labels, videos, seed):
    """Per person: one video to train on, another to test on."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for person in np.unique(labels):
        mine = np.flatnonzero(labels == person)
        vids = sorted(set(videos[mine]))
        a, b = rng.choice(len(vids), 2, replace=False)
        train_idx += list(mine[videos[mine] == vids[a]])
        test_idx += list(mine[videos[mine] == vids[b]])
    return np.array(train_idx), np.array(test_idx)


# ---------------------------------------------------------------------------------------
# Measurements.

def nn_accuracy(F, labels, train_idx, test_idx):
    predicted = recognize.nearest_neighbour(F[train_idx], labels[train_idx], F[test_idx])
    return float((predicted == labels[test_idx]).mean())


def softmax_runs(X, labels, n_people, train_idx, test_idx, base_path, variants, settings, seed):
    """{variant: top-1} for the softmax variants; head-X and ft-X come from one run each."""
    import keras
    results, seconds = {}, {}
    for features in ("out", "conv"):
        if f"head-{features}" not in variants and f"ft-{features}" not in variants:
            continue
        started = time.perf_counter()
        model, histories = recognize.train_classifier(
            X[train_idx], labels[train_idx], n_people, recognize.load_base(base_path), True,
            {**settings, "features": features, "seed": seed,
             "finetune_epochs": settings["finetune_epochs"] if f"ft-{features}" in variants else 0},
            val=(X[test_idx], labels[test_idx]))
        seconds[f"{features} run"] = time.perf_counter() - started
        results[f"head-{features}"] = float(histories["head"]["val_sparse_categorical_accuracy"][-1])
        if "finetune" in histories:
            results[f"ft-{features}"] = float(histories["finetune"]["val_sparse_categorical_accuracy"][-1])
        # the last epoch's validation accuracy is the test accuracy: no epoch is selected on it
        check = float((recognize.embed(model, X[test_idx]).argmax(1) == labels[test_idx]).mean())
        assert abs(check - results.get(f"ft-{features}", results[f"head-{features}"])) < 1e-6
        keras.backend.clear_session()
    if "scratch" in variants:
        started = time.perf_counter()
        base = recognize.scratch_like(recognize.load_base(base_path))
        model, histories = recognize.train_classifier(
            X[train_idx], labels[train_idx], n_people, base, False,
            {**settings, "features": "conv", "seed": seed}, val=(X[test_idx], labels[test_idx]))
        seconds["scratch"] = time.perf_counter() - started
        results["scratch"] = float(histories["scratch"]["val_sparse_categorical_accuracy"][-1])
        keras.backend.clear_session()
    return results, seconds


def base_features(base_path, X):
    import keras
    base = recognize.load_base(base_path)
    out = {name: recognize.embed(recognize.feature_extractor(base, name), X) for name in ("out", "conv")}
    keras.backend.clear_session()
    return out


VARIANTS = ["nn-pixels", "nn-out", "nn-conv", "head-out", "ft-out", "head-conv", "ft-conv", "scratch"]


def summarise(per_seed, variants):
    table = {}
    for v in variants:
        values = [r[v] for r in per_seed if v in r]
        if values:
            table[v] = dict(mean=float(np.mean(values)), std=float(np.std(values)), runs=values)
    return table


def print_table(title, table):
    log(f"\n{title}")
    log(f"{'variant':<12} {'top-1 mean':>10} {'std':>6}  runs")
    for v, r in table.items():
        log(f"{v:<12} {r['mean']:>10.1%} {r['std']:>6.1%}  " + " ".join(f"{x:.3f}" for x in r["runs"]))


def seed_results(dataset, X, labels, names, feats, split, args, settings, seed):
    """Top-1 of the nearest-neighbour baselines and the trained variants on one split."""
    train_idx, test_idx = split
    r = {"nn-pixels": nn_accuracy(X.reshape(len(X), -1), labels, train_idx, test_idx),
         "nn-out": nn_accuracy(feats["out"], labels, train_idx, test_idx),
         "nn-conv": nn_accuracy(feats["conv"], labels, train_idx, test_idx)}
    trained, seconds = softmax_runs(X, labels, len(names), train_idx, test_idx, args.base,
                                    args.variants, settings, seed)
    r.update(trained)
    log(f"{dataset} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items())
        + "; seconds " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    return r


def bench_orl(args, settings):
    crops, labels, names = orl_faces(args.fit)
    X = recognize.to_unit(crops)
    feats = base_features(args.base, X)
    per_seed = [seed_results("orl", X, labels, names, feats, recognize.split_per_person(labels, 2, seed),
                             args, settings, seed) for seed in range(args.seeds)]
    table = summarise(per_seed, [v for v in VARIANTS if v in args.variants or v.startswith("nn")])
    print_table(f"ORL, {args.seeds} seeds, 8 train / 2 test per person, fit {args.fit}", table)
    return dict(table=table, per_seed=per_seed)


def bench_cvnd(args, settings):
    crops, labels, names, videos = cvnd_faces(args.detect)
    X = recognize.to_unit(crops)
    feats = base_features(args.base, X)
    per_seed = [seed_results("cvnd", X, labels, names, feats, video_split(labels, videos, seed),
                             args, settings, seed) for seed in range(args.cvnd_seeds)]
    table = summarise(per_seed, [v for v in VARIANTS if v in args.variants or v.startswith("nn")])
    print_table(f"cvnd, {len(names)} people, train on one video / test on another, "
                f"{args.cvnd_seeds} seed(s), {'detected' if args.detect else 'labelled'} frames", table)
    return dict(table=table, per_seed=per_seed, people=len(names), faces=len(X))


def people_split(n_people, seed, n_val=40, n_test=82):
    order = np.random.default_rng(seed).permutation(n_people)
    return order[n_val + n_test:], order[:n_val], order[n_val:n_val + n_test]


def identification(vectors, labels, videos, seed):
    """Enrol one video per person (centroid), identify every frame of the other videos."""
    rng = np.random.default_rng(seed)
    enrol, query = [], []
    for person in np.unique(labels):
        mine = np.flatnonzero(labels == person)
        vids = sorted(set(videos[mine]))
        chosen = vids[rng.integers(len(vids))]
        enrol += list(mine[videos[mine] == chosen])
        query += list(mine[videos[mine] != chosen])
    people, centres = recognize.centroids(vectors[enrol], labels[enrol])
    names, _ = recognize.identify(vectors[query], people, centres)
    return float((np.array(names) == labels[query]).mean()), len(people), len(query)


def evaluate_vectors(vectors, labels, videos, val_people, test_people, seed):
    is_val, is_test = np.isin(labels, val_people), np.isin(labels, test_people)
    d_val, same_val = recognize.pair_distances(vectors[is_val], labels[is_val], videos[is_val])
    threshold = recognize.choose_threshold(d_val, same_val)
    d, same = recognize.pair_distances(vectors[is_test], labels[is_test], videos[is_test])
    report = recognize.verification_report(d, same, threshold)
    accuracy, n_people, n_queries = identification(vectors[is_test], labels[is_test], videos[is_test], seed)
    report.update(identification_top1=accuracy, identification_people=n_people,
                  identification_queries=n_queries)
    return report


def bench_embed(args, settings):
    import keras
    crops, labels, names, videos = cvnd_faces(args.detect)
    X = recognize.to_unit(crops)
    train_people, val_people, test_people = people_split(len(names), args.seed)
    is_train = np.isin(labels, train_people)
    log(f"embeddings: {len(train_people)} people ({int(is_train.sum())} faces) train, "
        f"{len(val_people)} choose the threshold, {len(test_people)} unseen people test")
    results = {}
    feats = base_features(args.base, X)
    for name in ("out", "conv"):
        results[f"base-{name} (no training)"] = evaluate_vectors(
            recognize.l2_normalize(feats[name]), labels, videos, val_people, test_people, args.seed)
    for loss in args.losses:
        started = time.perf_counter()
        embedder, _ = recognize.train_embedder(
            X[is_train], labels[is_train], recognize.load_base(args.base), True,
            {**settings, "loss": loss, "seed": args.seed})
        seconds = time.perf_counter() - started
        results[loss] = evaluate_vectors(recognize.embed(embedder, X), labels, videos,
                                         val_people, test_people, args.seed)
        results[loss]["seconds"] = round(seconds, 1)
        keras.backend.clear_session()
    log(f"\nembeddings on {len(test_people)} people not used in training (pairs from different videos)")
    log(f"{'embedding':<26} {'ROC AUC':>8} {'EER':>6} {'bal.acc@thr':>11} {'thr':>6} {'ident top-1':>11}")
    for k, r in results.items():
        log(f"{k:<26} {r['roc_auc']:>8.3f} {r['eer']:>6.1%} {r['balanced_accuracy']:>11.1%} "
            f"{r['threshold']:>6.3f} {r['identification_top1']:>11.1%}")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=["orl", "cvnd", "embed", "all"])
    parser.add_argument("--base", default=None, help="keypoint model.keras (default: the shipped one)")
    parser.add_argument("--seeds", type=int, default=5, help="ORL splits")
    parser.add_argument("--cvnd-seeds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="embeddings: the people split and training seed")
    parser.add_argument("--fit", choices=["max", "min"], default="max", help="ORL: whole-image square")
    parser.add_argument("--detect", action="store_true", help="cvnd: predict.py's detector, not the labels")
    parser.add_argument("--variants", default=",".join(VARIANTS[3:]),
                        help="trained variants: head-out,ft-out,head-conv,ft-conv,scratch")
    parser.add_argument("--losses", default="triplet,arcface")
    parser.add_argument("--head-epochs", type=int, default=None)
    parser.add_argument("--finetune-epochs", type=int, default=None)
    parser.add_argument("--augment", default=None)
    parser.add_argument("--head-learning-rate", type=float, default=None)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    args.base = str(args.base or recognize.default_base())
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    args.losses = [v.strip() for v in args.losses.split(",") if v.strip()]
    overrides = {k: v for k in ("head_epochs", "finetune_epochs", "augment", "head_learning_rate")
                 if (v := getattr(args, k)) is not None}
    settings = {**recognize.DEFAULTS, **overrides}
    log(f"base {args.base}; settings {settings}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = ["orl", "cvnd", "embed"] if args.part == "all" else [args.part]
    for part in parts:
        started = time.perf_counter()
        if part == "embed":
            settings = {**recognize.DEFAULTS, **recognize.EMBED_DEFAULTS, **overrides}
        result = {"orl": bench_orl, "cvnd": bench_cvnd, "embed": bench_embed}[part](args, settings)
        minutes = (time.perf_counter() - started) / 60
        log(f"{part}: {minutes:.1f} min")
        record = dict(part=part, base=args.base, settings=settings, minutes=round(minutes, 1),
                      command="python bench/recognition.py " + " ".join(sys.argv[1:]), result=result)
        (out / f"{part}.json").write_text(json.dumps(record, indent=2, default=float))
        log(f"wrote {out / f'{part}.json'}")


if __name__ == "__main__":
    main()
