"""Another platform's WebSocket feed through a declarative mapping (``consume --mapping``,
``realtime.mapping``): the two example mappings on frames written from the platforms' documented
payloads, through a real WebSocket server and the real consumer into Redis; a resend is repeats;
a platform type not in the map is a dead letter with its reason; a bad mapping file is one line."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fanops.errors import BadSettings
from realtime import mapping
from tests.conftest import stream_entries
from tests.feeds import send_all
from tests.pipeline import run_consumer
from tests.realtime.test_consumer import dead, stream_events

ROOT = Path(__file__).resolve().parents[2]
MAPS = ROOT / "realtime" / "mappings"

# YouTube Data API v3, liveChatMessages.list (its reference's resource shape; ids shortened)
CHAT = "Cg0KC2xpdmVfY2hhdF8x"


def yt_item(mid: str, kind: str, at: str, channel: str, name: str, **snippet: object) -> dict:
    return {"kind": "youtube#liveChatMessage", "etag": "e-" + mid, "id": mid,
            "snippet": {"type": kind, "liveChatId": CHAT, "authorChannelId": channel, "publishedAt": at,
                        "hasDisplayContent": True, **snippet},
            "authorDetails": {"channelId": channel, "channelUrl": f"http://www.youtube.com/channel/{channel}",
                              "displayName": name, "profileImageUrl": "https://yt3.ggpht.com/x.jpg",
                              "isVerified": False, "isChatOwner": False, "isChatSponsor": False,
                              "isChatModerator": False}}


YT_PAGE = {
    "kind": "youtube#liveChatMessageListResponse", "etag": "page-1", "nextPageToken": "GOCvk",
    "pollingIntervalMillis": 2000, "pageInfo": {"totalResults": 5, "resultsPerPage": 5},
    "items": [
        yt_item("LCC.1", "textMessageEvent", "2025-11-22T20:00:05.123+00:00", "UCa", "Ana <b>K</b>",
                displayMessage="does it come in blue?", textMessageDetails={"messageText": "does it come in blue?"}),
        yt_item("LCC.2", "superChatEvent", "2025-11-22T20:00:09.5Z", "UCb", "Bo",
                displayMessage="$5.00 take my money",
                superChatDetails={"amountMicros": "5000000", "currency": "USD", "amountDisplayString": "$5.00",
                                  "userComment": "take my money", "tier": 2}),
        yt_item("LCC.3", "newSponsorEvent", "2025-11-22T20:00:10Z", "UCc", "Cy",
                newSponsorDetails={"memberLevelName": "Fan", "isUpgrade": False}),
        yt_item("LCC.4", "tombstone", "2025-11-22T20:00:11Z", "UCd", "Di"),
        yt_item("LCC.5", "fanFundingEvent", "2025-11-22T20:00:12Z", "UCe", "Ed"),
    ]}


# Twitch EventSub WebSocket messages (its "Handling WebSocket events" reference)
def tw_note(mid: str, sub_type: str, event: dict, at: str = "2025-11-22T20:01:02.634234626Z") -> dict:
    return {"metadata": {"message_id": mid, "message_type": "notification", "message_timestamp": at,
                         "subscription_type": sub_type, "subscription_version": "1"},
            "payload": {"subscription": {"id": "f1c2a387-161a-49f9-a165-0f21d7a4e1c4", "status": "enabled",
                                         "type": sub_type, "version": "1", "cost": 0,
                                         "condition": {"broadcaster_user_id": "1337"},
                                         "transport": {"method": "websocket", "session_id": "AQoQexAWVYKSTIu4ec"},
                                         "created_at": "2025-11-22T19:00:00.000Z"},
                        "event": event}}


TW = [
    {"metadata": {"message_id": "96a3f3b5-5dec-4eed-908e-e11ee657416c", "message_type": "session_welcome",
                  "message_timestamp": "2025-11-22T20:00:00.000Z"},
     "payload": {"session": {"id": "AQoQexAWVYKSTIu4ec", "status": "connected", "keepalive_timeout_seconds": 10,
                             "reconnect_url": None, "connected_at": "2025-11-22T20:00:00.000Z"}}},
    tw_note("m-1", "channel.chat.message", {
        "broadcaster_user_id": "1337", "broadcaster_user_login": "shop", "broadcaster_user_name": "Shop",
        "chatter_user_id": "4145994", "chatter_user_login": "viewer32", "chatter_user_name": "viewer32",
        "message_id": "cc106a89-1814-919d-454c-f4f2f970aae7",
        "message": {"text": "Hi chat", "fragments": [{"type": "text", "text": "Hi chat"}]},
        "color": "#00FF7F", "badges": [], "message_type": "text"}),
    tw_note("m-2", "channel.follow", {"user_id": "1234", "user_login": "cool_user", "user_name": "Cool_User",
                                      "broadcaster_user_id": "1337", "broadcaster_user_login": "shop",
                                      "broadcaster_user_name": "Shop", "followed_at": "2025-11-22T20:01:03Z"},
             at="2025-11-22T20:01:03.1Z"),
    tw_note("m-3", "channel.cheer", {"is_anonymous": False, "user_id": "1234", "user_login": "cool_user",
                                     "user_name": "Cool_User", "broadcaster_user_id": "1337",
                                     "broadcaster_user_login": "shop", "broadcaster_user_name": "Shop",
                                     "message": "pogchamp", "bits": 1000}, at="2025-11-22T20:01:04Z"),
    {"metadata": {"message_id": "84c1e79a-2a4b-4c13-ba0b-4312293e9308", "message_type": "session_keepalive",
                  "message_timestamp": "2025-11-22T20:01:10.000Z"}, "payload": {}},
]


def kind(e: object) -> str:
    return type(e).__struct_config__.tag  # type: ignore[attr-defined,no-any-return]


def test_youtube_live_chat_through_the_consumer_and_a_resend_is_repeats(cfg, r):
    m = mapping.load(MAPS / "youtube_live_chat.toml")
    frames = [json.dumps(YT_PAGE), json.dumps(YT_PAGE)]  # the bridge sends the page twice
    c = _consume(cfg, frames, m)
    evs = {e.id: e for e in stream_events(r)}
    assert sorted(evs) == ["LCC.1", "LCC.2", "LCC.3"]
    assert {e.room for e in evs.values()} == {CHAT}
    one, two, three = evs["LCC.1"], evs["LCC.2"], evs["LCC.3"]
    assert (kind(one), one.text, one.viewer.id, one.viewer.name, one.ts) == (
        "comment", "does it come in blue?", "UCa", "Ana <b>K</b>", 1763841605123)
    assert (kind(two), two.value, two.gift, two.ts) == ("gift", 5.0, "superChatEvent", 1763841609500)
    assert (kind(three), three.viewer.id) == ("follow", "UCc")
    # a tombstone is no event of ours (ignored, counted); a type the map does not name is a dead letter
    assert (c.counters.accepted, c.counters.duplicates, c.counters.ignored, c.counters.bad) == (3, 3, 2, 2)
    reasons = {f[b"reason"].decode() for f in dead(r)}
    assert reasons == {"youtube_live_chat.toml: platform type 'fanFundingEvent' is not in the mapping's [type.map]"}


def test_twitch_eventsub_frames_through_the_consumer(cfg, r):
    m = mapping.load(MAPS / "twitch_eventsub.toml")
    c = _consume(cfg, [json.dumps(f) for f in TW + TW[1:2]], m)  # the chat message delivered twice
    evs = {e.id: e for e in stream_events(r)}
    assert sorted(evs) == ["m-1", "m-2", "m-3"]
    chat, follow, cheer = evs["m-1"], evs["m-2"], evs["m-3"]
    assert (kind(chat), chat.text, chat.viewer.id, chat.viewer.name, chat.ts) == (
        "comment", "Hi chat", "4145994", "viewer32", 1763841662634)  # nanoseconds cut to ms
    assert (kind(follow), follow.viewer.id, follow.room) == ("follow", "1234", "twitch-live")
    assert (kind(cheer), cheer.count, cheer.value, cheer.gift) == ("gift", 1000, 1000.0, "bits")
    assert (c.counters.accepted, c.counters.duplicates, c.counters.ignored, c.counters.bad) == (3, 1, 2, 0)


def test_a_mapped_event_that_breaks_the_feeds_rules_is_a_dead_letter_with_the_reason(cfg, r):
    m = mapping.load(MAPS / "youtube_live_chat.toml")
    page = copy.deepcopy(YT_PAGE)
    page["items"] = page["items"][:2]
    page["items"][0]["snippet"]["publishedAt"] = "yesterday"  # no ISO date
    del page["items"][1]["authorDetails"]["channelId"]  # no viewer id
    c = _consume(cfg, [json.dumps(page), "not json at all"], m)
    assert (c.counters.accepted, c.counters.bad) == (0, 3)
    reasons = [f[b"reason"].decode() for f in dead(r)]
    assert any(x.startswith("bad JSON") for x in reasons)
    assert any("snippet.publishedAt: 'yesterday' is not iso" in x for x in reasons)
    assert "Object missing required field `id` - at `$.viewer`" in reasons  # the feed's own rule
    assert stream_entries(r, "default") == []


@pytest.mark.parametrize("text,says", [
    ('[type]\npath = "t"\n[type.map]\nx = "comment"\n[event]\nroom = "r"\nts = "t"\n"viewer.id" = "v"\n',
     "[event] has no id"),
    ('[type]\npath = "t"\n[type.map]\nx = "chat"\n', "[type.map] x = 'chat': not one of our types"),
    ('[type]\npath = "t"\n[type.map]\nx = "comment"\n[event]\nid = "i"\nroom = "r"\nts = "t"\n"viewer.id" = "v"\n'
     'colour = "c"\n', "[event] colour: not a field of ours here"),
    ('[type]\npath = "t"\n[type.map]\nx = "comment"\n[event]\nid = "i"\nroom = "r"\n'
     'ts = { path = "t", as = "days" }\n"viewer.id" = "v"\n', "[event] ts: as = 'days'"),
    ('[type]\npath = "a..b"\n[type.map]\nx = "comment"\n', "[type] path: 'a..b' is not a dotted path"),
    ("[type\n", "Expected ']'"),
])
def test_a_bad_mapping_file_is_refused_naming_the_section_and_key(tmp_path, text, says):
    p = tmp_path / "m.toml"
    p.write_text(text)
    with pytest.raises(BadSettings) as e:
        mapping.load(p)
    assert str(e.value).startswith(f"--mapping {p}: ") and says in str(e.value)


def test_the_command_refuses_a_bad_mapping_in_one_line_before_connecting(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text('[type]\npath = "t"\n[type.map]\nx = "chat"\n')
    res = subprocess.run([sys.executable, "-m", "realtime", "consume", "--url", "ws://127.0.0.1:9", "--mapping",
                          str(p), "--redis", "redis://127.0.0.1:9/0"], capture_output=True, text=True, cwd=ROOT,
                         timeout=60)
    assert res.returncode == 1 and res.stderr.strip().count("\n") == 0
    assert "not one of our types" in res.stderr


def _consume(cfg, frames, m):
    """The real consumer reading ``frames`` from a real WebSocket server through mapping ``m``."""
    return run_consumer(cfg, lambda ws, n: send_all(ws, frames), lambda c: c.counters.frames >= len(frames),
                        mapping=m)


def test_a_platform_without_event_ids_gets_one_from_a_hash_so_a_resend_is_a_repeat(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text('[frame]\nevents = "msgs"\n[type]\npath = "kind"\n[type.map]\nchat = "comment"\n'
                 '[event]\nid = { hash = ["user.uid", "sent_at", "body"] }\nroom = { const = "live-1" }\n'
                 'ts = { path = "sent_at", as = "s" }\n"viewer.id" = { path = "user.uid", as = "str" }\n'
                 '[types.comment]\ntext = "body"\n')
    m = mapping.load(p)
    frame = {"msgs": [{"kind": "chat", "user": {"uid": 7}, "sent_at": 1763841605.5, "body": "hi"},
                      {"kind": "chat", "user": {"uid": 7}, "sent_at": 1763841605.5, "body": "hello"}]}
    first, _ = m.parse(json.dumps(frame), 1_800_000_000_000, 86_400_000)
    again, _ = m.parse(json.dumps(frame), 1_800_000_000_000, 86_400_000)
    assert [e.id for e in first] == [e.id for e in again] and first[0].id != first[1].id
    assert first[0].id.startswith("h:") and (first[0].ts, first[0].viewer.id) == (1763841605500, "7")
