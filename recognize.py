"""Face recognition on top of the keypoint network: a softmax head, and FaceNet-style embeddings.

COS 429's plan: "chop off the last layer of the facial keypoints neural net and add a softmax
layer to do face recognition using the high level features learned by the network", then
"read and adapt Google's FaceNet". Both are here, on any keypoint model of this repository.

    python recognize.py train faces/ [--base models/v6_.../model.keras] [--no-detect] [--run NAME]
    python recognize.py evaluate --run models/recognition/NAME
    python recognize.py predict --run models/recognition/NAME photos/ [--threshold 0.5]

    python recognize.py embed-train faces/ [--loss triplet|arcface] [--run NAME]
    python recognize.py enroll --run models/recognition/NAME colleagues/
    python recognize.py identify --run models/recognition/NAME photos/
    python recognize.py verify --run models/recognition/NAME a.jpg b.jpg

Folders of people are `<folder>/<person>/<photo>`, any image format. Each photo becomes a
96x96 face in the Kaggle frame by ONE path: predict.py's detector and crop (the largest face
of a photo), or with --no-detect, for ready crops such as ORL's 92x112 PGMs, the whole image
(the centred square of side max(width, height), edges replicated; see `whole_image_frame`).

The base is a keypoint model with its `out` layer removed (`feature_extractor`): whatever the
architecture, its features are the input of `out`, and the chopped model shares the base's
layers, so its weights are exactly the base's until fine-tuning changes them. The base runs
in inference mode inside the recogniser (batch-norm statistics and dropout as after keypoint
training), also while it is fine-tuned, as is usual for transfer learning.

A run writes models/recognition/<run>/ (git-ignored):
    run.json                      what it is, how it was made, the label map, its measurements
    model.keras / embedder.keras  the softmax recogniser / the L2-normalised embedding
    split.csv                     every photo and whether it was used to train or to test
    history.csv, logs/            per-epoch metrics; TensorBoard: tensorboard --logdir models/recognition
    gallery.npz                   (embeddings) the enrolled people, written by `enroll`
"""
import argparse
import csv
import json
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402

import augment  # noqa: E402
import input_data  # noqa: E402
import models  # noqa: E402

ROOT = Path(__file__).resolve().parent
RUNS = ROOT / "models" / "recognition"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".bmp", ".tif",
                              ".tiff", ".gif", ".webp"})
UNKNOWN = "unknown"

# Training recipe (measured on ORL and the shared faces, see bench/recognition.py and README).
DEFAULTS = dict(
    head_epochs=30,          # phase 1: the new head only, the base frozen
    head_learning_rate=1e-2,
    finetune_epochs=10,      # phase 2: everything, at a low learning rate (0 = no fine-tuning)
    finetune_learning_rate=1e-4,
    scratch_learning_rate=1e-3,  # --scratch: head + finetune epochs of everything at this rate
    batch_size=32,
    augment="all",           # as in the engine: augment.py's mirror, rotation, shift, scale, light
    features="conv",         # which base features the head reads: conv | out | a layer name
    dropout=0.0,             # before the new head
    test_per_person=2,       # held-out photos per person (ORL: 8 train / 2 test)
    seed=0,
    threshold=0.5,           # softmax: below this probability a face is `unknown`
)
EMBED_DEFAULTS = dict(
    loss="arcface",          # arcface (additive angular margin) | triplet (batch-hard online mining):
                             # ArcFace won on new people, ROC AUC 0.70 vs 0.59 (bench/recognition.py embed)
    head_epochs=20,
    finetune_epochs=5,
    dim=128,
    margin=None,             # None: 0.2 for triplet (unit-sphere distance), 0.3 rad for arcface
    scale=30.0,              # arcface logit scale
    people_per_batch=16,     # triplet batches: P people x K photos
    photos_per_person=4,
    val_people=0.2,          # share of the people held out to choose the verification threshold
    head_learning_rate=1e-3, # the softmax's 1e-2 collapses the triplet embedding to a point
)


class RecognitionError(input_data.DataError):
    """Bad input for recognition (folders, photos, runs); the message says what and where."""


# ---------------------------------------------------------------------------------------
# Folders of people and photos.

