// Following changes while a view is open: the page polls the shop's data version (a 304 while
// nothing changed) and, when it moves, redraws the view off-screen and patches the visible one
// in place, so focus, scroll and typed input survive. Polling rather than server-sent events:
// every API call carries a fresh session token, which an EventSource cannot send.

import { api } from "./api.js";

const POLL_MS = 3000;
const changes = new EventTarget();
let listeners = 0;
let polling = false;
let etag = null;

/** One poll loop while anything listens; a hidden tab does not poll. */
async function poll() {
  while (listeners > 0) {
    if (!document.hidden) {
      try {
        const seen = await api.version(etag);
        if (seen !== null) {
          const first = etag === null;
          etag = seen;
          if (!first) changes.dispatchEvent(new Event("change"));
        }
      } catch (error) {
        // A failed poll is retried at the next tick; the view keeps what it shows.
        console.warn("version poll failed", error);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  polling = false;
}

/** Call ``listener`` whenever the shop's data changes; returns a function that stops it. */
export function onChange(listener) {
  changes.addEventListener("change", listener);
  listeners += 1;
  if (!polling) {
    polling = true;
    poll();
  }
  let on = true;
  return () => {
    if (!on) return;
    on = false;
    changes.removeEventListener("change", listener);
    listeners -= 1;
  };
}

const INPUTS = new Set(["input", "select", "textarea"]);
const ACTIVE = new Set(["button", "s-button", "a", "s-link", "s-clickable"]);

function syncAttributes(target, source) {
  for (const { name } of [...target.attributes]) {
    if (!source.hasAttribute(name)) target.removeAttribute(name);
  }
  for (const { name, value } of [...source.attributes]) {
    if (target.getAttribute(name) !== value) target.setAttribute(name, value);
  }
}

/** Replace ``old`` with ``fresh``, moving focus along if ``old`` had it. */
function swap(old, fresh) {
  const focused = old === document.activeElement || old.contains(document.activeElement);
  old.replaceWith(fresh);
  if (focused && typeof fresh.focus === "function") fresh.focus({ preventScroll: true });
}

function patch(old, fresh) {
  if (old.nodeType !== fresh.nodeType || old.nodeName !== fresh.nodeName) {
    if (old.nodeType === Node.ELEMENT_NODE) swap(old, fresh);
    else old.replaceWith(fresh);
    return;
  }
  if (old.nodeType === Node.TEXT_NODE) {
    if (old.data !== fresh.data) old.data = fresh.data;
    return;
  }
  if (old.nodeType !== Node.ELEMENT_NODE) return;
  const name = old.localName;
  // Sections that refresh themselves (with their own search and page) and what the merchant
  // is typing stay as they are.
  if (old.dataset.live === "own" || INPUTS.has(name)) return;
  // Buttons and links carry handlers bound to the data they were drawn from: take the new ones.
  if (ACTIVE.has(name)) {
    swap(old, fresh);
    return;
  }
  syncAttributes(old, fresh);
  morph(old, fresh);
}

/** Make ``target``'s children look like ``source``'s, reusing the nodes that stay. */
export function morph(target, source) {
  const fresh = [...source.childNodes];
  const old = [...target.childNodes];
  fresh.forEach((node, i) => {
    if (i < old.length) patch(old[i], node);
    else target.append(node);
  });
  for (const node of old.slice(fresh.length)) node.remove();
}

/** Redraw with ``render(container)`` into a detached container and patch ``root`` with it
 * whenever the data changes; returns a function that stops following. A redraw that failed
 * (the view drew only an error banner) leaves the view as it was. */
export function follow(root, render) {
  let busy = false;
  return onChange(async () => {
    if (busy || !root.isConnected) return;
    busy = true;
    try {
      const fresh = document.createElement("div");
      const view = await render(fresh);
      view?.dispose?.();
      const only = fresh.children.length === 1 ? fresh.firstElementChild : null;
      if (only?.localName !== "s-banner") morph(root, fresh);
    } finally {
      busy = false;
    }
  });
}
