"""The recipes and places of recognize.py's commands, in a module without Keras: recognize.py
reads them to build its options, and a mistyped option is told before TensorFlow loads."""
from pathlib import Path

# Training recipe of `recognize.py train` (measured on ORL and the shared faces, see
# docs/recognition.md and bench/recognition.py).
DEFAULTS = dict(
    head_epochs=100,         # phase 1: the new head only, the base frozen (on features computed
                             # once: seconds). 30 left the softmax on the shipped embedding
                             # under-fitted (training loss 0.53; ORL 98.5%, at 100: 0.06, 99.3%)
    head_learning_rate=1e-2,
    finetune_epochs=0,       # phase 2: everything, at a low learning rate (0 = no fine-tuning;
                             # the chopped keypoint net wants 10: --features conv --finetune-epochs 10)
    finetune_learning_rate=1e-4,
    scratch_learning_rate=1e-3,  # --scratch: head + finetune epochs of everything at this rate
    batch_size=32,
    augment="none",          # of the fine-tuning batches (augment.py's spec). "all" (mirror, 15 deg,
                             # 10% shift and zoom, light) on aligned ORL faces: 90.0% against 96.2%
                             # after 3 epochs (docs/recognition.md)
    features="embedding",    # which features the head reads: embedding (the shipped face embedding,
                             # the keypoint trunk trained for identity) | conv | out | a layer name
                             # of a keypoint --base
    dropout=0.0,             # before the new head
    test_per_person=2,       # held-out photos per person (ORL: 8 train / 2 test)
    seed=0,
    threshold=0.5,           # softmax: below this probability a face is `unknown`
)


ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "face_embedding"

EMBED_DEFAULTS = dict(       # `recognize.py embed-train`: the shipped recipe without its teacher
    features="conv",         # the keypoint trunk (v6: block4, 6x6x128, flattened)
    loss="arcface",          # arcface (additive angular margin) | triplet (batch-hard online mining)
    head_epochs=20,          # the new layer on the frozen trunk, at head_learning_rate
    head_learning_rate=1e-3, # the softmax's 1e-2 collapses the triplet embedding to a point
    finetune_epochs=30,      # then everything: 15 epochs at 3e-4 gave 40% on unseen people, 30 at 5e-4 43%
    finetune_learning_rate=5e-4,   # (40 at 1e-3 falling along a cosine, with erase and blur: 43.7%, not shipped)
    finetune_decay="constant",     # or "cosine": the fine-tuning rate falls to 0 along half a cosine
    augment="flip,rotate=8,shift=0.04,scale=0.06,light",   # mild: the faces are aligned already
    erase=0.0,               # share of the training faces with a random rectangle erased (identity_noise)
    blur=0.0,                # share of the training faces blurred by a random amount (identity_noise)
    dim=128,
    margin=None,             # None: 0.2 for triplet (unit-sphere distance), 0.3 rad for arcface
    scale=30.0,              # arcface logit scale
    people_per_batch=16,     # triplet batches: P people x K photos
    photos_per_person=4,
    val_people=0.2,          # share of the people held out to choose the verification threshold
)
# The shipped embedding also imitates a teacher (recognition/teacher.py, dlib's encoder): the
# weight of that loss, `distill` in train_embedder's settings (0: no teacher). embed-train has
# none, so it is not among EMBED_DEFAULTS; bench/recognition.py's SHIP_RECIPE sets it.

# The shipped embedding's rules (models/face_embedding/), chosen on 41 people its protocol
# model never saw, for at most 1% of strangers named and of different-person pairs said the
# same: `python bench/recognition.py rules --protocol-model PATH` prints them, with what they
# do on the other held-out people (docs/recognition.md, "The rules"). An embedding run of your
# own (embed-train) has its threshold (the best balanced accuracy) and verify's band, chosen on
# its validation people with RULE_TARGETS, in its run.json, and no margin.
RULE_TARGETS = dict(        # what the rules are chosen for, on held-out people
    max_strangers=0.01,     # identify: at most this share of strangers named as someone
    max_false_accept=0.01,  # verify: "same person" where at most this share of different-person pairs are
    max_false_reject=0.05,  # verify: "different people" where at most this share of same-person pairs are
)
SHIPPED_RULES = dict(
    threshold=0.4000,        # identify: farther than this from everyone enrolled: unknown
    margin=0.06,             # identify: unknown unless this much nearer to the nearest person
                             # than to the second-nearest (0: no margin rule)
    verify_same=0.4827,      # verify: "same person" up to this distance,
    verify_different=0.6390, # "different people" beyond it, "not sure" between
    # per distance: the shares of held-out different-person pairs within it and of same-person
    # pairs beyond it (verify prints them beside its answer)
    verify_curve=dict(
        distance=[round(0.05 * k, 2) for k in range(29)],     # 0 to 1.4
        different_within=[0, 0, 0, 0, 0, 0, 0, 0, 0.0001, 0.0028, 0.0186, 0.0778, 0.2248, 0.4568,
                         0.6999, 0.8775, 0.9646, 0.9927, 0.9992, 0.9999, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        same_beyond=[1, 1, 1, 1, 1, 0.9951, 0.987, 0.963, 0.8938, 0.7414, 0.5253, 0.2901, 0.116,
                    0.0333, 0.0049, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
)
