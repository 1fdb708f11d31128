// The segments table: who to market to, how many, what they are worth, and what is synced.

import { api } from "../api.js";
import { h } from "../dom.js";
import { number, percent, segmentName, t } from "../i18n.js";
import { empty, page, section, table, withStates } from "../ui.js";
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

export async function render(root) {
  const errors = h("div", { class: "gp-errors" });
  const draw = (data) => {
    const refresh = () => withStates(root, () => api.get("/segments"), draw);
    const rows = data.segments.filter((s) => s.enabled !== false);
    root.append(
      page(
        t("segments.title"),
        {},
        errors,
        section(
          null,
          h("p", { class: "gp-subdued" }, t("segments.help")),
          rows.length
            ? table(
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
                  h("a", { href: `#/segments/${s.id}`, class: "gp-strong", "data-segment": s.handle }, segmentName(s)),
                  h("code", { class: "gp-tag" }, s.tag),
                  h("span", { "data-members": s.members }, number(s.members)),
                  percent(s.revenue_share),
                  change(s.change_week),
                  tagSwitch(s, refresh, errors),
                  metaSwitch(s, refresh, errors),
                ]),
                { "data-table": "segments" },
              )
            : empty(t("segments.empty"), t("segments.empty_body")),
        ),
      ),
    );
  };
  await withStates(root, () => api.get("/segments"), draw);
}
