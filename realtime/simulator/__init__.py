"""A simulated live-shopping room: a deterministic-per-seed event timeline, served over WebSocket.

``generate(settings)`` is the whole timeline as frames (lists of event dicts in the
``spec/events.md`` format): the shop's earlier shows first, then the live show.
``serve_simulation`` paces the live part in real time and fans it out to every
client; each new connection first gets the history (fast), then the last ~5 s of
live frames (a resend, as real feeds do on reconnect), then the live stream.

The parts, in the order the data flows:
``settings`` (SimSettings), ``tables`` (the room's world: countries, chat, products, gifts,
behaviour mixes), ``viewers`` (one viewer's profile and state), ``bad`` (deliberately invalid
events), ``show`` (one broadcast, slot by slot), ``timeline`` (the shop's history and live show,
``generate``, ``encode_frame``), ``serve`` (the WebSocket server, ``serve_simulation``).
"""

from __future__ import annotations

from realtime.simulator.bad import FAR_FUTURE_MS, Bad, Garbled
from realtime.simulator.serve import serve_simulation
from realtime.simulator.settings import SimSettings
from realtime.simulator.tables import HOSTILE_NAMES
from realtime.simulator.timeline import DAY_MS, NOMINAL_SHOW_S, encode_frame, generate

__all__ = ["DAY_MS", "FAR_FUTURE_MS", "HOSTILE_NAMES", "NOMINAL_SHOW_S", "Bad", "Garbled", "SimSettings",
           "encode_frame", "generate", "serve_simulation"]
