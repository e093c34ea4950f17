"""Drive a searcher, pick the best, and write ``result.json``, ``history.parquet`` and the Pareto front.

The driver counts an evaluation each time an architecture's quality is computed for the
first time (an architecture proposed twice is told its earlier result and costs nothing),
stops at the budget, or when the searcher has nothing new to propose.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latbench.errors import LatbenchError
from latbench.search.base import Evaluation, LatencyOracle, SearchProblem, create_searcher, get_searcher_class
from latbench.search.constraint import LatencyConstraint, Reference
from latbench.search.pareto import hypervolume_2d, pareto_front
from latbench.search.quality import QualityObjective
from latbench.space import Arch, SearchSpace

RESULT_FORMAT = "latbench-search-result"
RESULT_SCHEMA_VERSION = 1
#: Asks in a row that bring nothing new before the driver stops a searcher.
MAX_STALE_ASKS = 25


@dataclass
class MeasuredChoice:
    """The result of measuring a search's candidates on the target, interleaved with the reference."""

    reference_ms: float
    target_ms: float
    bound_ms: float
    floor_ms: float
    rows: list[dict[str, Any]]
    chosen: int | None
    deploy_key: str
    #: The fraction a candidate's measurement must stay under the bound by to count as meeting it.
    margin: float = 0.0

    @property
    def limit_ms(self) -> float:
        """What a candidate's measured latency is held to: the bound less the margin."""
        return self.bound_ms * (1.0 - self.margin)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_ms": self.reference_ms,
            "target_ms": self.target_ms,
            "bound_ms": self.bound_ms,
            "margin": self.margin,
            "limit_ms": self.limit_ms,
            "deploy_key": self.deploy_key,
            "chosen": self.chosen,
            "candidates": self.rows,
        }


@dataclass
class SearchOutcome:
    """What a search did: every evaluation in order, the best, and (multi-objective) the front."""

    method: str
    seed: int
    config: dict[str, Any]
    budget: int
    history: list[Evaluation]
    asks: list[int]
    best: Evaluation
    front: list[Evaluation] = field(default_factory=list)
    wall_s: float = 0.0
    stopped: str = "budget"
    measured: MeasuredChoice | None = None

    def top(self, k: int) -> list[Evaluation]:
        """The ``k`` best feasible evaluations by quality (then latency)."""
        feasible = [e for e in self.history if e.feasible]
        return sorted(feasible, key=lambda e: (e.quality, e.latency_ms))[:k]


def evaluate(problem: SearchProblem, archs: Sequence[Arch]) -> list[Evaluation]:
    """Predicted latency and quality of ``archs`` (one predictor call, one quality call)."""
    if not archs:
        return []
    p = problem.latency(archs)
    q = problem.quality(archs)
    c = problem.constraint
    ok = c.feasible(p.ms, p.low_ms, p.high_ms)
    viol = c.violation(p.ms, p.low_ms, p.high_ms)
    return [
        Evaluation(a, float(p.ms[i]), float(p.low_ms[i]), float(p.high_ms[i]), float(q[i]), bool(ok[i]), float(viol[i]))
        for i, a in enumerate(archs)
    ]


def fastest_predicted(problem: SearchProblem, samples: int = 4096, seed: int = 0) -> tuple[Arch, float]:
    """The space's fastest member the predictor knows of (its smallest member and a sample): arch, ms.

    The ms is the one the constraint judges (the interval's upper end with a safety margin).
    """
    space = problem.space
    archs = [space.min_arch(), *space.sample(np.random.default_rng(seed), n=samples)]  # type: ignore[misc]
    p = problem.latency(archs)
    ms = p.high_ms if problem.constraint.margin else p.ms
    i = int(np.argmin(ms))
    return archs[i], float(ms[i])


