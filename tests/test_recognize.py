"""Face recognition (issue 7): folders, the chopped base, heads, losses, metrics and the CLI.

Everything runs on a fresh clone: the base is a tiny keypoint net trained for a few seconds on
synthetic faces, and the people are synthetic identities (make_identities). Real data (ORL)
is only read where the `shared_data` fixture finds it.
"""
import csv
import json

import keras
import numpy as np
import pytest
from keras import layers
from PIL import Image

import input_data
import models
import recognize
import synthetic_faces


def tiny_keypoint_net(seed=0):
    """A small keypoint model in the repository's convention (image -> ... -> fc1 -> out),
    with a batch-norm layer, to check that a frozen base stays in inference mode."""
    keras.utils.set_random_seed(seed)
    image = keras.Input((96, 96, 1), name="image")
    net = layers.Conv2D(8, 5, strides=2, activation="relu", name="conv1")(image)
    net = layers.MaxPooling2D(2, name="pool1")(net)
    net = layers.Conv2D(16, 3, activation="relu", name="conv2")(net)
    net = layers.BatchNormalization(name="bn1")(net)
    net = layers.MaxPooling2D(2, name="pool2")(net)
    net = layers.Flatten(name="flatten")(net)
    net = layers.Dense(32, activation="relu", name="fc1")(net)
    out = layers.Dense(30, name="out")(net)
    return keras.Model(image, out, name="tiny")


@pytest.fixture(scope="module")
def base_path(tmp_path_factory):
    """The tiny net trained on synthetic keypoints for a few epochs (seconds), saved."""
    images, keypoints = synthetic_faces.make_faces(128, seed=1)
    model = tiny_keypoint_net()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    model.fit(input_data.images_to_unit(images), input_data.keypoints_to_unit(keypoints),
              epochs=3, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("base") / "base.keras"
    model.save(path)
    return path


def synthetic_people(n_people=4, per_person=12, seed=0):
    identities = synthetic_faces.make_identities(n_people, seed=seed)
    person_ids = np.repeat(np.arange(n_people), per_person)
    images, _ = synthetic_faces.make_faces(len(person_ids), seed=seed + 100, identities=identities,
                                           person_ids=person_ids)
    return images, person_ids


def write_people(folder, images, person_ids, size=None):
    """folder/person<k>/<i>.png (optionally resized, like ready crops of another size)."""
    for i, (image, person) in enumerate(zip(images, person_ids)):
        path = folder / f"person{person}" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image)
        if size:
            picture = picture.resize(size)
        picture.save(path)
    return folder


# ---------------------------------------------------------------------------------------
# Folders: every problem gives a clear message.

