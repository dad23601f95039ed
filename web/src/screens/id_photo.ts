// "ID photo": choose the document (by the name a person knows), choose the photo (one of the
// person's accepted photos, an upload, or new portraits from an ID-photo shoot), and see
// every rule the result was checked against, passed or why not. Only photos that pass every
// rule are offered for download, with a print sheet (docs/id-photos.md).

import { api, ApiError, Image, Job, Photo, Shoot, Subject } from "../api";
import { h, replaceChildren } from "../dom";
import { hasText, language, localized, t, TextKey } from "../i18n";
import { icon } from "../icons";
import type { Cleanup } from "../main";
import { errorBox, errorMessage, loadingBox, pageHeading, toast, whileBusy } from "../ui";

export interface IdPhotoSpec {
  id: string;
  name: string;
  name_zh: string | null;
  size_mm: [number, number];
  pixels: [number, number];
  dpi: number;
  backgrounds: { name: string; rgb: string }[];
}

export interface IdPhotoCheck {
  id: string;
  pass: boolean;
  message: string;
}

export interface IdPhotoRecord {
  spec: string;
  background: string;
  compliant: boolean;
  made: boolean;
  pixels: [number, number];
  dpi: number;
  verdict: { checks: IdPhotoCheck[]; reasons: string[] };
}

// The ID-photo verdict an image carries (made from a photo or by an ID-photo shoot).
export function idPhotoRecord(image: Image): IdPhotoRecord | null {
  const record = image.recipe.id_photo as IdPhotoRecord | undefined;
  return record && record.verdict ? record : null;
}

export function specName(spec: IdPhotoSpec): string {
  return localized(spec.name, spec.name_zh ?? undefined);
}

function sizeText(spec: IdPhotoSpec): string {
  const [width, height] = spec.size_mm;
  return Math.abs(width - 50.8) < 0.01 && Math.abs(height - 50.8) < 0.01
    ? t("sizeInches", { width: 2, height: 2 })
    : t("sizeMillimetres", { width, height });
}

function colourName(name: string): string {
  const key = `colour_${name.replace(/-/g, "_")}`;
  return hasText(key) ? t(key) : name;
}

// One rule in plain words: its name, passed or not, and (when not) what to do.
function checkRow(check: IdPhotoCheck): HTMLElement {
  const title = `check_${check.id}`;
  const hint = `checkHint_${check.id}`;
  return h(
    "li",
    { class: `id-check ${check.pass ? "pass" : "fail"}`, "data-check": check.id },
    h("span", { class: "id-check-mark", "aria-hidden": "true" }, check.pass ? "✓" : "✗"),
    h(
      "span",
      { class: "id-check-text" },
      h(
        "strong",
        {},
        hasText(title) ? t(title as TextKey) : check.id,
        " — ",
        check.pass ? t("checkPassed") : t("checkFailed"),
      ),
      !check.pass && hasText(hint) ? h("span", { class: "id-check-hint" }, t(hint)) : null,
      // The measured figures, as the server words them (in English only).
      language === "en" ? h("small", { class: "muted id-check-detail" }, check.message) : null,
    ),
  );
}

// The verdict and, only for a compliant photo, its downloads: the panel under an ID photo in
// this screen and in the gallery's full-size view.
export function idPhotoPanel(image: Image, specs: IdPhotoSpec[] = []): HTMLElement | null {
  const record = idPhotoRecord(image);
  if (!record) return null;
  const spec = specs.find((each) => each.id === record.spec);
  // Without a face nothing was cropped, so the picture's own size says nothing to the person.
  const checks = record.made
    ? record.verdict.checks
    : record.verdict.checks.filter((check) => check.id !== "size");
  const failed = checks.filter((check) => !check.pass);
  const link = (href: string, label: string, kind: string) =>
    h("a", { href, download: "", class: `button ${kind} small` }, icon("download"), label);
  return h(
    "div",
    { class: "id-photo-panel" },
    h(
      "p",
      { class: `id-verdict ${record.compliant ? "pass" : "fail"}`, role: "status" },
      record.compliant
        ? t("idPhotoPasses", { document: spec ? specName(spec) : record.spec })
        : !record.made
          ? t("idPhotoUnmade")
          : failed.length === 1
            ? t("idPhotoFailsOne")
            : t("idPhotoFails", { count: failed.length }),
    ),
    record.compliant
      ? h(
          "div",
          { class: "actions-row id-downloads" },
          link(`/api/images/${image.id}/id-photo`, t("downloadIdPhoto"), "primary"),
          link(`/api/images/${image.id}/id-photo?format=jpg`, t("downloadIdPhotoJpg"), "secondary"),
          link(`/api/images/${image.id}/id-photo-sheet?paper=4r`, t("downloadSheet"), "secondary"),
          link(
            `/api/images/${image.id}/id-photo-sheet?paper=4r&format=pdf`,
            t("downloadSheetPdf"),
            "secondary",
          ),
        )
      : h("p", { class: "muted" }, t("idPhotoNoDownload")),
    h(
      "details",
      { class: "id-checks", open: !record.compliant },
      h("summary", {}, t("idPhotoChecks")),
      h("ul", {}, ...checks.map(checkRow)),
    ),
  );
}

