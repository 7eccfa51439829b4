"""Face recognition's parts (recognition/): folders, the chopped base, heads, losses, metrics.

Everything runs on a fresh clone: the base is a tiny keypoint net trained for a few seconds on
synthetic faces, and the people are synthetic identities (make_identities). Real data (ORL)
is only read where the `shared_data` fixture finds it.
"""
import io
import json
import sys

import keras
import numpy as np
import pytest
from keras import layers
from PIL import Image

import input_data
import models
from recognition import embedding, faces, gallery, head, report
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
    with pytest.raises(faces.RecognitionError, match="no such folder"):
        faces.find_people(tmp_path / "missing")

    loose = tmp_path / "loose"
    loose.mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(loose / "a.png")
    with pytest.raises(faces.RecognitionError, match="no person folders.*1 loose images"):
        faces.find_people(loose)

    people = tmp_path / "people"
    for name, n in (("alice", 3), ("bob", 1)):
        (people / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((20, 20), 40 * i, np.uint8)).save(people / name / f"{i}.png")
    (people / "carol").mkdir()
    (people / "carol" / "notes.txt").write_text("not a photo")
    with pytest.raises(faces.RecognitionError) as error:
        faces.find_people(people, min_images=2)
    message = str(error.value)
    assert "carol: empty person folder" in message          # both problems in one message
    assert "bob: only 1 image" in message and "at least 2" in message
    assert "alice" not in message

    (people / "carol" / "broken.jpg").write_bytes(b"this is not a jpeg")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(people / "carol" / "fine.png")
    (people / "bob" / "1.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(faces.RecognitionError) as error:
        faces.people_faces(people, faces.Aligner("unused.keras"), detect=False)
    message = str(error.value)
    assert "2 unreadable file(s)" in message
    assert "broken.jpg" in message and "1.png" in message and "cannot read it as an image" in message



def test_split_per_person_holds_out_each_person():
    labels = np.repeat(np.arange(5), [10, 10, 3, 2, 10])
    train, test = faces.split_per_person(labels, test_per_person=2, seed=3)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(labels)
    assert list(np.bincount(labels[test])) == [2, 2, 2, 1, 2]   # never all of a person's photos
    again, _ = faces.split_per_person(labels, 2, seed=3)
    assert np.array_equal(train, again)
    with pytest.raises(faces.RecognitionError, match="needs 2"):
        faces.split_per_person(np.array([0, 0, 1]), 1)


def test_whole_image_frame_centres_the_square():
    gray = np.zeros((112, 92), np.uint8)
    gray[:, :46] = 200                      # left half bright: the split stays in the middle
    for fit, side in (("max", 112), ("min", 92)):
        frame = faces.whole_image_frame(gray.shape, fit)
        assert frame.side == side and (frame.cx, frame.cy) == (46, 56)
        crop = frame.crop(gray)
        assert crop.shape == (96, 96)
        assert crop[:, :40].min() > 150 and crop[:, 56:].max() < 50
    # a 96x96 crop stays itself, and "max" is predict.py's whole-photo frame
    face = np.random.default_rng(0).integers(0, 256, (96, 96), dtype=np.uint8)
    assert np.array_equal(faces.whole_image_frame(face.shape).crop(face), face)
    predict = pytest.importorskip("predict")
    assert faces.whole_image_frame(gray.shape) == predict.whole_frame(gray)


# ---------------------------------------------------------------------------------------
# The chopped base.

@pytest.mark.parametrize("features", ["out", "conv"])
def test_chopped_model_shares_the_base_weights_exactly(features):
    base = models.load("v2").network()
    model = head.build_classifier(head.feature_extractor(base, features), 7)
    assert report.shares_base_weights(model, base)
    inner = model.get_layer("features")
    expected = {"out": "fc2", "conv": "flatten"}[features]
    assert inner.output.shape[-1] == base.get_layer(expected).output.shape[-1]
    x = np.random.default_rng(0).random((2, 96, 96, 1), np.float32)
    reference = keras.Model(base.inputs, base.get_layer(expected).output).predict(x, verbose=0)
    assert np.array_equal(inner.predict(x, verbose=0), reference)
    # a copy with other weights is told apart, and the scratch baseline is a copy of that kind
    assert not report.shares_base_weights(model, head.scratch_like(base))


def test_frozen_base_stays_exact_and_in_inference_mode(base_path):
    images, person_ids = synthetic_people(3, 6)
    X = faces.to_unit(images)
    base = head.load_base(base_path)
    model, histories = head.train_classifier(
        X, person_ids, 3, base, settings=dict(head_epochs=2, finetune_epochs=0, batch_size=8,
                                              features="conv"))
    assert list(histories) == ["head"]
    fresh = keras.models.load_model(base_path, compile=False)
    assert report.shares_base_weights(model, fresh)     # head training left the base alone
    moving_mean = fresh.get_layer("bn1").moving_mean.numpy()

    model, histories = head.train_classifier(
        X, person_ids, 3, head.load_base(base_path),
        settings=dict(head_epochs=1, finetune_epochs=1, batch_size=8, features="conv"))
    assert list(histories) == ["head", "finetune"]
    assert not report.shares_base_weights(model, fresh)  # fine-tuning moved the weights ...
    inner_bn = model.get_layer("features").get_layer("bn1")
    assert np.array_equal(inner_bn.moving_mean.numpy(), moving_mean)  # ... but not BN's statistics


def test_bad_base_is_refused():
    image = keras.Input((96, 96, 1))
    no_out = keras.Model(image, layers.Dense(3, name="other")(layers.Flatten()(image)))
    with pytest.raises(faces.RecognitionError, match="no layer named 'out'"):
        head.feature_extractor(no_out)
    with pytest.raises(faces.RecognitionError, match="cannot take features 'nope'"):
        head.feature_extractor(models.load("v1").network(), "nope")


# ---------------------------------------------------------------------------------------
# Learning identities.

def test_synthetic_identities_are_learned_above_chance(base_path):
    images, person_ids = synthetic_people(4, 12, seed=5)
    X = faces.to_unit(images)
    train, test = faces.split_per_person(person_ids, 4, seed=0)
    model, _ = head.train_classifier(
        X[train], person_ids[train], 4, head.load_base(base_path),
        settings=dict(features="conv", head_epochs=15, finetune_epochs=3, batch_size=16, augment="flip,light"))
    accuracy = (head.embed(model, X[test]).argmax(1) == person_ids[test]).mean()
    assert accuracy >= 0.6, accuracy         # chance is 0.25 (16 held-out faces of 4 people)


def test_triplet_loss_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    e = gallery.l2_normalize(rng.standard_normal((8, 5)))
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 3])         # person 3 has no positive
    got = float(embedding.batch_hard_triplet_loss(0.2)(labels, e.astype(np.float32)))
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
    got = float(embedding.arcface_loss(4, margin=0.0, scale=10.0)(labels, cosines))
    logits = 10.0 * cosines
    expected = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(6), labels])
    assert got == pytest.approx(expected, rel=1e-5)
    with_margin = float(embedding.arcface_loss(4, margin=0.3, scale=10.0)(labels, cosines))
    assert with_margin > got                   # the margin makes the true class harder


