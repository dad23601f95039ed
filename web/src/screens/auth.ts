// First-run set-up (with the one-time token doppel printed) and sign-in.

import { Account, api } from "../api";
import { h } from "../dom";
import { t } from "../i18n";
import { navigate, setAccount } from "../main";
import { errorMessage, pageHeading } from "../ui";

function field(label: string, input: HTMLInputElement, hint?: string): HTMLElement {
  return h(
    "label",
    { class: "field" },
    h("span", {}, label),
    input,
    hint ? h("small", {}, hint) : null,
  );
}

// A form whose submit runs `action`; the error shows above the button, in words.
function authForm(
  fields: HTMLElement[],
  buttonLabel: string,
  action: () => Promise<void>,
): HTMLFormElement {
  const error = h("p", { class: "form-error", role: "alert" });
  const button = h("button", { type: "submit", class: "primary" }, buttonLabel);
  const form = h("form", { class: "card auth-form", novalidate: true }, ...fields, error, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    button.disabled = true;
    error.textContent = "";
    try {
      await action();
    } catch (failure) {
      error.textContent = errorMessage(failure);
      button.disabled = false;
    }
  });
  return form;
}

export function renderSetup(main: HTMLElement): void {
  const token = new URLSearchParams(location.search).get("token") ?? "";
  const email = h("input", { type: "email", name: "email", required: true, autocomplete: "email" });
  const name = h("input", { type: "text", name: "display_name", autocomplete: "name" });
  const password = h("input", {
    type: "password",
    name: "password",
    required: true,
    minlength: 8,
    autocomplete: "new-password",
  });
  const notice = h("p", { class: "notice" });
  const form = authForm(
    [
      field(t("email"), email),
      field(t("displayName"), name),
      field(t("password"), password, t("passwordHint")),
    ],
    t("createAccount"),
    async () => {
      const body: Record<string, string> = { token, email: email.value, password: password.value };
      if (name.value.trim()) body.display_name = name.value.trim();
      const answer = await api<{ account: Account }>("POST", "/api/setup", body);
      setAccount(answer.account);
      navigate("/", true);
    },
  );
  main.append(
    h("section", { class: "auth" }, pageHeading(t("setupTitle"), t("setupIntro")), notice, form),
  );
  // Without the printed link the form cannot succeed: say so at once, not after filling it in.
  const hasToken = /^[0-9a-f]{64}$/.test(token);
  if (!hasToken) {
    notice.textContent = t("setupNoToken");
    notice.className = "notice notice-warning";
    notice.setAttribute("role", "alert");
    for (const control of form.querySelectorAll<HTMLInputElement | HTMLButtonElement>(
      "input, button",
    ))
      control.disabled = true;
  }
  void api<{ needed: boolean }>("GET", "/api/setup").then(
    (setup) => {
      if (!setup.needed) {
        notice.textContent = t("setupDone");
        notice.className = "notice";
        form.replaceWith(h("a", { class: "button primary", href: "/sign-in" }, t("signIn")));
      }
    },
    () => {},
  );
  if (hasToken) email.focus();
}

export function renderSignIn(main: HTMLElement): void {
  const email = h("input", {
    type: "email",
    name: "email",
    required: true,
    autocomplete: "username",
  });
  const password = h("input", {
    type: "password",
    name: "password",
    required: true,
    autocomplete: "current-password",
  });
  const form = authForm(
    [field(t("email"), email), field(t("password"), password)],
    t("signIn"),
    async () => {
      const answer = await api<{ account: Account }>("POST", "/api/sessions", {
        email: email.value,
        password: password.value,
      });
      setAccount(answer.account);
      navigate("/", true);
    },
  );
  main.append(h("section", { class: "auth" }, pageHeading(t("signInTitle"), t("tagline")), form));
  email.focus();
}
