// Actions on the settings page: a win-back discount switch per lapsed tier (its code, status and
// end date once Shopify has it), a hold-out switch per tier, the switch that writes Goldpan's
// scores to customer metafields, and the results: treated vs hold-out customers, redemptions and
// customers recovered, each figure with its 95% interval and the number of customers behind it.

import { api } from "../api.js";
import { h, mount } from "../dom.js";
import { date, money, month, number, percent, segmentName, t } from "../i18n.js";
import { badge, button, confirmDialog, failure, section, table, toast } from "../ui.js";
import { effectView } from "./settings.js";

const HOLDOUT_SHARE = 0.1;

const TONES = { active: "success", ended: "info", error: "critical" };

function status(tier) {
  const label = badge(t(`actions.status.${tier.status}`), TONES[tier.status]);
  const parts = [label];
  if (tier.code) parts.push(h("code", { "data-code": tier.code }, tier.code));
  if (tier.status === "active" && tier.ends_at) parts.push(h("span", { class: "gp-subdued" }, t("actions.until", { date: date(tier.ends_at) })));
  if (tier.error) parts.push(h("span", { class: "gp-subdued" }, tier.error));
  return h("span", { class: "gp-actions" }, ...parts);
}

// One group's figures, or why they are not shown yet.
function groupCell(group, currency, key) {
  if (!group.customers) return h("span", { class: "gp-subdued" }, "—");
  if (!group.enough) return h("span", { class: "gp-subdued", "data-too-few": "" }, t("actions.results_too_few", { count: number(group.customers) }));
  const text =
    key === "rate"
      ? t("actions.results_rate", { value: percent(group.rate), low: percent(group.rate_ci[0]), high: percent(group.rate_ci[1]), count: number(group.customers) })
      : t("actions.results_money", { value: money(group.revenue_per_customer, currency), low: money(group.revenue_ci[0], currency), high: money(group.revenue_ci[1], currency) });
  return h("span", { "data-figure": key }, text);
}

function resultsPanel(results) {
  const name = (handle) => segmentName({ handle, name: results.names[handle] || handle });
  const currency = results.currency;
  const tiers = results.tiers.map((tier) =>
    h(
      "li",
      { "data-result-tier": tier.segment },
      h("strong", null, name(tier.segment)),
      " ",
      t("actions.results_tier", {
        code: tier.codes.length ? t("actions.results_codes", { codes: tier.codes.join(", ") }) : t("actions.results_no_code"),
        redemptions: tier.redemptions,
        redemption_revenue: money(tier.redemption_revenue, currency),
        recovered: number(tier.recovered),
        entered: tier.entered,
        recovered_revenue: money(tier.recovered_revenue, currency),
      }),
    ),
  );
  const rows = results.cohorts.map((c) => [
    name(c.segment),
    c.open ? `${month(c.month)} · ${t("actions.results_open")}` : month(c.month),
    groupCell(c.treated, currency, "rate"),
    groupCell(c.held_out, currency, "rate"),
    groupCell(c.treated, currency, "revenue"),
    groupCell(c.held_out, currency, "revenue"),
  ]);
  return h(
    "div",
    { "data-actions": "results" },
    h("h3", null, t("actions.results")),
    h("p", { class: "gp-subdued" }, t("actions.results_help", { days: number(results.window_days), min: number(results.min_group) })),
    h("ul", { class: "gp-action-list" }, tiers),
    rows.length
      ? table(
          [
            t("actions.results_segment"),
            t("actions.results_month"),
            { label: t("actions.results_treated_rate"), numeric: true },
            { label: t("actions.results_held_rate"), numeric: true },
            { label: t("actions.results_treated_revenue"), numeric: true },
            { label: t("actions.results_held_revenue"), numeric: true },
          ],
          rows,
          { "data-results": "cohorts" },
        )
      : h("p", { class: "gp-subdued", "data-results": "none" }, t("actions.results_none")),
  );
}

/** A segment's hold-out: its badge and the button that keeps (or stops keeping) a control
 * group. The share is a setting, saved through /settings and previewed when it moves tags. */
export function holdoutSwitch(handle, holdouts, reload, errors) {
  const share = holdouts[handle] || 0;
  const change = async () => {
    const next = { ...holdouts, [handle]: share ? 0 : HOLDOUT_SHARE };
    try {
      try {
        await api.put("/settings", { settings: { holdouts: next } });
      } catch (error) {
        if (error.status !== 409) throw error;
        if (!(await confirmDialog(t("settings.preview.title"), effectView(error.body), t("settings.preview.apply")))) return;
        await api.put("/settings", { settings: { holdouts: next }, confirm: error.body.token });
      }
      toast(t("actions.saved"));
      reload();
    } catch (error) {
      mount(errors, failure(error));
    }
  };
  return h(
    "span",
    { class: "gp-holdout", "data-holdout": handle },
    share ? badge(t("actions.holdout_on", { share: percent(share, 0) }), "info") : null,
    button(share ? t("actions.holdout_stop") : t("actions.holdout_start", { share: percent(HOLDOUT_SHARE, 0) }), {
      "data-action": "holdout",
      onClick: change,
    }),
  );
}

export function actionsSection(state, reload) {
  const errors = h("div", { "aria-live": "polite" });
  const change = (path, enabled, done) => async () => {
    try {
      await api.put(path, { enabled });
      toast(done);
      reload();
    } catch (error) {
      mount(errors, failure(error));
    }
  };
  const rows = state.discounts.map((tier) => {
    return h(
      "li",
      { class: "gp-action-row", "data-tier": tier.tier },
      h("span", null, t("actions.tier", { days: number(tier.days), percent: number(tier.percent) })),
      status(tier),
      tier.tag_sync || tier.enabled
        ? button(tier.enabled ? t("actions.turn_off") : t("actions.turn_on"), {
            "data-action": "discount",
            onClick: change(`/actions/discounts/${tier.tier}`, !tier.enabled, t("actions.saved")),
          })
        : h("span", { class: "gp-subdued" }, t("actions.needs_tag_sync")),
      holdoutSwitch(tier.handle, state.holdouts, reload, errors),
    );
  });
  const scores = state.scores;
  return section(
    t("actions.title"),
    errors,
    h("p", { class: "gp-subdued" }, t("actions.discounts_help")),
    h("p", { class: "gp-subdued" }, t("actions.reminder_note")),
    h("ul", { class: "gp-action-list", "data-actions": "discounts" }, rows),
    h("h3", null, t("actions.scores")),
    h("p", { class: "gp-subdued" }, t("actions.scores_help")),
    h(
      "div",
      { class: "gp-action-row", "data-actions": "scores" },
      scores.enabled ? badge(t("actions.scores_on", { count: number(scores.customers) }), "success") : badge(t("sync.off")),
      button(scores.enabled ? t("actions.turn_off") : t("actions.turn_on"), {
        "data-action": "scores",
        onClick: change("/actions/scores", !scores.enabled, t("actions.saved")),
      }),
    ),
    resultsPanel(state.results),
  );
}