def test_embedding_is_unit_length_and_trains(base_path):
    images, person_ids = synthetic_people(4, 6, seed=2)
    embedder, histories = embedding.train_embedder(
        faces.to_unit(images), person_ids, head.load_base(base_path),
        settings=dict(loss="triplet", dim=16, head_epochs=2, finetune_epochs=0,
                      people_per_batch=4, photos_per_person=3))
    vectors = head.embed(embedder, faces.to_unit(images))
    assert vectors.shape == (24, 16)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.all(np.isfinite(histories["head"]["loss"]))


def test_distilled_arcface_adds_the_cosine_distance_to_the_teacher():
    rng = np.random.default_rng(3)
    cosines = np.clip(rng.uniform(-1, 1, (5, 3)), -0.99, 0.99).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1])
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)
    vectors, teacher = unit(rng.normal(size=(5, 8))), unit(rng.normal(size=(5, 8)))
    y_true = np.concatenate([labels[:, None], teacher], 1).astype(np.float32)
    got = float(embedding.distilled_arcface_loss(3, 0.3, 10.0, weight=4.0)(y_true, np.concatenate([cosines, vectors], 1)))
    arcface = float(embedding.arcface_loss(3, 0.3, 10.0)(labels, cosines))
    assert got == pytest.approx(arcface + 4.0 * np.mean(1 - (vectors * teacher).sum(1)), rel=1e-5)


