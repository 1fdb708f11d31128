"""The sandbox's Shopify Flow: ``flowTriggerReceive``, workflows and the lifecycle callback.

Trigger definitions are read from the app's extensions (``extensions/*/shopify.extension.toml``,
``type = "flow_trigger"``), as Shopify reads them when the app is deployed. ``flowTriggerReceive``
validates as Flow does and answers with Flow's messages (``field: ["body"]``, "Errors validating
schema: ..."): ``handle`` and ``payload`` are required (and exclude the deprecated ``body``), the
payload is at most 50,000 bytes, the handle must be one of the app's triggers, and the payload's
keys must be exactly the trigger's fields (a reference field as ``customer_id``, ``order_id``,
``product_id``) with values of their types. Every accepted event is kept, with whether a
workflow was enabled to run on it.

A person or a test enables a workflow on a trigger through the control API; as Shopify Flow
does, the sandbox then POSTs the trigger lifecycle callback (JSON signed with the app secret in
``X-Shopify-Hmac-Sha256``) to the URL of the app's ``flow_trigger_lifecycle_callback``
extension, and the workflow is enabled only if the app answered 2xx.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import tomllib
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from goldpan_sandbox.admin_api import RequestContext, _user_error, resolver
from goldpan_sandbox.delivery import sign
from goldpan_sandbox.store import Store, parse_gid, shop_number

EXTENSIONS_DIR = Path(__file__).resolve().parents[1] / "extensions"
MAX_PAYLOAD_BYTES = 50_000
REFERENCE_KEYS = {
    "customer_reference": "customer_id",
    "order_reference": "order_id",
    "product_reference": "product_id",
}
"""Flow's reference field types and the payload key each is sent as."""
CALLBACK_TIMEOUT = 5.0
"""Flow gives the app five seconds to answer the lifecycle callback."""


@dataclass(frozen=True)
class TriggerDefinition:
    """One ``flow_trigger`` extension: its handle, name and payload fields (key → type)."""

    handle: str
    name: str
    fields: dict[str, str]


@dataclass(frozen=True)
class Extensions:
    """The app's Flow extensions: triggers by handle and the lifecycle callback's URL."""

    triggers: dict[str, TriggerDefinition]
    lifecycle_url: str | None


def load_extensions(directory: Path = EXTENSIONS_DIR) -> Extensions:
    """Read every ``shopify.extension.toml`` under ``directory`` (none: no triggers)."""
    triggers: dict[str, TriggerDefinition] = {}
    lifecycle: str | None = None
    for path in sorted(directory.glob("*/shopify.extension.toml")):
        with path.open("rb") as handle:
            config = tomllib.load(handle)
        fields: dict[str, str] = {}
        for item in config.get("settings", {}).get("fields", []):
            kind = str(item["type"])
            fields[REFERENCE_KEYS.get(kind) or str(item["key"])] = kind
        for ext in config.get("extensions", []):
            if ext.get("type") == "flow_trigger":
                triggers[ext["handle"]] = TriggerDefinition(ext["handle"], ext["name"], fields)
            elif ext.get("type") == "flow_trigger_lifecycle_callback":
                lifecycle = str(ext["url"])
    return Extensions(triggers, lifecycle)


@dataclass
class FlowEvent:
    """One accepted ``flowTriggerReceive``."""

    handle: str
    payload: dict[str, Any]
    received_at: str
    workflow_enabled: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "handle": self.handle,
            "payload": self.payload,
            "received_at": self.received_at,
            "workflow_enabled": self.workflow_enabled,
        }


