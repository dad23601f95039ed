// Template portraits in the shoot screen: a gallery of templates (the built-in ones grouped by
// style pack, then the person's own pictures) to add to a shoot beside the text styles, and
// "Use my own picture as a template": upload, face check with a preview of what is repainted,
// the face to replace when the picture has several, then save (docs/templates.md).

import { api, ApiError, isFinished, onJob, Subject } from "../api";
import { h, replaceChildren } from "../dom";
import { localized, t } from "../i18n";
import { errorMessage, whileBusy } from "../ui";

export interface FaceBox {
  index: number;
  box: { left: number; top: number; width: number; height: number };
}

export interface PortraitTemplateEntry {
  id: string;
  name: string;
  name_zh?: string;
  pack: string;
  source: "builtin" | "uploaded";
  picture: "file" | "drawn" | "uploaded";
  picture_url?: string;
  // A built-in template's picture with the default model: drawn templates are "drawing" until an
  // idle worker has drawn them (POST /api/template-pictures asks for the missing ones).
  picture_status?: "ready" | "drawing" | "missing" | "failed" | "other_family";
  faces: "all" | number[];
  faces_found?: FaceBox[];
}

interface TemplateCheck {
  sha256: string;
  width: number;
  height: number;
  faces: FaceBox[];
  subjects_needed: number;
}

