"""``python -m realtime orders``: the order webhooks on a real HTTP server on loopback, into a real
Redis through the consumer's path, applied by the real scorer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import dataclasses
import hashlib
import hmac
import http.client
import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

from fanops import keys, read
from fanops.config import Config
from fanops.runtime import server
from realtime.orders import OrdersServer
from scoring.forget import forget_in_redis
from screens.reads import orders as kept_reads
from tests.conftest import stream_entries, wait_for
from tests.pipeline import drain, ingest_frames

GENERIC_SECRET, SHOPIFY_SECRET = "generic-secret-1", "shpss_test_secret"
TS = 1_763_856_090_000

# Shopify's orders/create payload as its webhook reference documents it (abridged: line items,
# addresses and money sets trimmed to what a reader needs), plus the two note attributes a live
# checkout link adds (cart attributes become the order's note_attributes).
SHOPIFY_ORDER: dict[str, Any] = {
    "id": 820982911946154508, "admin_graphql_api_id": "gid://shopify/Order/820982911946154508",
    "app_id": None, "browser_ip": None, "buyer_accepts_marketing": True, "cancel_reason": "customer",
    "checkout_id": None, "confirmation_number": None, "confirmed": False, "contact_email": "jon@example.com",
    "created_at": "2021-12-31T19:00:00-05:00", "currency": "USD", "current_subtotal_price": "398.00",
    "current_total_price": "398.00", "email": "jon@example.com", "financial_status": "voided",
    "name": "#9999", "note": None, "order_number": 1234, "phone": None, "presentment_currency": "USD",
    "processed_at": "2021-12-31T19:00:00-05:00", "subtotal_price": "388.00", "test": True,
    "total_price": "398.00", "total_tax": "0.00",
    "note_attributes": [{"name": "viewer_id", "value": "u-77"}, {"name": "room", "value": "r-2026-11-22-a"}],
    "billing_address": {"first_name": "Steve", "address1": "123 Shipping Street", "phone": "555-555-SHIP",
                        "city": "Shippington", "zip": "40003", "province": "Kentucky", "country": "United States",
                        "last_name": "Shipper", "country_code": "US", "province_code": "KY"},
    "customer": {"id": 115310627314723954, "email": "john@example.com", "created_at": None, "updated_at": None,
                 "first_name": "John", "last_name": "Smith", "state": "disabled", "note": None,
                 "verified_email": True, "phone": None, "currency": "USD",
                 "email_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in",
                                             "consent_updated_at": None},
                 "sms_marketing_consent": {"state": "not_subscribed", "opt_in_level": "single_opt_in",
                                           "consent_updated_at": None, "consent_collected_from": "OTHER"}},
    "line_items": [{"id": 866550311766439020, "name": "IPod Nano - 8GB", "price": "199.00", "quantity": 1,
                    "sku": "IPOD2008PINK", "product_id": 632910392, "variant_id": 808950810}],
    "shipping_lines": [{"id": 271878346596884015, "code": None, "price": "10.00", "title": "Generic Shipping"}],
}


def generic(**fields: Any) -> dict[str, Any]:
    body = {"shop": "default", "room": "r-1", "viewer_id": "u-1", "order_id": "o-9", "amount": 39.9,
            "currency": "USD", "ts": TS}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def sign_generic(body: bytes, secret: str = GENERIC_SECRET) -> dict[str, str]:
    return {"X-Signature": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def sign_shopify(body: bytes, secret: str = SHOPIFY_SECRET) -> dict[str, str]:
    mac = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {"X-Shopify-Hmac-Sha256": base64.b64encode(mac).decode(), "X-Shopify-Topic": "orders/create"}


@dataclasses.dataclass
class Running:
    port: int
    server: OrdersServer

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json", **headers})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def generic(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        body = json.dumps(payload).encode()
        return self.post("/webhooks/orders", body, sign_generic(body))

    def shopify(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        body = json.dumps(payload).encode()
        return self.post("/webhooks/shopify", body, sign_shopify(body))


@pytest.fixture
def orders(cfg: Config) -> Iterator[Running]:
    """The orders server in a thread of its own (its own event loop), on a free loopback port."""
    yield from running(cfg)


def running(cfg: Config) -> Iterator[Running]:
    c = dataclasses.replace(cfg, webhook_secret=GENERIC_SECRET, shopify_webhook_secret=SHOPIFY_SECRET,
                            orders_poll_ms=20)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        ar = aredis.Redis.from_url(c.redis_url)
        srv = OrdersServer(ar, c, name="orders-test")
        box["port"], box["srv"] = await srv.start("127.0.0.1", 0), srv
        started.set()
        await srv.wait()
        await srv.stop()
        await ar.aclose()

    t = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    t.start()
    assert started.wait(20), "the orders server did not start"
    yield Running(box["port"], box["srv"])
    box["srv"].http.should_exit = True
    t.join(20)
    if t.is_alive():  # a stop that hangs: say where, and end it, so that it writes into no later test
        try:
            stuck = asyncio.run_coroutine_threadsafe(_stacks(), loop).result(10)
        except TimeoutError:
            stuck = "(the loop itself is blocked: no task could be listed)"
        loop.call_soon_threadsafe(lambda: [task.cancel() for task in asyncio.all_tasks(loop)])
        t.join(10)
        pytest.fail(f"the orders server did not stop within 20 s; its tasks:\n{stuck}")
    loop.close()


async def _stacks() -> str:
    """Every task of the running loop but this one, with where it waits."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.print_stack(file=out)
    return out.getvalue()


