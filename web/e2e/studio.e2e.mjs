// End-to-end test of the web studio in real Chromium: starts `doppel serve` on a temporary
// data folder with the tiny built-in model, then walks the whole flow as a person would —
// set up, sign in, add a person, upload photos (one rejected for a stated reason), train,
// shoot two styles, watch the gallery fill in, download a portrait and its shoot, check the
// PNG's metadata, a second account that sees nothing of the first, Chinese UI, a phone-sized
// screen, and deleting the person. Screenshots of every screen go to $DOPPEL_E2E_ARTIFACTS.
//
// Environment: DOPPEL_BINARY (the doppel executable), DOPPEL_WEB_DIST (web/dist),
// DOPPEL_SHARED_DIR (default ../shared), DOPPEL_CHROMIUM (default /usr/bin/chromium).
// Exit code 77 (CTest "skipped") when Chromium, the build or the photos are missing.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const binary = process.env.DOPPEL_BINARY ?? path.join(repo, "build/src/app/doppel");
const webDist = process.env.DOPPEL_WEB_DIST ?? path.join(repo, "web/dist");
const shared = process.env.DOPPEL_SHARED_DIR ?? path.resolve(repo, "../shared");
const faces = path.join(shared, "testdata/faces");
const browserPath = process.env.DOPPEL_CHROMIUM ?? "/usr/bin/chromium";
const artifacts = process.env.DOPPEL_E2E_ARTIFACTS ?? path.join(repo, "build/e2e-artifacts");

function skip(reason) {
  console.log(`skipped: ${reason}`);
  process.exit(77);
}
if (!fs.existsSync(browserPath))
  skip(`no Chromium at ${browserPath} (scripts/install.sh installs it)`);
if (!fs.existsSync(binary)) skip(`no doppel binary at ${binary}`);
if (!fs.existsSync(path.join(webDist, "index.html")))
  skip(`the web studio is not built (${webDist})`);
if (!fs.existsSync(faces)) skip(`no test photos at ${faces}`);

fs.mkdirSync(artifacts, { recursive: true });
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "doppel-e2e-"));
const timeline = [];
const started = Date.now();
function step(name) {
  timeline.push(`${((Date.now() - started) / 1000).toFixed(1)} s  ${name}`);
  console.log(`· ${name}`);
}

// Starts doppel serve on a free port; resolves with its address and set-up link.
function startServer() {
  return new Promise((resolve, reject) => {
    const server = spawn(
      binary,
      ["serve", "--data", dataDir, "--port", "0", "--workers", "1", "--web", webDist],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env } },
    );
    let output = "";
    const timer = setTimeout(
      () => reject(new Error(`doppel serve did not start:\n${output}`)),
      60000,
    );
    const look = (chunk) => {
      output += chunk;
      const setup = /(http:\/\/127\.0\.0\.1:\d+\/setup\?token=[0-9a-f]{64})/.exec(output);
      const serving = /serving on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (setup && serving) {
        clearTimeout(timer);
        resolve({ server, base: serving[1], setupUrl: setup[1], log: () => output });
      }
    };
    server.stdout.on("data", look);
    server.stderr.on("data", look);
    server.on("exit", (code) => reject(new Error(`doppel serve exited (${code}):\n${output}`)));
  });
}

// The text chunks of a PNG (tEXt and uncompressed iTXt), by keyword.
function pngText(bytes) {
  assert.deepEqual([...bytes.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10], "a PNG signature");
  const texts = {};
  let offset = 8;
  while (offset + 8 <= bytes.length) {
    const length = bytes.readUInt32BE(offset);
    const type = bytes.toString("latin1", offset + 4, offset + 8);
    const data = bytes.subarray(offset + 8, offset + 8 + length);
    const zero = data.indexOf(0);
    if (type === "tEXt")
      texts[data.toString("latin1", 0, zero)] = data.toString("latin1", zero + 1);
    if (type === "iTXt" && data[zero + 1] === 0) {
      let at = zero + 3;
      at = data.indexOf(0, at) + 1; // language tag
      at = data.indexOf(0, at) + 1; // translated keyword
      texts[data.toString("latin1", 0, zero)] = data.toString("utf8", at);
    }
    offset += 12 + length;
  }
  return texts;
}

