// Building DOM without innerHTML: every text goes through textContent, so customer data
// (names, emails, reasons) can never inject markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "props") {
      Object.assign(el, value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** h("s-badge", {tone: "success"}, "On") — an element with attributes and children. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  if (tag === "s-button" || tag === "s-clickable") makeActivatable(el);
  return el;
}

/** An SVG element (charts). */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

// Until Polaris defines s-button (or when its CDN is unreachable), give it what a button has:
// focus, a role, and Enter/Space activation. Polaris replaces all of this once it loads.
function makeActivatable(el) {
  if (customElements.get(el.localName)) return;
  el.setAttribute("role", el.getAttribute("href") ? "link" : "button");
  if (!el.hasAttribute("disabled")) el.tabIndex = 0;
  el.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      el.click();
    }
  });
  el.addEventListener("click", (event) => {
    if (el.hasAttribute("disabled") || el.hasAttribute("loading")) {
      event.stopImmediatePropagation();
      event.preventDefault();
      return;
    }
    const href = el.getAttribute("href");
    if (href) location.hash = href.replace(/^.*#/, "#");
  });
}

/** Replace the children of ``el``. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
/** A document-unique id for aria references. */
export function nextId(prefix = "gp") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** Debounce a function (search boxes). */
export function debounce(fn, ms = 250) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
