"""Pruning jobs that live in a directory: what ``latbench prune`` and ``latbench finetune`` run.

A job's model brings its task: the digits ViT (``vit-digits``, or a model of its
shape) trains on scikit-learn's digits and is scored by accuracy; a ``bert``
model (a latbench model file, a ``latbench extract`` export directory, or a
super-net run directory) trains on a local text corpus through masked LM and is
scored by its MLM loss (see :mod:`latbench.pruning.text`).

A job directory holds, as it goes (every file written atomically; a job started
again with the same options resumes from its checkpoints):

- ``job.json``: the options (a job resumed with other options is refused);
- ``baseline.pt``: the unpruned model (trained here for ``vit-digits``, from
  ``baseline.run``), the teacher of the distillation; for a bert its meta holds
  the text data configuration, which ``finetune`` reuses;
- ``lut.json``: the latency table, when measured here (``--lut measure``);
- ``prune.run``: the pruning run's checkpoint (masks, importance, optimiser);
- ``masked.pt``: the masked model at full size (pruned weights zeroed);
- ``pruned.pt`` and ``arch.json``: the small dense model and its canonical architecture;
- ``prune_report.json``; after ``finetune``: ``finetune.run``, ``finetuned.pt``,
  ``finetune_report.json``.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the jobs join a gloo process group, train
data-parallel (see :mod:`latbench.pruning.loop`), and only rank 0 writes files and
measures latency.

:func:`run_digits_task` is the experiment of issue 7: baseline, prune to a
latency target with the CPU LUT, fine-tune, and the same pruning without the
latency term stopped at the same parameter count.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from latbench.errors import LatbenchError
from latbench.io import atomic_write_json, atomic_write_text, read_json
from latbench.pruning import digits
from latbench.pruning.checkpoint import load_model, save_model
from latbench.pruning.config import PruneConfig, TrainConfig
from latbench.pruning.latency import LatencyCost, PredictorCost, load_latency_model, load_lut, load_overhead
from latbench.pruning.loop import MaskedText, evaluate_accuracy, train, world
from latbench.pruning.measure import measure_latency_ms, measure_lut
from latbench.pruning.run import finetune_model, prune_model
from latbench.space.arch import Arch

__all__ = ["PruneJob", "finetune_dir", "prune_to_dir", "report_markdown", "run_digits_task"]

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class PruneJob:
    """Everything ``latbench prune`` needs.

    Attributes:
        model: ``vit-digits`` (trained here first); a model file (``latbench-model``); or a directory
            of ``latbench extract`` (safetensors) or ``latbench train-supernet``. It must be a digits
            ViT or a bert (see the module docstring).
        out: The job directory.
        prune: What to prune and the target.
        train: Training while pruning (``steps`` bounds the run).
        baseline: Training of the ``vit-digits`` baseline.
        lut: A latbench LUT or NViT ``latency_head.json``, ``measure`` (measure one here), or
            None (no latency term and no latency target).
        overhead: A LUT-sum fit (JSON or lut-sum predictor directory) that prices whole models from
            the LUT's block sum (:class:`~latbench.pruning.latency.LatencyCost`); None: blocks alone.
        nvit_unit: Unit of an NViT table's values (``s``/``ms``; None: unknown).
        force_lut: Use a table recorded for another workload (NViT's is for 224 px DeiT blocks).
        latency_batch: Images per call when measuring latency (the LUT and the models).
        threads: Torch intra-op threads, for training and measuring.
        measure: Measure the baseline's and the pruned model's latency on this CPU.
        resume: Continue from the directory's checkpoints.
        data: A bert's text corpus (``.txt`` files or directories); empty: the one the model
            records, else the default corpus.
        seq_len: A bert's tokens per window (default: the model's recorded data, else 16).
        max_windows: Use at most this many text windows (a seeded subsample; default: as recorded).
    """

    model: str
    out: Path
    prune: PruneConfig
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=2000, lr=5e-4))
    baseline: TrainConfig = field(default_factory=lambda: TrainConfig(steps=800, lr=2e-3, distill_alpha=0.0))
    lut: str | None = None
    overhead: str | None = None
    nvit_unit: str | None = None
    force_lut: bool = False
    latency_batch: int = 32
    threads: int | None = 1
    measure: bool = True
    resume: bool = True
    data: tuple[str, ...] = ()
    seq_len: int | None = None
    max_windows: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", tuple(str(p) for p in self.data))

    def options(self) -> dict[str, Any]:
        """The options that decide the result (``job.json``; the text options and overhead only when given)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("out", "resume", "measure"):
                continue
            value = getattr(self, f.name)
            if f.name in (*_TEXT_OPTIONS, "overhead") and value in ((), None):  # as before they existed
                continue
            out[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
        if self.data:
            out["data"] = list(self.data)
        return out


#: PruneJob fields that only a bert's text task reads.
_TEXT_OPTIONS = ("data", "seq_len", "max_windows")


@dataclass(frozen=True)
class _Task:
    """What a model trains on and how it is scored: ``digits`` (accuracy) or ``mlm`` (MLM loss)."""

    kind: str
    train: TensorDataset | MaskedText
    val: TensorDataset
    test: TensorDataset
    data: Any = None  # the DataConfig of the mlm task

    @property
    def metric(self) -> str:
        """The report's name of the score: ``accuracy`` (higher is better) or ``mlm_loss`` (lower is)."""
        return "accuracy" if self.kind == "digits" else "mlm_loss"

    @property
    def seq_len(self) -> int | None:
        return None if self.data is None else self.data.seq_len

    def score(self, model: nn.Module) -> dict[str, float]:
        """``{"val": ..., "test": ...}``: accuracy, or MLM loss in nats per masked token."""
        if self.kind == "digits":
            return {"val": evaluate_accuracy(model, self.val), "test": evaluate_accuracy(model, self.test)}
        from latbench.pruning.text import mlm_loss

        return mlm_loss(model, self.data)

    def meta(self) -> dict[str, Any]:
        """What a model file of this task records (so ``finetune`` finds the same data)."""
        return {"task": self.kind} if self.data is None else {"task": self.kind, "data": self.data.to_dict()}


def _digits_task(seed: int) -> _Task:
    train_set, val, test = digits.digits_data(seed)
    return _Task("digits", train_set, val, test)


def _mlm_task(data: Any) -> _Task:
    from latbench.pruning.text import text_data

    train_set, val, test = text_data(data)
    return _Task("mlm", train_set, val, test, data)


def _unfit(where: str, arch: Arch) -> LatbenchError:
    return LatbenchError(
        where,
        "the built-in training data is the digits (vit, 8x8, 1 channel, 10 classes) or a text corpus "
        f"through MLM (bert); this model is {arch.describe()}",
    )


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)


