// Settings: thresholds, lapsed tiers, cross-sell rules with product pickers from the synced
// catalogue, tag prefix, consent policy, and the Meta connection. The server validates every
// value (ShopConfig); a refused one comes back with its field and is shown next to the input.
// A change that moves tags or Meta audiences comes back first as its effect (409 with a token):
// the page shows it and saves again with the token only when the merchant confirms.

import { api, query } from "../api.js";
import { debounce, h, mount, nextId } from "../dom.js";
import { has, segmentName, t } from "../i18n.js";
import { badge, banner, button, confirmDialog, failure, loading, page, section, toast, withStates } from "../ui.js";
import { actionsSection } from "./actions.js";

const NUMBERS = [
  // [key, section, kind, min, max, step]: "percent" fields are fractions shown as 0–100 %.
  ["business_units_per_order", "business", "int", 1, 100000, 1],
  ["business_units_per_window", "business", "int", 1, 1000000, 1],
  ["business_window_days", "business", "int", 1, 3650, 1],
  ["repeat_min_orders", "loyalty", "int", 2, 1000, 1],
  ["true_fan_min_orders", "loyalty", "int", 2, 1000, 1],
  ["vip_share", "loyalty", "percent", 0.1, 50, 0.1],
  ["reminder_factor", "lapsed", "float", 1, 10, 0.1],
  ["at_risk_min_spend_share", "predictions", "percent", 0, 100, 1],
  ["milestone_amount", "seasons", "float", 1, 1e9, 1],
];
const POLICIES = ["subscribed", "subscribed_or_pending", "all"];

function field(label, input, help, key) {
  const id = input.id || nextId("field");
  input.id = id;
  const errorId = `${id}-error`;
  input.setAttribute("aria-describedby", errorId);
  return h(
    "div",
    { class: "gp-field", "data-field": key },
    h("label", { for: id, class: "gp-label" }, label),
    input,
    help ? h("p", { class: "gp-subdued gp-help" }, help) : null,
    h("p", { class: "gp-field-error", id: errorId, role: "alert" }),
  );
}

function numberInput(key, kind, min, max, step, value) {
  const shown = kind === "percent" ? Math.round(value * 1000) / 10 : value;
  return h("input", { type: "number", class: "gp-input", min, max, step, value: shown, "data-setting": key, "data-kind": kind });
}

function readNumber(input) {
  const raw = input.value.trim();
  const value = Number(raw);
  if (raw === "" || Number.isNaN(value)) return raw; // let the server name the field
  if (input.dataset.kind === "percent") return Math.round(value * 10) / 1000;
  if (input.dataset.kind === "int") return Math.round(value);
  return value;
}

/** Tell the form something changed that no input event reports (a chip, a tier, a rule). */
const changed = (el) => el.dispatchEvent(new Event("change", { bubbles: true }));

/**
 * A product picker over /api/products; chips for picked products (ids) or title words. The
 * search box is a combobox (WAI-ARIA APG): arrow keys move through the options while focus
 * stays in the box, Enter picks, Escape closes.
 */
