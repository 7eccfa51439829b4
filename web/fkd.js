// The keypoint pipeline of predict.py in JavaScript, for the page (index.html) and its node tests.
// Functions keep predict.py's names (crop, box_to_frame, frame_from_keypoints, eye_roll,
// upright_view, run_network, heatmap_confidence, predict_batch, find_and_predict, OneEuro,
// csv_rows) so that the two can be read side by side; docs/web.md says what is left out.
// No DOM here: a photo is a gray image {data: Uint8Array (H*W), width, height}. The settings
// (predict.py's constants and detector_calibration.json) come from settings.json, written by
// web/build.py from the Python modules: no number is copied by hand.

export const IMAGE_SIZE = 96;

// ---------------------------------------------------------------------------------------
// Resampling as OpenCV does it for uint8 images (cv2.warpAffine INTER_LINEAR BORDER_REPLICATE:
// source positions in fixed point with 1/32 px steps, integer bilinear weights; cv2.resize
// INTER_AREA by a whole factor), so that the page's crops equal Python's pixel for pixel.

const f32 = Math.fround;

function round_half_even(v) {       // cvRound / np.round
  const r = Math.round(v);
  return (r - v === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

function invert_affine(m) {         // cv2.invertAffineTransform's arithmetic
  let d = m[0] * m[4] - m[1] * m[3];
  d = d !== 0 ? 1 / d : 0;
  const a11 = m[4] * d, a22 = m[0] * d, a12 = -m[1] * d, a21 = -m[3] * d;
  return [a11, a12, -a11 * m[2] - a12 * m[5], a21, a22, -a21 * m[2] - a22 * m[5]];
}

// gray -> (width x height) image: dst(x, y) = src(M^-1 (x, y)), bilinear, edges replicated.
export function warp_affine(gray, matrix, width, height) {
  const inv = invert_affine(matrix), { data, width: sw, height: sh } = gray;
  const out = new Uint8Array(width * height), ax = new Int32Array(width), bx = new Int32Array(width);
  for (let x = 0; x < width; x++) {
    ax[x] = round_half_even(inv[0] * x * 1024);
    bx[x] = round_half_even(inv[3] * x * 1024);
  }
  const clamp = (v, n) => (v < 0 ? 0 : v >= n ? n - 1 : v);
  for (let y = 0; y < height; y++) {
    const x0 = round_half_even((inv[1] * y + inv[2]) * 1024) + 16, y0 = round_half_even((inv[4] * y + inv[5]) * 1024) + 16;
    for (let x = 0; x < width; x++) {
      const X = (x0 + ax[x]) >> 5, Y = (y0 + bx[x]) >> 5, fx = X & 31, fy = Y & 31;
      const c0 = clamp(X >> 5, sw), c1 = clamp((X >> 5) + 1, sw);
      const r0 = clamp(Y >> 5, sh) * sw, r1 = clamp((Y >> 5) + 1, sh) * sw;
      const sum = (data[r0 + c0] * (32 - fx) + data[r0 + c1] * fx) * (32 - fy) +
                  (data[r1 + c0] * (32 - fx) + data[r1 + c1] * fx) * fy;
      out[y * width + x] = (sum + 512) >> 10;
    }
  }
  return { data: out, width, height };
}

// cv2.resize(..., INTER_AREA) of a (f*n x f*n) image by the whole factor f: f x f block means.
function shrink_by(gray, f) {
  const n = gray.width / f, out = new Uint8Array(n * n), area = f * f, scale = f32(1 / area);
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      let sum = 0;
      for (let dy = 0; dy < f; dy++) {
        const row = (y * f + dy) * gray.width + x * f;
        for (let dx = 0; dx < f; dx++) sum += gray.data[row + dx];
      }
      out[y * n + x] = f === 2 ? (sum + 2) >> 2 : Math.min(255, round_half_even(f32(sum * scale)));
    }
  }
  return { data: out, width: n, height: n };
}

