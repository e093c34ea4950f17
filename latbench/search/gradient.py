"""Gradient search: relax the dimensions, descend through the MLP predictor, project back.

Every dimension becomes a real number ``lo + (hi - lo) * sigmoid(u)`` inside its domain
(for spaces such as ``bert`` whose total Q/K width is searched, the heads and that total;
for per-block spaces such as ``vit``, one set per block). The loss is the differentiable
quality objective plus a penalty on predicted latency over the bound::

    loss = quality(dims) + penalty * relu(log(latency(dims) / bound) + slack) ** 2

with ``latency`` the MLP predictor evaluated on the analytic features computed in torch
(:func:`latbench.predictors.features.torch_arch_features`), the upper end of its interval
when the constraint keeps a safety margin. A batch of random starts descends with Adam;
each end point is projected to the nearest valid architecture, and a projected point the
predictor puts over the bound is repaired by stepping single dimensions down (the step
that costs least quality first) until it fits. Later batches start half of their points
near the best architecture told so far.

When the run's quality objective is not differentiable (a super-net, a user's function),
the scaling-law proxy guides the descent and the objective judges the projected points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latbench.config import check_positive
from latbench.errors import LatbenchError
from latbench.search.base import Evaluation, Searcher, SearcherConfig
from latbench.search.quality import QualityObjective, ScalingLawProxy
from latbench.space import Arch, LayerSpec
from latbench.space.spaces import IntDomain


@dataclass(frozen=True)
class GradientConfig(SearcherConfig):
    """Attributes:
    starts: Random starts descended together per ask.
    steps: Adam steps per batch of starts.
    lr: Adam's learning rate (on the unconstrained logits).
    penalty: Weight of the squared log-excess of latency over the bound.
    slack: Aim this far (in log latency) under the bound, so rounding rarely lands over it.
    max_repairs: Single-dimension steps down a projected architecture may take to fit.
    """

    starts: int = 32
    steps: int = 150
    lr: float = 0.1
    penalty: float = 50.0
    slack: float = 0.02
    max_repairs: int = 200

    def __post_init__(self) -> None:
        check_positive(self, "starts", "steps", "lr", "penalty", "max_repairs")
        if self.slack < 0:
            raise LatbenchError("slack", f"must be >= 0, got {self.slack}")


def _nearest(domain_values: np.ndarray, x: np.ndarray) -> np.ndarray:
    i = np.clip(np.searchsorted(domain_values, x), 1, len(domain_values) - 1)
    lo, hi = domain_values[i - 1], domain_values[i]
    return np.where(np.abs(x - lo) <= np.abs(hi - x), lo, hi)


class GradientSearcher(Searcher):
    name = "gradient"
    config_class = GradientConfig
    needs_gradients = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        predictor = self.problem.latency.predictor
        if not hasattr(predictor, "torch_forward"):
            raise LatbenchError(
                "--method",
                f"the gradient searcher needs a differentiable predictor (mlp); --predictor is {predictor.name}",
            )
        q = self.problem.quality
        self.guide: QualityObjective = q if q.differentiable else ScalingLawProxy()
        space = self.problem.space
        self.coupled = space.qkv is not None
        self.uniform = space.uniform_layers
        self.pairs = np.array(space.attention_choices(), dtype=np.float64)
        self.values = {
            "n_layers": np.array(space.n_layers.values(), dtype=np.float64),
            "hidden": np.array(space.hidden.values(), dtype=np.float64),
            "heads": np.array(space.heads.values(), dtype=np.float64),
            "qk_dim": np.array(space.qk_dim.values(), dtype=np.float64),
            "mlp": np.array(space.mlp.values(), dtype=np.float64),
        }
        if space.v_dim is not None:
            self.values["v_dim"] = np.array(space.v_dim.values(), dtype=np.float64)
        if self.coupled:
            assert space.qkv is not None
            self.values["qkv"] = np.array(sorted(set(self.pairs[:, 0] * self.pairs[:, 1])), dtype=np.float64)
        self.best: Evaluation | None = None
        self.batches = 0

    # ---------------------------------------------------------------- relaxation
    def _names(self) -> list[str]:
        attn = ["heads", "qkv"] if self.coupled else ["heads", "qk_dim"]
        per_layer = attn + (["v_dim"] if "v_dim" in self.values else []) + ["mlp"]
        return per_layer

    def _bounds(self, name: str) -> tuple[float, float]:
        v = self.values[name]
        return float(v.min()), float(v.max())

    def _to_logit(self, name: str, x: np.ndarray) -> np.ndarray:
        lo, hi = self._bounds(name)
        if hi == lo:
            return np.zeros_like(x, dtype=np.float64)
        p = np.clip((x - lo) / (hi - lo), 0.02, 0.98)
        return np.log(p / (1 - p))

    def _init(self, n: int, n_layers: int) -> dict[str, np.ndarray]:
        """Logits of ``n`` starts: random, and half near the best so far after the first batch."""
        shape = (n,) if self.uniform else (n, n_layers)
        u = {"hidden": self.rng.normal(0, 1.5, n)}
        for name in self._names():
            u[name] = self.rng.normal(0, 1.5, shape)
        if self.uniform:
            u["n_layers"] = self.rng.normal(0, 1.5, n)
        if self.best is not None:
            a, k = self.best.arch, n // 2
            dims = self._arch_dims(a)
            for name, x in dims.items():
                if name == "n_layers" and not self.uniform:
                    continue
                logit = self._to_logit(name, np.asarray(x, dtype=np.float64))
                if name == "hidden" or name == "n_layers" or self.uniform:
                    u[name][:k] = logit + self.rng.normal(0, 0.3, k)
                elif len(logit) >= n_layers:
                    u[name][:k] = logit[None, :n_layers] + self.rng.normal(0, 0.3, (k, n_layers))
        return u

    def _arch_dims(self, a: Arch) -> dict[str, Any]:
        layers = a.layers
        if self.uniform:
            s = layers[0]
            dims: dict[str, Any] = {"n_layers": a.n_layers, "heads": s.heads, "mlp": s.mlp}
            dims["qkv" if self.coupled else "qk_dim"] = s.qk_size if self.coupled else s.qk_dim
            if "v_dim" in self.values:
                dims["v_dim"] = s.v_dim
        else:
            dims = {
                "heads": [s.heads for s in layers],
                "mlp": [s.mlp for s in layers],
                ("qkv" if self.coupled else "qk_dim"): [s.qk_size if self.coupled else s.qk_dim for s in layers],
            }
            if "v_dim" in self.values:
                dims["v_dim"] = [s.v_dim for s in layers]
        dims["hidden"] = a.hidden
        return dims

    def _descend(self, u0: dict[str, np.ndarray], n_layers: int) -> dict[str, np.ndarray]:
        import torch

        from latbench.predictors.features import torch_arch_features

        cfg = self.config
        predictor = self.problem.latency.predictor
        constraint = self.problem.constraint
        log_bound = float(np.log(constraint.bound_ms))
        params = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in u0.items()}
        opt = torch.optim.Adam(list(params.values()), lr=cfg.lr)
        n = len(u0["hidden"])

        def dims_of(p: dict[str, Any]) -> dict[str, Any]:
            out = {}
            for name, logit in p.items():
                lo, hi = self._bounds(name)
                out[name] = lo + (hi - lo) * torch.sigmoid(logit)
            if self.coupled:
                out["qk_dim"] = out.pop("qkv") / out["heads"]
            out.setdefault("v_dim", out["qk_dim"])
            if not self.uniform:
                out["n_layers"] = torch.full((n,), float(n_layers), dtype=torch.float64)
            return out

        for _ in range(cfg.steps):
            d = dims_of(params)
            feats = torch_arch_features(
                predictor.features,
                d["hidden"],
                d["n_layers"],
                d["heads"],
                d["qk_dim"],
                d["v_dim"],
                d["mlp"],
                self.problem.latency.batch,
                self.problem.latency.seq_len,
            ).float()
            if constraint.margin:
                _, _, lat = predictor.torch_forward_interval(feats)
            else:
                lat = predictor.torch_forward(feats)
            quality = self.guide.torch_value(d["hidden"], d["n_layers"], d["heads"], d["qk_dim"], d["v_dim"], d["mlp"])  # type: ignore[attr-defined]
            excess = torch.relu(torch.log(lat.double()) - log_bound + cfg.slack)
            loss = (quality + cfg.penalty * excess**2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return {k: v.numpy() for k, v in dims_of(params).items()}

    # ---------------------------------------------------------------- projection
    def _project(self, d: dict[str, np.ndarray], i: int, n_layers: int) -> Arch:
        space = self.problem.space
        hidden = int(_nearest(self.values["hidden"], np.array([d["hidden"][i]]))[0])
        if self.uniform:
            n_layers = int(_nearest(self.values["n_layers"], np.array([d["n_layers"][i]]))[0])
            idx = [None]
        else:
            idx = list(range(n_layers))

        def layer(j: int | None) -> LayerSpec:
            def get(name: str) -> float:
                x = d[name][i]
                return float(x if j is None else x[j])

            h, qk = get("heads"), get("qk_dim")
            if self.coupled:
                qkv = h * qk
                ph, pq = self.pairs[:, 0], self.pairs[:, 0] * self.pairs[:, 1]
                dist = ((ph - h) / max(1.0, np.ptp(ph))) ** 2 + ((pq - qkv) / max(1.0, np.ptp(pq))) ** 2
                hh, dd = self.pairs[int(np.argmin(dist))]
            else:
                hh = _nearest(self.values["heads"], np.array([h]))[0]
                dd = _nearest(self.values["qk_dim"], np.array([qk]))[0]
            vv = dd if "v_dim" not in self.values else _nearest(self.values["v_dim"], np.array([get("v_dim")]))[0]
            mm = _nearest(self.values["mlp"], np.array([get("mlp")]))[0]
            return LayerSpec(int(hh), int(dd), int(vv), int(mm))

        layers = [layer(j) for j in idx] * (n_layers if self.uniform else 1)
        return Arch(family=space.family, hidden=hidden, layers=tuple(layers), **dict(space.extras))

    def _smaller(self, a: Arch) -> list[Arch]:
        """Neighbours one step down in a single dimension (all layers at once in uniform spaces)."""
        space = self.problem.space
        out: list[Arch] = []

        def down(domain: IntDomain, x: int) -> int | None:
            vals = [v for v in domain.values() if v < x]
            return max(vals) if vals else None

        h = down(space.hidden, a.hidden)
        if h is not None:
            out.append(a.with_hidden(h))
        if a.n_layers > space.n_layers.min:
            out.append(a.with_layers(a.layers[: a.n_layers - 1]))
        positions = [None] if self.uniform else list(range(a.n_layers))
        pairs = sorted(space.attention_choices(), key=lambda p: (p[0] * p[1], p[0]))
        for j in positions:
            s = a.layers[0 if j is None else j]
            changes: list[LayerSpec] = []
            m = down(space.mlp, s.mlp)
            if m is not None:
                changes.append(LayerSpec(s.heads, s.qk_dim, s.v_dim, m))
            smaller_pairs = [p for p in pairs if p[0] * p[1] < s.qk_size]
            if smaller_pairs:
                hh, dd = smaller_pairs[-1]
                changes.append(LayerSpec(hh, dd, dd if space.v_dim is None else s.v_dim, s.mlp))
            if space.v_dim is not None:
                v = down(space.v_dim, s.v_dim)
                if v is not None:
                    changes.append(LayerSpec(s.heads, s.qk_dim, v, s.mlp))
            for c in changes:
                layers = [c] * a.n_layers if j is None else [*a.layers[:j], c, *a.layers[j + 1 :]]
                out.append(a.with_layers(layers))
        return [x for x in out if space.contains(x)]

    def _repair(self, a: Arch) -> Arch | None:
        problem = self.problem
        for _ in range(self.config.max_repairs):
            if problem.feasible([a])[0]:
                return a
            options = self._smaller(a)
            if not options:
                return None
            p = problem.latency(options)
            q = self.guide(options)
            ok = problem.constraint.feasible(p.ms, p.low_ms, p.high_ms)
            if ok.any():
                return options[int(np.argmin(np.where(ok, q, np.inf)))]
            # None fits yet: take the step that buys the most latency per unit of quality lost.
            cur_ms = problem.latency([a]).ms[0]
            cur_q = self.guide([a])[0]
            gain = np.maximum(cur_ms - p.ms, 1e-12) / np.maximum(q - cur_q, 1e-12)
            a = options[int(np.argmax(gain))]
        return a if problem.feasible([a])[0] else None

    # ---------------------------------------------------------------- ask/tell
    def ask(self) -> list[Arch]:
        space = self.problem.space
        n_layers = space.n_layers.max if self.uniform else int(space.n_layers.sample(self.rng))
        u0 = self._init(self.config.starts, n_layers)
        d = self._descend(u0, n_layers)
        out: dict[str, Arch] = {}
        for i in range(self.config.starts):
            a = self._repair(self._project(d, i, n_layers))
            if a is not None:
                out.setdefault(a.to_json(), a)
        self.batches += 1
        return list(out.values())

    def tell(self, evaluations: Sequence[Evaluation]) -> None:
        for e in evaluations:
            if e.feasible and (self.best is None or e.quality < self.best.quality):
                self.best = e
