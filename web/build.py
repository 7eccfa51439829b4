"""Build the page into web/build/ (git-ignored): what a static host serves, all from one folder.

    python web/build.py [--out web/build]      # `make web` runs it after `npm ci` in web/

Copies the page (index.html, app.js, fkd.js, detect_cascade.js, blazeface.js), the shipped
model.onnx and BlazeFace's two ONNX files (models/face_detector/),
onnxruntime-web's single-threaded wasm runtime and OpenCV.js (from web/node_modules), the cascade
files predict.py loads (from the installed OpenCV wheel, cv2.data.haarcascades, and
scikit-image), and writes settings.json: predict.py's constants and detector_calibration.json,
read from the Python modules so that the page never holds a copied number.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

PAGE_FILES = ("index.html", "app.js", "fkd.js", "detect_cascade.js", "blazeface.js")
# onnxruntime-web's wasm build without threads or WebGPU (a plain static host needs no special
# headers for it), and its runtime; OpenCV.js is one file with its wasm inside.
NODE_FILES = {
    "onnxruntime-web/dist/ort.wasm.min.mjs": "ort.wasm.min.mjs",
    "onnxruntime-web/dist/ort-wasm-simd-threaded.mjs": "ort-wasm-simd-threaded.mjs",
    "onnxruntime-web/dist/ort-wasm-simd-threaded.wasm": "ort-wasm-simd-threaded.wasm",
    "@techstark/opencv-js/dist/opencv.js": "opencv.js",
}
LBP_NAME = "lbpcascade_frontalface.xml"


def settings(model=None):
    """predict.py's constants the page's pipeline needs, with the calibration file's fits and
    the confidence bar of `model` (a .onnx or .keras path; None: the shipped model)."""
    import input_data
    import predict
    from prediction import blazeface, detection, images, keypoints
    detector = predict.detector_settings()
    return {
        "keypoint_names": list(input_data.KEYPOINT_NAMES),
        "columns": list(input_data.COLUMNS),
        "csv_columns": list(predict.CSV_COLUMNS),
        "mirror_index": mirror_index(predict.KEYPOINT_PAIRS, len(input_data.KEYPOINT_NAMES)),
        "refine_passes": predict.REFINE_PASSES,
        "flip_tta": predict.FLIP_TTA,
        "min_roll": predict.MIN_ROLL,
        "frame_decimals": detection.FRAME_DECIMALS,
        "max_side": images.MAX_SIDE,
        "low_confidence": predict.bar_of(model),        # the model's own bar (confidence.py)
        "max_unit": predict.MAX_UNIT,
        "rolls": list(predict.ROLLS),
        "retry_scales": list(predict.RETRY_SCALES),
        "retry_shifts": [list(s) for s in predict.RETRY_SHIFTS],
        "retry_best": predict.RETRY_BEST,
        "retry_margin": predict.RETRY_MARGIN,
        "calibration": predict.calibration(),
        "same_face": keypoints.SAME_FACE,
        "confirm_scale": keypoints.CONFIRM_SCALE,
        "blazeface": {"suppression_iou": blazeface.SUPPRESSION_IOU, "raw_score_limit": blazeface.RAW_SCORE_LIMIT,
                      "models": {name: {**spec._asdict(), "file": f"face_detector/{spec.file}"}
                                 for name, spec in blazeface.MODELS.items()}},
        "detector": {**detector, "near_limit": predict.NEAR_LIMIT,
                     "fallbacks": [list(f) for f in predict.FALLBACKS],
                     "lbp": {**detector["lbp"], "cascade": LBP_NAME}},
    }


def mirror_index(pairs, n):
    """For each keypoint, the one it becomes in the mirrored crop (left and right swapped)."""
    index = list(range(n))
    for a, b in pairs:
        index[a], index[b] = b, a
    return index


def cascade_files(names):
    """{file name: XML text}: the Haar cascades from the OpenCV wheel, and the LBP cascade from
    scikit-image with the tag predict.lbp_cascade mends ("featuhreParams")."""
    import cv2
    import skimage.data
    files = {name: (Path(cv2.data.haarcascades) / name).read_text() for name in names}
    lbp = Path(skimage.data.__file__).parent / "lbpcascade_frontalface_opencv.xml"
    files[LBP_NAME] = lbp.read_text().replace("featuhreParams>", "featureParams>")
    return files


def build(out, model=None):
    import models
    out = Path(out)
    missing = [name for name in NODE_FILES if not (HERE / "node_modules" / name).is_file()]
    if missing:
        raise SystemExit(f"web/node_modules/{missing[0]}: missing; run `npm ci` in web/ (make web does)")
    out.mkdir(parents=True, exist_ok=True)
    for name in PAGE_FILES:
        shutil.copyfile(HERE / name, out / name)
    for source, name in NODE_FILES.items():
        shutil.copyfile(HERE / "node_modules" / source, out / name)
    model = Path(model) if model else Path(models.shipped_model_path()).with_suffix(".onnx")
    shutil.copyfile(model, out / "model.onnx")
    from prediction import blazeface
    (out / "face_detector").mkdir(exist_ok=True)
    for spec in blazeface.MODELS.values():
        shutil.copyfile(blazeface.MODEL_DIR / spec.file, out / "face_detector" / spec.file)
    page = settings(str(model))
    names = [page["detector"]["cascade"]] + [f[0] for f in page["detector"]["fallbacks"]]
    (out / "cascades").mkdir(exist_ok=True)
    files = cascade_files(dict.fromkeys(names))
    for name, text in files.items():
        (out / "cascades" / name).write_text(text)
    page["cascade_files"] = sorted(files)
    (out / "settings.json").write_text(json.dumps(page, indent=1))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description="Build the web page into a folder a static host can serve.")
    parser.add_argument("--out", default=str(HERE / "build"), help="the folder (default web/build)")
    args = parser.parse_args(argv)
    out = build(args.out)
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"built {out} ({total / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