def test_distillation_pulls_the_embedding_towards_the_teacher(base_path):
    """The teacher's vectors are a fixed random direction per person: trained with distill,
    the embedding moves towards them; without, it has no reason to."""
    images, person_ids = synthetic_people(4, 6, seed=4)
    directions = np.random.default_rng(5).normal(size=(4, 16))
    teacher = (directions / np.linalg.norm(directions, axis=1, keepdims=True))[person_ids].astype(np.float32)
    X = faces.to_unit(images)
    settings = dict(loss="arcface", dim=16, head_epochs=40, finetune_epochs=0, augment="none", batch_size=8,
                    head_learning_rate=3e-3)

    def agreement(distill):
        embedder, histories = embedding.train_embedder(X, person_ids, head.load_base(base_path), settings=dict(
            settings, distill=distill), teacher=teacher if distill else None)
        assert np.all(np.isfinite(histories["head"]["loss"]))
        return float(np.mean(np.sum(head.embed(embedder, X) * teacher, axis=1)))
    with_teacher, without = agreement(50.0), agreement(0.0)
    assert with_teacher > 0.6 and with_teacher > without + 0.4
    with pytest.raises(ValueError, match="teacher"):
        embedding.train_embedder(X, person_ids, head.load_base(base_path), settings=dict(settings, distill=1.0))


def test_dlib_teacher_says_how_to_install_it(monkeypatch):
    from recognition import teacher
    monkeypatch.setitem(sys.modules, "dlib", None)        # import dlib now raises ImportError
    with pytest.raises(faces.RecognitionError, match="dlib.*pip install -r requirements-teacher.txt"):
        teacher.DlibTeacher()


def test_dlib_teacher_gives_one_unit_vector_per_face():
    pytest.importorskip("dlib", reason="the teacher is optional (requirements-teacher.txt)")
    pytest.importorskip("face_recognition_models")
    from recognition import teacher
    images, _ = synthetic_people(2, 2, seed=6)
    photos = [np.pad(image, 20, mode="edge") for image in images]      # the face inside a larger photo
    vectors = teacher.DlibTeacher().vectors(photos, [(26, 26, 110, 116)] * len(photos))
    assert vectors.shape == (4, 128) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len(np.unique(vectors.round(4), axis=0)) == 4                # each face its own vector


def test_identity_noise_erases_and_blurs_only_some_faces():
    X = np.full((64, 96, 96, 1), 0.5, np.float32)
    X[:, 40:56, 40:56] = 1.0                          # an edge that a blur softens
    data = head.batches(X, np.arange(64), 64, "none", seed=0, shuffle=False)
    out, labels = next(iter(embedding.identity_noise(data, erase=0.5, blur=0.0, seed=0)))
    out = out.numpy()
    assert out.shape == X.shape and labels.shape == (64,)
    assert 0.0 <= out.min() and out.max() <= 1.0
    changed = np.abs(out - X).reshape(64, -1).max(1) > 0
    assert 16 <= changed.sum() <= 48                   # about half the faces
    share = (np.abs(out - X) > 0).reshape(64, -1).mean(1)[changed]
    assert share.max() < 0.25                         # a rectangle of at most 20% of the face
    out, _ = next(iter(embedding.identity_noise(data, erase=0.0, blur=1.0, seed=0)))
    out = out.numpy()
    assert np.allclose(out[:, :30, :30], 0.5, atol=1e-5)  # flat areas stay as they were
    assert (out[:, 48, 40] < 1.0).mean() > 0.5        # the edge is softened in most faces
    assert embedding.identity_noise(data) is data     # nothing asked, nothing done