def _natural_key(path):
    """'s2/10.pgm' after 's2/9.pgm': numbers in names compare as numbers."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def is_image(path):
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_photos(folder):
    """Every image file under folder (recursively), in natural order; a file is a list of one."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise RecognitionError(f"{folder}: no such file or folder")
    photos = sorted((p for p in folder.rglob("*") if is_image(p)), key=_natural_key)
    if not photos:
        raise RecognitionError(f"{folder}: no images in it (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return photos


def find_people(folder, min_images=1):
    """{person: [photo paths]} from folder/<person>/<photo>; every problem in one clear error:
    no such folder, no person folders, a person folder without images, or with fewer than
    min_images (training needs 2: one to learn from, one to test on)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RecognitionError(f"{folder}: no such folder (expected {folder}/<person>/<photo>)")
    people, problems = {}, []
    for sub in sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=_natural_key):
        photos = sorted((p for p in sub.rglob("*") if is_image(p)), key=_natural_key)
        if not photos:
            problems.append(f"{sub}: empty person folder (no image files)")
        elif len(photos) < min_images:
            problems.append(f"{sub}: only {len(photos)} image; each person needs at least "
                            f"{min_images} (some to train on, one or more to test on)")
        else:
            people[sub.name] = photos
    if problems:
        raise RecognitionError(f"{folder}: " + "; ".join(problems))
    if not people:
        loose = [p for p in folder.iterdir() if is_image(p)]
        hint = (f"; it holds {len(loose)} loose images: put each person's photos in a folder "
                "named after the person") if loose else ""
        raise RecognitionError(f"{folder}: no person folders (expected {folder}/<person>/<photo>){hint}")
    return people


# ---------------------------------------------------------------------------------------
# Photos -> 96x96 faces in the Kaggle frame (predict.py's detector and crop, or whole images).

def _predict_module():
    """predict.py (issue 5), imported only when detection is asked for."""
    try:
        import predict
    except ImportError as error:
        raise RecognitionError(f"face detection needs predict.py ({error}); for ready face crops "
                               "use --no-detect") from None
    return predict


def whole_image_frame(shape, fit="max"):
    """The Frame that makes a whole image the face: the centred square of side max(h, w)
    ("max": nothing cut off, edges replicated; predict.whole_frame is the same square) or
    min(h, w) ("min": the long side trimmed). Frame.crop's convention: a 96x96 image's
    frame is Frame(48, 48, 96), which crops it to itself."""
    h, w = shape[:2]
    if fit not in ("max", "min"):
        raise ValueError(f"fit must be 'max' or 'min', not {fit!r}")
    side = float(max(h, w) if fit == "max" else min(h, w))
    return input_data.Frame(w / 2, h / 2, side)


def read_photo(path):
    """uint8 (H, W) grayscale; an unreadable file is a RecognitionError naming it."""
    predict = _predict_module()
    try:
        return predict.read_photo(path)
    except predict.PhotoError as error:
        raise RecognitionError(f"cannot read it as an image: {error}") from None


def faces_in_photo(path, detect=True, fit="max", all_faces=False):
    """(crops uint8 (n, 96, 96), frames [Frame]) of one photo: with detect, predict.py's
    faces (largest first; only the largest unless all_faces), else the whole image."""
    if not detect:
        gray = read_photo(path)
        frame = whole_image_frame(gray.shape, fit)
        return frame.crop(gray)[None], [frame]
    predict = _predict_module()
    gray = read_photo(path)
    frames = list(predict.detect_faces(gray))
    if not all_faces:
        frames = frames[:1]
    if not frames:
        return np.zeros((0, input_data.IMAGE_SIZE, input_data.IMAGE_SIZE), np.uint8), []
    return np.asarray(predict.crop_faces(gray, frames), np.uint8), frames


def load_faces(paths, detect=True, fit="max", progress=False):
    """One face per photo (the largest). Returns (crops uint8 (n, 96, 96), indices of the
    photos that gave a face, [(path, reason)] for those that gave none). Unreadable files
    stop everything with one error that lists them all."""
    from tqdm import tqdm
    crops, kept, no_face, unreadable = [], [], [], []
    for i, path in enumerate(tqdm(paths, desc="faces", unit="photo", disable=not progress)):
        try:
            faces, _ = faces_in_photo(path, detect, fit)
        except RecognitionError as error:
            unreadable.append(str(error))
            continue
        if len(faces):
            crops.append(faces[0])
            kept.append(i)
        else:
            no_face.append((path, "no face found"))
    if unreadable:
        raise RecognitionError(f"{len(unreadable)} unreadable file(s): " + "; ".join(unreadable))
    crops = np.stack(crops) if crops else np.zeros((0, 96, 96), np.uint8)
    return crops, np.array(kept, int), no_face


def people_faces(folder, detect=True, fit="max", min_images=2, progress=False):
    """A folder of people -> (crops uint8 (n, 96, 96), labels int (n,), names, paths).
    Photos without a face are reported and left out; a person left with fewer than
    min_images faces is an error."""
    people = find_people(folder, min_images=min_images)
    names = sorted(people, key=_natural_key)
    paths = [p for name in names for p in people[name]]
    owner = np.array([k for k, name in enumerate(names) for _ in people[name]])
    crops, kept, no_face = load_faces(paths, detect, fit, progress)
    for path, reason in no_face:
        print(f"warning: {path}: {reason}; left out", file=sys.stderr)
    labels = owner[kept]
    counts = np.bincount(labels, minlength=len(names))
    short = [f"{names[k]} ({counts[k]})" for k in range(len(names)) if counts[k] < min_images]
    if short:
        raise RecognitionError(f"{folder}: too few faces found for {', '.join(short)}; each person "
                               f"needs at least {min_images}")
    return crops, labels, names, [paths[i] for i in kept]


def split_per_person(labels, test_per_person=2, seed=0):
    """(train indices, test indices): test_per_person photos of each person held out (at most
    all but one), chosen at random with seed."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for person in np.unique(labels):
        mine = rng.permutation(np.flatnonzero(labels == person))
        if len(mine) < 2:
            raise RecognitionError(f"person {person} has {len(mine)} photo; a train/test split needs 2")
        n_test = int(min(max(test_per_person, 1), len(mine) - 1))
        test_idx += list(mine[:n_test])
        train_idx += list(mine[n_test:])
    return np.sort(train_idx), np.sort(test_idx)


def to_unit(crops):
    """uint8 (n, 96, 96) -> float32 (n, 96, 96, 1) in [0, 1], as the keypoint models take."""
    return input_data.images_to_unit(np.asarray(crops, np.uint8))


# ---------------------------------------------------------------------------------------
# The base: a keypoint model without its output layer.

def default_base():
    """The shipped keypoint model (models.shipped_model_path()); a clear error without one."""
    try:
        return models.shipped_model_path()
    except models.NoShippedModelError as error:
        raise RecognitionError(f"{error}; or pass --base PATH to a keypoint model.keras") from None


def load_base(path=None):
    """The keypoint model at path (default: the shipped one), uncompiled."""
    path = Path(path) if path else default_base()
    if not path.exists():
        raise RecognitionError(f"{path}: no such model file")
    return keras.models.load_model(path, compile=False)


def feature_layer_output(base, features="out"):
    """The tensor the recognition head reads. features: "out" = the input of the `out` layer
    (the keypoint model with its last layer chopped off, COS 429's plan); "conv" = the input of
    the first dense layer (the convolutional trunk's features, before the keypoint-specific
    dense layers), or for a model without a trainable dense layer (v6) its coarsest conv map;
    any other value = the output of the layer of that name."""
    try:
        if features == "out":
            return base.get_layer("out").input
        if features == "conv":
            dense = [layer for layer in base.layers if isinstance(layer, layers.Dense) and layer.trainable]
            if dense:
                return dense[0].input
            # No dense head (v6's integral head: heatmaps and a fixed soft-argmax): the
            # coarsest convolutional map, the trunk's deepest features (v6: block4, 6x6x128).
            maps = [layer.output for layer in base.layers if len(layer.output.shape) == 4]
            return min(maps, key=lambda t: t.shape[1] * t.shape[2])
        return base.get_layer(features).output
    except (ValueError, IndexError):
        known = ", ".join(layer.name for layer in base.layers)
        raise RecognitionError(f"model {base.name!r}: cannot take features {features!r} (layers: "
                               f"{known}); the base must be a keypoint model with an `out` layer") from None


def feature_extractor(base, features="out"):
    """The keypoint model chopped at `features` (see feature_layer_output; default: its `out`
    layer removed). Built from the base's own layers, so the weights are shared, not copied."""
    if "out" not in [layer.name for layer in base.layers]:
        raise RecognitionError(f"model {base.name!r} has no layer named 'out'; the base must be a "
                               "keypoint model of this repository")
    output = feature_layer_output(base, features)
    if len(output.shape) != 2:
        # A conv map (v6's block4, 6x6x128) is flattened, not averaged: identity lives in the
        # layout of the face as much as in the channels. On ORL with the v6 base, the global
        # average (128 numbers) gave 60-76% top-1 with a frozen base, where v2's flattened
        # 11x11x128 map gives 97.5% (README, "Face recognition").
        output = layers.Flatten(name="feature_flatten")(output)
    return keras.Model(base.inputs, output, name="features")


def scratch_like(base):
    """The same architecture as the base, randomly initialised (the no-pre-training baseline)."""
    return keras.models.clone_model(base)


def _features_on(image, features, pretrained):
    # Pre-trained: inference mode (BN statistics of the keypoint training, no dropout), also
    # while fine-tuning (two_phase_fit also freezes BN layers, see _freeze_batch_norm).
    # From scratch: the usual training behaviour.
    return features(image, training=False) if pretrained else features(image)


def build_classifier(features, n_people, pretrained=True, dropout=0.0):
    """image -> the base's features -> softmax over n_people (layer `identity`)."""
    image = keras.Input((96, 96, 1), name="image")
    net = _features_on(image, features, pretrained)
    if dropout:
        net = layers.Dropout(dropout, name="head_dropout")(net)
    out = layers.Dense(n_people, activation="softmax", name="identity")(net)
    return keras.Model(image, out, name="recognizer")


def build_embedder(features, dim=128, pretrained=True):
    """image -> the base's features -> linear `embedding` (dim) -> L2 normalised."""
    image = keras.Input((96, 96, 1), name="image")
    net = _features_on(image, features, pretrained)
    net = layers.Dense(dim, name="embedding")(net)
    out = layers.UnitNormalization(axis=-1, name="l2_normalize")(net)
    return keras.Model(image, out, name="embedder")


# ---------------------------------------------------------------------------------------
# Embedding losses.

def _pairwise_distances(embeddings):
    """Euclidean distances between unit vectors, (B, B), with a safe gradient at zero."""
    dot = ops.matmul(embeddings, ops.transpose(embeddings))
    return ops.sqrt(ops.maximum(2.0 - 2.0 * dot, 1e-12))


def batch_hard_triplet_loss(margin=0.2):
    """FaceNet's triplet loss with online mining, batch-hard variant (Hermans et al. 2017):
    for each anchor, its farthest positive and its nearest negative in the batch."""
    def loss(y_true, y_pred):
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        d = _pairwise_distances(ops.cast(y_pred, "float32"))
        same = ops.equal(labels[:, None], labels[None, :])
        eye = ops.eye(ops.shape(labels)[0], dtype="bool")
        positive = ops.logical_and(same, ops.logical_not(eye))
        hardest_positive = ops.max(ops.where(positive, d, 0.0), axis=1)
        hardest_negative = ops.min(ops.where(same, 4.0, d), axis=1)
        has_positive = ops.cast(ops.any(positive, axis=1), "float32")
        per_anchor = ops.relu(hardest_positive - hardest_negative + margin) * has_positive
        return ops.sum(per_anchor) / ops.maximum(ops.sum(has_positive), 1.0)
    return loss


class CosineClassifier(layers.Layer):
    """Cosines between unit embeddings and one learned unit centre per training person."""

    def __init__(self, n_classes, **kwargs):
        super().__init__(**kwargs)
        self.n_classes = n_classes

    def build(self, input_shape):
        self.centres = self.add_weight(shape=(input_shape[-1], self.n_classes),
                                       initializer="glorot_uniform", name="centres")

    def call(self, embeddings):
        centres = self.centres / ops.sqrt(ops.sum(ops.square(self.centres), axis=0, keepdims=True) + 1e-12)
        return ops.matmul(embeddings, centres)


def arcface_loss(n_classes, margin=0.3, scale=30.0):
    """ArcFace (Deng et al. 2019): softmax over s * cos(theta + m) for the true person,
    s * cos(theta) for the others, on the cosines of CosineClassifier."""
    cos_m, sin_m = float(np.cos(margin)), float(np.sin(margin))
    threshold, fallback = float(np.cos(np.pi - margin)), float(np.sin(np.pi - margin) * margin)

    def loss(y_true, cosines):
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        cosines = ops.clip(ops.cast(cosines, "float32"), -1.0 + 1e-7, 1.0 - 1e-7)
        sines = ops.sqrt(1.0 - ops.square(cosines))
        with_margin = cosines * cos_m - sines * sin_m
        # Past theta = pi - m, cos(theta + m) is no longer decreasing: use a linear penalty.
        with_margin = ops.where(cosines > threshold, with_margin, cosines - fallback)
        onehot = ops.one_hot(labels, n_classes)
        logits = scale * (onehot * with_margin + (1.0 - onehot) * cosines)
        return ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    return loss


# ---------------------------------------------------------------------------------------
# Input pipelines: the engine's augmentation, with identity labels instead of keypoints.

def _augmented(dataset, config, seed):
    """Augment the images of (images, labels) batches with augment.augment_batch (dummy
    keypoints: only the pixels matter here)."""
    import tensorflow as tf
    if not config.enabled:
        return dataset
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def apply(batch, batch_seed):
        images, labels = batch
        dummy = tf.zeros([tf.shape(images)[0], len(input_data.COLUMNS)], tf.float32)
        images, _ = augment.augment_batch(images, dummy, config, batch_seed)
        return images, labels
    return tf.data.Dataset.zip(dataset, seeds).map(apply, num_parallel_calls=tf.data.AUTOTUNE)


def batches(X, labels, batch_size=32, augment_spec="all", seed=0, shuffle=True):
    """tf.data (images, labels) batches, shuffled each epoch, augmented as in the engine."""
    import tensorflow as tf
    images, targets = tf.constant(np.asarray(X, np.float32)), tf.constant(np.asarray(labels, np.int32))
    dataset = tf.data.Dataset.range(len(X))
    if shuffle:
        dataset = dataset.shuffle(len(X), seed=seed, reshuffle_each_iteration=True)
    def gather(i):
        return tf.gather(images, i), tf.gather(targets, i)
    dataset = dataset.batch(batch_size).map(gather)
    return _augmented(dataset, augment.parse(augment_spec), seed).prefetch(tf.data.AUTOTUNE)


def pk_batches(X, labels, people_per_batch=16, photos_per_person=4, augment_spec="all", seed=0):
    """Endless batches of P people x K photos each (for triplet mining: every anchor has
    positives); a person with fewer than K photos repeats some (augmentation varies them)."""
    import tensorflow as tf
    labels = np.asarray(labels)
    owners = [np.flatnonzero(labels == p) for p in np.unique(labels)]
    owners = [o for o in owners if len(o) >= 2]
    if len(owners) < 2:
        raise RecognitionError("triplet training needs at least 2 people with 2 photos or more")
    P, K = min(people_per_batch, len(owners)), photos_per_person

    rng = np.random.default_rng(seed)      # one stream: every epoch draws new batches

    def indices():
        while True:
            chosen = rng.choice(len(owners), P, replace=False)
            yield np.concatenate([rng.choice(owners[c], K, replace=len(owners[c]) < K) for c in chosen])

    images, targets = tf.constant(np.asarray(X, np.float32)), tf.constant(labels.astype(np.int32))
    def gather(i):
        return tf.gather(images, i), tf.gather(targets, i)
    dataset = tf.data.Dataset.from_generator(indices, output_signature=tf.TensorSpec([P * K], tf.int64))
    dataset = dataset.map(gather)
    return _augmented(dataset, augment.parse(augment_spec), seed).prefetch(tf.data.AUTOTUNE), P * K


# ---------------------------------------------------------------------------------------
# Training: the head on the frozen base, then optionally everything at a low learning rate.

def _callbacks(out_dir, phase, verbose):
    if out_dir is None:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    callbacks = [keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=phase != "head")]
    callbacks.append(keras.callbacks.TensorBoard(str(out_dir / "logs" / phase)))
    if verbose:
        class Progress(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                shown = "  ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
                print(f"{phase} epoch {epoch + 1}: {shown}", flush=True)
        callbacks.append(Progress())
    return callbacks


def two_phase_fit(model, features, train_data, loss, pretrained=True, metrics=None, val_data=None,
                  head_epochs=30, head_learning_rate=1e-3, finetune_epochs=15,
                  finetune_learning_rate=1e-4, steps_per_epoch=None, out_dir=None, verbose=0,
                  head_data=None, head_model=None, head_val=None, scratch_learning_rate=1e-3):
    """Phase 1: only the new layers learn (the base frozen), head_epochs at head_learning_rate.
    Phase 2: everything, finetune_epochs at finetune_learning_rate. From scratch (not
    pretrained) there is no frozen phase: head_epochs + finetune_epochs of everything at
    scratch_learning_rate. Returns {phase: history dict}.

    head_model, head_data: phase 1 on the base's features computed once (head_model holds
    the new layers, shared with model, and reads features), which is many times faster than
    running the frozen base on every batch; the augmentation then only starts in phase 2."""
    histories = {}
    phases = ([("head", False, head_epochs, head_learning_rate),
               ("finetune", True, finetune_epochs, finetune_learning_rate)] if pretrained else
              [("scratch", True, head_epochs + finetune_epochs, scratch_learning_rate)])
    for phase, base_trainable, epochs, learning_rate in phases:
        if epochs <= 0:
            continue
        features.trainable = base_trainable
        if pretrained:
            _freeze_batch_norm(features)
        cached = phase == "head" and head_model is not None
        fitted = head_model if cached else model
        fitted.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics or [])
        history = fitted.fit(head_data if cached else train_data,
                             validation_data=head_val if cached else val_data, epochs=epochs,
                             verbose=0, steps_per_epoch=steps_per_epoch,
                             callbacks=_callbacks(out_dir, phase, verbose))
        histories[phase] = history.history
    features.trainable = True
    return histories


