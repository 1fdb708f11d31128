// Messages and formatting. The locale comes from the admin (`locale` query parameter); every
// string the page shows lives in web/i18n/<lang>.json. Arabic switches the page to right-to-left.

export const SUPPORTED = ["en", "ar", "ko", "el"];
const RTL = new Set(["ar"]);

let messages = {};
let fallback = {};
export let locale = "en";
export let lang = "en";

function pick(requested) {
  const tag = (requested || "en").replace("_", "-");
  const base = tag.split("-")[0].toLowerCase();
  return SUPPORTED.includes(base) ? { tag, base } : { tag: "en", base: "en" };
}

async function load(base) {
  const response = await fetch(new URL(`./i18n/${base}.json`, import.meta.url));
  if (!response.ok) throw new Error(`messages for ${base}: HTTP ${response.status}`);
  return response.json();
}

/** Load the messages for ``requested`` (e.g. "ar", "ko-KR") and set lang/dir on <html>. */
export async function init(requested) {
  const chosen = pick(requested);
  locale = chosen.tag;
  lang = chosen.base;
  fallback = await load("en");
  messages = lang === "en" ? fallback : await load(lang).catch(() => fallback);
  document.documentElement.lang = locale;
  document.documentElement.dir = RTL.has(lang) ? "rtl" : "ltr";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}

// Plural forms follow the number as it is shown (at most one decimal, as number() shows it):
// 0.96 is shown as "1", so it takes the form of 1.
const plurals = () => new Intl.PluralRules(locale, { maximumFractionDigits: 1 });

