// Analytics: is retention improving? Every figure of the metrics engine with its definition,
// cohort heat maps (first-order month, first product, first discount code), time between
// orders, the RFM grid, the repeat-rate trend, the products and codes that bring customers
// back, the last 90 days against the 90 before, and how well the purchase rankings did — as
// accessible SVG, each with its numbers in a table. The numbers are the ones the last full
// recompute stored, the same `shopify-app analyze` prints.

import { api, query } from "../api.js";
import { heatmap, bars, hbars, line } from "../charts.js";
import { h, mount, nextId } from "../dom.js";
import { FIGURES, changeOf, formatFigure } from "../figures.js";
import { date, money, month, number, percent, segmentName, t } from "../i18n.js";
import { empty, failure, page, section, table, withStates } from "../ui.js";

const longDate = (iso) => date(iso, { dateStyle: "long", timeZone: "UTC" });

function dataTable(headers, rows) {
  return h("details", { class: "gp-data" }, h("summary", null, t("analytics.show_data")), table(headers, rows));
}

function figuresSection(metrics, currency) {
  const rows = Object.keys(FIGURES).map((key) => {
    const value = metrics.headline[key];
    const previous = metrics.year_before[key];
    const delta = changeOf(key, value, previous);
    return [
      h("span", { "data-figure": key }, t(`metric.${key}`)),
      formatFigure(key, value, currency),
      formatFigure(key, previous, currency),
      delta ? `${delta.change >= 0 ? "▲" : "▼"} ${percent(Math.abs(delta.change))}` : "—",
      h("span", { class: "gp-subdued" }, t(`definition.${key}`)),
    ];
  });
  return section(
    t("analytics.figures"),
    h("p", { class: "gp-subdued" }, t("analytics.figures_help", { date: longDate(metrics.as_of), before: longDate(metrics.year_before.as_of) })),
    table(
      [
        t("analytics.figure"),
        { label: t("analytics.now"), numeric: true },
        { label: t("analytics.year_before"), numeric: true },
        { label: t("analytics.change"), numeric: true },
        t("analytics.definition"),
      ],
      rows,
      { "data-table": "figures" },
    ),
  );
}

// Tabs as the ARIA tabs pattern: one tab in the Tab order, arrow keys (mirrored right to
// left), Home and End move between them and show their panel at once.
function tabList(label, items, panel, show) {
  const list = h("div", { class: "gp-segmented", role: "tablist", "aria-label": label });
  const select = (tab, focus) => {
    for (const el of list.children) {
      const on = el === tab;
      el.setAttribute("aria-selected", on ? "true" : "false");
      el.tabIndex = on ? 0 : -1;
    }
    panel.setAttribute("aria-labelledby", tab.id);
    if (focus) tab.focus();
    show(tab.dataset.kind);
  };
  const keys = { ArrowRight: 1, ArrowLeft: -1, Home: "first", End: "last" };
  for (const [kind, text] of items) {
    const tab = h("button", { type: "button", role: "tab", id: nextId("tab"), class: "gp-segment-button", "data-kind": kind, "aria-controls": panel.id }, text);
    tab.addEventListener("click", () => select(tab, false));
    tab.addEventListener("keydown", (event) => {
      const move = keys[event.key];
      if (!move) return;
      event.preventDefault();
      const tabs = [...list.children];
      let next;
      if (move === "first") next = tabs[0];
      else if (move === "last") next = tabs[tabs.length - 1];
      else {
        const step = document.dir === "rtl" ? -move : move;
        next = tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length];
      }
      select(next, true);
    });
    list.append(tab);
  }
  return { list, select: (kind) => select([...list.children].find((el) => el.dataset.kind === kind), false) };
}

const monthOf = (iso) => iso.slice(0, 7);

function shiftMonth(value, by) {
  const [y, m] = value.split("-").map(Number);
  const d = new Date(Date.UTC(y, m - 1 + by, 1));
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
}