def check_reachable(problem: SearchProblem, seed: int = 0) -> None:
    """Refuse a bound under the fastest member, naming the largest reachable speed-up."""
    c = problem.constraint
    arch, ms = fastest_predicted(problem, seed=seed)
    if ms <= c.bound_ms:
        return
    if c.speedup is not None and c.reference_ms is not None:
        reachable = c.reference_ms / ms
        if c.high != 1.0:
            reachable *= c.high
        raise LatbenchError(
            "--latency-constraint",
            f"{c.speedup:g}x is not reachable in space {problem.space.name!r}: its fastest member "
            f"({arch.describe()}) is predicted at {ms:.4g} ms against the reference's {c.reference_ms:.4g} ms; "
            f"the largest reachable speed-up is {reachable:.3g}x",
        )
    raise LatbenchError(
        "--latency-ms",
        f"{c.target_ms:.4g} ms is not reachable in space {problem.space.name!r}: its fastest member "
        f"({arch.describe()}) is predicted at {ms:.4g} ms",
    )


def run_search(
    problem: SearchProblem,
    method: str,
    *,
    budget: int = 1000,
    seed: int = 0,
    config: Mapping[str, Any] | None = None,
    on_progress: Callable[[int, int, Evaluation | None], None] | None = None,
) -> SearchOutcome:
    """Run searcher ``method`` on ``problem`` for ``budget`` evaluations (same seed, same result)."""
    if budget < 1:
        raise LatbenchError("--budget", f"must be >= 1, got {budget}")
    searcher = create_searcher(method, problem, config, seed)
    t0 = time.perf_counter()
    seen: dict[str, Evaluation] = {}
    history: list[Evaluation] = []
    asks: list[int] = []
    best: Evaluation | None = None
    stale = 0
    stopped = "budget"
    n_ask = 0
    if on_progress:
        on_progress(0, budget, None)
    while len(history) < budget:
        proposed = searcher.ask()
        if not proposed:
            stopped = "exhausted"
            break
        fresh = list({a.to_json(): a for a in proposed if a.to_json() not in seen}.values())
        fresh = fresh[: budget - len(history)]
        new = evaluate(problem, fresh)
        for e in new:
            seen[e.arch.to_json()] = e
            history.append(e)
            asks.append(n_ask)
            if e.feasible and (best is None or (e.quality, e.latency_ms) < (best.quality, best.latency_ms)):
                best = e
        n_ask += 1
        stale = 0 if new else stale + 1
        if stale >= MAX_STALE_ASKS:
            stopped = "converged"
            break
        searcher.tell([seen[a.to_json()] for a in proposed if a.to_json() in seen])
        if on_progress:
            on_progress(len(history), budget, best)
    if best is None:
        raise LatbenchError(
            "search", f"{method} evaluated {len(history)} architectures and none meets {problem.constraint.describe()}"
        )
    cfg = searcher.config.to_dict()  # type: ignore[attr-defined]
    outcome = SearchOutcome(method, seed, cfg, budget, history, asks, best, stopped=stopped)
    outcome.front = front_of(history)
    outcome.wall_s = time.perf_counter() - t0
    return outcome


def front_of(history: Sequence[Evaluation]) -> list[Evaluation]:
    """The Pareto front (latency, quality) of the feasible evaluations, fastest first."""
    feasible = [e for e in history if e.feasible]
    if not feasible:
        return []
    pts = np.array([(e.latency_ms, e.quality) for e in feasible])
    return [feasible[i] for i in pareto_front(pts)]


def hypervolume(history: Sequence[Evaluation], reference: tuple[float, float]) -> float:
    """Hypervolume of the feasible front against ``(latency_ms, quality)`` reference point."""
    pts = np.array([(e.latency_ms, e.quality) for e in history if e.feasible]).reshape(-1, 2)
    return hypervolume_2d(pts, reference)


def default_window(method: str) -> tuple[float, float]:
    """The window a method uses when none is given: AutoTinyBERT's for ``candidate``/``fast``, else ``[0, 1]``."""
    return getattr(get_searcher_class(method), "default_window", (0.0, 1.0))


