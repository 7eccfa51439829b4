"""The softmax head (COS 429's plan): chop the keypoint network's last layer, add a softmax.

The base is a keypoint model with its `out` layer removed (`feature_extractor`): its features
are the input of `out`, or (default, "conv") its convolutional trunk, and the chopped model
shares the base's layers, so its weights are exactly the base's until fine-tuning changes
them. Training has two phases: the new head on the frozen base (on features computed once),
then everything at a low learning rate. A pre-trained base runs in inference mode (batch-norm
statistics and dropout as after keypoint training), also while it is fine-tuned.
"""
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

import augment  # noqa: E402
import inference  # noqa: E402
import input_data  # noqa: E402
import models  # noqa: E402
from recognition.faces import RecognitionError  # noqa: E402
from recognition.gallery import UNKNOWN  # noqa: E402
from recognition.settings import DEFAULTS  # noqa: E402



def default_base():
    """The shipped keypoint model (models.shipped_model_path()); a clear error without one."""
    try:
        return models.shipped_model_path()
    except models.NoShippedModelError as error:
        raise RecognitionError(f"{error}; or pass --base PATH to a keypoint model.keras") from None


def load_base(path=None):
    """The keypoint model (or embedder) at path (default: the shipped keypoint model), uncompiled."""
    path = Path(path) if path else default_base()
    return inference.load_keras_file(path, error=RecognitionError)


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
    layer removed). Built from the base's own layers, so the weights are shared, not copied.
    features="embedding": base is an embedder (recognition/embedding.py: the keypoint trunk
    trained for identity), whose unit vectors are the features."""
    if features == "embedding":
        if "l2_normalize" not in [layer.name for layer in base.layers]:
            raise RecognitionError(f"model {base.name!r} is not an embedding (no layer 'l2_normalize'); "
                                   "--features embedding needs --base EMBEDDER.keras")
        return keras.Model(base.inputs, base.outputs[0], name="features")
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


def augmented(dataset, config, seed):
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
    """tf.data (images, labels) batches, shuffled each epoch, augmented as in the engine.
    labels: int per image, or float rows (a label and more targets, e.g. a teacher's vector)."""
    import tensorflow as tf
    labels = np.asarray(labels)
    targets = np.asarray(labels, np.float32 if labels.ndim > 1 else np.int32)
    images, targets = tf.constant(np.asarray(X, np.float32)), tf.constant(targets)
    dataset = tf.data.Dataset.range(len(X))
    if shuffle:
        dataset = dataset.shuffle(len(X), seed=seed, reshuffle_each_iteration=True)
    def gather(i):
        return tf.gather(images, i), tf.gather(targets, i)
    dataset = dataset.batch(batch_size).map(gather)
    return augmented(dataset, augment.parse(augment_spec), seed).prefetch(tf.data.AUTOTUNE)


def callbacks_for(out_dir, phase, verbose):
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
                  head_data=None, head_model=None, head_val=None, scratch_learning_rate=1e-3,
                  finetune_decay="constant"):
    """Phase 1: only the new layers learn (the base frozen), head_epochs at head_learning_rate.
    Phase 2: everything, finetune_epochs at finetune_learning_rate. From scratch (not
    pretrained) there is no frozen phase: head_epochs + finetune_epochs of everything at
    scratch_learning_rate. Returns {phase: history dict}.

    head_model, head_data: phase 1 on the base's features computed once (head_model holds
    the new layers, shared with model, and reads features), which is many times faster than
    running the frozen base on every batch; the augmentation then only starts in phase 2.
    finetune_decay: "constant", or "cosine" (phase 2's rate falls from finetune_learning_rate
    to 0 along half a cosine, epoch by epoch)."""
    import math
    if finetune_decay not in ("constant", "cosine"):
        raise ValueError(f"finetune_decay must be constant or cosine, not {finetune_decay!r}")
    histories = {}
    phases = ([("head", False, head_epochs, head_learning_rate),
               ("finetune", True, finetune_epochs, finetune_learning_rate)] if pretrained else
              [("scratch", True, head_epochs + finetune_epochs, scratch_learning_rate)])
    for phase, base_trainable, epochs, learning_rate in phases:
        if epochs <= 0:
            continue
        features.trainable = base_trainable
        if pretrained:
            freeze_batch_norm(features)
        cached = phase == "head" and head_model is not None
        fitted = head_model if cached else model
        fitted.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics or [])
        callbacks = callbacks_for(out_dir, phase, verbose)
        if phase == "finetune" and finetune_decay == "cosine":
            callbacks.append(keras.callbacks.LearningRateScheduler(
                lambda epoch, _, top=learning_rate, n=epochs: top * 0.5 * (1 + math.cos(math.pi * epoch / n))))
        history = fitted.fit(head_data if cached else train_data,
                             validation_data=head_val if cached else val_data, epochs=epochs,
                             verbose=0, steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                             shuffle=False)     # the datasets shuffle themselves (Keras warns otherwise)
        histories[phase] = history.history
    features.trainable = True
    return histories


def freeze_batch_norm(model):
    """Keep every batch-norm layer of a pre-trained base in inference mode: in Keras 3 a
    BatchNormalization layer that is not trainable uses (and keeps) its moving statistics,
    even inside a model being trained; `training=False` at the call alone does not hold
    once the outer model trains."""
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False


def head_of(model, features):
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
        head = dict(head_model=head_of(model, features),
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


def classify(model, X, names, threshold=0.5):
    """(names, probabilities, probability matrix): the most likely person of each face, or
    `unknown` when its probability is below threshold."""
    probabilities = embed(model, X)
    best = probabilities.argmax(axis=1)
    p = probabilities[np.arange(len(best)), best]
    chosen = [UNKNOWN if q < threshold else names[k] for k, q in zip(best, p)]
    return chosen, p, probabilities


def embed(model, X, batch_size=256):
    """Embeddings (or features) of X as float32 numpy."""
    return np.asarray(model.predict(np.asarray(X, np.float32), batch_size=batch_size, verbose=0), np.float32)

