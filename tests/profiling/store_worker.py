"""A separate process for the result-store tests: writes, holds or tries the lock of a store.

Usage (from the repository root)::

    python tests/profiling/store_worker.py write PATH N   # append rows 0..N-1 one at a time, skipping stored keys
    python tests/profiling/store_worker.py hold PATH      # take the write lock, print "locked", sleep
    python tests/profiling/store_worker.py try PATH       # print "ok" (exit 0) or the refusal (exit 3)

Rows are a pure function of their index, so a test can check what a killed
writer left behind against :func:`make_row`.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

SAMPLES_PER_ROW = 4000
ENV_ID = "env0123456789"
FINGERPRINT: dict[str, Any] = {
    "cpu": {"model": "Test CPU", "logical_cores": 2},
    "threads": 1,
    "gpus": [],
    "env_id": ENV_ID,
}


def make_row(i: int, samples: int = SAMPLES_PER_ROW) -> dict[str, Any]:
    """Measurement row number ``i``: every value, samples included, derived from ``i``."""
    s = 1.0 + np.random.default_rng(i).random(samples)
    is_model = i % 4 == 0
    return {
        "arch": f'{{"family": "bert", "hidden": {64 * (1 + i // 4)}, "layers": []}}',
        "space": "bert",
        "scope": "model" if is_model else "block",
        "block_index": -1 if is_model else i % 4 - 1,
        "deploy_key": "torch|eager|fp32|cpu|threads=1|warm",
        "backend": "torch",
        "mode": "eager",
        "precision": "fp32",
        "device": "cpu",
        "batch": 1,
        "seq_len": 128,
        "median_ms": float(np.median(s)),
        "mean_ms": float(s.mean()),
        "min_ms": float(s.min()),
        "p90_ms": float(np.percentile(s, 90)),
        "ci_low_ms": float(np.percentile(s, 45)),
        "ci_high_ms": float(np.percentile(s, 55)),
        "n": samples,
        "unstable": i % 5 == 0,
        "build_ms": 0.5 * i,
        "env_id": ENV_ID,
        "flops": 1000 * i,
        "params": 10 * i,
        "roofline_ms": 0.01 * i,
        "samples_ms": s,
        "wall_s": float(i),
    }


def main(argv: list[str]) -> int:
    from latbench.errors import LatbenchError
    from latbench.profiling.store import ResultStore, measurement_key

    command, path = argv[0], argv[1]
    if command == "try":
        try:
            ResultStore(path).close()
        except LatbenchError as exc:
            print(exc, flush=True)
            return 3
        print("ok", flush=True)
        return 0
    with ResultStore(path) as store:
        if command == "hold":
            print("locked", flush=True)
            time.sleep(3600)
            return 0
        if command != "write":
            print(f"unknown command {command!r}", file=sys.stderr)
            return 2
        rows = {measurement_key(r): r for r in (make_row(i) for i in range(int(argv[2])))}
        print("ready", flush=True)
        for key in store.missing(rows):
            store.append([rows[key]], {ENV_ID: FINGERPRINT})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
