// The style picker: cards with each style's name, description and (once this person has one)
// their best portrait in it; how many per style; then the shoot starts and the gallery shows it.

import { api, Image, Job, Shoot, StylePack, Subject } from "../api";
import { h, replaceChildren } from "../dom";
import { formatDuration, locale, localized, t } from "../i18n";
import { navigate } from "../main";
import { errorBox, loadingBox, pageHeading, whileBusy } from "../ui";

function styleCard(
  style: StylePack,
  sample: Image | undefined,
  toggle: (id: string, button: HTMLButtonElement) => void,
): HTMLElement {
  const name = localized(style.name, style.name_zh);
  const button = h(
    "button",
    {
      type: "button",
      class: "style-card",
      "aria-pressed": "false",
      "data-style-id": style.id,
    },
    h(
      "span",
      { class: "style-sample" },
      sample
        ? h("img", { src: sample.png_url, alt: t("sample", { style: name }), loading: "lazy" })
        : h("span", { class: "no-sample" }, t("noSample")),
    ),
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

export function renderShoot(main: HTMLElement, [subjectId]: string[]): void {
  const body = h("div", {}, loadingBox());
  main.append(body);
  const selected = new Set<string>();

  async function load(): Promise<void> {
    try {
      const [subject, { styles }, { images }, { jobs }] = await Promise.all([
        api<Subject>("GET", `/api/subjects/${subjectId}`),
        api<{ styles: StylePack[] }>("GET", "/api/styles"),
        api<{ images: Image[] }>("GET", `/api/subjects/${subjectId}/images`),
        api<{ jobs: Job[] }>("GET", "/api/jobs?status=succeeded&limit=500"),
      ]);
      const perPortrait = measuredSecondsPerPortrait(jobs);
      const estimate = h("p", { class: "muted shoot-estimate", "aria-live": "polite" });
      const samples = new Map<string, Image>();
      for (const image of images) {
        const style = image.recipe.style;
        if (style && !samples.has(style)) samples.set(style, image); // best first already
      }
      const count = h(
        "select",
        { id: "count-per-style", name: "count" },
        ...[1, 2, 3, 4, 6, 8].map((n) => h("option", { value: n, selected: n === 2 }, String(n))),
      );
      const seed = h("input", {
        type: "number",
        id: "shoot-seed",
        min: 0,
        max: 4294967295,
        inputmode: "numeric",
      });
      const advanced = h(
        "details",
        { class: "advanced card" },
        h("summary", {}, t("advanced")),
        h("p", { class: "muted" }, t("advancedShootIntro")),
        h("label", { class: "field", for: "shoot-seed" }, h("span", {}, t("shootSeed")), seed),
      );
      const start = h(
        "button",
        { type: "button", class: "primary", disabled: true },
        t("startShootNone"),
      );
      const updateStart = () => {
        const total = selected.size * Number(count.value);
        start.disabled = total === 0;
        start.textContent = total === 0 ? t("startShootNone") : t("startShoot", { count: total });
        estimate.textContent =
          total > 0 && perPortrait !== null
            ? t("shootEstimate", { time: formatDuration(total * perPortrait) })
            : "";
      };
      count.addEventListener("change", updateStart);
      const toggle = (id: string, button: HTMLButtonElement) => {
        if (selected.has(id)) selected.delete(id);
        else selected.add(id);
        button.setAttribute("aria-pressed", selected.has(id) ? "true" : "false");
        updateStart();
      };
      start.addEventListener("click", () =>
        whileBusy(start, async () => {
          const body: Record<string, unknown> = {
            subject_id: subjectId,
            styles: [...selected],
            count: Number(count.value),
          };
          if (seed.value && seed.checkValidity()) body.seed = Number(seed.value);
          const shoot = await api<Shoot>("POST", "/api/shoots", body);
          navigate(`/subjects/${subjectId}/gallery?shoot=${shoot.id}`);
        }),
      );
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
          start,
          estimate,
        ),
        advanced,
        h(
          "section",
          { "aria-label": t("chooseStyles") },
          h(
            "div",
            { class: "style-grid" },
            ...[...styles]
              .sort((a, b) =>
                localized(a.name, a.name_zh).localeCompare(localized(b.name, b.name_zh), locale),
              )
              .map((style) => styleCard(style, samples.get(style.id), toggle)),
          ),
        ),
      );
    } catch (error) {
      replaceChildren(
        body,
        errorBox(error, () => void load()),
      );
    }
  }
  void load();
}
