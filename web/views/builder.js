// The custom segment builder: conditions on customer fields and metrics in AND / OR groups, a
// live member count from POST /api/segments/preview, and saving through the settings preview
// (a change that moves tags or audiences is shown and applied only when confirmed).

import { api } from "../api.js";
import { debounce, h, mount } from "../dom.js";
import { has, number, t } from "../i18n.js";
import { banner, button, confirmDialog, page, section, toast, withStates } from "../ui.js";
import { effectView } from "./settings.js";

// Every field rules.py knows, by the kind of value it takes (its operators follow the kind).
const FIELDS = {
  number: [
    "total_spent",
    "orders_count",
    "average_order_value",
    "days_since_last_order",
    "days_since_first_order",
    "average_days_between_orders",
    "units_last_365_days",
    "max_units_in_order",
    "p_alive",
    "expected_purchases_90d",
    "predicted_clv",
    "rfm_recency",
    "rfm_frequency",
    "rfm_monetary",
  ],
  text: ["country", "province", "city", "email", "email_domain", "company", "rfm_group", "marketing_state"],
  product: ["products"],
  tag: ["tags"],
};
const OPS = {
  number: [">=", ">", "<=", "<", "=", "!="],
  text: ["=", "!=", "contains", "not_contains", "in", "not_in"],
  product: ["includes", "excludes"],
  tag: ["has", "has_not"],
};
const kindOf = (field) => Object.keys(FIELDS).find((kind) => FIELDS[kind].includes(field));

function blankCondition() {
  return { field: "total_spent", op: ">=", value: 100 };
}

/** The rule as the API takes it: values typed in the inputs become numbers or lists. */
function toSpec(group) {
  return {
    match: group.match,
    rules: group.rules.map((rule) => {
      if (rule.rules) return toSpec(rule);
      const kind = kindOf(rule.field);
      let value = rule.value;
      if (kind === "number") value = value === "" || Number.isNaN(Number(value)) ? value : Number(value);
      else if (rule.op === "in" || rule.op === "not_in")
        value = String(value).split(",").map((v) => v.trim()).filter(Boolean);
      return { field: rule.field, op: rule.op, value };
    }),
  };
}

function fromSpec(spec) {
  return {
    match: spec.match || "all",
    rules: (spec.rules || []).map((rule) =>
      rule.rules ? fromSpec(rule) : { ...rule, value: Array.isArray(rule.value) ? rule.value.join(", ") : rule.value },
    ),
  };
}

export async function render(root, handle) {
  const load = async () => {
    const data = await api.get("/settings");
    return data.settings.custom_segments;
  };
  await withStates(root, load, (customs) => draw(root, customs, handle));
}