def _init_distributed() -> None:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1): gloo, this package's CPU backend."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")


def _main() -> bool:
    """Whether this process writes files and measures (rank 0, or the only process)."""
    return world()[0] == 0


def _sync() -> None:
    if world()[1] > 1:
        import torch.distributed as dist

        dist.barrier()


def _check_job_file(out: Path, options: dict[str, Any], resume: bool) -> None:
    path = out / "job.json"
    if resume and path.exists():
        held = read_json(path)
        want = json.loads(json.dumps(options))
        if held != want:
            diff = sorted(k for k in set(held) | set(want) if held.get(k) != want.get(k))
            raise LatbenchError(
                str(out), f"holds a job with other options ({', '.join(diff)}); use another --out or --no-resume"
            )
    _sync()
    if _main():
        atomic_write_json(path, options)
    _sync()


def _load_given(path: str) -> tuple[nn.Module, dict[str, Any]]:
    """A model file, or an export / super-net run directory (every failure one line naming the path)."""
    p = Path(path)
    if p.is_dir():
        from latbench.supernet.train import load_model_dir

        return load_model_dir(p), {}
    return load_model(p)


def _source(job: PruneJob) -> tuple[Arch, nn.Module | None, dict[str, Any], _Task]:
    """The unpruned architecture, the model with its meta when it comes from a file, and its task (checked first)."""
    text_given = [f"--{n.replace('_', '-')}" for n in _TEXT_OPTIONS if getattr(job, n) not in ((), None)]
    if job.model == digits.DIGITS_MODEL:
        if text_given:
            raise LatbenchError(text_given[0], "only a bert model reads text; vit-digits trains on the digits")
        return digits.digits_arch(), None, {}, _digits_task(job.prune.seed)
    model, meta = _load_given(job.model)
    arch: Arch = model.arch  # type: ignore[assignment]
    if digits.is_digits_arch(arch):
        if text_given:
            raise LatbenchError(text_given[0], "only a bert model reads text; this model reads the digits")
        return arch, model, meta, _digits_task(job.prune.seed)
    if arch.family != "bert":
        raise _unfit(job.model, arch)
    from latbench.pruning.text import source_data, text_data_config

    data = text_data_config(
        arch,
        source_data(job.model, meta),
        paths=job.data,
        seq_len=job.seq_len,
        max_windows=job.max_windows,
        where=job.model,
    )
    return arch, model, meta, _mlm_task(data)


