// One person's page: the next step at the top (add photos, train, watch training, shoot), their
// photos with a verdict on each in plain words, and their double's training.

import {
  api,
  ApiError,
  isFinished,
  Job,
  LoraVersion,
  onJob,
  Photo,
  Readiness,
  RefusedFile,
  Subject,
  TrainingSample,
  TrainingSamples,
  uploadPhotos,
} from "../api";
import { h, replaceChildren } from "../dom";
import { formatDuration, t } from "../i18n";
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
import { batches, photoTile, readinessHints, readinessText, refusedList } from "./subject_photos";
import { statusText, Stage } from "./subjects";

function latestVersion(versions: LoraVersion[]): LoraVersion | undefined {
  return [...versions].sort((a, b) => b.created_at - a.created_at)[0];
}

// "training 12/20, about 34 s left" -> 34; the worker's own estimate.
function etaSeconds(job: Job): number | null {
  const match = /about (\d+) s left/.exec(job.progress_message);
  return match ? Number(match[1]) : null;
}

// "training 12/20, about 34 s left" -> 12: the step the training has done.
function trainingStep(job: Job): number | null {
  const match = /training (\d+)\/\d+/.exec(job.progress_message);
  return match ? Number(match[1]) : null;
}

function validationText(version: LoraVersion): string {
  if (version.validation_likeness !== null)
    return t("validationLikeness", { score: Math.round(version.validation_likeness) });
  return version.validation_faces === "none" ? t("validationNoFace") : t("validationUnknown");
}