def _freeze_batch_norm(model):
    """Keep every batch-norm layer of a pre-trained base in inference mode: in Keras 3 a
    BatchNormalization layer that is not trainable uses (and keeps) its moving statistics,
    even inside a model being trained; `training=False` at the call alone does not hold
    once the outer model trains."""
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False


def _head_of(model, features):
    """The layers after `features` in model, as a model on feature vectors (shared layers)."""
    vector = keras.Input(features.output.shape[1:], name="base_features")
    net, after = vector, False
    for layer in model.layers:
        if layer is features:
            after = True
        elif after:
            net = layer(net)
    return keras.Model(vector, net, name="head")


def train_classifier(X, labels, n_people, base, pretrained=True, settings=None, val=None,
                     out_dir=None, verbose=0):
    """A softmax recogniser on base's features, trained on X float32 (n, 96, 96, 1), labels
    int. base: a keypoint model (pretrained) or scratch_like(base). -> (model, histories)."""
    s = {**DEFAULTS, **(settings or {})}
    keras.utils.set_random_seed(int(s["seed"]))
    features = feature_extractor(base, s["features"])
    model = build_classifier(features, n_people, pretrained, s["dropout"])
    train_data = batches(X, labels, s["batch_size"], s["augment"], s["seed"])
    val_data = None if val is None else batches(val[0], val[1], 256, "none", shuffle=False)
    head = {}
    if pretrained and s["head_epochs"] > 0:
        F = embed(features, X)
        head = dict(head_model=_head_of(model, features),
                    head_data=batches(F, labels, s["batch_size"], "none", s["seed"]),
                    head_val=None if val is None else batches(embed(features, val[0]), val[1], 256,
                                                              "none", shuffle=False))
    histories = two_phase_fit(
        model, features, train_data, "sparse_categorical_crossentropy", pretrained,
        metrics=["sparse_categorical_accuracy"], val_data=val_data,
        head_epochs=s["head_epochs"], head_learning_rate=s["head_learning_rate"],
        finetune_epochs=s["finetune_epochs"], finetune_learning_rate=s["finetune_learning_rate"],
        scratch_learning_rate=s["scratch_learning_rate"], out_dir=out_dir, verbose=verbose, **head)
    return model, histories