def orders_of(r: redis.Redis, viewer: str, shop: str = "default") -> list[str]:
    v = read.viewer_state(r, shop, viewer)
    return list(v.orders) if v else []


def test_a_generic_order_is_applied_with_its_address_and_channel_consents(orders: Running, r, cfg) -> None:
    status, out = orders.generic(generic(email="Anna@Example.com", phone="+14155550123",
                                         accepts_email=True, accepts_sms=False))
    assert (status, out["status"]) == (200, "applied")
    drain(r, cfg)
    v = read.viewer_state(r, "default", "u-1")
    assert v is not None and v.orders == ["o-9"] and v.spend == {"USD": 39.9} and "r-1" in v.rooms
    reach = read.viewer_reach(r, "default", ["u-1"])["u-1"]
    assert reach["email"] == "Anna@Example.com" and reach["phone"] == "+14155550123"
    # the order's marketing flags say nothing of direct messages: dm stays unknown
    assert reach["consent"] == {"dm": None, "email": True, "sms": False, "whatsapp": None}
    assert read.can_send(reach, "email") and not read.can_send(reach, "sms")


def test_shopifys_documented_orders_create_payload_is_applied(orders: Running, r, cfg) -> None:
    status, out = orders.shopify(SHOPIFY_ORDER)
    assert (status, out["event_id"]) == (200, "shopify:820982911946154508")
    drain(r, cfg)
    v = read.viewer_state(r, "default", "u-77")
    assert v is not None and v.orders == ["820982911946154508"] and v.spend == {"USD": 398.0}
    assert "r-2026-11-22-a" in v.rooms and v.first_seen == 1_640_995_200_000  # 19:00 at -05:00
    reach = read.viewer_reach(r, "default", ["u-77"])["u-77"]
    # the order's email; its phone "555-555-SHIP" is no number: the order stands without it
    assert (reach["email"], reach["phone"]) == ("jon@example.com", None)
    assert reach["consent"] == {"dm": None, "email": True, "sms": False, "whatsapp": None}


@pytest.mark.parametrize("path,headers", [
    ("/webhooks/orders", {}),
    ("/webhooks/orders", {"X-Signature": "sha256=" + "0" * 64}),
    ("/webhooks/orders", "wrong-secret"),
    ("/webhooks/shopify", {}),
    ("/webhooks/shopify", "wrong-secret"),
    ("/webhooks/shopify", "generic-form"),  # a generic signature on the Shopify route
])
def test_a_bad_or_missing_signature_is_refused_logged_and_nothing_applied(orders: Running, r, caplog, path,
                                                                           headers) -> None:
    body = json.dumps(SHOPIFY_ORDER if path.endswith("shopify") else generic()).encode()
    if headers == "wrong-secret":
        headers = (sign_shopify if path.endswith("shopify") else sign_generic)(body, "not-the-secret")
    elif headers == "generic-form":
        headers = {"X-Shopify-Hmac-Sha256": sign_generic(body, SHOPIFY_SECRET)["X-Signature"]}
    with caplog.at_level(logging.WARNING, logger="realtime.orders"):
        status, out = orders.post(path, body, headers)
    assert (status, out) == (401, {"error": "bad or missing signature"})
    assert any("bad or missing signature" in m for m in caplog.messages)
    assert stream_entries(r, "default") == [] and r.hlen(keys.orders_waiting("default")) == 0
    assert int(r.hget(keys.dead_stats(), "dead_letters") or 0) == 0


