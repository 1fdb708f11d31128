"""The shop's own details — name, currency, time zone, plan — from the Admin API.

Read with ``shop.graphql`` when the initial sync starts and at every reconciliation, so that a
shop changing its currency or name is seen within hours. The currency is what the page and the
reasons show amounts in.
"""

from __future__ import annotations

from shopify_app import jobs
from shopify_app.db import transaction
from shopify_app.db.models import Shop
from shopify_app.shopify.client import AdminClient


def refresh_shop(ctx: jobs.Context, client: AdminClient, shop_id: int) -> None:
    """Store the shop's name, currency, time zone and plan as Shopify has them now."""
    data = client.execute("shop")["shop"]
    with transaction(ctx.sessions) as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            return
        shop.name = data.get("name") or shop.name
        shop.currency = data.get("currencyCode") or shop.currency
        shop.timezone = data.get("ianaTimezone") or shop.timezone
        shop.plan = (data.get("plan") or {}).get("publicDisplayName") or shop.plan
