"""``python -m scoring viewer``: one viewer's state as JSON."""

from __future__ import annotations

import json

from scoring.explain import viewer_report
from tests.pipeline import drain, ingest_frames

T = 1_735_689_600_000


def test_spend_is_the_sum_of_the_amounts_as_written(r, cfg):
    orders = [{"id": f"o{i}", "room": "r", "ts": T + i, "type": "order", "viewer": {"id": "v"}, "order_id": f"o{i}",
               "amount": amount, "currency": "USD"} for i, amount in enumerate((10.01, 20))]
    ingest_frames(cfg, [json.dumps(orders)])
    drain(r, cfg)
    rep = viewer_report(r, "default", "v")
    assert rep is not None and rep["spend"] == {"USD": 30.01} and rep["orders"] == 2
