// Analytics: is retention improving? Cohort heat maps (first-order month, first product, first
// discount code), time between orders, the RFM grid, the repeat-rate trend, and the products
// that bring customers back — as accessible SVG, each with its numbers in a table.

import { api } from "../api.js";
import { heatmap, bars, hbars, line } from "../charts.js";
import { h, mount } from "../dom.js";
import { month, number, percent, t } from "../i18n.js";
import { empty, page, section, table, withStates } from "../ui.js";

function dataTable(headers, rows) {
  return h("details", { class: "gp-data" }, h("summary", null, t("analytics.show_data")), table(headers, rows));
}

function cohortSection(cohorts) {
  const kinds = ["month", "product", "discount"];
  const holder = h("div");
  const tabs = h("div", { class: "gp-segmented", role: "tablist", "aria-label": t("analytics.cohorts_by") });
  const show = (kind) => {
    for (const el of tabs.children) el.setAttribute("aria-selected", el.dataset.kind === kind ? "true" : "false");
    const data = cohorts[kind];
    if (!data.rows.length) {
      mount(holder, empty(t(`analytics.no_cohorts.${kind}`)));
      return;
    }
    const max = Math.max(0.01, ...data.rows.flatMap((r) => r.retention));
    const rowLabel = (row) => (kind === "month" ? month(row.key) : row.key);
    mount(
      holder,
      h(
        "div",
        { class: "gp-scroll" },
        heatmap({
          title: t(`analytics.cohort_title.${kind}`),
          desc: t("analytics.cohort_desc", { count: data.rows.length }),
          rows: data.rows,
          columns: data.offsets,
          value: (row, k) => row.retention[k - 1] ?? null,
          scale: (v) => v / max,
          label: (v) => (v ? percent(v, 0) : ""),
          rowLabel: (row) => `${rowLabel(row)} (${number(row.size)})`,
          colLabel: (k) => t("analytics.month_n", { n: k }),
          describe: (row, k, v) => t("analytics.cohort_cell", { cohort: rowLabel(row), n: k, rate: percent(v) }),
        }),
      ),
      dataTable(
        [t("analytics.cohort"), { label: t("analytics.customers"), numeric: true }, ...data.offsets.map((k) => ({ label: t("analytics.month_n", { n: k }), numeric: true }))],
        data.rows.map((row) => [rowLabel(row), number(row.size), ...row.retention.map((v) => percent(v))]),
      ),
    );
  };
  for (const kind of kinds) {
    tabs.append(
      h("button", { type: "button", role: "tab", class: "gp-segment-button", "data-kind": kind, onClick: () => show(kind) }, t(`analytics.by.${kind}`)),
    );
  }
  show("month");
  return section(t("analytics.cohorts"), h("p", { class: "gp-subdued" }, t("analytics.cohorts_help")), tabs, holder);
}

function histogramSection(hist) {
  const labels = hist.bins.map((lo, i) => (i + 1 < hist.bins.length ? `${lo}–${hist.bins[i + 1] - 1}` : `${lo}+`));
  const total = hist.counts.reduce((a, b) => a + b, 0);
  const items = hist.counts.map((count, i) => ({
    label: labels[i],
    value: count,
    title: t("analytics.hist_bar", { range: labels[i], count }),
  }));
  return section(
    t("analytics.histogram"),
    h("p", { class: "gp-subdued" }, t("analytics.histogram_help")),
    total
      ? h(
          "div",
          { class: "gp-scroll" },
          bars({ title: t("analytics.histogram"), desc: t("analytics.hist_desc", { count: total }), items, format: (v) => number(Math.round(v)) }),
        )
      : empty(t("analytics.no_repeat")),
    total ? dataTable([t("analytics.days"), { label: t("analytics.gaps"), numeric: true }], items.map((i) => [i.label, number(i.value)])) : null,
  );
}

