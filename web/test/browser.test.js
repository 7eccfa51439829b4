// The built page in a real headless Chromium (puppeteer-core; CHROMIUM, default /usr/bin/chromium):
// a fake camera plays camera.y4m (web/fixtures.py: a face photo in a 640x480 frame), and the
// keypoints the page reports (window.fkd) must land on predict.py's for that frame; a chosen
// photo gives predict.py's CSV within 1 px; a refused camera is said so. Writes page.png and
// measurements.json (frames/s, time to first keypoints, bytes downloaded) to FKD_ARTEFACTS
// (default web/build/artefacts).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import * as h from "./helpers.js";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARTEFACTS = process.env.FKD_ARTEFACTS || path.join(h.BUILD, "artefacts");
const MEASURE_S = Number(process.env.FKD_MEASURE_S || 5);      // seconds of camera frames counted
const skip = h.missing() || (!fs.existsSync(CHROMIUM) && `no Chromium at ${CHROMIUM} (set CHROMIUM)`);

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
                ".json": "application/json", ".onnx": "application/octet-stream", ".xml": "text/xml" };

// A plain static server of the build folder (no special headers, as GitHub Pages).
function serve(root) {
  const server = http.createServer((request, response) => {
    const name = decodeURIComponent(new URL(request.url, "http://x").pathname);
    const file = path.join(root, name === "/" ? "index.html" : name);
    if (!file.startsWith(root) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "Content-Type": TYPES[path.extname(file)] || "application/octet-stream" });
    fs.createReadStream(file).pipe(response);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

let server, browser, url;

before(async () => {
  if (skip) return;
  server = await serve(path.resolve(h.BUILD));
  url = `http://127.0.0.1:${server.address().port}/`;
  const puppeteer = (await import("puppeteer-core")).default;
  browser = await puppeteer.launch({
    executablePath: CHROMIUM, headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
           `--use-file-for-fake-video-capture=${path.resolve(h.FIXTURES, h.fixtures().camera.file)}`],
  });
  fs.mkdirSync(ARTEFACTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  server?.close();
});

async function open(page, query = "") {
  let bytes = 0;
  const cdp = await page.createCDPSession();
  await cdp.send("Network.enable");
  cdp.on("Network.loadingFinished", (event) => { bytes += event.encodedDataLength; });
  page.on("pageerror", (error) => console.error("page:", error.message));
  await page.goto(url + query);
  await page.waitForFunction(() => window.fkd?.ready || window.fkd?.error, { timeout: 120000 });
  assert.equal(await page.evaluate(() => window.fkd.error), null);
  return () => bytes;
}

const distance = (a, b) => Math.hypot(a[0] - b[0], a[1] - b[1]);

test("the camera's keypoints land on the face, live", { skip, timeout: 300000 }, async () => {
  const page = await browser.newPage();
  await page.setViewport({ width: 1000, height: 900 });
  const bytes = await open(page, "?camera");
  await page.waitForFunction(() => window.fkd.faces.length > 0, { timeout: 120000 });
  const first = await page.evaluate(() => ({ first: window.fkd.first_keypoints_ms, frames: window.fkd.frames, t: performance.now() }));
  await new Promise((resolve) => setTimeout(resolve, MEASURE_S * 1000));
  const last = await page.evaluate(() => ({ frames: window.fkd.frames, t: performance.now(), faces: window.fkd.faces }));
  const expected = h.fixtures().camera.faces;
  assert.equal(last.faces.length, expected.length, "faces in the camera's frame");
  last.faces.forEach((face, i) => {
    const worst = Math.max(...face.keypoints.map((p, j) => distance(p, expected[i].keypoints[j])));
    assert.ok(worst < 0.05 * expected[i].side, `face ${i}: a keypoint ${worst.toFixed(1)} px from predict.py's (face ${expected[i].side.toFixed(0)} px)`);
  });
  assert.ok(await page.evaluate(() => JSON.parse(document.body.dataset.faces).length > 0));
  await page.screenshot({ path: path.join(ARTEFACTS, "page.png") });
  const measured = {
    fps: (last.frames - first.frames) / ((last.t - first.t) / 1000),
    first_keypoints_s: first.first / 1000,
    bytes_downloaded: bytes(),
    frame: [h.fixtures().camera.width, h.fixtures().camera.height],
  };
  fs.writeFileSync(path.join(ARTEFACTS, "measurements.json"), JSON.stringify(measured, null, 1));
  console.log("measured:", JSON.stringify(measured));
  await page.close();
});

// The two demo photos: a PNG, and a JPEG (decoded by the browser, not by Pillow).
for (const name of ["astronaut.png", "grace_hopper.jpg"]) {
  test(`a chosen photo (${name}) gives predict.py's CSV row within 1 px`, { skip, timeout: 300000 }, async () => {
    const page = await browser.newPage();
    await open(page);
    await (await page.$("#photo")).uploadFile(path.join(h.FIXTURES, "photos", name));
    await page.waitForFunction(() => !document.getElementById("csv").disabled, { timeout: 120000 });
    const faces = await page.evaluate(() => window.fkd.faces);
    const expected = h.readCsv(path.join(h.FIXTURES, "prediction.csv")).filter((r) => path.basename(r.file) === name);
    const s = h.settings();
    assert.equal(faces.length, expected.length);
    let worst = 0;
    faces.forEach((face, i) => face.keypoints.forEach(([x, y], j) => {
      const d = Math.max(Math.abs(x - Number(expected[i][s.columns[2 * j]])), Math.abs(y - Number(expected[i][s.columns[2 * j + 1]])));
      assert.ok(d <= 1, `${name} keypoint ${j}: (${x}, ${y}) against the CSV's`);
      worst = Math.max(worst, d);
    }));
    console.log(`${name} in Chromium: keypoints at most ${worst.toFixed(2)} px from predict.py's CSV`);
    await page.close();
  });
}

test("a refused camera is said so", { skip, timeout: 300000 }, async () => {
  // A browser of its own that answers every permission prompt "no".
  const puppeteer = (await import("puppeteer-core")).default;
  const refusing = await puppeteer.launch({ executablePath: CHROMIUM, headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--deny-permission-prompts", "--use-fake-device-for-media-stream"] });
  try {
    const page = await refusing.newPage();
    await open(page, "?camera");
    await page.waitForFunction(() => window.fkd.camera !== "off", { timeout: 60000 });
    assert.equal(await page.evaluate(() => window.fkd.camera), "refused");
    assert.match(await page.$eval("#status", (e) => e.textContent), /refused/);
  } finally {
    await refusing.close();
  }
});
