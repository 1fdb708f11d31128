// One segment: its members (search, sort, pages of 50) with why each qualifies, exports
// (CSV, Meta's hashed file), its syncs, and lookalike audiences.

import { api, query } from "../api.js";
import { debounce, h, mount } from "../dom.js";
import { date, dateTime, lang, locale, money, number, percent, reason, region, segmentName, t } from "../i18n.js";
import { morph, onChange } from "../live.js";
import { banner, button, empty, failure, loading, page, section, table, toast, withStates } from "../ui.js";
import { holdoutSwitch } from "./actions.js";
import { metaStateBadge, metaSwitch, tagSwitch } from "./toggles.js";

const SORTS = ["id", "name", "-spent", "-orders", "-since"];

function memberName(m) {
  const name = [m.first_name, m.last_name].filter(Boolean).join(" ");
  return name || m.email || `#${m.id}`;
}

function membersSection(segment, currency) {
  // ``focus``: the pager button to focus again once the next page is drawn (paging redraws it).
  const state = { q: "", sort: "id", page: 1, focus: null };
  const results = h("div", { class: "gp-members" });
  const search = h("input", {
    type: "search",
    class: "gp-input",
    placeholder: t("members.search_placeholder"),
    "aria-label": t("members.search"),
    "data-input": "member-search",
  });
  const sort = h(
    "select",
    { class: "gp-input", "aria-label": t("members.sort"), "data-input": "member-sort" },
    SORTS.map((value) => h("option", { value }, t(`members.sort.${value}`))),
  );

  const fetchPage = () => api.get(`/segments/${segment.id}/members${query({ q: state.q, sort: state.sort, page: state.page })}`);

  async function load() {
    mount(results, loading(t("members.loading")));
    try {
      draw(await fetchPage(), results);
    } catch (error) {
      mount(results, failure(error, load));
    }
  }

  // A change to the shop's data (an order, a recompute) redraws the page of members shown, in
  // place: the search, the sort, the page and the focus stay.
  let refreshing = false;
  const stop = onChange(async () => {
    if (!results.isConnected) {
      stop();
      return;
    }
    if (refreshing) return;
    refreshing = true;
    try {
      const fresh = h("div");
      draw(await fetchPage(), fresh);
      morph(results, fresh);
    } catch (error) {
      console.warn("members refresh failed", error);
    } finally {
      refreshing = false;
    }
  });

  function draw(data, into) {
    if (!data.members.length) {
      mount(into, empty(state.q ? t("members.no_match", { q: state.q }) : t("members.empty"), state.q ? null : t("members.empty_body")));
      return;
    }
    const pages = data.total === null ? null : Math.max(1, Math.ceil(data.total / data.page_size));
    mount(
      into,
      state.q ? h("p", { class: "gp-subdued", role: "status", "data-matches": data.total }, t("members.matches", { count: data.total, q: state.q })) : null,
      table(
        [
          t("members.col.customer"),
          { label: t("members.col.orders"), numeric: true },
          { label: t("members.col.spent"), numeric: true },
          t("members.col.reason"),
          t("members.col.since"),
        ],
        data.members.map((m) => [
          h("div", { "data-customer": m.id, "data-orders": m.orders, "data-spent": m.spent }, h("a", { href: `#/customers/${m.id}`, class: "gp-strong", dir: "auto", "data-customer-link": m.id }, memberName(m)), h("br"), h("span", { class: "gp-subdued", dir: "ltr" }, m.email || "")),
          number(m.orders),
          money(m.spent, currency),
          h("span", { class: "gp-reason", dir: "auto" }, reason(m.reason, currency)),
          date(m.since),
        ]),
        { "data-table": "members" },
      ),
      h(
        "div",
        { class: "gp-pagination" },
        button(t("action.previous"), {
          disabled: state.page <= 1 ? true : undefined,
          "data-action": "prev-page",
          onClick: () => {
            state.page -= 1;
            state.focus = "prev-page";
            load();
          },
        }),
        h(
          "span",
          { class: "gp-subdued", "data-page": data.page },
          pages ? t("members.page_of", { page: data.page, pages }) : t("members.page", { page: data.page }),
        ),
        button(t("action.next"), {
          disabled: data.has_next ? undefined : true,
          "data-action": "next-page",
          onClick: () => {
            state.page += 1;
            state.focus = "next-page";
            load();
          },
        }),
      ),
    );
    if (state.focus) {
      // The same button, or the other one when this was the first or last page.
      const buttons = [state.focus, state.focus === "next-page" ? "prev-page" : "next-page"].map((a) => results.querySelector(`[data-action='${a}']`));
      buttons.find((b) => b && !b.hasAttribute("disabled"))?.focus();
      state.focus = null;
    }
  }

  search.addEventListener(
    "input",
    debounce(() => {
      state.q = search.value.trim();
      state.page = 1;
      load();
    }, 300),
  );
  sort.addEventListener("change", () => {
    state.sort = sort.value;
    state.page = 1;
    load();
  });
  load();
  const el = section(t("members.title"), h("div", { class: "gp-toolbar" }, search, sort), results);
  el.dataset.live = "own";
  return el;
}

