"""Embeddings: an L2-normalised vector per face, such that one person's faces lie close
together and different people's far apart, for people never seen in training.

The embedder is the keypoint base's trunk (features of aligned faces) followed by a linear
`embedding` layer and L2 normalisation, trained with ArcFace (additive angular margin, the
default) or FaceNet's batch-hard triplet loss. One ships with the repository
(models/face_embedding/, see SHIPPED and docs/recognition.md), so a class can be enrolled and
identified without training.
"""
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

import augment
import cli
import inference
import input_data
from recognition import align
from recognition.faces import RecognitionError, shown
from recognition.settings import DEFAULTS, EMBED_DEFAULTS, SHIPPED
from recognition.head import augmented, batches, embed, feature_extractor, head_of, \
    two_phase_fit, _features_on



def build_embedder(features, dim=128, pretrained=True):
    """image -> the base's features -> linear `embedding` (dim) -> L2 normalised."""
    image = keras.Input((96, 96, 1), name="image")
    net = _features_on(image, features, pretrained)
    net = layers.Dense(dim, name="embedding")(net)
    out = layers.UnitNormalization(axis=-1, name="l2_normalize")(net)
    return keras.Model(image, out, name="embedder")


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


def distilled_arcface_loss(n_classes, margin=0.3, scale=30.0, weight=50.0):
    """ArcFace plus weight x the cosine distance to a teacher's unit vector (knowledge
    distillation). y_true: (label, teacher vector...) per row; the prediction: (the cosines of
    CosineClassifier, the embedding) side by side."""
    arcface = arcface_loss(n_classes, margin, scale)

    def loss(y_true, prediction):
        prediction = ops.cast(prediction, "float32")
        cosines, vectors = prediction[:, :n_classes], prediction[:, n_classes:]
        distance = 1.0 - ops.sum(vectors * y_true[:, 1:], axis=1)
        return arcface(y_true[:, 0], cosines) + weight * ops.mean(distance)
    return loss


def identity_noise(dataset, erase=0.0, blur=0.0, seed=0):
    """More identity-keeping augmentation of (images, labels) batches: `erase` of the faces get
    a random rectangle (2-20% of the face, aspect 1:2 to 2:1) filled with noise (random
    erasing, Zhong et al. 2020: occlusions, glasses, hands); `blur` of the faces are mixed
    with a Gaussian-blurred copy (sigma 1.5) by a random weight (soft, low-resolution video)."""
    import tensorflow as tf
    if not erase and not blur:
        return dataset
    size = 96
    g = np.exp(-0.5 * (np.arange(-4, 5) / 1.5) ** 2)
    kernel = tf.constant((np.outer(g, g) / np.outer(g, g).sum())[:, :, None, None], tf.float32)
    grid = tf.range(size, dtype=tf.float32)
    seeds = tf.data.Dataset.random(seed=seed + 7, rerandomize_each_iteration=True).batch(2)

    def apply(batch, batch_seed):
        images, labels = batch
        n = tf.shape(images)[0]
        keys = tf.random.experimental.stateless_split(tf.cast(batch_seed, tf.int64), 8)

        def uniform(k, shape=None):
            return tf.random.stateless_uniform([n] if shape is None else shape, keys[k])
        if blur:
            padded = tf.pad(images, [[0, 0], [4, 4], [4, 4], [0, 0]], mode="SYMMETRIC")
            blurred = tf.nn.conv2d(padded, kernel, 1, "VALID")
            weight = tf.where(uniform(0) < blur, uniform(1), 0.0)[:, None, None, None]
            images = images * (1.0 - weight) + blurred * weight
        if erase:
            area = (0.02 + 0.18 * uniform(2)) * size * size
            aspect = tf.exp((uniform(3) - 0.5) * 2.0 * np.log(2.0))
            h = tf.minimum(tf.sqrt(area * aspect), size - 1.0)
            w = tf.minimum(tf.sqrt(area / aspect), size - 1.0)
            y0, x0 = uniform(4) * (size - h), uniform(5) * (size - w)
            inside_y = (grid[None] >= y0[:, None]) & (grid[None] < (y0 + h)[:, None])
            inside_x = (grid[None] >= x0[:, None]) & (grid[None] < (x0 + w)[:, None])
            mask = inside_y[:, :, None] & inside_x[:, None, :] & (uniform(6) < erase)[:, None, None]
            noise = uniform(7, tf.shape(images))
            images = tf.where(mask[..., None], noise, images)
        return tf.clip_by_value(images, 0.0, 1.0), labels
    return tf.data.Dataset.zip(dataset, seeds).map(apply, num_parallel_calls=tf.data.AUTOTUNE)


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
    return augmented(dataset, augment.parse(augment_spec), seed).prefetch(tf.data.AUTOTUNE), P * K


