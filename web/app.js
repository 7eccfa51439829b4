// The page (index.html): loads the model, BlazeFace, OpenCV.js's cascades and settings.json from its own
// folder, then runs fkd.js on the camera's frames or on a photo. What it found is reported on
// window.fkd and as data attributes of <body> (the headless Chromium test reads them).
import * as ort from "./ort.wasm.min.mjs";
import * as fkd from "./fkd.js";
import { make_detector } from "./detect_cascade.js";
import { make_blazeface } from "./blazeface.js";

// Single-threaded wasm from this folder: any static host serves it, no COOP/COEP headers.
ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = new URL("./", import.meta.url).href;

const $ = (id) => document.getElementById(id);
const canvas = $("view"), context = canvas.getContext("2d", { willReadFrequently: true });
const video = $("video");
const report = window.fkd = { ready: false, frames: 0, faces: [], fps: null, first_keypoints_ms: null, camera: "off", error: null };
let settings, model, detector, stream = null, tracker = null, rows = null;

function say(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
  if (error) report.error = text;
}

function publish(faces, extra = {}) {
  report.faces = faces.map((f) => ({ keypoints: f.keypoints, confidence: f.confidence, frame: [f.frame.cx, f.frame.cy, f.frame.side], roll: f.roll }));
  Object.assign(report, extra);
  document.body.dataset.faces = JSON.stringify(report.faces.map((f) => f.keypoints));
  document.body.dataset.frames = report.frames;
}

// predict.draw_overlay's picture: each face's square (green; orange below the bar) and its keypoints (red).
function draw(faces) {
  const thick = Math.max(1, Math.round(Math.max(canvas.width, canvas.height) / 400));
  faces.forEach((face, index) => {
    const low = fkd.is_low(face, settings);
    const colour = low ? "#ff9900" : "#00c000";
    const r = face.frame.side / 2, t = -face.roll * Math.PI / 180, c = Math.cos(t), s = Math.sin(t);
    const corners = [[-r, -r], [r, -r], [r, r], [-r, r]].map(([x, y]) => [face.frame.cx + c * x - s * y, face.frame.cy + s * x + c * y]);
    context.strokeStyle = context.fillStyle = colour;
    context.lineWidth = thick;
    context.beginPath();
    corners.forEach(([x, y], i) => (i ? context.lineTo(x, y) : context.moveTo(x, y)));
    context.closePath();
    context.stroke();
    context.font = `${12 * thick}px sans-serif`;
    context.fillText(index + (low ? ` low${Number.isNaN(face.confidence) ? "" : " " + face.confidence.toFixed(2)}` : ""), corners[0][0] + 2, corners[0][1] + 12 * thick);
    context.fillStyle = "#ff2020";
    const radius = Math.max(1, Math.round(face.frame.side / 60));
    for (const [x, y] of face.keypoints) {
      context.beginPath();
      context.arc(x, y, radius, 0, 2 * Math.PI);
      context.fill();
    }
  });
}

function grayOfCanvas() {
  const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
  return fkd.rgba_to_gray(data, canvas.width, canvas.height);
}

// ---------------------------------------------------------------------------------------
// The camera: one frame at a time, as fast as the pipeline goes.