// File names in a zip's central directory.
function zipEntries(bytes) {
  const end = bytes.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  assert.ok(end >= 0, "a zip end-of-central-directory record");
  const count = bytes.readUInt16LE(end + 10);
  let offset = bytes.readUInt32LE(end + 16);
  const names = [];
  for (let i = 0; i < count; i++) {
    assert.equal(bytes.readUInt32LE(offset), 0x02014b50, "a central directory header");
    const nameLength = bytes.readUInt16LE(offset + 28);
    const extra = bytes.readUInt16LE(offset + 30);
    const comment = bytes.readUInt16LE(offset + 32);
    names.push(bytes.toString("utf8", offset + 46, offset + 46 + nameLength));
    offset += 46 + nameLength + extra + comment;
  }
  return names;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
}

const photo = (name) => path.join(faces, name);
const firstPhotos = [
  "angelina_jolie__deepface_img1.jpg",
  "angelina_jolie__deepface_img10.jpg",
  "angelina_jolie__deepface_img11.jpg",
];
const morePhotos = [
  "angelina_jolie__deepface_img2.jpg",
  "angelina_jolie__deepface_img4.jpg",
  "angelina_jolie__deepface_img5.jpg",
  "multi__deepface_couple.jpg", // two people: rejected, and the page says why
];

