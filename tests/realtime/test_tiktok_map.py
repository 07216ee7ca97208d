"""The TikTok LIVE mapping, on event objects built with the TikTokLive library's own message classes
(and parsed back from their protobuf bytes, as the library's client does)."""

from __future__ import annotations

import json

import pytest
from TikTokLive.events import (
    CommentEvent,
    ControlEvent,
    FollowEvent,
    GiftEvent,
    JoinEvent,
    LikeEvent,
    LiveEndEvent,
    LivePauseEvent,
    RoomUserSeqEvent,
    ShareEvent,
    SocialEvent,
)
from TikTokLive.proto import CommonMessageData, Gift
from TikTokLive.proto.custom_proto import ControlAction, ExtendedUser

from fanops.schema import BadInput, Comment, parse_frame
from fanops.schema import Gift as GiftEv
from realtime.tiktok_map import Context, LiveEnd, RoomViewers, map_event, room_id

NOW = 1_763_856_100_000
CTX = Context(shop="s1", room=room_id(7301234567890), diamonds_per_usd=200, now_ms=NOW)
ANNA = ExtendedUser(id=6_800_000_000_000_000_001, nickname="Anna K", display_id="anna.k")


def common(msg_id: int = 7_400_000_000_000_000_001, ts: int = 1_763_856_000_123) -> CommonMessageData:
    return CommonMessageData(msg_id=msg_id, create_time=ts)


def wire(ev):
    """The event as the client gets it: serialised by the platform, parsed by the library's class."""
    return type(ev)().parse(bytes(ev))


def accepted(out: dict) -> object:
    """The mapped event through the consumer's own validation: accepted, as one event."""
    [got] = parse_frame(json.dumps(out).encode(), NOW)
    assert not isinstance(got, BadInput), got
    return got


def test_a_comment_keeps_its_message_id_viewer_text_and_language() -> None:
    out = map_event(wire(CommentEvent(common=common(), user=ANNA, content="does it come in blue?",
                                      content_language="en")), CTX)
    assert out == {"id": "tt-7400000000000000001", "room": "tiktok-7301234567890", "shop": "s1",
                   "ts": 1_763_856_000_123, "type": "comment", "text": "does it come in blue?",
                   "viewer": {"id": "6800000000000000001", "name": "Anna K", "lang": "en"}}
    ev = accepted(out)
    assert isinstance(ev, Comment) and ev.viewer.lang == "en"


def test_the_same_message_resent_maps_to_the_same_event() -> None:
    msg = CommentEvent(common=common(msg_id=42), user=ANNA, content="hi")
    assert map_event(wire(msg), CTX) == map_event(wire(msg), CTX)
    other = CommentEvent(common=common(msg_id=43), user=ANNA, content="hi")
    assert map_event(other, CTX)["id"] != map_event(msg, CTX)["id"]


@pytest.mark.parametrize("cls,kind", [(JoinEvent, "join"), (FollowEvent, "follow"), (ShareEvent, "share")])
def test_join_follow_and_share(cls, kind) -> None:
    out = map_event(wire(cls(common=common(), user=ANNA)), CTX)
    assert out["type"] == kind and out["viewer"]["id"] == "6800000000000000001"
    accepted(out)


def test_a_like_carries_its_count_and_zero_likes_are_nothing() -> None:
    out = map_event(wire(LikeEvent(common=common(), user=ANNA, count=15, total=900)), CTX)
    assert (out["type"], out["count"]) == ("like", 15)
    accepted(out)
    assert map_event(wire(LikeEvent(common=common(), user=ANNA, count=0)), CTX) is None


def rose(**kw) -> Gift:
    return Gift(id=5655, name="Rose", diamond_count=1, type=1, **kw)


def test_a_gift_streak_emits_nothing_until_it_ends_then_its_whole_value() -> None:
    running = [GiftEvent(common=common(msg_id=100 + i), user=ANNA, gift=rose(), gift_id=5655,
                         repeat_count=i, repeat_end=0) for i in range(1, 5)]
    assert [map_event(wire(m), CTX) for m in running] == [None] * 4
    end = map_event(wire(GiftEvent(common=common(msg_id=105), user=ANNA, gift=rose(), gift_id=5655,
                                   repeat_count=5, repeat_end=1)), CTX)
    assert (end["type"], end["id"], end["gift"], end["count"], end["value"]) == ("gift", "tt-105", "Rose", 5, 0.025)
    assert isinstance(accepted(end), GiftEv)


def test_a_gift_that_cannot_streak_counts_at_once_valued_at_the_configured_rate() -> None:
    lion = Gift(id=6369, name="Lion", diamond_count=29_999, type=2)
    msg = GiftEvent(common=common(), user=ANNA, gift=lion, gift_id=6369, repeat_count=1, repeat_end=0)
    assert map_event(wire(msg), CTX)["value"] == pytest.approx(149.995)
    cheap = Context(shop="s1", room="r", diamonds_per_usd=100, now_ms=NOW)
    assert map_event(wire(msg), cheap)["value"] == pytest.approx(299.99)


