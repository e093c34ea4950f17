"""Train / validation / test splits: grouped by architecture, seeded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latbench.errors import LatbenchError


@dataclass(frozen=True)
class Split:
    """Row indices of the three parts."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": int(self.train.size), "val": int(self.val.size), "test": int(self.test.size)}


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not 0.999 <= sum(fractions) <= 1.001:
        raise LatbenchError("split", f"expected three non-negative fractions summing to 1, got {tuple(fractions)}")
    if fractions[0] <= 0:
        raise LatbenchError("split", "the training fraction must be positive")
    return float(fractions[0]), float(fractions[1]), float(fractions[2])


def grouped_split(
    groups: Any,
    seed: int,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    max_train_groups: int | None = None,
    max_test_groups: int | None = None,
) -> Split:
    """Split rows so that all rows of a group (an architecture) land in the same part.

    Groups are shuffled with ``seed`` and dealt to train, validation and test by
    their share of groups. Same groups and seed, same split.

    Args:
        groups: One group label per row (e.g. the canonical architecture JSON).
        seed: Random seed.
        fractions: Shares of groups for train, validation, test.
        max_train_groups: Cap on training groups (e.g. "at most 500 training architectures");
            the groups over the cap are left out of all three parts.
        max_test_groups: Cap on test groups.
    """
    f_train, f_val, _ = _check_fractions(fractions)
    labels = np.asarray(groups)
    if labels.ndim != 1 or labels.size == 0:
        raise LatbenchError("split", "need one group label per row, and at least one row")
    uniq, inverse = np.unique(labels, return_inverse=True)
    n_groups = uniq.size
    if n_groups < 3 and f_val > 0:
        raise LatbenchError("split", f"need at least 3 distinct architectures to split, got {n_groups}")
    order = np.random.default_rng(seed).permutation(n_groups)
    n_train = max(1, round(f_train * n_groups))
    n_val = round(f_val * n_groups)
    if f_val > 0:
        n_val = max(1, n_val)
        n_train = min(n_train, n_groups - n_val - (1 if fractions[2] > 0 else 0))
    part = np.full(n_groups, 3, dtype=np.int8)  # 3: left out
    train_groups = order[:n_train]
    val_groups = order[n_train : n_train + n_val]
    test_groups = order[n_train + n_val :]
    if max_train_groups is not None:
        train_groups = train_groups[:max_train_groups]
    if max_test_groups is not None:
        test_groups = test_groups[:max_test_groups]
    part[train_groups], part[val_groups], part[test_groups] = 0, 1, 2
    row_part = part[inverse]
    return Split(
        train=np.flatnonzero(row_part == 0),
        val=np.flatnonzero(row_part == 1),
        test=np.flatnonzero(row_part == 2),
    )


def shuffled_split(n_rows: int, seed: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> Split:
    """HAT's split: shuffle the rows, then the first 80% train, next 10% validation, rest test.

    HAT (``latency_predictor.py``) floors ``0.8·n`` and ``0.1·n`` and gives the test set the rest.
    Indices keep the shuffled order (not sorted), as HAT's lists do.
    """
    f_train, f_val, _ = _check_fractions(fractions)
    if n_rows < 3:
        raise LatbenchError("split", f"need at least 3 rows, got {n_rows}")
    perm = np.random.default_rng(seed).permutation(n_rows)
    n_train = int(np.floor(f_train * n_rows))
    n_val = int(np.floor(f_val * n_rows))
    return Split(train=perm[:n_train], val=perm[n_train : n_train + n_val], test=perm[n_train + n_val :])