def test_bad_folders_give_clear_messages(tmp_path):
    with pytest.raises(recognize.RecognitionError, match="no such folder"):
        recognize.find_people(tmp_path / "missing")

    loose = tmp_path / "loose"
    loose.mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(loose / "a.png")
    with pytest.raises(recognize.RecognitionError, match="no person folders.*1 loose images"):
        recognize.find_people(loose)

    people = tmp_path / "people"
    for name, n in (("alice", 3), ("bob", 1)):
        (people / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((20, 20), 40 * i, np.uint8)).save(people / name / f"{i}.png")
    (people / "carol").mkdir()
    (people / "carol" / "notes.txt").write_text("not a photo")
    with pytest.raises(recognize.RecognitionError) as error:
        recognize.find_people(people, min_images=2)
    message = str(error.value)
    assert "carol: empty person folder" in message          # both problems in one message
    assert "bob: only 1 image" in message and "at least 2" in message
    assert "alice" not in message

    (people / "carol" / "broken.jpg").write_bytes(b"this is not a jpeg")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(people / "carol" / "fine.png")
    (people / "bob" / "1.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(recognize.RecognitionError) as error:
        recognize.people_faces(people, detect=False)
    message = str(error.value)
    assert "2 unreadable file(s)" in message
    assert "broken.jpg" in message and "1.png" in message and "cannot read it as an image" in message

    # the command line says it in one line, without a traceback
    with pytest.raises(SystemExit, match="error: .*empty person folder"):
        empty = tmp_path / "empty"
        (empty / "dave").mkdir(parents=True)
        recognize.main(["train", str(empty), "--no-detect", "--base", "x.keras", "--run", str(tmp_path / "r")])


def test_split_per_person_holds_out_each_person():
    labels = np.repeat(np.arange(5), [10, 10, 3, 2, 10])
    train, test = recognize.split_per_person(labels, test_per_person=2, seed=3)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(labels)
    assert list(np.bincount(labels[test])) == [2, 2, 2, 1, 2]   # never all of a person's photos
    again, _ = recognize.split_per_person(labels, 2, seed=3)
    assert np.array_equal(train, again)
    with pytest.raises(recognize.RecognitionError, match="needs 2"):
        recognize.split_per_person(np.array([0, 0, 1]), 1)


def test_whole_image_frame_centres_the_square():
    gray = np.zeros((112, 92), np.uint8)
    gray[:, :46] = 200                      # left half bright: the split stays in the middle
    for fit, side in (("max", 112), ("min", 92)):
        frame = recognize.whole_image_frame(gray.shape, fit)
        assert frame.side == side and (frame.cx, frame.cy) == (46, 56)
        crop = frame.crop(gray)
        assert crop.shape == (96, 96)
        assert crop[:, :40].min() > 150 and crop[:, 56:].max() < 50
    # a 96x96 crop stays itself, and "max" is predict.py's whole-photo frame
    face = np.random.default_rng(0).integers(0, 256, (96, 96), dtype=np.uint8)
    assert np.array_equal(recognize.whole_image_frame(face.shape).crop(face), face)
    predict = pytest.importorskip("predict")
    assert recognize.whole_image_frame(gray.shape) == predict.whole_frame(gray)


# ---------------------------------------------------------------------------------------
# The chopped base.

@pytest.mark.parametrize("features", ["out", "conv"])
def test_chopped_model_shares_the_base_weights_exactly(features):
    base = models.load("v2").network()
    model = recognize.build_classifier(recognize.feature_extractor(base, features), 7)
    assert recognize.shares_base_weights(model, base)
    inner = model.get_layer("features")
    expected = {"out": "fc2", "conv": "flatten"}[features]
    assert inner.output.shape[-1] == base.get_layer(expected).output.shape[-1]
    x = np.random.default_rng(0).random((2, 96, 96, 1), np.float32)
    reference = keras.Model(base.inputs, base.get_layer(expected).output).predict(x, verbose=0)
    assert np.array_equal(inner.predict(x, verbose=0), reference)
    # a copy with other weights is told apart, and the scratch baseline is a copy of that kind
    assert not recognize.shares_base_weights(model, recognize.scratch_like(base))


def test_frozen_base_stays_exact_and_in_inference_mode(base_path):
    images, person_ids = synthetic_people(3, 6)
    X = recognize.to_unit(images)
    base = recognize.load_base(base_path)
    model, histories = recognize.train_classifier(
        X, person_ids, 3, base, settings=dict(head_epochs=2, finetune_epochs=0, batch_size=8,
                                              features="conv"))
    assert list(histories) == ["head"]
    fresh = keras.models.load_model(base_path, compile=False)
    assert recognize.shares_base_weights(model, fresh)     # head training left the base alone
    moving_mean = fresh.get_layer("bn1").moving_mean.numpy()

    model, histories = recognize.train_classifier(
        X, person_ids, 3, recognize.load_base(base_path),
        settings=dict(head_epochs=1, finetune_epochs=1, batch_size=8, features="conv"))
    assert list(histories) == ["head", "finetune"]
    assert not recognize.shares_base_weights(model, fresh)  # fine-tuning moved the weights ...
    inner_bn = model.get_layer("features").get_layer("bn1")
    assert np.array_equal(inner_bn.moving_mean.numpy(), moving_mean)  # ... but not BN's statistics


def test_bad_base_is_refused():
    image = keras.Input((96, 96, 1))
    no_out = keras.Model(image, layers.Dense(3, name="other")(layers.Flatten()(image)))
    with pytest.raises(recognize.RecognitionError, match="no layer named 'out'"):
        recognize.feature_extractor(no_out)
    with pytest.raises(recognize.RecognitionError, match="cannot take features 'nope'"):
        recognize.feature_extractor(models.load("v1").network(), "nope")


# ---------------------------------------------------------------------------------------
# Learning identities.

def test_synthetic_identities_are_learned_above_chance(base_path):
    images, person_ids = synthetic_people(4, 12, seed=5)
    X = recognize.to_unit(images)
    train, test = recognize.split_per_person(person_ids, 4, seed=0)
    model, _ = recognize.train_classifier(
        X[train], person_ids[train], 4, recognize.load_base(base_path),
        settings=dict(head_epochs=15, finetune_epochs=3, batch_size=16, augment="flip,light"))
    accuracy = (recognize.embed(model, X[test]).argmax(1) == person_ids[test]).mean()
    assert accuracy >= 0.6, accuracy         # chance is 0.25 (16 held-out faces of 4 people)


def test_triplet_loss_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    e = recognize.l2_normalize(rng.standard_normal((8, 5)))
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 3])         # person 3 has no positive
    got = float(recognize.batch_hard_triplet_loss(0.2)(labels, e.astype(np.float32)))
    d = np.linalg.norm(e[:, None] - e[None], axis=-1)
    terms = []
    for a in range(8):
        positives = [d[a, p] for p in range(8) if p != a and labels[p] == labels[a]]
        if positives:
            negative = min(d[a, n] for n in range(8) if labels[n] != labels[a])
            terms.append(max(max(positives) - negative + 0.2, 0.0))
    assert got == pytest.approx(np.mean(terms), abs=1e-5)


