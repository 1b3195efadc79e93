"""Webhooks: registry events POSTed to subscribers, at least once, signed.

Two halves, so that no event is lost and none needs the log twice:
- `WebhookOutbox`, a consumer of the log like any projection: it keeps the registered
  webhooks and, for every event a webhook subscribes to, writes a pending delivery — in the
  same transaction as its checkpoint, so a crash can neither skip nor double an entry.
  A webhook receives the events appended after its registration.
- `WebhookDeliverer` POSTs due deliveries, marks them delivered on a 2xx, and otherwise
  retries with exponential backoff (0.5 s doubling to 5 min, 15 attempts) before marking
  them failed. A crash between a POST and its mark sends it again: receivers dedupe on
  the `X-ModelDB-Delivery` header. Deliveries are not ordered across retries.

Each request carries `X-ModelDB-Signature: t=<unix seconds>,v1=<hex>`, the HMAC-SHA256 of
`<t>.<body>` under the webhook's secret (answered once, by its registration); see
`verify_signature`. The outbox is not a replayable projection: rebuilding it would send
everything again, so `modeldb replay` leaves it alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modeldb.event_schema import RecordedEvent
from modeldb.projectors.base import SqlProjection
from modeldb.projectors.db import upsert

log = logging.getLogger("modeldb.webhooks")

metadata = MetaData()
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("url", Text, nullable=False),
    Column("events", Text, nullable=False),  # JSON list of event types
    Column("models", Text, nullable=False),  # JSON list of model names; [] is every model
    Column("description", Text, nullable=False, default=""),
    Column("active", Boolean, nullable=False, default=True),
    Column("registered_by", String(250)),
    Column("registered_at", BigInteger),
)
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("webhook_id", String(200), primary_key=True),
    Column("event_id", String(36), primary_key=True),
    Column("event_type", String(60), nullable=False),
    Column("body", Text, nullable=False),  # exactly the bytes POSTed
    Column("status", String(10), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),  # epoch ms
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger),
    Index("webhook_deliveries_due", "status", "next_attempt_at"),
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(secret: str, header: str, body: bytes, tolerance: float = 300.0) -> bool:
    """What a receiver runs: the header is this body's, under this secret, and recent."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)


class WebhookOutbox(SqlProjection):
    name = "webhooks"
    metadata = metadata
    # Every write is keyed (a delivery by webhook and event, a webhook by id), so an event
    # seen twice changes nothing: no need for a dedupe row per event of the whole log.
    dedupe = False

    async def apply_events(self, conn: AsyncConnection, events: list[RecordedEvent]) -> None:
        active = {row.id: row for row in await conn.execute(
            select(webhooks).where(webhooks.c.active.is_(True)))}
        subscribed = {wid: (set(orjson.loads(r.events)), set(orjson.loads(r.models)), r.url)
                      for wid, r in active.items()}
        deliveries: list[dict[str, Any]] = []
        now = _now_ms()
        for recorded in events:
            raw = recorded.raw
            kind, agg = raw["aggregate"]["kind"], raw["aggregate"]["id"]
            if kind == "webhook":
                await self._registration(conn, recorded, subscribed)
                continue
            model = agg if kind == "model" else raw["payload"].get("model")
            for wid, (types, models, _url) in subscribed.items():
                if raw["type"] in types and (not models or model in models):
                    deliveries.append({
                        "webhook_id": wid, "event_id": raw["event_id"], "event_type": raw["type"],
                        "body": _body(wid, recorded, model).decode(), "status": "pending",
                        "attempts": 0, "next_attempt_at": now, "created_at": now})
        await upsert(conn, webhook_deliveries, deliveries, ["webhook_id", "event_id"])

    async def _registration(self, conn: AsyncConnection, recorded: RecordedEvent,
                            subscribed: dict[str, Any]) -> None:
        event = recorded.event
        wid = event.aggregate.id
        if event.type == "WebhookDeleted":
            subscribed.pop(wid, None)
            await conn.execute(update(webhooks).where(webhooks.c.id == wid).values(active=False))
            return
        p: Any = event.payload
        subscribed[wid] = (set(p.events), set(p.models), p.url)
        at = int((event.recorded_at or event.occurred_at).timestamp() * 1000)
        await upsert(conn, webhooks, [{
            "id": wid, "url": p.url, "events": orjson.dumps(p.events).decode(),
            "models": orjson.dumps(p.models).decode(), "description": p.description,
            "active": True, "registered_by": event.actor, "registered_at": at}],
            ["id"], ["url", "events", "models", "description", "active"])


