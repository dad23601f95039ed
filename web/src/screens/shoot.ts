// The style picker: cards with each style's name, description and (once this person has one)
// their best portrait in it; how many per style; then the shoot starts and the gallery shows it.

import {
  api,
  Image,
  isFinished,
  Job,
  LoraVersion,
  onJob,
  Shoot,
  StyleList,
  StylePack,
  Subject,
} from "../api";
import { h, replaceChildren } from "../dom";
import { formatDuration, locale, localized, t } from "../i18n";
import { navigate } from "../main";
import type { Cleanup } from "../main";
import { errorBox, errorMessage, loadingBox, pageHeading, whileBusy } from "../ui";
import { templatePicker } from "./templates";

// The picture of a style card: this person's best portrait in the style once there is one, else
// the style's examples made with the default model (or what keeps them from being shown).
function sampleArea(style: StylePack, own: Image | undefined): HTMLElement {
  const name = localized(style.name, style.name_zh);
  if (own)
    return h(
      "span",
      { class: "style-sample" },
      h("img", { src: own.png_url, alt: t("sample", { style: name }), loading: "lazy" }),
    );
  const examples = style.samples ?? [];
  if (examples.length)
    return h(
      "span",
      { class: `style-sample examples-${Math.min(examples.length, 3)}` },
      ...examples
        .slice(0, 3)
        .map((example) =>
          h("img", { src: example.url, alt: t("sample", { style: name }), loading: "lazy" }),
        ),
    );
  const status = style.samples_status;
  const making = status === "making" || status === "missing";
  return h(
    "span",
    { class: `style-sample${making ? " making" : ""}`, "data-samples": status ?? "" },
    h(
      "span",
      { class: "no-sample" },
      making
        ? t("samplesMaking")
        : status === "failed"
          ? t("samplesFailed")
          : status === "other_family"
            ? t("samplesOtherFamily")
            : status === "not_installed"
              ? t("samplesNotInstalled")
              : t("noSample"),
    ),
  );
}

function styleCard(
  style: StylePack,
  own: Image | undefined,
  toggle: (id: string, button: HTMLButtonElement) => void,
): HTMLButtonElement {
  const name = localized(style.name, style.name_zh);
  const button = h(
    "button",
    {
      type: "button",
      class: "style-card",
      "aria-pressed": "false",
      "data-style-id": style.id,
    },
    sampleArea(style, own),
    h("span", { class: "style-name" }, name),
    h("span", { class: "style-description" }, localized(style.description, style.description_zh)),
    h("span", { class: "style-check", "aria-hidden": "true" }, "✓"),
  );
  button.addEventListener("click", () => toggle(style.id, button));
  return button;
}

// Seconds per portrait on this machine: the median gap between portraits of one shoot
// finishing one after another (jobs of a shoot run back to back); null before any shoot.
function measuredSecondsPerPortrait(jobs: Job[]): number | null {
  const finished = new Map<string, number[]>();
  for (const job of jobs) {
    const shootId = job.result?.shoot_id;
    if (job.kind !== "shoot" || typeof shootId !== "string" || !job.finished_at) continue;
    finished.set(shootId, [...(finished.get(shootId) ?? []), job.finished_at]);
  }
  const gaps: number[] = [];
  for (const times of finished.values()) {
    times.sort((a, b) => a - b);
    for (let i = 1; i < times.length; i++) gaps.push((times[i] - times[i - 1]) / 1000);
  }
  if (!gaps.length) return null;
  gaps.sort((a, b) => a - b);
  return gaps[Math.floor(gaps.length / 2)];
}

// A number input of the advanced fold; empty means "the style's".
function numberInput(
  id: string,
  min: number,
  max: number,
  step = 1,
  placeholder: string | null = t("styleChoice"),
): HTMLInputElement {
  return h("input", {
    type: "number",
    id,
    min,
    max,
    step,
    inputmode: step === 1 ? "numeric" : "decimal",
    placeholder,
  });
}

function field(id: string, label: string, control: HTMLElement): HTMLElement {
  return h("label", { class: "field", for: id }, h("span", {}, label), control);
}

