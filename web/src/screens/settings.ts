// Settings: the models new work uses (list, add by path, default), how much this account
// stores, and privacy (delete a person and everything made from them, delete the account).

import { api, Model, Storage, Subject } from "../api";
import { h } from "../dom";
import { formatBytes, t, TextKey } from "../i18n";
import { navigate, setAccount } from "../main";
import { confirmDialog, errorMessage, loadInto, pageHeading, toast, whileBusy } from "../ui";

// Asks, then deletes; true when the subject is gone.
export async function deleteSubject(subject: Subject): Promise<boolean> {
  const answer = await confirmDialog(
    t("deleteSubjectConfirm", { name: subject.name }),
    t("deleteSubject", { name: subject.name }),
  );
  if (answer === null) return false;
  try {
    await api("DELETE", `/api/subjects/${subject.id}`);
    toast(t("deleted"));
    return true;
  } catch (error) {
    toast(errorMessage(error), "error");
    return false;
  }
}

type ModelKind = "checkpoint" | "ip_adapter" | "image_encoder";

const modelKinds: { kind: ModelKind; title: TextKey; option: TextKey }[] = [
  { kind: "checkpoint", title: "modelsCheckpoints", option: "modelKindCheckpoint" },
  { kind: "ip_adapter", title: "modelsIpAdapters", option: "modelKindIpAdapter" },
  { kind: "image_encoder", title: "modelsImageEncoders", option: "modelKindImageEncoder" },
];

// What a registered model is, after its name: the built-in one, or its family (and an
// adapter's variant, an encoder's width) and path.
function modelDetails(model: Model): string {
  if (model.builtin) return t("builtinModel");
  const parts = [model.family];
  if (model.variant) parts.push(model.variant);
  if (model.hidden_size) parts.push(String(model.hidden_size));
  return `${parts.join(" · ")} · ${model.path}`;
}

function modelsSection(): HTMLElement {
  const list = h("div", {});
  const path = h("input", {
    type: "text",
    name: "path",
    required: true,
    placeholder: t("modelPathPlaceholder"),
    spellcheck: "false",
  });
  const kindSelect = h(
    "select",
    { name: "kind", id: "model-kind" },
    ...modelKinds.map(({ kind, option }) => h("option", { value: kind }, t(option))),
  );
  const error = h("p", { class: "form-error", role: "alert" });
  const add = h("button", { type: "submit", class: "secondary" }, t("addModel"));
  const form = h(
    "form",
    { class: "inline-form" },
    h("label", { class: "field grow" }, h("span", {}, t("modelPath")), path),
    h("label", { class: "field" }, h("span", {}, t("modelKind")), kindSelect),
    add,
    error,
  );
  const modelItem = (model: Model) => {
    const makeDefault = h("button", { type: "button", class: "secondary small" }, t("makeDefault"));
    makeDefault.addEventListener("click", () =>
      whileBusy(makeDefault, async () => {
        await api("PUT", `/api/models/${model.id}/default`);
        await draw();
      }),
    );
    const checkpoint = (model.kind ?? "checkpoint") === "checkpoint";
    return h(
      "li",
      { class: "model", "data-model-id": model.id, "data-kind": model.kind ?? "checkpoint" },
      h(
        "div",
        {},
        h("strong", {}, model.name),
        " ",
        h("span", { class: "muted" }, modelDetails(model)),
      ),
      // Only a checkpoint draws; adapters and encoders help it.
      !checkpoint
        ? null
        : model.default
          ? h("span", { class: "badge status-trained" }, t("defaultModel"))
          : makeDefault,
    );
  };
  const draw = () =>
    loadInto(
      list,
      () => api<{ models: Model[] }>("GET", "/api/models"),
      ({ models }) =>
        h(
          "div",
          {},
          ...modelKinds.map(({ kind, title }) => {
            const ofKind = models.filter((model) => (model.kind ?? "checkpoint") === kind);
            return h(
              "div",
              { class: "model-group", "data-kind": kind },
              h("h3", {}, t(title)),
              kind === "ip_adapter" ? h("p", { class: "muted" }, t("modelsIdentityIntro")) : null,
              ofKind.length
                ? h("ul", { class: "model-list" }, ...ofKind.map(modelItem))
                : h("p", { class: "muted" }, t("modelsNone")),
            );
          }),
        ),
    );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    error.textContent = "";
    if (!path.value.trim()) return path.focus();
    void whileBusy(add, async () => {
      try {
        await api("POST", "/api/models", { path: path.value.trim(), kind: kindSelect.value });
        path.value = "";
        await draw();
      } catch (failure) {
        error.textContent = errorMessage(failure);
      }
    });
  });
  void draw();
  return h(
    "section",
    { class: "card", "aria-labelledby": "models-title" },
    h("h2", { id: "models-title" }, t("modelsTitle")),
    h("p", { class: "intro" }, t("modelsIntro")),
    list,
    form,
  );
}

function storageSection(): HTMLElement {
  const body = h("div", {});
  void loadInto(
    body,
    () => api<Storage>("GET", "/api/account/storage"),
    (storage) => {
      const row = (label: string, count: number | null, bytes: number) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, label),
          h("td", {}, count === null ? "" : count === 1 ? t("oneItem") : t("items", { count })),
          h("td", { class: "number" }, formatBytes(bytes)),
        );
      return h(
        "table",
        { class: "storage" },
        h(
          "tbody",
          {},
          row(t("storagePhotos"), storage.photos.count, storage.photos.bytes),
          row(t("storageImages"), storage.images.count, storage.images.bytes),
          row(t("storageLoras"), storage.loras.count, storage.loras.bytes),
          row(t("storageTotal"), null, storage.total_bytes),
        ),
      );
    },
  );
  return h(
    "section",
    { class: "card", "aria-labelledby": "storage-title" },
    h("h2", { id: "storage-title" }, t("storageTitle")),
    body,
  );
}

function privacySection(): HTMLElement {
  const subjects = h("div", {});
  const draw = () =>
    loadInto(
      subjects,
      () => api<{ subjects: Subject[] }>("GET", "/api/subjects"),
      (answer) =>
        answer.subjects.length
          ? h(
              "ul",
              { class: "privacy-list" },
              ...answer.subjects.map((subject) => {
                const button = h(
                  "button",
                  { type: "button", class: "danger" },
                  t("deleteSubject", { name: subject.name }),
                );
                button.addEventListener("click", async () => {
                  if (await deleteSubject(subject)) await draw();
                });
                return h("li", {}, button);
              }),
            )
          : h("p", { class: "muted" }, t("noSubjects")),
    );
  const deleteAccount = h("button", { type: "button", class: "danger" }, t("deleteAccount"));
  deleteAccount.addEventListener("click", async () => {
    const password = await confirmDialog(t("deleteAccountConfirm"), t("deleteAccount"), {
      label: t("password"),
      type: "password",
    });
    if (password === null) return;
    try {
      await api("DELETE", "/api/account", { password });
      setAccount(null);
      navigate("/sign-in", true);
    } catch (error) {
      toast(errorMessage(error), "error");
    }
  });
  void draw();
  return h(
    "section",
    { class: "card", "aria-labelledby": "privacy-title" },
    h("h2", { id: "privacy-title" }, t("privacyTitle")),
    h("p", { class: "intro" }, t("privacyIntro")),
    subjects,
    h("p", { class: "danger-zone" }, deleteAccount),
  );
}

export function renderSettings(main: HTMLElement): void {
  main.append(pageHeading(t("settingsTitle")), modelsSection(), storageSection(), privacySection());
}
