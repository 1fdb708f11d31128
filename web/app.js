// Goldpan's embedded page: a hash router over five views. No build step — plain ES modules.

import { h, mount } from "./dom.js";
import { init, t } from "./i18n.js";
import { failure } from "./ui.js";

const params = new URLSearchParams(location.search);

const ROUTES = [
  { pattern: /^#?\/?$/, view: "home", nav: "home" },
  { pattern: /^#\/segments\/?$/, view: "segments", nav: "segments" },
  { pattern: /^#\/segments\/new\/?(?:\?.*)?$/, view: "builder", nav: "segments" },
  { pattern: /^#\/segments\/custom\/([a-z0-9-]+)\/?$/, view: "builder", nav: "segments" },
  { pattern: /^#\/segments\/(\d+)\/?$/, view: "segment", nav: "segments" },
  { pattern: /^#\/customers\/(\d+)\/?$/, view: "customer", nav: "segments" },
  { pattern: /^#\/analytics\/?$/, view: "analytics", nav: "analytics" },
  { pattern: /^#\/settings\/?$/, view: "settings", nav: "settings" },
];

const TABS = [
  ["home", "#/"],
  ["segments", "#/segments"],
  ["analytics", "#/analytics"],
  ["settings", "#/settings"],
];

let current = null;

function renderTabs(active) {
  const tabs = document.getElementById("tabs");
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
  const match = ROUTES.map((r) => ({ r, m: hash.match(r.pattern) })).find((x) => x.m);
  const root = document.getElementById("app");
  if (current?.dispose) current.dispose();
  current = null;
  if (!match) {
    location.hash = "#/";
    return;
  }
  renderTabs(match.r.nav);
  delete document.body.dataset.view;
  document.title = `${t(`nav.${match.r.nav}`)} · Goldpan`;
  try {
    const module = await import(`./views/${match.r.view}.js`);
    current = (await module.render(root, ...match.m.slice(1))) || null;
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
  window.addEventListener("hashchange", route);
  await route();
  document.body.dataset.ready = "1";
}

start().catch((error) => {
  console.error(error);
  mount(document.getElementById("app"), failure(error));
});