export function renderShoot(main: HTMLElement, [subjectId]: string[]): Cleanup {
  const body = h("div", {}, loadingBox());
  main.append(body);
  const selected = new Set<string>();
  const cards = new Map<string, HTMLButtonElement>();
  const own = new Map<string, Image>();
  let stopEvents: (() => void) | null = null;
  let stopTemplates: (() => void) | null = null;

  // Style examples being made: redraw the cards' pictures as each style's job finishes.
  function watchExamples(): void {
    if (stopEvents) return;
    stopEvents = onJob((job) => {
      if (job.kind !== "style_samples" || !isFinished(job)) return;
      void api<StyleList>("GET", "/api/styles")
        .then(({ styles }) => {
          for (const style of styles) {
            const card = cards.get(style.id);
            const old = card?.querySelector(".style-sample");
            if (card && old) old.replaceWith(sampleArea(style, own.get(style.id)));
          }
        })
        .catch(() => {});
    });
  }

  async function load(): Promise<void> {
    try {
      const [subject, styleList, { images }, { jobs }, { loras }] = await Promise.all([
        api<Subject>("GET", `/api/subjects/${subjectId}`),
        api<StyleList>("GET", "/api/styles"),
        api<{ images: Image[] }>("GET", `/api/subjects/${subjectId}/images`),
        api<{ jobs: Job[] }>("GET", "/api/jobs?status=succeeded&limit=500"),
        api<{ loras: LoraVersion[] }>("GET", `/api/subjects/${subjectId}/loras`),
      ]);
      let styles = styleList.styles;
      // First use with this model: the worker makes each style's examples when it is free.
      if (styles.some((style) => style.samples_status === "missing")) {
        try {
          styles = (await api<StyleList>("POST", "/api/style-samples")).styles;
        } catch {
          /* the cards say "no sample yet" */
        }
      }
      if (styles.some((style) => style.samples_status === "making")) watchExamples();
      const perPortrait = measuredSecondsPerPortrait(jobs);
      const estimate = h("p", { class: "muted shoot-estimate", "aria-live": "polite" });
      for (const image of images) {
        const style = image.recipe.style;
        if (style && !own.has(style)) own.set(style, image); // best first already
      }
      // The fast speed (an LCM-LoRA) is offered only when the model folder has the adapter.
      const fastAvailable = (styleList.speeds ?? []).some(
        (speed) => speed.id === "fast" && speed.available,
      );
      const speed = h(
        "select",
        { id: "shoot-speed", name: "speed" },
        h("option", { value: "exact", selected: true }, t("shootSpeedExact")),
        h("option", { value: "fast" }, t("shootSpeedFast")),
      );
      const count = h(
        "select",
        { id: "count-per-style", name: "count" },
        ...[1, 2, 3, 4, 6, 8].map((n) => h("option", { value: n, selected: n === 2 }, String(n))),
      );
      // The advanced fold (A1111 users): every field empty means "the style's".
      const seed = numberInput("shoot-seed", 0, 4294967295, 1, null); // empty: a new one each time
      const sampler = h(
        "select",
        { id: "shoot-sampler" },
        h("option", { value: "" }, t("styleChoice")),
        ...(styleList.samplers ?? []).flatMap((each) => [
          h("option", { value: each.name }, each.display_name),
          each.karras
            ? h("option", { value: `${each.name}_karras` }, `${each.display_name} Karras`)
            : null,
        ]),
      );
      const steps = numberInput("shoot-steps", 1, 150);
      const cfg = numberInput("shoot-cfg", 1, 30, 0.5);
      const width = numberInput("shoot-width", 64, 2048, 8);
      const height = numberInput("shoot-height", 64, 2048, 8);
      const promptExtra = h("input", {
        type: "text",
        id: "shoot-prompt-extra",
        maxlength: 500,
        placeholder: t("shootPromptExtraPlaceholder"),
      });
      const trained = loras.some((lora) => lora.status === "ready");
      const loraWeight = numberInput("shoot-lora-weight", 0, 2, 0.05);
      const advanced = h(
        "details",
        { class: "advanced card" },
        h("summary", {}, t("advanced")),
        h("p", { class: "muted" }, t("advancedShootIntro")),
        h(
          "div",
          { class: "advanced-fields" },
          field("shoot-seed", t("shootSeed"), seed),
          field("shoot-sampler", t("shootSampler"), sampler),
          field("shoot-steps", t("shootSteps"), steps),
          field("shoot-cfg", t("shootCfg"), cfg),
          field("shoot-width", t("shootWidth"), width),
          field("shoot-height", t("shootHeight"), height),
          trained ? field("shoot-lora-weight", t("shootLoraWeight"), loraWeight) : null,
        ),
        h(
          "label",
          { class: "field", for: "shoot-prompt-extra" },
          h("span", {}, t("shootPromptExtra")),
          promptExtra,
        ),
      );
      const start = h(
        "button",
        { type: "button", class: "primary", disabled: true },
        t("startShootNone"),
      );
      // Templates (the person's face in a chosen picture) shoot beside the styles.
      const templates = templatePicker(
        new Map(styles.map((style) => [style.id, localized(style.name, style.name_zh)])),
        () => updateStart(),
        subjectId,
      );
      stopTemplates = templates.stop;
      const updateStart = () => {
        const total = (selected.size + templates.selected.size) * Number(count.value);
        start.disabled = total === 0;
        start.textContent =
          total === 0
            ? t("startShootNone")
            : total === 1
              ? t("startShootOne")
              : t("startShoot", { count: total });
        estimate.classList.remove("form-error");
        // Measured on this machine kind: a 6-step LCM portrait takes a fifth of the time of a
        // 25-step CFG one (docs/few-step.md).
        const speedFactor = speed.value === "fast" ? 0.2 : 1;
        estimate.textContent =
          total > 0 && perPortrait !== null
            ? t("shootEstimate", { time: formatDuration(total * perPortrait * speedFactor) })
            : "";
      };
      count.addEventListener("change", updateStart);
      speed.addEventListener("change", updateStart);
      const toggle = (id: string, button: HTMLButtonElement) => {
        if (selected.has(id)) selected.delete(id);
        else selected.add(id);
        button.setAttribute("aria-pressed", selected.has(id) ? "true" : "false");
        updateStart();
      };
      start.addEventListener("click", () => {
        const request: Record<string, unknown> = {
          subject_id: subjectId,
          count: Number(count.value),
        };
        if (selected.size) request.styles = [...selected];
        if (fastAvailable && speed.value === "fast") request.speed = "fast";
        if (templates.selected.size) request.templates = templates.request();
        // The browser checks ranges; the server says what is wrong with anything else.
        const numbers: [HTMLInputElement, string][] = [
          [seed, "seed"],
          [steps, "steps"],
          [cfg, "cfg_scale"],
          [width, "width"],
          [height, "height"],
          [loraWeight, "lora_weight"],
        ];
        for (const [input, name] of numbers) {
          if (!input.value || (name === "lora_weight" && !trained)) continue;
          if (!input.checkValidity()) {
            advanced.open = true;
            input.reportValidity();
            return;
          }
          request[name] = Number(input.value);
        }
        if (sampler.value) request.sampler = sampler.value;
        if (promptExtra.value.trim()) request.prompt_extra = promptExtra.value.trim();
        void whileBusy(start, async () => {
          try {
            const shoot = await api<Shoot>("POST", "/api/shoots", request);
            navigate(`/subjects/${subjectId}/gallery?shoot=${shoot.id}`);
          } catch (failure) {
            // In the estimate's place: the server's reason (which field, what it accepts).
            estimate.textContent = errorMessage(failure);
            estimate.classList.add("form-error");
          }
        });
      });
      const sorted = [...styles].sort((a, b) =>
        localized(a.name, a.name_zh).localeCompare(localized(b.name, b.name_zh), locale),
      );
      cards.clear();
      for (const style of sorted) cards.set(style.id, styleCard(style, own.get(style.id), toggle));
      replaceChildren(
        body,
        pageHeading(t("shootTitle"), t("shootIntro", { name: subject.name }), {
          href: `/subjects/${subjectId}`,
          label: t("backTo", { name: subject.name }),
        }),
        h(
          "div",
          { class: "shoot-bar card" },
          h("label", { for: "count-per-style" }, t("perStyle")),
          count,
          fastAvailable ? h("label", { for: "shoot-speed" }, t("shootSpeed")) : null,
          fastAvailable ? speed : null,
          start,
          estimate,
        ),
        advanced,
        h(
          "section",
          { "aria-label": t("chooseStyles") },
          h("div", { class: "style-grid" }, ...cards.values()),
        ),
        templates.element,
      );
    } catch (error) {
      replaceChildren(
        body,
        errorBox(error, () => void load()),
      );
    }
  }
  void load();
  return () => {
    stopEvents?.();
    stopTemplates?.();
  };
}
