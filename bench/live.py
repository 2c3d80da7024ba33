"""Definitions the benchmarks make live: computed traits and audiences over the events of
`bench/population.py` (the traits and audiences benchmarks) or of `bench/identity.py`'s
workload (its `--computed-traits` and `--audiences` runs).

`create(kind)` is run inside the app (`manage.py shell -c`), through the same services the
REST API and the admin call, so each definition is validated and indexed as a user's is.
"""

from __future__ import annotations

from typing import Any

# Over bench/population.py's events: every type, two windowed, one decaying score (the
# README's lead score: opens 1 point, clicks 3, pricing visits 5, half-life 30 days).
TRAITS: list[dict[str, Any]] = [
    {"key": "orders_90d", "type": "counter", "event": "Order Completed", "window_days": 90},
    {"key": "total_revenue", "type": "sum", "event": "Order Completed", "property": "revenue"},
    {"key": "avg_order_value", "type": "avg", "event": "Order Completed", "property": "revenue"},
    {"key": "smallest_order", "type": "min", "event": "Order Completed", "property": "revenue"},
    {"key": "largest_order_30d", "type": "max", "event": "Order Completed", "property": "revenue", "window_days": 30},
    {"key": "top_category", "type": "most_frequent", "event": "Product Viewed", "property": "category"},
    {"key": "first_campaign", "type": "first", "event": "Email Opened", "property": "campaign_name"},
    {"key": "last_plan", "type": "last", "event": "Order Completed", "property": "plan"},
    {"key": "viewed_categories", "type": "unique_list", "event": "Product Viewed", "property": "category"},
    {"key": "campaigns_clicked", "type": "unique_count", "event": "Email Link Clicked", "property": "campaign_name"},
    {"key": "lead_score", "type": "score", "half_life_days": 30, "rules": [
        {"event": "Email Opened", "where": [{"property": "machine_open", "op": "!=", "value": True}], "points": 1},
        {"event": "Email Link Clicked", "points": 3},
        {"event": "Page Viewed", "where": [{"property": "path", "op": "=", "value": "/pricing"}], "points": 5},
    ]},
]  # fmt: skip

# The same shapes over bench/identity.py's workload (its track events carry product_id,
# price and currency; its pages a path).
IDENTITY_TRAITS: list[dict[str, Any]] = [
    {"key": "orders_90d", "type": "counter", "event": "Order Completed", "window_days": 90},
    {"key": "total_spent", "type": "sum", "event": "Order Completed", "property": "price"},
    {"key": "avg_viewed_price", "type": "avg", "event": "Product Viewed", "property": "price"},
    {"key": "cheapest_added", "type": "min", "event": "Product Added", "property": "price"},
    {"key": "dearest_viewed_30d", "type": "max", "event": "Product Viewed", "property": "price", "window_days": 30},
    {"key": "top_product", "type": "most_frequent", "event": "Product Viewed", "property": "product_id"},
    {"key": "first_path", "type": "first", "event": "Page Viewed", "property": "path"},
    {"key": "last_added", "type": "last", "event": "Product Added", "property": "product_id"},
    {"key": "searched_paths", "type": "unique_list", "event": "Page Viewed", "property": "path"},
    {"key": "products_viewed", "type": "unique_count", "event": "Product Viewed", "property": "product_id"},
    {"key": "lead_score", "type": "score", "half_life_days": 30, "rules": [
        {"event": "Product Added", "points": 3},
        {"event": "Checkout Started", "points": 5},
        {"event": "Page Viewed", "where": [{"property": "path", "op": "=", "value": "/cart"}], "points": 1},
    ]},
]  # fmt: skip