def train_embedder(X, labels, base, pretrained=True, settings=None, out_dir=None, verbose=0):
    """An L2-normalised embedding on base's features, trained on X, labels (int) with the
    triplet loss (batch-hard online mining) or ArcFace. -> (embedder, histories)."""
    s = {**DEFAULTS, **EMBED_DEFAULTS, **(settings or {})}
    keras.utils.set_random_seed(int(s["seed"]))
    features = feature_extractor(base, s["features"])
    embedder = build_embedder(features, s["dim"], pretrained)
    labels = np.asarray(labels)
    F = embed(features, X) if pretrained and s["head_epochs"] > 0 else None
    schedule = dict(head_epochs=s["head_epochs"], head_learning_rate=s["head_learning_rate"],
                    finetune_epochs=s["finetune_epochs"],
                    finetune_learning_rate=s["finetune_learning_rate"], out_dir=out_dir, verbose=verbose)
    if s["loss"] == "triplet":
        data, batch = pk_batches(X, labels, s["people_per_batch"], s["photos_per_person"],
                                 s["augment"], s["seed"])
        steps = max(1, int(np.ceil(len(X) / batch)))
        margin = 0.2 if s["margin"] is None else float(s["margin"])
        head = {}
        if F is not None:
            head_data, _ = pk_batches(F, labels, s["people_per_batch"], s["photos_per_person"],
                                      "none", s["seed"])
            head = dict(head_model=_head_of(embedder, features), head_data=head_data)
        histories = two_phase_fit(embedder, features, data, batch_hard_triplet_loss(margin), pretrained,
                                  steps_per_epoch=steps, **schedule, **head)
    elif s["loss"] == "arcface":
        classes, dense = np.unique(labels, return_inverse=True)
        margin = 0.3 if s["margin"] is None else float(s["margin"])
        image = keras.Input((96, 96, 1), name="image")
        centres = CosineClassifier(len(classes), name="centres")
        trainer = keras.Model(image, centres(embedder(image)), name="arcface_trainer")
        data = batches(X, dense, s["batch_size"], s["augment"], s["seed"])
        head = {}
        if F is not None:
            head_embedder = _head_of(embedder, features)
            vector = keras.Input(F.shape[1:])
            head = dict(head_model=keras.Model(vector, centres(head_embedder(vector))),
                        head_data=batches(F, dense, s["batch_size"], "none", s["seed"]))
        histories = two_phase_fit(trainer, features, data, arcface_loss(len(classes), margin, s["scale"]),
                                  pretrained, **schedule, **head)
    else:
        raise ValueError(f"loss must be triplet or arcface, not {s['loss']!r}")
    return embedder, histories


