"""Pareto fronts, non-dominated sorting, crowding distance and 2-d hypervolume (all objectives minimised)."""

from __future__ import annotations

import numpy as np


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in one."""
    return bool(np.all(a <= b) and np.any(a < b))


def non_dominated_sort(points: np.ndarray, violation: np.ndarray | None = None) -> list[np.ndarray]:
    """Fronts of indices, best first (Deb et al. 2002), with constrained domination.

    With ``violation``, a feasible point (0) dominates every infeasible one, and of two
    infeasible points the smaller violation dominates (Deb's constraint handling).
    """
    pts = np.asarray(points, dtype=np.float64)
    n = len(pts)
    viol = np.zeros(n) if violation is None else np.asarray(violation, dtype=np.float64)
    le = np.all(pts[:, None, :] <= pts[None, :, :], axis=-1)
    lt = np.any(pts[:, None, :] < pts[None, :, :], axis=-1)
    dom = le & lt
    feas = viol <= 0
    dom = np.where(feas[:, None] & feas[None, :], dom, False)
    dom |= feas[:, None] & ~feas[None, :]
    both_inf = ~feas[:, None] & ~feas[None, :]
    dom |= both_inf & (viol[:, None] < viol[None, :])
    count = dom.sum(axis=0)  # how many dominate each point
    fronts: list[np.ndarray] = []
    remaining = np.ones(n, dtype=bool)
    while remaining.any():
        front = np.flatnonzero(remaining & (count == 0))
        if len(front) == 0:  # cannot happen for a strict partial order; guard against NaN objectives
            front = np.flatnonzero(remaining)
        fronts.append(front)
        remaining[front] = False
        count = count - dom[front].sum(axis=0)
    return fronts


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each point of one front (boundary points: infinity)."""
    pts = np.asarray(points, dtype=np.float64)
    n, m = pts.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(pts[:, j], kind="stable")
        span = pts[order[-1], j] - pts[order[0], j]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (pts[order[2:], j] - pts[order[:-2], j]) / span
    return dist


def pareto_front(points: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points, sorted by the first objective."""
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) == 0:
        return np.zeros(0, dtype=np.int64)
    front = non_dominated_sort(pts)[0]
    return front[np.argsort(pts[front, 0], kind="stable")]


def hypervolume_2d(points: np.ndarray, reference: tuple[float, float]) -> float:
    """Area dominated by ``points`` and bounded by ``reference`` (both objectives minimised)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = pts[(pts[:, 0] < reference[0]) & (pts[:, 1] < reference[1])]
    if len(pts) == 0:
        return 0.0
    front = pts[pareto_front(pts)]
    area, prev_q = 0.0, reference[1]
    for lat, q in front:  # latency ascending, so quality descends along a front
        area += (reference[0] - lat) * (prev_q - q)
        prev_q = q
    return float(area)
