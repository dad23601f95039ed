// Fails when a user-facing text is missing or untranslated: both tables (src/locales/) must
// have the same keys, every Chinese text must differ from the English one (except the few
// that are the same in both languages), and Chinese texts use Chinese punctuation
// (，：；？！（）) next to Chinese characters. Part of `npm run check` (CTest web_studio_check).

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const locale = (name) => fs.readFileSync(path.join(here, `../src/locales/${name}.ts`), "utf8");

// The entries `key: "text",` (the text may start on the next line) of one object literal.
function table(source, startMarker) {
  const start = source.indexOf(startMarker);
  if (start < 0) throw new Error(`no table starting with ${startMarker}`);
  const end = source.indexOf("\n};", start);
  const body = source.slice(source.indexOf("{", start) + 1, end);
  const entries = new Map();
  const entry = /^\s{2}(\w+):\s*("(?:[^"\\]|\\.)*")\s*,?$/gm;
  const flattened = body.replace(/:\n\s+"/g, ': "');
  for (const match of flattened.matchAll(entry)) entries.set(match[1], JSON.parse(match[2]));
  const keyLines = body.match(/^\s{2}\w+:/gm) ?? [];
  if (keyLines.length !== entries.size)
    throw new Error(`${startMarker}: ${keyLines.length} keys but ${entries.size} readable texts`);
  return entries;
}

const en = table(locale("en"), "export const en = {");
const zh = table(locale("zh"), "export const zh: Record<TextKey, string> = {");
// The same in both languages on purpose: the product's name, arrows, placeholders, a path.
const same = new Set(["appName", "backTo", "likenessBadge", "modelPathPlaceholder"]);
const problems = [];
for (const key of en.keys()) if (!zh.has(key)) problems.push(`${key}: no Chinese text`);
for (const key of zh.keys()) if (!en.has(key)) problems.push(`${key}: no English text`);
const ideograph = /[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]/;
for (const [key, text] of zh) {
  if (!text.trim()) problems.push(`${key}: empty Chinese text`);
  if (!same.has(key) && en.get(key) === text) problems.push(`${key}: not translated ("${text}")`);
  if (!same.has(key) && ideograph.test(en.get(key) ?? "") === false && !ideograph.test(text))
    problems.push(`${key}: the Chinese text has no Chinese in it ("${text}")`);
  const ascii = /[\u3400-\u9fff][,;:?!()]|[,;:?!()][\u3400-\u9fff]/.exec(text);
  if (ascii) problems.push(`${key}: ASCII punctuation in Chinese text ("${ascii[0]}")`);
}
for (const [key, text] of en) if (!text.trim()) problems.push(`${key}: empty English text`);
// Every {parameter} of a text is in both languages.
for (const [key, text] of en) {
  const names = (value) => [...(value ?? "").matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
  if (zh.has(key) && names(text).join() !== names(zh.get(key)).join())
    problems.push(`${key}: parameters differ (${names(text)} vs ${names(zh.get(key))})`);
}
if (problems.length) {
  console.error(`i18n: ${problems.length} problem(s) in src/locales/:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log(`i18n: ${en.size} texts, each in English and Chinese`);
