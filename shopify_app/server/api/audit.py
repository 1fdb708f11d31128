"""The audit view: Goldpan's writes to Shopify and Meta, customers' data requests, and the
product picker the settings' cross-sell rules use."""

from __future__ import annotations

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shopify_app.db.models import AuditEntry, DataRequest, Product
from shopify_app.errors import InputError, NotFound
from shopify_app.server.api.request import (
    PAGE_SIZE,
    db_session,
    int_param,
    iso,
    path_id,
    request_shop_id,
)


def products(request: Request) -> Response:
    """Products for pickers: title search, 20 at a time."""
    shop_id = request_shop_id(request)
    q = (request.query_params.get("q") or "").strip()
    if len(q) > 100:
        raise InputError("search is limited to 100 characters", field="q")
    with db_session(request) as session:
        stmt = select(Product.id, Product.title, Product.status).where(Product.shop_id == shop_id)
        if q:
            stmt = stmt.where(func.lower(Product.title).like(f"%{q.lower()}%"))
        rows = session.execute(stmt.order_by(Product.title, Product.id).limit(20)).all()
        return JSONResponse(
            {"products": [{"id": pid, "title": title, "status": st} for pid, title, st in rows]}
        )


def audit(request: Request) -> Response:
    """The latest writes to Shopify and Meta, newest first; ``before`` pages back by id."""
    shop_id = request_shop_id(request)
    before = int_param(request, "before", 0, 0, 2**62)
    with db_session(request) as session:
        stmt = select(AuditEntry).where(AuditEntry.shop_id == shop_id)
        if before:
            stmt = stmt.where(AuditEntry.id < before)
        rows = session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(PAGE_SIZE + 1)).all()
        return JSONResponse(
            {
                "entries": [
                    {
                        "id": e.id,
                        "at": iso(e.at),
                        "target": e.target,
                        "action": e.action,
                        "subject": e.subject,
                        "count": e.count,
                        "result": e.result,
                        "job_status": e.job_status,
                        "error": e.error,
                    }
                    for e in rows[:PAGE_SIZE]
                ],
                "has_next": len(rows) > PAGE_SIZE,
            }
        )


def data_requests(request: Request) -> Response:
    """Customers' data requests (``customers/data_request``), newest first, for the merchant."""
    shop_id = request_shop_id(request)
    with db_session(request) as session:
        rows = session.scalars(
            select(DataRequest)
            .where(DataRequest.shop_id == shop_id)
            .order_by(DataRequest.id.desc())
            .limit(PAGE_SIZE)
        ).all()
        return JSONResponse(
            {
                "requests": [
                    {
                        "id": r.id,
                        "request_id": r.request_id,
                        "customer_id": r.customer_id,
                        "requested_at": iso(r.requested_at),
                    }
                    for r in rows
                ]
            }
        )


def data_request_export(request: Request) -> Response:
    """One data request's export: everything Goldpan holds about that customer, as JSON."""
    shop_id = request_shop_id(request)
    request_id = path_id(request, "request_id", "data request")
    with db_session(request) as session:
        row = session.get(DataRequest, request_id)
        if row is None or row.shop_id != shop_id:
            raise NotFound("data request not found")
        return JSONResponse(
            row.export,
            headers={"Content-Disposition": f'attachment; filename="data-request-{row.id}.json"'},
        )
