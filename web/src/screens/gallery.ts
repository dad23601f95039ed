// A person's portraits, best likeness first, filling in live while shoots run: likeness badge,
// full-size view with the recipe, download (one or the whole shoot as a zip), favourite,
// delete and "more like this".

import { api, Image, isFinished, onJob, Shoot, StylePack, Subject } from "../api";
import { h, replaceChildren } from "../dom";
import { formatDate, likenessLabelText, localized, t } from "../i18n";
import { icon, IconName } from "../icons";
import type { Cleanup } from "../main";
import { idPhotoPanel, idPhotoRecord, loadIdPhotoSpecs } from "./id_photo";
import { learnTemplateNames, templateStyleName } from "./templates";
import {
  confirmDialog,
  errorBox,
  errorMessage,
  loadingBox,
  pageHeading,
  progressBar,
  toast,
  whileBusy,
} from "../ui";

interface GalleryState {
  subject: Subject;
  images: Image[];
  shoots: Shoot[];
  styles: Map<string, StylePack>;
  waiting: number; // portraits of running shoots not made yet: placeholders hold their place
}

function styleName(state: GalleryState, id: string | undefined): string {
  const style = id ? state.styles.get(id) : undefined;
  // An ID photo made from a photo: its shoot is named "id-photo:<document>".
  if (!style && id?.startsWith("id-photo:")) return t("navIdPhoto");
  if (!style && id?.startsWith("template:")) return templateStyleName(id);
  return style ? localized(style.name, style.name_zh) : (id ?? "");
}

// A new version of one portrait ("Upscaled from the Film noir portrait"), else null.
function madeFromText(state: GalleryState, shoot: Shoot): string | null {
  const made = shoot.made_from;
  if (!made) return null;
  const style = styleName(state, made.style);
  if (made.edit === "upscale") return t("madeUpscaled", { style });
  if (made.edit === "face_fix") return t("madeFaceFixed", { style });
  if (made.edit === "inpaint") return t("madeRepainted", { style });
  return null;
}

// "87 · looks like them"; "No face found" for a portrait without a face (not "doesn't look
// like them": there was nothing to compare); "Likeness not measured" when it was not scored.
function likenessBadge(image: Image): HTMLElement {
  const known = image.likeness !== null;
  const kind = known
    ? `likeness-${(image.likeness_label ?? "").replace(/ /g, "-")}`
    : image.likeness_label === "no face"
      ? "likeness-no-face"
      : "likeness-unknown";
  return h(
    "span",
    { class: `likeness-badge ${kind}` },
    known
      ? t("likenessBadge", {
          score: Math.round(image.likeness!),
          label: likenessLabelText(image.likeness_label),
        })
      : likenessLabelText(image.likeness_label),
  );
}

// "ID photo ✓" on the card of an ID photo that passes its document's rules, "✗" otherwise.
function idPhotoBadge(image: Image): HTMLElement | null {
  const record = idPhotoRecord(image);
  if (!record) return null;
  return h(
    "span",
    { class: `id-photo-badge ${record.compliant ? "pass" : "fail"}` },
    `${t("navIdPhoto")} ${record.compliant ? "✓" : "✗"}`,
  );
}

function imageAlt(state: GalleryState, image: Image): string {
  const style = styleName(state, image.recipe.style);
  return image.likeness === null
    ? t("imageAltNoFace", { style })
    : t("imageAlt", { style, score: Math.round(image.likeness) });
}

function recipeList(state: GalleryState, image: Image): HTMLElement {
  const recipe = image.recipe;
  const row = (label: string, value: unknown) =>
    value === undefined || value === null || value === ""
      ? null
      : h("div", {}, h("dt", {}, label), h("dd", {}, String(value)));
  return h(
    "dl",
    { class: "recipe" },
    row(t("recipeStyle"), styleName(state, recipe.style)),
    row(t("recipePrompt"), recipe.prompt),
    row(t("recipeNegative"), recipe.negative_prompt),
    row(
      t("recipeSettings"),
      [
        recipe.sampler,
        recipe.steps !== undefined ? t("recipeSteps", { count: recipe.steps }) : null,
        recipe.guidance !== undefined ? `CFG ${recipe.guidance}` : null,
        recipe.seed !== undefined ? t("recipeSeed", { seed: String(recipe.seed) }) : null,
        recipe.width ? `${recipe.width}×${recipe.height}` : null,
        recipe.hires ? t("recipeUpscaled", { scale: recipe.hires.scale }) : null,
        recipe.face_detail ? t("recipeFaceFixed") : null,
        recipe.inpaint ? t("recipePainted") : null,
      ]
        .filter(Boolean)
        .join(" · "),
    ),
    row(t("recipeModel"), recipe.model?.name),
  );
}

