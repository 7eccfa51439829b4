// The page's pipeline against Python's answers on the same inputs (web/fixtures.py): crops and
// turned views pixel for pixel, the network within 0.01 px, the detector's boxes, and the
// keypoints of whole photos within 1 px of predict.py's CSV.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import * as fkd from "../fkd.js";
import * as h from "./helpers.js";

const skip = h.missing();

function differing(a, b) {
  let count = 0, worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d) { count++; worst = Math.max(worst, d); }
  }
  return { count, worst };
}

test("crops equal input_data.Frame.crop's (OpenCV) pixel for pixel", { skip }, () => {
  const fx = h.fixtures();
  for (const c of fx.crops) {
    const crop = new fkd.Frame(c.cx, c.cy, c.side).crop(h.gray({ ...c, file: c.photo, ...photoSize(fx, c.photo) }));
    const expected = h.gray(c).data;
    assert.deepEqual(differing(crop.data, expected), { count: 0, worst: 0 }, `frame (${c.cx}, ${c.cy}, ${c.side})`);
  }
});

function photoSize(fx, file) {
  const p = fx.photos.find((q) => q.file === file);
  return { width: p.width, height: p.height };
}

test("turned views equal predict.upright_view's", { skip }, () => {
  const fx = h.fixtures();
  for (const v of fx.views) {
    const view = fkd.upright_view(h.gray({ file: v.photo, ...photoSize(fx, v.photo) }), v.roll);
    assert.equal(view.roll, v.view_roll);
    assert.equal(view.image.width, v.width);
    assert.equal(view.image.height, v.height);
    view.matrix.forEach((m, i) => assert.ok(Math.abs(m - v.matrix[i]) < 1e-9, `matrix ${i}`));
    view.inverse.forEach((m, i) => assert.ok(Math.abs(m - v.inverse[i]) < 1e-9, `inverse ${i}`));
    assert.deepEqual(differing(view.image.data, h.gray(v).data), { count: 0, worst: 0 }, `roll ${v.roll}`);
  }
});

test("the network's keypoints equal Python onnxruntime's within 0.01 px", { skip }, async () => {
  const fx = h.fixtures(), s = h.settings(), ort = await h.ort();
  const model = await fkd.load_model(ort, h.modelBytes(), "model.onnx", s);
  assert.equal(model.mirror_axis, 48.799);
  const crops = fx.crops.map((c) => h.gray(c));
  for (const [key, flip] of [["plain", false], ["flip", true]]) {
    const { points, confidence } = await fkd.run_network(model, crops, flip, s);
    const expected = fx.network[key];
    let worst = 0;
    points.forEach((face, i) => face.forEach(([x, y], j) => {
      worst = Math.max(worst, Math.abs(x - expected.points[i][j][0]), Math.abs(y - expected.points[i][j][1]));
    }));
    assert.ok(worst < 0.01, `${key}: ${worst} px apart`);
    confidence.forEach((c, i) => assert.ok(Math.abs(c - expected.confidence[i]) < 1e-4, `${key} confidence ${i}`));
  }
});

test("heatmap confidence equals predict.heatmap_confidence", { skip }, () => {
  const { heatmaps } = h.fixtures();
  const [n, k, cells] = heatmaps.shape;
  const got = fkd.heatmap_confidence(Float32Array.from(heatmaps.values), n, k, cells);
  got.forEach((c, i) => assert.ok(Math.abs(c - heatmaps.confidence[i]) < 1e-6, `${c} against ${heatmaps.confidence[i]}`));
});

test("One Euro smoothing equals predict.OneEuro", { skip }, () => {
  const { one_euro } = h.fixtures();
  const filter = new fkd.OneEuro();
  one_euro.inputs.forEach((v, i) => {
    filter.call(v, one_euro.dt).forEach((x, j) => assert.ok(Math.abs(x - one_euro.outputs[i][j]) < 1e-9));
  });
});

test("BlazeFace and the cascades find the boxes predict.detect_boxes finds", { skip }, async () => {
  const fx = h.fixtures(), s = h.settings();
  const detector = await h.detector(await h.ort(), s);
  for (const p of fx.photos) {
    const boxes = await detector.detect_boxes(h.gray(p));
    assert.equal(boxes.length, p.boxes.length, p.name);
    boxes.forEach((b, i) => b.forEach((v, j) => assert.ok(Math.abs(v - p.boxes[i][j]) < 1e-3, `${p.name} box ${i}: ${b} against ${p.boxes[i]}`)));
  }
});