def measurement_candidates(outcome: SearchOutcome, problem: SearchProblem, k: int) -> list[Evaluation]:
    """``k`` candidates to measure: the best by quality in ``k`` bins of predicted latency under the bound.

    Spread over ``[0.8, 1] x`` the bound (the window's, with one), so that whichever way the
    predictor errs, some candidate lands on the right side of the measured bound.
    """
    feasible = [e for e in outcome.history if e.feasible]
    c = problem.constraint
    lo = max(c.floor_ms, 0.8 * c.bound_ms)
    edges = np.linspace(lo, c.bound_ms, k + 1)
    picked: list[Evaluation] = [outcome.best]
    for i in range(k):
        inside = [e for e in feasible if edges[i] <= e.latency_ms <= edges[i + 1]]
        if inside:
            picked.append(min(inside, key=lambda e: (e.quality, e.latency_ms)))
    for e in sorted(feasible, key=lambda e: (e.quality, e.latency_ms)):  # fill up with the next best
        if len({x.arch.to_json() for x in picked}) >= k:
            break
        picked.append(e)
    return list({e.arch.to_json(): e for e in picked}.values())[:k]


def check_measure_margin(margin: float) -> None:
    """``--measure-margin`` is a fraction in [0, 0.5)."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 <= margin < 0.5:
        raise LatbenchError("--measure-margin", f"expected a fraction in [0, 0.5) such as 0.03, got {margin!r}")


def choose_by_measurement(
    outcome: SearchOutcome,
    problem: SearchProblem,
    deploy: Any,
    protocol: Any,
    k: int = 8,
    *,
    seed: int = 0,
    keep: str | Path | None = None,
    on_progress: Callable[[int, int, dict[str, Any] | None], None] | None = None,
    margin: float = 0.0,
) -> MeasuredChoice:
    """Measure ``k`` candidates and the reference in one interleaved run; the best that meets the
    constraint *as measured* becomes ``outcome.best`` (the predicted best stays when none does).

    Candidates whose whole CI lies under the bound come first; only when none does is a candidate
    whose median alone meets it taken.

    The best of several candidates measured near the bound is the one whose noise fell lowest, so a
    later measurement tends to land higher (the winner's curse). ``margin`` leaves room for that: a
    candidate meets the constraint only ``margin`` (a fraction) under the bound. The CI of a median
    covers the noise within one run, not the machine's drift between runs (``benchmarks/RESULTS.md``,
    noise-cpu: 1.3-2.5% on a shared CPU).
    """
    from latbench.search.measure import measure_models

    if k < 1:
        raise LatbenchError("--measure-top", f"must be >= 1, got {k}")
    check_measure_margin(margin)
    cands = measurement_candidates(outcome, problem, k)
    ref = problem.space.reference
    assert ref is not None
    rows = measure_models(
        [ref, *(e.arch for e in cands)],
        problem.space.name,
        deploy,
        protocol,
        keep=keep,
        seed=seed,
        on_progress=on_progress,
    )
    choice = pick_by_measurement(cands, rows[0], rows[1:], problem.constraint, deploy.key(), margin)
    outcome.measured = choice
    if choice.chosen is not None:
        outcome.best = cands[choice.chosen]
    return choice


def pick_by_measurement(
    cands: Sequence[Evaluation],
    ref_row: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    constraint: LatencyConstraint,
    deploy_key: str,
    margin: float = 0.0,
) -> MeasuredChoice:
    """The choice :func:`choose_by_measurement` makes from measured rows (the reference's and one per candidate).

    The best quality among the candidates whose whole CI lies ``margin`` under the bound; when none
    does, among those whose median alone does; ``chosen`` is ``None`` when no candidate meets it.
    """
    check_measure_margin(margin)
    c = constraint
    ref_ms = float(ref_row["median_ms"])
    target = ref_ms / c.speedup if c.speedup is not None else c.target_ms
    bound, floor = c.high * target, c.low * target
    limit = bound * (1.0 - margin)
    out_rows = []
    for e, row in zip(cands, rows, strict=True):
        ms, hi = float(row["median_ms"]), float(row["ci_high_ms"])
        out_rows.append(
            {
                "arch_json": e.arch.to_json(),
                "describe": e.arch.describe(),
                "predicted_ms": e.latency_ms,
                "measured_ms": ms,
                "measured_ci_high_ms": hi,
                "measured_speedup": ref_ms / ms,
                "quality": e.quality,
                "meets_constraint": floor <= ms <= limit,
                # its whole CI under the bound: a re-measurement is less likely to land over it
                "confidently_meets": floor <= ms and hi <= limit,
                "unstable": bool(row["unstable"]),
            }
        )
    chosen: int | None = None
    for key in ("confidently_meets", "meets_constraint"):
        ok = [i for i, r in enumerate(out_rows) if r[key]]
        if ok:
            chosen = min(ok, key=lambda i: (cands[i].quality, out_rows[i]["measured_ms"]))
            break
    return MeasuredChoice(ref_ms, target, bound, floor, out_rows, chosen, deploy_key, margin)


# ------------------------------------------------------------------------------ setup
def predicted_reference(space: SearchSpace, oracle: LatencyOracle) -> Reference:
    ref = space.reference
    assert ref is not None
    p = oracle([ref])
    return Reference(ref.to_json(), float(p.ms[0]), "predicted", float(p.low_ms[0]), float(p.high_ms[0]))


def measured_reference(
    space: SearchSpace, deploy: Any, protocol: Any, keep: str | Path | None = None, seed: int = 0
) -> Reference:
    """Measure the space's reference on the target with the profiling protocol."""
    from latbench.search.measure import measure_models

    ref = space.reference
    assert ref is not None
    (row,) = measure_models([ref], space.name, deploy, protocol, keep=keep, seed=seed)
    return Reference(
        ref.to_json(),
        float(row["median_ms"]),
        "measured",
        float(row["ci_low_ms"]),
        float(row["ci_high_ms"]),
        deploy_key=deploy.key(),
    )


def deploy_validity(deploy: Any, family: str) -> Any:
    """The :class:`~latbench.predictors.data.Validity` of measurements taken with ``deploy`` on this machine."""
    from latbench.lut.build import hardware_name
    from latbench.predictors.data import Validity, deployment_of

    workload = {"batch": [deploy.batch, deploy.batch]}
    if deploy.seq_len is not None:
        workload["seq_len"] = [deploy.seq_len, deploy.seq_len]
    return Validity(
        source="latbench-store",
        device=hardware_name(deploy.device),
        deploy=deployment_of(deploy.key(), {}),
        workload=workload,
        family=family,
    )


def typical_interval_ratio(space: SearchSpace, oracle: LatencyOracle, samples: int = 2000, seed: int = 0) -> float:
    """The median ratio of the predictor's upper interval end to its point over a sample of the space."""
    archs = space.sample(np.random.default_rng(seed), n=samples)
    p = oracle.predictor.predict_archs(archs, batch=oracle.batch, seq_len=oracle.seq_len)  # type: ignore[arg-type]
    return float(max(1.0, np.median(p.high_ms / p.ms)))


def make_problem(
    space: SearchSpace,
    predictor: Any,
    quality: QualityObjective,
    reference: Reference | None,
    *,
    speedup: float | None = None,
    latency_ms: float | None = None,
    window: tuple[float, float] = (0.0, 1.0),
    margin: bool = False,
    batch: int = 1,
    seq_len: int | None = None,
) -> tuple[SearchProblem, Reference]:
    """The problem of a search: the oracle, the constraint (with the reference), the objective.

    Exactly one of ``speedup`` and ``latency_ms``. Without ``reference``, the predictor predicts it.
    """
    if (speedup is None) == (latency_ms is None):
        raise LatbenchError("--latency-constraint", "give exactly one of --latency-constraint X and --latency-ms MS")
    if space.family == "vit":
        seq_len = None
    elif seq_len is None:
        raise LatbenchError("--seq", f"family {space.family!r} needs a sequence length")
    oracle = LatencyOracle(predictor, batch=batch, seq_len=seq_len)
    if reference is None:
        reference = predicted_reference(space, oracle)
    low, high = window
    floor = typical_interval_ratio(space, oracle) if margin else 1.0
    if speedup is not None:
        constraint = LatencyConstraint.speedup_over(
            reference.latency_ms, speedup, low=low, high=high, margin=margin, margin_floor=floor
        )
    else:
        assert latency_ms is not None
        constraint = LatencyConstraint(
            target_ms=latency_ms,
            reference_ms=reference.latency_ms,
            low=low,
            high=high,
            margin=margin,
            margin_floor=floor,
        )
    return SearchProblem(space, oracle, constraint, quality), reference


# ------------------------------------------------------------------------------ output
def _arch_entry(e: Evaluation, reference_ms: float | None) -> dict[str, Any]:
    from latbench.space.formats import to_autotinybert

    try:
        autotinybert: str | None = to_autotinybert(e.arch) if e.arch.family == "bert" else None
    except LatbenchError:
        autotinybert = None
    return {
        "arch": e.arch.to_dict(),
        "arch_json": e.arch.to_json(),
        "autotinybert": autotinybert,
        "describe": e.arch.describe(),
        "predicted_ms": e.latency_ms,
        "predicted_low_ms": e.low_ms,
        "predicted_high_ms": e.high_ms,
        "predicted_speedup": (reference_ms / e.latency_ms) if reference_ms else None,
        "quality": e.quality,
        "feasible": e.feasible,
    }


def result_document(
    outcome: SearchOutcome,
    problem: SearchProblem,
    reference: Reference,
    *,
    predictor_path: str | None = None,
    deploy_key: str | None = None,
    command: str | None = None,
    top_k: int = 5,
) -> dict[str, Any]:
    from latbench import __version__

    pred = problem.latency.predictor
    validity = pred.validity.to_dict() if pred.validity is not None else None
    return {
        "format": RESULT_FORMAT,
        "schema_version": RESULT_SCHEMA_VERSION,
        "method": outcome.method,
        "seed": outcome.seed,
        "config": outcome.config,
        "budget": outcome.budget,
        "evaluations": len(outcome.history),
        "stopped": outcome.stopped,
        "wall_s": outcome.wall_s,
        "space": problem.space.name,
        "family": problem.space.family,
        "workload": {"batch": problem.latency.batch, "seq_len": problem.latency.seq_len},
        "deploy_key": deploy_key,
        "predictor": {
            "path": predictor_path,
            "model": pred.name,
            "statistic": pred.statistic,
            "validity": validity,
        },
        "quality": {"objective": problem.quality.spec(), "description": problem.quality.describe()},
        "reference": reference.to_dict(),
        "constraint": problem.constraint.to_dict(),
        "constraint_text": problem.constraint.describe(),
        "best": _arch_entry(outcome.best, reference.latency_ms),
        "top": [_arch_entry(e, reference.latency_ms) for e in outcome.top(top_k)],
        "selected_by": "prediction" if outcome.measured is None or outcome.measured.chosen is None else "measurement",
        "measured": None if outcome.measured is None else outcome.measured.to_dict(),
        "latbench_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }


def history_frame(outcome: SearchOutcome, reference_ms: float | None) -> Any:
    import pandas as pd

    front = {e.arch.to_json() for e in outcome.front}
    rows = []
    for i, (e, ask) in enumerate(zip(outcome.history, outcome.asks)):
        rows.append(
            {
                "evaluation": i,
                "ask": ask,
                "arch": e.arch.to_json(),
                "describe": e.arch.describe(),
                "predicted_ms": e.latency_ms,
                "predicted_low_ms": e.low_ms,
                "predicted_high_ms": e.high_ms,
                "predicted_speedup": (reference_ms / e.latency_ms) if reference_ms else math.nan,
                "quality": e.quality,
                "feasible": e.feasible,
                "violation": e.violation,
                "on_front": e.arch.to_json() in front,
            }
        )
    return pd.DataFrame(rows)


def pareto_document(outcome: SearchOutcome, problem: SearchProblem, reference: Reference) -> dict[str, Any]:
    c = problem.constraint
    worst_q = max(e.quality for e in outcome.history)
    hv_ref = (c.bound_ms, worst_q)
    return {
        "format": "latbench-pareto",
        "schema_version": 1,
        "objectives": ["predicted_ms (min)", "quality (min)"],
        "hypervolume": hypervolume(outcome.history, hv_ref),
        "hypervolume_reference": list(hv_ref),
        "front": [_arch_entry(e, reference.latency_ms) for e in outcome.front],
    }


def plot_pareto(outcome: SearchOutcome, problem: SearchProblem, path: Path, title: str) -> bool:
    """``pareto.png`` (the ``plot`` extra); False when matplotlib is missing."""
    from latbench.predictors.plot import have_matplotlib

    if not have_matplotlib():
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from latbench.io import atomic_write

    lat = np.array([e.latency_ms for e in outcome.history])
    q = np.array([e.quality for e in outcome.history])
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    ax.scatter(lat, q, s=8, c="0.7", label=f"evaluated ({len(lat)})")
    f_lat = [e.latency_ms for e in outcome.front]
    f_q = [e.quality for e in outcome.front]
    ax.step(f_lat, f_q, where="post", c="C0", lw=1.5)
    ax.scatter(f_lat, f_q, s=18, c="C0", label=f"Pareto front ({len(f_lat)})")
    ax.scatter([outcome.best.latency_ms], [outcome.best.quality], marker="*", s=160, c="C3", label="best", zorder=5)
    ax.axvline(problem.constraint.bound_ms, c="C3", ls="--", lw=1, label=f"bound {problem.constraint.bound_ms:.3g} ms")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel(f"quality: {problem.quality.spec()} (lower is better)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return True


def write_outputs(
    out_dir: str | Path,
    outcome: SearchOutcome,
    problem: SearchProblem,
    reference: Reference,
    **kwargs: Any,
) -> list[Path]:
    """Write ``history.parquet``, ``pareto.json`` (+ ``pareto.png``) for nsga2, and ``result.json`` last."""
    from latbench.io import atomic_write, atomic_write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    frame = history_frame(outcome, reference.latency_ms)
    written.append(atomic_write(out / "history.parquet", lambda p: frame.to_parquet(p, index=False)))
    if outcome.method == "nsga2":
        written.append(atomic_write_json(out / "pareto.json", pareto_document(outcome, problem, reference)))
        title = f"nsga2 on {problem.space.name}: {problem.constraint.describe()}"
        if plot_pareto(outcome, problem, out / "pareto.png", title):
            written.append(out / "pareto.png")
    doc = result_document(outcome, problem, reference, **kwargs)
    written.append(atomic_write_json(out / "result.json", doc))
    return written


def read_result(search_dir: str | Path) -> dict[str, Any]:
    """``DIR/result.json`` of a search, validated."""
    from latbench.io import read_json

    path = Path(search_dir) / "result.json"
    if not Path(search_dir).is_dir():
        raise LatbenchError("--search", f"{search_dir}: no such directory")
    if not path.is_file():
        raise LatbenchError(
            "--search", f"{search_dir}: no result.json (not a search directory, or the search did not finish)"
        )
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != RESULT_FORMAT:
        raise LatbenchError(str(path), f'not a search result (no "format": "{RESULT_FORMAT}")')
    version = doc.get("schema_version")
    if not isinstance(version, int) or not 1 <= version <= RESULT_SCHEMA_VERSION:
        raise LatbenchError(
            str(path), f"unsupported schema_version {version!r} (this latbench reads {RESULT_SCHEMA_VERSION})"
        )
    for key in ("best", "reference", "constraint", "space", "workload"):
        if key not in doc:
            raise LatbenchError(str(path), f"missing key {key!r}")
    try:
        Arch.from_json(doc["best"]["arch_json"], where=f"{path}: best")
        Reference.from_dict(doc["reference"])
        LatencyConstraint.from_dict(doc["constraint"])
    except (KeyError, TypeError) as exc:
        raise LatbenchError(str(path), f"malformed: {exc}") from None
    return doc