@pytest.mark.parametrize("payload,says", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (generic(amount=-5), "amount: -5 is negative"),
    (generic(order_id=None), "order_id: missing"),
    (generic(currency="dollars"), "currency: 'dollars' is not an ISO 4217 code"),
    (generic(ts="yesterday"), "ts: expected milliseconds"),
    (generic(email="no-at-sign"), "email: 'no-at-sign' is not an address"),
    (generic(phone="12345"), "phone: '12345' is not E.164"),
    (generic(accepts_sms="yes"), "accepts_sms: expected true or false"),
    (generic(viewer_id="x" * 129), "viewer_id: longer than 128 characters"),
    (generic(ts=4_000_000_000_000), "ahead"),  # the schema's own rule: ts too far in the future
])
def test_a_malformed_order_is_refused_with_its_reason_and_dead_lettered(orders: Running, r, payload, says) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, out = orders.post("/webhooks/orders", body, sign_generic(body))
    assert status == 400 and says in out["error"]
    assert stream_entries(r, "default") == [] and r.hlen(keys.orders_waiting("default")) == 0
    wait_for(lambda: int(r.hget(keys.dead_stats(), "dead_letters") or 0) == 1, what="the dead letter")


def test_a_malformed_shopify_order_is_refused_with_its_reason(orders: Running, r) -> None:
    bad = copy.deepcopy(SHOPIFY_ORDER)
    bad["created_at"] = "last tuesday"
    status, out = orders.shopify(bad)
    assert status == 400 and "created_at: 'last tuesday' is not an ISO 8601 time" in out["error"]
    assert stream_entries(r, "default") == []


def test_a_replayed_body_is_a_repeat_not_a_second_order(orders: Running, r, cfg) -> None:
    payload = generic(email="anna@example.com")
    assert orders.generic(payload)[0] == 200
    assert orders.generic(payload)[0] == 200  # Shopify retries a webhook it thinks was lost
    assert orders.shopify(SHOPIFY_ORDER)[0] == 200
    assert orders.shopify(SHOPIFY_ORDER)[0] == 200
    drain(r, cfg)
    assert orders_of(r, "u-1") == ["o-9"] and orders_of(r, "u-77") == ["820982911946154508"]
    st = read.status(r, "default")
    assert st["duplicates"] == 4  # each order and its contact, once each again
    assert read.status(r, "default", "r-1")["room"]["orders"] == 1


def test_an_unmatched_order_is_kept_then_applied_when_a_contact_makes_the_match_certain(orders: Running, r,
                                                                                       cfg) -> None:
    anon = copy.deepcopy(SHOPIFY_ORDER)
    anon["note_attributes"] = []  # bought from the shop, not from the live's link
    status, out = orders.shopify(anon)
    assert status == 202 and "no viewer" in out["reason"]
    assert orders.shopify(anon)[0] == 202  # a replay while kept: still one kept order
    kept = kept_reads.kept_orders(r, "default")
    assert [(k.order_id, k.amount, k.has_email) for k in kept] == [("820982911946154508", 398.0, True)]
    # the viewer gives the same address (any case) in the live room: the scorer notes whose it is
    ingest_frames(cfg, [json.dumps([
        {"id": "j-1", "room": "r-5", "ts": 1_640_990_000_000, "type": "join", "viewer": {"id": "u-5"}},
        {"id": "c-1", "room": "r-5", "ts": 1_640_990_000_001, "type": "contact", "viewer": {"id": "u-5"},
         "email": "JON@example.com"}])])
    drain(r, cfg)
    wait_for(lambda: r.hlen(keys.orders_waiting("default")) == 0, what="the kept order to be applied")
    drain(r, cfg)
    assert orders_of(r, "u-5") == ["820982911946154508"]
    assert read.status(r, "default", "r-5")["room"]["orders"] == 1  # the show the viewer was in then
    # replayed after it was applied: the same viewer and room, a repeat
    assert orders.shopify(anon)[0] == 200
    drain(r, cfg)
    assert orders_of(r, "u-5") == ["820982911946154508"] and kept_reads.kept_orders(r, "default") == []
    # forgetting the viewer takes them out of the webhooks' records too (whose address, which order)
    assert r.hvals(keys.contact_owners("default")) == [b"u-5"] and r.hlen(keys.orders_done("default")) == 1
    removed = forget_in_redis(r, "default", "u-5")
    assert (removed["address_owners"], removed["webhook_orders"]) == (1, 1)
    assert r.hlen(keys.contact_owners("default")) == 0 and r.hlen(keys.orders_done("default")) == 0