// "Paint over an area": a brush over the portrait; the strokes become the mask (white =
// paint again) at the portrait's own size. Resolves with the mask as a PNG data URL and the
// optional prompt line, or null when closed.
function paintDialog(image: Image): Promise<{ mask: string; prompt: string } | null> {
  return new Promise((resolve) => {
    const picture = h("img", { src: image.png_url, alt: "", class: "paint-picture" });
    const canvas = h("canvas", { class: "paint-canvas", "aria-label": t("inpaintHelp") });
    const size = h("input", { type: "range", id: "brush-size", min: 2, max: 30, value: 10 });
    const prompt = h("input", { type: "text", id: "inpaint-prompt", maxlength: 500 });
    const problem = h("p", { class: "form-error", role: "alert" });
    const clear = h("button", { type: "button", class: "secondary" }, t("clearBrush"));
    const go = h("button", { type: "button", class: "primary" }, t("inpaintGo"));
    const cancel = h("button", { type: "button", class: "secondary" }, t("cancel"));
    const dialog = h(
      "dialog",
      { class: "paint-dialog", "aria-label": t("inpaint") },
      h("h2", {}, t("inpaint")),
      h("p", { class: "muted" }, t("inpaintHelp")),
      h("div", { class: "paint-area" }, picture, canvas),
      h("label", { class: "field", for: "brush-size" }, h("span", {}, t("brushSize")), size),
      h(
        "label",
        { class: "field", for: "inpaint-prompt" },
        h("span", {}, t("inpaintPrompt")),
        prompt,
      ),
      problem,
      h("div", { class: "actions-row" }, go, clear, cancel),
    );
    let painted = false;
    let result: { mask: string; prompt: string } | null = null;
    const context = () => canvas.getContext("2d")!;
    const fit = () => {
      canvas.width = picture.naturalWidth || Number(image.recipe.width) || 512;
      canvas.height = picture.naturalHeight || Number(image.recipe.height) || 512;
    };
    picture.addEventListener("load", fit);
    fit();
    let last: { x: number; y: number } | null = null;
    const point = (event: PointerEvent) => {
      const box = canvas.getBoundingClientRect();
      return {
        x: ((event.clientX - box.left) / box.width) * canvas.width,
        y: ((event.clientY - box.top) / box.height) * canvas.height,
      };
    };
    const stroke = (event: PointerEvent) => {
      const here = point(event);
      const paint = context();
      paint.strokeStyle = "rgba(255, 64, 96, 0.6)";
      paint.lineCap = "round";
      paint.lineJoin = "round";
      paint.lineWidth = (Number(size.value) / 100) * canvas.width;
      paint.beginPath();
      paint.moveTo((last ?? here).x, (last ?? here).y);
      paint.lineTo(here.x + 0.01, here.y);
      paint.stroke();
      last = here;
      painted = true;
      problem.textContent = "";
    };
    canvas.addEventListener("pointerdown", (event) => {
      canvas.setPointerCapture(event.pointerId);
      last = null;
      stroke(event);
    });
    canvas.addEventListener("pointermove", (event) => {
      if (canvas.hasPointerCapture(event.pointerId)) stroke(event);
    });
    canvas.addEventListener("pointerup", () => (last = null));
    clear.addEventListener("click", () => {
      context().clearRect(0, 0, canvas.width, canvas.height);
      painted = false;
    });
    cancel.addEventListener("click", () => dialog.close());
    go.addEventListener("click", () => {
      if (!painted) {
        problem.textContent = t("inpaintEmpty");
        return;
      }
      // Every brushed pixel white, the rest black.
      const mask = h("canvas", { width: canvas.width, height: canvas.height });
      const strokes = context().getImageData(0, 0, canvas.width, canvas.height);
      const out = mask.getContext("2d")!.createImageData(canvas.width, canvas.height);
      for (let i = 0; i < strokes.data.length; i += 4) {
        const value = strokes.data[i + 3] > 0 ? 255 : 0;
        out.data[i] = out.data[i + 1] = out.data[i + 2] = value;
        out.data[i + 3] = 255;
      }
      mask.getContext("2d")!.putImageData(out, 0, 0);
      result = { mask: mask.toDataURL("image/png"), prompt: prompt.value.trim() };
      dialog.close();
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(result);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export function renderGallery(main: HTMLElement, [subjectId]: string[]): Cleanup {
  const focusShoot = new URLSearchParams(location.search).get("shoot");
  const heading = h("div", { class: "heading-slot" }, loadingBox());
  const progressArea = h("div", { class: "shoot-progress-list", "aria-live": "polite" });
  const grid = h("ul", { class: "image-grid" });
  const shootList = h("div", { class: "shoot-list" });
  let state: GalleryState | null = null;
  main.append(heading, progressArea, grid, shootList);

  // Favourite, download, more like this, delete: icons on a card, icons with words in the
  // full-size view.
  function actions(image: Image, into: HTMLElement, labelled: boolean, onChange: () => void) {
    const control = <K extends "button" | "a">(
      tag: K,
      name: IconName,
      label: string,
      attributes: Record<string, string> = {},
      filled = false,
    ) =>
      h(
        tag,
        {
          ...(tag === "button" ? { type: "button" } : {}),
          ...attributes,
          class: `${labelled ? "button secondary small" : "icon-button"} ${attributes.class ?? ""}`,
          title: label,
          "aria-label": labelled ? null : label,
        },
        icon(name, filled),
        labelled ? h("span", {}, label) : null,
      );
    const favouriteLabel = image.favourite ? t("unfavourite") : t("favourite");
    const favourite = control(
      "button",
      "star",
      favouriteLabel,
      {
        class: "favourite",
        "aria-pressed": image.favourite ? "true" : "false",
      },
      image.favourite,
    ) as HTMLButtonElement;
    favourite.addEventListener("click", () =>
      whileBusy(favourite, async () => {
        const wanted = !image.favourite;
        await api("PUT", `/api/images/${image.id}/favourite`, { favourite: wanted });
        image.favourite = wanted;
        // A refresh while the full-size view was open replaced the gallery's copy of
        // this image: mark that one too, or its card would show the old state.
        const current = state?.images.find((other) => other.id === image.id);
        if (current) current.favourite = wanted;
        onChange();
      }),
    );
    const more = control("button", "sparkle", t("moreLikeThis")) as HTMLButtonElement;
    more.addEventListener("click", () =>
      whileBusy(more, async () => {
        await api("POST", `/api/images/${image.id}/variations`, { count: 4 });
        toast(t("variationsQueued"));
        await refresh();
      }),
    );
    const remove = control("button", "trash", t("deleteImage"));
    remove.addEventListener("click", async () => {
      if ((await confirmDialog(`${t("deleteImage")}?`, t("delete"))) === null) return;
      try {
        await api("DELETE", `/api/images/${image.id}`);
        document.querySelector<HTMLDialogElement>("dialog.viewer")?.close();
        await refresh();
      } catch (error) {
        toast(errorMessage(error), "error");
      }
    });
    // The server names the file "<person>-<style>-<rank>.png", as in the shoot's zip.
    const download = control("a", "download", t("download"), {
      href: image.png_url,
      download: "",
    });
    // An ID photo made from a photo (not generated) has no recipe to shoot again.
    const generated = image.recipe.prompt !== undefined;
    if (!labelled || !generated) {
      replaceChildren(into, favourite, download, generated ? more : null, remove);
      return;
    }
    // New versions of this portrait, made through the queue like any shoot.
    const remake = (label: string, path: string, queued: string, enabled: boolean) => {
      const button = h(
        "button",
        { type: "button", class: "button secondary small", disabled: !enabled },
        label,
      );
      button.addEventListener("click", () =>
        whileBusy(button, async () => {
          await api("POST", `/api/images/${image.id}/${path}`, {});
          toast(queued);
          await refresh();
        }),
      );
      return button;
    };
    const recipe = image.recipe;
    const upscale = remake(
      t("upscale"),
      "upscale",
      t("upscaleQueued"),
      !recipe.hires && !recipe.inpaint,
    );
    const fixFace = remake(t("fixFace"), "fix-face", t("fixFaceQueued"), !recipe.face_detail);
    const paint = h("button", { type: "button", class: "button secondary small" }, t("inpaint"));
    paint.addEventListener("click", async () => {
      const wanted = await paintDialog(image);
      if (!wanted) return;
      await whileBusy(paint, async () => {
        await api("POST", `/api/images/${image.id}/inpaint`, {
          mask: wanted.mask,
          ...(wanted.prompt ? { prompt_extra: wanted.prompt } : {}),
        });
        toast(t("inpaintQueued"));
        await refresh();
      });
    });
    replaceChildren(into, favourite, download, more, upscale, fixFace, paint, remove);
  }

  function openViewer(image: Image): void {
    if (!state) return;
    const buttons = h("div", { class: "viewer-actions" });
    // An ID photo's checks and, when it passes, its downloads.
    const idPhotoSlot = h("div", {}, idPhotoPanel(image));
    if (idPhotoRecord(image))
      void loadIdPhotoSpecs()
        .then((specs) => replaceChildren(idPhotoSlot, idPhotoPanel(image, specs)))
        .catch(() => {});
    const dialog = h(
      "dialog",
      { class: "viewer", "aria-label": styleName(state, image.recipe.style) },
      h(
        "button",
        {
          type: "button",
          class: "icon-button viewer-close",
          "aria-label": t("close"),
          onclick: () => dialog.close(),
        },
        icon("close"),
      ),
      h("img", { src: image.png_url, alt: imageAlt(state, image) }),
      h(
        "div",
        { class: "viewer-side" },
        likenessBadge(image),
        idPhotoSlot,
        buttons,
        h("h2", {}, t("recipe")),
        recipeList(state, image),
      ),
    );
    const redraw = () => {
      actions(image, buttons, true, redraw);
      drawImages();
    };
    actions(image, buttons, true, redraw);
    dialog.addEventListener("close", () => dialog.remove());
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) dialog.close();
    });
    document.body.append(dialog);
    dialog.showModal();
  }

  function imageCard(image: Image): HTMLElement {
    const width = Number(image.recipe.width) || 1;
    const height = Number(image.recipe.height) || 1;
    const buttons = h("div", { class: "card-actions" });
    actions(image, buttons, false, drawImages);
    return h(
      "li",
      { class: "image-card", "data-image-id": image.id },
      h(
        "button",
        {
          type: "button",
          class: "image-open",
          style: `aspect-ratio:${width}/${height}`,
          onclick: () => openViewer(image),
        },
        h("img", {
          src: image.png_url,
          alt: imageAlt(state!, image),
          loading: "lazy",
          decoding: "async",
        }),
      ),
      h(
        "div",
        { class: "image-meta" },
        likenessBadge(image),
        idPhotoBadge(image),
        h("span", { class: "muted" }, styleName(state!, image.recipe.style)),
      ),
      buttons,
    );
  }

  function drawImages(): void {
    if (!state) return;
    const ranked = [...state.images].sort((a, b) => {
      if (a.favourite !== b.favourite) return a.favourite ? -1 : 1;
      return 0; // otherwise the server's order: best likeness first
    });
    const placeholders = Array.from({ length: state.waiting }, () =>
      h(
        "li",
        { class: "image-card placeholder", "aria-hidden": "true" },
        h("div", { class: "image-open" }),
        h("div", { class: "image-meta" }, h("span", { class: "muted" }, t("beingMade"))),
      ),
    );
    replaceChildren(
      grid,
      ...(ranked.length || placeholders.length
        ? [...ranked.map(imageCard), ...placeholders]
        : [h("li", { class: "empty" }, t("galleryEmpty"))]),
    );
  }

  function zipLink(shoot: Shoot): HTMLElement {
    return h(
      "a",
      { href: `/api/shoots/${shoot.id}/zip`, download: "", class: "button secondary small" },
      icon("download"),
      t("downloadZip"),
    );
  }

  // The shoot just started and any still running, at the top: progress, "Download all" and
  // "Cancel the rest".
  function drawShoots(details: Shoot[]): void {
    if (!state) return;
    const running = (shoot: Shoot) =>
      (shoot.jobs?.queued ?? 0) + (shoot.jobs?.running ?? 0) > 0 ||
      ((shoot.images_done ?? 0) < shoot.image_count && shoot.status !== "incomplete");
    const active = details.filter(
      (shoot, index) => shoot.id === focusShoot || running(shoot) || (!focusShoot && index === 0),
    );
    replaceChildren(
      progressArea,
      ...active.map((shoot) => {
        const done = shoot.images_done ?? 0;
        const cancelled = (shoot.jobs?.cancelled ?? 0) > 0;
        const label =
          done >= shoot.image_count
            ? t("shootFinished", { total: shoot.image_count })
            : shoot.status === "incomplete"
              ? cancelled
                ? t("shootCancelled", { done, total: shoot.image_count })
                : t("shootIncomplete", { done, total: shoot.image_count })
              : t("shootProgress", { done, total: shoot.image_count });
        let cancel: HTMLButtonElement | null = null;
        if (running(shoot)) {
          const button = h(
            "button",
            { type: "button", class: "secondary small" },
            t("cancelShoot"),
          );
          button.addEventListener("click", () =>
            whileBusy(button, async () => {
              button.textContent = t("shootCancelling");
              await api("POST", `/api/shoots/${shoot.id}/cancel`);
              await refresh();
            }),
          );
          cancel = button;
        }
        return h(
          "div",
          { class: "card shoot-progress", "data-shoot-id": shoot.id },
          h(
            "div",
            { class: "shoot-progress-head" },
            h(
              "p",
              { class: "shoot-styles" },
              madeFromText(state!, shoot) ??
                shoot.styles.map((id) => styleName(state!, id)).join(t("listSeparator")),
            ),
            h("div", { class: "actions-row" }, done > 0 ? zipLink(shoot) : null, cancel),
          ),
          progressBar(Math.max(shoot.progress ?? 0, done / Math.max(1, shoot.image_count)), label),
        );
      }),
    );
    replaceChildren(
      shootList,
      state.shoots.length ? h("h2", {}, t("shoots")) : null,
      h(
        "ul",
        { class: "shoots" },
        ...state.shoots.map((shoot) =>
          h(
            "li",
            {},
            h(
              "span",
              { class: shoot.made_from ? "shoot-made-from" : "" },
              madeFromText(state!, shoot) ??
                t("shootOf", {
                  styles: shoot.styles.map((id) => styleName(state!, id)).join(t("listSeparator")),
                  count: shoot.image_count,
                }),
            ),
            " ",
            h("span", { class: "muted" }, formatDate(shoot.created_at)),
            " ",
            // A shoot with no portrait (all cancelled) has nothing to download.
            state!.images.some((image) => image.shoot_id === shoot.id) ? zipLink(shoot) : null,
          ),
        ),
      ),
    );
  }

  async function refresh(): Promise<void> {
    await learnTemplateNames(); // names the template shots
    const [subject, { images }, { shoots }, styleList] = await Promise.all([
      api<Subject>("GET", `/api/subjects/${subjectId}`),
      api<{ images: Image[] }>("GET", `/api/subjects/${subjectId}/images`),
      api<{ shoots: Shoot[] }>("GET", `/api/shoots?subject_id=${subjectId}`),
      state ? Promise.resolve(null) : api<{ styles: StylePack[] }>("GET", "/api/styles"),
    ]);
    const styles = styleList
      ? new Map(styleList.styles.map((style) => [style.id, style]))
      : state!.styles;
    const firstDraw = !state;
    state = {
      waiting: state?.waiting ?? 0,
      subject,
      images,
      shoots: [...shoots].sort((a, b) => b.created_at - a.created_at),
      styles,
    };
    if (firstDraw) {
      replaceChildren(
        heading,
        pageHeading(t("galleryTitle", { name: subject.name }), t("galleryIntro"), {
          href: `/subjects/${subjectId}`,
          label: t("backTo", { name: subject.name }),
        }),
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
            { class: "button secondary", href: `/subjects/${subjectId}/id-photo` },
            t("navIdPhoto"),
          ),
        ),
      );
    }
    // Progress of the shoots still running (and the one just started).
    const recent = state.shoots.slice(0, 10);
    const details = await Promise.all(
      recent.map((shoot) => api<Shoot>("GET", `/api/shoots/${shoot.id}`)),
    );
    state.waiting = details
      .filter((shoot) => shoot.status !== "incomplete")
      .reduce((sum, shoot) => sum + Math.max(0, shoot.image_count - (shoot.images_done ?? 0)), 0);
    drawShoots(details);
    drawImages();
  }

  // Job events arrive in bursts; one refresh per burst.
  let pending: number | undefined;
  const stop = onJob((job) => {
    if ((job.kind !== "shoot" && job.kind !== "id_photo") || job.subject_id !== subjectId) return;
    if (pending !== undefined) return;
    pending = window.setTimeout(
      () => {
        pending = undefined;
        void refresh().catch(() => {});
      },
      isFinished(job) ? 100 : 700,
    );
  });
  refresh().catch((error) =>
    replaceChildren(
      heading,
      errorBox(error, () => location.reload()),
    ),
  );
  return () => {
    stop();
    if (pending !== undefined) clearTimeout(pending);
  };
}