function draw(root, customs, handle) {
  const editing = handle ? customs.find((c) => c.handle === handle) : null;
  const copyOf = new URLSearchParams(location.hash.split("?")[1] || "").get("copy");
  const source = editing || customs.find((c) => c.handle === copyOf);
  if (handle && !editing) {
    root.append(
      page(
        t("builder.title_edit"),
        {},
        banner("warning", t("builder.not_found"), h("p", null, h("a", { href: "#/segments", "data-action": "back" }, t("segment.back")))),
      ),
    );
    return;
  }
  const state = source ? fromSpec(source) : { match: "all", rules: [blankCondition()] };
  const name = h("input", {
    type: "text",
    id: "builder-name",
    maxlength: 255,
    value: editing ? editing.name : source ? t("builder.copy_name", { name: source.name }) : "",
    "data-builder": "name",
  });
  const nameError = h("p", { class: "gp-field-error", role: "alert" });
  const count = h("p", { class: "gp-builder-count", role: "status", "data-preview-count": "" });
  const saveError = h("div");
  const tree = h("div", { class: "gp-builder-tree" });

  const preview = debounce(async () => {
    clearErrors();
    try {
      const body = await api.post("/segments/preview", { segment: { name: name.value || "draft", ...toSpec(state) } });
      count.dataset.previewCount = String(body.members);
      count.textContent = t("builder.count", { count: body.members, total: number(body.customers) });
    } catch (error) {
      count.dataset.previewCount = "";
      count.textContent = t("builder.count_unknown");
      showError(error, "segment.");
    }
  }, 300);

  function clearErrors() {
    for (const el of root.querySelectorAll(".gp-field-error")) el.textContent = "";
    for (const el of root.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    mount(saveError);
  }

  /** Put an API error beside the condition its path names (``segment.rules[1].rules[0].value``). */
  function showError(error, prefix) {
    const field = error.field || "";
    // The API's code in the merchant's words where the page has them; its English otherwise.
    const code = error.body?.code;
    const message = code && has(`builder.error.${code}`) ? t(`builder.error.${code}`, error.body.params) : error.message;
    if (!field.startsWith(prefix)) {
      mount(saveError, banner("critical", t("builder.error"), h("p", null, message)));
      return;
    }
    const path = field.slice(prefix.length);
    if (path === "name" || path === "handle") {
      nameError.textContent = message;
      name.setAttribute("aria-invalid", "true");
      return;
    }
    // The deepest condition or group whose path starts the error's path.
    const holders = [...root.querySelectorAll("[data-path]")].filter(
      (el) => path === el.dataset.path || path.startsWith(`${el.dataset.path}.`),
    );
    const holder = holders.sort((a, b) => b.dataset.path.length - a.dataset.path.length)[0];
    if (!holder) {
      mount(saveError, banner("critical", t("builder.error"), h("p", null, message)));
      return;
    }
    holder.querySelector(":scope > .gp-field-error").textContent = message;
    const part = path.split(".").pop();
    holder.querySelector(`:scope > .gp-condition-row [data-part="${part}"]`)?.setAttribute("aria-invalid", "true");
  }

  function changed() {
    drawTree();
    preview();
  }

  function conditionView(rule, group, index, path) {
    const kind = kindOf(rule.field);
    const field = h(
      "select",
      {
        "data-part": "field",
        "aria-label": t("builder.field"),
        onChange: (event) => {
          rule.field = event.target.value;
          const next = kindOf(rule.field);
          if (next !== kind) {
            rule.op = OPS[next][0];
            rule.value = next === "number" ? 0 : "";
          }
          changed();
        },
      },
      Object.entries(FIELDS).map(([k, names]) =>
        h(
          "optgroup",
          { label: t(`builder.kind.${k}`) },
          names.map((f) => h("option", { value: f, selected: f === rule.field }, t(`builder.field.${f}`))),
        ),
      ),
    );
    const op = h(
      "select",
      {
        "data-part": "op",
        "aria-label": t("builder.op"),
        onChange: (event) => {
          rule.op = event.target.value;
          changed();
        },
      },
      OPS[kind].map((o) => h("option", { value: o, selected: o === rule.op }, t(`builder.op.${o}`))),
    );
    const value = h("input", {
      "data-part": "value",
      "aria-label": t("builder.value"),
      type: kind === "number" ? "number" : "text",
      step: kind === "number" ? "any" : undefined,
      value: rule.value ?? "",
      placeholder: kind === "product" ? t("builder.product_placeholder") : kind === "tag" ? t("builder.tag_placeholder") : rule.op.endsWith("in") ? t("builder.list_placeholder") : undefined,
      onInput: (event) => {
        rule.value = event.target.value;
        preview();
      },
    });
    return h(
      "div",
      { class: "gp-condition", "data-path": path, "data-condition": "" },
      h(
        "div",
        { class: "gp-condition-row" },
        field,
        op,
        value,
        button(t("builder.remove"), {
          "data-action": "remove-condition",
          "accessibility-label": t("builder.remove"),
          onClick: () => {
            group.rules.splice(index, 1);
            changed();
          },
        }),
      ),
      h("p", { class: "gp-field-error", role: "alert" }),
    );
  }

  function groupView(group, path, depth) {
    const joiner = h(
      "select",
      {
        "data-part": "match",
        "aria-label": t("builder.match"),
        onChange: (event) => {
          group.match = event.target.value;
          changed();
        },
      },
      ["all", "any"].map((m) => h("option", { value: m, selected: m === group.match }, t(`builder.match.${m}`))),
    );
    const prefix = path ? `${path}.` : "";
    return h(
      "div",
      { class: depth ? "gp-group gp-group-nested" : "gp-group", "data-path": path || undefined, "data-group": "" },
      h("div", { class: "gp-condition-row" }, h("label", { class: "gp-label" }, joiner)),
      h("p", { class: "gp-field-error", role: "alert" }),
      group.rules.map((rule, i) =>
        rule.rules ? groupView(rule, `${prefix}rules[${i}]`, depth + 1) : conditionView(rule, group, i, `${prefix}rules[${i}]`),
      ),
      h(
        "div",
        { class: "gp-actions" },
        button(t("builder.add_condition"), {
          "data-action": "add-condition",
          onClick: () => {
            group.rules.push(blankCondition());
            changed();
          },
        }),
        depth === 0
          ? button(t("builder.add_group"), {
              "data-action": "add-group",
              onClick: () => {
                group.rules.push({ match: "any", rules: [blankCondition()] });
                changed();
              },
            })
          : null,
      ),
    );
  }

  function drawTree() {
    mount(tree, groupView(state, "", 0));
  }

  /** Save ``next`` as the shop's custom segments; a change that moves tags is confirmed first. */
  async function saveAll(next, index) {
    const changes = { custom_segments: next };
    try {
      try {
        return await api.put("/settings", { settings: changes });
      } catch (error) {
        if (error.status !== 409) throw error;
        if (!(await confirmDialog(t("settings.preview.title"), effectView(error.body), t("settings.preview.apply")))) return null;
        return await api.put("/settings", { settings: changes, confirm: error.body.token });
      }
    } catch (error) {
      if (error.status !== 400) throw error;
      showError(error, `custom_segments[${index}].`);
      return null;
    }
  }

  async function save() {
    clearErrors();
    const text = name.value.trim();
    if (!text) {
      nameError.textContent = t("builder.name_needed");
      name.setAttribute("aria-invalid", "true");
      name.focus();
      return;
    }
    // A new segment has no handle yet: the server makes one from its name in any script.
    // Editing an archived segment keeps it archived until the merchant restores it.
    const spec = { handle: editing ? editing.handle : "", name: text, ...toSpec(state), ...(editing?.archived ? { archived: true } : {}) };
    const next = editing ? customs.map((c) => (c.handle === editing.handle ? spec : c)) : [...customs, spec];
    const index = next.indexOf(spec);
    const saved = await saveAll(next, index);
    if (!saved) return;
    toast(t("builder.saved"));
    location.hash = "#/segments";
  }

  async function remove() {
    const body = h("p", null, t("builder.delete_body", { name: editing.name }));
    if (!(await confirmDialog(t("builder.delete"), body, t("builder.delete"), "critical"))) return;
    const next = customs.filter((c) => c.handle !== editing.handle);
    const saved = await saveAll(next, -1);
    if (!saved) return;
    toast(t("builder.deleted"));
    location.hash = "#/segments";
  }

  /** Archive (no members, its tags off, its rules kept) or restore: saved like an edit. */
  async function setArchived(archived) {
    if (archived) {
      const body = h("p", null, t("builder.archive_body", { name: editing.name }));
      if (!(await confirmDialog(t("builder.archive"), body, t("builder.archive")))) return;
    }
    const next = customs.map((c) => {
      if (c.handle !== editing.handle) return c;
      const { archived: _, ...rest } = c;
      return archived ? { ...rest, archived: true } : rest;
    });
    const saved = await saveAll(next, next.findIndex((c) => c.handle === editing.handle));
    if (!saved) return;
    toast(t(archived ? "builder.archived" : "builder.restored"));
    location.hash = "#/segments";
  }

  drawTree();
  root.append(
    page(
      editing ? t("builder.title_edit") : t("builder.title_new"),
      {},
      h("p", null, h("a", { href: "#/segments", "data-action": "back" }, t("segment.back"))),
      editing?.archived
        ? banner(
            "info",
            t("builder.archived_title"),
            h("p", null, t("builder.archived_body")),
            button(t("builder.restore"), { variant: "primary", "data-action": "restore-segment", onClick: () => setArchived(false).catch(failed) }),
          )
        : null,
      saveError,
      section(
        null,
        h("div", { class: "gp-field" }, h("label", { class: "gp-label", for: "builder-name" }, t("builder.name")), name, nameError),
        h("p", { class: "gp-subdued" }, t("builder.help")),
        tree,
        count,
        h(
          "div",
          { class: "gp-actions" },
          button(t("action.save"), { variant: "primary", "data-action": "save-segment", onClick: () => save().catch(failed) }),
          editing
            ? button(t("builder.duplicate"), {
                "data-action": "duplicate",
                onClick: () => {
                  location.hash = `#/segments/new?copy=${encodeURIComponent(editing.handle)}`;
                },
              })
            : null,
          editing && !editing.archived
            ? button(t("builder.archive"), { "data-action": "archive-segment", onClick: () => setArchived(true).catch(failed) })
            : null,
          editing
            ? button(t("builder.delete"), { tone: "critical", "data-action": "delete-segment", onClick: () => remove().catch(failed) })
            : null,
        ),
      ),
    ),
  );
  name.addEventListener("input", () => preview());
  preview();

  function failed(error) {
    mount(saveError, banner("critical", t("builder.error"), h("p", null, error.message)));
  }
}
