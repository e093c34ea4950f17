"""Super-net training (standard, random, sandwich), objectives, small real data sets, sub-network evaluation.

Importing this package loads no torch; import the submodules (``latbench.supernet.data`` ...) for the work.
"""

from __future__ import annotations
