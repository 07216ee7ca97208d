"""The order webhooks' pure part: signatures, and a body -> ``ShopOrder`` or the reason it is refused."""

from __future__ import annotations

import copy
import json

import pytest

from fanops.schema import BadInput
from realtime.orders_map import ShopOrder, order_events, parse_generic, parse_shopify, signature_ok
from tests.realtime.test_orders import SHOPIFY_ORDER, generic, sign_generic, sign_shopify


@pytest.mark.parametrize("form,body,header,secret,ok", [
    ("generic", b"{}", sign_generic(b"{}", "k")["X-Signature"], "k", True),
    ("generic", b"{} ", sign_generic(b"{}", "k")["X-Signature"], "k", False),  # one byte more: not that body
    ("generic", b"{}", sign_generic(b"{}", "k")["X-Signature"].upper(), "k", False),
    ("generic", b"{}", sign_generic(b"{}", "k")["X-Signature"][7:], "k", False),  # no sha256= prefix
    ("generic", b"{}", sign_generic(b"{}", "")["X-Signature"], "", False),  # no secret set: nothing is taken
    ("shopify", b"{}", sign_shopify(b"{}", "k")["X-Shopify-Hmac-Sha256"], "k", True),
    ("shopify", b"{}", sign_shopify(b"{}", "k")["X-Shopify-Hmac-Sha256"], "other", False),
    ("shopify", b"{}", None, "k", False),
    ("shopify", b"{}", "\u00e9t\u00e9", "k", False),  # not even ASCII
])
def test_signatures(form, body, header, secret, ok) -> None:
    assert signature_ok(body, header, secret, form) is ok


@pytest.mark.parametrize("customer,accepts,want", [
    ({"email_marketing_consent": {"state": "subscribed"}, "sms_marketing_consent": {"state": "unsubscribed"}},
     False, {"email": True, "sms": False}),
    ({"email_marketing_consent": {"state": "pending"}}, True, {}),  # double opt-in not confirmed: unknown
    ({"email_marketing_consent": None}, True, {"email": True}),  # older payloads: the checkout's box
    ({}, False, {"email": False}),
    (None, None, {}),
])
def test_shopify_marketing_consents(customer, accepts, want) -> None:
    d = copy.deepcopy(SHOPIFY_ORDER)
    d["customer"], d["buyer_accepts_marketing"] = customer, accepts
    o = parse_shopify(json.dumps(d).encode(), "s1")
    assert isinstance(o, ShopOrder) and o.flags == want and o.shop == "s1"


@pytest.mark.parametrize("phone,want", [("+1 (415) 555-0123", "+14155550123"), ("0049 151 1234 5678", "+4915112345678"),
                                        ("555-555-SHIP", None), (None, None)])
def test_a_shopify_phone_is_read_as_e164_or_left_out(phone, want) -> None:
    d = copy.deepcopy(SHOPIFY_ORDER)
    d["phone"] = phone
    o = parse_shopify(json.dumps(d).encode(), "s1")
    assert isinstance(o, ShopOrder) and o.phone == want


def test_the_viewer_and_room_attributes_can_be_named_otherwise() -> None:
    d = copy.deepcopy(SHOPIFY_ORDER)
    d["note_attributes"] = [{"name": "tiktok_user", "value": 6800000000000000001}, {"name": "show", "value": "s-9"}]
    o = parse_shopify(json.dumps(d).encode(), "s1", viewer_attr="tiktok_user", room_attr="show")
    assert isinstance(o, ShopOrder) and (o.viewer, o.room) == ("6800000000000000001", "s-9")
    assert (parse_shopify(json.dumps(d).encode(), "s1").viewer, parse_shopify(json.dumps(d).encode(), "s1").room) \
        == (None, None)


def test_an_order_is_an_order_event_and_a_contact_event_with_ids_from_the_order_id() -> None:
    o = parse_generic(json.dumps(generic(email="a@b.c", accepts_email=True)).encode(), "default")
    assert isinstance(o, ShopOrder)
    evs = order_events(o, "u-1", "r-1")
    assert [(e["id"], e["type"]) for e in evs] == [("generic:o-9", "order"), ("generic:o-9:contact", "contact")]
    assert "accepts_email" not in evs[1] and evs[1]["email"] == "a@b.c"  # consents go beside the viewer
    bare = parse_generic(json.dumps(generic()).encode(), "default")
    assert isinstance(bare, ShopOrder) and [e["type"] for e in order_events(bare, "u-1", "r-1")] == ["order"]


def test_an_empty_viewer_or_room_is_no_viewer_or_room_and_shop_defaults() -> None:
    o = parse_generic(json.dumps(generic(viewer_id="", room="  ", shop=None)).encode(), "mine")
    assert isinstance(o, ShopOrder) and (o.viewer, o.room, o.shop) == (None, None, "mine")
    bad = parse_generic(json.dumps(generic(viewer_id=["u"])).encode(), "mine")
    assert isinstance(bad, BadInput) and bad.reason == "viewer_id: expected a string, got list"