def embed(model, X, batch_size=256):
    """Embeddings (or features) of X as float32 numpy."""
    return np.asarray(model.predict(np.asarray(X, np.float32), batch_size=batch_size, verbose=0), np.float32)


def l2_normalize(v):
    v = np.asarray(v, np.float64)
    return (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Measuring: accuracy, nearest neighbours, verification.

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


def classify(model, X, names, threshold=0.5):
    """(names, probabilities, probability matrix): the most likely person of each face, or
    `unknown` when its probability is below threshold."""
    probabilities = embed(model, X)
    best = probabilities.argmax(axis=1)
    p = probabilities[np.arange(len(best)), best]
    chosen = [UNKNOWN if q < threshold else names[k] for k, q in zip(best, p)]
    return chosen, p, probabilities


# ---------------------------------------------------------------------------------------
# Runs on disk: the model, run.json (label map and settings), split.csv.

def save_labels(names, path):
    """The label map: class index -> person, as run.json's `labels` (atomic write)."""
    path = Path(path)
    info = json.loads(path.read_text()) if path.exists() else {}
    info["labels"] = list(names)
    _atomic_json(info, path)


def load_labels(path):
    names = json.loads(Path(path).read_text()).get("labels")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RecognitionError(f"{path}: no label map (a list of names under 'labels')")
    return names


def _atomic_json(data, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _atomic_save(model, path):
    from train import _atomic_save as save
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save(model, Path(path))


def run_dir(run, kind):
    """models/recognition/<run> for a name, or the path itself when it is one."""
    if run is None:
        run = f"{kind}-{datetime.now():%m%d-%H%M%S}"
    path = Path(run)
    return path if (path.is_absolute() or len(path.parts) > 1) else RUNS / run


def open_run(path, kind):
    """run.json of an existing run of this kind ('softmax' or 'embedding')."""
    path = Path(path)
    info_path = path / "run.json"
    if not info_path.exists():
        raise RecognitionError(f"{path}: not a recognition run (no run.json); train one with "
                               f"`python recognize.py {'train' if kind == 'softmax' else 'embed-train'}`")
    info = json.loads(info_path.read_text())
    if info.get("kind") != kind:
        raise RecognitionError(f"{path} is a {info.get('kind')} run; this command needs a {kind} run")
    return info


def write_split(path, paths, names, labels, subsets):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["photo", "person", "subset"])
        for p, label, subset in zip(paths, labels, subsets):
            writer.writerow([str(Path(p).resolve()), names[label], subset])


def read_split(path, subset):
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["subset"] == subset]
    return [Path(r["photo"]) for r in rows], [r["person"] for r in rows]