async function startCamera() {
  if (!navigator.mediaDevices?.getUserMedia) {
    report.camera = "absent";
    return say("This browser gives the page no camera (it needs https or localhost). A photo still works.", true);
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (error) {
    const refused = error.name === "NotAllowedError" || error.name === "SecurityError";
    report.camera = refused ? "refused" : "absent";
    return say(refused ? "The camera was refused: allow it in the browser's address bar, or choose a photo."
                       : `No camera found (${error.name}). Choose a photo instead.`, true);
  }
  video.srcObject = stream;
  await video.play();
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  tracker = new fkd.VideoTracker(model, detector, settings);
  report.camera = "on";
  $("stop").disabled = false;
  say("Camera on: keypoints live.");
  loop(performance.now(), performance.now(), 0);
}

async function loop(started, last, count) {
  if (!stream) return;
  context.drawImage(video, 0, 0, canvas.width, canvas.height);
  const now = performance.now();
  const faces = await tracker.frame(grayOfCanvas(), Math.max(1e-3, (now - last) / 1000));
  draw(faces);
  report.frames += 1;
  if (faces.length && report.first_keypoints_ms === null) report.first_keypoints_ms = performance.now();
  const elapsed = (performance.now() - started) / 1000;
  if (elapsed > 0.5) report.fps = (count + 1) / elapsed;
  $("fps").textContent = report.fps ? `${report.fps.toFixed(1)} frames/s` : "";
  publish(faces);
  requestAnimationFrame(() => loop(started, now, count + 1));
}

function stopCamera() {
  stream?.getTracks().forEach((t) => t.stop());
  stream = null;
  report.camera = "off";
  $("stop").disabled = true;
}

// ---------------------------------------------------------------------------------------
// A photo: the whole search of predict.py (find_and_predict), and its CSV row(s).

async function showPhoto(file) {
  stopCamera();
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);          // EXIF orientation applied, as predict.py does
  } catch {
    return say(`${file.name}: not a picture this browser can read`, true);
  }
  // Over settings.max_side the photo is read shrunk, as predict.py reads it (the browser's
  // smoothing, not OpenCV's area average); its CSV row is in the photo's own pixels.
  const { shrink, width, height } = fkd.shrunk_size(bitmap.width, bitmap.height, settings);
  canvas.width = width;
  canvas.height = height;
  context.fillStyle = "#fff";                        // transparent parts on white (input_data.to_gray8)
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.imageSmoothingQuality = "high";
  context.drawImage(bitmap, 0, 0, width, height);
  say(`${file.name}: looking for faces…`);
  const faces = await fkd.find_and_predict(grayOfCanvas(), model, detector, settings);
  draw(faces);
  rows = { name: file.name, rows: fkd.csv_rows(file.name, "", faces.map((f) => fkd.in_photo(f, shrink)), settings) };
  $("csv").disabled = false;
  say(`${file.name}: ${faces.length} face${faces.length === 1 ? "" : "s"}.`);
  publish(faces);
}

function downloadCsv() {
  const blob = new Blob([fkd.csv_text(rows.rows, settings)], { type: "text/csv" });
  const link = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob), download: `${rows.name}.csv` });
  link.click();
  URL.revokeObjectURL(link.href);
}

async function useModel(file) {
  try {
    model = await fkd.load_model(ort, new Uint8Array(await file.arrayBuffer()), file.name, settings);
  } catch (error) {
    return say(error.message, true);
  }
  if (tracker) tracker.model = model;
  $("model-name").textContent = file.name;
  say(`Using ${file.name}.`);
}

function dropped(event) {
  event.preventDefault();
  $("drop").classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) (file.name.toLowerCase().endsWith(".onnx") ? useModel(file) : showPhoto(file));
}

// ---------------------------------------------------------------------------------------

// {cv} once OpenCV.js is ready. (cv is a thenable that resolves to itself: awaiting it, or
// returning it from an async function, never ends; the tab runs out of memory.)
async function opencv() {
  while (!window.cv?.Mat) await new Promise((resolve) => setTimeout(resolve, 30));
  return { cv: window.cv };
}

async function start() {
  const loaded = performance.now();
  const get = async (name, kind) => {
    const response = await fetch(name);
    if (!response.ok) throw new Error(`${name}: ${response.status} ${response.statusText}`);
    return response[kind]();
  };
  settings = await get("settings.json", "json");
  const files = Object.fromEntries(await Promise.all(settings.cascade_files.map(async (n) => [n, await get(`cascades/${n}`, "text")])));
  model = await fkd.load_model(ort, new Uint8Array(await get("model.onnx", "arrayBuffer")), "model.onnx", settings);
  const { cv } = await opencv(), blazeface = {};
  for (const [name, spec] of Object.entries(settings.blazeface.models)) {
    blazeface[name] = await make_blazeface(ort, cv, new Uint8Array(await get(spec.file, "arrayBuffer")), spec, settings);
  }
  detector = make_detector(cv, files, settings, blazeface);
  report.ready = true;
  report.load_ms = performance.now() - loaded;
  document.body.dataset.ready = "true";
  for (const id of ["camera", "photo"]) $(id).disabled = false;
  say("Ready: start the camera, or choose or drop a photo.");
  $("camera").onclick = startCamera;
  $("stop").onclick = stopCamera;
  $("csv").onclick = downloadCsv;
  $("photo").onchange = (e) => e.target.files[0] && showPhoto(e.target.files[0]);
  $("drop").ondragover = (e) => { e.preventDefault(); $("drop").classList.add("over"); };
  $("drop").ondragleave = () => $("drop").classList.remove("over");
  $("drop").ondrop = dropped;
  if (new URLSearchParams(location.search).has("camera")) startCamera();
}

start().catch((error) => say(`The page could not start: ${error.message}`, true));