def _body(webhook_id: str, recorded: RecordedEvent, model: str | None) -> bytes:
    raw = recorded.raw
    payload = raw["payload"]
    return orjson.dumps({
        "delivery_id": f"{webhook_id}:{raw['event_id']}",
        "webhook_id": webhook_id,
        "type": raw["type"],
        "model": model,
        "version": payload.get("version"),
        "stage": payload.get("stage"),
        "from_stage": payload.get("from_stage"),
        "event": raw,
    }, option=orjson.OPT_SORT_KEYS)


class WebhookDeliverer:
    """Sends due deliveries; one per ModelDB installation (a second one only sends some
    deliveries twice, which receivers must tolerate anyway)."""

    def __init__(
        self,
        engine: AsyncEngine,
        secret_for: Callable[[str], str],
        *,
        timeout: float = 10.0,
        base_delay: float = 0.5,
        max_delay: float = 300.0,
        max_attempts: int = 15,
        poll: float = 0.2,
        concurrency: int = 8,
    ):
        self.engine = engine
        self.secret_for = secret_for
        self.timeout = timeout
        self.base_delay, self.max_delay = base_delay, max_delay
        self.max_attempts = max_attempts
        self.poll = poll
        self._slots = asyncio.Semaphore(concurrency)

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=self.timeout,
                                     headers={"user-agent": "modeldb-webhooks"}) as http:
            while not stop.is_set():
                try:
                    sent = await self.deliver_due(http)
                except Exception:
                    log.exception("webhook delivery pass failed; retrying")
                    sent = 0
                if not sent:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.poll)

    async def deliver_due(self, http: httpx.AsyncClient, limit: int = 100) -> int:
        async with self.engine.connect() as conn:
            due = list(await conn.execute(
                select(webhook_deliveries, webhooks.c.url, webhooks.c.active)
                .join(webhooks, webhooks.c.id == webhook_deliveries.c.webhook_id)
                .where(webhook_deliveries.c.status == "pending",
                       webhook_deliveries.c.next_attempt_at <= _now_ms())
                .order_by(webhook_deliveries.c.next_attempt_at, webhook_deliveries.c.event_id)
                .limit(limit)))
        await asyncio.gather(*(self._deliver(http, row) for row in due))
        return len(due)

    async def _deliver(self, http: httpx.AsyncClient, row: Any) -> None:
        key = (webhook_deliveries.c.webhook_id == row.webhook_id,
               webhook_deliveries.c.event_id == row.event_id)
        if not row.active:  # deleted after the event: nobody wants it any more
            await self._mark(key, status="failed", last_error="webhook deleted")
            return
        body = row.body.encode()
        headers = {
            "content-type": "application/json",
            "x-modeldb-event": row.event_type,
            "x-modeldb-delivery": f"{row.webhook_id}:{row.event_id}",
            "x-modeldb-signature": signature(self.secret_for(row.webhook_id), int(time.time()),
                                             body),
        }
        attempts = row.attempts + 1
        async with self._slots:
            try:
                response = await http.post(row.url, content=body, headers=headers)
                status, error = response.status_code, None if response.is_success else \
                    f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"[:500]
        if error is None:
            await self._mark(key, status="delivered", attempts=attempts, last_status=status,
                             last_error=None, delivered_at=_now_ms())
            return
        delay = min(self.max_delay, self.base_delay * 2 ** (attempts - 1))
        await self._mark(key, status="failed" if attempts >= self.max_attempts else "pending",
                         attempts=attempts, last_status=status, last_error=error,
                         next_attempt_at=_now_ms() + int(delay * 1000))

    async def _mark(self, key: tuple[Any, ...], **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(webhook_deliveries).where(*key).values(**values))
