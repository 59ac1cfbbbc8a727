// The browser test: serves the repository on 127.0.0.1, opens the page in Debian's headless
// chromium with WebGPU enabled, lets it train the MNIST MLP for one epoch, and checks that
// the first 20 losses are the native CPU backend's (written by the `reference` binary) and
// that test accuracy is at least 85%. Saves a screenshot and the figures under target/.
//
//   node web/test/run.mjs REFERENCE.json [--model mlp|cnn] [--timeout SECONDS]

import { createServer } from "node:http";
import { readFile, writeFile, mkdir, stat } from "node:fs/promises";
import { extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";

const root = resolve(fileURLToPath(import.meta.url), "../../..");
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const referencePath = args[0];
const model = option("--model", "mlp");
const timeout = Number(option("--timeout", "900")) * 1000;
const chromium = process.env.CHROMIUM || "/usr/bin/chromium";
const out = join(root, "target", "web");
// Relative tolerance of a loss against the CPU backend's (f32 on different hardware).
const TOLERANCE = 1e-3;

const types = {
  ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript",
  ".wasm": "application/wasm", ".gz": "application/octet-stream", ".json": "application/json",
};

function fail(message) {
  console.error(`browser test FAILED: ${message}`);
  process.exit(1);
}

const server = createServer(async (req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname));
  const file = join(root, path);
  if (!file.startsWith(root)) { res.writeHead(403).end(); return; }
  try {
    const body = await readFile(file);
    res.writeHead(200, { "content-type": types[extname(file)] || "application/octet-stream" });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const url = `http://127.0.0.1:${server.address().port}/web/index.html?autostart=1&model=${model}&epochs=1&seed=0`;

await stat(chromium).catch(() => fail(`no chromium at ${chromium} (set CHROMIUM)`));
const reference = JSON.parse(await readFile(referencePath, "utf8"));
await mkdir(out, { recursive: true });

const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: ["--no-sandbox", "--enable-unsafe-webgpu", "--disable-dev-shm-usage"],
});
let result;
const started = Date.now();
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 820, height: 620 });
  page.on("console", (m) => console.log(`[page] ${m.text()}`));
  let pageError = null;
  page.on("pageerror", (e) => { console.log(`[page error] ${e.message}`); pageError ??= e.message; });
  await page.goto(url);
  console.log(`opened ${url}`);
  // Progress at most every 15 s while the page trains.
  let last = "";
  let lastShown = 0;
  const deadline = Date.now() + timeout;
  for (;;) {
    const state = await page.evaluate(() => ({
      result: window.wgradResult ?? null,
      error: window.wgradError ?? null,
      status: document.getElementById("status")?.textContent,
      loss: document.getElementById("loss")?.textContent,
    }));
    if (state.error) fail(`the page reported: ${state.error}`);
    if (pageError) fail(`the page stopped with an error: ${pageError}`);
    if (state.result) { result = state.result; break; }
    const line = `${state.status} ${state.loss}`;
    if (line !== last && Date.now() - lastShown > 15000) { lastShown = Date.now(); console.log(`${((Date.now() - started) / 1000).toFixed(0)} s: ${line}`); last = line; }
    if (Date.now() > deadline) fail(`no result within ${timeout / 1000} s (last: ${line})`);
    await new Promise((ok) => setTimeout(ok, 2000));
  }
  result.adapterInfo = await page.$eval("#adapter", (e) => e.textContent);
  await page.screenshot({ path: join(out, "screenshot.png") });
} finally {
  await browser.close();
  server.close();
}

const losses = result.losses;
const rows = reference.losses.map((want, i) => {
  const got = losses[i];
  const rel = Math.abs(got - want) / Math.max(Math.abs(want), 1e-6);
  return { step: i + 1, browser: got, cpu: want, rel };
});
console.log("step  browser     cpu backend  relative difference");
for (const r of rows) {
  console.log(`${String(r.step).padStart(4)}  ${r.browser.toFixed(6)}  ${r.cpu.toFixed(6)}   ${r.rel.toExponential(2)}`);
}
const report = { adapter: `${result.adapterInfo} ${result.adapter}`, model, accuracy: result.accuracy,
  secondsPerEpoch: result.secondsPerEpoch, steps: result.steps, rows };
await writeFile(join(out, "result.json"), JSON.stringify(report, null, 2));
console.log(`adapter: ${result.adapterInfo} ${result.adapter}`);
console.log(`test accuracy after one epoch: ${(result.accuracy * 100).toFixed(2)}%, ${result.secondsPerEpoch.toFixed(1)} s per epoch`);
console.log(`screenshot: ${join(out, "screenshot.png")}`);

if (losses.length < reference.losses.length) fail(`the page gave ${losses.length} losses, the reference ${reference.losses.length}`);
const worst = rows.reduce((a, r) => (r.rel > a.rel ? r : a));
if (!(worst.rel <= TOLERANCE)) fail(`step ${worst.step}: loss ${worst.browser} in the browser, ${worst.cpu} on the CPU backend`);
if (!(result.accuracy >= 0.85)) fail(`test accuracy ${result.accuracy} < 0.85 after one epoch`);
console.log("browser test passed");
