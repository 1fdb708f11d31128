"""The live-store CLI against a generated sandbox, and ``shopify-app demo`` end to end."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse

import pytest
import requests
from sqlalchemy import func, select

from goldpan_sandbox import cli
from goldpan_sandbox.demo import Demo, DemoError, run_demo, start_demo
from goldpan_sandbox.shopify import ShopifySandbox
from shopify_app.db.models import Customer, Order, Segment, Shop


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_order_by_product_handle_for_a_new_business_buyer(
    generated_sandbox: tuple[ShopifySandbox, str], capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, shop = generated_sandbox
    store = sandbox.store(shop)
    before = len(store.orders)
    code, out, err = _run(
        capsys,
        "order", "--sandbox", sandbox.base_url, "--shop", shop,
        "--customer", "events@petalandpearl.example",
        "--product", "linen-dinner-napkins:sage", "--quantity", "48",
        "--product", "table-runner", "--discount-code", "TRADE12",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["email"] == "events@petalandpearl.example"
    first = summary["line_items"][0]
    assert (first["sku"], first["quantity"]) == ("DN-SAGE", 48)
    assert summary["line_items"][1]["quantity"] == 1
    assert len(store.orders) == before + 1
    order = store.orders[summary["id"]]
    assert order.discount_codes == ["TRADE12"]
    assert store.customers[order.customer_id].email == "events@petalandpearl.example"  # type: ignore[index]


def test_edit_customer_tags_and_consent(
    generated_sandbox: tuple[ShopifySandbox, str], capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, shop = generated_sandbox
    store = sandbox.store(shop)
    customer = next(c for c in store.customers.values() if c.email and "staff" not in c.tags)
    customer_gid = f"gid://shopify/Customer/{customer.id}"
    code, out, err = _run(
        capsys,
        "customer", "--sandbox", sandbox.base_url, "--shop", shop, "--id", customer_gid,
        "--add-tag", "wholesale", "--add-tag", "vip-2026", "--consent", "UNSUBSCRIBED",
    )  # fmt: skip
    assert code == 0, err
    assert {"wholesale", "vip-2026"} <= set(store.customers[customer.id].tags)
    assert store.customers[customer.id].email_marketing_state == "UNSUBSCRIBED"
    assert "wholesale" in json.loads(out)["tags"]
    code, _, err = _run(
        capsys,
        "customer", "--sandbox", sandbox.base_url, "--shop", shop, "--id", str(customer.id),
        "--remove-tag", "vip-2026",
    )  # fmt: skip
    assert code == 0, err
    assert "vip-2026" not in store.customers[customer.id].tags
    assert "wholesale" in store.customers[customer.id].tags


def test_faults_are_set_and_cleared(
    generated_sandbox: tuple[ShopifySandbox, str], capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, _ = generated_sandbox
    url = sandbox.base_url
    assert _run(capsys, "faults", "--sandbox", url, "--http", "503", "--count", "2")[0] == 0
    assert len(sandbox.faults.describe()["pending_http"]) == 2
    code, out, _ = _run(capsys, "faults", "--sandbox", url, "--clear")
    assert code == 0 and json.loads(out)["pending_http"] == []
    assert _run(capsys, "faults", "--sandbox", url, "--throttle", "100", "10")[0] == 0
    assert sandbox.plan.maximum == 100


def test_bad_input_exits_2_and_unreachable_sandbox_exits_1(
    generated_sandbox: tuple[ShopifySandbox, str], capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, shop = generated_sandbox
    url = sandbox.base_url
    code, _, err = _run(
        capsys, "order", "--sandbox", url, "--shop", shop, "--customer", "a@b.example",
        "--product", "silk-scarves",
    )  # fmt: skip
    assert code == 2 and "no product" in err and "silk-scarves" in err
    code, _, err = _run(
        capsys, "order", "--sandbox", url, "--shop", shop, "--customer", "nobody",
        "--product", "tea-napkins",
    )  # fmt: skip
    assert code == 2 and "--customer" in err
    code, _, err = _run(
        capsys, "order", "--sandbox", url, "--shop", shop, "--customer", "1",
        "--product", "tea-napkins", "--quantity", "0",
    )  # fmt: skip
    assert code == 2 and "above zero" in err
    code, _, err = _run(capsys, "customer", "--sandbox", url, "--shop", shop, "--id", "12")
    assert code == 2 and "no customer" in err
    code, _, err = _run(capsys, "customers", "--sandbox", url, "--shop", "elsewhere.myshopify.com")
    assert code == 2 and "no shop" in err
    code, _, err = _run(capsys, "shops", "--sandbox", "http://127.0.0.1:9")
    assert code == 1 and "no sandbox answering" in err
    assert _run(capsys, "frobnicate")[0] == 2


def _poll(check, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    return check()


def test_demo_installs_syncs_and_computes_segments(running_demo: Demo) -> None:
    demo = running_demo
    assert {run["status"] for run in demo.sync.values()} == {"done"}
    store = demo.shopify.store(demo.shop_domain)
    with demo.ctx.sessions() as session:
        shop = session.scalar(select(Shop).where(Shop.domain == demo.shop_domain))
        assert shop is not None and shop.id == demo.shop_id
        customers = session.scalar(
            select(func.count()).select_from(Customer).where(Customer.shop_id == shop.id)
        )
        orders = session.scalar(
            select(func.count()).select_from(Order).where(Order.shop_id == shop.id)
        )
        computed = session.scalars(
            select(Segment).where(Segment.shop_id == shop.id, Segment.computed_at.is_not(None))
        ).all()
    assert customers == len(store.customers)
    assert orders == len(store.orders)
    assert computed and any(s.member_count > 0 for s in computed)
    # The sandbox saw a token exchange, as a managed install does.
    assert (demo.shop_domain, "token_exchange") in demo.shopify.oauth.token_requests


def test_demo_page_loads_through_the_session_token_shim(running_demo: Demo) -> None:
    demo = running_demo
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(demo.page_url).query))
    assert query["shop"] == demo.shop_domain and query["embedded"] == "1"
    assert query["demo"] == "1" and query["host"]
    # Without a token the app bounces; the shim asks the sandbox for one, as the page does.
    first = requests.get(demo.page_url, timeout=10)
    assert first.status_code == 200
    token = requests.get(
        f"{demo.sandbox_url}/shops/{demo.shop_domain}/admin/session-token", timeout=10
    ).json()["token"]
    page = requests.get(f"{demo.page_url}&id_token={token}", timeout=10)
    assert page.status_code == 200
    assert demo.settings.api_key in page.text


def test_live_store_order_reaches_the_app_by_webhook(
    running_demo: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = running_demo
    code, out, err = _run(
        capsys,
        "order", "--sandbox", demo.sandbox_url, "--shop", demo.shop_domain,
        "--customer", "purchasing@bluewaterhotel.example", "--first-name", "Dana",
        "--product", "linen-dinner-napkins", "--quantity", "72",
    )  # fmt: skip
    assert code == 0, err
    order_id = json.loads(out)["id"]

    def stored() -> bool:
        with demo.ctx.sessions() as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(Order)
                    .where(Order.shop_id == demo.shop_id, Order.id == order_id)
                )
                == 1
            )

    assert _poll(stored), "the orders/create webhook did not reach the app"


def test_demo_refuses_a_busy_port_before_starting_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DemoError) as caught:
            start_demo(port=port, customers=5)
        assert caught.value.exit_code == 2 and f"port {port}" in str(caught.value)
        assert run_demo(port=port, customers=5) == 2
    assert "is in use" in capsys.readouterr().out
