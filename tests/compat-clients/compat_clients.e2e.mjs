// End-to-end test of the compatible APIs with real, unmodified clients from the npm registry:
// OpenAI's official Node client ("openai") and a widely used AUTOMATIC1111 client
// ("stable-diffusion-api"), against `doppel serve --compat-api` on a temporary data folder with
// the tiny built-in model. Each client's txt2img / img2img / options / models / progress calls
// (and OpenAI's generations, edits, variations, models) must work unchanged.
//
// Environment: DOPPEL_BINARY (the doppel executable). Exit code 77 (CTest "skipped") when the
// binary or the clients (npm ci in this folder; scripts/install.sh does it) are missing.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const binary = process.env.DOPPEL_BINARY ?? path.join(repo, "build/src/app/doppel");

function skip(reason) {
  console.log(`skipped: ${reason}`);
  process.exit(77);
}
if (!fs.existsSync(binary)) skip(`no doppel binary at ${binary}`);
for (const name of ["openai", "stable-diffusion-api", "sharp"])
  if (!fs.existsSync(path.join(here, "node_modules", name)))
    skip(`the npm client '${name}' is not installed (npm ci --prefix tests/compat-clients)`);

const require = createRequire(import.meta.url);
const { default: OpenAI, toFile } = await import("openai");
const { StableDiffusionApi } = require("stable-diffusion-api");
const sharp = require("sharp");

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "doppel-compat-e2e-"));
let passed = 0;
async function check(name, body) {
  const started = Date.now();
  await body();
  passed += 1;
  console.log(`ok ${name} (${Date.now() - started} ms)`);
}

function startServer() {
  return new Promise((resolve, reject) => {
    const server = spawn(
      binary,
      ["serve", "--data", dataDir, "--port", "0", "--workers", "1", "--compat-api", "--no-face-check"],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, DOPPEL_WEB_DIR: "" } },
    );
    let output = "";
    const timer = setTimeout(() => reject(new Error(`doppel serve did not start:\n${output}`)), 60000);
    const look = (chunk) => {
      output += chunk;
      const setup = /token=([0-9a-f]{64})/.exec(output);
      const serving = /serving on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (setup && serving) {
        clearTimeout(timer);
        resolve({ server, port: Number(serving[1]), token: setup[1], log: () => output });
      }
    };
    server.stdout.on("data", look);
    server.stderr.on("data", look);
    server.on("exit", (code) => reject(new Error(`doppel serve exited (${code}):\n${output}`)));
  });
}

async function json(response) {
  const text = await response.text();
  assert.ok(response.ok, `${response.status}: ${text}`);
  return JSON.parse(text);
}