def _layer_weights_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def shares_base_weights(model, base):
    """Does every layer of the chopped base inside `model` (its `features` sub-model) have
    exactly the weights of the layer of the same name in `base`? False if none is compared."""
    features = model.get_layer("features")
    compared = 0
    for layer in features.layers:
        if not layer.weights:
            continue
        try:
            original = base.get_layer(layer.name)
        except ValueError:
            return False
        if not _layer_weights_equal(layer, original):
            return False
        compared += 1
    return compared > 0


# ---------------------------------------------------------------------------------------
# Plots.

def plot_faces(crops, titles, path, colors=None, title=None, columns=6):
    """A grid of faces with their names (and probabilities) written over them."""
    from matplotlib.figure import Figure
    n = max(len(crops), 1)
    columns = min(columns, n)
    rows = int(np.ceil(n / columns))
    fig = Figure(figsize=(1.6 * columns, 1.75 * rows + (0.3 if title else 0)))
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for k, ax in enumerate(axes):
        ax.axis("off")
        if k >= len(crops):
            continue
        ax.imshow(crops[k], cmap="gray", vmin=0, vmax=255)
        ax.text(48, 92, titles[k], color=(colors[k] if colors else "yellow"), fontsize=7,
                ha="center", va="bottom", bbox=dict(facecolor="black", alpha=0.6, pad=1, lw=0))
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return Path(path)


def plot_confusion(truth, predicted, names, path, title=None):
    """Confusion matrix (rows: true person, columns: predicted), counts as shades."""
    from matplotlib.figure import Figure
    n = len(names)
    matrix = np.zeros((n, n), int)
    np.add.at(matrix, (np.asarray(truth), np.asarray(predicted)), 1)
    size = min(max(4.0, 0.22 * n + 2), 30)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    if n <= 60:
        ax.set_xticks(range(n), names, rotation=90, fontsize=6)
        ax.set_yticks(range(n), names, fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return matrix


# ---------------------------------------------------------------------------------------
# Commands.

def cmd_train(args):
    out = run_dir(args.run, "softmax")
    if (out / "run.json").exists() and not args.overwrite:
        raise RecognitionError(f"{out} exists; pick another --run or pass --overwrite")
    base_path = Path(args.base) if args.base else default_base()
    print(f"reading faces from {args.folder} ({'whole images' if args.no_detect else 'detecting faces'})")
    crops, labels, names, paths = people_faces(args.folder, not args.no_detect, args.fit, 2, progress=True)
    settings = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}
    s = {**DEFAULTS, **settings}
    train_idx, test_idx = split_per_person(labels, s["test_per_person"], s["seed"])
    print(f"{len(names)} people, {len(train_idx)} training and {len(test_idx)} test faces; "
          f"base {base_path}" + ("" if args.pretrained else " (architecture only: from scratch)"))
    base = load_base(base_path)
    if not args.pretrained:
        base = scratch_like(base)
    X = to_unit(crops)
    started = time.perf_counter()
    model, histories = train_classifier(X[train_idx], labels[train_idx], len(names), base,
                                        args.pretrained, s, val=(X[test_idx], labels[test_idx]),
                                        out_dir=out, verbose=1)
    seconds = time.perf_counter() - started
    predicted = embed(model, X[test_idx]).argmax(1)
    accuracy = float((predicted == labels[test_idx]).mean())
    _atomic_save(model, out / "model.keras")
    write_split(out / "split.csv", paths, names, labels,
                ["test" if i in set(test_idx) else "train" for i in range(len(paths))])
    _atomic_json(dict(kind="softmax", labels=names, base=str(base_path), pretrained=args.pretrained,
                      data=str(Path(args.folder).resolve()), detect=not args.no_detect, fit=args.fit,
                      settings=s, train_faces=len(train_idx), test_faces=len(test_idx),
                      test_accuracy=accuracy, seconds=round(seconds, 1),
                      created=datetime.now().isoformat(timespec="seconds"),
                      command="python recognize.py " + " ".join(sys.argv[1:])), out / "run.json")
    print(f"test top-1 accuracy {accuracy:.1%} ({int((predicted == labels[test_idx]).sum())}/{len(test_idx)}) "
          f"after {seconds:.0f} s; saved {out}")
    return accuracy


def _load_run_model(out, name):
    path = Path(out) / name
    if not path.exists():
        raise RecognitionError(f"{path}: missing")
    return keras.models.load_model(path, compile=False, custom_objects={"CosineClassifier": CosineClassifier})


def cmd_evaluate(args):
    out = Path(args.run)
    info = open_run(out, "softmax")
    names = load_labels(out / "run.json")
    paths, people = read_split(out / "split.csv", "test")
    if args.data:          # the same photos under another root (a moved folder)
        old = Path(info["data"])
        paths = [Path(args.data) / p.relative_to(old) for p in paths]
    unknown = sorted(set(people) - set(names))
    if unknown:
        raise RecognitionError(f"{out / 'split.csv'}: people not in the label map: {', '.join(unknown)}")
    crops, kept, no_face = load_faces(paths, info["detect"], info.get("fit", "max"))
    for path, reason in no_face:
        print(f"warning: {path}: {reason}; counted as wrong", file=sys.stderr)
    truth = np.array([names.index(p) for p in people])
    predicted = np.full(len(paths), -1)
    if len(kept):
        predicted[kept] = embed(_load_run_model(out, "model.keras"), to_unit(crops)).argmax(1)
    accuracy = float((predicted == truth).mean())
    found = predicted >= 0
    plot_confusion(truth[found], predicted[found], names, out / "confusion.png",
                   title=f"{out.name}: top-1 {accuracy:.1%} on {len(truth)} held-out faces")
    _atomic_json(dict(top1=accuracy, faces=len(truth), no_face=len(no_face)), out / "evaluation.json")
    print(f"wrote {out / 'confusion.png'}")
    print(f"top-1 accuracy {accuracy:.1%} ({int((predicted == truth).sum())}/{len(truth)} held-out faces)")
    return accuracy


