// BlazeFace, MediaPipe's face detector, in the page: prediction/blazeface.py's steps with its
// names (letterbox, anchors, raw, weighted_nms), the ONNX files of models/face_detector/ on
// onnxruntime-web, the letterbox resize on OpenCV.js (the same cv2.resize as Python's).

export function anchors(spec) {      // (n, 2) anchor centres in [0, 1], in the model's output order
  const out = [];
  spec.strides.forEach((stride, s) => {
    const cells = Math.floor(spec.size / stride);
    for (let y = 0; y < cells; y++) {
      for (let x = 0; x < cells; x++) {
        for (let r = 0; r < spec.anchors_per_cell[s]; r++) out.push([(x + 0.5) / cells, (y + 0.5) / cells]);
      }
    }
  });
  return out;
}

export function iou(a, b) {
  const width = Math.min(a[2], b[2]) - Math.max(a[0], b[0]), height = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (width <= 0 || height <= 0) return 0;
  const inter = width * height, union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

// MediaPipe's weighted non-maximum suppression (best score first, overlapping ones averaged).
export function weighted_nms(detections, threshold) {
  let remaining = [...detections].sort((a, b) => b.score - a.score);
  const out = [];
  while (remaining.length) {
    const best = remaining[0];
    const group = remaining.filter((d) => iou(d.box, best.box) > threshold);
    remaining = remaining.filter((d) => iou(d.box, best.box) <= threshold);
    const total = group.reduce((t, d) => t + d.score, 0);
    const box = [0, 1, 2, 3].map((i) => group.reduce((t, d) => t + d.box[i] * d.score, 0) / total);
    const keypoints = best.keypoints.map((_, k) => [0, 1].map((a) => group.reduce((t, d) => t + d.keypoints[k][a] * d.score, 0) / total));
    out.push({ box, keypoints, score: best.score });
  }
  return out;
}

// A model ("short" or "full") ready to run: await detector(gray, min_score) -> [{box, keypoints, score}].
export async function make_blazeface(ort, cv, bytes, spec, settings) {
  const session = await ort.InferenceSession.create(bytes);
  const centres = anchors(spec), b = settings.blazeface;
  return async function detect(gray, min_score) {
    // letterbox: the picture fitted into the model's square, aspect kept, black around, [-1, 1]
    const size = spec.size, fit = size / Math.max(gray.width, gray.height);
    const w = Math.max(1, Math.round(gray.width * fit)), h = Math.max(1, Math.round(gray.height * fit));
    const src = cv.matFromArray(gray.height, gray.width, cv.CV_8UC1, gray.data), dst = new cv.Mat();
    cv.resize(src, dst, new cv.Size(w, h), 0, 0, fit < 1 ? cv.INTER_AREA : cv.INTER_LINEAR);
    const small = new Uint8Array(dst.data);
    src.delete(); dst.delete();
    const x0 = Math.floor((size - w) / 2), y0 = Math.floor((size - h) / 2);
    const tensor = new Float32Array(size * size * 3).fill(-1);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const v = Math.fround(Math.fround(small[y * w + x] * Math.fround(2 / 255)) - 1), p = ((y + y0) * size + x + x0) * 3;
        tensor[p] = tensor[p + 1] = tensor[p + 2] = v;
      }
    }
    const result = await session.run({ [session.inputNames[0]]: new ort.Tensor("float32", tensor, [1, size, size, 3]) });
    const outputs = Object.values(result);
    const regressors = outputs.find((o) => o.dims[o.dims.length - 1] === 16).data;
    const logits = outputs.find((o) => o.dims[o.dims.length - 1] === 1).data;
    const scale = [w / gray.width, h / gray.height], offset = [x0, y0], found = [];
    centres.forEach(([ax, ay], i) => {
      const logit = Math.min(b.raw_score_limit, Math.max(-b.raw_score_limit, logits[i]));
      const score = 1 / (1 + Math.exp(-logit));
      const r = (j) => regressors[i * 16 + j] / size;
      const bw = r(2), bh = r(3);
      if (!(score > min_score && bw > 0 && bh > 0)) return;
      const cx = r(0) + ax, cy = r(1) + ay;
      const px = (v, a) => (v * size - offset[a]) / scale[a];
      found.push({ box: [px(cx - bw / 2, 0), px(cy - bh / 2, 1), px(cx + bw / 2, 0), px(cy + bh / 2, 1)],
                   keypoints: [0, 1, 2, 3, 4, 5].map((k) => [px(r(4 + 2 * k) + ax, 0), px(r(5 + 2 * k) + ay, 1)]), score });
    });
    return weighted_nms(found, b.suppression_iou);
  };
}