const PLURAL_ARGUMENT = /\{(\w+), plural,/g;
const PLURAL_FORM = /(=\d+|zero|one|two|few|many|other)\s*\{((?:[^{}]|\{\w+\})*)\}/g;

/** ICU-style plural arguments inside a message, for a message with more than one count (or a
 * count not named ``count``): "{days, plural, one {# day} other {# days}}" takes the form its
 * own number needs in the page's language (Arabic has six), "#" being that number as shown. */
function pluralArguments(message, params) {
  let out = "";
  let last = 0;
  PLURAL_ARGUMENT.lastIndex = 0;
  for (let found = PLURAL_ARGUMENT.exec(message); found; found = PLURAL_ARGUMENT.exec(message)) {
    let end = PLURAL_ARGUMENT.lastIndex;
    for (let depth = 1; end < message.length && depth > 0; end += 1) {
      if (message[end] === "{") depth += 1;
      else if (message[end] === "}") depth -= 1;
    }
    const forms = {};
    for (const [, category, text] of message.slice(PLURAL_ARGUMENT.lastIndex, end - 1).matchAll(PLURAL_FORM)) {
      forms[category] = text;
    }
    const value = Number(params[found[1]] ?? 0);
    const form = forms[`=${value}`] ?? forms[plurals().select(value)] ?? forms.other ?? "";
    out += message.slice(last, found.index) + form.replace(/#/g, number(value));
    last = end;
    PLURAL_ARGUMENT.lastIndex = end;
  }
  return out + message.slice(last);
}

/** The message ``key`` with ``{name}`` placeholders filled; plural messages pick by ``count``,
 * plural arguments ("{days, plural, …}") by their own number. */
export function t(key, params = {}) {
  let message = messages[key] ?? fallback[key];
  if (message === undefined) return key;
  if (typeof message === "object") {
    const category = plurals().select(Number(params.count ?? 0));
    message = message[category] ?? message.other;
  }
  if (message.includes(", plural,")) message = pluralArguments(message, params);
  return message.replace(/\{(\w+)\}/g, (_, name) => {
    const value = params[name];
    if (value === undefined || value === null) return "";
    return typeof value === "number" ? number(value) : String(value);
  });
}

/** True when a message exists (segment names fall back to the stored name). */
export function has(key) {
  return key in messages || key in fallback;
}

export function number(value, options = {}) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return new Intl.NumberFormat(locale, { maximumFractionDigits: 1, ...options }).format(value);
}

export function percent(value, digits = 1) {
  if (value === null || value === undefined) return "—";
  return new Intl.NumberFormat(locale, {
    style: "percent",
    maximumFractionDigits: digits,
  }).format(value);
}

/** An amount in the shop's currency (its own decimals: none for yen or won); two decimals
 * without a currency when the shop's is not known yet. */
export function money(value, currency) {
  if (value === null || value === undefined) return "—";
  if (!currency) return number(value, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  return new Intl.NumberFormat(locale, { style: "currency", currency }).format(value);
}

let regionNames = null;

/** A country or region code ("GR") as its name in the page's language ("Ελλάδα"), through
 * Intl.DisplayNames; the code itself when the browser knows no name for it. */
export function region(code) {
  if (!code) return "";
  if (regionNames?.locale !== locale) {
    regionNames = { locale, names: new Intl.DisplayNames([locale], { type: "region", fallback: "code" }) };
  }
  try {
    return regionNames.names.of(code.toUpperCase());
  } catch {
    return code; // not a well-formed code (RangeError): show it as stored
  }
}

/** Parts of one thing as the language lists them ("Athens, Greece"; Arabic uses "، "). */
export function listOf(parts) {
  return new Intl.ListFormat(locale, { style: "short", type: "unit" }).format(parts);
}

/** Where customers live, the smaller place inside the larger as the language writes it
 * ("Athens, Attica, Greece"; Korean puts the country first), country names through
 * region(); empty when nothing is known. */
export function place(country, province, city) {
  return [province, city].reduce(
    (outer, inner) => (inner ? (outer ? t("region.province", { province: inner, country: outer }) : inner) : outer),
    region(country),
  );
}

export function date(value, options = { dateStyle: "medium" }) {
  if (!value) return "—";
  const d = typeof value === "string" ? new Date(value) : value;
  return new Intl.DateTimeFormat(locale, options).format(d);
}

export function dateTime(value) {
  return date(value, { dateStyle: "medium", timeStyle: "short" });
}

/** "2026-03" → "Mar 2026" in the page's language. */
export function month(value) {
  const [y, m] = value.split("-").map(Number);
  return new Intl.DateTimeFormat(locale, { month: "short", year: "numeric" }).format(
    new Date(Date.UTC(y, m - 1, 15)),
  );
}

/** A segment's display name: translated for built-ins, the merchant's name otherwise. */
export function segmentName(segment) {
  const key = `segment.${segment.handle}`;
  if (has(key)) return t(key);
  if (/^lapsed-tier-\d+$/.test(segment.handle)) {
    // Tiers are segments by position; their days are in the name ("Lapsed 60–89 days").
    const range = (segment.name || "").match(/(\d+)\s*[–-]\s*(\d+)/);
    const open = (segment.name || "").match(/(\d+)\+/);
    if (range) return t("segment.lapsed_range", { from: Number(range[1]), to: Number(range[2]) });
    if (open) return t("segment.lapsed_open", { from: Number(open[1]) });
  }
  // Region segments: "region-us" or "region-us-ny" (shopify_app/segments/library/regions.py).
  const where = segment.handle.match(/^region-([a-z]{2})(?:-(.+))?$/);
  if (where) return t("segment.region", { place: place(where[1].toUpperCase(), where[2]?.toUpperCase()) });
  const rfm = segment.handle.match(/^rfm-(.+)$/);
  if (rfm && has(`rfm.${rfm[1]}`)) return t("segment.rfm", { group: t(`rfm.${rfm[1]}`) });
  const base = heldOutOf(segment);
  if (base) return t("segment.holdout", { segment: segmentName(base) });
  return segment.name;
}

/** The segment a hold-out group (segments/library/holdouts.py, "holdout-<handle>", named
 * "Hold-out: <its name>") holds customers out of; null for any other segment. */
export function heldOutOf(segment) {
  const held = segment.handle.match(/^holdout-(.+)$/);
  return held ? { handle: held[1], name: (segment.name || "").replace(/^[^:]*:\s*/, "") } : null;
}

/** Month numbers as names: [11, 12] → "November–December", [6, 8] → "June, August". */
function monthNames(list) {
  const format = new Intl.DateTimeFormat(locale, { month: "long", timeZone: "UTC" });
  const name = (m) => format.format(new Date(Date.UTC(2000, m - 1, 15)));
  const run = list.length > 1 && list.every((m, i) => i === 0 || m === list[i - 1] + 1);
  if (run) return `${name(list[0])}–${name(list[list.length - 1])}`;
  return listOf(list.map(name));
}

/** Reason parameters in the page's language; the name says the kind (as in
 * shopify_app/segments/library/reasons.py): *_date an ISO day, *_money an amount in
 * ``currency``, *_months month numbers, and a name with a ``count.<name>`` message ("orders",
 * "days", ...) a count, shown with its noun in the plural the locale needs (unless
 * ``message`` writes that count out in a plural argument of its own). */
function reasonParams(params, currency, message) {
  const shown = {};
  for (const [name, value] of Object.entries(params || {})) {
    if (name.endsWith("_date") && typeof value === "string") {
      shown[name] = date(value, { dateStyle: "long", timeZone: "UTC" });
    } else if (name.endsWith("_money") && typeof value === "number") {
      shown[name] = money(value, currency);
    } else if (name === "place" && typeof value === "string") {
      // A region as regions.region_label writes it: "NY, US" or "US".
      const [, province, country] = value.match(/^(?:(.+), )?([A-Z]{2})$/) || [];
      shown[name] = country ? place(country, province) : value;
    } else if (name.endsWith("_months") && Array.isArray(value)) {
      shown[name] = monthNames(value);
    } else if (typeof value === "number" && has(`count.${name}`) && !message.includes(`{${name}, plural,`)) {
      // A count the message writes out itself (Arabic "كل يومين", after "every") stays a number.
      shown[name] = t(`count.${name}`, { count: value });
    } else {
      shown[name] = value;
    }
  }
  return shown;
}

/** A membership reason; structured reasons ({"key", "params"}) are translated, amounts in
 * the shop's ``currency``. */
export function reason(value, currency) {
  if (!value) return "";
  if (value.startsWith("{")) {
    try {
      const parsed = JSON.parse(value);
      if (parsed.key && has(`reason.${parsed.key}`)) {
        const key = `reason.${parsed.key}`;
        return t(key, reasonParams(parsed.params, currency, messages[key] ?? fallback[key]));
      }
      if (parsed.text) return parsed.text;
    } catch {
      // not JSON after all: show it as written
    }
  }
  return value;
}
