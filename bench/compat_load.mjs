// Load run of the A1111-compatible txt2img on the tiny built-in model: starts `doppel serve
// --compat-api` with a small queue limit, keeps CONCURRENCY clients posting txt2img for
// SECONDS, and prints one JSON line: throughput, latency percentiles of the answered
// requests, how many were refused with 503 + Retry-After, other errors, and the deepest queue
// seen (sampled from /sdapi/v1/progress). Not a test; run by hand:
//   node bench/compat_load.mjs [--seconds 20] [--concurrency 8] [--queue 4] [--workers 1]
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const binary = process.env.DOPPEL_BINARY ?? path.join(here, "../build/src/app/doppel");
const argument = (name, fallback) => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const seconds = argument("seconds", 20);
const concurrency = argument("concurrency", 8);
const queueLimit = argument("queue", 4);
const workers = argument("workers", 1);

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "doppel-compat-load-"));
const server = spawn(
  binary,
  ["serve", "--data", dataDir, "--port", "0", "--workers", String(workers), "--compat-api",
   "--no-face-check", "--max-queued-generations", String(queueLimit)],
  { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, DOPPEL_WEB_DIR: "" } },
);
const { port, token } = await new Promise((resolve, reject) => {
  let output = "";
  const look = (chunk) => {
    output += chunk;
    const setup = /token=([0-9a-f]{64})/.exec(output);
    const serving = /serving on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
    if (setup && serving) resolve({ port: Number(serving[1]), token: setup[1] });
  };
  server.stdout.on("data", look);
  server.stderr.on("data", look);
  server.on("exit", (code) => reject(new Error(`doppel serve exited (${code}):\n${output}`)));
});
const base = `http://127.0.0.1:${port}`;
const email = "load@example.com";
const password = "correct horse battery";
await fetch(`${base}/api/setup`, {
  method: "POST",
  headers: { "Content-Type": "application/json", Origin: base },
  body: JSON.stringify({ token, email, password }),
});
const session = await fetch(`${base}/api/sessions`, {
  method: "POST",
  headers: { "Content-Type": "application/json", Origin: base },
  body: JSON.stringify({ email, password }),
});
const { csrf_token } = await session.json();
const cookie = session.headers.get("set-cookie").split(";")[0];
const created = await fetch(`${base}/api/tokens`, {
  method: "POST",
  headers: { "Content-Type": "application/json", Origin: base, Cookie: cookie, "X-CSRF-Token": csrf_token },
  body: JSON.stringify({ name: "load" }),
});
const auth = { Authorization: `Bearer ${(await created.json()).token}` };

const body = JSON.stringify({
  prompt: "a portrait of a woman",
  steps: 4,
  width: 64,
  height: 64,
  seed: -1,
  sampler_name: "Euler a",
});
const latencies = [];
const statuses = {};
let deepest = 0;
const end = Date.now() + seconds * 1000;
async function client() {
  while (Date.now() < end) {
    const started = Date.now();
    const response = await fetch(`${base}/sdapi/v1/txt2img`, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...auth },
      body,
    });
    await response.arrayBuffer();
    statuses[response.status] = (statuses[response.status] ?? 0) + 1;
    if (response.status === 200) latencies.push(Date.now() - started);
    if (response.status === 503) {
      if (!response.headers.get("retry-after")) statuses.missing_retry_after = 1;
      await new Promise((resolve) => setTimeout(resolve, 200));  // a polite client backs off
    }
  }
}
const sampler = setInterval(async () => {
  const progress = await (await fetch(`${base}/sdapi/v1/progress`, { headers: auth })).json();
  deepest = Math.max(deepest, progress.state.job_count);
}, 100);
const started = Date.now();
await Promise.all(Array.from({ length: concurrency }, client));
const elapsed = (Date.now() - started) / 1000;
clearInterval(sampler);
server.kill("SIGTERM");
latencies.sort((a, b) => a - b);
const percentile = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? null;
const errors = Object.entries(statuses)
  .filter(([status]) => status !== "200" && status !== "503")
  .reduce((sum, [, count]) => sum + count, 0);
console.log(
  JSON.stringify({
    bench: "compat_txt2img_tiny",
    seconds: elapsed,
    concurrency,
    workers,
    queue_limit: queueLimit,
    images_per_second: latencies.length / elapsed,
    p50_ms: percentile(0.5),
    p99_ms: percentile(0.99),
    answered: latencies.length,
    refused_503: statuses["503"] ?? 0,
    errors,
    statuses,
    deepest_queue: deepest,
  }),
);
fs.rmSync(dataDir, { recursive: true, force: true });