def test_arcface_without_margin_is_a_scaled_softmax():
    rng = np.random.default_rng(1)
    cosines = np.clip(rng.uniform(-1, 1, (6, 4)), -0.99, 0.99).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 0, 1])
    got = float(recognize.arcface_loss(4, margin=0.0, scale=10.0)(labels, cosines))
    logits = 10.0 * cosines
    expected = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(6), labels])
    assert got == pytest.approx(expected, rel=1e-5)
    with_margin = float(recognize.arcface_loss(4, margin=0.3, scale=10.0)(labels, cosines))
    assert with_margin > got                   # the margin makes the true class harder


def test_embedding_is_unit_length_and_trains(base_path):
    images, person_ids = synthetic_people(4, 6, seed=2)
    embedder, histories = recognize.train_embedder(
        recognize.to_unit(images), person_ids, recognize.load_base(base_path),
        settings=dict(loss="triplet", dim=16, head_epochs=2, finetune_epochs=0,
                      people_per_batch=4, photos_per_person=3))
    vectors = recognize.embed(embedder, recognize.to_unit(images))
    assert vectors.shape == (24, 16)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.all(np.isfinite(histories["head"]["loss"]))


# ---------------------------------------------------------------------------------------
# Decisions and measurements.

class FixedProbabilities:
    def __init__(self, p):
        self.p = np.asarray(p, np.float32)

    def predict(self, X, batch_size=None, verbose=0):
        return self.p[:len(X)]


def test_unknown_threshold():
    model = FixedProbabilities([[0.9, 0.1], [0.45, 0.55], [0.5, 0.5], [0.2, 0.8]])
    X = np.zeros((4, 96, 96, 1), np.float32)
    names, p, _ = recognize.classify(model, X, ["ann", "ben"], threshold=0.6)
    assert names == ["ann", recognize.UNKNOWN, recognize.UNKNOWN, "ben"]
    assert p == pytest.approx([0.9, 0.55, 0.5, 0.8])
    names, _, _ = recognize.classify(model, X, ["ann", "ben"], threshold=0.5)
    assert names == ["ann", "ben", "ann", "ben"]            # exactly at the threshold: named
    # embeddings: farther than the threshold from everyone enrolled is unknown
    gallery = recognize.l2_normalize(np.eye(3)[:2])
    queries = recognize.l2_normalize(np.array([[1, 0.1, 0], [0, 0, 1], [0.1, 1, 0.0]]))
    names, d = recognize.identify(queries, ["ann", "ben"], gallery, threshold=0.5)
    assert names == ["ann", recognize.UNKNOWN, "ben"]
    assert d[1] == pytest.approx(np.sqrt(2))


def test_verification_metrics_against_brute_force():
    rng = np.random.default_rng(0)
    same = rng.random(300) < 0.3
    dist = np.round(rng.normal(np.where(same, 0.6, 1.0), 0.25), 2)      # with ties
    pairs = [(a < b) + 0.5 * (a == b) for a in dist[same] for b in dist[~same]]
    assert recognize.roc_auc(-dist, same) == pytest.approx(np.mean(pairs))
    assert recognize.roc_auc(np.r_[1, 2, 3, 4.0], np.r_[0, 0, 1, 1].astype(bool)) == 1.0
    assert recognize.roc_auc(np.r_[1, 1, 1, 1.0], np.r_[0, 1, 0, 1].astype(bool)) == 0.5
    eer, at = recognize.equal_error_rate(dist, same)
    far, frr = np.mean(dist[~same] <= at), np.mean(dist[same] > at)
    assert abs(far - frr) < 0.05 and eer == pytest.approx((far + frr) / 2)
    # separable pairs: a threshold between the two groups, every pair right
    d = np.r_[0.2, 0.3, 0.35, 0.9, 1.1]
    flags = np.r_[1, 1, 1, 0, 0].astype(bool)
    threshold = recognize.choose_threshold(d, flags)
    assert 0.35 < threshold < 0.9
    report = recognize.verification_report(d, flags, threshold)
    assert report["roc_auc"] == 1.0 and report["eer"] == 0.0 and report["balanced_accuracy"] == 1.0


def test_pair_distances_skip_pairs_within_a_group():
    e = recognize.l2_normalize(np.eye(4))
    d, same = recognize.pair_distances(e, np.array([0, 0, 1, 1]), groups=np.array(["a", "b", "c", "c"]))
    assert len(d) == 5 and same.sum() == 1                    # (2, 3) is one video: left out
    assert np.allclose(d, np.sqrt(2))