// The document and colour chosen last, kept while the screen redraws (and on coming back).
let chosenDocument = "";
let chosenBackground = "";

let specsCache: Promise<IdPhotoSpec[]> | null = null;
export function loadIdPhotoSpecs(): Promise<IdPhotoSpec[]> {
  specsCache ??= api<{ specs: IdPhotoSpec[] }>("GET", "/api/id-photo/specs")
    .then((answer) => answer.specs)
    .catch((error) => {
      specsCache = null;
      throw error;
    });
  return specsCache;
}

async function waitForJob(id: string): Promise<Job> {
  for (;;) {
    const job = await api<Job>("GET", `/api/jobs/${id}`);
    if (job.status === "succeeded" || job.status === "dead" || job.status === "cancelled")
      return job;
    await new Promise((resolve) => setTimeout(resolve, 600));
  }
}

function uploadForIdPhoto(query: string, file: File): Promise<{ job: Job }> {
  const form = new FormData();
  form.append("photo", file, file.name);
  const csrf = document.cookie.match(/(?:^|;\s*)doppel_csrf=([^;]+)/);
  return fetch(`/api/id-photo/upload?${query}`, {
    method: "POST",
    body: form,
    headers: {
      Accept: "application/json",
      "X-CSRF-Token": csrf ? decodeURIComponent(csrf[1]) : "",
    },
    credentials: "same-origin",
  }).then(async (response) => {
    const body = await response.json().catch(() => ({}));
    if (!response.ok)
      throw new ApiError(response.status, body.error?.code ?? "error", body.error?.message ?? "");
    return body as { job: Job };
  });
}

