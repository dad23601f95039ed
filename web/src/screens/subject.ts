// One person's page: their photos with a verdict on each, how many more would help, training
// their double with live progress, and the way on to shooting and the gallery.

import {
  api,
  isFinished,
  Job,
  LoraVersion,
  onJob,
  Photo,
  Readiness,
  Subject,
  uploadPhotos,
} from "../api";
import { h, replaceChildren } from "../dom";
import { formatDuration, language, reasonText, t } from "../i18n";
import { icon } from "../icons";
import type { Cleanup } from "../main";
import {
  errorBox,
  errorMessage,
  loadingBox,
  pageHeading,
  progressBar,
  toast,
  whileBusy,
} from "../ui";
import { deleteSubject } from "./settings";
import { statusText } from "./subjects";

const kMaxFilesPerUpload = 10;
const kMaxBytesPerUpload = 16 * 1024 * 1024;

export function readinessText(readiness: Readiness): string {
  if (readiness.photos_needed > 0)
    return readiness.photos_needed === 1
      ? t("readinessNeedOne")
      : t("readinessNeed", { count: readiness.photos_needed });
  if (readiness.photos_to_ideal > 0)
    return t("readinessReady", { count: readiness.accepted, more: readiness.photos_to_ideal });
  return t("readinessIdeal", { count: readiness.accepted });
}

// The verdict on the photo, in plain words: "Good photo", or the reasons it cannot be used.
function photoTile(photo: Photo, index: number, onDelete: (photo: Photo) => void): HTMLElement {
  const reasons = photo.reasons ?? [];
  const rejecting = reasons.filter((reason) => reason.rejects);
  const notes = reasons.filter((reason) => !reason.rejects);
  const verdict =
    photo.verdict === "accepted"
      ? t("photoAccepted")
      : photo.verdict === "rejected"
        ? rejecting.map((reason) => reasonText(reason.code, reason.message)).join(", ")
        : t("photoPending");
  const details = [...rejecting, ...notes].map((reason) => reason.message).join(" ");
  return h(
    "li",
    { class: `photo-tile verdict-${photo.verdict}`, "data-photo-id": photo.id },
    h("img", {
      src: `/api/photos/${photo.id}/file`,
      alt: t("photoAlt", { index: index + 1 }),
      loading: "lazy",
      decoding: "async",
    }),
    h(
      "p",
      { class: "verdict", title: details || null },
      h(
        "span",
        { class: "verdict-icon", "aria-hidden": "true" },
        photo.verdict === "accepted" ? "✓" : photo.verdict === "rejected" ? "✕" : "…",
      ),
      verdict,
    ),
    details ? h("p", { class: "verdict-detail" }, details) : null,
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
  );
}

