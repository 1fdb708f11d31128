// The headline figures of the metrics engine (shopify_app/segments/metrics.py, the same numbers
// `shopify-app analyze` prints): how each is shown and whether a rise is good news. Each has
// its name in metric.<key> and its one-line definition in definition.<key>.

import { money, number, percent, t } from "./i18n.js";

const count = (v) => number(v);
const days = (v) => t("count.days", { count: v });
const amount = (v, currency) => money(v, currency);

export const FIGURES = {
  customers: { format: count, higherIsBetter: true },
  orders: { format: count, higherIsBetter: true },
  revenue: { format: amount, higherIsBetter: true },
  average_order_value: { format: amount, higherIsBetter: true },
  orders_per_customer: { format: (v) => number(v, { maximumFractionDigits: 2 }), higherIsBetter: true },
  repeat_customers: { format: count, higherIsBetter: true },
  repeat_purchase_rate: { format: (v) => percent(v), higherIsBetter: true },
  average_days_between_orders: { format: days, higherIsBetter: false },
  median_days_between_orders: { format: days, higherIsBetter: false },
  clv_simple: { format: amount, higherIsBetter: true },
  clv_predicted_12m: { format: amount, higherIsBetter: true },
};

/** A figure as the page shows it ("—" when there is none). */
export function formatFigure(key, value, currency) {
  return value === null || value === undefined ? "—" : FIGURES[key].format(value, currency);
}

/** The relative change from ``previous`` to ``value`` and whether it is good news; null when
 * either is missing or the previous value is zero. */
export function changeOf(key, value, previous) {
  if (value === null || value === undefined || previous === null || previous === undefined || previous === 0) return null;
  const change = (value - previous) / Math.abs(previous);
  return { change, good: FIGURES[key].higherIsBetter ? change >= 0 : change <= 0 };
}