def test_a_gift_with_zero_diamonds_or_a_zero_count_is_still_one_gift_worth_nothing() -> None:
    free = Gift(id=1, name="", diamond_count=0, type=2)
    out = map_event(wire(GiftEvent(common=common(), user=ANNA, gift=free, gift_id=1, repeat_count=0)), CTX)
    assert (out["gift"], out["count"], out["value"]) == ("gift-1", 1, 0.0)
    accepted(out)


def test_a_gift_without_its_details_is_a_dead_letter_with_the_reason() -> None:
    out = map_event(wire(GiftEvent(common=common(), user=ANNA, gift_id=5655, repeat_count=1, repeat_end=1)), CTX)
    assert isinstance(out, BadInput) and "value is unknown" in out.reason and b"GiftEvent" in out.raw


@pytest.mark.parametrize("user", [None, ExtendedUser(nickname="ghost")], ids=["no user", "user without id"])
def test_a_message_without_a_user_is_a_dead_letter_not_a_guess(user) -> None:
    out = map_event(wire(CommentEvent(common=common(), user=user, content="who am I")), CTX)
    assert isinstance(out, BadInput) and "without a user id" in out.reason
    assert b"who am I" in out.raw  # the message is kept with the reason


def test_a_message_without_a_message_id_is_a_dead_letter() -> None:
    out = map_event(wire(LikeEvent(common=CommonMessageData(create_time=1), user=ANNA, count=3)), CTX)
    assert isinstance(out, BadInput) and "message id" in out.reason


@pytest.mark.parametrize("name", ["🌸🌸🌸", "👍", "\u200b", "<script>x</script>", "ا" * 300])
def test_odd_names_pass_as_text_and_long_ones_are_cut(name) -> None:
    user = ExtendedUser(id=9, nickname=name)
    ev = accepted(map_event(wire(CommentEvent(common=common(), user=user, content="")), CTX))
    assert ev.viewer.name == name[:256] and ev.text == ""


def test_a_user_without_a_nickname_is_named_by_handle_and_bad_language_tags_are_left_out() -> None:
    user = ExtendedUser(id=9, display_id="handle_only")
    out = map_event(wire(CommentEvent(common=common(), user=user, content="x", content_language="zh_Hans")), CTX)
    assert out["viewer"] == {"id": "9", "name": "handle_only", "lang": "zh-Hans"}
    out = map_event(wire(CommentEvent(common=common(), user=user, content="x", content_language="??")), CTX)
    assert "lang" not in out["viewer"]


def test_time_in_seconds_or_missing() -> None:
    assert map_event(JoinEvent(common=common(ts=1_763_856_000), user=ANNA), CTX)["ts"] == 1_763_856_000_000
    assert map_event(JoinEvent(common=common(ts=0), user=ANNA), CTX)["ts"] == NOW


def test_viewer_counts_go_to_the_board_even_when_zero() -> None:
    out = map_event(wire(RoomUserSeqEvent(common=common(), total=1234, total_user=5678)), CTX)
    assert out == RoomViewers(viewers=1234, total=5678, ts=1_763_856_000_123)
    assert map_event(wire(RoomUserSeqEvent(common=common())), CTX) == RoomViewers(0, 0, 1_763_856_000_123)


def test_live_end_and_what_is_not_ours() -> None:
    assert map_event(wire(LiveEndEvent(common=common(), action=ControlAction.STREAM_ENDED)), CTX) == \
        LiveEnd(ts=1_763_856_000_123, reason="ended")
    assert map_event(ControlEvent(common=common(), action=ControlAction.STREAM_SUSPENDED), CTX).reason == "suspended"
    assert map_event(LivePauseEvent(common=common(), action=ControlAction.STREAM_PAUSED), CTX) is None
    assert map_event(SocialEvent(common=common(), user=ANNA), CTX) is None


def _limited(headers: dict[str, str]):
    import httpx
    from TikTokLive.client.errors import SignatureRateLimitError

    resp = httpx.Response(429, headers=headers, request=httpx.Request("GET", "http://127.0.0.1/webcast/fetch"))
    return SignatureRateLimitError("busy", "Too many connections started, try again in %s seconds.", response=resp)


def test_the_wait_after_each_way_a_connection_ends() -> None:
    from TikTokLive.client.errors import SignAPIError, UserOfflineError, WebcastBlockedError

    from fanops.retry import Backoff
    from realtime.tiktok import retry_delay

    b = Backoff(initial=1, cap=1)
    assert retry_delay(_limited({"RateLimit-Remaining": "30"}), False, b, 60) == ("rate_limited", 30.0)
    assert retry_delay(_limited({"RateLimit-Remaining": "999999"}), False, b, 60) == ("rate_limited", 3600.0)
    assert retry_delay(UserOfflineError(), False, b, 60) == ("offline", 60)
    assert retry_delay(None, True, b, 60) == ("ended", 60)
    state, wait = retry_delay(SignAPIError(SignAPIError.ErrorReason.EMPTY_PAYLOAD, "x"), False, b, 60)
    assert state == "sign_error" and 0.5 <= wait <= 1
    assert retry_delay(WebcastBlockedError("400"), False, b, 60)[0] == "blocked"
    assert retry_delay(None, False, b, 60)[0] == "dropped"
    assert retry_delay(OSError("refused"), False, b, 60)[0] == "error"
