// Home: sync status (a progress bar while the first import runs), notices, and the retention
// headline against the previous period, plus the segments worth acting on today.

import { api } from "../api.js";
import { h } from "../dom.js";
import { dateTime, money, number, percent, segmentName, t } from "../i18n.js";
import { badge, banner, button, empty, page, section, withStates } from "../ui.js";

// For each headline metric: how to show it and whether a rise is good news.
const METRICS = {
  repeat_rate: { format: (v) => percent(v), higherIsBetter: true },
  days_between_orders: { format: (v) => t("unit.days", { count: Math.round(v) }), higherIsBetter: false },
  orders_per_customer: { format: (v) => number(v, { maximumFractionDigits: 2 }), higherIsBetter: true },
  aov: { format: (v, c) => money(v, c), higherIsBetter: true },
  clv: { format: (v, c) => money(v, c), higherIsBetter: true },
};

const FOCUS = ["business-buyers", "true-fans", "lapsed-60", "lapsed-90", "one-time-buyers", "vip"];

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
  return banner(n.tone || "info", t(`notice.${n.key}.title`), h("p", null, t(`notice.${n.key}.body`, n.params)));
}

function metricCard(metric, currency, predicted) {
  const spec = METRICS[metric.key];
  const { value, previous } = metric;
  let delta = null;
  if (value !== null && previous !== null && previous !== 0) {
    const change = (value - previous) / Math.abs(previous);
    const good = spec.higherIsBetter ? change >= 0 : change <= 0;
    delta = h(
      "span",
      { class: `gp-delta ${good ? "gp-good" : "gp-bad"}` },
      badge(`${change >= 0 ? "▲" : "▼"} ${percent(Math.abs(change))}`, good ? "success" : "critical"),
    );
  }
  return h(
    "div",
    { class: "gp-metric", "data-metric": metric.key },
    h("p", { class: "gp-metric-label" }, t(`metric.${metric.key}`)),
    h("p", { class: "gp-metric-value" }, value === null ? "—" : spec.format(value, currency)),
    h(
      "p",
      { class: "gp-subdued" },
      t("metric.previous", { value: previous === null ? "—" : spec.format(previous, currency) }),
      " ",
      delta,
    ),
    metric.key === "clv" && predicted !== null && predicted !== undefined
      ? h("p", { class: "gp-subdued", "data-predicted-clv": "" }, t("metric.predicted_clv", { value: money(predicted, currency) }))
      : null,
  );
}

export async function render(root) {
  let timer = null;
  const load = async () => {
    const [home, list] = await Promise.all([api.get("/home"), api.get("/segments")]);
    return { home, list };
  };
  const draw = ({ home, list }) => {
    const currency = home.shop.currency || "USD";
    const focus = list.segments
      .filter((s) => FOCUS.includes(s.handle))
      .sort((a, b) => FOCUS.indexOf(a.handle) - FOCUS.indexOf(b.handle));
    root.append(
      page(
        t("home.title"),
        {},
        syncCard(home.sync),
        ...home.notices.map(notice),
        section(
          t("home.headline"),
          h("p", { class: "gp-subdued" }, t("home.headline_help")),
          home.headline.customers
            ? h("div", { class: "gp-metrics" }, home.headline.metrics.map((m) => metricCard(m, currency, home.headline.predicted_clv)))
            : empty(t("home.no_orders"), t("home.no_orders_body")),
        ),
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
