// Analytics: is retention improving? Every figure of the metrics engine with its definition,
// cohort heat maps (first-order month, first product, first discount code), time between
// orders, the RFM grid, the repeat-rate trend, the products and codes that bring customers
// back, the last 90 days against the 90 before, and how well the purchase rankings did — as
// accessible SVG, each with its numbers in a table. Unfiltered, the numbers are the ones the
// last full recompute stored, the same `shopify-app analyze` prints; one filter bar (a segment,
// a range of months, kept in the URL hash) has the server compute them for those customers.

import { api, query } from "../api.js";
import { heatmap, bars, hbars, line } from "../charts.js";
import { h, mount, nextId } from "../dom.js";
import { FIGURES, changeOf, formatFigure } from "../figures.js";
import { date, money, month, number, percent, segmentName, t } from "../i18n.js";
import { button, empty, failure, page, section, table, withStates } from "../ui.js";
import { GROUPS, groupOf } from "./segments.js";

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

// Cohort heat maps by first-order month, first product or first code.
function cohortSection(cohorts) {
  const kinds = ["month", "product", "discount"];
  const holder = h("div", { role: "tabpanel", id: nextId("panel"), tabindex: "0", "data-cohorts": "" });
  const rowLabel = (kind, row) => (kind === "month" ? month(row.key) : (row.key ?? t("analytics.no_code")));
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
  tabs.select("month");
  return section(
    t("analytics.cohorts"),
    h("p", { class: "gp-subdued" }, t("analytics.cohorts_help")),
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

function backtestSection(result, filtered) {
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
    filtered ? h("p", { class: "gp-subdued", "data-note": "backtest" }, t("analytics.filter.backtest_whole_shop")) : null,
    h("p", { "data-backtest": result.enough ? "checked" : "not-enough" }, text),
    result.enough ? h("p", { class: "gp-subdued" }, t("backtest.chosen", { method: t(`backtest.method.${result.chosen}`), count: result.candidates })) : null,
  );
}

// The filter as the URL hash keeps it (`#/analytics?segment=12&from=2025-01&to=2025-12`).
function hashFilter() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  return { segment: params.get("segment") || "", from: params.get("from") || "", to: params.get("to") || "" };
}

const filterHash = (filter) => `#/analytics${query(filter)}`;

// One bar for the whole page: a change is a new hash, so reload and deep links keep it.
function filterBar(filter, segments, lastMonth) {
  const segment = h(
    "select",
    { class: "gp-input", "data-input": "filter-segment" },
    h("option", { value: "" }, t("analytics.filter.everyone")),
    GROUPS.map((group) => {
      const rows = segments.filter((s) => s.defined !== false && groupOf(s) === group);
      return rows.length
        ? h(
            "optgroup",
            { label: t(`segments.group.${group}`) },
            rows.map((s) => h("option", { value: String(s.id) }, segmentName(s))),
          )
        : null;
    }),
  );
  segment.value = filter.segment;
  const monthInput = (name, value) => h("input", { type: "month", class: "gp-input", value, max: lastMonth || undefined, "data-input": `filter-${name}` });
  const from = monthInput("from", filter.from);
  const to = monthInput("to", filter.to);
  const field = (text, input) => h("label", { class: "gp-field gp-inline" }, h("span", { class: "gp-label" }, text), input);
  const go = () => {
    location.hash = filterHash({ segment: segment.value, from: from.value, to: to.value });
  };
  for (const input of [segment, from, to]) input.addEventListener("change", go);
  const on = Boolean(filter.segment || filter.from);
  return h(
    "div",
    { class: "gp-toolbar gp-filters", role: "group", "aria-label": t("analytics.filter.label"), "data-filter": filterHash(filter) },
    field(t("analytics.filter.segment"), segment),
    field(t("analytics.filter.from"), from),
    field(t("analytics.filter.to"), to),
    on ? button(t("analytics.filter.clear"), { "data-action": "clear-filter", onClick: () => (location.hash = "#/analytics") }) : null,
  );
}

// What the filter means for the figures below, in one line each.
function filterNote(filter, metrics, segments) {
  const chosen = segments.find((s) => String(s.id) === String(filter.segment));
  return h(
    "div",
    { "data-note": "filter" },
    filter.segment ? h("p", { class: "gp-subdued" }, t("analytics.filter.segment_note", { segment: chosen ? segmentName(chosen) : `#${filter.segment}` })) : null,
    filter.from
      ? h("p", { class: "gp-subdued" }, t("analytics.filter.range_note", { from: month(filter.from), to: month(filter.to), end: longDate(metrics.as_of) }))
      : null,
  );
}

export async function render(root) {
  const asked = hashFilter();
  await withStates(
    root,
    async () => {
      const list = await api.get("/segments");
      try {
        return { ...(await api.get(`/analytics${query(asked)}`)), segments: list.segments };
      } catch (error) {
        // A filter the server refuses (a bad month, another shop's segment) is said beside
        // the bar, which stays to fix it.
        if (error?.status === 400 || error?.status === 404) return { refused: error, segments: list.segments };
        throw error;
      }
    },
    ({ metrics, currency, segments, filter, refused }) => {
      const shown = filter ? { segment: filter.segment ? String(filter.segment) : "", from: filter.from || "", to: filter.to || "" } : asked;
      const filtered = Boolean(shown.segment || shown.from);
      const bar = filterBar(shown, segments, metrics ? metrics.as_of.slice(0, 7) : "");
      let body;
      if (refused) body = [bar, failure(refused)];
      else if (!metrics) body = section(null, empty(t("home.not_computed"), t("home.not_computed_body")));
      else if (!metrics.headline.orders) body = [bar, filtered ? filterNote(shown, metrics, segments) : null, section(null, empty(t("analytics.no_data"), t("home.no_orders_body")))];
      else {
        body = [
          bar,
          filtered ? filterNote(shown, metrics, segments) : null,
          h("p", { class: "gp-subdued" }, t("analytics.summary", {
            customers: t("count.customers", { count: metrics.headline.customers }),
            orders: t("count.orders", { count: metrics.headline.orders }),
            date: longDate(metrics.as_of),
          })),
          figuresSection(metrics, currency),
          cohortSection(metrics.cohorts),
          trendSection(metrics.repeat_rate_trend),
          histogramSection(metrics.days_between_orders_histogram),
          rfmSection(metrics.rfm, currency),
          returningSection("products", metrics.first_product),
          returningSection("codes", metrics.discount_codes),
          periodSection(metrics.previous_period, currency),
          backtestSection(metrics.backtest, filtered),
        ];
      }
      root.append(page(t("analytics.title"), {}, body));
    },
  );
}