// Cohort heat maps by first-order month, first product or first code; the range of first-order
// months and one segment's members are chosen here and computed by the server on request.
function cohortSection(stored, asOf, segments) {
  const kinds = ["month", "product", "discount"];
  const holder = h("div", { role: "tabpanel", id: nextId("panel"), tabindex: "0", "data-cohorts": "" });
  const status = h("p", { class: "gp-subdued", role: "status", "data-cohort-status": "" });
  const rowLabel = (kind, row) => (kind === "month" ? month(row.key) : (row.key ?? t("analytics.no_code")));
  let cohorts = stored;
  let kind = "month";
  const draw = () => {
    const offsets = Array.from({ length: cohorts.months }, (_, i) => i + 1);
    const rows = cohorts[kind];
    if (!rows.length) {
      mount(holder, empty(t(`analytics.no_cohorts.${kind}`)));
      return;
    }
    const max = Math.max(0.01, ...rows.flatMap((r) => r.retention));
    const label = (row) => rowLabel(kind, row);
    // A month no one in the cohort has completed yet has no figure: a blank cell, not 0%.
    const shown = (v) => (v === null ? "" : percent(v, 0));
    mount(
      holder,
      h(
        "div",
        { class: "gp-scroll" },
        heatmap({
          title: t(`analytics.cohort_title.${kind}`),
          desc: t("analytics.cohort_desc", { count: rows.length }),
          rows,
          columns: offsets,
          value: (row, k) => row.retention[k - 1] ?? null,
          scale: (v) => v / max,
          label: shown,
          rowLabel: (row) => `${label(row)} (${number(row.customers)})`,
          colLabel: (k) => t("analytics.month_n", { n: k }),
          describe: (row, k, v) =>
            v === null ? t("analytics.cohort_cell_later", { cohort: label(row), n: k }) : t("analytics.cohort_cell", { cohort: label(row), n: k, rate: percent(v) }),
        }),
      ),
      dataTable(
        [t("analytics.cohort"), { label: t("analytics.customers"), numeric: true }, ...offsets.map((k) => ({ label: t("analytics.month_n", { n: k }), numeric: true }))],
        rows.map((row) => [label(row), number(row.customers), ...offsets.map((k) => h("span", { "data-cell": k }, shown(row.retention[k - 1] ?? null)))]),
      ),
    );
  };
  const tabs = tabList(
    t("analytics.cohorts_by"),
    kinds.map((k) => [k, t(`analytics.by.${k}`)]),
    holder,
    (chosen) => {
      kind = chosen;
      draw();
    },
  );
  const last = monthOf(asOf);
  const from = h("input", { type: "month", class: "gp-input", value: shiftMonth(last, -(stored.months - 1)), max: last, "data-input": "cohort-from" });
  const to = h("input", { type: "month", class: "gp-input", value: last, max: last, "data-input": "cohort-to" });
  const segment = h(
    "select",
    { class: "gp-input", "data-input": "cohort-segment" },
    h("option", { value: "" }, t("analytics.cohort_everyone")),
    segments.map((s) => h("option", { value: String(s.id) }, segmentName(s))),
  );
  const field = (text, input) => h("label", { class: "gp-field gp-inline" }, h("span", { class: "gp-label" }, text), input);
  let asked = 0;
  const reload = async () => {
    asked += 1;
    const ask = asked;
    holder.setAttribute("aria-busy", "true");
    try {
      const found = await api.get(`/analytics/cohorts${query({ from: from.value, to: to.value, segment: segment.value })}`);
      if (ask !== asked) return; // a later choice is on its way
      cohorts = found;
      status.textContent = t("analytics.cohort_shown", { count: found.month.reduce((n, r) => n + r.customers, 0) });
      draw();
    } catch (error) {
      if (ask !== asked) return;
      status.textContent = "";
      mount(holder, failure(error, reload));
    } finally {
      holder.setAttribute("aria-busy", "false");
    }
  };
  for (const input of [from, to, segment]) input.addEventListener("change", reload);
  tabs.select("month");
  return section(
    t("analytics.cohorts"),
    h("p", { class: "gp-subdued" }, t("analytics.cohorts_help")),
    h("div", { class: "gp-toolbar gp-cohort-filters" }, field(t("analytics.cohort_from"), from), field(t("analytics.cohort_to"), to), field(t("analytics.cohort_segment"), segment)),
    status,
    tabs.list,
    holder,
  );
}