def seed_audiences(opened: str, bought: str, viewed: str, added: str, product: str) -> list[dict[str, Any]]:
    """The issue's six seed audiences, by event names (the two workloads name them alike)."""
    no_machine = [{"property": "machine_open", "op": "!=", "value": True}]
    return [
        {"key": "re_engage", "name": "Opened, neither bought nor visited", "rule": {"all": [
            {"event": opened, "where": no_machine, "window": {"within_days": 180}},
            {"not": {"event": bought, "window": {"within_days": 180}}},
            {"not": {"event": viewed, "window": {"within_days": 180}}},
        ]}},
        {"key": "cart_abandoners", "name": "Added to cart, no order within 24 hours", "rule": {
            "event": added, "then": [{"event": bought, "within_hours": 24, "did": False}]}},
        {"key": "frequent_visitors", "name": "Five or more visits this month", "rule": {
            "event": viewed, "count": {"op": ">=", "value": 5}, "window": {"within_days": 30}}},
        {"key": "hot_browsers", "name": "Browsing hard, added, no order", "rule": {"all": [
            {"event": product, "count": {"op": ">=", "value": 3}, "window": {"within_days": 2}},
            {"event": added},
            {"not": {"event": bought}},
        ]}},
        {"key": "hot_leads", "name": "Lead score above 70", "rule": {"trait": "lead_score", "op": ">", "value": 70}},
        {"key": "re_engage_not_abandoners", "name": "Re-engage, not abandoners", "rule": {"all": [
            {"audience": "re_engage", "member": True}, {"audience": "cart_abandoners", "member": False}]}},
    ]  # fmt: skip


def identity_audiences(n: int) -> list[dict[str, Any]]:
    """`n` real-time audiences over bench/identity.py's events: the seed six (email opens
    stand in as Newsletter Subscribed) and variations on counts, windows and properties."""
    out = seed_audiences("Newsletter Subscribed", "Order Completed", "Page Viewed", "Product Added", "Product Viewed")
    names = ("Product Viewed", "Product Added", "Checkout Started", "Cart Viewed", "Products Searched",
             "Product List Viewed", "Order Completed", "Page Viewed")  # fmt: skip
    i = 0
    while len(out) < n:
        name = names[i % len(names)]
        rule: dict[str, Any] = {"event": name, "count": {"op": ">=", "value": 1 + i % 4},
                                "window": {"within_days": 7 * (1 + i % 5)}}  # fmt: skip
        if name == "Page Viewed":
            rule["where"] = [{"property": "path", "op": "starts_with", "value": "/c/"}]
        elif name != "Products Searched":
            rule["where"] = [{"property": "price", "op": ">", "value": 10}]
        out.append({"key": f"live_{i:02d}", "name": f"Live {i}: {name}", "rule": rule})
        i += 1
    return out[:n]


def create(kind: str, n: int = 20) -> None:
    """Make the definitions live in the app's database (run inside it: `manage.py shell`)."""
    from audiences.services import audience_create
    from profiles.computed.services import computed_trait_create

    if kind in ("identity_traits", "identity_both"):
        for spec in IDENTITY_TRAITS:
            computed_trait_create(data=spec)
    if kind in ("identity_audiences", "identity_both"):
        if kind == "identity_audiences":  # the lead score audience reads this trait
            computed_trait_create(data=IDENTITY_TRAITS[-1])
        for spec in identity_audiences(n):
            audience_create(data=spec)
    print(f"created {kind}")


def population_audiences(n: int) -> list[dict[str, Any]]:
    """`n` real-time audiences over bench/population.py's events: the seed six, then
    variations on counts, windows and properties."""
    out = seed_audiences("Email Opened", "Order Completed", "Page Viewed", "Product Added", "Product Viewed")
    names = ("Product Viewed", "Email Opened", "Email Link Clicked", "Product Added", "Products Searched",
             "Order Completed", "Page Viewed")  # fmt: skip
    i = 0
    while len(out) < n:
        name = names[i % len(names)]
        rule: dict[str, Any] = {"event": name, "count": {"op": ">=", "value": 1 + i % 3},
                                "window": {"within_days": 7 * (1 + i % 4)}}  # fmt: skip
        if name in ("Product Viewed", "Product Added"):
            rule["where"] = [{"property": "category", "op": "one_of", "value": ["shoes", "bags", "hats"]}]
        elif name == "Order Completed":
            rule["where"] = [{"property": "revenue", "op": ">", "value": 100}]
        elif name == "Page Viewed":
            rule["where"] = [{"property": "path", "op": "starts_with", "value": "/p/"}]
        out.append({"key": f"live_{i:02d}", "name": f"Live {i}: {name}", "rule": rule})
        i += 1
    return out[:n]
