// Tag-sync and Meta-sync switches, shared by the segments table and the segment page.
// Turning a sync on first shows what it would do (the preview counts), then applies on confirm.

import { api } from "../api.js";
import { h } from "../dom.js";
import { number, segmentName, t } from "../i18n.js";
import { badge, button, confirmDialog, failure, toast } from "../ui.js";

// Tones of the one Meta state vocabulary (MetaState on the server, `meta_state.*` messages).
const META_TONES = { synced: "success", created: "success", syncing: "info", refreshing: "info", throttled: "warning", empty: "warning", disconnected: "warning", error: "critical", flagged: "critical" };

/** Tag sync as the server reports it: off, writing (members tagged so far of all), or on. */
export function tagBadge(segment) {
  const sync = segment.tag_sync;
  if (!sync.enabled) return badge(t("sync.off"));
  if (sync.written !== null && sync.written !== undefined && sync.written < segment.members) {
    return h("span", { "data-tag-progress": `${sync.written}/${segment.members}` }, badge(t("tags.progress", { done: sync.written, total: segment.members }), "info"));
  }
  return badge(t("sync.on"), "success");
}

/** A Meta audience's state, worded the same in every view. */
export function metaStateBadge(state) {
  return h("span", { "data-meta-state": state }, badge(t(`meta_state.${state}`), META_TONES[state]));
}

export function metaBadge(segment) {
  return metaStateBadge(segment.meta_sync.status || "off");
}

async function toggleTag(segment, onChange) {
  const id = segment.id;
  const name = segmentName(segment);
  if (segment.tag_sync.enabled) {
    const ok = await confirmDialog(
      t("tags.off_title", { name }),
      h("p", null, t("tags.off_body", { tag: segment.tag_sync.tag, count: segment.members })),
      t("tags.off_confirm"),
      "critical",
    );
    if (!ok) return;
    await api.post(`/segments/${id}/tag-sync`, { enabled: false });
    toast(t("tags.off_done", { name }));
    onChange();
    return;
  }
  const preview = await api.post(`/segments/${id}/tag-sync`, { enabled: true });
  const ok = await confirmDialog(
    t("tags.on_title", { name }),
    h(
      "div",
      { "data-preview": "tags" },
      h("p", null, t("tags.on_body", { tag: preview.tag })),
      h(
        "ul",
        null,
        h("li", { "data-gain": preview.preview.gain }, t("tags.gain", { count: preview.preview.gain })),
        h("li", { "data-lose": preview.preview.lose }, t("tags.lose", { count: preview.preview.lose })),
      ),
      h("p", { class: "gp-subdued" }, t("tags.only_ours")),
    ),
    t("tags.on_confirm"),
  );
  if (!ok) return;
  await api.post(`/segments/${id}/tag-sync`, { enabled: true, confirm: true });
  toast(t("tags.on_done", { name }));
  onChange();
}

async function toggleMeta(segment, onChange) {
  const id = segment.id;
  const name = segmentName(segment);
  if (segment.meta_sync.enabled) {
    const ok = await confirmDialog(t("meta.off_title", { name }), h("p", null, t("meta.off_body")), t("meta.off_confirm"), "critical");
    if (!ok) return;
    await api.post(`/meta/segments/${id}/sync`, { enabled: false });
    onChange();
    return;
  }
  const preview = await api.get(`/segments/${id}/meta-preview`);
  if (!preview.connected) {
    await confirmDialog(
      t("meta.connect_first"),
      h("p", null, t("meta.connect_first_body")),
      t("action.open_settings"),
    ).then((go) => {
      if (go) location.hash = "#/settings";
    });
    return;
  }
  const ok = await confirmDialog(
    t("meta.on_title", { name }),
    h(
      "div",
      { "data-preview": "meta" },
      h("p", null, t("meta.on_body", { upload: preview.preview.upload, members: preview.preview.members })),
      h("p", { class: "gp-subdued" }, t("meta.consent_note")),
    ),
    t("meta.on_confirm"),
  );
  if (!ok) return;
  await api.post(`/meta/segments/${id}/sync`, { enabled: true });
  toast(t("meta.on_done", { name }));
  onChange();
}

/** A switch button that runs ``action`` and reports errors inline; ``name`` says which
 * switch it is ("Tag sync for VIP"), since every row has one. */
function switchButton(label, name, pressed, action, segment, onChange, errors) {
  const el = button(label, {
    "aria-label": name,
    "aria-pressed": pressed ? "true" : "false",
    variant: "secondary",
    "data-toggle": label,
    onClick: async () => {
      el.setAttribute("loading", "");
      try {
        await action(segment, onChange);
      } catch (error) {
        errors.replaceChildren(failure(error));
      } finally {
        el.removeAttribute("loading");
      }
    },
  });
  return el;
}

export function tagSwitch(segment, onChange, errors) {
  return h(
    "span",
    { class: "gp-switch", "data-tag-sync": segment.tag_sync.enabled ? "on" : "off" },
    tagBadge(segment),
    switchButton(
      segment.tag_sync.enabled ? t("action.turn_off") : t("action.turn_on"),
      t("tags.toggle", { name: segmentName(segment) }),
      segment.tag_sync.enabled,
      toggleTag,
      segment,
      onChange,
      errors,
    ),
  );
}

export function metaSwitch(segment, onChange, errors) {
  return h(
    "span",
    { class: "gp-switch", "data-meta-sync": segment.meta_sync.enabled ? "on" : "off" },
    metaBadge(segment),
    switchButton(
      segment.meta_sync.enabled ? t("action.turn_off") : t("action.turn_on"),
      t("meta.toggle", { name: segmentName(segment) }),
      segment.meta_sync.enabled,
      toggleMeta,
      segment,
      onChange,
      errors,
    ),
  );
}

export function memberCount(n) {
  return number(n);
}
