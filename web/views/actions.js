// Actions on the settings page: a win-back discount switch per lapsed tier (its code, status and
// end date once Shopify has it) and the switch that writes Goldpan's scores to customer metafields.

import { api } from "../api.js";
import { h, mount } from "../dom.js";
import { date, number, t } from "../i18n.js";
import { badge, button, failure, section, toast } from "../ui.js";

const TONES = { active: "success", ended: "info", error: "critical" };

function status(tier) {
  const label = badge(t(`actions.status.${tier.status}`), TONES[tier.status]);
  const parts = [label];
  if (tier.code) parts.push(h("code", { "data-code": tier.code }, tier.code));
  if (tier.status === "active" && tier.ends_at) parts.push(h("span", { class: "gp-subdued" }, t("actions.until", { date: date(tier.ends_at) })));
  if (tier.error) parts.push(h("span", { class: "gp-subdued" }, tier.error));
  return h("span", { class: "gp-actions" }, ...parts);
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
  const rows = state.discounts.map((tier) =>
    h(
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
    ),
  );
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
  );
}
