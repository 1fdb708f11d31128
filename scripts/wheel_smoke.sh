#!/usr/bin/env bash
# The deploy check (CI runs it from `./dev test`): build the wheel, install it as the Dockerfile
# does (its dependencies and the postgres and redis extras; no sandbox, no test tools) into a
# clean virtualenv outside the checkout, then run what the image runs: `shopify-app db upgrade`,
# `shopify-app serve` (fetch /healthz, /readyz, the page and a static asset it links), and
# `shopify-app analyze` on the sample orders export. Any failure exits 1 with the reason.
#   scripts/wheel_smoke.sh [PYTHON]   PYTHON builds the wheel (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${1:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d /tmp/goldpan-wheel.XXXXXX)
SERVER_PID=""

say() { printf '\033[1m==> wheel: %s\033[0m\n' "$*" >&2; }
fail() {
  printf '\033[1;31mwheel check FAILED: %s\033[0m\n' "$*" >&2
  if [ -s "$WORK/serve.log" ]; then echo "--- last lines of shopify-app serve:" >&2; tail -n 25 "$WORK/serve.log" >&2; fi
  exit 1
}
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true  # background jobs ignore SIGINT
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

say "building the wheel"
rm -rf build  # setuptools reuses build/lib: a file deleted from the tree would linger in the wheel
"$PYTHON" -m pip wheel --no-deps --quiet --wheel-dir "$WORK/dist" . >"$WORK/build.log" 2>&1 ||
  { tail -n 30 "$WORK/build.log" >&2; fail "pip wheel could not build the project"; }
rm -rf build
WHEEL=$(ls "$WORK"/dist/goldpan-*.whl)

say "installing $(basename "$WHEEL") into a clean virtualenv in $WORK"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$WHEEL[postgres,redis]" >"$WORK/install.log" 2>&1 ||
  { tail -n 30 "$WORK/install.log" >&2; fail "pip could not install the wheel and its dependencies"; }

# Everything below runs from $WORK with a minimal environment: nothing of the checkout is on the
# path, so only the installed wheel can answer.
cd "$WORK"
mkdir -p var
BIN="$WORK/venv/bin"
PORT=$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
APP_ENV=(
  env -i "PATH=$BIN:/usr/bin:/bin" "HOME=$WORK" "LANG=C.UTF-8"
  SHOPIFY_API_KEY=wheel-check-key "SHOPIFY_API_SECRET=$("$BIN/python" -c 'import secrets; print(secrets.token_hex(32))')"
  "TOKEN_ENCRYPTION_KEY=$("$BIN/shopify-app" keygen)"
  "DATABASE_URL=sqlite:///$WORK/var/goldpan.sqlite3" "HUEY_PATH=$WORK/var/huey.sqlite3"
  "PORT=$PORT" "SHOPIFY_APP_URL=http://127.0.0.1:$PORT"
  # The install below queues the shop's first sync: keep it on loopback, where nothing answers.
  "SHOPIFY_BASE_URL=http://127.0.0.1:9"
  LOG_JSON=false
)

"${APP_ENV[@]}" "$BIN/python" - "$WORK/venv" <<'EOF' || fail "the app was not imported from the installed wheel"
import importlib.util, sys
from pathlib import Path
app = Path(importlib.util.find_spec("shopify_app").origin).resolve()
assert app.is_relative_to(Path(sys.argv[1]).resolve()), f"shopify_app comes from {app}"
missing = [m for m in ("graphql", "multipart") if importlib.util.find_spec(m) is not None]
assert not missing, f"the sandbox's dependencies are installed: {missing}"
EOF

say "shopify-app db upgrade"
"${APP_ENV[@]}" "$BIN/shopify-app" db upgrade || fail "shopify-app db upgrade failed (migrations missing from the wheel?)"

say "installing a shop and signing a session token for it"
cat >"$WORK/install_shop.py" <<'EOF'
import datetime as dt, time, urllib.parse, uuid
import jwt
from shopify_app.server.app import build_context
from shopify_app.settings import Settings
from shopify_app.shopify.auth import TokenSet, install

settings = Settings.from_env()
shop = "wheel-check.myshopify.com"
now = dt.datetime.now(dt.UTC)
install(build_context(settings), shop, TokenSet(
    access_token="wheel-check-token", scope=",".join(settings.scopes),
    expires_at=now + dt.timedelta(hours=1), refresh_token="wheel-check-refresh",
    refresh_token_expires_at=now + dt.timedelta(days=30),
))
t = int(time.time())
token = jwt.encode({
    "iss": f"https://{shop}/admin", "dest": f"https://{shop}", "aud": settings.api_key,
    "sub": "1", "exp": t + 300, "nbf": t - 5, "iat": t, "jti": str(uuid.uuid4()), "sid": "check",
}, settings.api_secret, algorithm="HS256")
print(urllib.parse.urlencode({"shop": shop, "embedded": "1", "id_token": token}))
EOF
PAGE_QUERY=$("${APP_ENV[@]}" "$BIN/python" "$WORK/install_shop.py") ||
  fail "could not install a shop with the installed app"

say "shopify-app serve --port $PORT"
"${APP_ENV[@]}" "$BIN/shopify-app" serve --port "$PORT" >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!

"$BIN/python" - "http://127.0.0.1:$PORT" "$PAGE_QUERY" "$ROOT/web" "$SERVER_PID" <<'EOF' || fail "the served app did not answer as expected"
import os, re, sys, time, urllib.error, urllib.request
from pathlib import Path

base, query, web, pid = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])

def get(path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(base + path, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()

deadline = time.monotonic() + 90
while True:
    try:
        status, _ = get("/healthz")
        break
    except OSError:
        os.kill(pid, 0)  # raises when serve has exited
        if time.monotonic() > deadline:
            sys.exit("serve did not answer /healthz within 90 s")
        time.sleep(0.3)

checks = []
def expect(what: str, ok: bool, detail: str = "") -> None:
    print(f"  {'ok ' if ok else 'BAD'} {what}{': ' + detail if detail and not ok else ''}", file=sys.stderr)
    checks.append(ok)

expect("GET /healthz answers 200", status == 200, str(status))
status, body = get("/readyz")
expect("GET /readyz answers 200 (schema at the wheel's head)", status == 200, body.decode()[:200])
status, page = get("/?" + query)
html = page.decode("utf-8", "replace")
expect("GET / (the embedded page) answers 200", status == 200, html[:200])
assets = re.findall(r'(?:src|href)="/static/([^"]+)"', html)
expect("the page is web/index.html, not the placeholder", bool(assets), html[:200])
for asset in assets:
    status, body = get(f"/static/{asset}")
    expect(f"GET /static/{asset} answers 200 with the checkout's file",
           status == 200 and body == (web / asset).read_bytes(), f"HTTP {status}")
sys.exit(0 if all(checks) else 1)
EOF

say "shopify-app analyze tests/fixtures/orders_export_sample.csv"
"${APP_ENV[@]}" "$BIN/shopify-app" analyze "$ROOT/tests/fixtures/orders_export_sample.csv" --json >"$WORK/analysis.json" ||
  fail "shopify-app analyze failed"
"$BIN/python" - "$WORK/analysis.json" <<'EOF' || fail "shopify-app analyze printed no usable report"
import json, sys
report = json.load(open(sys.argv[1], encoding="utf-8"))
assert report["source"]["orders"] > 0 and report["segments"], report
EOF

say "passed: the wheel installs, migrates, serves the page and its assets, and analyzes"