def test_embed_faces_averages_zooms_and_mirror():
    class Stub:     # the "vector" of a face: its mean brightness left and right of the centre
        def predict(self, X, batch_size=None, verbose=0):
            return np.stack([X[:, :, :48].mean((1, 2, 3)), X[:, :, 48:].mean((1, 2, 3))], 1)
    faces_ = np.zeros((2, 96, 96), np.uint8)
    faces_[:, :, :48] = 200                            # bright on the left
    plain = embedding.embed_faces(Stub(), faces_, flip=False, scales=(1.0,))
    assert plain[0, 0] > 0.99                          # all on the left
    flipped = embedding.embed_faces(Stub(), faces_, flip=True, scales=(1.0,))
    np.testing.assert_allclose(flipped[0], [2 ** -0.5, 2 ** -0.5], atol=1e-6)  # mirror: both sides
    zoomed = embedding.zoom(faces_, 0.5)
    assert zoomed.shape == faces_.shape and zoomed[0, 48, 10] == 200 and zoomed[0, 48, 85] == 0
    np.testing.assert_array_equal(embedding.zoom(faces_, 1.0), faces_)
    default = embedding.embed_faces(Stub(), faces_, scales=embedding.ZOOMS)   # three zooms, mirrored
    np.testing.assert_allclose(np.linalg.norm(default, axis=1), 1.0, atol=1e-6)


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
    names, p, _ = head.classify(model, X, ["ann", "ben"], threshold=0.6)
    assert names == ["ann", gallery.UNKNOWN, gallery.UNKNOWN, "ben"]
    assert p == pytest.approx([0.9, 0.55, 0.5, 0.8])
    names, _, _ = head.classify(model, X, ["ann", "ben"], threshold=0.5)
    assert names == ["ann", "ben", "ann", "ben"]            # exactly at the threshold: named
    # embeddings: farther than the threshold from everyone enrolled is unknown
    enrolled = gallery.l2_normalize(np.eye(3)[:2])
    queries = gallery.l2_normalize(np.array([[1, 0.1, 0], [0, 0, 1], [0.1, 1, 0.0]]))
    names, d, margin = gallery.identify(queries, ["ann", "ben"], enrolled, threshold=0.5)
    assert names == ["ann", gallery.UNKNOWN, "ben"]
    assert d[1] == pytest.approx(np.sqrt(2)) and margin[1] == pytest.approx(0, abs=1e-6)   # as far from both
    # the margin rule: the third face is near ben, but nearly as near ann
    queries = gallery.l2_normalize(np.array([[1, 0.05, 0], [0.9, 1, 0.0]]))
    names, d, margin = gallery.identify(queries, ["ann", "ben"], enrolled, threshold=1.0, min_margin=0.2)
    assert names == ["ann", gallery.UNKNOWN] and 0 < margin[1] < 0.2 < margin[0]
    assert gallery.identify(queries, ["ann"], enrolled[:1])[2][0] == np.inf      # one person: no second


def test_verification_metrics_against_brute_force():
    rng = np.random.default_rng(0)
    same = rng.random(300) < 0.3
    dist = np.round(rng.normal(np.where(same, 0.6, 1.0), 0.25), 2)      # with ties
    pairs = [(a < b) + 0.5 * (a == b) for a in dist[same] for b in dist[~same]]
    assert gallery.roc_auc(-dist, same) == pytest.approx(np.mean(pairs))
    assert gallery.roc_auc(np.r_[1, 2, 3, 4.0], np.r_[0, 0, 1, 1].astype(bool)) == 1.0
    assert gallery.roc_auc(np.r_[1, 1, 1, 1.0], np.r_[0, 1, 0, 1].astype(bool)) == 0.5
    eer, at = gallery.equal_error_rate(dist, same)
    far, frr = np.mean(dist[~same] <= at), np.mean(dist[same] > at)
    assert abs(far - frr) < 0.05 and eer == pytest.approx((far + frr) / 2)
    # separable pairs: a threshold between the two groups, every pair right
    d = np.r_[0.2, 0.3, 0.35, 0.9, 1.1]
    flags = np.r_[1, 1, 1, 0, 0].astype(bool)
    threshold = gallery.choose_threshold(d, flags)
    assert 0.35 < threshold < 0.9
    report = gallery.verification_report(d, flags, threshold)
    assert report["roc_auc"] == 1.0 and report["eer"] == 0.0 and report["balanced_accuracy"] == 1.0


