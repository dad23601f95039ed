// Shared pieces of every screen: loading and error states, progress bars, confirmations,
// toasts and the page heading.

import { ApiError } from "./api";
import { h, replaceChildren } from "./dom";
import { language, localizedError, t } from "./i18n";

// Refusals whose server message names what exactly was refused (a field's range, a conflict):
// in Chinese the message is kept after a translated lead, since the server speaks English.
const kExplainedStatuses = new Set([400, 409, 422]);

export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.code === "offline") return t("errorOffline");
    const translated = localizedError(error.code);
    if (language === "zh" && error.message && kExplainedStatuses.has(error.status))
      return t("errorWithReason", { lead: translated ?? t("errorRefused"), reason: error.message });
    if (translated) return translated;
    return error.message || t("errorGeneric", { message: `${error.status} ${error.code}` });
  }
  return t("errorGeneric", { message: String(error) });
}

export function loadingBox(): HTMLElement {
  return h(
    "p",
    { class: "loading", role: "status" },
    h("span", { class: "spinner" }),
    t("loading"),
  );
}

export function errorBox(error: unknown, retry?: () => void): HTMLElement {
  return h(
    "div",
    { class: "error-box", role: "alert" },
    h("p", {}, errorMessage(error)),
    retry ? h("button", { type: "button", onclick: retry }, t("retry")) : null,
  );
}

// Fills `container` with a loading state, then with what `render` draws from `load`'s result,
// or with the error and a retry button.
export async function loadInto<T>(
  container: HTMLElement,
  load: () => Promise<T>,
  render: (value: T) => Node | Node[],
): Promise<void> {
  if (!container.firstChild) replaceChildren(container, loadingBox());
  container.setAttribute("aria-busy", "true");
  try {
    const value = await load();
    const drawn = render(value);
    replaceChildren(container, ...(Array.isArray(drawn) ? drawn : [drawn]));
  } catch (error) {
    replaceChildren(
      container,
      errorBox(error, () => void loadInto(container, load, render)),
    );
  } finally {
    container.removeAttribute("aria-busy");
  }
}

export function progressBar(fraction: number, label: string): HTMLElement {
  const percent = Math.round(Math.min(1, Math.max(0, fraction)) * 100);
  return h(
    "div",
    { class: "progress" },
    h(
      "div",
      {
        class: "progress-track",
        role: "progressbar",
        "aria-valuemin": 0,
        "aria-valuemax": 100,
        "aria-valuenow": percent,
        "aria-label": label,
      },
      h("div", { class: "progress-fill", style: `width:${percent}%` }),
    ),
    h("p", { class: "progress-label", "aria-live": "polite" }, label),
  );
}

export function toast(message: string, kind: "info" | "error" = "info"): void {
  const area = document.getElementById("toasts");
  if (!area) return;
  const item = h("div", { class: `toast toast-${kind}` }, message);
  area.append(item);
  setTimeout(() => item.remove(), 5000);
}

// A modal confirmation; resolves to the typed text when `askFor` is given ("" otherwise), or
// null when cancelled. Native <dialog>: focus stays inside and Escape cancels.
export function confirmDialog(
  message: string,
  confirmLabel: string,
  askFor?: { label: string; type: string },
): Promise<string | null> {
  return new Promise((resolve) => {
    const input = askFor
      ? h("input", { type: askFor.type, required: true, autocomplete: "current-password" })
      : null;
    const dialog = h(
      "dialog",
      { class: "confirm-dialog" },
      h(
        "form",
        { method: "dialog" },
        h("p", {}, message),
        input ? h("label", {}, askFor!.label, input) : null,
        h(
          "div",
          { class: "actions" },
          h("button", { type: "button", class: "secondary", value: "cancel" }, t("cancel")),
          h("button", { type: "submit", class: "danger", value: "confirm" }, confirmLabel),
        ),
      ),
    );
    let answer: string | null = null;
    dialog.querySelector("button.secondary")!.addEventListener("click", () => dialog.close());
    dialog.querySelector("form")!.addEventListener("submit", () => {
      answer = input ? input.value : "";
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(answer);
    });
    document.body.append(dialog);
    dialog.showModal();
    (input ?? dialog.querySelector<HTMLButtonElement>("button.danger"))!.focus();
  });
}

export function pageHeading(title: string, intro?: string, back?: { href: string; label: string }) {
  return h(
    "div",
    { class: "page-heading" },
    back ? h("a", { href: back.href, class: "back-link" }, back.label) : null,
    h("h1", {}, title),
    intro ? h("p", { class: "intro" }, intro) : null,
  );
}

// Runs `action` with the button disabled (and marked busy) so a double click sends nothing twice.
export async function whileBusy(button: HTMLButtonElement, action: () => Promise<void>) {
  if (button.disabled) return;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    await action();
  } catch (error) {
    toast(errorMessage(error), "error");
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}
