"""The settings view: the shop's segment settings (with the Meta card's state), and removing
every Goldpan tag for merchants who leave."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shopify_app.db.models import MetaConnection, Product, Shop
from shopify_app.errors import InputError
from shopify_app.segments import crosssell, limits, settings_change
from shopify_app.segments.config import ShopConfig
from shopify_app.server.api.request import (
    db_session,
    enqueue,
    get_shop,
    json_body,
    request_shop_id,
)
from shopify_app.states import MetaConnectionStatus


def load_config(shop: Shop) -> dict[str, Any]:
    """The shop's segment settings, validated, every key present (defaults filled in)."""
    return ShopConfig.from_settings(shop.settings or {}).to_settings()


def settings_get(request: Request) -> Response:
    """The shop's segment settings, the products its cross-sell rules name, and Meta state."""
    shop_id = request_shop_id(request)
    with db_session(request) as session:
        shop = get_shop(session, shop_id)
        config = load_config(shop)
        # Cross-sell rules name products by id (picked) or by title words (typed).
        ids = {
            int(ref)
            for rule in config["cross_sell"]
            for side in ("bought", "never")
            for ref in rule[side]
            if str(ref).isascii() and str(ref).isdigit() and len(str(ref)) < 19
        }
        products = (
            session.execute(
                select(Product.id, Product.title).where(
                    Product.shop_id == shop_id, Product.id.in_(sorted(ids))
                )
            ).all()
            if ids
            else []
        )
        conn = session.get(MetaConnection, shop_id)
        return JSONResponse(
            {
                "settings": config,
                "products": {str(pid): title for pid, title in products},
                "meta": {
                    "status": conn.status if conn else MetaConnectionStatus.DISCONNECTED,
                    "ad_account_id": conn.ad_account_id if conn else None,
                    "tos_accepted": conn.tos_accepted if conn else False,
                    "error": conn.error if conn else None,
                },
            }
        )


def settings_put(request: Request) -> Response:
    """Change settings (``{"settings": {...}}``, a partial object); refused with the failing
    field. A change that moves tags or Meta audiences answers 409 with its effect (and a
    ``token``) and is applied only when sent again with ``"confirm": <token>``; then recompute.
    Both answers carry ``warnings`` (:func:`product_warnings`).
    """
    shop_id = request_shop_id(request)
    body = json_body(request)
    confirm = body.pop("confirm", None)
    changes = body.get("settings", body)
    if not isinstance(changes, dict) or not changes:
        raise InputError("send the settings to change", field="settings")
    # Bounded before it is parsed, and the result before it is stored (segments.limits).
    limits.check(changes, "")
    ctx = request.app.state.ctx
    change = settings_change.prepare(ctx, shop_id, changes)
    limits.check_size(change.after)
    with db_session(request) as session:
        warnings = product_warnings(session, shop_id, change.after["cross_sell"])
    if change.effect.moves and confirm != change.token:
        return JSONResponse(
            {"applied": False, **change.preview(), "warnings": warnings}, status_code=409
        )
    settings_change.apply(ctx, change, user_id=getattr(request.state, "user_id", None))
    enqueue(request, "segments.recompute_shop", shop_id=shop_id)
    old_prefix, new_prefix = change.before["tag_prefix"], change.after["tag_prefix"]
    if new_prefix != old_prefix:
        # Every tag Goldpan wrote under the old names moves to the new ones.
        enqueue(request, "tags.prefix_changed", shop_id=shop_id, old_prefix=old_prefix)
    if change.after["lapsed_tiers"] != change.before["lapsed_tiers"]:
        # A tier's win-back discount follows its percentage (and goes when the tier does).
        enqueue(request, "actions.sync_discounts", shop_id=shop_id)
    return JSONResponse(
        {"applied": True, "settings": change.after, **change.preview(), "warnings": warnings}
    )


def product_warnings(
    session: Session, shop_id: int, rules: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Cross-sell products that name nothing in the synced catalogue, each with its field
    (``cross_sell[1].never[0]``): saved anyway, since the product may come later, but said, so
    a typo does not leave a rule silently empty. Nothing to judge before a catalogue exists."""
    titles = dict(
        session.execute(select(Product.id, Product.title).where(Product.shop_id == shop_id)).all()
    )
    if not titles:
        return []
    return [
        {"field": f"cross_sell[{i}].{side}[{j}]", "code": "no_match", "params": {"product": ref}}
        for i, rule in enumerate(rules)
        for side in ("bought", "never")
        for j, ref in enumerate(rule[side])
        if not crosssell.titles_matching(titles, ref)
    ]


def tags_remove_all(request: Request) -> Response:
    """Remove every Goldpan tag from every customer (for merchants who leave). Needs confirm."""
    shop_id = request_shop_id(request)
    body = json_body(request)
    if body.get("confirm") is not True:
        raise InputError("confirm the removal of every Goldpan tag", field="confirm")
    with db_session(request) as session:
        get_shop(session, shop_id)
    enqueue(request, "tags.remove_all", shop_id=shop_id)
    return JSONResponse({"queued": True}, status_code=202)