const { server, base, setupUrl, log } = await startServer();
const browser = await chromium.launch({
  executablePath: browserPath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
let failed = false;
try {
  const context = await browser.newContext({
    locale: "en-GB",
    viewport: { width: 1280, height: 900 },
    acceptDownloads: true,
  });
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  page.setDefaultTimeout(20000);

  step("set up the first account with the one-time link");
  await page.goto(setupUrl);
  await page.getByRole("heading", { name: "Welcome to doppel" }).waitFor();
  await shot(page, "01-setup");
  await page.getByLabel("Email").fill("ada@example.com");
  await page.getByLabel("Your name").fill("Ada");
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByRole("heading", { name: "People" }).waitFor();

  step("sign out, and a wrong password is refused in words");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await page.getByLabel("Email").fill("ada@example.com");
  await page.getByLabel("Password").fill("wrong password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator(".form-error").filter({ hasText: /./ }).waitFor();
  await shot(page, "02-sign-in-error");
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("No one here yet").waitFor();
  await shot(page, "03-subjects-empty");

  step("add a person with the keyboard only");
  await page.getByLabel("Name of the person").focus();
  await page.keyboard.type("Angelina");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Angelina" }).waitFor();
  const subjectUrl = page.url();
  const subjectId = subjectUrl.split("/").pop();

  step("upload photos by keyboard (file chooser) and by drag and drop");
  await page.getByText("Add 5 more good photos").waitFor();
  const chooser = page.waitForEvent("filechooser");
  await page.locator("#photo-input").focus();
  await page.keyboard.press("Space");
  await (await chooser).setFiles(firstPhotos.map(photo));
  await page
    .locator(".photo-tile")
    .nth(firstPhotos.length - 1)
    .waitFor();
  await page.getByText("Add 2 more good photos").waitFor({ timeout: 60000 });
  // A drop of real files, as the browser delivers them from the desktop.
  const files = morePhotos.map((name) => ({
    name,
    data: fs.readFileSync(photo(name)).toString("base64"),
  }));
  const transfer = await page.evaluateHandle((list) => {
    const data = new DataTransfer();
    for (const { name, data: base64 } of list) {
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      data.items.add(new File([bytes], name, { type: "image/jpeg" }));
    }
    return data;
  }, files);
  await page.locator(".drop-zone").dispatchEvent("dragover", { dataTransfer: transfer });
  await page.locator(".drop-zone").dispatchEvent("drop", { dataTransfer: transfer });
  await page
    .locator(".photo-tile")
    .nth(firstPhotos.length + morePhotos.length - 1)
    .waitFor({ timeout: 60000 });
  const rejected = page.locator(".photo-tile.verdict-rejected");
  await rejected.first().waitFor();
  assert.equal(await rejected.count(), 1, "only the couple photo is rejected");
  assert.match(await rejected.locator(".verdict").innerText(), /two or more faces/);
  assert.equal(await page.locator(".photo-tile.verdict-accepted").count(), 6);
  await page.getByText(/Ready to train with 6 photos/).waitFor();
  await shot(page, "04-subject-photos");

  step("train the double, with live progress, and see the validation likeness");
  await page.getByRole("button", { name: "Train my double" }).click();
  await page.locator(".train-panel [role=progressbar]").waitFor();
  await shot(page, "05-training");
  await page.getByText("Double trained.").first().waitFor({ timeout: 240000 });
  await page.locator(".validation").waitFor();
  assert.match(
    await page.locator(".validation").innerText(),
    /Likeness in test portraits: \d+\/100|could not be measured/,
  );
  await shot(page, "06-trained");

  step("pick two styles and shoot one portrait of each");
  await page.getByRole("link", { name: "Shoot portraits" }).click();
  await page.locator(".style-card").first().waitFor();
  assert.ok((await page.locator(".style-card").count()) >= 10, "every style pack is offered");
  await page.locator('.style-card[data-style-id="id_photo_white"]').click();
  await page.locator('.style-card[data-style-id="anime"]').press("Enter"); // keyboard works too
  assert.equal(await page.locator('.style-card[aria-pressed="true"]').count(), 2);
  await page.getByLabel("Portraits per style").selectOption("1");
  await shot(page, "07-style-picker");
  await page.getByRole("button", { name: "Shoot 2 portraits" }).click();

  step("the gallery fills in with progress");
  await page.getByRole("heading", { name: "Gallery of Angelina" }).waitFor();
  await page.locator(".shoot-progress [role=progressbar]").waitFor();
  await shot(page, "08-gallery-shooting");
  await page.getByText("All 2 portraits done").waitFor({ timeout: 240000 });
  await page.locator(".image-card").nth(1).waitFor();
  assert.equal(await page.locator(".image-card").count(), 2);
  assert.equal(await page.locator(".image-card .likeness-badge").count(), 2);
  await shot(page, "09-gallery");

  step("full-size view with the recipe; favourite; download the PNG and check its metadata");
  await page.locator(".image-open").first().click();
  const viewer = page.locator("dialog.viewer");
  await viewer.waitFor();
  await viewer.getByText("Prompt", { exact: true }).waitFor();
  await shot(page, "10-full-size");
  const download = page.waitForEvent("download");
  await viewer.getByRole("link", { name: "Download" }).click();
  const pngFile = path.join(artifacts, "downloaded.png");
  await (await download).saveAs(pngFile);
  const parameters = pngText(fs.readFileSync(pngFile)).parameters;
  assert.ok(parameters, "the PNG carries A1111 'parameters'");
  assert.match(
    parameters,
    /Steps: \d+, Sampler: [^,]+, CFG scale: [\d.]+, Seed: \d+, Size: \d+x\d+/,
  );
  await viewer.getByRole("button", { name: "Favourite" }).click();
  await viewer.getByRole("button", { name: "Remove from favourites" }).waitFor();
  await page.keyboard.press("Escape");
  await viewer.waitFor({ state: "detached" });
  assert.equal(await page.locator('.image-card .favourite[aria-pressed="true"]').count(), 1);

  step("download the whole shoot as a zip");
  const zipDownload = page.waitForEvent("download");
  await page.getByRole("link", { name: "Download all (zip)" }).first().click();
  const zipFile = path.join(artifacts, "shoot.zip");
  await (await zipDownload).saveAs(zipFile);
  const entries = zipEntries(fs.readFileSync(zipFile));
  assert.equal(entries.length, 2, `two portraits in the zip: ${entries}`);
  assert.ok(entries.every((name) => name.endsWith(".png")));

  step("settings: models, storage, privacy");
  await page.getByRole("link", { name: "Settings" }).click();
  await page.locator(".model-list .model").first().waitFor();
  assert.match(await page.locator(".model-list").innerText(), /doppel-tiny-demo[\s\S]*Default/);
  await page
    .getByLabel("Path to a model on this computer")
    .fill(path.join(dataDir, "missing.safetensors"));
  await page.getByRole("button", { name: "Add model" }).click();
  await page.locator(".card .form-error").filter({ hasText: /./ }).waitFor();
  await page.locator("table.storage").waitFor();
  assert.match(await page.locator("table.storage").innerText(), /Photos\s+7 files/);
  await shot(page, "11-settings");

  step("a second account sees none of the first's people");
  const second = await page.evaluate(async () => {
    const csrf = document.cookie.match(/doppel_csrf=([^;]+)/)[1];
    const response = await fetch("/api/accounts", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ email: "bea@example.com", password: "another good password" }),
    });
    return response.status;
  });
  assert.equal(second, 201);
  const other = await browser.newContext({
    locale: "zh-CN",
    viewport: { width: 1280, height: 900 },
  });
  const otherPage = await other.newPage();
  await otherPage.goto(`${base}/`);
  await otherPage.getByRole("heading", { name: "登录" }).waitFor(); // the browser asks for Chinese
  await otherPage.getByLabel("邮箱").fill("bea@example.com");
  await otherPage.getByLabel("密码").fill("another good password");
  await otherPage.getByRole("button", { name: "登录" }).click();
  await otherPage.getByText("这里还没有人物").waitFor();
  assert.equal(await otherPage.locator(".subject-card").count(), 0);
  await shot(otherPage, "12-second-account-zh");
  await otherPage.getByLabel("人物名字").fill("小明");
  await otherPage.getByRole("button", { name: "添加人物" }).click();
  await otherPage.getByText("再添加 5 张合格照片即可开始训练").waitFor();
  await shot(otherPage, "13-second-account-subject-zh");
  await otherPage.goto(subjectUrl);
  await otherPage.locator(".error-box").waitFor();
  assert.equal(
    await otherPage.getByText("Angelina").count(),
    0,
    "the first account's person stays hidden",
  );
  await other.close();

  step("a phone-sized screen");
  const phone = await browser.newContext({
    locale: "en-GB",
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    storageState: await context.storageState(),
  });
  const phonePage = await phone.newPage();
  await phonePage.goto(`${base}/subjects/${subjectId}/gallery`);
  await phonePage.locator(".image-card").nth(1).waitFor();
  const overflow = await phonePage.evaluate(
    () => document.documentElement.scrollWidth - window.innerWidth,
  );
  assert.ok(overflow <= 0, `nothing wider than the phone's screen (overflow ${overflow}px)`);
  await shot(phonePage, "14-phone-gallery");
  await phonePage.goto(subjectUrl);
  await phonePage.locator(".photo-tile").first().waitFor();
  await shot(phonePage, "15-phone-subject");
  await phone.close();

  step("delete the person and everything made from them");
  await page.getByRole("button", { name: "Delete Angelina and everything made from it" }).click();
  const confirm = page.locator("dialog.confirm-dialog");
  await confirm.waitFor();
  await shot(page, "16-delete-confirm");
  await confirm
    .getByRole("button", { name: "Delete Angelina and everything made from it" })
    .click();
  await page.getByText("No people to delete.").waitFor();
  await page.getByRole("link", { name: "People" }).click();
  await page.getByText("No one here yet").waitFor();
  const storage = await page.evaluate(async () => (await fetch("/api/account/storage")).json());
  assert.equal(storage.photos.count, 0);
  assert.equal(storage.images.count, 0);
  await shot(page, "17-subject-deleted");

  assert.deepEqual(pageErrors, [], "no script errors on any page");
  step("done");
} catch (error) {
  failed = true;
  console.error(error);
  console.error(`--- doppel serve output ---\n${log()}`);
} finally {
  await browser.close();
  server.kill("SIGTERM");
  fs.writeFileSync(path.join(artifacts, "timeline.txt"), timeline.join("\n") + "\n");
  fs.rmSync(dataDir, { recursive: true, force: true });
}
console.log(`screenshots in ${artifacts}`);
process.exit(failed ? 1 : 0);