// ---------------------------------------------------------------------------------------
// The Kaggle frame: a square (centre, side) of the photo that becomes the 96x96 crop
// (input_data.Frame).

export class Frame {
  constructor(cx, cy, side) { this.cx = cx; this.cy = cy; this.side = side; }
  get scale() { return IMAGE_SIZE / this.side; }
  get corner() { return [this.cx - this.side / 2, this.cy - this.side / 2]; }
  to_photo(points) {                 // [[x, y]] in the 96-px frame -> photo pixels
    const [x0, y0] = this.corner, s = this.scale;
    return points.map(([x, y]) => [x / s + x0, y / s + y0]);
  }
  // gray -> 96x96 crop (input_data.Frame.crop): a bilinear warp to a whole multiple f x 96,
  // then f x f block means.
  crop(gray) {
    if (!(Number.isFinite(this.cx) && Number.isFinite(this.cy) && this.side > 0)) {
      throw new Error(`cannot crop a square at (${this.cx}, ${this.cy}) of side ${this.side}`);
    }
    const f = Math.max(1, Math.ceil(this.side / IMAGE_SIZE));
    const k = f * this.scale, [x0, y0] = this.corner;
    const matrix = [k, 0, (f - 1) / 2 - k * x0, 0, k, (f - 1) / 2 - k * y0];
    const warped = warp_affine(gray, matrix, IMAGE_SIZE * f, IMAGE_SIZE * f);
    return f > 1 ? shrink_by(warped, f) : warped;
  }
}

function apply(matrix, points) {     // predict._apply: (2, 3) affine on [[x, y]]
  return points.map(([x, y]) => [matrix[0] * x + matrix[1] * y + matrix[2],
                                 matrix[3] * x + matrix[4] * y + matrix[5]]);
}

// ---------------------------------------------------------------------------------------
// Turned faces: the photo turned clockwise by roll degrees so that a face turned
// counter-clockwise by roll stands upright (predict.upright_view).

function round_to(v, decimals) {     // np.round: half to even at that decimal
  const k = 10 ** decimals;
  return round_half_even(v * k) / k;
}

export function upright_view(gray, roll) {
  roll %= 360;                       // Python's float % 360: floored, not truncated
  if (roll < 0) roll += 360;
  const identity = [1, 0, 0, 0, 1, 0];
  if (roll === 0) return { roll: 0, image: gray, matrix: identity, inverse: identity };
  const radians = roll * Math.PI / 180;
  const cos = round_to(Math.cos(radians), 12), sin = round_to(Math.sin(radians), 12);
  const { width, height } = gray;
  const nw = round_half_even(Math.abs(cos) * width + Math.abs(sin) * height);
  const nh = round_half_even(Math.abs(sin) * width + Math.abs(cos) * height);
  const [ox, oy] = [(width - 1) / 2, (height - 1) / 2], [nx, ny] = [(nw - 1) / 2, (nh - 1) / 2];
  const matrix = [cos, -sin, nx - (cos * ox - sin * oy), sin, cos, ny - (sin * ox + cos * oy)];
  return { roll: roll <= 180 ? roll : roll - 360, image: warp_affine(gray, matrix, nw, nh),
           matrix, inverse: invert_affine(matrix) };
}

// ---------------------------------------------------------------------------------------
// Detector boxes and keypoints -> frames (the fits of detector_calibration.json).

export function box_to_frame([x, y, w, h], settings) {
  const fit = settings.calibration.box_to_frame, size = (w + h) / 2;
  return snapped_frame(x + w / 2 + fit.dx * size, y + h / 2 + fit.dy * size, fit.side * size, settings);
}

// predict.snapped_frame: centre and side rounded, so that every runtime crops the same pixels.
export function snapped_frame(cx, cy, side, settings) {
  const d = settings.frame_decimals;
  return new Frame(round_to(cx, d), round_to(cy, d), round_to(side, d));
}