def _baseline(job: PruneJob, given: nn.Module | None, meta: dict[str, Any], task: _Task, log: Log) -> nn.Module:
    """The unpruned model: trained here for ``vit-digits`` (resumable), else the given one; saved as baseline.pt."""
    path = job.out / "baseline.pt"
    if given is not None:
        if _main():
            save_model(path, given, {**meta, **task.meta(), "source": str(job.model)})
        _sync()
        return given
    if job.resume and path.exists():
        return load_model(path)[0]
    from latbench.models.build import build_model

    arch = digits.digits_arch()
    model = build_model(arch, seed=job.prune.seed).train()
    train_set, val, test = digits.digits_data(job.prune.seed)
    log(f"training the baseline {arch.describe()} for {job.baseline.steps} batches")
    train(model, train_set, job.baseline, kind="train", checkpoint=job.out / "baseline.run", resume=job.resume)
    meta = {
        **task.meta(),
        "source": "vit-digits baseline",
        "val_accuracy": evaluate_accuracy(model, val),
        "test_accuracy": evaluate_accuracy(model, test),
    }
    if _main():
        save_model(path, model, meta)
    _sync()
    return model.eval()


def _latency(job: PruneJob, arch: Any, task: _Task, log: Log) -> LatencyCost | PredictorCost | None:
    if job.lut is None:
        return None
    overhead = None if job.overhead is None else load_overhead(job.overhead)
    if job.lut == "measure":
        path = job.out / "lut.json"
        if not (job.resume and path.exists()) and _main():
            log(f"measuring a block LUT on this CPU (batch {job.latency_batch}, {job.threads or 'all'} threads)")
            measure_lut(arch, path, batch=job.latency_batch, threads=job.threads or 1, seq_len=task.seq_len)
        _sync()
        return LatencyCost(load_lut(path), arch, force=job.force_lut, overhead=overhead)
    # a LUT file (latbench's, NViT's latency_head.json) or a predictor directory, as it comes
    return load_latency_model(
        job.lut, arch, nvit_unit=job.nvit_unit, seq_len=task.seq_len, force=job.force_lut, overhead=overhead
    )


def _size(path: Path) -> int:
    return path.stat().st_size


