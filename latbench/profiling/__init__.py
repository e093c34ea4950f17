"""Measuring latency: deployment configs, backends, the timing protocol, fingerprints, the result store."""

from __future__ import annotations