export function frame_from_keypoints(points, settings) {
  const fit = settings.calibration.keypoints_to_frame;
  if (!points.every(([x, y]) => Number.isFinite(x) && Number.isFinite(y))) throw new Error("keypoints are not finite");
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const lo = [Math.min(...xs), Math.min(...ys)], hi = [Math.max(...xs), Math.max(...ys)];
  const c = [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2], s = [hi[0] - lo[0], hi[1] - lo[1]];
  const side = s[0] * fit.side[0] + s[1] * fit.side[1];
  if (!(side > 0)) throw new Error("degenerate keypoints");
  return snapped_frame(c[0] + s[0] * fit.cx[0] + s[1] * fit.cx[1], c[1] + s[0] * fit.cy[0] + s[1] * fit.cy[1], side, settings);
}

export function eye_roll(points) {   // degrees counter-clockwise, from the two eye centres
  const [left, right] = points;
  return -Math.atan2(left[1] - right[1], left[0] - right[0]) * 180 / Math.PI;
}

// ---------------------------------------------------------------------------------------
// The network (onnxruntime-web; `ort` is passed in so that node and the page share this file).

export class ModelError extends Error {}

// Loads an ONNX keypoint model (bytes) and checks it as predict.OnnxPredictor does.
export async function load_model(ort, bytes, name, settings) {
  let session;
  try {
    session = await ort.InferenceSession.create(bytes);
  } catch (error) {
    throw new ModelError(`${name}: not an ONNX model onnxruntime can run (${String(error.message || error).slice(0, 200)})`);
  }
  const outputs = session.outputNames, input = session.inputNames[0];
  const meta = session.inputMetadata?.[0], out = session.outputMetadata?.[0];
  if (meta?.shape && (meta.type !== "float32" || meta.shape.length !== 4 ||
      meta.shape.slice(1).join() !== [IMAGE_SIZE, IMAGE_SIZE, 1].join())) {
    throw new ModelError(`${name}: the model takes ${meta.type} [${meta.shape}], expected float32 [N, 96, 96, 1] (96x96 grayscale faces)`);
  }
  if (out?.shape && (out.shape.length !== 2 || out.shape[1] !== 2 * settings.keypoint_names.length)) {
    throw new ModelError(`${name}: the model gives [${out.shape.slice(1)}] per face, expected 30 keypoint coordinates`);
  }
  // export.py's metadata: the mirror axis of flip TTA. onnxruntime-web does not read an ONNX
  // file's metadata, so the page reads it from the protobuf itself (onnx_metadata).
  const axisText = onnx_metadata(bytes).mirror_axis_px;
  const axis = axisText === undefined ? (IMAGE_SIZE - 1) / 2 : Number(axisText);
  if (!(Number.isFinite(axis) && axis >= 0 && axis <= IMAGE_SIZE)) {
    throw new ModelError(`${name}: its metadata mirror_axis_px is ${JSON.stringify(axisText).slice(0, 40)}; expected a number of pixels from 0 to 96`);
  }
  return { ort, session, input, outputs: outputs.includes("heatmaps") ? [outputs[0], "heatmaps"] : [outputs[0]],
           mirror_axis: axis, name };
}

// The metadata_props of an ONNX file (a ModelProto, field 14: StringStringEntryProto key 1, value 2).
export function onnx_metadata(bytes) {
  const buf = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const found = {};
  let pos = 0;
  const varint = () => {
    let v = 0, shift = 0, b;
    do { b = buf[pos++]; v += (b & 0x7f) * 2 ** shift; shift += 7; } while (b & 0x80);
    return v;
  };
  const text = (a, b) => new TextDecoder().decode(buf.subarray(a, b));
  while (pos < buf.length) {
    const key = varint(), field = Math.floor(key / 8), wire = key & 7;
    if (wire === 0) varint();
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const len = varint(), end = pos + len;
      if (field === 14) {
        let k, v;
        while (pos < end) {
          const t = varint(), l = varint();
          if (t >> 3 === 1) k = text(pos, pos + l); else if (t >> 3 === 2) v = text(pos, pos + l);
          pos += l;
        }
        if (k !== undefined) found[k] = v;
      }
      pos = end;
    } else break;                    // not a protobuf we understand: no metadata
  }
  return found;
}

