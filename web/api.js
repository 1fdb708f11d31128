// Every call to the app's API carries a fresh session token (App Bridge's shopify.idToken(),
// or the demo shim's). A 401 with X-Shopify-Retry-Invalid-Session-Request is retried once with
// a new token, as App Bridge's own fetch does.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || `HTTP ${status}`);
    this.status = status;
    this.field = body ? body.field : null;
    this.body = body;
  }
}

async function token(fresh = false) {
  const bridge = window.shopify;
  if (!bridge || typeof bridge.idToken !== "function") {
    throw new ApiError(0, { error: "app-bridge-missing" });
  }
  return bridge.idToken({ fresh });
}

async function call(path, { method = "GET", body, accept = "application/json", extra = {} } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const headers = { ...extra, Authorization: `Bearer ${await token(attempt > 0)}`, Accept: accept };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(`/api${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (
      response.status === 401 &&
      attempt === 0 &&
      response.headers.get("X-Shopify-Retry-Invalid-Session-Request") === "1"
    ) {
      continue;
    }
    return response;
  }
}

async function json(response) {
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { error: text.slice(0, 200) };
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export const api = {
  get: (path) => call(path).then(json),
  post: (path, body = {}) => call(path, { method: "POST", body }).then(json),
  put: (path, body = {}) => call(path, { method: "PUT", body }).then(json),
  del: (path) => call(path, { method: "DELETE" }).then(json),
  /** The shop's data version (its ETag), or null while it is still ``etag`` (a 304). */
  async version(etag) {
    const response = await call("/version", { extra: etag ? { "If-None-Match": etag } : {} });
    if (response.status === 304) return null;
    await json(response);
    return response.headers.get("ETag");
  },
  /** Download a file the API serves (CSV): fetched with the token, saved through a link. */
  async download(path, filename) {
    const response = await call(path, { accept: "text/csv" });
    if (!response.ok) await json(response);
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = Object.assign(document.createElement("a"), { href: url, download: filename });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    return blob;
  },
};

/** Build a query string, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
