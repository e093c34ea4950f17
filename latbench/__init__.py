"""latbench: how fast will this architecture run on that hardware, deployed that way."""

from __future__ import annotations

__version__ = "0.1.0"