// (n, 15, cells) softmax heatmaps -> (n,) confidence: per keypoint the probability in the 3x3
// cells around its peak, averaged over the keypoints (predict.heatmap_confidence).
export function heatmap_confidence(heatmaps, n, k, cells) {
  const grid = Math.round(Math.sqrt(cells)), out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let mean = 0;
    for (let j = 0; j < k; j++) {
      const base = (i * k + j) * cells;
      let peak = 0;
      for (let c = 1; c < cells; c++) if (heatmaps[base + c] > heatmaps[base + peak]) peak = c;
      const r = Math.floor(peak / grid), col = peak % grid;
      let total = 0;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const rr = r + dy, cc = col + dx;
          if (rr >= 0 && rr < grid && cc >= 0 && cc < grid) total = f32(total + heatmaps[base + rr * grid + cc]);
        }
      }
      mean += total;
    }
    out[i] = mean / k;
  }
  return out;
}

// uint8 96x96 crops -> {points: [n][15][2] in the 96-px frame, confidence: [n]}; flip: the mean
// with the mirrored crop's prediction, left/right swapped (predict.run_network).
export async function run_network(model, crops, flip, settings) {
  const n = crops.length, size = IMAGE_SIZE * IMAGE_SIZE, total = flip ? 2 * n : n;
  if (n === 0) return { points: [], confidence: [] };
  const X = new Float32Array(total * size);
  crops.forEach((crop, i) => {
    for (let p = 0; p < size; p++) X[i * size + p] = crop.data[p] / 255;
    if (flip) {
      for (let y = 0; y < IMAGE_SIZE; y++) {
        for (let x = 0; x < IMAGE_SIZE; x++) {
          X[(n + i) * size + y * IMAGE_SIZE + x] = crop.data[y * IMAGE_SIZE + IMAGE_SIZE - 1 - x] / 255;
        }
      }
    }
  });
  let result;
  try {
    result = await model.session.run({ [model.input]: new model.ort.Tensor("float32", X, [total, IMAGE_SIZE, IMAGE_SIZE, 1]) },
                                     model.outputs);
  } catch (error) {
    throw new ModelError(`${model.name}: not a keypoint model onnxruntime can run on 96x96 faces (${String(error.message || error).slice(0, 200)})`);
  }
  const unit = result[model.outputs[0]].data, k = settings.keypoint_names.length;
  let worst = 0;
  for (const u of unit) worst = Number.isFinite(u) ? Math.max(worst, Math.abs(u)) : Infinity;
  if (!(worst < settings.max_unit)) {
    throw new ModelError(`${model.name}: the model gives ` + (worst === Infinity ? "non-finite keypoints (NaN or inf)"
      : `keypoints ${worst.toPrecision(3)} half-widths from the crop's centre`) + " on a face crop: it is not a working keypoint model");
  }
  const pixels = (i, j, a) => f32(f32(unit[(i * k + j) * 2 + a] * 48) + 48);
  let conf = new Float64Array(total).fill(NaN);
  if (model.outputs.length > 1) {
    const heat = result.heatmaps;
    conf = heatmap_confidence(heat.data, total, heat.dims[1], heat.dims[2]);
  }
  const mirror = settings.mirror_index;
  const points = [], confidence = [];
  for (let i = 0; i < n; i++) {
    const face = [];
    for (let j = 0; j < k; j++) {
      let x = pixels(i, j, 0), y = pixels(i, j, 1);
      if (flip) {
        const m = mirror[j];
        const mx = f32(2 * model.mirror_axis - pixels(n + i, m, 0)), my = pixels(n + i, m, 1);
        x = f32(f32(x + mx) / 2); y = f32(f32(y + my) / 2);
      }
      face.push([x, y]);
    }
    points.push(face);
    confidence.push(flip ? (conf[i] + conf[n + i]) / 2 : conf[i]);
  }
  return { points, confidence };
}

