"""Cross-sell: merchant rules ("bought any of A, never any of B") and rules mined from baskets.

Products in a rule are referenced by Shopify product id or by title words (case-insensitive
substring of the product title), so a rule written for a CSV export (titles only) works on the
synced store too. Mining counts customers, not orders: "customers who bought A also bought B",
with support (share of customers who bought both), confidence (share of A's buyers who bought
B) and lift (confidence over B's base rate).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from shopify_app.segments.config import CrossSellRule
from shopify_app.segments.dataset import Dataset

BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class Suggestion:
    """A mined rule a merchant may accept: buyers of ``bought`` who never bought ``suggest``."""

    bought: int
    suggest: int
    bought_title: str
    suggest_title: str
    support: float
    confidence: float
    lift: float
    customers: int  # buyers of ``bought`` who have not bought ``suggest`` yet

    def to_dict(self) -> dict[str, object]:
        """JSON-able form."""
        return {
            "bought": self.bought,
            "suggest": self.suggest,
            "bought_title": self.bought_title,
            "suggest_title": self.suggest_title,
            "support": round(self.support, 4),
            "confidence": round(self.confidence, 4),
            "lift": round(self.lift, 3),
            "customers": self.customers,
        }


def is_product_id(reference: str) -> bool:
    """Whether a rule reference looks like a product id (a picked product), not title words."""
    ref = reference.strip()
    return ref.isascii() and ref.removeprefix("-").isdigit() and len(ref) < 20


def titles_matching(titles: Mapping[int, str], reference: str) -> set[int]:
    """Product keys a rule reference names among ``titles``: an id, or title words contained
    in the title (case-insensitive)."""
    ref = reference.strip().lower()
    if is_product_id(ref) and int(ref) in titles:
        return {int(ref)}
    return {key for key, title in titles.items() if ref in title.lower()}


def products_matching(ds: Dataset, reference: str) -> set[int]:
    """Product keys a rule reference names in the dataset (:func:`titles_matching`)."""
    return titles_matching(ds.product_titles, reference)


def bought_any(ds: Dataset, products: set[int]) -> BoolArray:
    """Customers who bought at least one of ``products``."""
    out = np.zeros(ds.n_customers, dtype=bool)
    if not products or not len(ds.line_product):
        return out
    hit = np.isin(ds.line_product, np.fromiter(products, dtype=np.int64))
    out[ds.line_customer()[hit]] = True
    return out


def rule_members(ds: Dataset, rule: CrossSellRule) -> tuple[BoolArray, set[int]]:
    """Customers matching ``rule`` and the product keys on its "bought" side."""
    bought: set[int] = set()
    for ref in rule.bought:
        bought |= products_matching(ds, ref)
    never: set[int] = set()
    for ref in rule.never:
        never |= products_matching(ds, ref)
    return bought_any(ds, bought) & ~bought_any(ds, never), bought


def mine(
    ds: Dataset,
    *,
    min_support: float = 0.005,
    min_confidence: float = 0.1,
    min_lift: float = 1.2,
    max_products: int = 300,
    limit: int = 20,
) -> list[Suggestion]:
    """Suggested rules from co-purchases, strongest lift first."""
    if not len(ds.line_product):
        return []
    keys, inverse = np.unique(ds.line_product, return_inverse=True)
    cust = ds.line_customer()
    matrix = sparse.csr_matrix(
        (np.ones(len(inverse), dtype=np.float32), (cust, inverse)),
        shape=(ds.n_customers, len(keys)),
    )
    matrix.data[:] = 1.0
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    counts = np.asarray(matrix.sum(axis=0)).ravel()
    top = np.argsort(-counts)[:max_products]
    top = top[counts[top] > 0]
    sub = matrix[:, top].tocsc()
    co = (sub.T @ sub).toarray()
    n = float(max(int(np.count_nonzero(np.asarray(matrix.sum(axis=1)).ravel())), 1))
    base = counts[top]
    out: list[Suggestion] = []
    for i in range(len(top)):
        for j in range(len(top)):
            if i == j or co[i, j] <= 0:
                continue
            support = co[i, j] / n
            confidence = co[i, j] / base[i]
            lift = confidence / (base[j] / n)
            if support < min_support or confidence < min_confidence or lift < min_lift:
                continue
            if base[i] - co[i, j] <= 0:  # every buyer of A already has B: nobody to target
                continue
            a, b = int(keys[top[i]]), int(keys[top[j]])
            out.append(
                Suggestion(
                    bought=a,
                    suggest=b,
                    bought_title=ds.product_titles.get(a, str(a)),
                    suggest_title=ds.product_titles.get(b, str(b)),
                    support=float(support),
                    confidence=float(confidence),
                    lift=float(lift),
                    customers=int(base[i] - co[i, j]),
                )
            )
    out.sort(key=lambda s: (-s.lift, -s.support))
    return out[:limit]
