"""Latency-aware pruning of a ViT on scikit-learn's digits, and the pruner's throughput. Prints markdown.

The experiment of issue 7 (``latbench.pruning.workflow.run_digits_task``):

1. train a dense digits ViT (4 blocks of 4 heads x 16, MLP 128, width 64);
2. measure a block LUT for it on this CPU with latbench's profiler (torch eager, fp32,
   batch 32, 1 thread, each group of points interleaved with a reference block; or ``--lut FILE``);
3. prune it NViT's way (Taylor method 23, latency regulariser, global ranking, distillation
   from the unpruned model) to ``--latency-target`` of its LUT latency, then fine-tune;
4. prune the same baseline without the latency term, stopped at the same parameter count,
   and (``--same-latency``) at the same LUT latency, fine-tune both;
5. measure the baseline and the pruned models interleaved on this CPU.

The same run from the command line (what the library call does, step by step)::

    latbench prune --model vit-digits --lut measure --latency-target 0.5 --latency-regularization 1 \\
        --normalize --importance taylor23 --momentum 0.5 --prune-per-iter 16 --interval-prune 10 \\
        --granularity emb=8,qk=4,v=4,mlp=8 --steps 3000 --out runs/latency
    latbench finetune runs/latency --steps 800
    latbench prune --model runs/latency/baseline.pt --lut runs/latency/lut.json \\
        --params-target <params of runs/latency> --latency-regularization 0 ... --out runs/params

Throughput: milliseconds per training batch with and without the pruner's masks and
importance, per pruning step, and the pruner's overhead on a DeiT-B-sized model with
NViT's own LUT.

    python benchmarks/pruning_digits.py                    # about 5 minutes on one CPU thread
    python benchmarks/pruning_digits.py --out runs/digits  # keep the job directories
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _ms(fn, n: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e3


def throughput(lut_path: str | None, nvit_lut: Path | None) -> str:
    """Markdown table: training batch with/without the pruner, pruning step, DeiT-B-sized pruner overhead."""
    import torch

    from latbench.models.build import build_model
    from latbench.pruning import LatencyCost, PruneConfig, Pruner, load_lut
    from latbench.pruning.digits import digits_arch, digits_data
    from latbench.pruning.loop import distill_loss
    from latbench.space.arch import Arch

    rows = []
    arch = digits_arch()
    train_set, _, _ = digits_data()
    x, y = train_set.tensors[0][:64], train_set.tensors[1][:64]

    def batch(model: torch.nn.Module, pruner: Pruner | None = None) -> None:
        loss = distill_loss(model(x), None, y, 0.0, 1.0)
        model.zero_grad()
        loss.backward()
        if pruner is not None:
            pruner.accumulate(float(loss.detach()))

    plain = build_model(arch).train()
    rows.append(("digits ViT", "training batch (64 images), no pruner", _ms(lambda: batch(plain), 30)))
    masked = build_model(arch).train()
    latency = LatencyCost(load_lut(lut_path), arch) if lut_path else None
    cfg = PruneConfig(
        latency_target=0.5 if latency else None,
        params_target=None if latency else 1,
        latency_regularization=1.0 if latency else 0.0,
        normalize=True,
        prune_per_iter=16,
        interval_prune=1,
    )
    pruner = Pruner(masked, cfg, latency)
    rows.append(("digits ViT", "training batch + masks + Taylor-23 importance", _ms(lambda: batch(masked, pruner), 30)))

    def one_step() -> None:
        pruner.accumulate(1.0)
        pruner.step()

    rows.append(("digits ViT", "pruning step (rank 720 units, LUT gains, remove 16)", _ms(one_step, 10)))
    if nvit_lut is not None and nvit_lut.is_file():
        deit = Arch.uniform_arch("vit", 768, 12, 12, 64, 3072)
        model = build_model(deit)
        gen = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=gen)
        big = Pruner(
            model,
            PruneConfig(latency_target=0.5, latency_regularization=5e-4, prune_per_iter=50, interval_prune=1),
            LatencyCost(load_lut(nvit_lut), deit),
        )
        rows.append(("DeiT-B shape, NViT LUT", "Taylor-23 importance of one batch (49 groups)", _ms(big.accumulate, 3)))

        def big_step() -> None:
            big.accumulate()
            big.step()

        rows.append(("DeiT-B shape, NViT LUT", "pruning step (40,000 units, remove 50)", _ms(big_step, 3)))
    lines = ["| model | what | ms |", "| --- | --- | ---: |"]
    lines += [f"| {m} | {w} | {v:.1f} |" for m, w, v in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="Keep the job directories here (default: a temp dir).")
    parser.add_argument("--latency-target", type=float, default=0.5)
    parser.add_argument("--latency-regularization", type=float, default=1.0, help="λ (normalised scores).")
    parser.add_argument("--lut", default="measure", help="A LUT for the digits ViT, or 'measure' (default).")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-same-latency", action="store_true", help="Skip the same-LUT-latency comparison.")
    parser.add_argument("--nvit-lut", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "fixtures"
                        / "nvit" / "latency_head.json")  # fmt: skip
    args = parser.parse_args()

    import torch

    from latbench.pruning.workflow import report_markdown, run_digits_task

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"<!-- [{time.perf_counter() - t0:6.1f} s] {msg} -->", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        report = run_digits_task(
            out,
            latency_target=args.latency_target,
            latency_regularization=args.latency_regularization,
            lut=args.lut,
            threads=args.threads,
            same_latency=not args.no_same_latency,
            log=log,
        )
        print("### Latency-aware pruning of a digits ViT\n")
        print(report_markdown(report))
        aware = report["rows"][1]
        ok = aware["measured_ratio"] <= args.latency_target + 0.10
        print(
            f"\nMeasured latency ratio of the latency-aware model: {aware['measured_ratio']:.3f} "
            f"({'within' if ok else 'NOT within'} target + 0.10 = {args.latency_target + 0.10:.2f}).\n"
        )
        lut_path = str(out / "latency" / "lut.json") if args.lut == "measure" else args.lut
        print("### Pruning throughput (1 thread)\n")
        print(throughput(lut_path, args.nvit_lut))


if __name__ == "__main__":
    main()