function histogramSection(histogram) {
  const range = (bin) => (bin.to === null ? `${number(bin.from)}+` : `${number(bin.from)}–${number(bin.to)}`);
  const total = histogram.reduce((n, bin) => n + bin.count, 0);
  const items = histogram.map((bin) => ({
    label: range(bin),
    value: bin.count,
    title: t("analytics.hist_bar", { range: range(bin), count: bin.count }),
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

function rfmSection(rfm, currency) {
  const cells = rfm ? rfm.cells : [];
  const byKey = new Map(cells.map((c) => [`${c.r}-${c.fm}`, c]));
  const max = Math.max(1, ...cells.map((c) => c.customers));
  const total = cells.reduce((n, c) => n + c.customers, 0);
  const cell = (r, fm) => byKey.get(`${r}-${fm}`) || { customers: 0, average_spend: null };
  return section(
    t("analytics.rfm"),
    h("p", { class: "gp-subdued" }, t("analytics.rfm_help")),
    total
      ? h(
          "div",
          { class: "gp-scroll" },
          heatmap({
            title: t("analytics.rfm"),
            desc: t("analytics.rfm_desc", { count: total }),
            rows: [5, 4, 3, 2, 1],
            columns: [1, 2, 3, 4, 5],
            value: (r, fm) => cell(r, fm).customers,
            scale: (v) => v / max,
            label: (v) => number(v),
            rowLabel: (r) => t("analytics.recency_n", { n: r }),
            colLabel: (fm) => t("analytics.fm_n", { n: fm }),
            describe: (r, fm, v) => t("analytics.rfm_cell", { r, fm, count: v, spend: money(cell(r, fm).average_spend, currency) }),
            cellWidth: 64,
          }),
        )
      : empty(t("analytics.no_data")),
    total
      ? dataTable(
          [t("analytics.recency"), t("analytics.fm"), { label: t("analytics.customers"), numeric: true }, { label: t("analytics.average_spend"), numeric: true }],
          cells.map((c) => [number(c.r), number(c.fm), number(c.customers), money(c.average_spend, currency)]),
        )
      : null,
  );
}

function trendSection(trend) {
  const shown = trend.filter((p) => p.customers);
  const last = shown[shown.length - 1];
  return section(
    t("analytics.trend"),
    h("p", { class: "gp-subdued" }, t("analytics.trend_help")),
    shown.length
      ? h(
          "div",
          { class: "gp-scroll" },
          line({
            title: t("analytics.trend"),
            desc: t("analytics.trend_desc", { first: month(shown[0].month), last: month(last.month), rate: percent(last.repeat_purchase_rate) }),
            points: shown.map((p) => ({
              label: month(p.month),
              value: p.repeat_purchase_rate,
              title: t("analytics.trend_point", { month: month(p.month), rate: percent(p.repeat_purchase_rate), count: p.customers }),
            })),
            format: (v) => percent(v, 0),
          }),
        )
      : empty(t("analytics.no_data")),
    shown.length
      ? dataTable(
          [t("analytics.month"), { label: t("analytics.customers"), numeric: true }, { label: t("metric.repeat_purchase_rate"), numeric: true }],
          shown.map((p) => [month(p.month), number(p.customers), percent(p.repeat_purchase_rate)]),
        )
      : null,
  );
}

// Products (by first product) and discount codes (by first code) that bring customers back.
function returningSection(kind, rows) {
  const label = (row) => row.key ?? t("analytics.no_code");
  const top = rows.slice(0, 10);
  return section(
    t(`analytics.${kind}`),
    h("p", { class: "gp-subdued" }, t(`analytics.${kind}_help`)),
    top.length
      ? h(
          "div",
          { class: "gp-scroll" },
          hbars({
            title: t(`analytics.${kind}`),
            desc: t("analytics.returning_desc", { title: label(top[0]), rate: percent(top[0].repeat_purchase_rate) }),
            items: top.map((row) => ({
              label: label(row),
              value: row.repeat_purchase_rate,
              text: percent(row.repeat_purchase_rate, 0),
              title: t("analytics.returning_bar", { title: label(row), rate: percent(row.repeat_purchase_rate), count: row.customers }),
            })),
          }),
        )
      : empty(t(`analytics.no_${kind}`)),
    rows.length
      ? dataTable(
          [
            t(`analytics.${kind}_key`),
            { label: t("analytics.customers"), numeric: true },
            { label: t("metric.repeat_purchase_rate"), numeric: true },
            { label: t("analytics.within_90"), numeric: true },
            { label: t("analytics.within_365"), numeric: true },
          ],
          rows.map((row) => [label(row), number(row.customers), percent(row.repeat_purchase_rate), percent(row.returned_within_90_days), percent(row.returned_within_365_days)]),
        )
      : null,
  );
}

function periodSection(period, currency) {
  const keys = ["orders", "revenue", "customers", "returning_customers"];
  const show = (key, value) => (key === "revenue" ? money(value, currency) : number(value));
  return section(
    t("analytics.period_title", { count: period.days }),
    h("p", { class: "gp-subdued" }, t("analytics.period_help", { from: longDate(period.current.start), to: longDate(period.current.end) })),
    table(
      [
        "",
        { label: t("analytics.period_current"), numeric: true },
        { label: t("analytics.period_previous"), numeric: true },
        { label: t("analytics.change"), numeric: true },
      ],
      keys.map((key) => [
        t(`analytics.period_row.${key}`),
        show(key, period.current[key]),
        show(key, period.previous[key]),
        period.change[key] === null ? "—" : percent(period.change[key]),
      ]),
      { "data-table": "period" },
    ),
  );
}

function backtestSection(result) {
  let text;
  if (!result.enough) text = t("backtest.not_enough");
  else if (!result.likely_size) {
    text = t("backtest.none_stood_out", { date: longDate(result.calibration_date), days: result.horizon_days, average: percent(result.store_average, 0) });
  } else {
    text = t("backtest.result", {
      count: result.likely_size,
      date: longDate(result.calibration_date),
      share: percent(result.likely_ordered, 0),
      days: result.horizon_days,
      average: percent(result.store_average, 0),
    });
  }
  return section(
    t("backtest.title"),
    h("p", { "data-backtest": result.enough ? "checked" : "not-enough" }, text),
    result.enough ? h("p", { class: "gp-subdued" }, t("backtest.chosen", { method: t(`backtest.method.${result.chosen}`), count: result.candidates })) : null,
  );
}

export async function render(root) {
  await withStates(
    root,
    async () => {
      const [analytics, list] = await Promise.all([api.get("/analytics"), api.get("/segments")]);
      return { ...analytics, segments: list.segments };
    },
    ({ metrics, currency, segments }) => {
      let body;
      if (!metrics) body = section(null, empty(t("home.not_computed"), t("home.not_computed_body")));
      else if (!metrics.headline.orders) body = section(null, empty(t("analytics.no_data"), t("home.no_orders_body")));
      else {
        body = [
          h("p", { class: "gp-subdued" }, t("analytics.summary", {
            customers: t("count.customers", { count: metrics.headline.customers }),
            orders: t("count.orders", { count: metrics.headline.orders }),
            date: longDate(metrics.as_of),
          })),
          figuresSection(metrics, currency),
          cohortSection(metrics.cohorts, metrics.as_of, segments),
          trendSection(metrics.repeat_rate_trend),
          histogramSection(metrics.days_between_orders_histogram),
          rfmSection(metrics.rfm, currency),
          returningSection("products", metrics.first_product),
          returningSection("codes", metrics.discount_codes),
          periodSection(metrics.previous_period, currency),
          backtestSection(metrics.backtest),
        ];
      }
      root.append(page(t("analytics.title"), {}, body));
    },
  );
}