def prune_to_dir(job: PruneJob, log: Log = _quiet) -> dict[str, Any]:
    """Run a pruning job (see the module docstring); returns its report (also ``prune_report.json``).

    Raises:
        LatbenchError: Bad options, a model without built-in data, a LUT that does not cover
            the model, or a directory holding a job with other options.
    """
    _set_threads(job.threads)
    _init_distributed()
    t0 = time.perf_counter()
    arch, given, meta, task = _source(job)
    if job.lut != "measure":
        latency = _latency(job, arch, task, log)  # a table that does not fit fails before any training
    job.out.mkdir(parents=True, exist_ok=True)
    _check_job_file(job.out, job.options(), job.resume)
    baseline = _baseline(job, given, meta, task, log)
    if job.lut == "measure":
        latency = _latency(job, arch, task, log)
    model = copy.deepcopy(baseline).train()
    score_before = task.score(baseline)
    log(f"pruning {arch.describe()} ({job.prune.importance}, λ={job.prune.latency_regularization})")
    outcome = prune_model(
        model,
        task.train,
        job.prune,
        job.train,
        latency=latency,
        teacher=baseline,
        checkpoint=job.out / "prune.run",
        resume=job.resume,
    )
    pruner = outcome.pruner
    pruner.remove()
    masks = {g.name: g.keep.tolist() for g in pruner.groups}
    if _main():
        save_model(
            job.out / "masked.pt",
            model,
            {**task.meta(), "masks": masks, "note": "full size, pruned weights zeroed"},
        )
        save_model(job.out / "pruned.pt", outcome.dense, {**task.meta(), "source": str(job.out / "masked.pt")})
        atomic_write_text(job.out / "arch.json", outcome.arch.to_json() + "\n")
    _sync()
    score_after = task.score(outcome.dense)
    report: dict[str, Any] = {
        "model": job.model,
        "task": task.kind,
        **({} if task.data is None else {"data": task.data.to_dict()}),
        **outcome.summary(),
        "lut": None if latency is None else latency.describe(),
        f"{task.metric}_before": score_before,
        f"{task.metric}_pruned": score_after,
        "bytes_masked": _size(job.out / "masked.pt"),
        "bytes_dense": _size(job.out / "pruned.pt"),
        "history": [r.to_dict() for r in pruner.history],
    }
    if job.measure and _main():
        log("measuring the baseline and the pruned model on this CPU")
        base_ms, pruned_ms = measure_latency_ms(
            [baseline, outcome.dense], arch, batch=job.latency_batch, threads=job.threads or 1, seq_len=task.seq_len
        )
        report["measured_ms"] = {"baseline": base_ms, "pruned": pruned_ms, "ratio": pruned_ms / base_ms}
    report["wall_s"] = time.perf_counter() - t0
    if _main():
        atomic_write_json(job.out / "prune_report.json", report)
    _sync()
    return report


def finetune_dir(
    out: str | Path, config: TrainConfig, *, resume: bool = True, threads: int | None = 1, log: Log = _quiet
) -> dict[str, Any]:
    """Fine-tune a pruning job's dense model (``pruned.pt``), distilling from its ``baseline.pt``.

    Writes ``finetuned.pt`` and ``finetune_report.json``; resumes from ``finetune.run``.

    Raises:
        LatbenchError: ``out`` is not a finished pruning job directory.
    """
    _set_threads(threads)
    _init_distributed()
    out = Path(out)
    for name in ("pruned.pt", "baseline.pt"):
        if not (out / name).exists():
            raise LatbenchError(str(out), f"no {name}: run latbench prune --out {out} first")
    model, _ = load_model(out / "pruned.pt")
    teacher, teacher_meta = load_model(out / "baseline.pt")
    task = _finetune_task(out, model.arch, teacher_meta, config.seed)  # type: ignore[arg-type]
    before = task.score(model)
    log(f"fine-tuning {model.arch.describe()} for {config.steps} batches")  # type: ignore[attr-defined]
    model.train()
    outcome = finetune_model(model, task.train, config, teacher=teacher, checkpoint=out / "finetune.run", resume=resume)
    model.eval()
    after = task.score(model)
    if _main():
        save_model(
            out / "finetuned.pt",
            model,
            {**task.meta(), "source": str(out / "pruned.pt"), f"val_{task.metric}": after["val"]},
        )
    report = {
        "arch": model.arch.to_dict(),  # type: ignore[attr-defined]
        "task": task.kind,
        "steps": outcome.steps,
        "resumed_from": outcome.resumed_from,
        f"{task.metric}_before": before,
        f"{task.metric}_after": after,
        f"teacher_{task.metric}": task.score(teacher),
        "train_config": config.to_dict(),
    }
    if _main():
        atomic_write_json(out / "finetune_report.json", report)
    _sync()
    return report