function picker(values, titles, label, side) {
  const picked = [...values];
  const listId = nextId("products");
  const chips = h("ul", { class: "gp-chips", role: "list" });
  const results = h("ul", { class: "gp-results", role: "listbox", id: listId, "aria-label": label, hidden: true });
  const input = h("input", {
    type: "text",
    class: "gp-input",
    role: "combobox",
    "aria-autocomplete": "list",
    "aria-expanded": "false",
    "aria-controls": listId,
    placeholder: t("settings.picker_placeholder"),
    "aria-label": label,
    "data-input": "product-search",
    autocomplete: "off",
  });
  let options = []; // [element, pick]
  let active = -1;
  const setActive = (index) => {
    active = index;
    for (const [i, [item]] of options.entries()) item.setAttribute("aria-selected", String(i === active));
    if (active < 0) input.removeAttribute("aria-activedescendant");
    else {
      input.setAttribute("aria-activedescendant", options[active][0].id);
      options[active][0].scrollIntoView({ block: "nearest" });
    }
  };
  const close = () => {
    results.hidden = true;
    input.setAttribute("aria-expanded", "false");
    setActive(-1);
  };
  const drawChips = () =>
    mount(
      chips,
      picked.map((ref, i) =>
        h(
          "li",
          { class: "gp-chip", "data-ref": ref },
          titles[ref] || ref,
          h("button", { type: "button", class: "gp-chip-remove", "aria-label": t("settings.remove_item", { item: titles[ref] || ref }), onClick: () => { picked.splice(i, 1); drawChips(); changed(el); } }, "×"),
        ),
      ),
    );
  const add = (ref, title) => {
    if (title) titles[ref] = title;
    if (!picked.includes(ref)) picked.push(ref);
    input.value = "";
    close();
    drawChips();
    changed(el);
  };
  const option = (text, pick, attrs = {}) => {
    // mousedown would take focus from the box; the click still picks.
    const item = h("li", { role: "option", id: nextId("product"), class: "gp-result", "aria-selected": "false", onMousedown: (e) => e.preventDefault(), onClick: pick, ...attrs }, text);
    options.push([item, pick]);
    return item;
  };
  const search = debounce(async () => {
    const q = input.value.trim();
    options = [];
    if (!q) {
      close();
      return;
    }
    try {
      const data = await api.get(`/products${query({ q })}`);
      mount(
        results,
        data.products.length
          ? data.products.map((p) => option(p.title, () => add(String(p.id), p.title), { "data-product": p.id }))
          : h("li", { class: "gp-subdued", role: "presentation" }, t("settings.no_products")),
        // Typed words also work: they match product titles when segments are computed.
        option(t("settings.use_words", { words: q }), () => add(q.toLowerCase()), { class: "gp-result gp-subdued", "data-words": q }),
      );
    } catch (error) {
      mount(results, h("li", { role: "presentation" }, failure(error)));
    }
    results.hidden = false;
    input.setAttribute("aria-expanded", "true");
    setActive(options.length ? 0 : -1);
  }, 250);
  input.addEventListener("input", search);
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (results.hidden || !options.length) return;
      const step = event.key === "ArrowDown" ? 1 : -1;
      setActive((active + step + options.length) % options.length);
    } else if (event.key === "Enter") {
      event.preventDefault(); // never submits the settings form from here
      if (!results.hidden && active >= 0) options[active][1]();
    } else if (event.key === "Escape" && !results.hidden) {
      event.preventDefault();
      close();
    }
  });
  input.addEventListener("blur", close);
  drawChips();
  const el = h("div", { class: "gp-picker", "data-side": side }, chips, input, results);
  el.value = () => [...picked];
  return el;
}

/** An error line an input names with aria-describedby. */
function errorLine(input) {
  const line = h("p", { class: "gp-field-error", id: nextId("error"), role: "alert" });
  input.setAttribute("aria-describedby", line.id);
  return line;
}

function tiersEditor(tiers) {
  const list = h("div", { class: "gp-tiers" });
  const rows = [];
  const addRow = (tier) => {
    const days = h("input", { type: "number", class: "gp-input gp-short", min: 1, max: 3650, value: tier.days, "aria-label": t("settings.tier_days"), "data-tier": "days" });
    const pct = h("input", { type: "number", class: "gp-input gp-short", min: 0, max: 90, value: tier.discount_percent, "aria-label": t("settings.tier_discount"), "data-tier": "discount" });
    const error = errorLine(days);
    pct.setAttribute("aria-describedby", error.id);
    const row = h(
      "div",
      { "data-tier-row": "" },
      h(
        "div",
        { class: "gp-tier" },
        h("label", null, t("settings.tier_after"), " ", days, " ", t("settings.tier_days_unit")),
        h("label", null, t("settings.tier_offer"), " ", pct, " %"),
        h("button", { type: "button", class: "gp-link-button", onClick: () => { rows.splice(rows.indexOf(entry), 1); row.remove(); changed(list); } }, t("action.remove")),
      ),
      error,
    );
    const entry = { days, pct, row };
    rows.push(entry);
    list.append(row);
  };
  tiers.forEach(addRow);
  const el = h(
    "div",
    null,
    list,
    h("button", { type: "button", class: "gp-link-button", onClick: () => { if (rows.length < 5) { addRow({ days: (Number(rows.at(-1)?.days.value) || 30) + 30, discount_percent: 10 }); changed(list); } } }, t("settings.add_tier")),
  );
  el.value = () => rows.map((r) => ({ days: Number(r.days.value), discount_percent: Number(r.pct.value) }));
  return el;
}