export function renderIdPhoto(main: HTMLElement, [subjectId]: string[]): Cleanup {
  let stopped = false;
  const heading = h("div", { class: "heading-slot" }, loadingBox());
  const body = h("div", { class: "id-photo-screen" });
  main.append(heading, body);

  async function draw(): Promise<void> {
    let subject: Subject, specs: IdPhotoSpec[], photos: Photo[], images: Image[];
    try {
      [subject, specs, photos, images] = await Promise.all([
        api<Subject>("GET", `/api/subjects/${subjectId}`),
        loadIdPhotoSpecs(),
        api<{ photos: Photo[] }>("GET", `/api/subjects/${subjectId}/photos`).then((a) => a.photos),
        api<{ images: Image[] }>("GET", `/api/subjects/${subjectId}/images`).then((a) => a.images),
      ]);
    } catch (error) {
      replaceChildren(
        heading,
        errorBox(error, () => void draw()),
      );
      return;
    }
    if (stopped) return;
    replaceChildren(
      heading,
      pageHeading(t("idPhotoTitle"), t("idPhotoIntro", { name: subject.name }), {
        href: `/subjects/${subjectId}`,
        label: t("backTo", { name: subject.name }),
      }),
    );

    // 1 · the document and its background colour
    const documentSelect = h(
      "select",
      { id: "id-photo-document" },
      ...specs.map((spec) =>
        h("option", { value: spec.id }, `${specName(spec)} · ${sizeText(spec)}`),
      ),
    );
    const backgroundSelect = h("select", { id: "id-photo-background" });
    const specInfo = h("p", { class: "muted" });
    const chosenSpec = () => specs.find((spec) => spec.id === documentSelect.value)!;
    const drawBackgrounds = () => {
      const spec = chosenSpec();
      replaceChildren(
        backgroundSelect,
        ...spec.backgrounds.map((colour) =>
          h("option", { value: colour.name }, colourName(colour.name)),
        ),
      );
      if (spec.backgrounds.some((colour) => colour.name === chosenBackground))
        backgroundSelect.value = chosenBackground;
      chosenDocument = spec.id;
      chosenBackground = backgroundSelect.value;
      specInfo.textContent = t("idPhotoSpecInfo", {
        size: sizeText(spec),
        pixels: `${spec.pixels[0]}×${spec.pixels[1]}`,
        dpi: spec.dpi,
      });
    };
    if (specs.some((spec) => spec.id === chosenDocument)) documentSelect.value = chosenDocument;
    documentSelect.addEventListener("change", drawBackgrounds);
    backgroundSelect.addEventListener("change", () => {
      chosenBackground = backgroundSelect.value;
    });
    drawBackgrounds();

    // 2 · the photo it is made from
    const status = h("div", { class: "id-photo-status", "aria-live": "polite" });
    const query = () =>
      `spec=${encodeURIComponent(documentSelect.value)}&background=${encodeURIComponent(
        backgroundSelect.value,
      )}&subject_id=${subjectId}`;
    async function follow(job: Job): Promise<void> {
      replaceChildren(
        status,
        h("p", { class: "loading" }, h("span", { class: "spinner" }), t("idPhotoMaking")),
      );
      const done = await waitForJob(job.id);
      if (done.status !== "succeeded") {
        replaceChildren(
          status,
          h("p", { class: "form-error", role: "alert" }, done.error ?? t("idPhotoJobFailed")),
        );
        return;
      }
      replaceChildren(status);
      toast(done.result?.compliant ? t("idPhotoMadePasses") : t("idPhotoMadeFails"));
      await draw();
    }
    const accepted = photos.filter((photo) => photo.verdict === "accepted");
    const photoButtons = accepted.map((photo, index) => {
      const button = h(
        "button",
        {
          type: "button",
          class: "id-source-photo",
          "data-photo-id": photo.id,
          title: t("idPhotoFromThis"),
        },
        h("img", {
          src: `/api/photos/${photo.id}/file`,
          alt: t("photoAlt", { index: index + 1 }),
          loading: "lazy",
        }),
        h("span", {}, t("idPhotoFromThis")),
      );
      button.addEventListener("click", () =>
        whileBusy(button, async () => {
          const answer = await api<{ job: Job }>("POST", "/api/id-photo/make", {
            spec: documentSelect.value,
            background: backgroundSelect.value,
            subject_id: subjectId,
            photo_id: photo.id,
          });
          await follow(answer.job);
        }),
      );
      return button;
    });
    const fileInput = h("input", {
      type: "file",
      accept: "image/png,image/jpeg,image/webp",
      id: "id-photo-upload",
      class: "visually-hidden",
    });
    const uploadLabel = h(
      "label",
      { for: "id-photo-upload", class: "button secondary" },
      icon("upload"),
      t("idPhotoUpload"),
    );
    fileInput.addEventListener("change", async () => {
      const file = fileInput.files?.[0];
      fileInput.value = "";
      if (!file) return;
      try {
        await follow((await uploadForIdPhoto(query(), file)).job);
      } catch (error) {
        replaceChildren(
          status,
          h("p", { class: "form-error", role: "alert" }, errorMessage(error)),
        );
      }
    });
    const shootButton = h(
      "button",
      { type: "button", class: "secondary", id: "id-photo-shoot" },
      t("idPhotoShoot"),
    );
    shootButton.addEventListener("click", () =>
      whileBusy(shootButton, async () => {
        const shoot = await api<Shoot>("POST", "/api/shoots", {
          subject_id: subjectId,
          id_photo: documentSelect.value,
          id_photo_background: backgroundSelect.value,
          count: 4,
        });
        location.assign(`/subjects/${subjectId}/gallery?shoot=${shoot.id}`);
      }),
    );

    // 3 · the ID photos made so far, newest first, each with its checks
    const made = images
      .filter((image) => idPhotoRecord(image))
      .sort((a, b) => b.created_at - a.created_at);
    const results = made.map((image) => {
      const record = idPhotoRecord(image)!;
      const spec = specs.find((each) => each.id === record.spec);
      return h(
        "li",
        { class: "id-result", "data-image-id": image.id },
        h("img", {
          src: image.png_url,
          alt: t("idPhotoAlt", { document: spec ? specName(spec) : record.spec }),
          class: record.made ? "id-result-photo" : "id-result-photo unmade",
        }),
        h(
          "div",
          {},
          h("h3", {}, spec ? specName(spec) : record.spec, " · ", colourName(record.background)),
          idPhotoPanel(image, specs),
        ),
      );
    });

    replaceChildren(
      body,
      h(
        "section",
        { class: "card" },
        h("h2", {}, t("idPhotoStepDocument")),
        h(
          "label",
          { class: "field", for: "id-photo-document" },
          h("span", {}, t("idPhotoDocument")),
          documentSelect,
        ),
        h(
          "label",
          { class: "field", for: "id-photo-background" },
          h("span", {}, t("idPhotoBackground")),
          backgroundSelect,
        ),
        specInfo,
      ),
      h(
        "section",
        { class: "card" },
        h("h2", {}, t("idPhotoStepSource")),
        h("p", { class: "muted" }, t("idPhotoSourceIntro")),
        accepted.length
          ? h("div", { class: "id-source-photos" }, ...photoButtons)
          : h("p", {}, t("idPhotoNoAccepted")),
        h("div", { class: "actions-row" }, uploadLabel, fileInput, shootButton),
        h("p", { class: "muted small" }, t("idPhotoShootHint")),
        status,
      ),
      h(
        "section",
        { class: "card" },
        h("h2", {}, t("idPhotoStepResults")),
        made.length
          ? h("ul", { class: "id-results" }, ...results)
          : h("p", { class: "muted" }, t("idPhotoNoneYet")),
      ),
    );
  }
  void draw();
  return () => {
    stopped = true;
  };
}
