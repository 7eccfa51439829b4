"""Face recognition on top of the keypoint network: name the people of a class in photos.

Out of the box, with the embedding that ships in models/face_embedding/ (no training):

    python recognize.py enroll faces/                 # faces/<person>/<photo>, one photo or more each
    python recognize.py identify photos/              # every face: the nearest enrolled person, or unknown
    python recognize.py verify a.jpg b.jpg            # the same person?

COS 429's softmax route (chop the keypoint net's last layer, add a softmax; needs 2+ people
with 2+ photos each) and training your own embedding:

    python recognize.py train faces/ [--base KEYPOINT_MODEL] [--no-detect] [--run NAME]
    python recognize.py evaluate --run models/recognition/NAME
    python recognize.py predict --run models/recognition/NAME photos/ [--threshold 0.5]
    python recognize.py embed-train faces/ [--loss arcface|triplet] [--run NAME]
    python recognize.py enroll faces/ --run models/recognition/NAME     # then identify/verify --run

Every photo becomes an aligned 96x96 face by one path (recognition/faces.py): predict.py's
detector and crop (the largest face; `identify` and `predict` take every face), or with
--no-detect the whole image (ready crops such as ORL's), then the keypoint network's eyes and
mouth and a similarity warp onto a template (recognition/align.py). The parts:

    recognition/align.py      template, similarity transform, warp
    recognition/faces.py      folders of people, photos -> aligned faces
    recognition/head.py       the softmax head on the chopped keypoint net, its training
    recognition/embedding.py  embeddings: ArcFace / triplet training, the shipped embedding
    recognition/gallery.py    enrolled people, identify with `unknown`, ROC / EER / threshold
    recognition/report.py     run folders, CSV and pictures of named faces, confusion matrix
    recognition/settings.py   the recipes' defaults (read without importing Keras)

docs/recognition.md has the student's path and the measurements (bench/recognition.py).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

import cli
import input_data
from recognition import faces, gallery, report, settings
from recognition.faces import RecognitionError

GALLERY = report.RUNS / "gallery.npz"     # `enroll` without --run: the shipped embedding's gallery


# ---------------------------------------------------------------------------------------
# Softmax: train, evaluate, predict.

def _run_outputs(out, model_name):
    """The files `train` / `embed-train` write into the run folder (as cli.check_outputs takes them)."""
    return [("--run", out / name) for name in (model_name, "run.json", "split.csv", "history.csv")]


def _check_training_run(args, out, kind, model_name, base_path):
    """Before any work: the run folder may take this run (report.check_run_folder: never a shipped
    model's folder, nor a folder holding another model), none of its files is an input, and it
    trains for at least one epoch (a run of none would save the untrained head as a model)."""
    defaults = {**settings.DEFAULTS, **(settings.EMBED_DEFAULTS if kind == "embedding" else {})}
    epochs = {k: defaults[k] if getattr(args, k) is None else getattr(args, k) for k in ("head_epochs", "finetune_epochs")}
    if sum(epochs.values()) == 0:
        raise cli.UsageError(f"--head-epochs {epochs['head_epochs']} and --finetune-epochs "
                             f"{epochs['finetune_epochs']}: the run would learn nothing; give one of them epochs")
    report.check_run_folder(out, kind, args.overwrite)
    report.check_outputs(_run_outputs(out, model_name),
                         [("people", args.folder), ("--base", base_path), ("--align-model", args.align_model)])


def cmd_train(args):
    from recognition import embedding, head  # Keras: after the options are read
    out = report.run_dir(args.run, "softmax")
    # The features: the shipped embedding by default; with a keypoint --base, its trunk (conv).
    if args.base:
        base_path = Path(args.base)
    elif (args.features or settings.DEFAULTS["features"]) == "embedding":
        base_path = settings.SHIPPED / "embedder.keras"
    else:
        base_path = head.default_base()
    if args.align_model is None and cli.same_file(base_path, settings.SHIPPED / "embedder.keras"):
        # The shipped embedding sees faces as its own keypoint model aligned them in training.
        args.align_model = embedding.shipped_info()["align_model"]
    _check_training_run(args, out, "softmax", "model.keras", base_path)
    people = faces.find_people(args.folder, min_images=2)
    if len(people) < 2:
        raise RecognitionError(
            f"{args.folder}: only one person ({next(iter(people))}); a softmax over one person names "
            "every face that person with probability 1. Add a second person, or use `recognize.py "
            "enroll` then `verify`/`identify`, which compare distances and can say unknown")
    aligner = faces.Aligner(args.align_model).check()
    base = head.load_base(base_path)              # a bad --base is told before the photos are read
    how = "whole images" if args.no_detect else "detecting faces"
    print(report.shown(f"reading faces from {args.folder} ({how}, aligned)"))
    crops, labels, names, paths = faces.people_faces(args.folder, aligner, not args.no_detect, args.fit,
                                                     2, progress=True)
    s = {**settings.DEFAULTS, **{k: getattr(args, k) for k in settings.DEFAULTS if getattr(args, k, None) is not None}}
    train_idx, test_idx = faces.split_per_person(labels, s["test_per_person"], s["seed"])
    print(report.shown(f"{len(names)} people, {len(train_idx)} training and {len(test_idx)} test faces; "
                       f"base {base_path}" + ("" if args.pretrained else " (architecture only: from scratch)")))
    if args.features is None:
        s["features"] = "embedding" if "l2_normalize" in [layer.name for layer in base.layers] else "conv"
    if not args.pretrained:
        base = head.scratch_like(base)
    X = faces.to_unit(crops)
    started = time.perf_counter()
    model, _ = head.train_classifier(X[train_idx], labels[train_idx], len(names), base, args.pretrained, s,
                                     val=(X[test_idx], labels[test_idx]), out_dir=out, verbose=1)
    seconds = time.perf_counter() - started
    accuracy = float((head.embed(model, X[test_idx]).argmax(1) == labels[test_idx]).mean())
    report.atomic_save(model, out / "model.keras")
    is_test = set(test_idx.tolist())
    report.write_split(out / "split.csv", paths, names, labels,
                       ["test" if i in is_test else "train" for i in range(len(paths))])
    report.atomic_json(dict(kind="softmax", labels=names, base=str(base_path), pretrained=args.pretrained,
                            align_model=args.align_model, data=str(Path(args.folder).resolve()),
                            detect=not args.no_detect, fit=args.fit, settings=s, train_faces=len(train_idx),
                            test_faces=len(test_idx), test_accuracy=accuracy, seconds=round(seconds, 1),
                            created=report.now(), command="python recognize.py " + " ".join(sys.argv[1:])),
                       out / "run.json")
    print(report.shown(f"test top-1 accuracy {accuracy:.1%} ({int(round(accuracy * len(test_idx)))}/"
                       f"{len(test_idx)}) after {seconds:.0f} s; saved {out}"))
    return 0


def _load_run_model(out, name):
    from recognition import embedding  # Keras: after the options are read
    import inference
    path = Path(out) / name
    if not path.exists():
        raise RecognitionError(f"{path}: missing")
    return inference.load_keras_file(path, {"CosineClassifier": embedding.CosineClassifier}, RecognitionError)


def _run_aligner(out, info):
    """The alignment's keypoint model a run (or the shipped embedding) was made with."""
    return faces.Aligner(info.get("align_model"), what=f"{out} align_model")


def cmd_evaluate(args):
    from recognition import head  # Keras: after the options are read
    out = Path(args.run)
    info = report.open_run(out, "softmax")
    names = info["labels"]
    paths, people = report.read_split(out / "split.csv", "test")
    if args.data:          # the same photos under another root (a moved folder)
        old = Path(cli.json_field(info, "data", lambda v: isinstance(v, str) and v.strip(),
                                  "the training folder (a path)", out / "run.json"))
        moved = []
        for p in paths:
            try:
                moved.append(Path(args.data) / p.relative_to(old))
            except ValueError:
                raise RecognitionError(f"{out / 'split.csv'}: {report.shown(p)} is not under the run's data "
                                       f"folder {old}; --data cannot say where it went") from None
        paths = moved
    unknown = sorted(set(people) - set(names))
    if unknown:
        raise RecognitionError(f"{out / 'split.csv'}: people not in the label map: "
                               f"{report.shown(', '.join(unknown))[:300]}")
    report.check_outputs([("--run", out / "confusion.png"), ("--run", out / "evaluation.json")],
                         [("run", out / "run.json"), ("run", out / "split.csv"), ("run", out / "model.keras")]
                         + [("test photo", p) for p in paths])
    model = _load_run_model(out, "model.keras")
    crops, where, no_face = faces.faces_in_photos(paths, _run_aligner(out / "run.json", info).check(),
                                                  info["detect"], info.get("fit", "max"))
    for path, reason in no_face:
        print(report.shown(f"warning: {path}: {reason}; counted as wrong"), file=sys.stderr)
    truth = np.array([names.index(p) for p in people])
    predicted = np.full(len(paths), -1)
    if len(crops):
        row = {str(p): i for i, p in enumerate(paths)}
        predicted[[row[str(w[0])] for w in where]] = head.embed(model, faces.to_unit(crops)).argmax(1)
    accuracy = float((predicted == truth).mean())
    found = predicted >= 0
    report.plot_confusion(truth[found], predicted[found], names, out / "confusion.png",
                          title=f"{out.name}: top-1 {accuracy:.1%} on {len(truth)} held-out faces")
    report.atomic_json(dict(top1=accuracy, faces=len(truth), no_face=len(no_face)), out / "evaluation.json")
    print(report.shown(f"wrote {out / 'confusion.png'}"))
    print(f"top-1 accuracy {accuracy:.1%} ({int((predicted == truth).sum())}/{len(truth)} held-out faces)")
    return 0


def _photo_faces(photos, aligner, detect, fit):
    """Every face of every photo (a list, or a photo or folder), aligned: (crops, [(photo, face, Frame)])."""
    paths = photos if isinstance(photos, list) else faces.list_photos(photos)
    crops, where, no_face = faces.faces_in_photos(paths, aligner, detect, fit, all_faces=True)
    for path, reason in no_face:
        print(report.shown(f"warning: {path}: {reason}"), file=sys.stderr)
    if not len(crops):
        raise RecognitionError(f"{paths[0] if len(paths) == 1 else paths[0].parent}: no faces found in any photo")
    return crops, where


def _named_faces_outputs(target):
    """OUT.csv and OUT.png as cli.check_outputs takes them."""
    return [("--out", path) for path in report.named_faces_outputs(target)]


def _may_replace(args):
    """Files of the default name (ours) are replaced by the next run; a --out of the user's
    choosing may name anything, so it is replaced only with --overwrite."""
    return args.out is None or args.overwrite


def cmd_predict(args):
    from recognition import head  # Keras: after the options are read
    out = Path(args.run)
    info = report.open_run(out, "softmax")
    names = info["labels"]
    target = Path(args.out or out / "predictions")
    photos = faces.list_photos(args.photos)
    report.check_outputs(_named_faces_outputs(target),
                         [("photos", args.photos), ("run", out / "run.json"), ("run", out / "model.keras"),
                          ("align model", info.get("align_model"))], _may_replace(args))
    model = _load_run_model(out, "model.keras")
    detect = info["detect"] if args.detect is None else args.detect
    crops, where = _photo_faces(photos, _run_aligner(out / "run.json", info).check(), detect,
                                info.get("fit", "max"))
    threshold = info["settings"].get("threshold", settings.DEFAULTS["threshold"]) if args.threshold is None \
        else args.threshold
    chosen, p, _ = head.classify(model, faces.to_unit(crops), names, threshold)
    report.report_named_faces(crops, where, chosen, p, "probability", target,
                              f"{out.name}, threshold {threshold}")
    return 0


# ---------------------------------------------------------------------------------------
# Embeddings: embed-train, enroll, identify, verify.

def cmd_embed_train(args):
    from recognition import embedding, head  # Keras: after the options are read
    out = report.run_dir(args.run, "embedding")
    base_path = Path(args.base) if args.base else head.default_base()
    _check_training_run(args, out, "embedding", "embedder.keras", base_path)
    keys = {**settings.DEFAULTS, **settings.EMBED_DEFAULTS}
    s = {**keys, **{k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}}
    faces.find_people(args.folder, min_images=2)     # a bad folder is told before any model loads
    aligner = faces.Aligner(args.align_model).check()
    base = head.load_base(base_path)                 # a bad --base too, before the photos are read
    crops, labels, names, paths = faces.people_faces(args.folder, aligner, not args.no_detect, args.fit, 2,
                                                     progress=True)
    report_ = embedding.train_run(crops, labels, names, paths, base_path, s, out, args, base=base)
    return 0 if report_ else 1


def _gallery_path(args):
    default = Path(args.run) / "gallery.npz" if args.run else GALLERY
    return Path(getattr(args, "gallery", None) or default)


def _embedding_files(args):
    """The embedding's files (as cli.check_outputs' inputs): --run's or the shipped ones."""
    if args.run:
        return [("--run", Path(args.run) / "embedder.keras"), ("--run", Path(args.run) / "run.json")]
    return [("shipped embedding", settings.SHIPPED / name) for name in ("embedder.keras", "model.json", "aligner.onnx")]


def _embedding(args):
    """(embedder, info) for --run RUN or, without it, the shipped embedding. info["id"] names
    the model by its bytes: a gallery is only comparable with the model that enrolled it, and
    a re-trained model keeps its folder's name. info["dim"]: the size of its vectors;
    info["source"]: the JSON file that describes it."""
    from recognition import embedding  # Keras: after the options are read
    if args.run:
        folder = Path(args.run)
        info = report.open_run(folder, "embedding")
        info.setdefault("name", str(folder))
        info["source"] = folder / "run.json"
        embedder = _load_run_model(folder, "embedder.keras")
    else:
        folder = settings.SHIPPED
        embedder, info = embedding.load_shipped()
        info["source"] = folder / "model.json"
    info["id"] = f"{info['name']} ({input_data.file_sha256(folder / 'embedder.keras')[:12]})"
    shape = tuple(embedder.outputs[0].shape)
    if len(shape) != 2 or not shape[-1] or tuple(embedder.inputs[0].shape[1:]) != (96, 96, 1):
        raise RecognitionError(f"{folder / 'embedder.keras'}: not an embedding (it takes "
                               f"{tuple(embedder.inputs[0].shape[1:])} and gives {shape[1:]}; expected "
                               "96x96x1 faces -> one vector)")
    info["dim"] = int(shape[-1])
    return embedder, info


def _aligner(info):
    return _run_aligner(info["source"], info).check()


def _same_embedding(gallery_path, enrolled_with, info, remedy):
    """A gallery's vectors are only comparable with the model that made them."""
    if enrolled_with != info["id"]:
        raise RecognitionError(f"{gallery_path}: enrolled with the embedding {enrolled_with or 'of an older version'}, "
                               f"not {info['id']}; {remedy}")


def _run_files(args):
    """A wrong --run is told first; then the embedding's files and its alignment model, the
    inputs no output may replace."""
    align_model = report.open_run(args.run, "embedding").get("align_model") if args.run else None
    return [*_embedding_files(args), ("align model", align_model)]


def cmd_enroll(args):
    import cv2
    from recognition import embedding  # Keras: after the options are read
    inputs = _run_files(args)
    gallery_path = _gallery_path(args)
    faces.find_people(args.folder)               # a bad folder is told before any model loads
    outputs = [("--gallery", gallery_path)]
    if args.projector:
        from recognition import projector
        outputs += [("--projector", Path(args.projector) / name) for name in projector.FILES]
    report.check_outputs(outputs, [("people", args.folder), *inputs])
    old = None
    if gallery_path.exists():                    # told before any model loads, and never replaced unless a gallery
        try:
            old = gallery.load_gallery(gallery_path, allow_empty=True)
        except RecognitionError as error:
            raise RecognitionError(f"{error}; enroll never replaces a file that is not a gallery "
                                   "(not even with --replace): pick another --gallery") from None
    embedder, info = _embedding(args)
    adding = old is not None and not args.replace and len(old[0]) > 0
    if adding:                                   # the people enrolled before stay: the same embedding
        old_names, old_vectors, old_embedding = old
        _same_embedding(gallery_path, old_embedding, info, "pass --replace to start a new gallery")
        gallery.check_dimension(gallery_path, old_vectors, info["dim"], info["id"],
                                "pass --replace to start a new gallery")
    detect = info["detect"] if args.detect is None else args.detect
    crops, labels, names, paths = faces.people_faces(args.folder, _aligner(info), detect,
                                                     info.get("fit", "max"), 1, progress=True)
    vectors = embedding.embed_faces(embedder, crops)
    new_names = [names[k] for k in labels]
    thumbnails = np.stack([cv2.resize(c, (gallery.THUMBNAIL,) * 2, interpolation=cv2.INTER_AREA) for c in crops])
    photos = [str(p) for p in paths]
    if adding:                                   # add to (or update) the people enrolled before
        keep = [k for k, n in enumerate(old_names) if n not in set(new_names)]
        old_faces, old_photos = gallery.gallery_faces(gallery_path, len(old_names))
        new_names = [old_names[k] for k in keep] + new_names
        vectors = np.concatenate([old_vectors[keep], vectors])
        thumbnails = np.concatenate([old_faces[keep], thumbnails])
        photos = [old_photos[k] for k in keep] + photos
    gallery.save_gallery(gallery_path, new_names, vectors, info["id"], thumbnails, photos)
    print(report.shown(f"enrolled {len(names)} people from {len(paths)} photos; {gallery_path} holds "
                       f"{len(set(new_names))} people ({len(new_names)} faces)"))
    if args.projector:
        config = projector.write_projector(args.projector, new_names, vectors, thumbnails, photos)
        print(report.shown(f"wrote {config} and its files: tensorboard --logdir {args.projector}, "
                           "tab Projector"))
    return 0


def cmd_identify(args):
    from recognition import embedding  # Keras: after the options are read
    inputs = _run_files(args)
    gallery_path = _gallery_path(args)
    names, vectors, enrolled_with = gallery.load_gallery(gallery_path)
    photos = faces.list_photos(args.photos)
    target = Path(args.out or gallery_path.with_name("identified"))
    report.check_outputs(_named_faces_outputs(target),
                         [("photos", args.photos), ("--gallery", gallery_path), *inputs], _may_replace(args))
    embedder, info = _embedding(args)
    _same_embedding(gallery_path, enrolled_with, info, "enroll again with this one (or pass the same --run)")
    gallery.check_dimension(gallery_path, vectors, info["dim"], info["id"],
                            "enroll again with this embedding (--replace)")
    detect = info["detect"] if args.detect is None else args.detect
    crops, where = _photo_faces(photos, _aligner(info), detect, info.get("fit", "max"))
    threshold = info["threshold"] if args.threshold is None else args.threshold
    margin = info.get("margin") if args.margin is None else args.margin
    chosen, d, margins = gallery.identify_people(embedding.embed_faces(embedder, crops), names, vectors, threshold,
                                                 margin, args.match)
    rule = f"threshold {threshold:.3f}" + (f", margin {margin:.2f}" if margin else "")
    report.report_named_faces(crops, where, chosen, d, "distance", target,
                              f"{info['name']}: nearest enrolled person, {rule}", extra={"margin": margins})
    return 0


def cmd_verify(args):
    from recognition import embedding  # Keras: after the options are read
    if args.run:
        report.open_run(args.run, "embedding")   # a wrong --run is told first
    for photo in (args.photo_a, args.photo_b):
        faces.read_photo(photo)                  # unreadable files are told before any model loads
    embedder, info = _embedding(args)
    detect = info["detect"] if args.detect is None else args.detect
    crops, where, no_face = faces.faces_in_photos([Path(args.photo_a), Path(args.photo_b)], _aligner(info),
                                                  detect, info.get("fit", "max"), all_faces=True)
    if no_face:
        raise RecognitionError("; ".join(f"{p}: {r}" for p, r in no_face))
    largest = [k for k, (_, number, _) in enumerate(where) if number == 0]    # each photo's first
    for photo, first, end in zip((args.photo_a, args.photo_b), largest, largest[1:] + [len(where)]):
        if end - first > 1:
            print(f"note: {photo}: {end - first} faces; the largest is compared", file=sys.stderr)
    a, b = embedding.embed_faces(embedder, crops[largest])
    d = float(gallery.distances(a[None], b[None])[0, 0])
    # one pair of photos: the pair band (an embedding run has one threshold for both commands)
    if args.threshold is not None:
        same_below = different_above = args.threshold
    else:
        same_below = info.get("verify_same", info["threshold"])
        different_above = info.get("verify_different", same_below)
    answer, backing = gallery.verify_answer(d, same_below, different_above,
                                            info.get("verify_curve") if args.threshold is None else None)
    print(f"{answer} ({backing})")
    return 0


# ---------------------------------------------------------------------------------------
# The command line.

class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are cli.UsageError: one line, `error: ...`, exit status 2."""

    def error(self, message):
        raise cli.UsageError(f"{self.prog.split()[-1]}: {message}")


def main(argv=None):
    parser = ArgumentParser(description="Face recognition on the keypoint network: enrol people "
                                     "and identify them with the shipped embedding (enroll, identify, "
                                     "verify), or train a softmax head (train, evaluate, predict) or "
                                     "your own embedding (embed-train).")
    commands = parser.add_subparsers(dest="command", required=True)
    number = {int: cli.non_negative_int, float: cli.positive_float}

    def people_options(p, defaults):
        p.add_argument("folder", help="a folder of person folders: FOLDER/<person>/<photo>")
        p.add_argument("--base", default=None, help="the model the features come from: a keypoint "
                       "model.keras (default: the shipped v6), or with --features embedding an embedder.keras "
                       "(default: the shipped embedding)")
        p.add_argument("--align-model", default=None, help="keypoint model (.keras or .onnx) that finds the "
                       "eyes and mouth for the alignment (default: the shipped keypoint model; on the shipped "
                       "embedding, the keypoint model it was trained with, models/face_embedding/aligner.onnx)")
        p.add_argument("--no-detect", action="store_true",
                       help="photos are ready face crops: the whole image becomes the face")
        p.add_argument("--fit", choices=["max", "min"], default="max",
                       help="with --no-detect: the centred square of side max (default) or min of width/height")
        p.add_argument("--run", default=None, help="run name (a plain name, or a path); default <kind>-<MMDD-HHMMSS>")
        p.add_argument("--overwrite", action="store_true", help="replace an earlier run of that name")
        p.add_argument("--head-epochs", type=cli.non_negative_int, default=None, metavar=str(defaults["head_epochs"]),
                       help="epochs of the new layers on the frozen base")
        p.add_argument("--head-learning-rate", type=cli.positive_float, default=None,
                       metavar=str(defaults["head_learning_rate"]), help="Adam's rate for those epochs")
        p.add_argument("--finetune-epochs", type=cli.non_negative_int, default=None,
                       metavar=str(defaults["finetune_epochs"]), help="epochs of everything afterwards (0: none)")
        p.add_argument("--finetune-learning-rate", type=cli.positive_float, default=None,
                       metavar=str(defaults["finetune_learning_rate"]), help="Adam's rate while fine-tuning")
        p.add_argument("--batch-size", type=cli.positive_int, default=None, metavar=str(defaults["batch_size"]),
                       help="faces per batch")
        p.add_argument("--augment", default=None, metavar=defaults["augment"],
                       help="augment.py's spec for the fine-tuning batches (none, all, flip,rotate=10,...)")
        p.add_argument("--features", default=None, metavar=defaults["features"],
                       help="where to chop the base: conv (its trunk), out (the input of its last layer), "
                       "or a layer name")
        p.add_argument("--seed", type=cli.non_negative_int, default=None, metavar="0", help="random seed")

    train_p = commands.add_parser("train", help="softmax recogniser (2+ people, 2+ photos each) on the shipped "
                                  "embedding, or on a chopped keypoint net with --base")
    people_options(train_p, settings.DEFAULTS)
    train_p.add_argument("--test-per-person", type=cli.positive_int, default=None, metavar="2",
                         help="photos of each person held out to measure top-1")
    train_p.add_argument("--dropout", type=cli.fraction, default=None, metavar="0.0", help="before the softmax")
    train_p.add_argument("--scratch-learning-rate", type=cli.positive_float, default=None, metavar="0.001",
                         help="with --scratch: Adam's rate for all epochs")
    train_p.add_argument("--threshold", type=cli.fraction, default=None, metavar="0.5",
                         help="stored with the run: `predict` says unknown below this probability")
    train_p.add_argument("--scratch", dest="pretrained", action="store_false",
                         help="the base's architecture with random weights (the no-pre-training baseline)")

    evaluate_p = commands.add_parser("evaluate", help="top-1 on the held-out photos, confusion matrix")
    evaluate_p.add_argument("--run", required=True, help="a softmax run folder")
    evaluate_p.add_argument("--data", default=None, help="the training folder, if it has moved")

    def photo_options(p, threshold_help, run_help):
        p.add_argument("--run", default=None, help=run_help)
        if threshold_help:
            p.add_argument("--threshold", type=cli.non_negative_float, default=None, help=threshold_help)
        detect = p.add_mutually_exclusive_group()
        detect.add_argument("--detect", dest="detect", action="store_true", default=None,
                            help="detect faces (default: as the embedding or run was made)")
        detect.add_argument("--no-detect", dest="detect", action="store_false",
                            help="every photo is a ready face crop")

    shipped = "an embedding run folder (default: the shipped embedding, models/face_embedding)"
    predict_p = commands.add_parser("predict", help="name every face in photos with a softmax run")
    predict_p.add_argument("photos", help="a photo or a folder of photos")
    photo_options(predict_p, "below this probability: unknown (default: the run's, 0.5)", "a softmax run folder")
    predict_p.add_argument("--out", default=None, help="OUT.csv and OUT.png (default RUN/predictions)")
    predict_p.add_argument("--overwrite", action="store_true", help="replace OUT.csv and OUT.png when they exist")

    embed_p = commands.add_parser("embed-train", help="train your own L2-normalised embedding")
    people_options(embed_p, {**settings.DEFAULTS, **settings.EMBED_DEFAULTS})
    embed_p.add_argument("--loss", choices=["triplet", "arcface"], default=None, help="arcface (default) or triplet")
    embed_p.add_argument("--dim", type=cli.positive_int, default=None, metavar="128", help="embedding size")
    embed_p.add_argument("--margin", type=cli.non_negative_float, default=None,
                         help="arcface angle (rad, default 0.3) or triplet distance margin (default 0.2)")
    embed_p.add_argument("--val-people", type=cli.fraction, default=None, metavar="0.2",
                         help="share of the people held out to choose the threshold")
    embed_defaults = settings.EMBED_DEFAULTS
    embed_p.add_argument("--finetune-decay", choices=["constant", "cosine"], default=None,
                         help=f"the fine-tuning rate: constant, or falling to 0 along half a cosine "
                         f"(default {embed_defaults['finetune_decay']})")
    embed_p.add_argument("--erase", type=cli.fraction, default=None, metavar=str(embed_defaults["erase"]),
                         help="share of the training faces with a random rectangle erased")
    embed_p.add_argument("--blur", type=cli.fraction, default=None, metavar=str(embed_defaults["blur"]),
                         help="share of the training faces blurred by a random amount")

    enroll_p = commands.add_parser("enroll", help="add people (folders of photos) to the gallery")
    enroll_p.add_argument("folder", help="FOLDER/<person>/<photo>: one photo or more per person")
    photo_options(enroll_p, None, shipped)
    enroll_p.add_argument("--gallery", default=None, help=f"gallery file (default {GALLERY.relative_to(report.ROOT)}, "
                          "or RUN/gallery.npz with --run)")
    enroll_p.add_argument("--replace", action="store_true", help="start a new gallery")
    enroll_p.add_argument("--projector", default=None, metavar="DIR",
                          help="also write the gallery's vectors, names and faces for TensorBoard's projector "
                          "(tensorboard --logdir DIR)")

    identify_p = commands.add_parser("identify", help="name every face: the nearest enrolled person or unknown")
    identify_p.add_argument("photos", help="a photo or a folder of photos")
    photo_options(identify_p, "farther than this distance: unknown (default: the embedding's)", shipped)
    identify_p.add_argument("--gallery", default=None, help="gallery file (as for enroll)")
    identify_p.add_argument("--margin", type=cli.non_negative_float, default=None,
                            help="unknown unless this much nearer to the nearest person than to the second-nearest "
                            "(default: the embedding's; 0: no margin rule)")
    identify_p.add_argument("--match", choices=["mean", "nearest"], default="mean",
                            help="compare with each person's mean vector (default) or every enrolled photo")
    identify_p.add_argument("--out", default=None, help="OUT.csv and OUT.png (default beside the gallery: identified)")
    identify_p.add_argument("--overwrite", action="store_true", help="replace OUT.csv and OUT.png when they exist")

    verify_p = commands.add_parser("verify", help="are two photos the same person?")
    verify_p.add_argument("photo_a", help="a photo")
    verify_p.add_argument("photo_b", help="another photo")
    photo_options(verify_p, "same person up to this distance, different people beyond (default: the embedding's "
                  "band, with 'not sure' between)", shipped)

    args = parser.parse_args(argv)
    command = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
               "embed-train": cmd_embed_train, "enroll": cmd_enroll, "identify": cmd_identify,
               "verify": cmd_verify}[args.command]
    _check_paths(args)
    return command(args)


def _check_paths(args):
    """Usage errors before any work: the model files and folders named on the command line."""
    for option in ("base", "align_model"):
        path = getattr(args, option, None)
        if path is not None and not Path(path).is_file():
            raise cli.UsageError(f"--{option.replace('_', '-')}: {path}: no such model file")
    align_model = getattr(args, "align_model", None)
    if align_model is not None and Path(align_model).suffix.lower() not in (".keras", ".onnx"):
        raise cli.UsageError(f"--align-model {align_model}: must be a keypoint model, a .keras or .onnx file")
    if getattr(args, "augment", None) is not None:
        import augment
        try:
            augment.parse(args.augment)
        except ValueError as error:
            raise cli.UsageError(f"--augment: {cli.one_line(error)}") from None
    if getattr(args, "run", None) is not None and args.command in ("train", "embed-train"):
        report.check_run_name(args.run)


if __name__ == "__main__":
    cli.run(main)
