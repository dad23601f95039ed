// The people of this account, and adding a new one.

import { api, Subject } from "../api";
import { h } from "../dom";
import { t } from "../i18n";
import { navigate } from "../main";
import { errorMessage, loadInto, pageHeading } from "../ui";

export function statusText(status: string): string {
  if (status === "trained") return t("statusTrained");
  if (status === "training") return t("statusTraining");
  return t("statusNew");
}

function subjectCard(subject: Subject): HTMLElement {
  return h(
    "li",
    { class: "card subject-card" },
    h(
      "a",
      { href: `/subjects/${subject.id}`, class: "subject-link" },
      h(
        "span",
        { class: "avatar", "aria-hidden": "true" },
        subject.name.trim().charAt(0).toUpperCase(),
      ),
      h("span", { class: "subject-name" }, subject.name),
      h("span", { class: `badge status-${subject.status}` }, statusText(subject.status)),
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
  const error = h("p", { class: "form-error", role: "alert" });
  const button = h("button", { type: "submit", class: "primary" }, t("addSubject"));
  const form = h(
    "form",
    { class: "card inline-form" },
    h("label", { class: "field grow" }, h("span", {}, t("newSubjectName")), name),
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
      const subject = await api<Subject>("POST", "/api/subjects", { name: name.value.trim() });
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
