"""``latbench prune`` and ``latbench finetune``: latency-aware structural pruning (NViT's algorithm).

Thin commands: options become a :class:`~latbench.pruning.workflow.PruneJob` (or a
:class:`~latbench.pruning.config.TrainConfig`) and one library call runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from latbench.cli._app import console
from latbench.errors import LatbenchError


def _kinds(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(k.strip() for k in value.split(",") if k.strip())


def _per_kind(value: str | None, option: str) -> dict[str, Any] | None:
    """``8`` (every width: emb, qk, v, mlp; a head count stays free) or ``emb=8,qk=4,heads=2``."""
    if value is None:
        return None
    text = value.strip()
    if "=" not in text:
        try:
            n = int(text)
        except ValueError:
            raise LatbenchError(option, f"expected an integer or kind=N pairs, got {value!r}") from None
        return {"emb": n, "qk": n, "v": n, "mlp": n}
    out: dict[str, Any] = {}
    for item in text.split(","):
        kind, _, num = item.partition("=")
        try:
            out[kind.strip()] = int(num)
        except ValueError:
            raise LatbenchError(option, f"expected kind=N, got {item!r}") from None
    return out


def prune(
    model: str = typer.Option(
        ...,
        "--model",
        help="vit-digits (trained here first), a latbench model file, or a latbench extract / train-supernet "
        "directory (a digits ViT, or a bert trained here on text through MLM).",
    ),
    out: Path = typer.Option(..., "--out", help="Job directory (checkpoints, models, reports); resumable."),
    lut: str | None = typer.Option(
        None,
        "--lut",
        help="Latency table: a latbench LUT (build-lut), NViT's latency_head.json as it comes, a predictor directory "
        "(train-predictor: it prices whole models), or 'measure' (on this CPU).",
    ),
    overhead: Path | None = typer.Option(
        None,
        "--overhead",
        help="A LUT-sum fit (its JSON, or a lut-sum predictor directory): price whole models, "
        "a·Σblocks+b·n+c+d·rest_gflop, so the target holds for the model, not its blocks alone.",
    ),
    latency_target: float | None = typer.Option(
        None, "--latency-target", help="Stop when LUT latency <= this fraction of the original's (0 < t < 1)."
    ),
    params_target: int | None = typer.Option(None, "--params-target", help="Stop at or below this many parameters."),
    config: Path | None = typer.Option(None, "--config", help="NViT pruning config JSON (options given here win)."),
    latency_regularization: float | None = typer.Option(
        None, "--latency-regularization", help="λ: score -= λ·(LUT(dims) - LUT(dims one smaller)). Default 0."
    ),
    prune_per_iter: int | None = typer.Option(None, "--prune-per-iter", help="Units removed per pruning step."),
    interval_prune: int | None = typer.Option(None, "--interval-prune", help="Batches between pruning steps."),
    importance: str | None = typer.Option(None, "--importance", help="taylor23 (default), taylor22 or magnitude."),
    momentum: float | None = typer.Option(None, "--momentum", help="Importance momentum across steps (0: off)."),
    normalize: bool | None = typer.Option(
        None, "--normalize/--no-normalize", help="Make λ unit-free (importance / its median, gain / latency per unit)."
    ),
    kinds: str | None = typer.Option(None, "--kinds", help="Group kinds to prune, e.g. heads,mlp (default all)."),
    granularity: str | None = typer.Option(
        None, "--granularity", help="Remove units N at a time: N (emb, qk, v, mlp) or emb=8,qk=4,heads=2."
    ),
    round_to: str | None = typer.Option(
        None, "--round-to", help="Round final sizes down to multiples: N (emb, qk, v, mlp) or emb=8,mlp=16."
    ),
    steps: int = typer.Option(2000, "--steps", help="Most training batches while pruning."),
    batch_size: int = typer.Option(64, "--batch-size", help="Global batch size."),
    lr: float = typer.Option(5e-4, "--lr", help="AdamW learning rate while pruning."),
    distill_alpha: float = typer.Option(0.5, "--distill-alpha", help="Weight of the KL to the unpruned model."),
    distill_tau: float = typer.Option(1.0, "--distill-tau", help="Distillation temperature."),
    baseline_steps: int = typer.Option(1500, "--baseline-steps", help="Batches to train the vit-digits baseline."),
    nvit_unit: str | None = typer.Option(None, "--nvit-unit", help="Unit of an NViT table's values: s or ms."),
    force: bool = typer.Option(False, "--force", help="Use a LUT recorded for another workload (e.g. NViT's)."),
    latency_batch: int = typer.Option(
        32, "--latency-batch", help="Images (or sequences) per call when measuring latency."
    ),
    data: list[Path] | None = typer.Option(
        None, "--data", help="bert: .txt files or directories (default: the model's recorded corpus, else stdlib's)."
    ),
    seq_len: int | None = typer.Option(None, "--seq-len", help="bert: tokens per window (default: as recorded, 16)."),
    max_windows: int | None = typer.Option(None, "--max-windows", help="bert: use at most this many text windows."),
    threads: int = typer.Option(1, "--threads", help="Torch threads for training and measuring."),
    measure: bool = typer.Option(True, "--measure/--no-measure", help="Measure baseline and pruned latency here."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from the directory's checkpoints."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data order and the baseline's weights."),
) -> None:
    """Prune a model to a latency (or parameter) target, NViT's way, and convert it to a small dense model."""
    from latbench.pruning.config import PruneConfig, TrainConfig, read_nvit_config
    from latbench.pruning.workflow import PruneJob, prune_to_dir

    given: dict[str, Any] = {
        "latency_target": latency_target,
        "params_target": params_target,
        "latency_regularization": latency_regularization,
        "prune_per_iter": prune_per_iter,
        "interval_prune": interval_prune,
        "importance": importance,
        "momentum": momentum,
        "normalize": normalize,
        "kinds": _kinds(kinds),
        "granularity": _per_kind(granularity, "--granularity"),
        "round_to": _per_kind(round_to, "--round-to"),
        "seed": seed,
    }
    given = {k: v for k, v in given.items() if v is not None}
    from latbench.io import check_dir_path

    check_dir_path(out, "--out")  # before the work, not after it
    if latency_target is None and params_target is None:
        raise LatbenchError("--latency-target", "give a latency target (e.g. 0.5), a --params-target, or both")
    given["latency_target"], given["params_target"] = latency_target, params_target
    lut_path = lut
    try:
        if config is not None:
            nvit = read_nvit_config(config)
            lut_path = lut_path or nvit.latency_look_up_table
            cfg = nvit.to_prune_config(**given)
        else:
            cfg = PruneConfig(**given)
    except LatbenchError as exc:
        if exc.where.split(".")[0] in given:  # a field of ours: name the option the user typed
            raise LatbenchError("--" + exc.where.split(".")[0].replace("_", "-"), exc.what) from None
        raise
    if lut_path is None and (cfg.latency_target is not None or cfg.latency_regularization > 0):
        raise LatbenchError("--lut", "a latency target or --latency-regularization needs a latency table")
    if nvit_unit is not None:
        if nvit_unit not in ("s", "ms"):
            raise LatbenchError("--nvit-unit", f"unknown unit {nvit_unit!r} (expected s or ms)")
        from latbench.cli.lut import _is_nvit

        if lut_path is None or lut_path == "measure" or not _is_nvit(Path(lut_path)):
            raise LatbenchError("--nvit-unit", "is the unit of NViT's latency_head.json; this --lut records its own")
    if overhead is not None and lut_path is None:
        raise LatbenchError("--overhead", "prices a LUT's block sum; give --lut too")
    job = PruneJob(
        model=model,
        out=out,
        prune=cfg,
        train=TrainConfig(
            steps=steps, batch_size=batch_size, lr=lr, distill_alpha=distill_alpha, distill_tau=distill_tau, seed=seed
        ),
        baseline=TrainConfig(steps=baseline_steps, batch_size=batch_size, lr=2e-3, distill_alpha=0.0, seed=seed),
        lut=lut_path,
        overhead=None if overhead is None else str(overhead),
        nvit_unit=nvit_unit,
        force_lut=force,
        latency_batch=latency_batch,
        threads=threads,
        measure=measure,
        resume=resume,
        data=tuple(str(p) for p in data or ()),
        seq_len=seq_len,
        max_windows=max_windows,
    )
    report = prune_to_dir(job, log=console.print)
    before, after = report["original_arch"], report["arch"]
    from latbench.space.arch import Arch

    console.print(f"arch        {Arch.from_dict(before).describe()} -> {Arch.from_dict(after).describe()}")
    console.print(f"params      {report['original_params']:,} -> {report['params']:,}")
    if report["latency_ratio"] is not None:
        console.print(f"LUT latency {report['latency_ratio']:.3f} of the original")
    if "measured_ms" in report:
        m = report["measured_ms"]
        console.print(f"measured    {m['baseline']:.2f} ms -> {m['pruned']:.2f} ms ({m['ratio']:.3f}) on this CPU")
    if report["task"] == "mlm":
        l0, l1 = report["mlm_loss_before"], report["mlm_loss_pruned"]
        console.print(f"MLM loss    val {l0['val']:.4f} -> {l1['val']:.4f} (before fine-tuning)")
    else:
        acc0, acc1 = report["accuracy_before"], report["accuracy_pruned"]
        console.print(f"accuracy    test {100 * acc0['test']:.1f}% -> {100 * acc1['test']:.1f}% (before fine-tuning)")
    console.print(f"stopped     {report['reason'] or 'the batches ran out'} after {report['batches']} batches")
    if not report["reached"]:
        console.print("warning     the target was not reached: raise --steps or --prune-per-iter")
    console.print(f"wrote       {out / 'pruned.pt'}, {out / 'arch.json'}, {out / 'prune_report.json'}")


