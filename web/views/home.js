// Home: what Goldpan does in two lines, sync status (a progress bar while the first import
// runs), notices, the first-steps checklist (its state from the server), and the retention
// headline — the metrics engine's figures as of its last run, each with its definition and the
// same figure a year earlier — plus the segments worth acting on today.

import { api } from "../api.js";
import { h } from "../dom.js";
import { changeOf, formatFigure } from "../figures.js";
import { date, dateTime, number, percent, segmentName, t } from "../i18n.js";
import { badge, banner, button, empty, page, section, withStates } from "../ui.js";

// The headline figures shown here (analytics lists them all).
const HEADLINE = [
  "repeat_purchase_rate",
  "average_days_between_orders",
  "orders_per_customer",
  "average_order_value",
  "clv_simple",
  "clv_predicted_12m",
];

const FOCUS = ["business-buyers", "true-fans", "lapsed-tier-1", "lapsed-tier-2", "one-time-buyers", "vip"];

function syncCard(sync) {
  if (sync.state === "running") {
    const pct = sync.progress === null ? 0 : Math.round(sync.progress * 100);
    const over = new Set(["done", "failed"]); // SyncRunStatus values of a finished run
    const busy = sync.resources.filter((r) => !over.has(r.status));
    const done = busy.reduce((n, r) => n + Math.min(r.done, r.total || r.done), 0);
    const total = busy.reduce((n, r) => n + r.total, 0);
    return banner(
      "info",
      t("sync.running"),
      h(
        "div",
        {
          class: "gp-progress",
          role: "progressbar",
          "aria-valuemin": "0",
          "aria-valuemax": "100",
          "aria-valuenow": String(pct),
          "aria-label": t("sync.running"),
        },
        h("div", { class: "gp-progress-bar", style: `inline-size: ${pct}%` }),
      ),
      h("p", { class: "gp-subdued" }, total ? t("sync.progress", { done, total }) : t("sync.starting")),
    );
  }
  if (sync.state === "never") return banner("info", t("sync.never"), h("p", null, t("sync.never_body")));
  if (sync.state === "failed") return null; // shown as a notice with the error
  return h(
    "p",
    { class: "gp-subdued", "data-sync": "done" },
    badge(t("sync.done_badge"), "success"),
    " ",
    sync.finished_at ? t("sync.done", { when: dateTime(sync.finished_at) }) : "",
  );
}

function notice(n) {
  const params = { ...n.params };
  // The older-orders notice names the first order the figures use (none imported yet: no date).
  if (n.key === "scope_all_orders" && !params.since) return banner(n.tone || "info", t("notice.scope_all_orders.title"), h("p", null, t("notice.scope_all_orders.body_none")));
  if (params.since) params.since = date(params.since, { dateStyle: "long", timeZone: "UTC" });
  return banner(n.tone || "info", t(`notice.${n.key}.title`), h("p", { "data-notice": n.key }, t(`notice.${n.key}.body`, params)));
}

function checklist(steps) {
  const done = steps.filter((s) => s.done).length;
  return section(
    t("home.checklist"),
    h("p", { class: "gp-subdued", "data-checklist-done": String(done) }, t("home.checklist_progress", { done, total: steps.length })),
    h(
      "ol",
      { class: "gp-checklist", "data-checklist": "" },
      steps.map((step) =>
        h(
          "li",
          { class: step.done ? "gp-step gp-step-done" : "gp-step", "data-step": step.key, "data-done": step.done ? "1" : "0" },
          h("span", { class: "gp-step-mark", "aria-hidden": "true" }, step.done ? "✓" : ""),
          h(
            "span",
            { class: "gp-step-body" },
            h("a", { href: step.href }, t(`home.step.${step.key}`)),
            " ",
            badge(step.done ? t("home.step_done") : t("home.step_todo"), step.done ? "success" : undefined),
          ),
        ),
      ),
    ),
  );
}

function metricCard(key, metrics, currency) {
  const value = metrics.headline[key];
  const previous = metrics.year_before[key];
  const delta = changeOf(key, value, previous);
  return h(
    "div",
    { class: "gp-metric", "data-metric": key },
    h("p", { class: "gp-metric-label" }, t(`metric.${key}`)),
    h("p", { class: "gp-metric-value" }, formatFigure(key, value, currency)),
    h("p", { class: "gp-subdued gp-definition", "data-definition": key }, t(`definition.${key}`)),
    previous === null || previous === undefined
      ? null
      : h(
          "p",
          { class: "gp-subdued" },
          t("metric.year_before", { value: formatFigure(key, previous, currency) }),
          " ",
          delta
            ? h(
                "span",
                { class: `gp-delta ${delta.good ? "gp-good" : "gp-bad"}` },
                badge(`${delta.change >= 0 ? "▲" : "▼"} ${percent(Math.abs(delta.change))}`, delta.good ? "success" : "critical"),
              )
            : null,
        ),
  );
}

function headline(metrics, currency) {
  if (!metrics) return empty(t("home.not_computed"), t("home.not_computed_body"));
  if (!metrics.headline.customers) return empty(t("home.no_orders"), t("home.no_orders_body"));
  return [
    h("p", { class: "gp-subdued" }, t("home.headline_help", { date: date(metrics.as_of, { dateStyle: "long", timeZone: "UTC" }) })),
    h("div", { class: "gp-metrics" }, HEADLINE.map((key) => metricCard(key, metrics, currency))),
  ];
}

export async function render(root) {
  let timer = null;
  const load = async () => {
    const [home, list] = await Promise.all([api.get("/home"), api.get("/segments")]);
    return { home, list };
  };
  const draw = ({ home, list }) => {
    const currency = home.shop.currency;
    const focus = list.segments
      .filter((s) => FOCUS.includes(s.handle))
      .sort((a, b) => FOCUS.indexOf(a.handle) - FOCUS.indexOf(b.handle));
    root.append(
      page(
        t("home.title"),
        {},
        h("div", { class: "gp-intro", "data-intro": "" }, h("p", null, t("home.intro_what")), h("p", null, t("home.intro_how"))),
        syncCard(home.sync),
        ...home.notices.map(notice),
        checklist(home.checklist),
        section(t("home.headline"), headline(home.metrics, currency)),
        section(
          t("home.act_now"),
          focus.length
            ? h(
                "ul",
                { class: "gp-cards", role: "list" },
                focus.map((s) =>
                  h(
                    "li",
                    { class: "gp-card" },
                    h("a", { href: `#/segments/${s.id}`, class: "gp-card-link" }, segmentName(s)),
                    h("p", { class: "gp-metric-value" }, number(s.members)),
                    h("p", { class: "gp-subdued" }, t(`segment_help.${s.handle}`)),
                  ),
                ),
              )
            : empty(t("segments.empty"), t("segments.empty_body")),
          h("p", null, button(t("home.all_segments"), { href: "#/segments", variant: "primary" })),
        ),
      ),
    );
    if (home.sync.state === "running") {
      // Refresh quietly (no spinner) while the import runs.
      timer = setTimeout(async () => {
        try {
          const fresh = await load();
          root.replaceChildren();
          draw(fresh);
        } catch {
          timer = setTimeout(() => withStates(root, load, draw), 3000);
        }
      }, 3000);
    }
  };
  await withStates(root, load, draw);
  return { dispose: () => clearTimeout(timer) };
}
