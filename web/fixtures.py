"""What Python answers, for the page's node tests (web/test/*.test.js) to compare with.

    python web/fixtures.py OUT [--photos N]      # tests/test_web.py writes them into a tmp folder

OUT gets: photos/ (scikit-image's astronaut and matplotlib's grace_hopper, plus the first N of
../shared/data/photos when that folder is there) and predict.py's CSV on them (prediction.csv,
from its main()); gray/*.bin, each photo as predict.read_photo reads it (raw uint8,
the JS pipeline's input); crops (frames of several sizes, also over the edge, and their
input_data.Frame.crop), turned views (predict.upright_view), the network's answers on the crops
(predict.run_network, with and without flip TTA), the detector's boxes, One Euro outputs and
heatmap confidences of random heatmaps, a face of a photo read shrunk mapped back; fixtures.json indexes them.
"""
import argparse
import contextlib
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED_PHOTOS = ROOT.parent / "shared" / "data" / "photos"


def raw(out, name, array):
    array = np.ascontiguousarray(array, np.uint8)
    (out / name).write_bytes(array.tobytes())
    return {"file": name, "width": int(array.shape[1]), "height": int(array.shape[0])}


def write(out, n_shared=0):
    import input_data
    import predict
    from input_data import Frame
    from prediction import images
    from prediction.photos import in_photo_pixels
    out = Path(out)
    photos = out / "photos"
    if photos.exists():
        shutil.rmtree(photos)
    predict.write_demo_photos(photos)
    shared = sorted(p for p in SHARED_PHOTOS.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) \
        if SHARED_PHOTOS.is_dir() else []
    for path in shared[:n_shared]:
        shutil.copyfile(path, photos / f"shared_{path.name}")
    (out / "gray").mkdir(exist_ok=True)
    index = {"photos": [], "crops": [], "views": [], "network": None}

    # The command itself: the CSV a student gets.
    for old in out.glob("prediction-*.csv"):
        old.unlink()
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            predict.main([str(photos), "--out", str(out), "--no-plot", "--no-progress", "--workers", "1"])
        except SystemExit as end:
            if end.code:
                raise
    csv = next(out.glob("prediction-*.csv"))
    csv.replace(out / "prediction.csv")

    for path in sorted(photos.iterdir()):
        gray = predict.read_photo(path)
        entry = raw(out / "gray", f"{path.name}.bin", gray)
        boxes = predict.detect_boxes(gray)
        entry.update(name=path.name, boxes=[[float(v) for v in box] for box in boxes])
        index["photos"].append({**entry, "file": f"gray/{entry['file']}"})

    gray = predict.read_photo(photos / "astronaut.png")
    height, width = gray.shape
    frames = [(260, 120, 50.3), (250.5, 130.2, 95.0), (240.7, 110.1, 150.2), (255.2, 125.9, 301.7),
              (300.1, 200.4, 555.5), (10.3, 20.7, 80.9), (width - 5.5, height - 3.2, 190.4), (-30, 40, 120)]
    crops = []
    for k, (cx, cy, side) in enumerate(frames):
        crop = input_data.Frame(cx, cy, side).crop(gray)
        crops.append(crop)
        index["crops"].append({"photo": "gray/astronaut.png.bin", "cx": cx, "cy": cy, "side": side,
                               **raw(out, f"crop_{k}.bin", crop)})
    for roll in (23.4, -90, 180, 61.7):
        view = predict.upright_view(gray, roll)
        index["views"].append({"photo": "gray/astronaut.png.bin", "roll": roll, "view_roll": view.roll,
                               "matrix": view.matrix.ravel().tolist(), "inverse": view.inverse.ravel().tolist(),
                               **raw(out, f"view_{roll}.bin", view.image)})

    model = predict.load_model(None)
    network = {"crops": [c["file"] for c in index["crops"]]}
    for flip in (False, True):
        points, confidence = predict.run_network(model, np.stack(crops), flip)
        network["flip" if flip else "plain"] = {"points": points.tolist(), "confidence": confidence.tolist()}
    index["network"] = network

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (3, 15, 576)).astype(np.float32)
    heatmaps = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    index["heatmaps"] = {"values": heatmaps.ravel().tolist(), "shape": list(heatmaps.shape),
                         "confidence": predict.heatmap_confidence(heatmaps).tolist()}

    values = np.cumsum(rng.normal(0, 2, (40, 4)), axis=0)
    smoother = predict.OneEuro()
    index["one_euro"] = {"dt": 1 / 30, "inputs": values.tolist(),
                         "outputs": [smoother(v, 1 / 30).tolist() for v in values]}
    # A photo over MAX_SIDE is read shrunk; its faces are written in its own pixels.
    shrink, size = images.shrunk_size(40000, 30001)
    face = predict.Face(Frame(5000.25, 7000.5, 1200.0), (4500.0, 6400.0, 1000.0, 1000.0), None,
                        rng.uniform(4500, 5500, (15, 2)), 0.5, 10.0)
    mapped = in_photo_pixels(face, shrink)
    index["shrunk"] = {"photo": [40000, 30001], "shrink": shrink, "size": list(size),
                       "face": {"frame": [face.frame.cx, face.frame.cy, face.frame.side], "box": list(face.box),
                                "keypoints": face.keypoints.tolist()},
                       "in_photo": {"frame": [mapped.frame.cx, mapped.frame.cy, mapped.frame.side],
                                    "box": list(mapped.box), "keypoints": mapped.keypoints.tolist()}}
    index["camera"] = camera(out, photos / "astronaut.png")
    index["video"] = leaving_video(out, photos / "astronaut.png")
    (out / "fixtures.json").write_text(json.dumps(index))
    return out