@dataclass
class FlowState:
    """One shop's Flow: the enabled workflows (by trigger handle) and the events received."""

    workflows: set[str] = field(default_factory=set)
    events: list[FlowEvent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


_STATES: weakref.WeakKeyDictionary[Store, FlowState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()
_EXTENSIONS: list[Extensions] = []


def state(store: Store) -> FlowState:
    """The Flow of ``store``'s shop (made on first use)."""
    with _STATES_LOCK:
        found = _STATES.get(store)
        if found is None:
            found = _STATES[store] = FlowState()
        return found


def extensions() -> Extensions:
    """The app's extensions, read once."""
    if not _EXTENSIONS:
        _EXTENSIONS.append(load_extensions())
    return _EXTENSIONS[0]


def _schema_error(*messages: str) -> dict[str, Any]:
    return _user_error(["body"], "Errors validating schema:\n  " + "\n  ".join(messages) + "\n")


def _type_error(key: str, value: Any, kind: str) -> str | None:
    """Flow's message when ``value`` is not of field type ``kind`` (None when it is)."""
    shown = value if isinstance(value, str) else json.dumps(value)
    if kind in REFERENCE_KEYS:
        ok = (isinstance(value, int) and not isinstance(value, bool) and value > 0) or (
            isinstance(value, str) and (value.isdigit() or value.startswith("gid://shopify/"))
        )
        expected = "an ID"
    elif kind == "number_decimal":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        expected = "a Number"
    elif kind == "boolean":
        ok, expected = isinstance(value, bool), "a Boolean"
    else:  # single_line_text_field, multi_line_text_field, email, url
        ok, expected = isinstance(value, str), "a String"
    return None if ok else f"Type error for field '{key}': {shown} is not {expected}."


def _reference_exists(store: Store, key: str, value: Any) -> bool:
    number = parse_gid(value)[1] if isinstance(value, str) and value.startswith("gid") else value
    if key == "customer_id":
        return int(number) in store.customers
    if key == "order_id":
        return int(number) in store.orders
    return int(number) in store.products


def validate(store: Store, definition: TriggerDefinition, payload: dict[str, Any]) -> list[str]:
    """Flow's complaints about ``payload`` for ``definition`` (empty when it is valid)."""
    problems = [f"Required field missing: '{k}'." for k in definition.fields if k not in payload]
    problems += [f"Invalid field: '{k}'." for k in payload if k not in definition.fields]
    for key, value in payload.items():
        kind = definition.fields.get(key)
        if kind is None:
            continue
        error = _type_error(key, value, kind)
        if error is not None:
            problems.append(error)
        elif kind in REFERENCE_KEYS:
            with store.lock:
                found = _reference_exists(store, key, value)
            if not found:
                problems.append(f"Invalid {key} '{value}': no such resource in this shop.")
    return problems


@resolver("Mutation", "flowTriggerReceive")
def _receive(obj: Any, args: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    handle, payload, body = args.get("handle"), args.get("payload"), args.get("body")
    if body is not None:
        if handle is not None or payload is not None:
            message = "Cannot use `handle` and `payload` arguments with `body` argument"
            return {"userErrors": [_user_error(["body"], message)]}
        return {"userErrors": [_schema_error("The deprecated `body` argument is not supported.")]}
    if not handle or payload is None:
        message = "`handle` and `payload` arguments are required"
        return {"userErrors": [_user_error(["handle"], message)]}
    size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_PAYLOAD_BYTES:
        return {
            "userErrors": [
                _schema_error(f"Properties size exceeds the limit of {MAX_PAYLOAD_BYTES} bytes.")
            ]
        }
    definition = extensions().triggers.get(str(handle))
    if definition is None:
        return {"userErrors": [_schema_error(f"Invalid handle '{handle}'.")]}
    if not isinstance(payload, dict):
        return {"userErrors": [_schema_error("Type error: payload is not an Object.")]}
    problems = validate(ctx.store, definition, payload)
    if problems:
        return {"userErrors": [_schema_error(*problems)]}
    flow = state(ctx.store)
    with flow.lock:
        flow.events.append(
            FlowEvent(
                handle=definition.handle,
                payload=payload,
                received_at=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                workflow_enabled=definition.handle in flow.workflows,
            )
        )
    return {"userErrors": []}


def lifecycle_body(domain: str, definition: TriggerDefinition, enabled: bool) -> bytes:
    """The lifecycle callback's JSON, with Flow's five properties."""
    return json.dumps(
        {
            "flow_trigger_definition_id": definition.name,
            "has_enabled_flow": enabled,
            "shop_id": shop_number(domain),
            "shopify_domain": domain,
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        }
    ).encode()


def set_workflow(
    store: Store,
    handle: str,
    enabled: bool,
    *,
    app_url: str | None,
    api_secret: str,
    http: requests.Session | None = None,
) -> dict[str, Any]:
    """Enable or disable a workflow on trigger ``handle``, telling the app first.

    Enabling fails (the workflow stays off) when the app does not answer the callback with 2xx
    in five seconds, as in Shopify Flow. Raises KeyError for an unknown trigger.
    """
    ext = extensions()
    definition = ext.triggers[handle]
    body = lifecycle_body(store.domain, definition, enabled)
    status: int | None = None
    error: str | None = None
    if ext.lifecycle_url is None or (app_url is None and ext.lifecycle_url.startswith("/")):
        error = "the app has no lifecycle callback URL"
    else:
        url = ext.lifecycle_url
        if url.startswith("/"):
            url = f"{(app_url or '').rstrip('/')}{url}"
        try:
            response = (http or requests).post(
                url,
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Shopify-Hmac-Sha256": sign(api_secret, body),
                },
                timeout=CALLBACK_TIMEOUT,
            )
            status = response.status_code
        except requests.RequestException as exc:
            error = type(exc).__name__
    answered = status is not None and 200 <= status < 300
    flow = state(store)
    with flow.lock:
        if not enabled:
            flow.workflows.discard(handle)
        elif answered:
            flow.workflows.add(handle)
        on = handle in flow.workflows
    return {"trigger": handle, "enabled": on, "callback_status": status, "error": error}


def events_json(store: Store) -> list[dict[str, Any]]:
    """Every event the shop's Flow received, oldest first."""
    flow = state(store)
    with flow.lock:
        return [e.as_dict() for e in flow.events]
