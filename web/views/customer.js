// One customer, opened from a member row: their orders, every segment they are in and why, the
// engine's predictions for them, and a link to them in the Shopify admin.

import { ApiError, api } from "../api.js";
import { h } from "../dom.js";
import { date, listOf, money, number, percent, place, reason, segmentName, t } from "../i18n.js";
import { badge, banner, page, section, table, withStates } from "../ui.js";

function customerName(c) {
  const name = [c.first_name, c.last_name].filter(Boolean).join(" ");
  return name || c.email || `#${c.id}`;
}

/** In the admin, App Bridge's Navigation API opens `shopify://admin/...` links (target _top) in
 * the admin itself; the demo has no admin around the page, so it links to where the customer
 * would be on admin.shopify.com, in a new tab. */
function adminLink(shop, id) {
  if (new URLSearchParams(location.search).get("demo") === "1") {
    const store = shop.domain.replace(/\.myshopify\.com$/, "");
    const href = `https://admin.shopify.com/store/${store}/customers/${id}`;
    return h("a", { href, target: "_blank", rel: "noopener", "data-admin-link": id }, t("customer.admin_link"));
  }
  return h("a", { href: `shopify://admin/customers/${id}`, target: "_top", "data-admin-link": id }, t("customer.admin_link"));
}

function address(c) {
  return place(c.country, c.province, c.city) || "—";
}

function facts(c, shop) {
  const currency = shop.currency;
  const row = (label, value, attrs) => [h("dt", null, label), h("dd", attrs || null, value)];
  return section(
    null,
    h(
      "dl",
      { class: "gp-facts" },
      row(t("customer.email"), c.email || "—", { dir: "ltr" }),
      c.company ? row(t("customer.company"), c.company, { dir: "auto" }) : null,
      row(t("customer.location"), address(c), { "data-customer-location": "" }),
      row(t("customer.since"), date(c.since)),
      row(t("members.col.orders"), number(c.orders)),
      row(t("members.col.spent"), money(c.spent, currency)),
    ),
    h("p", null, adminLink(shop, c.id)),
  );
}

function predictionsSection(p, currency) {
  if (!p) return section(t("customer.predictions"), h("p", { class: "gp-subdued", "data-predictions": "none" }, t("customer.no_predictions")));
  const metric = (key, value) =>
    h("div", { class: "gp-metric", "data-prediction": key }, h("p", { class: "gp-metric-label" }, t(`customer.prediction.${key}`)), h("p", { class: "gp-metric-value" }, value));
  const [r, f, m] = p.rfm_score.split("");
  // Without a purchase model the shop has no chance, expected orders or value: none is made up.
  const modelled = p.p_alive !== null;
  return section(
    t("customer.predictions"),
    h(
      "div",
      { class: "gp-metrics" },
      modelled ? metric("p_alive", percent(p.p_alive, 0)) : null,
      modelled ? metric("expected_orders_90d", number(p.expected_orders_90d)) : null,
      modelled ? metric("predicted_value_12m", money(p.predicted_value_12m, currency)) : null,
      metric("next_order_date", date(p.next_order_date, { dateStyle: "medium", timeZone: "UTC" })),
      metric("rfm", [t("reason.rfm", { r, f, m }), p.rfm_group ? ` · ${t(`rfm.${p.rfm_group}`)}` : ""].join("")),
    ),
    h("p", { class: "gp-subdued" }, t(modelled ? "customer.predictions_help" : "customer.no_model")),
  );
}

function segmentsSection(segments, currency) {
  if (!segments.length) return section(t("customer.segments"), h("p", { class: "gp-subdued" }, t("customer.no_segments")));
  return section(
    t("customer.segments"),
    table(
      [t("customer.col.segment"), t("members.col.reason"), t("members.col.since")],
      segments.map((s) => [
        h("a", { href: `#/segments/${s.id}`, dir: "auto" }, segmentName(s)),
        h("span", { class: "gp-reason", dir: "auto" }, reason(s.reason, currency)),
        date(s.since),
      ]),
      { "data-table": "customer-segments" },
    ),
  );
}

function ordersSection(orders, total, currency) {
  if (!orders.length) return section(t("customer.orders"), h("p", { class: "gp-subdued" }, t("customer.no_orders")));
  const items = (o) => listOf(o.items.map((i) => t("customer.item", { quantity: i.quantity, title: i.title })));
  // A status column only when some order has one (cancelled, test).
  const flagged = orders.some((o) => o.cancelled || o.test);
  return section(
    t("customer.orders"),
    orders.length < total ? h("p", { class: "gp-subdued" }, t("customer.orders_shown", { count: orders.length, total })) : null,
    table(
      [
        t("customer.col.date"),
        t("customer.col.order"),
        t("customer.col.items"),
        { label: t("customer.col.amount"), numeric: true },
        { label: t("customer.col.refunded"), numeric: true },
        flagged ? t("customer.col.status") : null,
      ].filter(Boolean),
      orders.map((o) => [
        date(o.processed_at),
        h("span", { dir: "ltr" }, o.name || `#${o.id}`),
        h("span", { dir: "auto" }, items(o) || "—"),
        money(o.amount, o.currency || currency),
        // null: synced before refunds were kept; shown as unknown, not as none.
        h("span", { "data-refunded": o.refunded ?? "" }, o.refunded === null ? t("customer.refund_unknown") : o.refunded > 0 ? money(o.refunded, o.currency || currency) : "—"),
        flagged ? [o.cancelled ? badge(t("customer.status.cancelled"), "critical") : null, o.test ? badge(t("customer.status.test")) : null] : null,
      ].filter((cell) => cell !== null)),
      { "data-table": "customer-orders" },
    ),
    h("p", { class: "gp-subdued" }, t("customer.net_help")),
  );
}

export async function render(root, id) {
  // Not found: another shop's id, a deleted customer or one erased on request (a redaction).
  const load = () => api.get(`/customers/${id}`).catch((error) => {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  });
  const draw = (data) => {
    if (data === null) {
      root.append(banner("warning", t("customer.not_found"), h("p", null, h("a", { href: "#/segments", "data-action": "back" }, t("segment.back")))));
      return;
    }
    const currency = data.shop.currency; // null until Shopify has told us: plain amounts, no guessed symbol
    const back = h("a", { href: "#/segments", class: "gp-back" }, t("customer.back"));
    back.addEventListener("click", (event) => {
      // Back to the segment it was opened from, with its search and page as they were.
      if (history.length > 1) {
        event.preventDefault();
        history.back();
      }
    });
    root.append(
      page(
        customerName(data.customer),
        { "back-action": "#/segments" },
        h("p", null, back),
        facts(data.customer, data.shop),
        predictionsSection(data.predictions, currency),
        segmentsSection(data.segments, currency),
        ordersSection(data.orders, data.customer.orders, currency),
      ),
    );
  };
  await withStates(root, load, draw);
}
