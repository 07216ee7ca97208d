"""The ingest writer, kept in ``fanops.ingest`` (every source writes through it); re-exported here
for the callers that know it by this name."""

from __future__ import annotations

from fanops.ingest import DEAD_MAXLEN, DEAD_MINUTE_TTL_S, KNOWN_CAP, IngestWriter, dedupe_record

__all__ = ["DEAD_MAXLEN", "DEAD_MINUTE_TTL_S", "KNOWN_CAP", "IngestWriter", "dedupe_record"]