def test_an_address_two_viewers_gave_is_no_match_and_an_operator_link_applies_the_order(orders: Running, r,
                                                                                       cfg) -> None:
    frames = [json.dumps({"id": f"c-{v}", "room": "r-5", "ts": TS - 1000, "type": "contact",
                          "viewer": {"id": v}, "phone": "+4915112345678"}) for v in ("u-a", "u-b")]
    ingest_frames(cfg, frames)
    drain(r, cfg)
    status, out = orders.generic(generic(viewer_id=None, room=None, phone="+4915112345678", accepts_whatsapp=True))
    assert status == 202 and "more than one viewer" in out["reason"]
    [k] = kept_reads.kept_orders(r, "default")
    assert kept_reads.link(r, "default", k.event_id, "  ", "r-5", "op") == "viewer"
    assert kept_reads.link(r, "default", k.event_id, "u-b", "", "op") == "room"
    assert kept_reads.link(r, "default", k.event_id, "u-b", "r-5", "Mia") is None
    wait_for(lambda: r.hlen(keys.orders_waiting("default")) == 0, what="the linked order to be applied")
    drain(r, cfg)
    assert orders_of(r, "u-b") == ["o-9"] and orders_of(r, "u-a") == []
    assert read.viewer_reach(r, "default", ["u-b"])["u-b"]["consent"]["whatsapp"] is True
    assert json.loads(r.hget(keys.orders_done("default"), k.event_id)) == ["u-b", "r-5", "operator:Mia"]
    assert kept_reads.link(r, "default", k.event_id, "u-b", "r-5", "Mia") == "gone"


def test_an_order_taken_while_redis_is_away_is_held_and_written_when_it_is_back(cfg, tmp_path, caplog) -> None:
    own = tmp_path / "own-redis"  # a server of this test alone, stopped mid-way
    port = server.free_port()
    cfg = dataclasses.replace(cfg, redis_url=server.ensure_running(own, port=port).url)
    sync = redis.Redis.from_url(cfg.redis_url)
    caplog.set_level(logging.WARNING, logger="realtime")
    gen = running(cfg)
    srv = next(gen)
    try:
        assert srv.generic(generic())[0] == 200
        server.stop(own)
        answer: list[int] = []
        t = threading.Thread(target=lambda: answer.append(srv.generic(generic(order_id="o-10"))[0]))
        t.start()  # the request waits while its order is held
        wait_for(lambda: any("holding 1 events" in m for m in caplog.messages), 20, "the order to be held")
        assert answer == []
        server.ensure_running(own, port)
        t.join(30)
        assert answer == [200]
        drain(sync, cfg)
        assert sorted(orders_of(sync, "u-1")) == ["o-10", "o-9"]  # the first, and the one held
    finally:
        with contextlib.suppress(StopIteration):
            next(gen)
        sync.close()
        server.stop(own)


def test_an_order_sent_again_naming_another_room_is_a_repeat_of_the_first(orders: Running, r, cfg) -> None:
    """The same order id again, now with another room (a shop's app that learnt the viewer's show
    later): a repeat, counted once, in the room it went to first. It counted in both rooms."""
    assert orders.generic(generic())[0] == 200
    assert orders.generic(generic(room="r-2"))[0] == 200
    drain(r, cfg)
    assert orders_of(r, "u-1") == ["o-9"]
    assert read.status(r, "default", "r-1")["room"]["orders"] == 1
    assert read.status(r, "default", "r-2")["room"]["orders"] == 0
    assert read.status(r, "default")["events_applied"] == 1