function csrfToken(): string {
  const match = document.cookie.match(/(?:^|;\s*)doppel_csrf=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

// A multipart POST answering JSON (or a PNG when `asBlob`); errors as the JSON API's.
async function postForm(path: string, form: FormData, asBlob = false): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(path, {
      method: "POST",
      body: form,
      headers: { Accept: asBlob ? "image/png" : "application/json", "X-CSRF-Token": csrfToken() },
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError(0, "offline", "");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new ApiError(response.status, body.error?.code ?? "error", body.error?.message ?? "");
  }
  return asBlob ? response.blob() : response.json();
}

// Template names by id, for the gallery's "Template: Couple in the park" (a shoot names its
// template shots "template:<id>").
const knownTemplateNames = new Map<string, string>();

function rememberNames(templates: PortraitTemplateEntry[]): void {
  for (const entry of templates)
    knownTemplateNames.set(entry.id, localized(entry.name || entry.id, entry.name_zh));
}

// Fetches the names once per page (the picker refreshes them as templates are saved).
let namesLoaded: Promise<void> | null = null;
export function learnTemplateNames(): Promise<void> {
  namesLoaded ??= api<{ templates: PortraitTemplateEntry[] }>("GET", "/api/templates")
    .then(({ templates }) => rememberNames(templates))
    .catch(() => {
      namesLoaded = null; // try again next time
    });
  return namesLoaded;
}

// "Template: <name>" for a shoot's "template:<id>"; a deleted template is named generically.
export function templateStyleName(styleId: string): string {
  const name = knownTemplateNames.get(styleId.slice("template:".length));
  return name ? t("templateNamed", { name }) : t("templateGone");
}

function templateError(failure: unknown): string {
  if (failure instanceof ApiError && failure.code === "no_face") return t("templateNoFace");
  return errorMessage(failure);
}

// A template replaces this many faces (uploads say which they found; built-in ones all).
function facesReplaced(entry: PortraitTemplateEntry): number | null {
  if (Array.isArray(entry.faces)) return entry.faces.length;
  return entry.faces_found ? entry.faces_found.length : null;
}

function templatePicture(entry: PortraitTemplateEntry): HTMLElement {
  const name = localized(entry.name || entry.id, entry.name_zh);
  if (entry.picture_url)
    return h(
      "span",
      { class: "template-picture" },
      h("img", { src: entry.picture_url, alt: t("templatePictureOf", { name }), loading: "lazy" }),
    );
  // No picture yet: say why, and that one is coming when it is.
  const drawing = entry.picture_status === "drawing";
  const reason = drawing
    ? t("templateBeingDrawn")
    : entry.picture_status === "other_family"
      ? t("templateOtherFamily")
      : entry.picture_status === "failed"
        ? t("templateNotDrawn")
        : entry.picture === "drawn"
          ? t("templateDrawnLater")
          : t("templateNoPicture");
  return h(
    "span",
    { class: drawing ? "template-picture template-drawing" : "template-picture" },
    h("span", { class: "template-no-picture", role: drawing ? "status" : null }, reason),
  );
}

export interface TemplatePicker {
  element: HTMLElement;
  selected: Set<string>;
  // The shoot request's "templates": each chosen one, with its people when it has several faces.
  request(): { id: string; subjects?: string[] }[];
  // Stops watching for template pictures being drawn (when the page is left).
  stop(): void;
}

// The templates section of the shoot screen for `subjectId`. `onChange` is called when the
// selection changes.
export function templatePicker(
  packNames: Map<string, string>,
  onChange: () => void,
  subjectId: string,
): TemplatePicker {
  const selected = new Set<string>();
  // Several-face templates: the person chosen for each face, left to right.
  const people = new Map<string, HTMLSelectElement[]>();
  let everyone: Subject[] = [];
  const gallery = h("div", { class: "template-gallery" });
  const status = h("p", { class: "muted", "aria-live": "polite" });

  function card(entry: PortraitTemplateEntry): HTMLElement {
    const name = localized(entry.name || entry.id, entry.name_zh);
    const replaced = facesReplaced(entry);
    const button = h(
      "button",
      {
        type: "button",
        class: "template-card",
        "aria-pressed": selected.has(entry.id) ? "true" : "false",
        "data-template-id": entry.id,
      },
      templatePicture(entry),
      h("span", { class: "template-title" }, name),
      entry.source === "builtin" && entry.pack
        ? h("span", { class: "template-pack" }, packNames.get(entry.pack) ?? entry.pack)
        : null,
      h(
        "span",
        { class: "template-faces" },
        replaced !== null && replaced > 1
          ? t("templateFacesMany", { count: replaced })
          : t("templateFaceOne"),
      ),
      h("span", { class: "template-check-mark", "aria-hidden": "true" }, "✓"),
    );
    button.addEventListener("click", () => {
      if (selected.has(entry.id)) selected.delete(entry.id);
      else selected.add(entry.id);
      button.setAttribute("aria-pressed", selected.has(entry.id) ? "true" : "false");
      onChange();
    });
    const replacedCount = facesReplaced(entry) ?? 1;
    let chooser: HTMLElement | null = null;
    if (entry.source === "uploaded" && replacedCount > 1) {
      // This person first, then the others, one per face from the left; each can be changed.
      const order = [
        ...everyone.filter((person) => person.id === subjectId),
        ...everyone.filter((person) => person.id !== subjectId),
      ];
      const selects = Array.from({ length: replacedCount }, (_, k) => {
        const select = h(
          "select",
          { id: `template-${entry.id}-face-${k + 1}` },
          ...order.map((person, i) =>
            h(
              "option",
              { value: person.id, selected: i === Math.min(k, order.length - 1) },
              person.name,
            ),
          ),
        );
        return select;
      });
      people.set(entry.id, selects);
      chooser = h(
        "div",
        { class: "template-people", hidden: !selected.has(entry.id) },
        h("p", { class: "muted" }, t("templatePeople")),
        ...selects.map((select, k) =>
          h(
            "label",
            { class: "field", for: select.id },
            h("span", {}, t("templateFaceNumber", { n: k + 1 })),
            select,
          ),
        ),
      );
      button.addEventListener("click", () => {
        if (chooser) chooser.hidden = !selected.has(entry.id);
      });
    }
    if (entry.source !== "uploaded") return button;
    const remove = h(
      "button",
      { type: "button", class: "link-button template-delete" },
      t("templateDelete"),
    );
    remove.addEventListener("click", () => {
      if (!window.confirm(t("templateDeleteConfirm", { name }))) return;
      void whileBusy(remove, async () => {
        try {
          await api("DELETE", `/api/templates/${entry.id}`);
          selected.delete(entry.id);
          onChange();
          await load();
        } catch (failure) {
          status.textContent = errorMessage(failure);
        }
      });
    });
    return h("div", { class: "template-card-wrap" }, button, chooser, remove);
  }

  // Pictures being drawn: show each as its job finishes.
  let stopWatching: (() => void) | null = null;
  function watchDrawing(): void {
    if (stopWatching) return;
    stopWatching = onJob((job) => {
      if (job.kind !== "template_picture" || !isFinished(job)) return;
      void load();
    });
  }

  async function load(selectId?: string): Promise<void> {
    let templates: PortraitTemplateEntry[];
    try {
      [templates, everyone] = await Promise.all([
        api<{ templates: PortraitTemplateEntry[] }>("GET", "/api/templates").then(
          (answer) => answer.templates,
        ),
        api<{ subjects: Subject[] }>("GET", "/api/subjects").then((answer) => answer.subjects),
      ]);
    } catch (failure) {
      status.textContent = errorMessage(failure);
      return;
    }
    // First use with this model: an idle worker draws the built-in templates' pictures.
    if (templates.some((entry) => entry.picture_status === "missing")) {
      try {
        const drawn = await api<{ templates: PortraitTemplateEntry[] }>(
          "POST",
          "/api/template-pictures",
        );
        templates = [
          ...drawn.templates,
          ...templates.filter((entry) => entry.source === "uploaded"),
        ];
      } catch {
        /* the cards say the picture is drawn on first use */
      }
    }
    if (templates.some((entry) => entry.picture_status === "drawing")) watchDrawing();
    rememberNames(templates);
    if (selectId) {
      selected.add(selectId);
      onChange();
    }
    // The ready-made ones (each names its style pack), then the person's own pictures.
    const builtIn = templates.filter((entry) => entry.source !== "uploaded");
    const mine = templates.filter((entry) => entry.source === "uploaded");
    const sections: HTMLElement[] = [];
    if (builtIn.length)
      sections.push(
        h(
          "div",
          { class: "template-group" },
          h("h3", {}, t("templatesReady")),
          h("div", { class: "template-grid" }, ...builtIn.map(card)),
        ),
      );
    sections.push(
      h(
        "div",
        { class: "template-group" },
        h("h3", {}, t("templatesMine")),
        mine.length
          ? h("div", { class: "template-grid" }, ...mine.map(card))
          : h("p", { class: "muted" }, t("templatesMineEmpty")),
      ),
    );
    replaceChildren(gallery, ...sections);
  }

  // "Use my own picture as a template": choose, check, preview, name, save.
  const fileInput = h("input", {
    type: "file",
    id: "template-file",
    accept: "image/png,image/jpeg,image/webp",
  });
  const checkArea = h("div", { class: "template-check", "aria-live": "polite" });
  let previewUrl: string | null = null;
  fileInput.addEventListener("change", () => {
    const file = fileInput.files?.[0];
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    if (!file) {
      replaceChildren(checkArea);
      return;
    }
    replaceChildren(checkArea, h("p", { class: "muted", role: "status" }, t("templateChecking")));
    const form = () => {
      const data = new FormData();
      data.append("picture", file, file.name);
      return data;
    };
    void (async () => {
      let check: TemplateCheck;
      let preview: Blob;
      try {
        check = (await postForm("/api/templates/check", form())) as TemplateCheck;
        preview = (await postForm("/api/templates/check?preview=png", form(), true)) as Blob;
      } catch (failure) {
        replaceChildren(checkArea, h("p", { class: "form-error" }, templateError(failure)));
        return;
      }
      previewUrl = URL.createObjectURL(preview);
      const name = h("input", {
        type: "text",
        id: "template-name",
        maxlength: 80,
        value: file.name.replace(/\.[^.]+$/, "").slice(0, 80),
      });
      const faceChoice = h(
        "select",
        { id: "template-face" },
        ...check.faces.map((face) =>
          h(
            "option",
            { value: String(face.index + 1) },
            t("templateFaceNumber", { n: face.index + 1 }),
          ),
        ),
        // A couple portrait: every face, one person each (chosen when shooting).
        h("option", { value: "all" }, t("templateFaceAll")),
      );
      const save = h("button", { type: "button", class: "primary" }, t("templateSave"));
      const saveError = h("p", { class: "form-error", "aria-live": "polite" });
      save.addEventListener("click", () => {
        if (!name.value.trim()) {
          name.reportValidity();
          saveError.textContent = t("templateNameNeeded");
          return;
        }
        void whileBusy(save, async () => {
          const data = form();
          data.append("name", name.value.trim());
          // A shoot puts one person into a template: the chosen face of a group picture.
          if (check.faces.length > 1 && faceChoice.value !== "all")
            data.append("faces", faceChoice.value);
          try {
            const saved = (await postForm("/api/templates", data)) as PortraitTemplateEntry;
            fileInput.value = "";
            if (previewUrl) URL.revokeObjectURL(previewUrl);
            previewUrl = null;
            // The card is in the gallery and chosen before the page says so.
            await load(saved.id);
            replaceChildren(
              checkArea,
              h("p", { class: "muted", role: "status" }, t("templateSaved", { name: saved.name })),
            );
          } catch (failure) {
            saveError.textContent = templateError(failure);
          }
        });
      });
      // The boxes over the preview, numbered as the face choice names them.
      const boxes = check.faces.map((face) =>
        h(
          "span",
          {
            class: "template-face-box",
            style:
              `left:${(100 * face.box.left) / check.width}%;` +
              `top:${(100 * face.box.top) / check.height}%;` +
              `width:${(100 * face.box.width) / check.width}%;` +
              `height:${(100 * face.box.height) / check.height}%`,
          },
          String(face.index + 1),
        ),
      );
      replaceChildren(
        checkArea,
        h(
          "div",
          { class: "template-preview" },
          h("img", { src: previewUrl, alt: t("templatePreviewAlt") }),
          ...boxes,
        ),
        h(
          "p",
          {},
          check.faces.length === 1
            ? t("templateOneFaceFound")
            : t("templateFacesFound", { count: check.faces.length }),
        ),
        h("p", { class: "muted" }, t("templatePreviewHint")),
        check.faces.length > 1
          ? h(
              "label",
              { class: "field", for: "template-face" },
              h("span", {}, t("templateWhichFace")),
              faceChoice,
            )
          : null,
        h(
          "label",
          { class: "field", for: "template-name" },
          h("span", {}, t("templateName")),
          name,
        ),
        save,
        saveError,
      );
    })();
  });
  const upload = h(
    "details",
    { class: "card template-upload" },
    h("summary", {}, t("templateUseMine")),
    h("p", { class: "muted" }, t("templateUseMineIntro")),
    h(
      "label",
      { class: "field", for: "template-file" },
      h("span", {}, t("templateChoosePicture")),
      fileInput,
    ),
    checkArea,
  );
  const element = h(
    "section",
    { class: "templates", "aria-label": t("templatesTitle") },
    h("h2", {}, t("templatesTitle")),
    h("p", { class: "muted" }, t("templatesIntro")),
    gallery,
    upload,
    status,
  );
  void load();
  const request = () =>
    [...selected].map((id) => {
      const selects = people.get(id);
      return selects ? { id, subjects: selects.map((select) => select.value) } : { id };
    });
  return { element, selected, request, stop: () => stopWatching?.() };
}