def finetune(
    directory: Path = typer.Argument(..., help="A latbench prune --out directory."),
    steps: int = typer.Option(800, "--steps", help="Training batches."),
    batch_size: int = typer.Option(64, "--batch-size", help="Global batch size."),
    lr: float = typer.Option(5e-4, "--lr", help="AdamW learning rate."),
    distill_alpha: float = typer.Option(0.5, "--distill-alpha", help="Weight of the KL to the unpruned model."),
    distill_tau: float = typer.Option(1.0, "--distill-tau", help="Distillation temperature."),
    threads: int = typer.Option(1, "--threads", help="Torch threads."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from finetune.run."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data order."),
) -> None:
    """Fine-tune a pruned model, distilling from the unpruned one (NViT's dense fine-tuning)."""
    from latbench.pruning.config import TrainConfig
    from latbench.pruning.workflow import finetune_dir

    cfg = TrainConfig(
        steps=steps, batch_size=batch_size, lr=lr, distill_alpha=distill_alpha, distill_tau=distill_tau, seed=seed
    )
    report = finetune_dir(directory, cfg, resume=resume, threads=threads, log=console.print)
    if report["task"] == "mlm":
        b, a, t = report["mlm_loss_before"], report["mlm_loss_after"], report["teacher_mlm_loss"]
        console.print(f"MLM loss    val {b['val']:.4f} -> {a['val']:.4f} (unpruned {t['val']:.4f})")
    else:
        b, a, t = report["accuracy_before"], report["accuracy_after"], report["teacher_accuracy"]
        console.print(
            f"accuracy    test {100 * b['test']:.1f}% -> {100 * a['test']:.1f}% (unpruned {100 * t['test']:.1f}%)"
        )
    console.print(f"wrote       {directory / 'finetuned.pt'}, {directory / 'finetune_report.json'}")
