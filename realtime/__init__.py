"""Ingest: the live-room feed (WebSocket) into Redis, and the simulated room that feeds it."""