def _photo_faces(folder, detect, fit):
    """Every face of every photo under folder: (crops, [(photo, face number, frame)])."""
    crops, where, problems = [], [], []
    for path in list_photos(folder):
        try:
            faces, frames = faces_in_photo(path, detect, fit, all_faces=True)
        except RecognitionError as error:
            problems.append(str(error))
            continue
        if not len(faces):
            print(f"warning: {path}: no face found", file=sys.stderr)
        for k, (face, frame) in enumerate(zip(faces, frames)):
            crops.append(face)
            where.append((path, k, frame))
    for problem in problems:
        print(f"warning: {problem}; skipped", file=sys.stderr)
    if not crops:
        raise RecognitionError(f"{folder}: no faces found in any photo")
    return np.stack(crops), where


def _write_rows(path, header, rows):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def cmd_predict(args):
    out = Path(args.run)
    info = open_run(out, "softmax")
    names = load_labels(out / "run.json")
    detect = info["detect"] if args.detect is None else args.detect
    crops, where = _photo_faces(args.photos, detect, info.get("fit", "max"))
    threshold = info["settings"]["threshold"] if args.threshold is None else args.threshold
    chosen, p, _ = classify(_load_run_model(out, "model.keras"), to_unit(crops), names, threshold)
    _report_named_faces(crops, where, chosen, p, "probability", Path(args.out or out / "predictions"),
                        f"{out.name}, threshold {threshold}")
    return chosen, p


def _report_named_faces(crops, where, chosen, scores, score_name, target, title):
    """target.csv (photo, face, frame, name, score), target.png (the named crops) and a line
    per face: what `predict` and `identify` both write."""
    rows = [[str(path), k, f"{f.cx:.1f}", f"{f.cy:.1f}", f"{f.side:.1f}", name, f"{score:.4f}"]
            for (path, k, f), name, score in zip(where, chosen, scores)]
    _write_rows(target.with_suffix(".csv"), ["photo", "face", "cx", "cy", "side", "name", score_name], rows)
    plot_faces(crops, [f"{n} {score:.2f}" for n, score in zip(chosen, scores)], target.with_suffix(".png"),
               colors=["red" if n == UNKNOWN else "yellow" for n in chosen], title=title)
    for row in rows:
        print(f"{row[0]} face {row[1]}: {row[5]} ({score_name} {float(row[6]):.3f})")
    print(f"wrote {target.with_suffix('.csv')} and {target.with_suffix('.png')}")


def cmd_embed_train(args):
    out = run_dir(args.run, "embedding")
    if (out / "run.json").exists() and not args.overwrite:
        raise RecognitionError(f"{out} exists; pick another --run or pass --overwrite")
    base_path = Path(args.base) if args.base else default_base()
    crops, labels, names, paths = people_faces(args.folder, not args.no_detect, args.fit, 2, progress=True)
    s = {**DEFAULTS, **EMBED_DEFAULTS,
         **{k: getattr(args, k) for k in {**DEFAULTS, **EMBED_DEFAULTS} if getattr(args, k, None) is not None}}
    rng = np.random.default_rng(s["seed"])
    order = rng.permutation(len(names))
    n_val = int(round(s["val_people"] * len(names)))
    if n_val < 2 or len(names) - n_val < 2:
        raise RecognitionError(f"{args.folder}: {len(names)} people; an embedding needs at least 2 to "
                               f"train on and 2 held out (val_people {s['val_people']}) to choose its threshold")
    val_people = set(order[:n_val].tolist())
    is_val = np.isin(labels, list(val_people))
    print(f"{len(names) - n_val} people ({int((~is_val).sum())} faces) to train the embedding, "
          f"{n_val} people ({int(is_val.sum())} faces) to choose the threshold; loss {s['loss']}")
    X = to_unit(crops)
    started = time.perf_counter()
    embedder, _ = train_embedder(X[~is_val], labels[~is_val], load_base(base_path), True, s,
                                 out_dir=out, verbose=1)
    seconds = time.perf_counter() - started
    pair_d, same = pair_distances(embed(embedder, X[is_val]), labels[is_val])
    threshold = choose_threshold(pair_d, same)
    report = verification_report(pair_d, same, threshold)
    _atomic_save(embedder, out / "embedder.keras")
    write_split(out / "split.csv", paths, names, labels, np.where(is_val, "validation", "train"))
    _atomic_json(dict(kind="embedding", base=str(base_path), data=str(Path(args.folder).resolve()),
                      detect=not args.no_detect, fit=args.fit, settings=s, threshold=threshold,
                      validation=report, train_people=len(names) - n_val, validation_people=n_val,
                      seconds=round(seconds, 1), created=datetime.now().isoformat(timespec="seconds"),
                      command="python recognize.py " + " ".join(sys.argv[1:])), out / "run.json")
    print(f"validation people: ROC AUC {report['roc_auc']:.3f}, EER {report['eer']:.1%}, threshold "
          f"{threshold:.3f} (balanced accuracy {report['balanced_accuracy']:.1%}); saved {out}")
    return report


def _embedder_of(out):
    return _load_run_model(out, "embedder.keras")


def cmd_enroll(args):
    out = Path(args.run)
    info = open_run(out, "embedding")
    detect = info["detect"] if args.detect is None else args.detect
    crops, labels, names, paths = people_faces(args.folder, detect, info.get("fit", "max"), 1, progress=True)
    vectors = embed(_embedder_of(out), to_unit(crops))
    people, centres = centroids(vectors, labels)
    gallery = Path(args.gallery or out / "gallery.npz")
    new_names = [names[p] for p in people]
    if gallery.exists() and not args.replace:    # add to (or update) the people enrolled before
        old = np.load(gallery, allow_pickle=False)
        keep = [k for k, n in enumerate(old["names"]) if n not in set(new_names)]
        new_names = [str(n) for n in old["names"][keep]] + new_names
        centres = np.concatenate([old["vectors"][keep], centres])
    gallery.parent.mkdir(parents=True, exist_ok=True)
    tmp = gallery.with_name(gallery.stem + ".tmp.npz")
    np.savez(tmp, names=np.array(new_names), vectors=centres)
    os.replace(tmp, gallery)
    print(f"enrolled {len(people)} people from {len(paths)} photos; {gallery} holds {len(new_names)}")
    return gallery