def test_pair_distances_skip_pairs_within_a_group():
    e = gallery.l2_normalize(np.eye(4))
    d, same = gallery.pair_distances(e, np.array([0, 0, 1, 1]), groups=np.array(["a", "b", "c", "c"]))
    assert len(d) == 5 and same.sum() == 1                    # (2, 3) is one video: left out
    assert np.allclose(d, np.sqrt(2))


def test_label_map_round_trip(tmp_path):
    names = ["s1", "s2", "Zoë Ångström", "李雷", "s10"]
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"kind": "softmax", "threshold": 0.5}))
    report.save_labels(names, path)
    assert report.load_labels(path) == names
    assert json.loads(path.read_text())["threshold"] == 0.5       # the rest of run.json kept
    path.write_text("{}")
    with pytest.raises(faces.RecognitionError, match="no label map"):
        report.load_labels(path)


def test_orl_reads_as_forty_people(shared_data):
    crops, labels, names, paths = faces.people_faces(shared_data / "orl_faces", faces.Aligner(), detect=False)
    assert crops.shape == (400, 96, 96) and len(names) == 40 and names[:3] == ["s1", "s2", "s3"]
    assert paths[9].name == "10.pgm"                       # natural order within a person
    # even raw pixels find most people: the crops are right (the benchmark does the rest)
    train, test = faces.split_per_person(labels, 2, seed=0)
    X = faces.to_unit(crops).reshape(400, -1)
    assert (gallery.nearest_neighbour(X[train], labels[train], X[test]) == labels[test]).mean() > 0.9


# ---------------------------------------------------------------------------------------
# A synthetic gallery: one photo per person is enough, strangers are unknown.

def test_one_photo_people_are_named_and_strangers_are_unknown():
    """The gallery's decisions on vectors that behave like an embedding's: each person a
    direction, each photo that direction plus noise (the embedding's quality is the
    benchmark's business; the command line test runs real faces end to end)."""
    rng = np.random.default_rng(0)
    centres = gallery.l2_normalize(rng.standard_normal((10, 64)))
    ids = np.repeat(np.arange(10), 4)
    vectors = gallery.l2_normalize(centres[ids] + 0.06 * rng.standard_normal((40, 64)))
    enrolled = np.arange(0, 24, 4)           # people 0-5 enrol ONE photo each; 6-9 are strangers
    names = [f"p{k}" for k in ids[enrolled]]
    probes = np.setdiff1d(np.arange(len(ids)), enrolled)
    known = ids[probes] < 6
    d = gallery.distances(vectors[probes], vectors[enrolled])
    same = ids[probes][:, None] == ids[enrolled][None]
    threshold, margin = gallery.choose_open_set_rule(gallery.open_set_cases(d[known], same[known]), 0.0)
    assert np.max(d[same]) <= threshold < np.min(d[~same])
    chosen, _, _ = gallery.identify_people(vectors[probes], names, vectors[enrolled], threshold, margin)
    chosen = np.array(chosen)
    assert list(chosen[known]) == [f"p{k}" for k in ids[probes][known]]
    assert set(chosen[~known]) == {gallery.UNKNOWN}
    # without a threshold every stranger gets somebody's name: the threshold is what flags them
    chosen, _, _ = gallery.identify_people(vectors[probes], names, vectors[enrolled])
    assert gallery.UNKNOWN not in chosen


def test_open_set_rates_by_hand():
    d = np.array([[0.2, 0.9, 1.3], [0.8, 0.7, 1.3], [1.5, 1.4, 1.45]])
    same = np.array([[True, False, False], [True, False, False], [False, True, False]])
    cases = gallery.open_set_cases(d, same)
    assert list(cases["right"]) == [True, False, True]
    assert cases["margin"] == pytest.approx([0.7, 0.1, 0.05])
    assert cases["stranger_best"] == pytest.approx([0.9, 0.7, 1.45])      # own person taken out
    assert cases["stranger_margin"] == pytest.approx([0.4, 0.6, 0.05])
    # row 0: nearest own, within 0.75 -> right; row 1: nearest is the other person -> wrong;
    # row 2: 1.4 > 0.75 -> not named. Strangers: 0.9, 0.7, 1.45 -> one named (row 1's)
    assert gallery.open_set_rates(cases, 0.75) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    # a margin of 0.2 keeps row 0's name, takes row 1's wrong one away; its stranger still passes
    assert gallery.open_set_rates(cases, 0.75, 0.2) == pytest.approx((1 / 3, 0, 1 / 3))