function rulesEditor(rules, titles) {
  const list = h("div", { class: "gp-rules" });
  const editors = [];
  const side = (key, labelKey, chooser) =>
    h("div", { class: "gp-field", "data-field": key }, h("p", { class: "gp-label" }, t(labelKey)), chooser, errorLine(chooser.querySelector("input")));
  const addRule = (rule) => {
    const name = h("input", { class: "gp-input", value: rule.name || "", "data-rule": "name" });
    const bought = picker(rule.bought || [], titles, t("settings.rule_bought"), "bought");
    const never = picker(rule.never || [], titles, t("settings.rule_never"), "never");
    const box = h(
      "fieldset",
      { class: "gp-rule", "data-rule-handle": rule.handle || "" },
      h("legend", null, rule.name || t("settings.new_rule")),
      field(t("settings.rule_name"), name, null, "name"),
      side("bought", "settings.rule_bought", bought),
      side("never", "settings.rule_never", never),
      h("button", { type: "button", class: "gp-link-button", onClick: () => { editors.splice(editors.indexOf(entry), 1); box.remove(); changed(list); } }, t("settings.remove_rule")),
    );
    const entry = { rule, name, bought, never, box };
    editors.push(entry);
    list.append(box);
  };
  rules.forEach(addRule);
  const el = h(
    "div",
    null,
    list,
    h("button", { type: "button", class: "gp-link-button", "data-action": "add-rule", onClick: () => { addRule({ handle: "", name: "", bought: [], never: [] }); changed(list); } }, t("settings.add_rule")),
  );
  // A new rule has no handle yet: the server makes one from its name in any script.
  el.value = () => editors.map((e) => ({ handle: e.rule.handle || "", name: e.name.value.trim(), bought: e.bought.value(), never: e.never.value() }));
  el.adopt = (saved) =>
    editors.forEach((e, i) => {
      e.rule.handle = saved[i]?.handle || e.rule.handle;
      e.box.dataset.ruleHandle = e.rule.handle;
    });
  return el;
}

/** What a settings change would do (the API's preview): tags, customers, audiences, removals. */
export function effectView(preview) {
  const segment = (handle, name) => segmentName({ handle, name: name || handle });
  const list = (key, items) =>
    items.length ? [h("p", { class: "gp-label" }, t(key)), h("ul", { class: "gp-effect", "data-effect": key.split(".").pop() }, items)] : [];
  return h(
    "div",
    { "data-preview": "settings" },
    h("p", null, t("settings.preview.customers", { count: preview.customers })),
    ...list(
      "settings.preview.tags",
      preview.tags.map((r) =>
        h("li", { "data-tag": r.tag }, t("settings.preview.tag", { tag: r.segment ? `${r.tag} · ${segment(r.segment)}` : r.tag, added: r.added, removed: r.removed })),
      ),
    ),
    ...list(
      "settings.preview.audiences",
      preview.audiences.map((a) =>
        h("li", { "data-audience": a.segment }, a.paused ? t("settings.preview.audience_paused", { name: segment(a.segment, a.name) }) : t("settings.preview.audience", { name: segment(a.segment, a.name), added: a.added, removed: a.removed })),
      ),
    ),
    ...list(
      "settings.preview.removed",
      preview.removed.map((r) => h("li", { "data-removed": r.segment }, t("settings.preview.removed_item", { name: segment(r.segment, r.name), tag: r.tag }))),
    ),
  );
}

// The login tab is another top-level window (no opener, partitioned storage): the card asks
// for the status every few seconds while the login can still complete, and shows whose
// account it connected as soon as the status changes.
const LOGIN_POLL_MS = 2000;
const LOGIN_WAIT_MS = 10 * 60 * 1000;

