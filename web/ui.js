// Small building blocks over Polaris web components: page, section, badge, banner, table,
// and the three states every view has (loading, empty, error).

import { h } from "./dom.js";
import { t } from "./i18n.js";

export function page(heading, attrs, ...children) {
  return h("s-page", { heading, ...attrs }, h("h1", { class: "gp-heading" }, heading), ...children);
}

export function section(heading, ...children) {
  return h(
    "s-section",
    { heading: heading || undefined },
    heading ? h("h2", { class: "gp-section-heading" }, heading) : null,
    ...children,
  );
}

export function badge(text, tone) {
  return h("s-badge", { tone: tone || undefined }, text);
}

export function banner(tone, heading, ...children) {
  return h(
    "s-banner",
    { tone, heading: heading || undefined, role: tone === "critical" ? "alert" : "status" },
    heading ? h("strong", { class: "gp-banner-heading" }, heading) : null,
    children.length ? h("div", { class: "gp-banner-body" }, ...children) : null,
  );
}

export function button(label, attrs = {}) {
  return h("s-button", attrs, label);
}

export function loading(label) {
  return h(
    "div",
    { class: "gp-loading", role: "status" },
    h("s-spinner", { "accessibility-label": label || t("state.loading") }),
    h("span", { class: "gp-spinner", "aria-hidden": "true" }),
    h("span", null, label || t("state.loading")),
  );
}

export function empty(heading, text, action) {
  return h(
    "div",
    { class: "gp-empty" },
    h("p", { class: "gp-empty-heading" }, heading),
    text ? h("p", { class: "gp-subdued" }, text) : null,
    action || null,
  );
}

/** An error banner with a retry button; messages for known failures are translated. */
export function failure(error, retry) {
  let message = error?.message ? error.message : String(error);
  if (message === "app-bridge-missing") message = t("error.app_bridge");
  else if (error && error.status === 401) message = t("error.session");
  else if (error && error.status >= 500) message = t("error.server");
  else if (error instanceof TypeError) message = t("error.network");
  // Something gone (a deleted segment, an old link): a way back, not a retry that fails again.
  if (error && error.status === 404) {
    return banner(
      "warning",
      t("error.not_found"),
      h("p", null, h("a", { href: "#/segments", "data-action": "back" }, t("segment.back"))),
    );
  }
  return banner(
    "critical",
    t("error.heading"),
    h("p", null, message),
    retry ? button(t("action.retry"), { onClick: retry }) : null,
  );
}

/** A Polaris table: headers is a list of labels (or {label, numeric}); rows of cells. */
export function table(headers, rows, attrs = {}) {
  return h(
    "s-table",
    attrs,
    h(
      "s-table-header-row",
      null,
      headers.map((head) => {
        const label = typeof head === "string" ? head : head.label;
        return h("s-table-header", { format: head.numeric ? "numeric" : undefined }, label);
      }),
    ),
    h(
      "s-table-body",
      null,
      rows.map((cells) =>
        h(
          "s-table-row",
          null,
          cells.map((cell, i) =>
            h(
              "s-table-cell",
              {
                class: headers[i]?.numeric ? "gp-num" : undefined,
                // Narrow screens stack the cells and show each one's column beside it.
                "data-label": typeof headers[i] === "string" ? headers[i] : headers[i]?.label,
              },
              cell,
            ),
          ),
        ),
      ),
    ),
  );
}

/** A transient confirmation: App Bridge's toast in the admin, a local one elsewhere. */
export function toast(message) {
  if (window.shopify?.toast) {
    window.shopify.toast.show(message);
    return;
  }
  const el = h("div", { class: "gp-toast", role: "status" }, message);
  document.body.append(el);
  setTimeout(() => el.remove(), 3500);
}

/**
 * A modal dialog (native <dialog>) asking to confirm; resolves true/false.
 * ``body`` is a node or text; the confirm button carries ``confirmLabel``.
 */
export function confirmDialog(heading, body, confirmLabel, tone) {
  return new Promise((resolve) => {
    const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
    const dialog = h("dialog", { class: "gp-dialog", "aria-labelledby": titleId });
    const done = (value) => {
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    dialog.append(
      h("h2", { id: titleId, class: "gp-section-heading" }, heading),
      h("div", { class: "gp-dialog-body" }, body),
      h(
        "div",
        { class: "gp-actions" },
        button(t("action.cancel"), { onClick: () => done(false), "data-action": "cancel" }),
        button(confirmLabel, {
          variant: "primary",
          tone: tone || undefined,
          onClick: () => done(true),
          "data-action": "confirm",
        }),
      ),
    );
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      done(false);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Run a view loader with loading and error states inside ``root``. */
export async function withStates(root, load, render) {
  root.replaceChildren(loading());
  root.setAttribute("aria-busy", "true");
  try {
    const data = await load();
    root.replaceChildren();
    render(data);
  } catch (error) {
    console.error(error);
    root.replaceChildren(failure(error, () => withStates(root, load, render)));
  } finally {
    root.setAttribute("aria-busy", "false");
  }
}