def _gallery(out, path=None):
    gallery = Path(path or Path(out) / "gallery.npz")
    if not gallery.exists():
        raise RecognitionError(f"{gallery}: nobody enrolled yet; run `python recognize.py enroll "
                               f"--run {out} FOLDER_OF_PEOPLE` first")
    data = np.load(gallery, allow_pickle=False)
    return [str(n) for n in data["names"]], data["vectors"]


def cmd_identify(args):
    out = Path(args.run)
    info = open_run(out, "embedding")
    names, vectors = _gallery(out, args.gallery)
    detect = info["detect"] if args.detect is None else args.detect
    crops, where = _photo_faces(args.photos, detect, info.get("fit", "max"))
    threshold = info["threshold"] if args.threshold is None else args.threshold
    chosen, d = identify(embed(_embedder_of(out), to_unit(crops)), names, vectors, threshold)
    _report_named_faces(crops, where, chosen, d, "distance", Path(args.out or out / "identified"),
                        f"{out.name}: nearest enrolled person, threshold {threshold:.3f}")
    return chosen, d


def cmd_verify(args):
    out = Path(args.run)
    info = open_run(out, "embedding")
    detect = info["detect"] if args.detect is None else args.detect
    crops, _, no_face = load_faces([Path(args.photo_a), Path(args.photo_b)], detect, info.get("fit", "max"))
    if no_face:
        raise RecognitionError("; ".join(f"{p}: {r}" for p, r in no_face))
    a, b = embed(_embedder_of(out), to_unit(crops))
    d = float(distances(a[None], b[None])[0, 0])
    threshold = info["threshold"] if args.threshold is None else args.threshold
    same = d <= threshold
    print(f"distance {d:.3f}, threshold {threshold:.3f}: {'same person' if same else 'different people'}")
    return same, d


def main(argv=None):
    parser = argparse.ArgumentParser(description="Face recognition on the keypoint network: a softmax "
                                     "head (train, evaluate, predict) and embeddings (embed-train, "
                                     "enroll, identify, verify).")
    commands = parser.add_subparsers(dest="command", required=True)

    def people_options(p):
        p.add_argument("folder", help="a folder of person folders: FOLDER/<person>/<photo>")
        p.add_argument("--base", default=None, help="keypoint model.keras (default: the shipped model)")
        p.add_argument("--no-detect", action="store_true",
                       help="photos are ready face crops: the whole image becomes the face")
        p.add_argument("--fit", choices=["max", "min"], default="max",
                       help="with --no-detect: the centred square of side max (default) or min of width/height")
        p.add_argument("--run", default=None, help="run name (or path); default <kind>-<MMDD-HHMMSS>")
        p.add_argument("--overwrite", action="store_true", help="replace an earlier run of that name")
        for key, value in DEFAULTS.items():
            if key != "threshold":
                p.add_argument("--" + key.replace("_", "-"), type=type(value), default=None, metavar=str(value))

    train_p = commands.add_parser("train", help="softmax recogniser: base frozen, then fine-tuned")
    people_options(train_p)
    train_p.add_argument("--threshold", type=float, default=None, metavar="0.5",
                         help="stored with the run: `predict` says unknown below this probability")
    train_p.add_argument("--scratch", dest="pretrained", action="store_false",
                         help="the base's architecture with random weights (the no-pre-training baseline)")

    evaluate_p = commands.add_parser("evaluate", help="top-1 on the held-out photos, confusion matrix")
    evaluate_p.add_argument("--run", required=True)
    evaluate_p.add_argument("--data", default=None, help="the training folder, if it has moved")

    def photo_options(p, threshold_help):
        p.add_argument("--run", required=True)
        p.add_argument("--threshold", type=float, default=None, help=threshold_help)
        detect = p.add_mutually_exclusive_group()
        detect.add_argument("--detect", dest="detect", action="store_true", default=None,
                            help="detect faces (default: as the run was trained)")
        detect.add_argument("--no-detect", dest="detect", action="store_false",
                            help="every photo is a ready face crop")

    predict_p = commands.add_parser("predict", help="name every face in a folder of photos")
    predict_p.add_argument("photos", help="a photo or a folder of photos")
    photo_options(predict_p, "below this probability: unknown (default: the run's, 0.5)")
    predict_p.add_argument("--out", default=None, help="OUT.csv and OUT.png (default RUN/predictions)")

    embed_p = commands.add_parser("embed-train", help="train an L2-normalised embedding")
    people_options(embed_p)
    embed_p.add_argument("--loss", choices=["triplet", "arcface"], default=None)
    embed_p.add_argument("--dim", type=int, default=None)
    embed_p.add_argument("--margin", type=float, default=None)
    embed_p.add_argument("--val-people", type=float, default=None, metavar="0.2")

    enroll_p = commands.add_parser("enroll", help="add people (folders of photos) to the gallery")
    enroll_p.add_argument("folder", help="FOLDER/<person>/<photo>")
    photo_options(enroll_p, argparse.SUPPRESS)
    enroll_p.add_argument("--gallery", default=None, help="default RUN/gallery.npz")
    enroll_p.add_argument("--replace", action="store_true", help="start a new gallery")

    identify_p = commands.add_parser("identify", help="the nearest enrolled person of every face")
    identify_p.add_argument("photos")
    photo_options(identify_p, "farther than this distance: unknown (default: the run's)")
    identify_p.add_argument("--gallery", default=None)
    identify_p.add_argument("--out", default=None, help="OUT.csv and OUT.png (default RUN/identified)")

    verify_p = commands.add_parser("verify", help="are two photos the same person?")
    verify_p.add_argument("photo_a")
    verify_p.add_argument("photo_b")
    photo_options(verify_p, "same person up to this distance (default: the run's)")

    args = parser.parse_args(argv)
    command = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
               "embed-train": cmd_embed_train, "enroll": cmd_enroll, "identify": cmd_identify,
               "verify": cmd_verify}[args.command]
    try:
        return command(args)
    except input_data.DataError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
