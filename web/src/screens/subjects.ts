// The people of this account, each with their cover photo and the stage they are at, and
// adding a new one.

import { api, Subject } from "../api";
import { h } from "../dom";
import { t } from "../i18n";
import { navigate } from "../main";
import { errorMessage, loadInto, pageHeading } from "../ui";

export type Stage = "needs_photos" | "ready_to_train" | "training" | "trained" | "ready_to_shoot";

export function statusText(stage: Stage | string | undefined): string {
  if (stage === "ready_to_shoot") return t("statusReadyToShoot");
  if (stage === "trained") return t("statusTrained");
  if (stage === "training") return t("statusTraining");
  if (stage === "ready_to_train") return t("statusReady");
  return t("statusNew");
}

// The API's stage; an older server sends only the status set by training.
function stageOf(subject: Subject): Stage {
  if (subject.stage) return subject.stage;
  return subject.status === "trained" || subject.status === "training"
    ? subject.status
    : "needs_photos";
}

function subjectCard(subject: Subject): HTMLElement {
  const stage = stageOf(subject);
  return h(
    "li",
    { class: "card subject-card", "data-subject-id": subject.id },
    h(
      "a",
      { href: `/subjects/${subject.id}`, class: "subject-link" },
      subject.cover_photo_id
        ? h("img", {
            class: "avatar cover",
            src: `/api/photos/${subject.cover_photo_id}/crop`,
            alt: t("coverAlt", { name: subject.name }),
            loading: "lazy",
          })
        : h(
            "span",
            { class: "avatar", "aria-hidden": "true" },
            subject.name.trim().charAt(0).toUpperCase(),
          ),
      h("span", { class: "subject-name" }, subject.name),
      h("span", { class: `badge status-${stage}`, "data-stage": stage }, statusText(stage)),
    ),
  );
}

export function renderSubjects(main: HTMLElement): void {
  const list = h("div", { class: "subject-list" });
  const name = h("input", {
    type: "text",
    name: "name",
    required: true,
    maxlength: 80,
    placeholder: t("newSubjectPlaceholder"),
  });
  // What the person is: in every prompt ("ohwx woman") and the training captions.
  const classSelect = h(
    "select",
    { name: "class_word", id: "new-subject-class" },
    ...(["woman", "man", "girl", "boy", "person"] as const).map((word) =>
      h("option", { value: word, selected: word === "person" }, t(`class_${word}`)),
    ),
  );
  // How the studio learns their likeness, with the trade-off in plain words.
  const identityOption = (value: "trained" | "instant", title: string, detail: string) =>
    h(
      "label",
      { class: "identity-option" },
      h("input", {
        type: "radio",
        name: "identity_source",
        value,
        checked: value === "trained",
      }),
      h("span", {}, h("strong", {}, title), h("span", { class: "muted" }, detail)),
    );
  const identityChoice = h(
    "fieldset",
    { class: "identity-choice" },
    h("legend", {}, t("identityTitle")),
    identityOption("trained", t("identityTrained"), t("identityTrainedDetail")),
    identityOption("instant", t("identityInstant"), t("identityInstantDetail")),
  );
  const error = h("p", { class: "form-error", role: "alert" });
  const button = h("button", { type: "submit", class: "primary" }, t("addSubject"));
  const form = h(
    "form",
    { class: "card inline-form" },
    h("label", { class: "field grow" }, h("span", {}, t("newSubjectName")), name),
    h("label", { class: "field" }, h("span", {}, t("classWord")), classSelect),
    identityChoice,
    button,
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!name.value.trim()) {
      name.focus();
      return;
    }
    button.disabled = true;
    error.textContent = "";
    try {
      const subject = await api<Subject>("POST", "/api/subjects", {
        name: name.value.trim(),
        class_word: classSelect.value,
        identity_source:
          identityChoice.querySelector<HTMLInputElement>("input:checked")?.value ?? "trained",
      });
      navigate(`/subjects/${subject.id}`);
    } catch (failure) {
      error.textContent = errorMessage(failure);
      button.disabled = false;
    }
  });
  main.append(pageHeading(t("subjectsTitle"), t("subjectsIntro")), form, list);
  void loadInto(
    list,
    () => api<{ subjects: Subject[] }>("GET", "/api/subjects"),
    ({ subjects }) =>
      subjects.length
        ? h("ul", { class: "cards" }, ...subjects.map(subjectCard))
        : h("p", { class: "empty" }, t("subjectsEmpty")),
  );
}