test("a photo over max_side: its size and its faces in its own pixels as predict.py's", { skip }, () => {
  const { shrunk } = h.fixtures(), s = h.settings();
  const size = fkd.shrunk_size(...shrunk.photo, s);
  assert.deepEqual([size.shrink, size.width, size.height], [shrunk.shrink, ...shrunk.size]);
  assert.deepEqual(fkd.shrunk_size(640, 480, s), { shrink: 1, width: 640, height: 480 });
  const [cx, cy, side] = shrunk.face.frame;
  const face = { frame: new fkd.Frame(cx, cy, side), box: shrunk.face.box, keypoints: shrunk.face.keypoints };
  const got = fkd.in_photo(face, shrunk.shrink), want = shrunk.in_photo;
  const close = (a, b) => a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < 1e-9, `${a} against ${b}`));
  close([got.frame.cx, got.frame.cy, got.frame.side], want.frame);
  close(got.box, want.box);
  got.keypoints.forEach((p, i) => close(p, want.keypoints[i]));
});

test("a video whose face leaves: the tracker writes predict.py's rows", { skip }, async () => {
  const { video } = h.fixtures(), s = h.settings(), ort = await h.ort();
  const model = await fkd.load_model(ort, h.modelBytes(), "model.onnx", s);
  const tracker = new fkd.VideoTracker(model, await h.detector(ort, s), s, { rotations: true });
  const bytes = h.gray({ file: video.file, width: video.width, height: video.height * video.frames }).data;
  const size = video.width * video.height, rows = [];
  for (let i = 0; i < video.frames; i++) {
    const gray = { data: bytes.subarray(i * size, (i + 1) * size), width: video.width, height: video.height };
    const faces = await tracker.frame(gray, 1 / video.fps);
    rows.push(...fkd.csv_rows("leaving.avi", "", faces, s, { frame: i }));
  }
  assert.deepEqual(rows.map((r) => `${r.frame} ${r.status}`), video.rows.map((r) => `${r.frame} ${r.status}`));
  let worst = 0;
  rows.forEach((row, i) => s.columns.forEach((c) => {
    if (row[c] === "") return;
    const d = Math.abs(Number(row[c]) - Number(video.rows[i][c]));
    assert.ok(d <= 1, `frame ${row.frame} ${c}: ${row[c]} against ${video.rows[i][c]}`);
    worst = Math.max(worst, d);
  }));
  console.log(`video: ${rows.length} rows as predict.py's, keypoints at most ${worst.toFixed(2)} px apart`);
});

// Every row, "ok" or "low" (a face below the confidence bar, the best of many looks: the frames
// are snapped to predict.FRAME_DECIMALS so that both runtimes crop the same pixels), within 1 px.
test("whole photos: the keypoints equal predict.py's CSV within 1 px", { skip }, async () => {
  const fx = h.fixtures(), s = h.settings(), ort = await h.ort();
  const model = await fkd.load_model(ort, h.modelBytes(), "model.onnx", s);
  const detector = await h.detector(ort, s);
  const csv = h.readCsv(path.join(h.FIXTURES, "prediction.csv"));
  const worst = { ok: 0, low: 0 }, count = { ok: 0, low: 0 };
  for (const p of fx.photos) {
    const faces = await fkd.find_and_predict(h.gray(p), model, detector, s);
    const rows = fkd.csv_rows(p.name, "", faces, s);
    const expected = csv.filter((r) => path.basename(r.file) === p.name);
    assert.equal(rows.length, expected.length, p.name);
    rows.forEach((row, i) => {
      assert.equal(row.status, expected[i].status, p.name);
      if (row.status === "no_face") return;
      count[row.status] += 1;
      for (const c of [...s.columns, "x0", "y0", "size", "roll"]) {
        const d = Math.abs(Number(row[c]) - Number(expected[i][c]));
        assert.ok(d <= (c === "roll" ? 0.1 : 1), `${p.name} face ${i} ${c}: ${row[c]} against ${expected[i][c]}`);
        if (s.columns.includes(c)) worst[row.status] = Math.max(worst[row.status], d);
      }
    });
  }
  console.log(`photos ${fx.photos.length}: keypoints of ${count.ok} ok faces at most ${worst.ok.toFixed(2)} px, ` +
              `of ${count.low} low faces at most ${worst.low.toFixed(2)} px from predict.py's CSV`);
});