/** Backtest message parameters in the page's language: *_date an ISO day, *_share a
 * fraction, ranking a candidate's name (as shopify_app/segments/backtest.py names them). */
function predictionParams(params) {
  const shown = {};
  for (const [name, value] of Object.entries(params || {})) {
    if (name.endsWith("_date")) shown[name] = date(value, { dateStyle: "long", timeZone: "UTC" });
    else if (name.endsWith("_share")) shown[name] = percent(value, 0);
    else if (name === "ranking") shown[name] = t(`prediction.candidate.${value}`);
    else shown[name] = value;
  }
  return shown;
}

/** How the shop's backtest did for likely-to-buy / at-risk, and the rule the segment uses. */
function predictionSection(segment, currency) {
  const prediction = segment.prediction;
  if (!prediction) return null;
  const said = prediction.messages.map((m) => h("p", { "data-prediction": m.key }, t(`prediction.${m.key}`, predictionParams(m.params))));
  const rule = segment.definition || {};
  if (prediction.enough && segment.handle === "likely-to-buy") {
    said.push(h("p", { class: "gp-subdued" }, t("prediction.likely_rule", { share: percent(rule.share, 1), limit: rule.silence_limit })));
  }
  if (prediction.enough && segment.handle === "at-risk") {
    said.push(
      h("p", { class: "gp-subdued" }, t("prediction.at_risk_rule", { min_money: money(rule.min_spend, currency), overdue: rule.overdue_factor, limit: rule.silence_limit })),
    );
  }
  return section(t("prediction.title"), ...said);
}

function exportsSection(segment) {
  const errors = h("div");
  const run = (label, action) =>
    button(label, {
      onClick: async (event) => {
        const el = event.currentTarget;
        el.setAttribute("loading", "");
        errors.replaceChildren();
        try {
          await action();
        } catch (error) {
          errors.replaceChildren(failure(error));
        } finally {
          el.removeAttribute("loading");
        }
      },
    });
  return section(
    t("export.title"),
    h("p", { class: "gp-subdued" }, t("export.help")),
    h(
      "div",
      { class: "gp-actions" },
      // Reasons in the page's language; the other columns are the same in every language.
      run(t("export.csv"), () => api.download(`/segments/${segment.id}/members.csv${query({ lang })}`, `goldpan-${segment.handle}.csv`)),
      run(t("export.meta"), () => api.download(`/meta/segments/${segment.id}/file`, `meta-${segment.handle}.csv`)),
      segment.tag_sync.enabled
        ? run(t("export.native"), async () => {
            await api.post(`/segments/${segment.id}/native-segment`, {});
            toast(t("export.native_done"));
          })
        : null,
    ),
    errors,
  );
}

// How often an open Meta panel asks for fresh figures (a sync can change them any time).
const META_POLL_MS = 5000;

function audienceFacts(audience) {
  const computing = audience.records > 0 && !audience.approximate_lower;
  return h(
    "dl",
    { class: "gp-facts", "data-audience": audience.kind },
    h("dt", null, t("meta.status")),
    h("dd", null, metaStateBadge(audience.state)),
    h("dt", null, t("meta.records")),
    h("dd", { "data-records": audience.records }, number(audience.records)),
    h("dt", null, t("meta.match_rate")),
    h("dd", { "data-match-rate": audience.match_rate ?? "" }, computing ? t("meta.size_computing") : percent(audience.match_rate, 0)),
    h("dt", null, t("meta.size")),
    h("dd", null, audience.approximate_lower ? `${number(audience.approximate_lower)}–${number(audience.approximate_upper)}` : computing ? t("meta.size_computing") : number(0)),
    h("dt", null, t("meta.invalid")),
    h("dd", null, number(audience.invalid)),
    h("dt", null, t("meta.last_change")),
    h("dd", { "data-last-change": audience.last_change || "" }, dateTime(audience.last_change)),
    h("dt", null, t("meta.last_sync")),
    h("dd", null, dateTime(audience.last_synced_at)),
  );
}