function waitForLogin(before, reload, errors) {
  const waiting = h("p", { class: "gp-subdued", role: "status", "data-meta-waiting": "" }, t("meta.login_waiting"));
  errors.replaceChildren(waiting);
  const started = Date.now();
  const timer = setInterval(async () => {
    if (!waiting.isConnected || Date.now() - started > LOGIN_WAIT_MS) {
      clearInterval(timer);
      waiting.remove();
      return;
    }
    try {
      const now = await api.get("/meta/status");
      if (now.status !== before) {
        clearInterval(timer);
        reload();
      }
    } catch {
      // A failed poll is retried at the next tick.
    }
  }, LOGIN_POLL_MS);
}

function metaCard(status, reload) {
  const errors = h("div");
  const act = (label, fn, attrs = {}) =>
    button(label, {
      ...attrs,
      onClick: async (event) => {
        const el = event.currentTarget;
        el.setAttribute("loading", "");
        errors.replaceChildren();
        try {
          await fn();
        } catch (error) {
          errors.replaceChildren(failure(error));
        } finally {
          el.removeAttribute("loading");
        }
      },
    });
  const parts = [
    h(
      "p",
      { "data-meta-status": status.status },
      t("meta.connection"),
      " ",
      badge(t(`meta.conn.${status.status}`), status.status === "connected" ? "success" : status.status === "disconnected" ? undefined : "warning"),
      // A disconnected shop has no account in use (the id is kept only for the next login).
      status.ad_account_id && status.status !== "disconnected" ? ` · ${status.ad_account_id}` : "",
    ),
  ];
  if (status.user_name && status.status !== "confirm") parts.push(h("p", { class: "gp-subdued", "data-meta-user": "" }, t("meta.connected_as", { name: status.user_name })));
  if (status.error) parts.push(banner("warning", t("meta.error"), h("p", null, status.error)));
  if (status.status === "confirm") {
    // Facebook Login connected whoever was logged in to Facebook in that tab: the merchant
    // says whether it is them before Goldpan uses the account.
    parts.push(
      banner("warning", t("meta.connected_as", { name: status.user_name || "?" }), h("p", null, t("meta.confirm_body"))),
      h(
        "div",
        { class: "gp-actions" },
        act(t("meta.confirm_yes"), async () => {
          await api.post("/meta/confirm", {});
          reload();
        }, { variant: "primary", "data-action": "meta-confirm" }),
        act(t("meta.confirm_no"), async () => {
          await api.post("/meta/disconnect", {});
          reload();
        }, { tone: "critical", "data-action": "meta-not-me" }),
      ),
    );
  }
  if (status.status === "terms" && status.terms_url) {
    // Loading the status asks Meta again, so "check again" is a reload.
    parts.push(
      banner("warning", t("meta.terms"), h("p", null, h("a", { href: status.terms_url, target: "_blank", rel: "noopener" }, t("meta.terms_link")))),
      act(t("meta.terms_recheck"), async () => reload()),
    );
  }
  if (!status.connected && status.status !== "terms" && status.status !== "confirm") {
    const token = h("input", { class: "gp-input", type: "password", autocomplete: "off", "data-input": "meta-token" });
    parts.push(
      h("p", { class: "gp-subdued" }, t("meta.connect_help")),
      h(
        "div",
        { class: "gp-actions" },
        status.configured === false
          ? null
          : act(t("meta.connect"), async () => {
              const { url } = await api.post("/meta/connect", {});
              window.open(url, "_blank", "noopener");
              waitForLogin(status.status, reload, errors);
            }, { variant: "primary" }),
      ),
      field(t("meta.paste_token"), token, t("meta.paste_help"), "token"),
      act(t("meta.use_token"), async () => {
        await api.post("/meta/token", { token: token.value.trim() });
        toast(t("meta.connected"));
        reload();
      }),
    );
  }
  if (status.access_needed_account || (!["disconnected", "confirm"].includes(status.status) && !status.ad_account_id)) {
    const select = h("select", { class: "gp-input", "data-input": "ad-account" });
    const holder = h("div", null, loading());
    api
      .get("/meta/adaccounts")
      .then((data) => {
        mount(select, data.data.map((a) => h("option", { value: a.id }, `${a.name || a.id} (${a.id})`)));
        mount(
          holder,
          field(t("meta.ad_account"), select, null, "ad_account_id"),
          act(t("meta.choose_account"), async () => {
            await api.post("/meta/account", { ad_account_id: select.value });
            reload();
          }),
        );
      })
      .catch((error) => mount(holder, failure(error)));
    parts.push(holder);
  }
  if (status.status !== "disconnected" && status.status !== "confirm") {
    parts.push(
      act(t("meta.disconnect"), async () => {
        if (await confirmDialog(t("meta.disconnect"), h("p", null, t("meta.disconnect_body")), t("meta.disconnect"), "critical")) {
          await api.post("/meta/disconnect", {});
          reload();
        }
      }, { tone: "critical" }),
    );
  }
  parts.push(errors);
  return section(t("meta.title"), ...parts);
}

