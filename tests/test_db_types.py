"""The data model: state columns stored as their plain strings and read back as members (strays
refused), one definition of an installed shop, and an empty database for every test."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session, sessionmaker

from shopify_app.db.models import Base, Shop, SyncRun
from shopify_app.db.types import utcnow
from shopify_app.states import SyncRunKind, SyncRunStatus


def _run(sessions: sessionmaker[Session], shop_id: int) -> int:
    with sessions.begin() as session:
        run = SyncRun(
            shop_id=shop_id,
            kind=SyncRunKind.INITIAL,
            resource="orders",
            status=SyncRunStatus.RUNNING,
        )
        session.add(run)
        session.flush()
        return run.id


def test_a_state_is_stored_as_its_value_and_read_as_the_member(
    sessions: sessionmaker[Session], make_shop: Any
) -> None:
    run_id = _run(sessions, make_shop().id)
    with sessions() as session:
        raw = session.execute(
            text("SELECT kind, status FROM sync_runs WHERE id = :id"), {"id": run_id}
        ).one()
        status = session.scalar(select(SyncRun.status).where(SyncRun.id == run_id))
    assert tuple(raw) == ("initial", "running")
    assert status is SyncRunStatus.RUNNING


def test_a_string_that_is_no_member_is_refused_on_write(
    sessions: sessionmaker[Session], make_shop: Any
) -> None:
    run_id = _run(sessions, make_shop().id)
    refused = pytest.raises(StatementError, match="'cancelled' is not a valid SyncRunStatus")
    with refused, sessions.begin() as session:
        session.execute(update(SyncRun).where(SyncRun.id == run_id).values(status="cancelled"))


def test_a_stored_value_that_is_no_member_is_refused_on_read(
    sessions: sessionmaker[Session], make_shop: Any
) -> None:
    run_id = _run(sessions, make_shop().id)
    with sessions.begin() as session:
        session.execute(
            text("UPDATE sync_runs SET status = 'completed' WHERE id = :id"), {"id": run_id}
        )
    with sessions() as session, pytest.raises(ValueError, match="'completed' is not a valid"):
        session.scalar(select(SyncRun.status).where(SyncRun.id == run_id))


def test_is_installed_means_the_same_in_python_and_in_sql(
    sessions: sessionmaker[Session], make_shop: Any
) -> None:
    installed = make_shop()
    make_shop(uninstalled_at=utcnow())
    make_shop(access_token=None)
    with sessions() as session:
        shops = session.scalars(select(Shop)).all()
        in_sql = set(session.scalars(select(Shop.id).where(Shop.is_installed)))
    assert in_sql == {shop.id for shop in shops if shop.is_installed} == {installed.id}


@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_test_starts_with_an_empty_database(
    turn: str, sessions: sessionmaker[Session], make_shop: Any
) -> None:
    """Run twice: the second run finds no trace of the first (rows gone, ids from 1 again)."""
    with sessions() as session:
        for table in Base.metadata.sorted_tables:
            assert session.scalar(select(func.count()).select_from(table)) == 0, table.name
    assert make_shop().id == 1
    assert make_shop().domain == "shop-2.myshopify.com"