function lookalikeForm(segment, meta, source, redraw, errors) {
  const offer = meta.offers[source];
  if (!offer.available) {
    return h("p", { class: "gp-subdued", "data-lookalike-reason": offer.reason }, t(`lookalike.reason.${offer.reason}`, { minimum: offer.minimum, matched: offer.matched }));
  }
  const countries = offer.countries.map((code) => ({ code, name: region(code) })).sort((a, b) => a.name.localeCompare(b.name, locale));
  const country = h(
    "select",
    { class: "gp-input", "data-input": "lookalike-country" },
    countries.map((c) => h("option", { value: c.code, selected: c.code === "US" ? "" : undefined }, c.name)),
  );
  const ratio = h(
    "select",
    { class: "gp-input gp-short", "data-input": "lookalike-ratio" },
    Array.from({ length: 10 }, (_, i) => h("option", { value: String(i + 1) }, percent((i + 1) / 100, 0))),
  );
  const origin = source === "value" ? meta.value_audience : meta.audience;
  const submit = h("button", { type: "submit", class: "gp-native-button" }, t("lookalike.create"));
  const taken = h("p", { class: "gp-field-error", role: "status" });
  // A lookalike that exists already (same source, country and share) is not offered again.
  const check = () => {
    const exists = offer.taken.some((k) => k.source === origin.audience_id && k.country === country.value && Math.abs(k.ratio - Number(ratio.value) / 100) < 1e-9);
    taken.textContent = exists ? t("lookalike.taken") : "";
    submit.disabled = exists;
  };
  country.addEventListener("change", check);
  ratio.addEventListener("change", check);
  check();
  return h(
    "form",
    {
      class: "gp-inline-form",
      "data-form": "lookalike",
      onSubmit: async (event) => {
        event.preventDefault();
        errors.replaceChildren();
        submit.disabled = true;
        try {
          const answer = await api.post(`/meta/segments/${segment.id}/lookalike`, { country: country.value, ratio: Number(ratio.value), source });
          toast(t("lookalike.done"));
          redraw(answer.meta);
        } catch (error) {
          errors.replaceChildren(failure(error));
          submit.disabled = false;
        }
      },
    },
    h("label", null, t("lookalike.country"), " ", country),
    h("label", null, t("lookalike.ratio"), " ", ratio),
    submit,
    taken,
  );
}

function metaParts(segment, meta, redraw, errors) {
  const parts = [];
  const { audience, value_audience: value, lookalikes } = meta;
  if (!audience) {
    parts.push(h("p", { class: "gp-subdued" }, metaStateBadge(meta.state), " ", segment.meta_sync.enabled ? "" : t("meta.not_synced")));
  } else {
    parts.push(audienceFacts(audience));
    if (audience.error) parts.push(banner("warning", t("meta.error"), h("p", null, audience.error)));
  }
  parts.push(h("h3", { class: "gp-subheading" }, t("meta.value_title")), h("p", { class: "gp-subdued" }, t("meta.value_help")));
  if (value) {
    parts.push(audienceFacts(value));
    if (value.error) parts.push(banner("warning", t("meta.error"), h("p", null, value.error)));
  } else if (audience?.audience_id && meta.state !== "paused" && meta.state !== "disconnected") {
    parts.push(
      button(t("meta.value_create"), {
        "data-action": "value-audience",
        onClick: async () => {
          errors.replaceChildren();
          try {
            redraw(await api.post(`/meta/segments/${segment.id}/value-audience`, {}));
            toast(t("meta.value_done"));
          } catch (error) {
            errors.replaceChildren(failure(error));
          }
        },
      }),
    );
  }
  if (lookalikes.length) {
    parts.push(
      h("h3", { class: "gp-subheading" }, t("lookalike.existing")),
      h(
        "ul",
        { "data-lookalikes": "" },
        lookalikes.map((l) =>
          h(
            "li",
            { "data-lookalike": `${l.spec.country}-${l.spec.ratio}` },
            `${region(l.spec.country)} · ${percent(l.spec.ratio, 0)} · ${t(l.origin_audience_id === value?.audience_id ? "lookalike.source_value" : "lookalike.source_custom")} · `,
            metaStateBadge(l.state),
          ),
        ),
      ),
    );
  }
  const holder = h("div");
  const show = (source) => mount(holder, lookalikeForm(segment, meta, source, redraw, errors));
  parts.push(h("h3", { class: "gp-subheading" }, t("lookalike.title")));
  if (value) {
    const source = h(
      "select",
      { class: "gp-input", "data-input": "lookalike-source", onChange: (event) => show(event.currentTarget.value) },
      h("option", { value: "custom" }, t("lookalike.source_custom")),
      h("option", { value: "value" }, t("lookalike.source_value")),
    );
    parts.push(h("label", null, t("lookalike.source"), " ", source));
  }
  show("custom");
  parts.push(holder, errors);
  return parts;
}

