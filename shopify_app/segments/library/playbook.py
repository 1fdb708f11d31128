"""The playbook's segments: business buyers, repeat customers, true fans, one-time buyers,
lapsed tiers, VIP, holiday shoppers and customers close to a spend milestone."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from shopify_app.segments.config import ShopConfig
from shopify_app.segments.dataset import Dataset, Features

BoolArray = NDArray[np.bool_]

# Free-mail providers: a shared domain here says nothing about a shared employer.
FREE_MAIL = frozenset(
    (
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de",
        "ymail.com", "hotmail.com", "hotmail.co.uk", "hotmail.fr", "outlook.com", "live.com",
        "msn.com", "aol.com", "icloud.com", "me.com", "mac.com", "gmx.com", "gmx.de", "gmx.net",
        "web.de", "mail.com", "protonmail.com", "proton.me", "pm.me", "zoho.com", "yandex.ru",
        "yandex.com", "mail.ru", "qq.com", "163.com", "126.com", "naver.com", "daum.net",
        "hanmail.net", "comcast.net", "verizon.net", "att.net", "sbcglobal.net", "orange.fr",
        "free.fr", "laposte.net", "wanadoo.fr", "libero.it", "btinternet.com", "sky.com",
        "t-online.de", "seznam.cz", "wp.pl", "o2.pl", "fastmail.com", "hey.com", "example.com",
        "example.org",
    )
)  # fmt: skip


def company_names(ds: Dataset) -> list[str]:
    """A company name per customer: the customer's own, else one from a billing address."""
    names = [(c or "").strip() for c in ds.info["company"]]
    # Most orders carry no company: find the few that do without a Python step per order.
    for i in [i for i, company in enumerate(ds.order_company) if company]:
        company = (ds.order_company[i] or "").strip()
        if company:
            c = int(ds.order_customer[i])
            if not names[c]:
                names[c] = company
    return names


def business_core(ds: Dataset, f: Features, cfg: ShopConfig, companies: list[str]) -> BoolArray:
    """Business buyers on their own evidence: bulk units or a company (not a shared domain)."""
    has_company = np.fromiter((bool(c) for c in companies), dtype=bool, count=ds.n_customers)
    return f.has_orders & (
        (f.max_line_units >= cfg.business_units_per_order)
        | (f.window_units >= cfg.business_units_per_window)
        | has_company
    )