def test_the_open_set_rule_names_at_most_the_strangers_allowed():
    """On held-out-like cases where strangers sit near the threshold with small margins, the
    rule chosen for at most 2% of strangers names at most 2% of them, and a margin rule is
    chosen when it names more people right than the threshold alone."""
    rng = np.random.default_rng(1)
    n = 2000
    right = rng.random(n) < 0.6
    cases = dict(right=right, best=np.where(right, rng.normal(0.35, 0.08, n), rng.normal(0.5, 0.08, n)),
                 margin=np.where(right, rng.uniform(0.05, 0.3, n), rng.uniform(0, 0.05, n)),
                 stranger_best=rng.normal(0.5, 0.08, n), stranger_margin=rng.uniform(0, 0.06, n))
    threshold, margin = gallery.choose_open_set_rule(cases, 0.02)
    named_right, named_wrong, strangers = gallery.open_set_rates(cases, threshold, margin)
    assert strangers <= 0.02 and margin > 0
    no_margin = gallery.choose_open_set_rule(cases, 0.02, margins=[0.0])
    assert gallery.open_set_rates(cases, *no_margin)[2] <= 0.02
    assert named_right > gallery.open_set_rates(cases, *no_margin)[0]


def test_verify_band_and_answers():
    rng = np.random.default_rng(2)
    same = rng.random(4000) < 0.2
    d = np.where(same, rng.normal(0.45, 0.1, 4000), rng.normal(0.8, 0.1, 4000))
    same_below, different_above = gallery.choose_verify_band(d, same, 0.01, 0.05)
    assert (d[~same] <= same_below).mean() <= 0.01 and (d[same] > different_above).mean() <= 0.05
    assert same_below < different_above
    # separable pairs: one threshold between, no band
    assert gallery.choose_verify_band(np.r_[0.1, 0.2, 0.9, 1.0], np.r_[1, 1, 0, 0].astype(bool), 0.01, 0.01)[0] \
        == pytest.approx(0.55)
    curve = dict(distance=[0.0, 0.5, 1.0], different_within=[0.0, 0.1, 0.9], same_beyond=[1.0, 0.4, 0.0])
    answer, backing = gallery.verify_answer(0.25, 0.4, 0.6, curve)
    assert answer == gallery.SAME and "5.0% of different-person pairs were this close" in backing
    answer, backing = gallery.verify_answer(0.5, 0.4, 0.6, curve)            # near the threshold
    assert answer == gallery.NOT_SURE and "between 0.400 and 0.600" in backing and "40.0% of same" in backing
    answer, backing = gallery.verify_answer(0.75, 0.4, 0.6, curve)
    assert answer == gallery.DIFFERENT and "20.0% of same-person pairs were this far apart" in backing
    assert gallery.verify_answer(0.5, 0.5, 0.5) == (gallery.SAME, "distance 0.500, threshold 0.500")


def test_gallery_mean_and_nearest_modes(tmp_path):
    vectors = gallery.l2_normalize(np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 0, 1]]))
    path = gallery.save_gallery(tmp_path / "g.npz", ["ann", "ann", "ben"], vectors, "test")
    names, loaded, embedding_name = gallery.load_gallery(path)
    assert names == ["ann", "ann", "ben"] and embedding_name == "test" and np.allclose(loaded, vectors)
    query = gallery.l2_normalize(np.array([[0.8, 0.6, 0.0]]))
    assert gallery.identify_people(query, names, loaded, mode="nearest")[1][0] == pytest.approx(0, abs=1e-6)
    # the margin is to the second-nearest person, not to ann's other photo
    assert gallery.identify_people(query, names, loaded, mode="nearest")[2][0] == pytest.approx(np.sqrt(2), abs=1e-6)
    assert gallery.identify_people(query, names, loaded, mode="mean")[0] == ["ann"]
    (tmp_path / "bad.npz").write_bytes(b"not a gallery")
    with pytest.raises(faces.RecognitionError, match="not a gallery file"):
        gallery.load_gallery(tmp_path / "bad.npz")


