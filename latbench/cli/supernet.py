"""``latbench train-supernet``, ``evaluate``, ``extract``, ``compress``: super-nets and their checkpoints.

Each command turns its options into a config and calls one library function
(:mod:`latbench.supernet`, :mod:`latbench.checkpoints`); torch is imported only
when a command runs. Register them on the app with
``app.command("train-supernet")(train_supernet)`` and likewise.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from latbench.cli._app import console
from latbench.cli.options import (
    BATCH,
    DEPLOYMENT,
    PROTOCOL,
    DeployOptions,
    ProtocolOptions,
    deploy_options,
    protocol_options,
)
from latbench.errors import LatbenchError

__all__ = ["compress", "evaluate", "extract", "train_supernet"]


def _threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise LatbenchError("--threads", f"must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


def train_supernet(
    out: Path = typer.Option(..., "--out", help="Run directory (rerun the same command to resume it)."),
    space: str | None = typer.Option(None, "--space", help="bert, vit, gpt or a space JSON file."),
    strategy: str | None = typer.Option(
        None, "--strategy", help="sandwich (default), random or standard (the only one with --further-train)."
    ),
    data: list[Path] = typer.Option(
        [], "--data", help="Text .txt file or directory (repeatable); default: stdlib docstrings. vit: digits."
    ),
    steps: int = typer.Option(100, "--steps", help="Optimiser steps."),
    batch_size: int = typer.Option(32, "--batch-size", help="Global batch (split over torchrun processes)."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak AdamW learning rate."),
    warmup_steps: int = typer.Option(10, "--warmup-steps", help="Linear warm-up steps."),
    seq_len: int | None = typer.Option(None, "--seq-len", help="Tokens per text window (default 16)."),
    seed: int = typer.Option(0, "--seed", help="Seed of weights, data split, batches, masks and sampling."),
    num_random: int = typer.Option(2, "--num-random", help="Random sub-networks per step (random, sandwich)."),
    inplace_distill: bool = typer.Option(
        False, "--inplace-distill", help="Sandwich: smaller sub-networks learn the largest one's predictions."
    ),
    teacher: Path | None = typer.Option(None, "--teacher", help="Distil from this run or export (option B)."),
    kd_temperature: float = typer.Option(1.0, "--kd-temperature", help="Distillation temperature."),
    kd_weight: float = typer.Option(1.0, "--kd-weight", help="Weight of distillation vs labels (1: only KD)."),
    further_train: Path | None = typer.Option(
        None, "--further-train", help="Train this exported sub-model (safetensors, hf or litgpt export) further."
    ),
    scale: float = typer.Option(1.0, "--scale", help="Shrink the space's largest dims by this factor (0, 1]."),
    max_layers: int | None = typer.Option(None, "--max-layers", help="Cap the number of layers."),
    max_hidden: int | None = typer.Option(None, "--max-hidden", help="Cap the width."),
    max_heads: int | None = typer.Option(None, "--max-heads", help="Cap the heads."),
    max_qk_dim: int | None = typer.Option(None, "--max-qk-dim", help="Cap the per-head width."),
    max_mlp: int | None = typer.Option(None, "--max-mlp", help="Cap the MLP width."),
    max_windows: int | None = typer.Option(None, "--max-windows", help="Use at most this many text windows."),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", help="Save a checkpoint every N steps."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads (default: torch's)."),
) -> None:
    """Train a super-net (standard, random or sandwich) on local data, or further-train an extracted model.

    Resumable: rerun the same command after an interruption. Distributed: torchrun --nproc_per_node N
    $(which latbench) train-supernet ... (gloo on CPU).
    """
    from latbench.io import check_dir_path
    from latbench.supernet.setup import make_train_config
    from latbench.supernet.spaces import SpaceCaps
    from latbench.supernet.train import check_device
    from latbench.supernet.train import train_supernet as run

    check_device(device)  # before the data and the model: a bad --device is one line at once
    check_dir_path(out)
    _threads(threads)
    caps = SpaceCaps(scale, max_layers, max_hidden, max_heads, max_qk_dim, max_mlp)
    config = make_train_config(
        space,
        strategy=strategy,
        data=[str(p) for p in data],
        seq_len=seq_len,
        caps=caps,
        further_train=further_train,
        max_windows=max_windows,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
        seed=seed,
        num_random=num_random,
        inplace_distill=inplace_distill,
        teacher=None if teacher is None else str(teacher),
        kd_temperature=kd_temperature,
        kd_weight=kd_weight,
        checkpoint_every=checkpoint_every,
    )
    what = "dense model" if config.space is None else f"super-net ({config.strategy})"
    console.print(f"training {what} {config.supernet.describe()} into {out}")
    result = run(config, out, device=device, log=console.print)
    losses = "  ".join(f"{k} {v:.4f}" for k, v in result.final_losses.items())
    console.print(f"done: {result.steps} steps ({result.seconds:.1f} s this run)  {losses}")


def _load_arch_for(value: str | None, trained: object) -> object:
    from latbench.space.formats import load_arch
    from latbench.supernet.setup import adopt_extras

    if value is None:
        return None
    return adopt_extras(load_arch(value, "--arch"), trained.config.supernet)  # type: ignore[attr-defined]


@deploy_options(
    typer.Option(None, "--device", help="Measure the sub-network's latency on this device (cpu or cuda:N).")
)
@protocol_options
def evaluate(
    supernet: Path = typer.Option(..., "--supernet", help="Training run directory."),
    arch: str | None = typer.Option(None, "--arch", help="Sub-network: JSON or a file (default: the whole model)."),
    split: str = typer.Option("val", "--split", help="val or test."),
    predictor: Path | None = typer.Option(
        None, "--predictor", help="Predict the sub-network's latency with this predictor (from train-predictor)."
    ),
    batch: int = BATCH,
    force: bool = typer.Option(
        False, "--force", help="Predict outside the predictor's batch/seq range, or for another --device's deployment."
    ),
    deployment: DeployOptions = DEPLOYMENT,
    protocol: ProtocolOptions = PROTOCOL,
    max_examples: int | None = typer.Option(None, "--max-examples", help="Evaluate only this many examples."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Validation loss, perplexity / accuracy of a sub-network of a trained super-net, and its latency.

    Latency: always the analytic roofline estimate; with --predictor a trained predictor's (with its
    interval), with --device a measurement by latbench's protocol (median with its 95% CI). Both at
    --batch and the run's sequence length. --threads sets torch's threads for the evaluation and the
    measurement's.
    """
    from latbench.supernet.evaluate import (
        evaluate_subnet,
        latency_workload,
        measured_subnet_latency,
        predict_subnet_latency,
    )
    from latbench.supernet.train import load_trained

    device = deployment.device
    given = [f for f in deployment.given() if f != "--threads"]
    if device is None and given:
        raise LatbenchError("--device", f"{'/'.join(given)} describe a measurement; add --device cpu|cuda:N")
    _threads(deployment.values.get("threads"))
    trained = load_trained(supernet)
    sub = _load_arch_for(arch, trained)
    result = evaluate_subnet(trained, sub, split=split, max_examples=max_examples)  # type: ignore[arg-type]
    work_batch, seq_len = latency_workload(trained.config.data, batch)
    predicted = measured = None
    deploy = None
    if device is not None:
        deploy = deployment.config(work_batch, seq_len)
    if predictor is not None:
        from latbench.predictors.persist import load_predictor

        pred = load_predictor(predictor)
        if deploy is not None and pred.validity is not None:
            # a prediction beside a measurement must be for the same target (as in `latbench search --device`)
            from latbench.cli.predictors import _note_forced
            from latbench.search.run import deploy_validity

            family = pred.validity.family or result.arch.family
            _note_forced(pred.validity.check(deploy_validity(deploy, family), force, where="--predictor"))
        predicted = predict_subnet_latency(pred, result.arch, batch=work_batch, seq_len=seq_len, force=force)
    if deploy is not None:
        from latbench.search.measure import measure_models

        space = trained.config.space
        (row,) = measure_models([result.arch], space.name if space is not None else "dense", deploy, protocol.config())
        measured = measured_subnet_latency(row)
    if as_json:
        out = {
            **result.to_dict(),
            "predicted": None if predicted is None else predicted.to_dict(),
            "measured": None if measured is None else measured.to_dict(),
        }
        typer.echo(json.dumps(out, indent=2))
        return
    console.print(f"arch        {result.arch.describe()}")
    console.print(f"{split} loss    {result.loss:.4f} ({result.objective}, {result.count} predictions)")
    if result.perplexity is not None:
        console.print(f"perplexity  {result.perplexity:.3f}")
    console.print(f"accuracy    {result.accuracy:.4f}")
    console.print(f"params      {result.params:,}   FLOPs {result.flops:,}")
    console.print(f"latency     {result.latency_ms:.4f} ms ({result.latency_source})")
    where = f"batch {work_batch}" + ("" if seq_len is None else f", seq {seq_len}")
    if predicted is not None:
        console.print(
            f"predicted   {predicted.ms:.4g} ms (interval {predicted.low_ms:.4g} to {predicted.high_ms:.4g} ms) "
            f"at {where}: {predicted.detail}"
        )
    if measured is not None:
        flag = "  UNSTABLE" if measured.unstable else ""
        console.print(
            f"measured    {measured.ms:.4g} ms (95% CI {measured.low_ms:.4g} to {measured.high_ms:.4g} ms, "
            f"n {measured.n}) at {where}: {measured.detail}{flag}"
        )