def test_label_map_round_trip(tmp_path):
    names = ["s1", "s2", "Zoë Ångström", "李雷", "s10"]
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"kind": "softmax", "threshold": 0.5}))
    recognize.save_labels(names, path)
    assert recognize.load_labels(path) == names
    assert json.loads(path.read_text())["threshold"] == 0.5       # the rest of run.json kept
    path.write_text("{}")
    with pytest.raises(recognize.RecognitionError, match="no label map"):
        recognize.load_labels(path)


# ---------------------------------------------------------------------------------------
# The command line, end to end (ready crops: --no-detect).

def test_command_line_end_to_end(tmp_path, base_path, capsys):
    images, person_ids = synthetic_people(3, 6, seed=7)
    faces = write_people(tmp_path / "faces", images, person_ids, size=(92, 112))
    run = tmp_path / "runs" / "softmax"
    common = ["--base", str(base_path), "--no-detect", "--batch-size", "8", "--augment", "flip"]
    accuracy = recognize.main(["train", str(faces), "--run", str(run), "--head-epochs", "3",
                               "--finetune-epochs", "1", *common])
    info = json.loads((run / "run.json").read_text())
    assert info["labels"] == ["person0", "person1", "person2"]
    assert info["kind"] == "softmax" and info["test_faces"] == 6 and info["test_accuracy"] == accuracy
    assert (run / "model.keras").exists() and list((run / "logs").iterdir())
    with open(run / "split.csv") as f:
        subsets = [row["subset"] for row in csv.DictReader(f)]
    assert subsets.count("test") == 6 and subsets.count("train") == 12
    with pytest.raises(SystemExit, match="exists"):
        recognize.main(["train", str(faces), "--run", str(run), *common])

    # evaluate reloads the saved model: the same accuracy as measured at training time
    assert recognize.main(["evaluate", "--run", str(run)]) == pytest.approx(accuracy)
    assert (run / "confusion.png").stat().st_size > 0

    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(3):
        Image.fromarray(images[6 * k]).save(photos / f"photo{k}.png")
    names, p = recognize.main(["predict", str(photos), "--run", str(run), "--threshold", "1.01"])
    assert names == [recognize.UNKNOWN] * 3                    # nothing is that sure
    names, p = recognize.main(["predict", str(photos), "--run", str(run), "--threshold", "0"])
    assert set(names) <= set(info["labels"]) and np.all((p > 0) & (p <= 1))
    with open(run / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == names and len(rows) == 3
    assert (run / "predictions.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="softmax run"):
        recognize.main(["enroll", str(faces), "--run", str(run)])

    # embeddings: train, enrol, identify, verify
    more, more_ids = synthetic_people(6, 5, seed=8)
    embed_run = tmp_path / "runs" / "embedding"
    recognize.main(["embed-train", str(write_people(tmp_path / "crowd", more, more_ids)),
                    "--run", str(embed_run), "--head-epochs", "1", "--finetune-epochs", "0",
                    "--dim", "16", "--val-people", "0.34", *common])
    info = json.loads((embed_run / "run.json").read_text())
    assert info["kind"] == "embedding" and info["validation_people"] == 2
    assert 0 <= info["threshold"] <= 2 and 0 <= info["validation"]["roc_auc"] <= 1
    with pytest.raises(SystemExit, match="nobody enrolled"):
        recognize.main(["identify", str(photos), "--run", str(embed_run)])
    recognize.main(["enroll", str(faces), "--run", str(embed_run)])
    gallery = np.load(embed_run / "gallery.npz")
    assert list(gallery["names"]) == ["person0", "person1", "person2"]
    names, d = recognize.main(["identify", str(photos), "--run", str(embed_run), "--threshold", "2.1"])
    assert len(names) == 3 and set(names) <= {"person0", "person1", "person2"}
    assert (embed_run / "identified.csv").exists() and (embed_run / "identified.png").exists()
    same, d = recognize.main(["verify", str(photos / "photo0.png"), str(photos / "photo0.png"),
                              "--run", str(embed_run)])
    assert same and d == pytest.approx(0.0, abs=1e-3)
    assert "same person" in capsys.readouterr().out


def test_orl_reads_as_forty_people(shared_data):
    crops, labels, names, paths = recognize.people_faces(shared_data / "orl_faces", detect=False)
    assert crops.shape == (400, 96, 96) and len(names) == 40 and names[:3] == ["s1", "s2", "s3"]
    assert paths[9].name == "10.pgm"                       # natural order within a person
    # even raw pixels find most people: the crops are right (the benchmark does the rest)
    train, test = recognize.split_per_person(labels, 2, seed=0)
    X = recognize.to_unit(crops).reshape(400, -1)
    assert (recognize.nearest_neighbour(X[train], labels[train], X[test]) == labels[test]).mean() > 0.9