const { server, port, token, log } = await startServer();
try {
  const base = `http://127.0.0.1:${port}`;
  const email = "ada@example.com";
  const password = "correct horse battery";
  await json(
    await fetch(`${base}/api/setup`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Origin: base },
      body: JSON.stringify({ token, email, password }),
    }),
  );
  const session = await fetch(`${base}/api/sessions`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Origin: base },
    body: JSON.stringify({ email, password }),
  });
  const signedIn = await json(session);
  const cookie = session.headers.get("set-cookie").split(";")[0];
  const { token: apiKey } = await json(
    await fetch(`${base}/api/tokens`, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Origin: base,
        Cookie: cookie,
        "X-CSRF-Token": signedIn.csrf_token,
      },
      body: JSON.stringify({ name: "compat clients" }),
    }),
  );

  // --- AUTOMATIC1111 client (HTTP Basic with the account's e-mail and password) ---
  const a1111 = new StableDiffusionApi({ host: "127.0.0.1", port, timeout: 120000 });
  a1111.setAuth(email, password);
  let generated;
  await check("A1111 client: txt2img", async () => {
    const result = await a1111.txt2img({
      prompt: "a portrait of a woman, soft light",
      negative_prompt: "blurry",
      width: 64,
      height: 64,
      steps: 4,
      seed: 7,
      batch_size: 2,
      sampler_name: "DPM++ 2M Karras",
    });
    assert.equal(result.images.length, 2);
    const meta = await result.image.metadata();
    assert.equal(meta.width, 64);
    assert.equal(meta.format, "png");
    const info = JSON.parse(result.info);
    assert.deepEqual(info.all_seeds, [7, 8]);
    assert.match(info.infotexts[0], /Sampler: DPM\+\+ 2M Karras/);
    generated = await result.image.png().toBuffer();
  });
  await check("A1111 client: img2img with a mask", async () => {
    const mask = sharp({
      create: { width: 64, height: 64, channels: 3, background: { r: 0, g: 0, b: 0 } },
    }).composite([
      {
        input: { create: { width: 24, height: 64, channels: 3, background: { r: 255, g: 255, b: 255 } } },
        left: 0,
        top: 0,
      },
    ]);
    const result = await a1111.img2img({
      init_images: [sharp(generated)],
      mask_image: mask,
      prompt: "a portrait of a man",
      width: 64,
      height: 64,
      steps: 4,
      seed: 3,
      denoising_strength: 0.8,
      inpaint_full_res: false,
      sampler_name: "Euler a",
    });
    assert.equal(result.images.length, 1);
    assert.equal((await result.image.metadata()).width, 64);
    assert.match(JSON.parse(result.info).infotexts[0], /Denoising strength: 0\.8/);
  });
  await check("A1111 client: options", async () => {
    const options = await a1111.getOptions();
    assert.equal(options.sd_model_checkpoint, "doppel-tiny-demo");
    await a1111.setOptions({ CLIP_stop_at_last_layers: 2 });
    assert.equal((await a1111.getOptions()).CLIP_stop_at_last_layers, 2);
    assert.equal(await a1111.getCurrentModel(), "doppel-tiny-demo");
  });
  await check("A1111 client: models, samplers, upscalers, styles", async () => {
    const models = await a1111.getSdModels();
    assert.equal(models[0].title, "doppel-tiny-demo");
    const samplers = (await a1111.getSamplers()).map((sampler) => sampler.name);
    assert.ok(samplers.includes("Euler a") && samplers.includes("DPM++ 2M"), samplers.join());
    assert.ok((await a1111.getUpscalers()).some((upscaler) => upscaler.name === "Lanczos"));
    assert.ok(Array.isArray(await a1111.getPromptStyles()));
    await a1111.refreshCheckpoints();
    assert.ok(Array.isArray(await a1111.getFaceRestorers()));
  });
  await check("A1111 client: progress and png-info", async () => {
    const progress = await a1111.getProgress();
    assert.equal(progress.progress, 0);
    assert.equal(progress.state.job_count, 0);
    const info = await a1111.pngInfo(sharp(generated));
    assert.match(String(info.info), /Steps: 4/);
  });
  await check("A1111 client: ControlNet lists", async () => {
    assert.ok((await a1111.ControlNet.getModels()) !== undefined);
    const modules = await a1111.ControlNet.getModules();
    assert.ok(JSON.stringify(modules).includes("canny"));
  });
  await check("A1111 client: API token as the Basic password", async () => {
    const byToken = new StableDiffusionApi({ host: "127.0.0.1", port, timeout: 120000 });
    byToken.setAuth("anyone", apiKey);
    assert.equal((await byToken.getOptions()).sd_model_checkpoint, "doppel-tiny-demo");
    const wrong = new StableDiffusionApi({ host: "127.0.0.1", port, timeout: 120000 });
    wrong.setAuth(email, "not the password");
    await assert.rejects(wrong.getOptions(), (error) => error.response?.status === 401);
  });

  // --- OpenAI's official client (the API key is a doppel bearer token) ---
  const openai = new OpenAI({ apiKey, baseURL: `${base}/v1`, maxRetries: 0, timeout: 120000 });
  await check("OpenAI client: models", async () => {
    const models = [];
    for await (const model of openai.models.list()) models.push(model.id);
    assert.deepEqual(models, ["doppel-tiny-demo"]);
    assert.equal((await openai.models.retrieve("doppel-tiny-demo")).object, "model");
  });
  await check("OpenAI client: images.generate (b64_json and url)", async () => {
    const answer = await openai.images.generate({
      model: "dall-e-2",
      prompt: "a lighthouse at dusk",
      n: 2,
      size: "128x128",
      quality: "low",
      response_format: "b64_json",
      user: "e2e",
    });
    assert.equal(answer.data.length, 2);
    const meta = await sharp(Buffer.from(answer.data[0].b64_json, "base64")).metadata();
    assert.equal(meta.width, 128);
    const linked = await openai.images.generate({
      prompt: "a lighthouse at dusk",
      size: "64x64",
      response_format: "url",
    });
    const file = await fetch(linked.data[0].url);
    assert.equal(file.status, 200);
    assert.equal(file.headers.get("content-type"), "image/png");
  });
  await check("OpenAI client: images.edit and images.createVariation", async () => {
    // Opaque orange with a transparent left half: OpenAI's "edit here".
    const pixels = Buffer.alloc(64 * 64 * 4);
    for (let i = 0; i < 64 * 64; i++) pixels.set([200, 120, 40, i % 64 < 32 ? 0 : 255], i * 4);
    const transparent = await sharp(pixels, { raw: { width: 64, height: 64, channels: 4 } })
      .png()
      .toBuffer();
    const edited = await openai.images.edit({
      image: await toFile(transparent, "image.png", { type: "image/png" }),
      prompt: "a red door",
      n: 1,
      size: "64x64",
      response_format: "b64_json",
    });
    assert.equal((await sharp(Buffer.from(edited.data[0].b64_json, "base64")).metadata()).width, 64);
    const varied = await openai.images.createVariation({
      image: await toFile(generated, "image.png", { type: "image/png" }),
      n: 1,
      response_format: "b64_json",
    });
    assert.equal(varied.data.length, 1);
  });
  await check("OpenAI client: errors arrive as OpenAI errors", async () => {
    await assert.rejects(
      openai.images.generate({ prompt: "x", size: "huge" }),
      (error) => error.status === 400 && error.param === "size",
    );
    const stranger = new OpenAI({ apiKey: "sk-not-a-doppel-token", baseURL: `${base}/v1`, maxRetries: 0 });
    await assert.rejects(stranger.models.list(), (error) => error.status === 401);
  });
  console.log(`${passed} passed, 0 failed`);
} catch (error) {
  console.error(error);
  console.error(`--- doppel serve output ---\n${log()}`);
  console.log(`${passed} passed, 1 failed`);
  process.exitCode = 1;
} finally {
  server.kill("SIGTERM");
  fs.rmSync(dataDir, { recursive: true, force: true });
}
