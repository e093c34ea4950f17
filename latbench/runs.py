"""The ``runs/`` folder: where the commands put what they make when no ``--out`` is given, and what is there.

Layout (every name below ``runs/`` is chosen by the command that writes it; any of them may
also sit one folder deeper, as ``runs/quickstart/...``):

- ``runs/<space>_<device>_<backend>-<mode>-<precision>[-t<threads>]_b<batch>[_s<seq>].parquet``:
  result stores of ``latbench profile`` (named by :func:`store_path`);
- ``runs/<store name>_<model>/``: predictors ``latbench train-predictor`` trained on that store
  (:func:`predictor_path`), with their ``card.json``;
- ``runs/search_NNN/``: ``latbench search`` results (``result.json``, ``history.parquet``,
  ``validate.json``), a fresh number each time (:func:`fresh_dir`);
- ``runs/<name>/``: ``latbench prune --out runs/<name>`` jobs (``job.json``, ``prune_report.json`` ...);
- ``runs/*.json``: look-up tables (``latbench build-lut``).

:func:`list_runs` finds them by content, not by name (a store is a parquet file with the
store's schema metadata, a predictor a folder with ``card.json`` ...), each with its key
figure; :func:`latest` gives the most recent of a kind, which is what the commands take
when ``--data`` or ``--predictor`` is not given.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latbench.errors import LatbenchError

#: The folder the commands write to and read from by default (relative to the working directory).
RUNS_DIR = Path("runs")

#: Architectures ``latbench profile`` samples by default, per device type. On this project's
#: 2-core CPU (Intel Xeon VM) ``latbench profile --device cpu`` as typed, 30 architectures at seq 128
#: with their blocks, one pinned thread, 10 rounds of 10 calls, took 4.5 minutes: enough for a first predictor
#: (``train-predictor`` warns below 20 training architectures; 30 give 24). On a GPU (CUDA-graph
#: replay) a model's timing is short and steady; 150 are estimated at about 5 minutes (not yet
#: timed on a GPU: no GPU was lent to the session that chose it).
DEFAULT_SAMPLES: dict[str, int] = {"cpu": 30, "cuda": 150}

#: For tests and quick trials only: replaces :data:`DEFAULT_SAMPLES` when set (an integer >= 1).
SAMPLES_ENV = "LATBENCH_DEFAULT_SAMPLES"

#: The sequence length of the text families when none is given.
DEFAULT_SEQ = 128

#: Kinds :func:`list_runs` knows, in the order it lists them.
KINDS: tuple[str, ...] = ("store", "predictor", "lut", "search", "prune")


def default_samples(device: str) -> int:
    """How many architectures ``profile`` samples on ``device`` (``cpu``, ``cuda:N``) by default."""
    text = os.environ.get(SAMPLES_ENV)
    if text:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise LatbenchError(SAMPLES_ENV, f"must be an integer >= 1, got {text!r}")
        return n
    return DEFAULT_SAMPLES["cpu" if device == "cpu" else "cuda"]


def default_seq(family: str, max_seq_len: int | None = None) -> int | None:
    """The sequence length a family is profiled at by default (``None``: images take theirs).

    :data:`DEFAULT_SEQ`, or a space's ``max_seq_len`` when that is shorter.
    """
    if family == "vit":
        return None
    return DEFAULT_SEQ if max_seq_len is None else min(DEFAULT_SEQ, max_seq_len)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "x"


def store_path(
    space: str,
    deploy: Any,
    runs: str | os.PathLike[str] = RUNS_DIR,
    workloads: Sequence[tuple[int, int | None]] | None = None,
) -> Path:
    """Where ``profile`` writes a store of ``space`` measured with ``deploy`` (a :class:`DeployConfig`).

    Named after the space, the device and the deployment, e.g.
    ``runs/bert_cpu_torch-eager-fp32-t1_b1_s128.parquet``; backend options add ``-key=value``;
    a design over several ``workloads`` is named by their ranges (``_b1-32_s64-512``).
    """
    device = deploy.device.replace(":", "")
    dep = [deploy.backend, deploy.mode, deploy.precision]
    if deploy.threads is not None:
        dep.append(f"t{deploy.threads}")
    if deploy.cache != "warm":
        dep.append(deploy.cache)
    dep += [f"{k.partition('.')[2]}={v}" for k, v in deploy.options]
    work = f"b{deploy.batch}" + ("" if deploy.seq_len is None else f"_s{deploy.seq_len}")
    if workloads and len(set(workloads)) > 1:

        def span(values: list[int]) -> str:
            return str(values[0]) if values[0] == values[-1] else f"{values[0]}-{values[-1]}"

        bs = sorted({b for b, _ in workloads})
        ss = sorted({s for _, s in workloads if s is not None})
        work = f"b{span(bs)}" + (f"_s{span(ss)}" if ss else "")
    name = f"{_slug(Path(space).stem)}_{device}_{'-'.join(_slug(str(p)) for p in dep)}_{work}.parquet"
    return Path(runs) / name


def predictor_path(data: str | os.PathLike[str], model: str) -> Path:
    """Where ``train-predictor`` writes a ``model`` predictor of ``data`` by default: beside it."""
    p = Path(data)
    return p.with_name(f"{p.stem}_{model}")


def fresh_dir(kind: str, runs: str | os.PathLike[str] = RUNS_DIR) -> Path:
    """``runs/<kind>_NNN``, one more than the highest number there (not created)."""
    root = Path(runs)
    taken = [int(m.group(1)) for p in _children(root) if (m := re.fullmatch(rf"{kind}_(\d+)", p.name))]
    return root / f"{kind}_{max(taken, default=0) + 1:03d}"


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


# ------------------------------------------------------------------------------ finding runs


@dataclass(frozen=True)
class RunEntry:
    """One thing under ``runs/``: its kind, path, modification time and key figure (one line)."""

    kind: str
    path: Path
    mtime: float
    figure: str


def _kind_of(path: Path) -> str | None:
    if path.is_dir():
        for marker, kind in (
            ("card.json", "predictor"),
            ("result.json", "search"),
            ("prune_report.json", "prune"),
            ("job.json", "prune"),
        ):
            if (path / marker).is_file():
                return kind
        return None
    if path.suffix == ".parquet" and _is_store(path):
        return "store"
    if path.suffix == ".json" and _is_lut(path):
        return "lut"
    return None


def _is_store(path: Path) -> bool:
    import pyarrow.parquet as pq

    from latbench.profiling.store import META_SCHEMA

    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception:  # an unreadable file is simply not a store
        return False
    return META_SCHEMA in meta


def _is_lut(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            head = f.read(200)
    except OSError:
        return False
    return '"latbench-lut"' in head


def _walk(folder: Path, depth: int) -> Iterator[tuple[str, Path]]:
    for child in _children(folder):
        if child.name.startswith("."):
            continue
        kind = _kind_of(child)
        if kind is not None:
            yield kind, child
        elif child.is_dir() and depth > 1:
            yield from _walk(child, depth - 1)


def _mtime(kind: str, path: Path) -> float:
    marker = {"predictor": "card.json", "search": "result.json", "prune": "prune_report.json"}.get(kind)
    target = path / marker if marker is not None and (path / marker).exists() else path
    try:
        return target.stat().st_mtime
    except OSError:
        return 0.0


def find_runs(runs: str | os.PathLike[str] = RUNS_DIR, kind: str | None = None) -> list[tuple[str, Path, float]]:
    """``(kind, path, mtime)`` of everything under ``runs`` (two folders deep), oldest first."""
    found = [(k, p, _mtime(k, p)) for k, p in _walk(Path(runs), depth=3) if kind is None or k == kind]
    return sorted(found, key=lambda t: (t[2], str(t[1])))


def latest(
    kind: str, runs: str | os.PathLike[str] = RUNS_DIR, accept: Callable[[Path], bool] | None = None
) -> Path | None:
    """The most recent ``kind`` (``store``, ``predictor`` ...) under ``runs`` that ``accept`` takes, or None."""
    for _, path, _ in reversed(find_runs(runs, kind)):
        if accept is None or accept(path):
            return path
    return None


def is_latest(kind: str, path: str | os.PathLike[str], runs: str | os.PathLike[str] = RUNS_DIR) -> bool:
    """Whether ``path`` is what :func:`latest` gives for ``kind`` (what a command takes by default)."""
    found = latest(kind, runs)
    return found is not None and found.resolve() == Path(path).resolve()


def latest_store(runs: str | os.PathLike[str] = RUNS_DIR) -> Path:
    """The most recent result store under ``runs``; a one-line error saying what to run when there is none."""
    path = latest("store", runs)
    if path is None:
        raise LatbenchError(
            "--data", f"no result store under {Path(runs)}/ (run `latbench profile --device cpu` first, or give --data)"
        )
    return path


def list_runs(runs: str | os.PathLike[str] = RUNS_DIR) -> list[RunEntry]:
    """Everything under ``runs`` by kind (:data:`KINDS`), oldest first in each, with its key figure."""
    found = find_runs(runs)
    entries = [RunEntry(k, p, t, key_figure(k, p)) for k, p, t in found]
    return sorted(entries, key=lambda e: (KINDS.index(e.kind), e.mtime, str(e.path)))


def key_figure(kind: str, path: Path) -> str:
    """One line saying what ``path`` holds; a file that cannot be read says why, instead of failing."""
    try:
        return _FIGURES[kind](path)
    except (LatbenchError, OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable: {' '.join(str(exc).split())}"


def _store_figure(path: Path) -> str:
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["arch", "scope", "deploy_key", "unstable"]).to_pandas()
    models = int((t.scope == "model").sum())
    deploys = sorted(set(t.deploy_key))
    dep = deploys[0] if len(deploys) == 1 else f"{len(deploys)} deployments"
    return (
        f"{len(t)} rows ({models} models, {len(t) - models} blocks) over {t.arch.nunique()} architectures, "
        f"{int(t.unstable.sum())} unstable; {dep}"
    )


def _predictor_figure(path: Path) -> str:
    from latbench.predictors.card import ModelCard

    card = ModelCard.load(path / "card.json")
    test = card.metrics_of("test")
    acc = (
        "no test split"
        if test is None
        else f"test MAPE {test.mape:.2f}% (n {test.n}), Kendall τ {test.kendall_tau:.3f}"
    )
    return f"{card.model}, {acc}; {card.validity_obj().describe()}"


def _search_figure(path: Path) -> str:
    from latbench.io import read_json

    doc = read_json(path / "result.json")
    best, ref, c = doc["best"], doc["reference"], doc["constraint"]
    asked = f"{c['speedup']:g}x" if c.get("speedup") is not None else f"{c['target_ms']:.4g} ms"
    text = (
        f"{asked}: predicted {best['predicted_ms']:.4g} ms, "
        f"{ref['latency_ms'] / best['predicted_ms']:.3g}x over {ref['latency_ms']:.4g} ms ({ref['source']})"
    )
    if (path / "validate.json").is_file():
        v = read_json(path / "validate.json")["best"]
        text += f"; measured {v['measured_speedup']:.3g}x, " + ("holds" if v["constraint_holds"] else "VIOLATED")
    return text


def _prune_figure(path: Path) -> str:
    from latbench.io import read_json

    if not (path / "prune_report.json").is_file():
        return "not finished (rerun its command to resume)"
    r = read_json(path / "prune_report.json")
    parts = []
    if r.get("latency_ratio") is not None:
        parts.append(f"latency {r['latency_ratio']:.3f} of the original")
    parts.append(f"params {r['original_params']:,} -> {r['params']:,}")
    if "measured_ms" in r:
        parts.append(f"measured ratio {r['measured_ms']['ratio']:.3f}")
    if r.get("task") == "mlm":
        parts.append(f"MLM loss {r['mlm_loss_pruned']['val']:.4f}")
    elif "accuracy_pruned" in r:
        parts.append(f"test accuracy {100 * r['accuracy_pruned']['test']:.1f}%")
    return ", ".join(parts) + ("" if r.get("reached", True) else "; target not reached")


def _lut_figure(path: Path) -> str:
    from latbench.lut.table import LookupTable

    t = LookupTable.load(path)
    cov = t.coverage()
    shape = " x ".join(f"{a.name} {len(a.values)}" for a in t.axes)
    return f"{t.meta.family or '?'} blocks, {shape}: {cov.measured}/{cov.total} measured; {t.meta.device or '?'}"


_FIGURES: dict[str, Callable[[Path], str]] = {
    "store": _store_figure,
    "predictor": _predictor_figure,
    "search": _search_figure,
    "prune": _prune_figure,
    "lut": _lut_figure,
}


# ------------------------------------------------------------------------------ predictors


def shipped_predictors_dir() -> Path:
    """``predictors/`` of the source tree latbench runs from (absent in an installed wheel)."""
    return Path(__file__).resolve().parents[1] / "predictors"


def _card_mismatches(card_dir: Path, family: str, batch: int | None, seq_len: int | None) -> list[str]:
    """Why the predictor in ``card_dir`` does not speak for this machine and workload (empty: it does)."""
    from latbench.lut.build import hardware_name
    from latbench.predictors.card import ModelCard
    from latbench.predictors.data import Validity

    card = ModelCard.load(card_dir / "card.json")
    v = card.validity_obj()
    if card.features.get("kind") != "arch":
        return ["it was trained on an imported table, not on architectures"]
    device = str(v.deploy.get("device") or "cpu")
    workload = {k: [x, x] for k, x in (("batch", batch), ("seq_len", seq_len)) if x is not None}
    here = Validity(
        source="latbench-store", device=hardware_name(device), deploy=dict(v.deploy), workload=workload, family=family
    )
    return v.mismatches(here)


def find_predictor(
    family: str,
    batch: int | None = None,
    seq_len: int | None = None,
    runs: str | os.PathLike[str] = RUNS_DIR,
    shipped: str | os.PathLike[str] | None = None,
) -> Path:
    """The predictor a command uses when none is given.

    The most recent predictor under ``runs`` trained on ``family`` architectures whose workload
    ranges hold ``batch`` and ``seq_len`` (when given); else a shipped one (``predictors/``)
    whose card says it holds on this machine (its device is this machine's hardware) for this
    workload.

    Raises:
        LatbenchError: None fits; the message says why each shipped one does not, and what to run.
    """
    from latbench.predictors.card import ModelCard

    def trained_on_family(path: Path) -> bool:
        try:
            card = ModelCard.load(path / "card.json")
        except LatbenchError:
            return False
        v = card.validity_obj()
        if card.features.get("kind") != "arch" or v.family not in (None, family):
            return False
        return v.workload_kind(batch, seq_len) != "extrapolation"

    found = latest("predictor", runs, accept=trained_on_family)
    if found is not None:
        return found
    reasons = []
    fitting = []
    root = Path(shipped) if shipped is not None else shipped_predictors_dir()
    for d in _children(root):
        if not (d / "card.json").is_file():
            continue
        try:
            problems = _card_mismatches(d, family, batch, seq_len)
        except LatbenchError as exc:
            problems = [exc.what]
        if not problems:
            fitting.append(d)
        else:
            reasons.append(f"{d} does not hold here: {problems[0]}")
    if fitting:
        # One trained at this very workload before one that interpolates to it; of those, the one trained
        # on the fewest workloads (all its data at this one) before a predictor over many.
        def preference(d: Path) -> tuple[bool, int]:
            v = ModelCard.load(d / "card.json").validity_obj()
            return v.workload_kind(batch, seq_len) != "trained", len(v.workloads or ()) or 1

        return min(fitting, key=preference)
    why = "; ".join(reasons) if reasons else "no shipped predictor"
    raise LatbenchError(
        "--predictor",
        f"no {family} predictor under {Path(runs)}/ and {why}; run `latbench profile --device cpu` and "
        "`latbench train-predictor` first, or give --predictor",
    )


def predictor_target(predictor: Any) -> dict[str, Any] | None:
    """The deployment a predictor was trained on (``device``, ``backend``, ``mode`` ...) when it is on this machine.

    ``None`` when the predictor does not record its device and deployment, or was measured on
    other hardware: then there is no target here to measure a reference on.
    """
    from latbench.lut.build import hardware_name

    v = getattr(predictor, "validity", None)
    if v is None or v.device is None or not v.deploy.get("device"):
        return None
    device = str(v.deploy["device"])
    if device != "cpu":
        try:
            import torch

            if not torch.cuda.is_available():
                return None
        except ImportError:
            return None
    if hardware_name(device).strip().lower() != v.device.strip().lower():
        return None
    keys = ("device", "backend", "mode", "precision", "threads", "cache")
    out: dict[str, Any] = {k: v.deploy[k] for k in keys if v.deploy.get(k) is not None}
    options = {k: val for k, val in v.deploy.items() if "." in k}
    if options:
        out["options"] = options
    return out