// ---------------------------------------------------------------------------------------
// Faces: crop, predict, map back, refine (predict.predict_batch for one photo).

// One face: {frame (photo px), box, crop, keypoints [[x, y]] (photo px), confidence, roll}.
function face_in_photo(view, frame, box, crop, points, confidence) {
  const [centre] = apply(view.inverse, [[frame.cx, frame.cy]]);
  return { frame: new Frame(centre[0], centre[1], frame.side), box, crop,
           keypoints: apply(view.inverse, frame.to_photo(points)), confidence, roll: view.roll };
}

export function refine_passes(refine, settings) {
  return refine === true ? settings.refine_passes : refine === false ? 0 : Math.max(0, Math.floor(refine));
}

// frames: upright Frames in the pixels of the photo turned by each face's roll (rolls, default 0).
export async function predict_batch(gray, model, frames, boxes, settings,
                                    { refine = true, flip_tta = "final", rolls = null } = {}) {
  const count = frames.length;
  if (count === 0) return [];
  boxes = boxes || frames.map(() => null);
  const views = new Map();
  const view = (roll) => {
    if (!views.has(roll)) views.set(roll, upright_view(gray, roll));
    return views.get(roll);
  };
  const flat = [...frames], flatViews = frames.map((_, j) => view(rolls ? rolls[j] : 0));
  const crops = flat.map((f, j) => f.crop(flatViews[j].image));
  const passes = refine_passes(refine, settings);
  const faces = new Array(count);
  const network = async (indices, step) => {
    for (const flip of [false, true]) {
      const chosen = indices.filter((n) => flip === (flip_tta === true || (Boolean(flip_tta) && step === passes)));
      if (!chosen.length) continue;
      const { points, confidence } = await run_network(model, chosen.map((n) => crops[n]), flip, settings);
      chosen.forEach((n, c) => {
        faces[n] = face_in_photo(flatViews[n], flat[n], boxes[n], crops[n], points[c], confidence[c]);
      });
    }
  };
  await network([...Array(count).keys()], 0);
  let active = [...Array(count).keys()];
  for (let step = 1; step <= passes; step++) {
    const again = [];
    for (const n of active) {
      const photoPoints = faces[n].keypoints;
      let roll = flatViews[n].roll;
      const turn = eye_roll(apply(flatViews[n].matrix, photoPoints));
      if (Math.abs(turn) > settings.min_roll) roll = round_to(roll + turn, 1);
      const newView = view(roll);
      let next;
      try {
        next = frame_from_keypoints(apply(newView.matrix, photoPoints), settings);
      } catch {
        continue;
      }
      if (next.side > 4 * flat[n].side || next.side < flat[n].side / 4) continue;
      flat[n] = next; flatViews[n] = newView; crops[n] = next.crop(newView.image);
      again.push(n);
    }
    if (!again.length) break;
    await network(again, step);
    active = again;
  }
  return faces;
}

function confident(faces, settings) {     // NaN (a model without heatmaps) counts as confident
  return faces.some((f) => !(f.confidence < settings.low_confidence));
}

// The faces of a photo, largest first (predict.find_and_predict): the detector's upright faces;
// when the quick cascade's are all unsure, the full detector's; each unsure face retried from
// moved and resized squares; when none is confident, the first turned copy with a confident face.
// detector: detect_cascade.js (or any object with the same _detect, detect_boxes, retry_boxes).
export async function find_and_predict(gray, model, detector, settings, { refine = true, flip_tta = "final", rolls = null } = {}) {
  const opts = { refine, flip_tta };
  rolls = rolls ?? settings.rolls;
  const predict = (boxes, roll = 0) => predict_batch(gray, model, boxes.map((b) => box_to_frame(b, settings)), boxes,
                                                     settings, { ...opts, rolls: boxes.map(() => roll) });
  const { boxes, how } = await detector._detect(gray);
  const faces = merge_same(await upright_or_turned(gray, model, detector, await predict(boxes), how, settings, opts, rolls, predict), settings);
  return how === "blazeface" || !detector.blazeface ? faces : Promise.all(faces.map((f) => confirmed(gray, f, detector, settings)));
}