def train_embedder(X, labels, base, pretrained=True, settings=None, out_dir=None, verbose=0, teacher=None):
    """An L2-normalised embedding on base's features, trained on X, labels (int) with the
    triplet loss (batch-hard online mining) or ArcFace; with teacher ((n, dim) unit vectors of
    the same faces) and settings' `distill` > 0, ArcFace plus distill x the cosine distance to
    the teacher's vectors. -> (embedder, histories)."""
    s = {**DEFAULTS, **EMBED_DEFAULTS, **(settings or {})}
    distill = float(s.get("distill", 0.0))
    if distill and (teacher is None or s["loss"] != "arcface"):
        raise ValueError("distill needs the arcface loss and the teacher's vectors")
    if distill and np.shape(teacher) != (len(X), s["dim"]):
        raise ValueError(f"teacher vectors must be ({len(X)}, {s['dim']}), not {np.shape(teacher)}")
    keras.utils.set_random_seed(int(s["seed"]))
    features = feature_extractor(base, s["features"])
    embedder = build_embedder(features, s["dim"], pretrained)
    labels = np.asarray(labels)
    F = embed(features, X) if pretrained and s["head_epochs"] > 0 else None
    schedule = dict(head_epochs=s["head_epochs"], head_learning_rate=s["head_learning_rate"],
                    finetune_epochs=s["finetune_epochs"],
                    finetune_learning_rate=s["finetune_learning_rate"],
                    finetune_decay=s["finetune_decay"], out_dir=out_dir, verbose=verbose)
    if s["loss"] == "triplet":
        data, batch = pk_batches(X, labels, s["people_per_batch"], s["photos_per_person"],
                                 s["augment"], s["seed"])
        data = identity_noise(data, s["erase"], s["blur"], s["seed"])
        steps = max(1, int(np.ceil(len(X) / batch)))
        margin = 0.2 if s["margin"] is None else float(s["margin"])
        head = {}
        if F is not None:
            head_data, _ = pk_batches(F, labels, s["people_per_batch"], s["photos_per_person"],
                                      "none", s["seed"])
            head = dict(head_model=head_of(embedder, features), head_data=head_data)
        histories = two_phase_fit(embedder, features, data, batch_hard_triplet_loss(margin), pretrained,
                                  steps_per_epoch=steps, **schedule, **head)
    elif s["loss"] == "arcface":
        classes, dense = np.unique(labels, return_inverse=True)
        margin = 0.3 if s["margin"] is None else float(s["margin"])
        centres = CosineClassifier(len(classes), name="centres")
        if distill:     # the targets carry the teacher's vector after the label, the outputs the embedding
            targets = np.concatenate([dense[:, None], np.asarray(teacher, np.float32)], axis=1).astype(np.float32)
            loss = distilled_arcface_loss(len(classes), margin, s["scale"], distill)
        else:
            targets, loss = dense, arcface_loss(len(classes), margin, s["scale"])

        def outputs(vectors):
            cosines = centres(vectors)
            return layers.Concatenate(name="cosines_and_embedding")([cosines, vectors]) if distill else cosines
        image = keras.Input((96, 96, 1), name="image")
        trainer = keras.Model(image, outputs(embedder(image)), name="arcface_trainer")
        data = identity_noise(batches(X, targets, s["batch_size"], s["augment"], s["seed"]),
                              s["erase"], s["blur"], s["seed"])
        head = {}
        if F is not None:
            head_embedder = head_of(embedder, features)
            vector = keras.Input(F.shape[1:])
            head = dict(head_model=keras.Model(vector, outputs(head_embedder(vector))),
                        head_data=batches(F, targets, s["batch_size"], "none", s["seed"]))
        histories = two_phase_fit(trainer, features, data, loss, pretrained, **schedule, **head)
    else:
        raise ValueError(f"loss must be triplet or arcface, not {s['loss']!r}")
    return embedder, histories



# ---------------------------------------------------------------------------------------
# Using an embedding: vectors of aligned faces, the shipped model.

# Test-time augmentation: the scales each face is embedded at (zoomed about the aligned face's
# centre; every view also mirrored with flip), its vector the mean. ZOOMS, the face as it is
# and zoomed out and in by 6%, adds 1 to 2 points on the unseen-people protocol with every
# recipe measured (docs/recognition.md); it is what recognize.py uses.
ZOOMS = (1.0, 0.94, 1.06)
TTA_SCALES = ZOOMS


def zoom(crops, factor):
    """uint8 (n, 96, 96) faces zoomed by factor about the centre (edges replicated): the crop
    of the square 96 / factor about the face's centre (input_data.Frame.crop, the one crop)."""
    crops = np.asarray(crops, np.uint8)
    if factor == 1.0:
        return crops
    frame = input_data.Frame(align.SIZE / 2, align.SIZE / 2, align.SIZE / factor)
    return np.stack([frame.crop(face) for face in crops])