def camera(out, path, width=640, height=480, frames=5):
    """camera.y4m, Chromium's fake camera (--use-file-for-fake-video-capture): the photo scaled to
    the frame's height in the middle of a gray 640x480 frame; and predict.py's keypoints on it."""
    import cv2
    import predict
    from PIL import Image
    rgb = np.asarray(Image.open(path).convert("RGB"))
    side = height
    frame = np.full((height, width, 3), 128, np.uint8)
    left = (width - side) // 2
    frame[:, left:left + side] = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)
    yuv = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)
    with open(out / "camera.y4m", "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + yuv.tobytes())
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    faces = predict.predict_keypoints(gray, predict.load_model(None), rolls=())
    return {"file": "camera.y4m", "width": width, "height": height,
            "faces": [{"keypoints": np.asarray(f.keypoints).tolist(), "side": float(f.frame.side)} for f in faces]}


class _Rows(list):
    def write(self, rows):
        self.extend(rows)


def leaving_video(out, path, fps=25):
    """leaving.bin: the gray frames of a short video (MJPG, as predict.py reads it) whose face
    is still for 5 frames, then moves up and out of the picture; and predict.process_video's CSV
    rows for it (the page's VideoTracker must write the same)."""
    import cv2
    import predict
    gray = predict.read_photo(path)[:300, 100:400]
    shifts = [0] * 5 + [int(s) for s in np.linspace(0, 260, 9)[1:]]
    video = out / "leaving.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), fps, gray.shape[::-1])
    for s in shifts:
        frame = np.vstack([gray[s:], np.repeat(gray[-1:], s, axis=0)]) if s else gray
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    capture, frames = cv2.VideoCapture(str(video)), []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))      # what process_video reads
    capture.release()
    raw(out, "gray/leaving.bin", np.stack(frames).reshape(-1, gray.shape[1]))
    rows = _Rows()
    predict.process_video(str(video), "leaving.avi", "", predict.Options(model=predict.load_model(None), sheet=False),
                          rows)
    video.unlink()
    return {"file": "gray/leaving.bin", "frames": len(frames), "width": gray.shape[1], "height": gray.shape[0],
            "fps": fps, "rows": [{k: str(v) for k, v in row.items()} for row in rows]}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write Python's answers for the web page's node tests.")
    parser.add_argument("out", help="the folder (git-ignored or temporary)")
    parser.add_argument("--photos", type=int, default=0, help="also the first N photos of ../shared/data/photos")
    args = parser.parse_args(argv)
    print(f"wrote {write(args.out, args.photos)}")


if __name__ == "__main__":
    main()
