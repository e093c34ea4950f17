"""Predicted-vs-measured scatter plot (the ``plot`` extra: matplotlib, imported lazily)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_predicted_vs_measured(
    measured_ms: Any, predicted_ms: Any, path: str | os.PathLike[str], title: str = ""
) -> Path | None:
    """Write a log-log scatter of predicted against measured latency with ±10% bands.

    Returns:
        The PNG's path, or None when matplotlib is not installed (``pip install 'latbench[plot]'``).
    """
    if not have_matplotlib():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from latbench.io import atomic_write

    meas = np.asarray(measured_ms, dtype=np.float64)
    pred = np.asarray(predicted_ms, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    try:
        ax.scatter(meas, pred, s=6, alpha=0.6)
        lo, hi = float(min(meas.min(), pred.min())), float(max(meas.max(), pred.max()))
        line = np.array([lo, hi])
        ax.plot(line, line, "k-", lw=0.8)
        ax.plot(line, 1.1 * line, "k:", lw=0.6)
        ax.plot(line, 0.9 * line, "k:", lw=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("measured (ms)")
        ax.set_ylabel("predicted (ms)")
        if title:
            ax.set_title(title, fontsize=9)
        fig.tight_layout()
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