def embed_faces(embedder, crops, flip=True, scales=TTA_SCALES):
    """Unit vectors of aligned uint8 (n, 96, 96) faces: the mean of the vectors of each face
    zoomed by `scales` (TTA_SCALES; (1.0,): the face alone) and, with flip, of their mirror
    images (the template is symmetric, so a mirrored aligned face is aligned)."""
    from recognition.faces import to_unit
    from recognition.gallery import l2_normalize
    crops = np.asarray(crops, np.uint8)
    vectors = 0
    for factor in scales:
        X = to_unit(zoom(crops, factor))
        vectors = vectors + embed(embedder, X)
        if flip:
            vectors = vectors + embed(embedder, X[:, :, ::-1])
    return l2_normalize(vectors)


def shipped_info(folder=SHIPPED):
    """The shipped embedding's model.json, checked, with its rules (recognition/settings.py
    SHIPPED_RULES: identify's threshold and margin, verify's band). Its `align_model` (the
    keypoint model its faces were aligned with in training, shipped beside it so that a newer
    keypoint model does not change what it sees) is made a path from the folder when relative."""
    folder = Path(folder)
    path, info_path = folder / "embedder.keras", folder / "model.json"
    if not path.is_file() or not info_path.is_file():
        raise RecognitionError(f"{folder}: no shipped embedding (embedder.keras and model.json); pass "
                               "--run RUN with an embedding trained by `recognize.py embed-train`")
    from recognition import report
    from recognition.settings import SHIPPED_RULES
    info = report.check_info({**cli.read_json_object(info_path), **SHIPPED_RULES}, info_path, "embedding")
    info.setdefault("name", folder.name)
    if info.get("align_model") and not Path(info["align_model"]).is_absolute():
        info["align_model"] = str(folder / info["align_model"])
    return info


def load_shipped(folder=SHIPPED):
    """(embedder, info) of the shipped embedding: embedder.keras and model.json (how it was
    made, its threshold, how faces are found)."""
    folder = Path(folder)
    path = folder / "embedder.keras"
    info = shipped_info(folder)
    return inference.load_keras_file(path, error=RecognitionError), info


def train_run(crops, labels, names, paths, base_path, s, out, args, base=None):
    """`recognize.py embed-train`: hold out val_people of the people, train on the rest, choose
    the distance threshold and verify's band on the held-out people's pairs, write the run.
    -> the report.
    base: the model at base_path, if it is loaded already."""
    import sys
    import time
    from recognition import gallery, report
    from recognition.faces import to_unit
    from recognition.head import load_base
    from recognition.settings import RULE_TARGETS
    rng = np.random.default_rng(s["seed"])
    order = rng.permutation(len(names))
    n_val = int(round(s["val_people"] * len(names)))
    if n_val < 2 or len(names) - n_val < 2:
        raise RecognitionError(f"{args.folder}: {len(names)} people; an embedding needs at least 2 to "
                               f"train on and 2 held out (val_people {s['val_people']}) to choose its threshold")
    is_val = np.isin(labels, order[:n_val])
    print(f"{len(names) - n_val} people ({int((~is_val).sum())} faces) to train the embedding, "
          f"{n_val} people ({int(is_val.sum())} faces) to choose the threshold; loss {s['loss']}")
    started = time.perf_counter()
    base = base if base is not None else load_base(base_path)
    embedder, _ = train_embedder(to_unit(crops[~is_val]), labels[~is_val], base, True, s, out_dir=out, verbose=1)
    seconds = time.perf_counter() - started
    pair_d, same = gallery.pair_distances(embed_faces(embedder, crops[is_val]), labels[is_val])
    threshold = gallery.choose_threshold(pair_d, same)
    result = gallery.verification_report(pair_d, same, threshold)
    band = {}
    if same.any() and not same.all():            # verify's "not sure" band (recognition/settings.py)
        band = dict(zip(("verify_same", "verify_different"), gallery.choose_verify_band(
            pair_d, same, RULE_TARGETS["max_false_accept"], RULE_TARGETS["max_false_reject"])))
    report.atomic_save(embedder, out / "embedder.keras")
    report.write_split(out / "split.csv", paths, names, labels, np.where(is_val, "validation", "train"))
    report.atomic_json(dict(kind="embedding", name=str(out), base=str(base_path), align_model=args.align_model,
                            data=str(Path(args.folder).resolve()), detect=not args.no_detect, fit=args.fit,
                            settings=s, threshold=threshold, **band, validation=result,
                            train_people=len(names) - n_val, validation_people=n_val,
                            seconds=round(seconds, 1), created=report.now(),
                            command="python recognize.py " + " ".join(sys.argv[1:])), out / "run.json")
    print(shown(f"validation people: ROC AUC {result['roc_auc']:.3f}, EER {result['eer']:.1%}, threshold "
                f"{threshold:.3f} (true accepts {result['true_accept']:.1%}, true rejects "
                f"{result['true_reject']:.1%})" + (f"; verify: not sure between {band['verify_same']:.3f} and "
                                                   f"{band['verify_different']:.3f}" if band else "") + f"; saved {out}"))
    return result
