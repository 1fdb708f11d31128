"""The notice a shop without ``read_all_orders`` sees: its segments lack older orders."""

from __future__ import annotations

from shopify_app import jobs
from shopify_app.db import transaction
from shopify_app.db.models import Shop

NOTICE_READ_ALL_ORDERS = "read_all_orders_missing"


def check_scopes(ctx: jobs.Context, shop_id: int) -> bool:
    """Store (or clear) the notice a shop without ``read_all_orders`` must see; True if missing.

    Without that scope Shopify returns only the last 60 days of orders: segments built on
    them would silently call long-standing customers new.
    """
    with transaction(ctx.sessions) as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            return False
        scopes = {s.strip() for s in (shop.scopes or "").split(",")}
        missing = "read_all_orders" not in scopes
        settings = dict(shop.settings or {})
        notices = [
            n for n in settings.get("notices", []) if n.get("code") != NOTICE_READ_ALL_ORDERS
        ]
        if missing:
            notices.append(
                {
                    "code": NOTICE_READ_ALL_ORDERS,
                    "tone": "warning",
                    "message": (
                        "Goldpan can only see the last 60 days of orders. Segments that look "
                        "further back (true fans, going cold, one-time buyers) will be incomplete "
                        "until the app is granted access to all orders."
                    ),
                }
            )
        if notices != settings.get("notices", []):
            settings["notices"] = notices
            shop.settings = settings
    return missing