// The face marked unsure unless BlazeFace finds a face on its square made confirm_scale larger.
async function confirmed(gray, face, detector, settings) {
  const view = upright_view(gray, face.roll);
  const [[cx, cy]] = apply(view.matrix, [[face.frame.cx, face.frame.cy]]);
  const crop = new Frame(cx, cy, face.frame.side * settings.confirm_scale).crop(view.image);
  return (await detector.blazeface.short(crop, settings.detector.blazeface.min_score)).length ? face : { ...face, unsure: true };
}

// The faces with each one found twice kept once, the more confident (keypoints.merge_same).
export function merge_same(faces, settings) {
  const order = faces.map((f, i) => [Number.isNaN(f.confidence) ? 0 : -f.confidence, i]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const kept = [];
  const dist = (p, q) => Math.hypot(p[0] - q[0], p[1] - q[1]);
  const same = (a, b) => {
    const eyes = Math.max(dist(a.keypoints[0], a.keypoints[1]), dist(b.keypoints[0], b.keypoints[1]));
    const mean = a.keypoints.reduce((t, p, j) => t + dist(p, b.keypoints[j]), 0) / a.keypoints.length;
    return mean < settings.same_face * Math.max(eyes, 1e-6);
  };
  for (const [, i] of order) if (!kept.some((k) => same(faces[i], k))) kept.push(faces[i]);
  return faces.filter((f) => kept.includes(f));
}

async function upright_or_turned(gray, model, detector, faces, how, settings, opts, rolls, predict) {
  if (faces.length && how === "lbp" && !confident(faces, settings)) {
    const haarBoxes = await detector.detect_boxes(gray, { quick: false });
    const haar = haarBoxes.length ? await predict(haarBoxes) : [];
    if (confident(haar, settings)) faces = haar;
  }
  const sure = confident(faces, settings);
  const retried = [];
  for (const face of faces) retried.push(await retry(gray, model, detector, face, settings, opts));
  faces = retried;
  if (!rolls.length || sure || faces.some((f) => f.confidence >= settings.low_confidence * (1 + settings.retry_margin))) return faces;
  const best = Math.max(-1, ...faces.map((f) => f.confidence));
  const known = faces.filter((f) => f.box).map((f) => f.box[2]);
  const size = known.length ? Math.max(...known) : null;
  for (const roll of rolls) {
    const turned = await detector.turned_boxes(gray, roll, size);
    if (!turned.boxes.length) continue;
    const found = await predict(turned.boxes, turned.roll);
    if (confident(found, settings) && Math.max(...found.map((f) => f.confidence)) > best) return found;
    if (!faces.length) faces = found;
  }
  return faces;
}

// predict._retry: a face below the bar tried from its detector frame moved and resized, and from
// the boxes the detector finds inside its square; the most confident of all is kept.
async function retry(gray, model, detector, face, settings, opts) {
  if (!(face.confidence < settings.low_confidence) || !face.box) return face;
  const first = box_to_frame(face.box, settings);
  const frames = [], boxes = [];
  for (const scale of settings.retry_scales) {
    for (const [dx, dy] of settings.retry_shifts) {
      if (scale === 1 && dx === 0 && dy === 0) continue;
      frames.push(new Frame(first.cx + dx * first.side, first.cy + dy * first.side, first.side * scale));
      boxes.push(face.box);
    }
  }
  const [lx, ly] = face.frame.corner;
  for (const box of detector.retry_boxes(gray)) {
    const cx = box[0] + box[2] / 2, cy = box[1] + box[3] / 2;
    if (cx >= lx && cy >= ly && cx <= lx + face.frame.side && cy <= ly + face.frame.side && box[2] < 0.9 * face.box[2]) {
      frames.push(box_to_frame(box, settings));
      boxes.push(box);
    }
  }
  const looks = await predict_batch(gray, model, frames, boxes, settings, { refine: false, flip_tta: false });
  const order = looks.map((f, i) => [f.confidence, i]).sort((a, b) => b[0] - a[0] || a[1] - b[1])
    .slice(0, settings.retry_best).map(([, i]) => i);
  const tries = await predict_batch(gray, model, order.map((i) => frames[i]), order.map((i) => boxes[i]), settings, opts);
  return [face, ...tries].reduce((a, b) => (b.confidence > a.confidence ? b : a));
}

// ---------------------------------------------------------------------------------------
// Video: the One Euro filter (predict.OneEuro) on a face's 30 coordinates.

export class OneEuro {
  constructor(min_cutoff = 1.0, beta = 0.05, d_cutoff = 1.0) {
    Object.assign(this, { min_cutoff, beta, d_cutoff, value: null, speed: null });
  }
  static _alpha(cutoff, dt) { return 1 / (1 + 1 / (2 * Math.PI * cutoff) / dt); }
  call(value, dt) {                  // value: flat array of numbers
    if (this.value === null) {
      this.value = [...value]; this.speed = value.map(() => 0);
      return [...this.value];
    }
    const a = OneEuro._alpha(this.d_cutoff, dt);
    this.speed = value.map((v, i) => a * ((v - this.value[i]) / dt) + (1 - a) * this.speed[i]);
    this.value = value.map((v, i) => {
      const b = OneEuro._alpha(this.min_cutoff + this.beta * Math.abs(this.speed[i]), dt);
      return b * v + (1 - b) * this.value[i];
    });
    return [...this.value];
  }
}

// ---------------------------------------------------------------------------------------
// The CSV (predict.csv_rows): one row per face, predict.CSV_COLUMNS; a face below the bar is "low".

// A photo over settings.max_side is read shrunk (prediction.images.shrunk_size), and its faces
// written in its own pixels (prediction.photos.in_photo_pixels).
export function shrunk_size(width, height, settings) {
  if (Math.max(width, height) <= settings.max_side) return { shrink: 1, width, height };
  const shrink = settings.max_side / Math.max(width, height);
  return { shrink, width: Math.max(1, round_half_even(width * shrink)), height: Math.max(1, round_half_even(height * shrink)) };
}

export function in_photo(face, shrink) {
  const back = (points) => points.map(([x, y]) => [(x + 0.5) / shrink - 0.5, (y + 0.5) / shrink - 0.5]);
  const [[cx, cy]] = back([[face.frame.cx, face.frame.cy]]);
  const box = face.box && [...back([face.box.slice(0, 2)])[0], face.box[2] / shrink, face.box[3] / shrink];
  return { ...face, frame: new Frame(cx, cy, face.frame.side / shrink), box, keypoints: back(face.keypoints) };
}

// predict.is_low: below the confidence bar, or unconfirmed (only a cascade found it).
export function is_low(face, settings) {
  return face.confidence < settings.low_confidence || Boolean(face.unsure);
}

export function csv_rows(name, person, faces, settings, { status = "ok", frame = "" } = {}) {
  const columns = settings.csv_columns, base = { file: name, person, frame };
  if (status !== "ok" || !faces.length) {
    const row = { ...base, face: "", status: status !== "ok" ? status : "no_face" };
    for (const c of columns.slice(5)) row[c] = "";
    return [row];
  }
  return faces.map((face, index) => {
    const [x0, y0] = face.frame.corner;
    const status = is_low(face, settings) ? "low" : "ok";
    const row = { ...base, face: index, status, x0: x0.toFixed(2), y0: y0.toFixed(2),
                  size: face.frame.side.toFixed(2), roll: face.roll.toFixed(1) };
    settings.columns.forEach((c, i) => { row[c] = face.keypoints[i >> 1][i & 1].toFixed(2); });
    row.confidence = Number.isNaN(face.confidence) ? "" : face.confidence.toFixed(3);
    return row;
  });
}

export function csv_text(rows, settings) {
  const quote = (v) => (/[",\n\r]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
  return [settings.csv_columns.join(","), ...rows.map((r) => settings.csv_columns.map((c) => quote(r[c])).join(","))]
    .join("\r\n") + "\r\n";
}

// RGBA pixels -> gray as Pillow's convert("L") (ITU-R 601 luma in fixed point), transparent
// parts on white (input_data.to_gray8).
export function rgba_to_gray(rgba, width, height) {
  const out = new Uint8Array(width * height);
  for (let i = 0, p = 0; i < out.length; i++, p += 4) {
    const a = rgba[p + 3], w = 255 - a;
    const r = a === 255 ? rgba[p] : Math.round((rgba[p] * a + 255 * w) / 255);
    const g = a === 255 ? rgba[p + 1] : Math.round((rgba[p + 1] * a + 255 * w) / 255);
    const b = a === 255 ? rgba[p + 2] : Math.round((rgba[p + 2] * a + 255 * w) / 255);
    out[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
  }
  return { data: out, width, height };
}

// ---------------------------------------------------------------------------------------
// Video (predict.process_video, one frame at a time): each face followed from the previous
// frame's keypoints, detection only when a face is lost, keypoints smoothed by One Euro.
// rotations: search turned copies until a face was first seen (off for the live camera); once one
// was seen, a lost face is looked for by BlazeFace alone.

export class VideoTracker {
  constructor(model, detector, settings, { refine = true, flip_tta = "final", rotations = false, smooth = true } = {}) {
    Object.assign(this, { model, detector, settings, refine, flip_tta, rotations, smooth, tracks: [], seen: false });
  }

  // gray frame, seconds since the last -> faces with smoothed keypoints (photo px)
  async frame(gray, dt) {
    const s = this.settings, low = (f) => f.confidence < s.low_confidence;
    let faces = [];
    if (this.tracks.length) {
      const rolls = this.tracks.map((t) => t.roll);
      let frames = [];
      try {
        frames = this.tracks.map((t) => frame_from_keypoints(apply(upright_view(gray, t.roll).matrix, t.keypoints), s));
      } catch { frames = []; }
      if (frames.length) {
        faces = (await predict_batch(gray, this.model, frames, null, s, { refine: this.refine, flip_tta: this.flip_tta, rolls }))
          .filter((f) => !low(f));
        if (faces.length < this.tracks.length) faces = [];
      }
    }
    if (!faces.length && this.seen) {
      // Once a face was seen, a lost one is looked for by BlazeFace alone (predict.process_video):
      // a frame whose face is leaving the picture costs what a normal one does.
      const boxes = this.detector.blazeface ? await this.detector.blazeface_faces(gray) : [];
      if (boxes.length) {
        faces = merge_same(await predict_batch(gray, this.model, boxes.map((b) => box_to_frame(b, s)), boxes, s,
                                               { refine: this.refine, flip_tta: this.flip_tta }), s);
      }
      this.tracks = [];
    } else if (!faces.length) {
      faces = await find_and_predict(gray, this.model, this.detector, s, { refine: this.refine, flip_tta: this.flip_tta,
                                                                          rolls: this.rotations ? s.rolls : [] });
      this.tracks = [];
      this.seen = faces.some((f) => !low(f));
    }
    const shown = faces.map((face, i) => {
      const smoother = this.tracks[i]?.smoother ?? new OneEuro();
      const flat = this.smooth ? smoother.call(face.keypoints.flat(), dt) : face.keypoints.flat();
      return { ...face, keypoints: face.keypoints.map((_, j) => [flat[2 * j], flat[2 * j + 1]]), raw: face.keypoints, smoother };
    });
    this.tracks = faces.every((f) => !low(f)) ? shown.map((f) => ({ keypoints: f.raw, roll: f.roll, smoother: f.smoother })) : [];
    return shown;
  }
}
