// Shared by the node tests: the built page's settings and model (FKD_BUILD, default web/build,
// from web/build.py) and Python's answers (FKD_FIXTURES, default web/build/fixtures, from
// web/fixtures.py). A test whose files are missing is skipped with the command that makes them.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const WEB = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const BUILD = process.env.FKD_BUILD || path.join(WEB, "build");
export const FIXTURES = process.env.FKD_FIXTURES || path.join(BUILD, "fixtures");

export function missing() {
  if (!fs.existsSync(path.join(BUILD, "settings.json"))) return `no ${BUILD}/settings.json: run python web/build.py`;
  if (!fs.existsSync(path.join(FIXTURES, "fixtures.json"))) return `no ${FIXTURES}/fixtures.json: run python web/fixtures.py ${FIXTURES}`;
  return false;
}

export const settings = () => JSON.parse(fs.readFileSync(path.join(BUILD, "settings.json"), "utf8"));
export const fixtures = () => JSON.parse(fs.readFileSync(path.join(FIXTURES, "fixtures.json"), "utf8"));

export function gray(entry) {            // {file, width, height} -> a gray image
  return { data: new Uint8Array(fs.readFileSync(path.join(FIXTURES, entry.file))), width: entry.width, height: entry.height };
}

export async function ort() {
  const module = await import("onnxruntime-web");
  module.env.wasm.numThreads = 1;        // as on the page: no threads, no special headers
  return module;
}

export const modelBytes = () => new Uint8Array(fs.readFileSync(path.join(BUILD, "model.onnx")));

// OpenCV.js in node: {cv}, the module object once its wasm is ready. (The module is a thenable
// that resolves to itself: awaiting it, or returning it from an async function, never ends.)
export async function opencv() {
  const cv = (await import("@techstark/opencv-js")).default;
  for (let waited = 0; !cv.Mat; waited += 50) {
    if (waited > 120000) throw new Error("OpenCV.js did not start in 2 minutes");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { cv };
}

export function cascadeFiles(s) {
  return Object.fromEntries(s.cascade_files.map((name) => [name, fs.readFileSync(path.join(BUILD, "cascades", name), "utf8")]));
}

// predict.py's CSV (no quoting in it: plain names and numbers) -> [{column: text}]
export function readCsv(file) {
  const [head, ...rows] = fs.readFileSync(file, "utf8").trim().split(/\r?\n/);
  const columns = head.split(",");
  return rows.map((line) => Object.fromEntries(line.split(",").map((v, i) => [columns[i], v])));
}

// BlazeFace's two models ({short, full}, blazeface.js) from the build folder.
export async function blazeface(ortModule, cv, s) {
  const { make_blazeface } = await import("../blazeface.js");
  const out = {};
  for (const [name, spec] of Object.entries(s.blazeface.models)) {
    out[name] = await make_blazeface(ortModule, cv, new Uint8Array(fs.readFileSync(path.join(BUILD, spec.file))), spec, s);
  }
  return out;
}

// predict.py's detector: BlazeFace, else the cascades.
export async function detector(ortModule, s) {
  const { make_detector } = await import("../detect_cascade.js");
  const { cv } = await opencv();
  return make_detector(cv, cascadeFiles(s), s, await blazeface(ortModule, cv, s));
}
