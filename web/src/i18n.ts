// UI text in English and Chinese: the language switch (remembered) or else the browser's
// preferred language picks; the texts are in src/locales/ (scripts/check-i18n.mjs checks them).

import { en, type TextKey } from "./locales/en";
import { zh } from "./locales/zh";

export type { TextKey };

export type Language = "en" | "zh";
export const languageStorageKey = "doppel.language";

// The language the person chose with the switch (remembered in this browser), else the
// browser's preferred one (zh* -> Chinese, else English).
function preferredLanguage(): Language {
  try {
    const chosen = localStorage.getItem(languageStorageKey);
    if (chosen === "en" || chosen === "zh") return chosen;
  } catch {
    /* storage blocked: follow the browser */
  }
  const languages = navigator.languages?.length ? navigator.languages : [navigator.language];
  for (const language of languages) {
    const code = (language || "").toLowerCase();
    if (code.startsWith("zh")) return "zh";
    if (code.startsWith("en")) return "en";
  }
  return "en";
}

export const language: Language = preferredLanguage();
const table: Record<TextKey, string> = language === "zh" ? zh : en;

// Remembers the choice and draws the page again in that language.
export function switchLanguage(): void {
  try {
    localStorage.setItem(languageStorageKey, language === "zh" ? "en" : "zh");
  } catch {
    /* nothing to remember it in: the page still changes */
  }
  location.reload();
}

// Dates and numbers follow the browser's locale when it is of the UI's language (en-GB writes
// 06/12/2026, en-US 12/6/2026), else the language's usual one.
const browserLocales = navigator.languages?.length ? navigator.languages : [navigator.language];
export const locale: string =
  browserLocales.find((each) => (each || "").toLowerCase().startsWith(language)) ??
  (language === "zh" ? "zh-CN" : "en-GB");

export function formatNumber(value: number, fractionDigits = 0): string {
  return new Intl.NumberFormat(locale, {
    minimumFractionDigits: fractionDigits,
    maximumFractionDigits: fractionDigits,
  }).format(value);
}

export function formatDate(millis: number): string {
  return new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" }).format(
    new Date(millis),
  );
}

const ideograph = "\\u3400-\\u9fff\\uf900-\\ufaff";
const latinAfterIdeograph = new RegExp(`([${ideograph}])([A-Za-z0-9])`, "g");
const ideographAfterLatin = new RegExp(`([A-Za-z0-9])([${ideograph}])`, "g");

// Chinese text gets a space between ideographs and Latin letters or digits ("删除 Angelina 及其"),
// whatever a parameter holds.
function spaced(text: string): string {
  return text.replace(latinAfterIdeograph, "$1 $2").replace(ideographAfterLatin, "$1 $2");
}

// t("uploading", {done: 1, total: 3}) -> "Uploading 1 of 3…"; numbers in the locale's digits.
export function t(key: TextKey, parameters: Record<string, string | number> = {}): string {
  const text = table[key].replace(/\{(\w+)\}/g, (whole, name: string) => {
    if (!(name in parameters)) return whole;
    const value = parameters[name];
    return typeof value === "number" ? formatNumber(value, Number.isInteger(value) ? 0 : 2) : value;
  });
  return language === "zh" ? spaced(text) : text;
}

// Whether the table has a text for this key (reason codes from a newer server may not).
export function hasText(key: string): key is TextKey {
  return key in table;
}

// The API's error codes in Chinese (the server's messages are English); English shows the
// server's message, which says what to do.
const chineseErrors: Record<string, string> = {
  unauthorized: "邮箱或密码不正确，或登录已过期。",
  too_many_requests: "尝试次数过多，请稍后再试。",
  not_found: "找不到这项内容，它可能已被删除。",
  too_large: "文件太大或照片太多，请分几次上传。",
  unsupported_media_type: "这不是图片文件。请使用 PNG、JPEG 或 WebP 照片。",
  invalid_file: "文件已损坏或不完整，无法读取。",
  invalid_argument: "请求的内容不正确，请检查后再试。",
  not_ready: "还不能开始：可用的照片不够。",
  csrf: "页面已过期，请刷新后再试。",
  conflict: "这项内容已经存在或正在使用中。",
  no_route: "找不到这个页面或接口。",
  internal: "写真馆内部出错了，请稍后再试。",
};

export function localizedError(code: string): string | null {
  return language === "zh" ? (chineseErrors[code] ?? null) : null;
}

// A photo-check reason code as a short title ("too blurry"); unknown codes fall back to the
// server's message.
export function reasonText(code: string, message: string): string {
  const key = `reason_${code}`;
  return hasText(key) ? t(key) : message;
}

// What is wrong and what to do, in the UI's language (the server's English for unknown codes).
export function reasonAdvice(code: string, message: string): string {
  const key = `advice_${code}`;
  return hasText(key) ? t(key) : message;
}

// The measurement behind a verdict ("sharpness 104, at least 200 needed") in the UI's
// language, from the reason's figures; the server's detail when there is no template.
export function reasonDetail(
  code: string,
  detail: string | undefined,
  figures: Record<string, number> | undefined,
): string {
  const key = `detail_${code}`;
  if (!hasText(key) || !figures || !Object.keys(figures).length) return detail ?? "";
  const shown: Record<string, string> = {};
  for (const [name, value] of Object.entries(figures))
    shown[name] = formatNumber(value, Number.isInteger(value) ? 0 : 2);
  return t(key, shown);
}

export function likenessLabelText(label: string | null): string {
  switch (label) {
    case "same person":
      return t("labelSame");
    case "likely the same person":
      return t("labelLikely");
    case "uncertain":
      return t("labelUncertain");
    case "different person":
      return t("labelDifferent");
    case "no face":
      return t("likenessUnknown");
    default:
      return t("likenessNotMeasured");
  }
}

// A style pack's name or description in the UI language.
export function localized(english: string, chinese: string | undefined): string {
  return language === "zh" && chinese ? chinese : english;
}

export function formatDuration(seconds: number): string {
  const s = Math.max(1, Math.round(seconds));
  const unit = (value: number, unitName: "second" | "minute" | "hour") =>
    new Intl.NumberFormat(locale, {
      style: "unit",
      unit: unitName,
      unitDisplay: language === "zh" ? "long" : "short",
      maximumFractionDigits: 1,
    }).format(value);
  if (s < 60) return unit(s, "second");
  if (s < 3600) return unit(Math.round(s / 60), "minute");
  return unit(s / 3600, "hour");
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${formatNumber(value, unit === 0 || value >= 10 ? 0 : 1)} ${units[unit]}`;
}

// Every key of both tables, for the translation check (scripts/check-i18n.mjs reads the file).
export const textTables = { en, zh };
