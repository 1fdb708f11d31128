"""``shopify-app sandbox`` for someone trying the demo: the help lists every command, ``products``
lists the handles an order names, and a mistyped handle suggests the nearest ones."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from goldpan_sandbox import cli as sandbox_cli
from goldpan_sandbox.shopify import ShopifySandbox
from tests.fixtures_sandbox import SANDBOX_SHOP


def test_help_lists_every_command_on_one_line_with_what_it_does(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "40")  # a narrow terminal must not split a command's line
    assert sandbox_cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    parser = sandbox_cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    names = [choice.dest for choice in subparsers._choices_actions]
    assert "products" in names and len(names) == len(subparsers.choices)
    for choice in subparsers._choices_actions:
        line = re.search(rf"^\s+{choice.dest}\s+(.+)$", out, re.MULTILINE)
        assert line is not None, f"{choice.dest} is not on a line of its own:\n{out}"
        assert line.group(1) == choice.help


def test_products_lists_the_handles_and_titles(
    shopify_sandbox: ShopifySandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    code = sandbox_cli.main(
        ["products", "--sandbox", shopify_sandbox.base_url, "--shop", SANDBOX_SHOP]
    )
    assert code == 0
    listed = json.loads(capsys.readouterr().out)["products"]
    store = shopify_sandbox.store(SANDBOX_SHOP)
    expected = sorted((p.handle, p.title) for p in store.products.values())
    assert [(p["handle"], p["title"]) for p in listed] == expected
    by_handle = {p.handle: p for p in store.products.values()}
    for row in listed:
        assert row["variants"] == [v.title for v in by_handle[row["handle"]].variants]


def test_an_unknown_shop_is_bad_input(
    shopify_sandbox: ShopifySandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    code = sandbox_cli.main(
        ["products", "--sandbox", shopify_sandbox.base_url, "--shop", "nope.myshopify.com"]
    )
    assert code == 2
    assert "no shop nope.myshopify.com" in capsys.readouterr().err


def test_a_mistyped_handle_suggests_the_nearest_ones_and_places_nothing(
    shopify_sandbox: ShopifySandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    store = shopify_sandbox.store(SANDBOX_SHOP)
    handle = sorted(p.handle for p in store.products.values())[0]
    customer = sorted(store.customers)[0]
    orders_before = len(store.orders)
    typo = handle[:-1] + ("x" if handle[-1] != "x" else "y")
    code = sandbox_cli.main(
        [
            "order",
            "--sandbox",
            shopify_sandbox.base_url,
            "--shop",
            SANDBOX_SHOP,
            "--customer",
            str(customer),
            "--product",
            typo,
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert f"no product with handle {typo!r}" in err
    assert f"did you mean {handle!r}" in err
    assert len(store.orders) == orders_before


def test_a_handle_like_none_points_at_the_products_command(
    shopify_sandbox: ShopifySandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    customer = sorted(shopify_sandbox.store(SANDBOX_SHOP).customers)[0]
    code = sandbox_cli.main(
        [
            "order",
            "--sandbox",
            shopify_sandbox.base_url,
            "--shop",
            SANDBOX_SHOP,
            "--customer",
            str(customer),
            "--product",
            "qqqqqqqqqqqq",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "did you mean" not in err
    assert "`shopify-app sandbox products` lists the handles" in err