def _finetune_task(out: Path, arch: Arch, teacher_meta: dict[str, Any], seed: int) -> _Task:
    """The task of a job directory: a bert's from its baseline's recorded data, the digits' from its shape."""
    if digits.is_digits_arch(arch):
        return _digits_task(seed)
    if arch.family != "bert":
        raise _unfit(str(out / "pruned.pt"), arch)
    from latbench.pruning.text import check_text_arch
    from latbench.supernet.config import DataConfig

    recorded = teacher_meta.get("data")
    if not isinstance(recorded, dict):
        raise LatbenchError(str(out / "baseline.pt"), "records no text data (meta.data); prune it again")
    data = DataConfig.from_dict(recorded, f"{out / 'baseline.pt'}: data")
    check_text_arch(arch, data.seq_len, str(out / "pruned.pt"))
    return _mlm_task(data)


# ------------------------------------------------------------------ the task
def run_digits_task(
    out: str | Path,
    *,
    latency_target: float = 0.5,
    latency_regularization: float = 1.0,
    prune: PruneConfig | None = None,
    prune_train: TrainConfig | None = None,
    finetune: TrainConfig | None = None,
    baseline: TrainConfig | None = None,
    lut: str = "measure",
    latency_batch: int = 32,
    threads: int = 1,
    same_latency: bool = True,
    log: Log = _quiet,
) -> dict[str, Any]:
    """Issue 7's experiment on the digits ViT; returns a report (and writes ``task_report.json`` in ``out``).

    1. train the baseline; measure a block LUT on this CPU (or use ``lut``);
    2. prune to ``latency_target`` with the latency term (``out/latency``), fine-tune;
    3. prune the same baseline *without* the latency term, stopped at the parameter count the
       latency-aware model ended with (``out/params``), fine-tune;
    4. with ``same_latency``, also without the latency term but stopped at the same LUT latency
       target (``out/plain``), fine-tune;
    5. measure the baseline and every pruned model interleaved on this CPU.
    """
    out = Path(out)
    cfg = prune or PruneConfig(
        importance="taylor23",
        latency_target=latency_target,
        latency_regularization=latency_regularization,
        prune_per_iter=16,
        interval_prune=10,
        momentum=0.5,
        normalize=True,
        # Hardware-friendly widths as NViT gets them: prune emb/qk/v/mlp in chunks (no final rounding,
        # so that the parameter-matched run stops where it is compared).
        granularity={"emb": 8, "qk": 4, "v": 4, "mlp": 8},
    )
    train_cfg = prune_train or TrainConfig(steps=3000, batch_size=64, lr=5e-4, distill_alpha=0.5, checkpoint_every=200)
    ft_cfg = finetune or TrainConfig(steps=800, batch_size=64, lr=5e-4, distill_alpha=0.5, checkpoint_every=200)
    base_train = baseline or TrainConfig(steps=1500, batch_size=64, lr=2e-3, distill_alpha=0.0, checkpoint_every=250)
    t0 = time.perf_counter()
    aware_job = PruneJob(
        model=digits.DIGITS_MODEL,
        out=out / "latency",
        prune=cfg,
        train=train_cfg,
        baseline=base_train,
        lut=lut,
        latency_batch=latency_batch,
        threads=threads,
        measure=False,
    )
    runs: list[tuple[str, Path, dict[str, Any], dict[str, Any]]] = []
    aware = prune_to_dir(aware_job, log)
    runs.append((f"latency-aware (λ={cfg.latency_regularization:g})", aware_job.out, aware, {}))
    lut_path = str(aware_job.out / "lut.json") if lut == "measure" else lut
    variants = [
        ("no latency term, same params", "params", {"latency_target": None, "params_target": aware["params"]}),
    ]
    if same_latency:
        variants.append(("no latency term, same LUT latency", "plain", {}))
    for name, sub, changes in variants:
        job = PruneJob(
            model=str(aware_job.out / "baseline.pt"),
            out=out / sub,
            prune=cfg.replace(latency_regularization=0.0, **changes),
            train=train_cfg,
            lut=lut_path,
            latency_batch=latency_batch,
            threads=threads,
            measure=False,
        )
        runs.append((name, job.out, prune_to_dir(job, log), {}))
    for _, path, _, ft in runs:
        ft.update(finetune_dir(path, ft_cfg, threads=threads, log=log))
    log("measuring the baseline and every pruned model on this CPU (interleaved)")
    base_model, _ = load_model(aware_job.out / "baseline.pt")
    models = [base_model] + [load_model(path / "finetuned.pt")[0] for _, path, _, _ in runs]
    ms = digits.measure_latency_ms(
        models,
        base_model.arch,  # type: ignore[attr-defined]
        batch=latency_batch,
        threads=threads,
    )
    rows = [
        {
            "model": "baseline",
            "arch": base_model.arch.describe(),  # type: ignore[attr-defined]
            "params": aware["original_params"],
            "lut_ratio": 1.0,
            "measured_ms": ms[0],
            "measured_ratio": 1.0,
            "acc_pruned": None,
            "acc_val": aware["accuracy_before"]["val"],
            "acc_test": aware["accuracy_before"]["test"],
        }
    ]
    for (name, _, rep, ft), ms_i in zip(runs, ms[1:]):
        rows.append(
            {
                "model": name,
                "arch": _describe(rep["arch"]),
                "params": rep["params"],
                "lut_ratio": rep["latency_ratio"],
                "measured_ms": ms_i,
                "measured_ratio": ms_i / ms[0],
                "acc_pruned": rep["accuracy_pruned"]["test"],
                "acc_val": ft["accuracy_after"]["val"],
                "acc_test": ft["accuracy_after"]["test"],
                "batches": rep["batches"],
                "reason": rep["reason"],
            }
        )
    report = {
        "latency_target": latency_target,
        "latency_regularization": cfg.latency_regularization,
        "prune_config": cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "finetune_config": ft_cfg.to_dict(),
        "lut": aware["lut"],
        "latency_batch": latency_batch,
        "threads": threads,
        "rows": rows,
        "wall_s": time.perf_counter() - t0,
    }
    atomic_write_json(out / "task_report.json", report)
    return report


def _describe(arch: dict[str, Any]) -> str:
    from latbench.space.arch import Arch

    return Arch.from_dict(arch).describe()


def report_markdown(report: dict[str, Any]) -> str:
    """The task report as a markdown table (plus the setting in one line)."""
    lines = [
        f"Digits ViT pruned to latency target {report['latency_target']} (LUT: {report['lut']['origin']}, "
        f"{report['lut'].get('device') or 'unknown device'}; measured at batch {report['latency_batch']}, "
        f"{report['threads']} thread(s)); run took {report['wall_s']:.0f} s.",
        "",
        "| model | architecture | params | LUT latency ratio | measured ms | measured ratio "
        "| test acc. after pruning | val acc. | test acc. |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["rows"]:
        pruned = "" if r["acc_pruned"] is None else f"{100 * r['acc_pruned']:.1f}%"
        lines.append(
            f"| {r['model']} | `{r['arch']}` | {r['params']:,} | {r['lut_ratio']:.3f} | {r['measured_ms']:.2f} "
            f"| {r['measured_ratio']:.3f} | {pruned} | {100 * r['acc_val']:.1f}% | {100 * r['acc_test']:.1f}% |"
        )
    return "\n".join(lines)