def extract(
    supernet: Path = typer.Option(..., "--supernet", help="Training run directory."),
    out: Path = typer.Option(..., "--out", help="Export directory."),
    arch: str | None = typer.Option(None, "--arch", help="Sub-network: JSON or a file (default: the whole model)."),
    fmt: str = typer.Option("safetensors", "--format", help="safetensors, onnx, hf or litgpt (gpt family)."),
) -> None:
    """Extract a sub-network as a dense model and export it (checked against torch after writing)."""
    from latbench.supernet.evaluate import extract_sub_network
    from latbench.supernet.train import load_trained

    trained = load_trained(supernet)
    result = extract_sub_network(trained, _load_arch_for(arch, trained), out, fmt)  # type: ignore[arg-type]
    check = "" if result.max_abs_diff is None else f", max abs diff {result.max_abs_diff:.2g} after reloading"
    console.print(f"wrote {result.arch.describe()} as {fmt} to {out} ({', '.join(result.files)}{check})")
    for note in result.notes:
        console.print(f"note: {note}")


def compress(
    checkpoint: Path = typer.Argument(..., help="Run directory, .pt checkpoint or .safetensors state dict."),
    out: Path = typer.Option(..., "--out", help="Compact checkpoint file (.safetensors)."),
    keep: list[str] = typer.Option(
        [],
        "--keep",
        help="Name pattern kept at full precision (repeatable; default: optimizer, scheduler, norms, biases).",
    ),
    half_below: int = typer.Option(256, "--half-below", help="Tensors with fewer elements are stored in 16 bits."),
    reference: Path | None = typer.Option(None, "--reference", help="Store int8 tensors as a delta to this."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Store a checkpoint as per-channel int8 with scales; print sizes and per-tensor relative error."""
    from latbench.checkpoints.compact import DEFAULT_KEEP, CompressConfig, compress_file

    config = CompressConfig(keep=tuple(keep) or DEFAULT_KEEP, half_below=half_below)
    report = compress_file(checkpoint, out, config, reference)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    for t in report.tensors:
        delta = " (delta)" if t.delta else ""
        console.print(
            f"{t.name:60s} {t.kind:5s} {t.bytes_before:>12,} -> {t.bytes_after:>12,}  rel err {t.rel_error:.2e}{delta}"
        )
    console.print(
        f"total {report.bytes_before:,} -> {report.bytes_after:,} bytes of tensors; file {report.file_bytes:,} bytes; "
        f"model weights at {100 * report.weight_ratio:.1f}% of their size; max rel err {report.max_rel_error:.2e}"
    )
