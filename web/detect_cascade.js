// predict.py's face detector in the page (prediction/detection.py): BlazeFace (blazeface.js),
// else OpenCV's LBP and Haar cascades through OpenCV.js, with its names and rules (_detect,
// detect_boxes, blazeface_faces, _run_cascade, _shrunk, _as_haar_box, _add_new, _settled,
// _turned_boxes). The cascade files are the ones predict.py loads (copied
// from the installed OpenCV wheel and scikit-image by web/build.py); boxes are (x, y, w, h) in
// photo pixels, in the Haar cascade's terms (box_to_frame maps them to the Kaggle frame).
import { upright_view } from "./fkd.js";

// cv: the loaded OpenCV.js module; files: {name: XML text} of every cascade settings names;
// blazeface: {short, full} (blazeface.js make_blazeface), or null for the cascades alone.
export function make_detector(cv, files, settings, blazeface = null) {
  const d = settings.detector;
  const cascades = {};
  for (const [name, text] of Object.entries(files)) {
    try { cv.FS_unlink(`/${name}`); } catch { /* not there yet: a first detector */ }
    cv.FS_createDataFile("/", name, new TextEncoder().encode(text), true, false, false);
    const cascade = new cv.CascadeClassifier();
    if (!cascade.load(name)) throw new Error(`OpenCV.js could not load the cascade ${name}`);
    cascades[name] = cascade;
  }

  // (copy whose longer side is at most `side`, its scale), cv2.resize INTER_AREA.
  function _shrunk(gray, side) {
    const shrink = Math.min(1, side / Math.max(gray.width, gray.height));
    if (shrink === 1) return [gray, 1];
    const src = cv.matFromArray(gray.height, gray.width, cv.CV_8UC1, gray.data), dst = new cv.Mat();
    const size = new cv.Size(Math.max(1, Math.round(gray.width * shrink)), Math.max(1, Math.round(gray.height * shrink)));
    if (Math.min(Math.round(gray.width * shrink), Math.round(gray.height * shrink)) < 1) {
      cv.resize(src, dst, size, 0, 0, cv.INTER_AREA);
    } else {
      cv.resize(src, dst, new cv.Size(0, 0), shrink, shrink, cv.INTER_AREA);
    }
    const out = { data: new Uint8Array(dst.data), width: dst.cols, height: dst.rows };
    src.delete(); dst.delete();
    return [out, shrink];
  }

  // The boxes [[x, y, w, h]] of cascade `name` in the pixels of the copy `small`.
  function _run_cascade(small, name, scaleFactor, minNeighbors, mirrored = false) {
    const cascade = cascades[name];
    if (!cascade) throw new Error(`the cascade ${name} is not in the page's build`);
    const src = cv.matFromArray(small.height, small.width, cv.CV_8UC1, small.data);
    if (mirrored) cv.flip(src, src, 1);
    const rects = new cv.RectVector();
    cascade.detectMultiScale(src, rects, scaleFactor, minNeighbors, 0, new cv.Size(d.min_face, d.min_face), new cv.Size(0, 0));
    const boxes = [];
    for (let i = 0; i < rects.size(); i++) {
      const r = rects.get(i);
      boxes.push([mirrored ? small.width - r.x - r.width : r.x, r.y, r.width, r.height]);
    }
    src.delete(); rects.delete();
    return boxes;
  }

  function _run_lbp(small) {
    if (!cascades[d.lbp.cascade] || Math.min(small.width, small.height) < d.min_face) return [];
    return _run_cascade(small, d.lbp.cascade, d.lbp.scale_factor, d.lbp.min_neighbors);
  }

  // An LBP (or BlazeFace) box as the Haar box that gives the same frame.
  function _as_haar_box([x, y, w, h], fit_name = "lbp_box_to_frame") {
    const fit = settings.calibration[fit_name], haar = settings.calibration.box_to_frame;
    if (!fit) throw new RangeError(fit_name);
    const size = (w + h) / 2;
    const cx = x + w / 2 + fit.dx * size, cy = y + h / 2 + fit.dy * size, frameSide = fit.side * size;
    const side = frameSide / haar.side;
    const hx = cx - haar.dx * side, hy = cy - haar.dy * side;
    return [hx - side / 2, hy - side / 2, side, side];
  }

  const _settled = (boxes) => boxes.length > 0 && Math.min(...boxes.map((b) => b[2])) >= d.near_limit * d.min_face;

  function _add_new(kept, boxes) {
    kept = [...kept];
    for (const box of boxes) {
      const cx = box[0] + box[2] / 2, cy = box[1] + box[3] / 2;
      if (!kept.some((k) => k[0] <= cx && cx <= k[0] + k[2] && k[1] <= cy && cy <= k[1] + k[3])) kept.push(box);
    }
    return kept;
  }

  const largest_first = (boxes) => boxes.map((b, i) => [b, i])
    .sort((a, b) => (b[0][2] * b[0][3] - a[0][2] * a[0][3]) || (a[1] - b[1])).map(([b]) => b);

  // BlazeFace's box of a detection; the short-range one centred on its eyes, nose and mouth.
  function _blazeface_box(detection, model) {
    let [x0, y0, x1, y1] = detection.box;
    if (model === "short") {
      const cx = detection.keypoints.slice(0, 4).reduce((t, p) => t + p[0], 0) / 4;
      const cy = detection.keypoints.slice(0, 4).reduce((t, p) => t + p[1], 0) / 4;
      [x0, x1, y0, y1] = [cx - (x1 - x0) / 2, cx + (x1 - x0) / 2, cy - (y1 - y0) / 2, cy + (y1 - y0) / 2];
    }
    return [x0, y0, x1 - x0, y1 - y0];
  }

  async function _blazeface_boxes(gray, model) {   // a model's faces as Haar boxes
    const fit = model === "short" ? "blazeface_box_to_frame" : "blazeface_full_box_to_frame";
    return (await blazeface[model](gray, d.blazeface.min_score)).map((det) => _as_haar_box(_blazeface_box(det, model), fit));
  }

  // BlazeFace's faces as Haar boxes, largest first; [] with a calibration without its fits.
  async function blazeface_faces(gray) {
    let found;
    try {
      found = await _blazeface_boxes(gray, "short");
      if (!found.length || Math.min(...found.map((b) => b[2])) < d.blazeface.full_range_below * Math.max(gray.width, gray.height)) {
        found = _add_new(found, await _blazeface_boxes(gray, "full"));
      }
    } catch (error) {
      if (error instanceof RangeError) return [];
      throw error;
    }
    return largest_first(found);
  }

  // {boxes: largest first, how: "blazeface", "lbp" (the quick LBP cascade's boxes ended the
  // search: the Haar cascade may find better ones) or "haar"} (detection.detect).
  async function _detect(gray, { fallback = true, quick = true, sides = d.detect_sides } = {}) {
    let found = [];
    if (quick && blazeface && Math.min(gray.width, gray.height) >= 2) {
      const boxes = await blazeface_faces(gray);
      if (boxes.length) return { boxes, how: "blazeface" };
    }
    if (quick) {
      const [small, shrink] = _shrunk(gray, d.lbp.side);
      const boxes = _run_lbp(small);
      found = boxes.map((b) => _as_haar_box(b.map((v) => v / shrink)));
      if (_settled(boxes)) return { boxes: largest_first(found), how: "lbp" };
    }
    let small = gray, shrink = 1;
    for (const side of sides) {
      [small, shrink] = _shrunk(gray, side);
      if (Math.min(small.width, small.height) < d.min_face) break;
      const boxes = _run_cascade(small, d.cascade, d.scale_factor, d.min_neighbors);
      found = _add_new(found, boxes.map((b) => b.map((v) => v / shrink)));
      if (_settled(boxes) || shrink === 1) break;
    }
    if (fallback && Math.min(small.width, small.height) >= d.min_face) {
      for (const [name, minNeighbors, mirrored] of d.fallbacks) {
        if (found.length) break;
        let boxes = _run_cascade(small, name, d.scale_factor, minNeighbors);
        if (mirrored) boxes = boxes.concat(_run_cascade(small, name, d.scale_factor, minNeighbors, true));
        found = boxes.map((b) => b.map((v) => v / shrink));
      }
    }
    return { boxes: largest_first(found), how: "haar" };
  }

  const detect_boxes = async (gray, options) => (await _detect(gray, options)).boxes;

  function _sides_for(longest, faceSize) {
    if (!faceSize) return d.detect_sides;
    const needed = d.min_face * longest / (0.75 * faceSize);
    const larger = d.detect_sides.filter((s) => s >= needed);
    return d.detect_sides.filter((s) => s < needed).concat(larger.slice(0, 1));
  }

  // The boxes of the photo turned by roll, in the turned full-size photo's pixels, and the roll.
  async function _turned_boxes(gray, roll, faceSize = null) {
    if (roll % 90 === 0) {
      const view = upright_view(gray, roll);
      const sides = _sides_for(Math.max(view.image.width, view.image.height), faceSize);
      return { boxes: await detect_boxes(view.image, { fallback: false, sides }), roll: view.roll };
    }
    const last = d.detect_sides[d.detect_sides.length - 1];
    const [small, shrink] = _shrunk(gray, last);
    const view = upright_view(small, roll);
    const sides = _sides_for(Math.max(view.image.width, view.image.height), faceSize && faceSize * shrink);
    const boxes = await detect_boxes(view.image, { fallback: false, sides });
    return { boxes: boxes.map((b) => b.map((v) => v / shrink)), roll: view.roll };
  }

  // The Haar cascade's boxes on the finest copy, photo pixels (predict._retry's second source).
  function retry_boxes(gray) {
    const [small, shrink] = _shrunk(gray, d.detect_sides[d.detect_sides.length - 1]);
    return _run_cascade(small, d.cascade, d.scale_factor, d.min_neighbors).map((b) => b.map((v) => v / shrink));
  }

  return { _detect, detect_boxes, blazeface_faces, turned_boxes: _turned_boxes, retry_boxes, _shrunk, blazeface };
}
