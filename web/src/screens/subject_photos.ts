// The photos on a person's page: each photo's tile with its verdict in plain words, the
// readiness line and hints, and how an upload is split and its refused files named.

import { Photo, PhotoReason, Readiness, RefusedFile } from "../api";
import { h } from "../dom";
import { language, reasonAdvice, reasonDetail, reasonText, t } from "../i18n";
import { icon } from "../icons";

const kMaxFilesPerUpload = 10;
const kMaxBytesPerUpload = 16 * 1024 * 1024;

export function readinessText(readiness: Readiness): string {
  if (readiness.goal === "instant")
    return t(readiness.accepted > 0 ? "readinessInstantReady" : "readinessInstantNeed");
  if (readiness.photos_needed > 0)
    return readiness.photos_needed === 1
      ? t("readinessNeedOne", { minimum: readiness.minimum_photos })
      : t("readinessNeed", { count: readiness.photos_needed, minimum: readiness.minimum_photos });
  if (readiness.photos_to_ideal > 0)
    return t("readinessReady", { count: readiness.accepted, more: readiness.photos_to_ideal });
  return t("readinessIdeal", { count: readiness.accepted });
}

// The readiness hints in the UI's language, from their codes (the server's own sentences are
// English).
export function readinessHints(readiness: Readiness): string[] {
  const codes = readiness.hint_codes ?? [];
  if (!codes.length && language === "en") return readiness.hints;
  return codes.map((code) => {
    if (code === "rejected" && readiness.rejection_groups?.length) {
      const top = readiness.rejection_groups[0];
      const parameters = {
        count: top.photos,
        title: reasonText(top.code, top.title),
        advice: reasonAdvice(top.code, top.advice),
      };
      return top.photos === 1 ? t("hintRejectedOne", parameters) : t("hintRejected", parameters);
    }
    if (code === "turn_head") return t("hintTurnHead");
    if (code === "plenty")
      return t("hintPlenty", { count: readiness.accepted, plenty: readiness.plenty_photos ?? 20 });
    return readiness.hints[codes.indexOf(code)] ?? "";
  });
}

// One reason in words: what is wrong and what to do, and the measurement as a details line.
export function reasonLines(reason: PhotoReason): HTMLElement[] {
  const details = reasonDetail(reason.code, reason.detail, reason.figures);
  const lines: HTMLElement[] = [
    h("p", { class: "verdict-advice" }, reasonAdvice(reason.code, reason.message)),
  ];
  if (details) lines.push(h("p", { class: "verdict-numbers" }, t("photoDetails", { details })));
  return lines;
}

// The verdict on the photo, in plain words: "Good photo", or the reasons it cannot be used.
export function photoTile(
  photo: Photo,
  index: number,
  onDelete: (photo: Photo) => void,
): HTMLElement {
  const reasons = photo.reasons ?? [];
  const rejecting = reasons.filter((reason) => reason.rejects);
  const notes = reasons.filter((reason) => !reason.rejects);
  const verdict =
    photo.verdict === "accepted"
      ? notes.length
        ? t("photoNotes")
        : t("photoAccepted")
      : photo.verdict === "rejected"
        ? rejecting.map((reason) => reasonText(reason.code, reason.message)).join(" · ")
        : t("photoPending");
  const explained = photo.verdict === "rejected" ? rejecting : notes;
  return h(
    "li",
    { class: `photo-tile verdict-${photo.verdict}`, "data-photo-id": photo.id },
    h(
      "div",
      { class: "photo-frame" },
      h("img", {
        src: `/api/photos/${photo.id}/file`,
        alt: t("photoAlt", { index: index + 1 }),
        loading: "lazy",
        decoding: "async",
      }),
      h(
        "p",
        { class: "verdict" },
        h(
          "span",
          { class: "verdict-icon", "aria-hidden": "true" },
          photo.verdict === "accepted" ? "✓" : photo.verdict === "rejected" ? "✕" : "…",
        ),
        h("span", { class: "verdict-text" }, verdict),
      ),
      h(
        "button",
        {
          type: "button",
          class: "icon-button tile-delete",
          "aria-label": `${t("deletePhoto")} (${index + 1})`,
          title: t("deletePhoto"),
          onclick: () => onDelete(photo),
        },
        icon("trash"),
      ),
    ),
    explained.length
      ? h("div", { class: "verdict-detail" }, ...explained.flatMap(reasonLines))
      : null,
  );
}

// Splits a selection into requests the server takes (at most 30 photos and 20 MB each).
export function batches(files: File[]): File[][] {
  const result: File[][] = [];
  let current: File[] = [];
  let bytes = 0;
  for (const file of files) {
    if (
      current.length &&
      (current.length >= kMaxFilesPerUpload || bytes + file.size > kMaxBytesPerUpload)
    ) {
      result.push(current);
      current = [];
      bytes = 0;
    }
    current.push(file);
    bytes += file.size;
  }
  if (current.length) result.push(current);
  return result;
}

// Why a file was not added, in the UI's language.
export function refusedReason(file: RefusedFile): string {
  if (file.code === "unsupported_media_type") return t("refusedNotImage");
  if (file.code === "too_large") return t("refusedTooLarge");
  if (file.code === "invalid_file") return t("refusedBroken");
  return file.message;
}

export function refusedList(files: RefusedFile[]): HTMLElement {
  return h(
    "div",
    { class: "refused", role: "alert" },
    h("p", {}, t("uploadRefused")),
    h(
      "ul",
      {},
      ...files.map((file) =>
        h(
          "li",
          { "data-file": file.file },
          t("uploadRefusedFile", { file: file.file, reason: refusedReason(file) }),
        ),
      ),
    ),
  );
}