export async function render(root) {
  const load = async () => {
    const [settings, meta, actions] = await Promise.all([
      api.get("/settings"),
      api.get("/meta/status").catch(() => ({ status: "unavailable", connected: false, configured: false })),
      api.get("/actions"),
    ]);
    return { settings, meta, actions };
  };
  const draw = ({ settings: data, meta, actions }) => {
    const s = data.settings;
    const titles = { ...data.products };
    const status = h("div", { "aria-live": "polite" });
    const inputs = {};
    const numberField = ([key, , kind, min, max, step]) => {
      inputs[key] = numberInput(key, kind, min, max, step, s[key]);
      return field(t(`settings.${key}`), inputs[key], t(`settings.${key}.help`), key);
    };
    const group = (name) => NUMBERS.filter((n) => n[1] === name).map(numberField);
    inputs.tag_prefix = h("input", { class: "gp-input", value: s.tag_prefix, "data-setting": "tag_prefix" });
    inputs.consent_policy = h("select", { class: "gp-input", "data-setting": "consent_policy" }, POLICIES.map((p) => h("option", { value: p, selected: p === s.consent_policy ? true : undefined }, t(`settings.policy.${p}`))));
    const months = h(
      "div",
      { class: "gp-months", role: "group", "aria-label": t("settings.season_months") },
      Array.from({ length: 12 }, (_, i) =>
        h("label", { class: "gp-check" }, h("input", { type: "checkbox", value: i + 1, checked: s.season_months.includes(i + 1) ? true : undefined }), new Intl.DateTimeFormat(document.documentElement.lang, { month: "short" }).format(new Date(Date.UTC(2026, i, 15)))),
      ),
    );
    const tiers = tiersEditor(s.lapsed_tiers);
    const rules = rulesEditor(s.cross_sell, titles);

    const collect = () => {
      const changes = { tag_prefix: inputs.tag_prefix.value.trim(), consent_policy: inputs.consent_policy.value };
      for (const [key] of NUMBERS) changes[key] = readNumber(inputs[key]);
      changes.lapsed_tiers = tiers.value();
      changes.season_months = [...months.querySelectorAll("input:checked")].map((c) => Number(c.value));
      changes.cross_sell = rules.value();
      return changes;
    };

    /** The holder of a field's error line and its input, from the API's path
     * (``vip_share``, ``lapsed_tiers[0].discount_percent``, ``cross_sell[2].never[0]``). */
    const locate = (path) => {
      const [, top, index, sub] = /^(\w+)(?:\[(\d+)\])?(?:\.(\w+))?/.exec(path || "") || [];
      const holder = top ? root.querySelector(`[data-form="settings"] [data-field="${CSS.escape(top)}"]`) : null;
      if (!holder) return null;
      if (top === "lapsed_tiers" && index !== undefined) {
        const row = holder.querySelectorAll("[data-tier-row]")[Number(index)];
        if (row) return { holder: row, input: row.querySelector(`[data-tier="${sub === "discount_percent" ? "discount" : "days"}"]`) };
      }
      if (top === "cross_sell" && index !== undefined) {
        const rule = holder.querySelectorAll(".gp-rule")[Number(index)];
        const part = rule?.querySelector(`[data-field="${sub === "never" || sub === "bought" ? sub : "name"}"]`);
        if (part) return { holder: part, input: part.querySelector("input") };
      }
      return { holder, input: holder.querySelector("input, select") };
    };

    /** The label a message names and whether the form shows the value as a percent. */
    const describe = (path) => {
      const number = NUMBERS.find(([key]) => key === path);
      if (number) return { label: t(`settings.${path}`), percent: number[2] === "percent" };
      if (/^lapsed_tiers\[\d+\]\.discount_percent/.test(path)) return { label: t("settings.tier_discount") };
      if (/^lapsed_tiers\[\d+\]\.days/.test(path)) return { label: t("settings.tier_days") };
      const side = /^cross_sell\[\d+\]\.(bought|never)/.exec(path);
      if (side) return { label: t(`settings.rule_${side[1]}`) };
      const top = path.split(/[.[]/)[0];
      return { label: has(`settings.${top}`) ? t(`settings.${top}`) : top };
    };

    /** An API problem (``code`` + ``params``) in the merchant's language and the form's units. */
    const say = (problem, kind) => {
      const key = `settings.${kind}.${problem.code}`;
      if (!problem.code || !has(key)) return problem.message;
      const { label, percent } = describe(problem.field || "");
      const params = { ...problem.params, label };
      for (const bound of ["min", "max"]) if (percent && typeof params[bound] === "number") params[bound] = Math.round(params[bound] * 1000) / 10;
      if (params.product !== undefined) params.product = titles[params.product] || params.product;
      return t(key, params);
    };

    const clearProblems = () => {
      for (const el of root.querySelectorAll("[data-form='settings'] .gp-field-error")) el.textContent = "";
      for (const el of root.querySelectorAll("[data-form='settings'] [aria-invalid]")) el.removeAttribute("aria-invalid");
    };

    const showError = (error) => {
      const message = say(error, "error");
      const spot = locate(error.field);
      const line = spot?.holder.querySelector(":scope > .gp-field-error");
      if (line) line.textContent = message;
      if (spot?.input) {
        spot.input.setAttribute("aria-invalid", "true");
        spot.input.focus();
      }
      mount(status, banner("critical", t("settings.invalid"), h("p", { "data-error": error.field || "" }, message)));
    };

    const showWarnings = (warnings) => {
      const lines = warnings.map((w) => {
        const message = say(w, "warning");
        const line = locate(w.field)?.holder.querySelector(":scope > .gp-field-error");
        if (line) line.textContent = message;
        return h("li", { "data-warning": w.field }, message);
      });
      return lines.length ? [banner("warning", t("settings.warnings"), h("ul", null, lines))] : [];
    };

    // Unsaved changes: App Bridge's save bar in the admin, an in-page bar in the demo; leaving
    // the page with changes asks first either way.
    let savedState = "";
    let dirty = false;
    const bridgeBar = window.shopify?.saveBar && customElements.get("ui-save-bar");
    const barId = nextId("save-bar");
    const discard = () => withStates(root, load, draw);
    const bar = bridgeBar
      ? // type=button: inside the form a plain button would also submit it (a second save racing the first).
        h("ui-save-bar", { id: barId }, h("button", { type: "button", variant: "primary", onClick: () => form.requestSubmit() }), h("button", { type: "button", onClick: discard }))
      : h(
          "div",
          { class: "gp-save-bar", id: barId, role: "region", "aria-label": t("settings.unsaved"), "data-save-bar": "", hidden: true },
          h("p", null, t("settings.unsaved")),
          h("button", { type: "button", class: "gp-native-button", "data-action": "discard", onClick: discard }, t("settings.discard")),
          h("button", { type: "button", class: "gp-native-button gp-primary", "data-action": "bar-save", onClick: () => form.requestSubmit() }, t("action.save")),
        );
    const setDirty = (value) => {
      dirty = value;
      if (bridgeBar) window.shopify.saveBar[dirty ? "show" : "hide"](barId);
      else bar.hidden = !dirty;
    };
    const track = () => setDirty(JSON.stringify(collect()) !== savedState);
    window.addEventListener("beforeunload", (event) => {
      if (dirty && bar.isConnected) event.preventDefault();
    });

    const save = async (event) => {
      event.preventDefault();
      const changes = collect();
      const saveButton = root.querySelector("[data-action='save']");
      saveButton.setAttribute("loading", "");
      clearProblems();
      try {
        let saved;
        try {
          saved = await api.put("/settings", { settings: changes });
        } catch (error) {
          if (error.status !== 409) throw error;
          // It moves tags or audiences: show the effect, apply only if the merchant confirms.
          const preview = error.body;
          if (!(await confirmDialog(t("settings.preview.title"), effectView(preview), t("settings.preview.apply")))) {
            mount(status, banner("info", t("settings.preview.cancelled"), h("p", null, t("settings.preview.cancelled_body"))));
            return;
          }
          saved = await api.put("/settings", { settings: changes, confirm: preview.token });
        }
        const notices = [banner("success", t("settings.saved"), h("p", null, t("settings.saved_body")))];
        if (saved.removed?.length) {
          const names = saved.removed.map((r) => segmentName({ handle: r.segment, name: r.name })).join(", ");
          notices.push(banner("warning", t("settings.removed_notice"), h("p", { "data-notice": "removed" }, t("settings.removed_notice_body", { segments: names }))));
        }
        notices.push(...showWarnings(saved.warnings || []));
        mount(status, ...notices);
        // New rules now have their handles (and tags): keep them so the next save is the same rule.
        rules.adopt(saved.settings.cross_sell);
        savedState = JSON.stringify(collect());
        setDirty(false);
        toast(t("settings.saved"));
      } catch (error) {
        if (error.status === 400) showError({ ...error.body, message: error.message });
        else mount(status, failure(error));
      } finally {
        saveButton.removeAttribute("loading");
      }
    };

    const form = h(
      "form",
      { class: "gp-form", onSubmit: save, novalidate: true, "data-form": "settings", onInput: track, onChange: track },
      status,
      section(t("settings.tags"), field(t("settings.tag_prefix"), inputs.tag_prefix, t("settings.tag_prefix.help"), "tag_prefix")),
      section(t("settings.business"), h("p", { class: "gp-subdued" }, t("settings.business_help")), ...group("business")),
      section(t("settings.loyalty"), ...group("loyalty")),
      section(t("settings.lapsed"), h("p", { class: "gp-subdued" }, t("settings.lapsed_help")), h("div", { "data-field": "lapsed_tiers" }, tiers, h("p", { class: "gp-field-error", role: "alert" })), ...group("lapsed")),
      section(t("settings.predictions"), ...group("predictions")),
      section(t("settings.seasons"), h("div", { "data-field": "season_months" }, h("p", { class: "gp-label" }, t("settings.season_months")), months, h("p", { class: "gp-field-error", role: "alert" })), ...group("seasons")),
      section(t("settings.cross_sell"), h("p", { class: "gp-subdued" }, t("settings.cross_sell_help")), h("div", { "data-field": "cross_sell" }, rules, h("p", { class: "gp-field-error", role: "alert" }))),
      section(t("settings.consent"), field(t("settings.consent_policy"), inputs.consent_policy, t("settings.consent_policy.help"), "consent_policy")),
      h("div", { class: "gp-actions gp-sticky" }, h("button", { type: "submit", class: "gp-native-button gp-primary", "data-action": "save" }, t("action.save"))),
      bar,
    );
    savedState = JSON.stringify(collect());

    const removeAll = button(t("settings.remove_all"), {
      tone: "critical",
      "data-action": "remove-all",
      onClick: async () => {
        if (!(await confirmDialog(t("settings.remove_all"), h("p", null, t("settings.remove_all_body")), t("settings.remove_all"), "critical"))) return;
        try {
          await api.post("/tags/remove-all", { confirm: true });
          toast(t("settings.remove_all_done"));
        } catch (error) {
          mount(status, failure(error));
        }
      },
    });

    root.append(
      page(
        t("settings.title"),
        {},
        form,
        actionsSection(actions, () => withStates(root, load, draw)),
        meta.status === "unavailable" ? null : metaCard(meta, () => withStates(root, load, draw)),
        section(t("settings.leaving"), h("p", { class: "gp-subdued" }, t("settings.leaving_help")), removeAll),
      ),
    );
  };
  await withStates(root, load, draw);
}
