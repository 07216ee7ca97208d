"""The settings what-if, for the settings screen (see ``scoring.recompute``)."""

from __future__ import annotations

from scoring.recompute import what_if

__all__ = ["what_if"]
