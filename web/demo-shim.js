// Demo only (loaded when the page URL has ?demo=1): stands in for App Bridge, whose CDN script
// is unreachable offline. It mints session tokens from the sandbox's
// /shops/{shop}/admin/session-token, which signs them with the app's secret as Shopify would.
// In the Shopify admin App Bridge provides window.shopify and this file is never loaded.

const params = new URLSearchParams(location.search);
const shop = params.get("shop") || "linen-lane.myshopify.com";

function substituted(name) {
  const meta = document.querySelector(`meta[name="${name}"]`);
  return meta?.content && !meta.content.includes("{{") ? meta.content : "";
}

let tokenUrl = null;

// Where the sandbox mints tokens, in order: the shop URL the app wrote into the page, a
// `sandbox` query parameter, the URL the app's own bounce page uses, and finally this origin.
async function findTokenUrl() {
  if (tokenUrl) return tokenUrl;
  const shopUrl = substituted("goldpan-shop-url");
  const sandbox = substituted("goldpan-sandbox-url") || params.get("sandbox");
  if (shopUrl) {
    tokenUrl = `${shopUrl.replace(/\/$/, "")}/admin/session-token`;
  } else if (sandbox) {
    tokenUrl = `${sandbox.replace(/\/$/, "")}/shops/${encodeURIComponent(shop)}/admin/session-token`;
  } else {
    try {
      const bounce = await fetch(`/auth/session-token?shop=${encodeURIComponent(shop)}`);
      const found = (await bounce.text()).match(/fetch\("([^"]+\/admin\/session-token)"\)/);
      if (found) tokenUrl = found[1];
    } catch {
      // no bounce page: fall through to this origin
    }
    tokenUrl ||= `${location.origin}/shops/${encodeURIComponent(shop)}/admin/session-token`;
  }
  return tokenUrl;
}

function claims(token) {
  const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
}

let cached = null;

function remember(token) {
  cached = { token, exp: claims(token).exp * 1000 };
  return token;
}

// The page load itself carries a fresh token (?id_token=): use it while it is valid.
if (params.get("id_token")) {
  try {
    remember(params.get("id_token"));
  } catch {
    cached = null;
  }
}

async function mint() {
  const response = await fetch(await findTokenUrl(), { cache: "no-store" });
  if (!response.ok) throw new Error(`session token: HTTP ${response.status}`);
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : { token: await response.text() };
  return remember(body.token || body.id_token || body.session_token);
}

if (!window.shopify || typeof window.shopify.idToken !== "function") {
  window.shopify = {
    demo: true,
    config: { shop, locale: params.get("locale") || "en" },
    async idToken(options = {}) {
      if (!options.fresh && cached && cached.exp - Date.now() > 10_000) return cached.token;
      return mint();
    },
    toast: {
      show(message) {
        const el = document.createElement("div");
        el.className = "gp-toast";
        el.setAttribute("role", "status");
        el.textContent = message;
        document.body.append(el);
        setTimeout(() => el.remove(), 3500);
      },
    },
  };
}
