// The web studio's shell: who is signed in, the top bar, and a small history router that
// draws one screen at a time into <main>.

import "./style.css";
import { Account, api, closeJobStream, setUnauthorizedHandler } from "./api";
import { h, replaceChildren } from "./dom";
import { language, switchLanguage, t } from "./i18n";
import { renderSetup, renderSignIn } from "./screens/auth";
import { renderGallery } from "./screens/gallery";
import { renderIdPhoto } from "./screens/id_photo";
import { renderSettings } from "./screens/settings";
import { renderShoot } from "./screens/shoot";
import { renderSubject } from "./screens/subject";
import { renderSubjects } from "./screens/subjects";

// A screen draws itself into <main> and may return what to undo when the page changes
// (event listeners, timers).
export type Cleanup = () => void;
export type Screen = (main: HTMLElement, params: string[]) => Cleanup | void;

interface Route {
  pattern: RegExp;
  screen: Screen;
  public?: boolean;
}

const routes: Route[] = [
  { pattern: /^\/setup$/, screen: renderSetup, public: true },
  { pattern: /^\/sign-in$/, screen: renderSignIn, public: true },
  { pattern: /^\/$/, screen: renderSubjects },
  { pattern: /^\/subjects\/([^/]+)$/, screen: renderSubject },
  { pattern: /^\/subjects\/([^/]+)\/shoot$/, screen: renderShoot },
  { pattern: /^\/subjects\/([^/]+)\/gallery$/, screen: renderGallery },
  { pattern: /^\/subjects\/([^/]+)\/id-photo$/, screen: renderIdPhoto },
  { pattern: /^\/settings$/, screen: renderSettings },
];

let account: Account | null = null;
let cleanup: Cleanup | void;

export function signedInAccount(): Account | null {
  return account;
}

export function setAccount(value: Account | null): void {
  account = value;
  if (!value) closeJobStream();
  drawTopBar();
}

export function navigate(path: string, replace = false): void {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  void render();
}

function drawTopBar(): void {
  const bar = document.getElementById("top-bar")!;
  const here = location.pathname;
  const link = (href: string, label: string, active: boolean) =>
    h("a", { href, class: active ? "active" : "", "aria-current": active ? "page" : null }, label);
  // The other language, named in itself, so someone who cannot read this one finds it.
  const languageButton = h(
    "button",
    {
      type: "button",
      class: "link-button language-switch",
      lang: language === "zh" ? "en" : "zh-CN",
      title: t("languageSwitchLabel"),
      "aria-label": t("languageSwitchLabel"),
      onclick: switchLanguage,
    },
    t("languageSwitch"),
  );
  replaceChildren(
    bar,
    h(
      "a",
      { href: "/", class: "brand", "aria-label": t("appName") },
      h("span", { class: "logo" }),
      t("appName"),
    ),
    account
      ? h(
          "nav",
          { "aria-label": t("mainNavigation") },
          link("/", t("navSubjects"), here === "/" || here.startsWith("/subjects")),
          link("/settings", t("navSettings"), here === "/settings"),
          h("button", { type: "button", class: "link-button", onclick: signOut }, t("signOut")),
          languageButton,
        )
      : h(
          "span",
          { class: "top-bar-end" },
          h("span", { class: "tagline" }, t("tagline")),
          languageButton,
        ),
  );
}

async function signOut(): Promise<void> {
  try {
    await api("DELETE", "/api/sessions/current");
  } catch {
    /* signed out either way */
  }
  setAccount(null);
  navigate("/sign-in");
}

async function ensureAccount(): Promise<boolean> {
  if (account) return true;
  try {
    const me = await api<{ account: Account }>("GET", "/api/account");
    setAccount(me.account);
    return true;
  } catch {
    return false;
  }
}

async function render(): Promise<void> {
  const main = document.getElementById("main")!;
  if (cleanup) cleanup();
  cleanup = undefined;
  const path = location.pathname.replace(/\/+$/, "") || "/";
  const route = routes.find((each) => each.pattern.test(path));
  if (!route) {
    navigate("/", true);
    return;
  }
  if (!route.public && !(await ensureAccount())) {
    const setup = await api<{ needed: boolean }>("GET", "/api/setup").catch(() => null);
    navigate(setup?.needed ? "/setup" : "/sign-in", true);
    return;
  }
  drawTopBar();
  const params = route.pattern.exec(path)!.slice(1).map(decodeURIComponent);
  main.replaceChildren();
  cleanup = route.screen(main, params);
  window.scrollTo(0, 0);
}

// In-page links go through the router; downloads, new tabs and /api/ links do not.
document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const anchor = (event.target as Element).closest?.("a");
  if (!anchor || anchor.hasAttribute("download") || anchor.target) return;
  const url = new URL(anchor.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/api/")) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});

window.addEventListener("popstate", () => void render());
setUnauthorizedHandler(() => {
  if (!account) return;
  setAccount(null);
  navigate("/sign-in", true);
});

document.documentElement.lang = language === "zh" ? "zh-CN" : "en";
document.title = `${t("appName")} · ${t("tagline")}`;
document.querySelector(".skip-link")!.textContent = t("skipToContent");
void render();