export function renderSubject(main: HTMLElement, [subjectId]: string[]): Cleanup {
  const heading = h("div", { class: "heading-slot subject-heading" }, loadingBox());
  const nextStep = h("section", {
    class: "card next-step",
    "aria-labelledby": "next-step-title",
    "aria-live": "polite",
  });
  const readinessPanel = h("div", { class: "readiness", "aria-live": "polite" });
  const uploadStatus = h("div", { class: "upload-status" });
  const photoGrid = h("ul", { class: "photo-grid", "aria-label": t("photosTitle") });
  const trainPanel = h("div", { class: "train-panel" }, loadingBox());
  let subject: Subject | null = null;
  let photos: Photo[] = [];
  let trainJob: Job | null = null;
  let versions: LoraVersion[] = [];
  let readiness: Readiness | null = null;
  // How long the last finished training took here (any person's): the estimate before starting.
  let lastTrainingSeconds: number | null = null;
  // The sample images the training makes every few steps: of the version training now, else of
  // the newest ready one; the card shows the newest with their step as they arrive.
  const samplesStrip = h("div", { class: "training-samples", "aria-live": "polite" });
  let samples: TrainingSample[] = [];
  let samplesVersion: string | null = null;
  let samplesLoading = false;
  let samplesAgain = false;
  let samplesDrawn = "";

  function estimateLine(): HTMLElement | null {
    return lastTrainingSeconds === null
      ? null
      : h(
          "p",
          { class: "muted train-estimate" },
          t("trainEstimate", { time: formatDuration(lastTrainingSeconds) }),
        );
  }

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

  // Where the person is: from the verdicts, the versions and a running training job.
  function stage(): Stage {
    if (trainJob && !isFinished(trainJob)) return "training";
    // An instant person shoots after one good photo; training them makes them a trained double.
    if (subject?.identity_source === "instant")
      return readiness && readiness.accepted > 0 ? "ready_to_shoot" : "needs_photos";
    if (versions.some((version) => version.status === "ready")) return "trained";
    if (versions.some((version) => version.status === "queued" || version.status === "training"))
      return "training";
    return readiness && readiness.photos_needed === 0 ? "ready_to_train" : "needs_photos";
  }

  function drawPhotos(): void {
    replaceChildren(
      photoGrid,
      ...photos.map((photo, index) => photoTile(photo, index, removePhoto)),
    );
  }

  function drawReadiness(): void {
    if (!readiness) return;
    const hints = readinessHints(readiness).filter(Boolean);
    replaceChildren(
      readinessPanel,
      h("p", { class: `readiness-headline level-${readiness.level}` }, readinessText(readiness)),
      h(
        "p",
        { class: "muted" },
        t("photoCounts", { accepted: readiness.accepted, rejected: readiness.rejected }),
      ),
      hints.length ? h("ul", { class: "hints" }, ...hints.map((hint) => h("li", {}, hint))) : null,
    );
  }

  // An instant person needs one good photo, not a training set.
  const photosIntro = h("p", { class: "intro" }, t("photosIntro"));

  function draw(): void {
    photosIntro.textContent = t(
      subject?.identity_source === "instant" ? "photosIntroInstant" : "photosIntro",
    );
    drawHeading();
    drawReadiness();
    drawSamples();
    drawNextStep();
    drawTrain();
  }

  function sampleVersion(): LoraVersion | undefined {
    const newestFirst = [...versions].sort((a, b) => b.created_at - a.created_at);
    if (stage() === "training") return newestFirst[0];
    return newestFirst.find((version) => version.status === "ready");
  }

  function samplesShown(): TrainingSample[] {
    const version = sampleVersion();
    return version && version.id === samplesVersion ? samples : [];
  }

  // Redrawn only when what it shows changes, so pictures do not blink at every progress event.
  function drawSamples(): void {
    const version = sampleVersion();
    const every = version?.settings?.sample_every ?? 0;
    const training = stage() === "training";
    const newest = [...samplesShown()].sort((a, b) => b.step - a.step).slice(0, 4);
    const key = JSON.stringify([version?.id, every, training, newest.map((s) => s.png_url)]);
    if (key === samplesDrawn) return;
    samplesDrawn = key;
    if (!version || every <= 0 || (!training && !newest.length)) {
      replaceChildren(samplesStrip);
      return;
    }
    replaceChildren(
      samplesStrip,
      h("h3", {}, training ? t("samplesSoFar") : t("samplesMade")),
      newest.length
        ? h(
            "ul",
            { class: "sample-list" },
            ...newest.map((sample) =>
              h(
                "li",
                { "data-step": sample.step },
                h(
                  "figure",
                  {},
                  h("img", {
                    src: sample.png_url,
                    alt: t("sampleAlt", { step: sample.step }),
                    decoding: "async",
                  }),
                  h("figcaption", {}, t("sampleStep", { step: sample.step })),
                ),
              ),
            ),
          )
        : h("p", { class: "muted sample-waiting" }, t("samplesFirstAt", { step: every })),
    );
  }

  // The samples are extras: a failed load leaves the card as it was, and the next event retries.
  // A request while one is on its way asks again after it (the last sample must not be missed).
  async function loadSamples(): Promise<void> {
    const version = sampleVersion();
    if (!version || (version.settings?.sample_every ?? 0) <= 0) return;
    if (samplesLoading) {
      samplesAgain = true;
      return;
    }
    samplesLoading = true;
    let answer: TrainingSamples | null = null;
    try {
      answer = await api<TrainingSamples>("GET", `/api/loras/${version.id}/samples`);
    } catch {
      answer = null;
    } finally {
      samplesLoading = false;
    }
    if (answer) {
      samples = answer.samples;
      samplesVersion = version.id;
      draw();
    }
    if (samplesAgain) {
      samplesAgain = false;
      void loadSamples();
    }
  }

  // Training settings for those who want them (A1111 / kohya users); empty: the server's
  // defaults for the model.
  const stepsInput = h("input", {
    type: "number",
    id: "train-steps",
    min: 1,
    max: 5000,
    inputmode: "numeric",
    placeholder: t("defaultChoice"),
  });
  const rankSelect = h(
    "select",
    { id: "train-rank" },
    h("option", { value: "" }, t("defaultChoice")),
    ...[4, 8, 16, 32, 64].map((rank) => h("option", { value: rank }, String(rank))),
  );
  const sampleEveryInput = h("input", {
    type: "number",
    id: "train-sample-every",
    min: 0,
    max: 5000,
    inputmode: "numeric",
    placeholder: t("trainSampleEveryDefault"),
  });
  const classSelect = h(
    "select",
    { id: "train-class" },
    ...(["person", "woman", "man", "girl", "boy"] as const).map((word) =>
      h("option", { value: word }, t(`class_${word}`)),
    ),
  );
  const advanced = h(
    "details",
    { class: "advanced" },
    h("summary", {}, t("advanced")),
    h("p", { class: "muted" }, t("advancedTrainIntro")),
    h(
      "div",
      { class: "advanced-fields" },
      h(
        "label",
        { class: "field", for: "train-class" },
        h("span", {}, t("classWord")),
        classSelect,
      ),
      h(
        "label",
        { class: "field", for: "train-steps" },
        h("span", {}, t("trainSteps")),
        stepsInput,
      ),
      h("label", { class: "field", for: "train-rank" }, h("span", {}, t("trainRank")), rankSelect),
      h(
        "label",
        { class: "field", for: "train-sample-every" },
        h("span", {}, t("trainSampleEvery")),
        sampleEveryInput,
      ),
    ),
  );

  function trainingSettings(): Record<string, string | number> {
    const settings: Record<string, string | number> = {};
    if (stepsInput.value && stepsInput.checkValidity()) settings.steps = Number(stepsInput.value);
    if (rankSelect.value) settings.rank = Number(rankSelect.value);
    // Sent as typed: a value that cannot work comes back with the server's reason.
    if (sampleEveryInput.value !== "" && Number.isFinite(Number(sampleEveryInput.value)))
      settings.sample_every = Number(sampleEveryInput.value);
    return settings;
  }

  async function startTraining(): Promise<void> {
    // The class is the person's (every prompt uses it): a change here is saved on them.
    if (subject && classSelect.value !== (subject.class_word ?? "person"))
      subject = {
        ...subject,
        ...(await api<Subject>("PATCH", `/api/subjects/${subjectId}`, {
          class_word: classSelect.value,
        })),
      };
    const answer = await api<{ job: Job; lora_version: LoraVersion }>(
      "POST",
      `/api/subjects/${subjectId}/train`,
      trainingSettings(),
    );
    trainJob = answer.job;
    versions = [...versions, answer.lora_version];
    draw();
  }

  function trainButton(label: string, kind: "primary" | "secondary"): HTMLButtonElement {
    const button = h("button", { type: "button", class: kind }, label);
    button.addEventListener("click", () => whileBusy(button, startTraining));
    return button;
  }

  // The one thing to do now, at the top of the page (above the photos, also on a phone).
  function drawNextStep(): void {
    if (!subject) return;
    const name = subject.name;
    const latest = latestVersion(versions);
    const parts: (Node | null)[] = [h("h2", { id: "next-step-title" }, t("nextStepTitle"))];
    switch (stage()) {
      case "needs_photos":
        parts.push(
          h(
            "p",
            { class: "next-text" },
            photos.length ? readinessTextOrNull() : t("nextAddPhotos", { name }),
          ),
          h("label", { for: "photo-input", class: "button primary" }, t("choosePhotos")),
        );
        break;
      case "ready_to_train": {
        const stopped = latest && (latest.status === "failed" || latest.status === "cancelled");
        parts.push(
          stopped
            ? h(
                "p",
                { class: latest.status === "failed" ? "form-error" : "muted", role: "status" },
                latest.status === "failed"
                  ? t("trainFailed", { message: trainJob?.error ?? latest.status })
                  : t("trainCancelled"),
              )
            : null,
          h("p", { class: "next-text" }, t("nextTrain", { name })),
          trainButton(t("trainButton"), "primary"),
          estimateLine(),
        );
        break;
      }
      case "training": {
        const job = trainJob;
        const eta = job ? etaSeconds(job) : null;
        const label =
          !job || job.status === "queued"
            ? t("trainQueued")
            : t("trainRunning", { percent: Math.round(job.progress * 100) }) +
              (eta !== null ? ` · ${t("eta", { time: formatDuration(eta) })}` : "");
        const cancel = h("button", { type: "button", class: "secondary" }, t("cancelTraining"));
        cancel.addEventListener("click", () =>
          whileBusy(cancel, async () => {
            if (!trainJob) return;
            trainJob = await api<Job>("POST", `/api/jobs/${trainJob.id}/cancel`);
            await refreshVersions();
            toast(t("trainCancelled"));
          }),
        );
        parts.push(
          h("p", { class: "next-text" }, t("nextTraining", { name })),
          progressBar(job?.progress ?? 0, label),
          job ? cancel : null,
          samplesStrip,
        );
        break;
      }
      case "ready_to_shoot":
        parts.push(h("p", { class: "next-text" }, t("nextShootInstant", { name })), shootLinks());
        break;
      case "trained":
        parts.push(
          h("p", { class: "next-text" }, t("nextShoot", { name })),
          latest && latest.status === "ready"
            ? h("p", { class: "validation" }, validationText(latest))
            : null,
          h(
            "div",
            { class: "actions-row" },
            h(
              "a",
              { class: "button primary", href: `/subjects/${subjectId}/shoot` },
              t("shootAction"),
            ),
            h(
              "a",
              { class: "button secondary", href: `/subjects/${subjectId}/gallery` },
              t("openGallery"),
            ),
          ),
        );
        break;
    }
    replaceChildren(nextStep, ...parts);
  }

  // "Shoot portraits" and the gallery, for a person who can be shot without training.
  function shootLinks(): HTMLElement {
    return h(
      "div",
      { class: "actions-row" },
      h("a", { class: "button primary", href: `/subjects/${subjectId}/shoot` }, t("shootAction")),
      h(
        "a",
        { class: "button secondary", href: `/subjects/${subjectId}/gallery` },
        t("openGallery"),
      ),
    );
  }

  // Switches how the studio learns the person (kept on the person; their LoRAs stay).
  function identitySwitch(to: "trained" | "instant", label: string): HTMLButtonElement {
    const button = h("button", { type: "button", class: "secondary small identity-switch" }, label);
    button.addEventListener("click", () =>
      whileBusy(button, async () => {
        subject = await api<Subject>("PATCH", `/api/subjects/${subjectId}`, {
          identity_source: to,
        });
        const list = await api<{ photos: Photo[]; readiness: Readiness }>(
          "GET",
          `/api/subjects/${subjectId}/photos`,
        );
        readiness = list.readiness;
        draw();
      }),
    );
    return button;
  }

  function readinessTextOrNull(): string {
    return readiness ? readinessText(readiness) : "";
  }

  // Step 2: what training made (and training again); its progress is in the next step.
  function drawTrain(): void {
    const ready = [...versions]
      .sort((a, b) => b.created_at - a.created_at)
      .find((version) => version.status === "ready");
    const parts: (Node | null)[] = [];
    const current = stage();
    if (subject?.identity_source === "instant" && current !== "training") {
      // No training prompt: an instant person is shot from one photo; they may be trained later.
      parts.push(
        h("p", { class: "muted instant-note" }, t("instantTrainNote", { name: subject.name })),
        identitySwitch("trained", t("switchToTrained")),
      );
      replaceChildren(trainPanel, ...parts);
      return;
    }
    if (current === "training") {
      parts.push(h("p", { class: "muted" }, t("nextTraining", { name: subject?.name ?? "" })));
    } else if (ready) {
      parts.push(
        h("p", { class: "success" }, t("trainDone")),
        h(
          "div",
          { class: "actions-row" },
          trainButton(t("trainAgain"), "secondary"),
          h(
            "a",
            { class: "button secondary", href: `/api/loras/${ready.id}/file`, download: "" },
            icon("download"),
            t("downloadLora"),
          ),
        ),
        samplesStrip,
        estimateLine(),
      );
    } else if (current === "needs_photos") {
      parts.push(
        h(
          "p",
          { class: "muted" },
          t("trainNeedsPhotos", { minimum: readiness?.minimum_photos ?? "" }),
        ),
      );
    } else {
      parts.push(h("p", { class: "muted" }, t("trainStartAbove")));
    }
    if (current !== "training") parts.push(identitySwitch("instant", t("switchToInstant")));
    replaceChildren(trainPanel, ...parts);
  }

  function drawHeading(): void {
    if (!subject) return;
    const current = stage();
    replaceChildren(
      heading,
      pageHeading(subject.name, undefined, {
        href: "/",
        label: t("backTo", { name: t("navSubjects") }),
      }),
      h("span", { class: `badge status-${current}`, "data-stage": current }, statusText(current)),
      // ID photos need no training: one good photo is enough.
      h(
        "a",
        { class: "button secondary small id-photo-link", href: `/subjects/${subjectId}/id-photo` },
        t("navIdPhoto"),
      ),
    );
  }

  async function upload(files: File[]): Promise<void> {
    if (!files.length) return;
    fileInput.disabled = true;
    let done = 0;
    const refused: RefusedFile[] = [];
    try {
      for (const batch of batches(files)) {
        try {
          const result = await uploadPhotos(subjectId, batch, (fraction) => {
            replaceChildren(
              uploadStatus,
              fraction < 1
                ? progressBar(
                    (done + fraction * batch.length) / files.length,
                    t("uploading", { done: done + 1, total: files.length }),
                  )
                : progressBar((done + batch.length) / files.length, t("checkingFaces")),
            );
          });
          refused.push(...(result.refused ?? []));
          photos = result.photos;
          readiness = result.readiness;
          drawPhotos();
          draw();
        } catch (error) {
          // A batch of only bad files: each is named; anything else stops the upload.
          if (!(error instanceof ApiError) || !error.refused.length) throw error;
          refused.push(...error.refused);
        }
        done += batch.length;
      }
      replaceChildren(uploadStatus, refused.length ? refusedList(refused) : null);
    } catch (error) {
      replaceChildren(uploadStatus, refused.length ? refusedList(refused) : null, errorBox(error));
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
      readiness = answer.readiness;
      drawPhotos();
      draw();
    } catch (error) {
      toast(errorMessage(error), "error");
    }
  }

  function measureLastTraining(jobs: Job[]): void {
    const last = jobs
      .filter((job) => job.kind === "train" && job.status === "succeeded" && job.finished_at)
      .sort((a, b) => b.finished_at! - a.finished_at!)[0];
    if (last) lastTrainingSeconds = (last.finished_at! - last.created_at) / 1000;
  }

  async function refreshVersions(): Promise<void> {
    const [loaded, loraList, jobList] = await Promise.all([
      api<Subject>("GET", `/api/subjects/${subjectId}`),
      api<{ loras: LoraVersion[] }>("GET", `/api/subjects/${subjectId}/loras`),
      api<{ jobs: Job[] }>("GET", "/api/jobs?status=succeeded&limit=100"),
    ]);
    subject = loaded;
    versions = loraList.loras;
    measureLastTraining(jobList.jobs);
    draw();
    void loadSamples();
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
      classSelect.value = loaded.class_word ?? "person";
      photos = photoList.photos;
      readiness = photoList.readiness;
      versions = loraList.loras;
      measureLastTraining(jobList.jobs);
      trainJob =
        jobList.jobs.find(
          (job) => job.kind === "train" && job.subject_id === subjectId && !isFinished(job),
        ) ?? null;
      drawPhotos();
      draw();
      void loadSamples();
    } catch (error) {
      replaceChildren(
        heading,
        errorBox(error, () => void load()),
      );
      replaceChildren(nextStep);
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
    nextStep,
    h(
      "section",
      { class: "card step", "aria-labelledby": "photos-title" },
      h("h2", { id: "photos-title" }, t("photosTitle")),
      photosIntro,
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
      advanced,
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
      draw();
      // A sample is stored before the progress of its step: ask when the step passes one.
      const step = trainingStep(job);
      const every = sampleVersion()?.settings?.sample_every ?? 0;
      if (every > 0 && step !== null && Math.floor(step / every) > samplesShown().length)
        void loadSamples();
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