def test_projector_files_are_what_tensorboards_projector_serves(tmp_path):
    """recognition/projector.py's files, read by TensorBoard's own projector plugin (the code
    behind `tensorboard --logdir DIR`, tab Projector): the tensor, its names and the sprite."""
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin
    from werkzeug.test import Client
    from recognition import projector
    rng = np.random.default_rng(0)
    vectors = gallery.l2_normalize(rng.standard_normal((5, 16))).astype(np.float32)
    thumbnails = rng.integers(0, 256, (5, gallery.THUMBNAIL, gallery.THUMBNAIL), dtype=np.uint8)
    names, photos = ["ann", "ann", "ben", "cy\tro", "dee"], [f"people/p{k}.jpg" for k in range(5)]
    folder = tmp_path / "projector"
    assert projector.write_projector(folder, names, vectors, thumbnails, photos) == folder / "projector_config.pbtxt"

    class NoRuns:         # a logdir without event files: the projector reads the folder itself
        def list_runs(self, ctx, experiment_id):
            return []
    plugin = ProjectorPlugin(base_plugin.TBContext(logdir=str(folder), data_provider=NoRuns()))

    def get(app, **query):
        response = Client(app).get("/", query_string=query)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data()
    assert json.loads(get(plugin._serve_runs)) == ["."]
    config = json.loads(get(plugin._serve_config, run="."))["embeddings"][0]
    assert config["tensorName"] == "enrolled faces" and config["tensorShape"] == [5, 16]
    assert config["sprite"]["singleImageDim"] == [gallery.THUMBNAIL] * 2
    tensor = np.frombuffer(get(plugin._serve_tensor, run=".", name="enrolled faces"), np.float32)
    assert np.allclose(tensor.reshape(5, 16), vectors, atol=1e-5)
    rows = get(plugin._serve_metadata, run=".", name="enrolled faces").decode().splitlines()
    assert rows == ["name\tphoto"] + [f"{n}\t{p}" for n, p in zip(["ann", "ann", "ben", "cy ro", "dee"], photos)]
    sprite = np.asarray(Image.open(io.BytesIO(get(plugin._serve_sprite_image, run=".", name="enrolled faces"))))
    side = gallery.THUMBNAIL
    assert sprite.shape == (3 * side, 3 * side)                  # 5 faces: a 3 x 3 grid, row by row
    assert np.array_equal(sprite[side:2 * side, side:2 * side], thumbnails[4])   # the fifth: row 1, column 1
    assert not sprite[side:2 * side, 2 * side:].any()


def test_the_gallery_keeps_thumbnails_for_the_projector(tmp_path):
    vectors = gallery.l2_normalize(np.eye(3))
    faces_ = np.arange(3 * gallery.THUMBNAIL ** 2, dtype=np.uint32).reshape(3, gallery.THUMBNAIL, -1).astype(np.uint8)
    path = gallery.save_gallery(tmp_path / "g.npz", ["a", "b", "c"], vectors, "test", faces_, ["1.jpg", "2.jpg", "3.jpg"])
    kept, photos = gallery.gallery_faces(path, 3)
    assert np.array_equal(kept, faces_) and photos == ["1.jpg", "2.jpg", "3.jpg"]
    assert gallery.load_gallery(path)[0] == ["a", "b", "c"]
    # a gallery from before thumbnails were kept (or of another size): grey faces, no photo names
    old = gallery.save_gallery(tmp_path / "old.npz", ["a", "b", "c"], vectors, "test")
    kept, photos = gallery.gallery_faces(old, 3)
    assert kept.shape == (3, gallery.THUMBNAIL, gallery.THUMBNAIL) and (kept == 128).all() and photos == [""] * 3
