// Goldpan's embedded page: a hash router over its views. No build step — plain ES modules.
// One navigation: in the Shopify admin App Bridge draws s-app-nav (index.html) in the admin's
// sidebar, whose links are paths (/segments …) the server serves this page at; elsewhere (the
// demo) the in-page tabs stand in for it. The path mirrors the current section so the admin's
// address bar and sidebar follow, and a reload lands where the merchant was.

import { h, mount } from "./dom.js";
import { init, t } from "./i18n.js";
import { follow } from "./live.js";
import { failure } from "./ui.js";

const params = new URLSearchParams(location.search);

const ROUTES = [
  { pattern: /^#?\/?$/, view: "home", nav: "home", live: true },
  { pattern: /^#\/segments\/?$/, view: "segments", nav: "segments", live: true },
  { pattern: /^#\/segments\/new\/?(?:\?.*)?$/, view: "builder", nav: "segments" },
  { pattern: /^#\/segments\/custom\/([a-z0-9-]+)\/?$/, view: "builder", nav: "segments" },
  { pattern: /^#\/segments\/(\d+)\/?$/, view: "segment", nav: "segments", live: true },
  { pattern: /^#\/customers\/(\d+)\/?$/, view: "customer", nav: "segments" },
  { pattern: /^#\/analytics\/?(?:\?.*)?$/, view: "analytics", nav: "analytics" },
  { pattern: /^#\/settings\/?$/, view: "settings", nav: "settings" },
];

const TABS = [
  ["home", "#/"],
  ["segments", "#/segments"],
  ["analytics", "#/analytics"],
  ["settings", "#/settings"],
];

// Each section's path: what s-app-nav links to and what the server serves the page at.
const PATHS = { home: "/", segments: "/segments", analytics: "/analytics", settings: "/settings" };

let current = null;
let shown = null; // the hash the current view was drawn for

// App Bridge's own script defines window.shopify; the demo's stand-in marks itself.
const bridged = () => Boolean(window.shopify) && !window.shopify.demo;
let following = null;

function renderTabs(active) {
  const tabs = document.getElementById("tabs");
  if (!tabs) return;
  if (bridged()) {
    tabs.remove();
    return;
  }
  mount(
    tabs,
    h(
      "ul",
      { role: "list" },
      TABS.map(([name, href]) =>
        h(
          "li",
          null,
          h(
            "a",
            {
              href,
              class: "gp-tab",
              "aria-current": name === active ? "page" : undefined,
              "data-nav": name,
            },
            t(`nav.${name}`),
          ),
        ),
      ),
    ),
  );
}

async function route() {
  const hash = location.hash || "#/";
  shown = location.hash;
  const match = ROUTES.map((r) => ({ r, m: hash.match(r.pattern) })).find((x) => x.m);
  const root = document.getElementById("app");
  if (current?.dispose) current.dispose();
  current = null;
  following?.();
  following = null;
  if (!match) {
    location.hash = "#/";
    return;
  }
  renderTabs(match.r.nav);
  const path = PATHS[match.r.nav];
  if (location.pathname !== path) history.replaceState(history.state, "", `${path}${location.search}${location.hash}`);
  delete document.body.dataset.view;
  document.title = `${t(`nav.${match.r.nav}`)} · Goldpan`;
  try {
    const module = await import(`./views/${match.r.view}.js`);
    current = (await module.render(root, ...match.m.slice(1))) || null;
    // Home and the segment views follow the shop's changes without a reload.
    if (match.r.live) following = follow(root, (fresh) => module.render(fresh, ...match.m.slice(1)));
    // Tests and screenshots wait for this: the view has loaded its data and drawn itself.
    document.body.dataset.view = match.r.view;
  } catch (error) {
    console.error(error);
    mount(root, failure(error, route));
  }
  root.focus({ preventScroll: true });
}

async function start() {
  if (params.get("demo") === "1") await import("./demo-shim.js");
  await init(params.get("locale") || window.shopify?.config?.locale || "en");
  const root = document.getElementById("app");
  root.tabIndex = -1;
  // Opened at a section's path (an s-app-nav link) without a route: that section.
  const entry = Object.values(PATHS).find((p) => p !== "/" && p === location.pathname.replace(/\/$/, ""));
  if (entry && !location.hash) history.replaceState(history.state, "", `${entry}${location.search}#${entry}`);
  // Back and forward between entries whose paths differ (the path follows the section) fire
  // popstate without hashchange; a change of hash alone fires both.
  const navigated = () => {
    if (location.hash !== shown) route();
  };
  window.addEventListener("hashchange", navigated);
  window.addEventListener("popstate", navigated);
  await route();
  document.body.dataset.ready = "1";
}

start().catch((error) => {
  console.error(error);
  mount(document.getElementById("app"), failure(error));
});
