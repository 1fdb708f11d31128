// The segments table: who to market to, how many, what they are worth, and what is synced.

import { api } from "../api.js";
import { h, mount } from "../dom.js";
import { heldOutOf, number, percent, place, segmentName, t } from "../i18n.js";
import { button, empty, page, section, table, withStates } from "../ui.js";
import { metaSwitch, tagSwitch } from "./toggles.js";

function change(value) {
  if (value === null || value === undefined) return h("span", { class: "gp-subdued" }, "—");
  if (value === 0) return h("span", { class: "gp-subdued" }, "0");
  const up = value > 0;
  return h(
    "span",
    { class: up ? "gp-up" : "gp-down", "aria-label": t(up ? "change.up" : "change.down", { count: Math.abs(value) }) },
    `${up ? "+" : "−"}${number(Math.abs(value))}`,
  );
}

// The list's groups, in display order; a segment's group follows from its kind and handle.
export const GROUPS = ["playbook", "predictions", "rfm", "cross_sell", "region", "custom"];
const PREDICTIONS = new Set(["likely-to-buy", "at-risk"]);

export function groupOf(s) {
  if (s.kind === "builtin") return PREDICTIONS.has(s.handle) ? "predictions" : "playbook";
  return GROUPS.includes(s.kind) ? s.kind : "custom";
}

/** One line saying who is in the segment, for every kind of segment. */
export function describe(s) {
  const d = s.definition || {};
  if (s.kind === "rfm") return t(`rfm_help.${d.group || s.handle.slice(4)}`);
  if (s.kind === "region") {
    return t("segments.desc.region", { region: place(d.country, d.province) });
  }
  if (s.kind === "cross_sell") return t("segments.desc.cross_sell");
  if (s.kind === "custom") return t("segments.desc.custom");
  if (/^lapsed-tier-\d+$/.test(s.handle)) {
    return d.max_days
      ? t("segments.desc.lapsed_range", { from: d.min_days, to: d.max_days })
      : t("segments.desc.lapsed_open", { from: d.min_days });
  }
  const base = heldOutOf(s);
  if (base) return t("segments.desc.holdout", { segment: segmentName(base), share: percent(d.share || 0, 0) });
  return t(`segment_help.${s.handle}`);
}

function rowsTable(rows, refresh, errors) {
  return table(
    [
      t("segments.col.name"),
      t("segments.col.tag"),
      { label: t("segments.col.members"), numeric: true },
      { label: t("segments.col.revenue"), numeric: true },
      { label: t("segments.col.change"), numeric: true },
      t("segments.col.tag_sync"),
      t("segments.col.meta_sync"),
    ],
    rows.map((s) => [
      h(
        "div",
        { class: "gp-segment-name" },
        h("a", { href: `#/segments/${s.id}`, class: "gp-strong", "data-segment": s.handle }, segmentName(s)),
        h("p", { class: "gp-subdued gp-segment-desc", "data-description": s.handle }, describe(s)),
        s.kind === "custom"
          ? h("a", { href: `#/segments/custom/${s.handle.slice(7)}`, "data-edit": s.handle }, t("segments.edit"))
          : null,
      ),
      h("code", { class: "gp-tag" }, s.tag),
      h("span", { "data-members": s.members }, number(s.members)),
      percent(s.revenue_share),
      change(s.change_week),
      tagSwitch(s, refresh, errors),
      metaSwitch(s, refresh, errors),
    ]),
  );
}

export async function render(root) {
  const errors = h("div", { class: "gp-errors" });
  const filters = { q: "", hideEmpty: false, archived: false };
  const draw = (data) => {
    const refresh = () => withStates(root, () => api.get("/segments"), draw);
    // A deleted rule keeps its row (history, tags to take off) but is no longer listed.
    const active = data.segments.filter((s) => s.enabled !== false && s.defined !== false);
    // Archived custom segments are listed only under their own filter, to be restored.
    const archived = data.segments.filter((s) => s.archived);
    const groups = h("div", { "data-table": "segments" });
    const count = h("p", { class: "gp-subdued", role: "status" });
    const redraw = () => {
      const q = filters.q.trim().toLocaleLowerCase();
      const all = filters.archived ? archived : active;
      const shown = all.filter(
        (s) =>
          (!filters.hideEmpty || s.members > 0) &&
          (!q || [segmentName(s), s.handle, s.tag, describe(s)].some((text) => text.toLocaleLowerCase().includes(q))),
      );
      count.textContent = q || filters.hideEmpty || filters.archived ? t("segments.shown", { count: shown.length, total: all.length }) : "";
      const sections = GROUPS.map((group) => {
        const rows = shown.filter((s) => groupOf(s) === group);
        const extra = [];
        if (group === "rfm") extra.push(h("p", { class: "gp-subdued" }, t("segments.rfm_scores")));
        if (group === "predictions" || group === "rfm") extra.push(h("p", { class: "gp-subdued" }, t("segments.at_risk_vs_rfm")));
        if (group === "custom" && !filters.archived) {
          extra.push(button(t("segments.new_custom"), { "data-action": "new-segment", onClick: () => (location.hash = "#/segments/new") }));
        }
        if (!rows.length && (group !== "custom" || filters.archived)) return null;
        return h(
          "div",
          { "data-group": group },
          section(t(`segments.group.${group}`), ...extra, rows.length ? rowsTable(rows, refresh, errors) : h("p", { class: "gp-subdued" }, q ? t("segments.no_match") : t("segments.custom_empty"))),
        );
      });
      mount(groups, ...sections.filter(Boolean));
    };
    const search = h("input", {
      type: "search",
      id: "segments-search",
      "data-search": "segments",
      value: filters.q,
      placeholder: t("segments.search_placeholder"),
      onInput: (event) => {
        filters.q = event.target.value;
        redraw();
      },
    });
    const hide = h("input", {
      type: "checkbox",
      id: "segments-hide-empty",
      "data-hide-empty": "",
      checked: filters.hideEmpty,
      onChange: (event) => {
        filters.hideEmpty = event.target.checked;
        redraw();
      },
    });
    const showArchived = h("input", {
      type: "checkbox",
      "data-show-archived": "",
      checked: filters.archived,
      onChange: (event) => {
        filters.archived = event.target.checked;
        redraw();
      },
    });
    root.append(
      page(
        t("segments.title"),
        {},
        errors,
        section(
          null,
          h("p", { class: "gp-subdued" }, t("segments.help")),
          active.length || archived.length
            ? h(
                "div",
                { class: "gp-filters" },
                h("label", { class: "gp-label", for: "segments-search" }, t("segments.search")),
                search,
                h("label", { class: "gp-check" }, hide, t("segments.hide_empty")),
                archived.length ? h("label", { class: "gp-check" }, showArchived, t("segments.show_archived", { count: archived.length })) : null,
                count,
              )
            : empty(t("segments.empty"), t("segments.empty_body")),
        ),
        groups,
      ),
    );
    redraw();
  };
  await withStates(root, () => api.get("/segments"), draw);
}