// Splits a selection into requests the server takes (at most 30 photos and 20 MB each).
function batches(files: File[]): File[][] {
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

function latestVersion(versions: LoraVersion[]): LoraVersion | undefined {
  return [...versions].sort((a, b) => b.created_at - a.created_at)[0];
}

// "training 12/20, about 34 s left" -> 34; the worker's own estimate.
function etaSeconds(job: Job): number | null {
  const match = /about (\d+) s left/.exec(job.progress_message);
  return match ? Number(match[1]) : null;
}

export function renderSubject(main: HTMLElement, [subjectId]: string[]): Cleanup {
  const heading = h("div", { class: "heading-slot" }, loadingBox());
  const readinessPanel = h("div", { class: "readiness", "aria-live": "polite" });
  const uploadStatus = h("div", { class: "upload-status" });
  const photoGrid = h("ul", { class: "photo-grid", "aria-label": t("photosTitle") });
  const trainPanel = h("div", { class: "train-panel" }, loadingBox());
  const shootPanel = h("div", { class: "shoot-panel" });
  let subject: Subject | null = null;
  let photos: Photo[] = [];
  let trainJob: Job | null = null;
  let versions: LoraVersion[] = [];

  const fileInput = h("input", {
    type: "file",
    id: "photo-input",
    class: "visually-hidden",
    multiple: true,
    accept: "image/png,image/jpeg,image/webp",
  });
  const dropZone = h(
    "div",
    { class: "drop-zone" },
    fileInput,
    h("span", { class: "drop-icon" }, icon("upload")),
    h("strong", {}, t("dropHere")),
    h("label", { for: "photo-input", class: "button secondary" }, t("orChoose")),
  );

  function drawPhotos(): void {
    replaceChildren(
      photoGrid,
      ...photos.map((photo, index) => photoTile(photo, index, removePhoto)),
    );
  }

  function drawReadiness(readiness: Readiness): void {
    replaceChildren(
      readinessPanel,
      h("p", { class: `readiness-headline level-${readiness.level}` }, readinessText(readiness)),
      h(
        "p",
        { class: "muted" },
        t("photoCounts", { accepted: readiness.accepted, rejected: readiness.rejected }),
      ),
      // The hints are the server's own (English) advice.
      language === "en" && readiness.hints.length
        ? h("ul", { class: "hints" }, ...readiness.hints.map((hint) => h("li", {}, hint)))
        : null,
    );
    drawTrain(readiness);
  }

  let lastReadiness: Readiness | null = null;
  function setReadiness(readiness: Readiness): void {
    lastReadiness = readiness;
    drawReadiness(readiness);
  }

  async function upload(files: File[]): Promise<void> {
    const images = files.filter((file) => file.type.startsWith("image/") || file.type === "");
    if (!images.length) return;
    fileInput.disabled = true;
    let done = 0;
    try {
      for (const batch of batches(images)) {
        const result = await uploadPhotos(subjectId, batch, (fraction) => {
          replaceChildren(
            uploadStatus,
            fraction < 1
              ? progressBar(
                  (done + fraction * batch.length) / images.length,
                  t("uploading", { done: done + 1, total: images.length }),
                )
              : progressBar((done + batch.length) / images.length, t("checkingFaces")),
          );
        });
        done += batch.length;
        photos = result.photos;
        drawPhotos();
        setReadiness(result.readiness);
      }
      replaceChildren(uploadStatus);
    } catch (error) {
      replaceChildren(uploadStatus, errorBox(error));
    } finally {
      fileInput.disabled = false;
      fileInput.value = "";
    }
  }

  async function removePhoto(photo: Photo): Promise<void> {
    try {
      const answer = await api<{ readiness: Readiness }>("DELETE", `/api/photos/${photo.id}`);
      const list = await api<{ photos: Photo[]; readiness: Readiness }>(
        "GET",
        `/api/subjects/${subjectId}/photos`,
      );
      photos = list.photos;
      drawPhotos();
      setReadiness(answer.readiness);
    } catch (error) {
      toast(errorMessage(error), "error");
    }
  }

  function drawTrain(readiness: Readiness | null = lastReadiness): void {
    const latest = latestVersion(versions);
    const ready = versions.some((version) => version.status === "ready");
    const canTrain = readiness !== null && readiness.photos_needed === 0;
    const running = trainJob && !isFinished(trainJob);
    const parts: (Node | null)[] = [];
    if (running && trainJob) {
      const eta = etaSeconds(trainJob);
      const label =
        trainJob.status === "queued"
          ? t("trainQueued")
          : t("trainRunning", { percent: Math.round(trainJob.progress * 100) }) +
            (eta !== null ? ` · ${t("eta", { time: formatDuration(eta) })}` : "");
      parts.push(progressBar(trainJob.progress, label));
    } else if (latest?.status === "ready") {
      parts.push(
        h("p", { class: "success" }, t("trainDone")),
        h(
          "p",
          { class: "validation" },
          latest.validation_likeness !== null
            ? t("validationLikeness", { score: Math.round(latest.validation_likeness) })
            : t("validationUnknown"),
        ),
      );
    } else if (latest && (latest.status === "failed" || latest.status === "cancelled")) {
      parts.push(
        h(
          "p",
          { class: "form-error", role: "alert" },
          t("trainFailed", { message: trainJob?.error ?? latest.status }),
        ),
      );
    }
    if (!running) {
      const button = h(
        "button",
        { type: "button", class: ready ? "secondary" : "primary", disabled: !canTrain },
        ready ? t("trainAgain") : t("trainButton"),
      );
      button.addEventListener("click", () =>
        whileBusy(button, async () => {
          const answer = await api<{ job: Job; lora_version: LoraVersion }>(
            "POST",
            `/api/subjects/${subjectId}/train`,
            {},
          );
          trainJob = answer.job;
          if (subject) subject.status = "training";
          drawHeading();
          versions = [...versions, answer.lora_version];
          drawTrain();
        }),
      );
      parts.push(button, canTrain ? null : h("p", { class: "muted" }, t("trainNeedsPhotos")));
    }
    replaceChildren(trainPanel, ...parts);
    drawShootPanel(ready);
  }

  function drawShootPanel(ready: boolean): void {
    replaceChildren(
      shootPanel,
      ready
        ? h(
            "a",
            { class: "button primary", href: `/subjects/${subjectId}/shoot` },
            t("shootAction"),
          )
        : h("p", { class: "muted" }, t("shootNeedsTraining")),
      h(
        "a",
        { class: "button secondary", href: `/subjects/${subjectId}/gallery` },
        t("openGallery"),
      ),
    );
  }

  function drawHeading(): void {
    if (!subject) return;
    replaceChildren(
      heading,
      pageHeading(subject.name, statusText(subject.status), {
        href: "/",
        label: t("backTo", { name: t("navSubjects") }),
      }),
    );
  }

  async function refreshVersions(): Promise<void> {
    const [loaded, loraList] = await Promise.all([
      api<Subject>("GET", `/api/subjects/${subjectId}`),
      api<{ loras: LoraVersion[] }>("GET", `/api/subjects/${subjectId}/loras`),
    ]);
    subject = loaded;
    versions = loraList.loras;
    drawHeading();
    drawTrain();
  }

  async function load(): Promise<void> {
    try {
      const [loaded, photoList, loraList, jobList] = await Promise.all([
        api<Subject>("GET", `/api/subjects/${subjectId}`),
        api<{ photos: Photo[]; readiness: Readiness }>("GET", `/api/subjects/${subjectId}/photos`),
        api<{ loras: LoraVersion[] }>("GET", `/api/subjects/${subjectId}/loras`),
        api<{ jobs: Job[] }>("GET", "/api/jobs?limit=100"),
      ]);
      subject = loaded;
      photos = photoList.photos;
      versions = loraList.loras;
      trainJob =
        jobList.jobs.find(
          (job) => job.kind === "train" && job.subject_id === subjectId && !isFinished(job),
        ) ?? null;
      drawHeading();
      drawPhotos();
      setReadiness(photoList.readiness);
    } catch (error) {
      replaceChildren(
        heading,
        errorBox(error, () => void load()),
      );
      replaceChildren(trainPanel);
    }
  }

  dropZone.addEventListener("dragover", (event) => {
    event.preventDefault();
    dropZone.classList.add("dragging");
  });
  dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropZone.classList.remove("dragging");
    void upload([...(event.dataTransfer?.files ?? [])]);
  });
  fileInput.addEventListener("change", () => void upload([...(fileInput.files ?? [])]));

  const deleteButton = h("button", { type: "button", class: "danger-link" }, "");
  deleteButton.addEventListener("click", async () => {
    if (subject && (await deleteSubject(subject))) location.assign("/");
  });

  main.append(
    heading,
    h(
      "section",
      { class: "card step", "aria-labelledby": "photos-title" },
      h("h2", { id: "photos-title" }, t("photosTitle")),
      h("p", { class: "intro" }, t("photosIntro")),
      dropZone,
      uploadStatus,
      readinessPanel,
      photoGrid,
    ),
    h(
      "section",
      { class: "card step", "aria-labelledby": "train-title" },
      h("h2", { id: "train-title" }, t("trainTitle")),
      h("p", { class: "intro" }, t("trainIntro")),
      trainPanel,
    ),
    h(
      "section",
      { class: "card step", "aria-labelledby": "shoot-title" },
      h("h2", { id: "shoot-title" }, t("shootTitle")),
      shootPanel,
    ),
  );

  const stop = onJob((job) => {
    if (job.kind !== "train" || job.subject_id !== subjectId) return;
    if (trainJob && job.id !== trainJob.id && job.created_at < trainJob.created_at) return;
    const wasRunning = trainJob !== null && !isFinished(trainJob);
    trainJob = job;
    if (isFinished(job) && wasRunning) {
      void refreshVersions().then(() => {
        if (job.status === "succeeded") toast(t("trainDone"));
      });
    } else {
      drawTrain();
    }
  });
  void load().then(() => {
    if (subject) {
      deleteButton.textContent = t("deleteSubject", { name: subject.name });
      main.append(h("p", { class: "danger-zone" }, deleteButton));
    }
  });
  return stop;
}