function rfmSection(cells, source) {
  const engine = source === "engine";
  const byKey = new Map(cells.map((c) => [`${c.r}-${c.f}`, c]));
  const max = Math.max(1, ...cells.map((c) => c.customers));
  const total = cells.reduce((n, c) => n + c.customers, 0);
  return section(
    t("analytics.rfm"),
    h("p", { class: "gp-subdued" }, t(engine ? "analytics.rfm_help_engine" : "analytics.rfm_help")),
    total
      ? h(
          "div",
          { class: "gp-scroll" },
          heatmap({
            title: t("analytics.rfm"),
            desc: t("analytics.rfm_desc", { count: total }),
            rows: [5, 4, 3, 2, 1],
            columns: [1, 2, 3, 4, 5],
            value: (r, f) => (byKey.get(`${r}-${f}`) || { customers: 0 }).customers,
            scale: (v) => v / max,
            label: (v) => number(v),
            rowLabel: (r) => t("analytics.recency_n", { n: r }),
            colLabel: (f) => t(engine ? "analytics.fm_n" : "analytics.frequency_n", { n: f }),
            describe: (r, f, v) => t("analytics.rfm_cell", { r, f, count: v }),
            cellWidth: 64,
          }),
        )
      : empty(t("analytics.no_data")),
  );
}

function trendSection(trend) {
  return section(
    t("analytics.trend"),
    h("p", { class: "gp-subdued" }, t("analytics.trend_help")),
    trend.length
      ? h(
          "div",
          { class: "gp-scroll" },
          line({
            title: t("analytics.trend"),
            desc: t("analytics.trend_desc", { first: month(trend[0].month), last: month(trend[trend.length - 1].month), rate: percent(trend[trend.length - 1].repeat_rate) }),
            points: trend.map((p) => ({ label: month(p.month), value: p.repeat_rate, title: t("analytics.trend_point", { month: month(p.month), rate: percent(p.repeat_rate), count: p.customers }) })),
            format: (v) => percent(v, 0),
          }),
        )
      : empty(t("analytics.no_data")),
    trend.length ? dataTable([t("analytics.month"), { label: t("analytics.customers"), numeric: true }, { label: t("metric.repeat_rate"), numeric: true }], trend.map((p) => [month(p.month), number(p.customers), percent(p.repeat_rate)])) : null,
  );
}

function productsSection(products) {
  return section(
    t("analytics.products"),
    h("p", { class: "gp-subdued" }, t("analytics.products_help")),
    products.length
      ? h(
          "div",
          { class: "gp-scroll" },
          hbars({
            title: t("analytics.products"),
            desc: t("analytics.products_desc", { title: products[0].title, rate: percent(products[0].repeat_rate) }),
            items: products.map((p) => ({ label: p.title, value: p.repeat_rate, text: percent(p.repeat_rate, 0), title: t("analytics.product_bar", { title: p.title, rate: percent(p.repeat_rate), count: p.customers }) })),
          }),
        )
      : empty(t("analytics.no_data")),
    products.length ? dataTable([t("analytics.product"), { label: t("analytics.customers"), numeric: true }, { label: t("metric.repeat_rate"), numeric: true }], products.map((p) => [p.title, number(p.customers), percent(p.repeat_rate)])) : null,
  );
}

export async function render(root) {
  await withStates(
    root,
    () => api.get("/analytics"),
    (data) => {
      root.append(
        page(
          t("analytics.title"),
          {},
          data.orders
            ? [
                h("p", { class: "gp-subdued" }, t("analytics.summary", { customers: data.customers, orders: data.orders })),
                cohortSection(data.cohorts),
                trendSection(data.repeat_trend),
                histogramSection(data.histogram),
                rfmSection(data.rfm, data.rfm_source),
                productsSection(data.products),
              ]
            : section(null, empty(t("analytics.no_data"), t("home.no_orders_body"))),
        ),
      );
    },
  );
}