function metaSection(segment) {
  const panel = h("div", { "data-meta-panel": "" });
  const errors = h("div");
  const draw = (meta) => mount(panel, ...metaParts(segment, meta, draw, errors));
  draw(segment.meta);
  // Follow syncs while the panel is open (removals, Meta's size estimate), but never redraw
  // under the merchant's hands.
  const timer = setInterval(async () => {
    if (!panel.isConnected) {
      clearInterval(timer);
      return;
    }
    if (panel.contains(document.activeElement)) return;
    try {
      draw(await api.get(`/meta/segments/${segment.id}`));
    } catch {
      // Keep the last figures; the next poll tries again.
    }
  }, META_POLL_MS);
  return section(t("meta.title"), panel);
}

export async function render(root, id) {
  const load = async () => {
    const [segment, home] = await Promise.all([api.get(`/segments/${id}`), api.get("/home")]);
    return { segment, currency: home.shop.currency };
  };
  const draw = ({ segment, currency }) => {
    const refresh = () => withStates(root, load, draw);
    const errors = h("div");
    root.append(
      page(
        segmentName(segment),
        { "back-action": "#/segments" },
        h("p", null, h("a", { href: "#/segments", class: "gp-back" }, t("segment.back"))),
        errors,
        section(
          null,
          h("p", { class: "gp-subdued" }, t(`segment_help.${segment.handle}`) === `segment_help.${segment.handle}` ? "" : t(`segment_help.${segment.handle}`)),
          h(
            "div",
            { class: "gp-metrics" },
            h("div", { class: "gp-metric" }, h("p", { class: "gp-metric-label" }, t("segments.col.members")), h("p", { class: "gp-metric-value", "data-members": segment.members }, number(segment.members))),
            h("div", { class: "gp-metric" }, h("p", { class: "gp-metric-label" }, t("segments.col.revenue")), h("p", { class: "gp-metric-value" }, percent(segment.revenue_share))),
            h("div", { class: "gp-metric" }, h("p", { class: "gp-metric-label" }, t("segments.col.change")), h("p", { class: "gp-metric-value" }, segment.change_week === null ? "—" : number(segment.change_week, { signDisplay: "exceptZero" }))),
          ),
          h(
            "dl",
            { class: "gp-facts" },
            h("dt", null, t("segments.col.tag")),
            h("dd", null, h("code", { class: "gp-tag" }, segment.tag)),
            h("dt", null, t("segments.col.tag_sync")),
            h("dd", null, tagSwitch(segment, refresh, errors)),
            h("dt", null, t("segments.col.meta_sync")),
            h("dd", null, metaSwitch(segment, refresh, errors)),
            ...(segment.holdout_allowed ? [h("dt", null, t("segment.holdout_label")), h("dd", null, holdoutSwitch(segment.handle, segment.holdouts, refresh, errors))] : []),
            h("dt", null, t("segment.computed")),
            h("dd", null, dateTime(segment.computed_at)),
          ),
        ),
        predictionSection(segment, currency),
        membersSection(segment, currency),
        exportsSection(segment),
        metaSection(segment),
      ),
    );
  };
  await withStates(root, load, draw);
}
