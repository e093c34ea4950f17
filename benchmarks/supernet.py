"""Super-net training strategies at an equal budget, and compact checkpoints. Prints markdown.

The experiment of issue 8 (``latbench.supernet.compare.compare_strategies``):

1. two tasks that need no download: a ViT super-net classifying scikit-learn's digits, and a BERT
   super-net trained with masked-LM on the default text corpus (docstrings of the standard library);
2. each trained three times from the same initial weights and batches - ``standard`` (the whole
   super-net each step), ``random`` (2 sampled sub-networks each step), ``sandwich`` (largest, 2
   sampled, smallest) - with the same number of sub-network forward/backward passes (the compute
   budget; ``standard`` so gets 4x and ``random`` 2x the optimiser steps of ``sandwich``);
3. the same sub-networks of every run evaluated on the validation split: the smallest, four random
   ones and the largest of the search space, with the super-net's shared weights (no fine-tuning);
4. the sandwich run's checkpoint (model + AdamW state) stored as a compact int8 checkpoint
   (``latbench compress``): sizes, per-tensor error, and the dequantised super-net's outputs and
   validation quality against the original's.

The same runs from the command line (one of six)::

    latbench train-supernet --space vit --strategy sandwich --scale 0.25 --steps 150 --batch-size 64 \\
        --threads 1 --out runs/vit/sandwich
    latbench evaluate --supernet runs/vit/sandwich --arch ARCH.json
    latbench compress runs/vit/sandwich --out vit.compact.safetensors

    taskset -c 1 python benchmarks/supernet.py --write      # about 6 minutes of one CPU thread
    python benchmarks/supernet.py --quick                   # a few steps: checks the script runs
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Any

#: name -> (space preset, scale, sandwich steps, sequence length (text), title).
TASKS: dict[str, tuple[str, float, int, int | None, str]] = {
    "digits": ("vit", 0.25, 150, None, "ViT on scikit-learn's digits (classification)"),
    "text": ("bert", 0.25, 120, 32, "BERT masked LM on the default text corpus (stdlib docstrings)"),
}
BATCH = 64
N_RANDOM_PROBES = 4


def _config(space: str, scale: float, steps: int, seq_len: int | None) -> Any:
    from latbench.supernet.setup import make_train_config
    from latbench.supernet.spaces import SpaceCaps

    return make_train_config(
        space,
        strategy="sandwich",
        caps=SpaceCaps(scale),
        seq_len=seq_len,
        steps=steps,
        batch_size=BATCH,
        warmup_steps=max(1, steps // 20),
        num_random=2,
        checkpoint_every=steps,
        seed=0,
    )


def _fmt_quality(row: dict[str, Any]) -> str:
    return f"{row['loss']:.3f} / {100 * row['accuracy']:.1f}%"


def strategy_table(rows: list[dict[str, Any]], seconds: dict[str, float]) -> str:
    """Markdown: one row per probed sub-network, one column per strategy (validation loss / accuracy)."""
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    archs = list(dict.fromkeys(r["arch"] for r in rows))
    by = {(r["strategy"], r["arch"]): r for r in rows}
    steps = {s: next(r["steps"] for r in rows if r["strategy"] == s) for s in strategies}
    passes = {s: next(r["passes"] for r in rows if r["strategy"] == s) for s in strategies}
    head = " | ".join(f"{s} ({steps[s]} steps)" for s in strategies)
    out = [f"| sub-network | params | {head} |", "|---|--:|" + "--:|" * len(strategies)]
    for i, arch in enumerate(archs):
        label = "smallest" if i == 0 else ("largest" if i == len(archs) - 1 else "random")
        cells = []
        best = min(by[(s, arch)]["loss"] for s in strategies)
        for s in strategies:
            text = _fmt_quality(by[(s, arch)])
            cells.append(f"**{text}**" if by[(s, arch)]["loss"] == best else text)
        out.append(f"| {label} `{arch}` | {by[(strategies[0], arch)]['params']:,} | " + " | ".join(cells) + " |")
    means = []
    for s in strategies:
        mine = [by[(s, a)] for a in archs]
        loss = sum(r["loss"] for r in mine) / len(mine)
        acc = sum(r["accuracy"] for r in mine) / len(mine)
        means.append(f"{loss:.3f} / {100 * acc:.1f}%")
    out.append("| mean over the sub-networks | | " + " | ".join(means) + " |")
    worst = []
    for s in strategies:
        w = max((by[(s, a)] for a in archs), key=lambda r: r["loss"])
        worst.append(f"{w['loss']:.3f} / {100 * w['accuracy']:.1f}%")
    out.append("| worst sub-network | | " + " | ".join(worst) + " |")
    out.append(
        "| passes / training seconds | | " + " | ".join(f"{passes[s]} / {seconds[s]:.0f} s" for s in strategies) + " |"
    )
    return "\n".join(out)


def compression(run_dir: Path, probes: list[Any], work: Path) -> dict[str, Any]:
    """Compress the run's checkpoint (model + optimiser); errors of the dequantised super-net's sub-networks."""
    import torch

    from latbench.checkpoints.compact import compress_checkpoint, load_checkpoint_file, load_compressed
    from latbench.supernet.evaluate import evaluate_subnet
    from latbench.supernet.train import CHECKPOINT_FILE, load_trained, task_data

    trained = load_trained(run_dir)
    state = load_checkpoint_file(run_dir)
    out = work / f"{run_dir.parent.name}.compact.safetensors"
    report = compress_checkpoint(state, out)
    restored_state = load_compressed(out)
    restored = copy.deepcopy(trained.model)
    restored.load_state_dict(restored_state["model"])
    restored.eval()
    _, val_set, _ = task_data(trained.config.data)
    x = val_set.tensors[0][:256]
    rel_errors, quality = [], []
    with torch.no_grad():
        for arch in (probes[0], probes[-1]):
            trained.model.set_sub_network(arch)
            restored.set_sub_network(arch)
            a, b = trained.model(x), restored(x)
            rel_errors.append(float((b - a).norm() / a.norm()))
            before = evaluate_subnet(trained.model, arch, data=trained.config.data)
            after = evaluate_subnet(restored, arch, data=trained.config.data)
            quality.append((before, after))
        trained.model.reset_super_network()
    optimizer_exact = all(
        torch.equal(restored_state["optimizer"]["state"][k][n], v)
        for k, st in state["optimizer"]["state"].items()
        for n, v in st.items()
        if torch.is_tensor(v)
    )
    return {
        "report": report,
        "pt_bytes": (run_dir / CHECKPOINT_FILE).stat().st_size,
        "file_bytes": out.stat().st_size,
        "rel_errors": rel_errors,
        "quality": quality,
        "optimizer_exact": optimizer_exact,
    }


def compression_table(results: dict[str, dict[str, Any]]) -> str:
    out = [
        "| task | model weights fp32 → stored | weight ratio | checkpoint.pt → compact file (with AdamW state) "
        "| max per-tensor rel. error | output rel. L2 error, smallest / largest | val loss smallest / largest, "
        "before → after |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for task, r in results.items():
        rep = r["report"]
        weights = [t for t in rep.tensors if t.name.startswith("model/")]
        before = sum(t.bytes_before for t in weights)
        after = sum(t.bytes_after for t in weights)
        q = " / ".join(f"{b.loss:.4f} → {a.loss:.4f}" for b, a in r["quality"])
        out.append(
            f"| {task} | {before / 1e6:.2f} MB → {after / 1e6:.2f} MB | {100 * rep.weight_ratio:.1f}% | "
            f"{r['pt_bytes'] / 1e6:.2f} MB → {r['file_bytes'] / 1e6:.2f} MB | {rep.max_rel_error:.2e} | "
            + " / ".join(f"{100 * e:.2f}%" for e in r["rel_errors"])
            + f" | {q} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="Write the section of benchmarks/RESULTS.md.")
    parser.add_argument("--quick", action="store_true", help="A few steps per run: checks that the script runs.")
    parser.add_argument("--out", type=Path, default=None, help="Keep the run directories here.")
    args = parser.parse_args()

    import torch

    from latbench.supernet.compare import compare_strategies, probe_archs
    from latbench.supernet.train import SUMMARY_FILE

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="latbench-supernet-bench-")
    root = args.out or Path(tmp.name)
    sections, compressed = [], {}
    for task, (space, scale, steps, seq_len, title) in TASKS.items():
        config = _config(space, scale, 4 if args.quick else steps, seq_len)
        probes = probe_archs(config, n_random=N_RANDOM_PROBES, seed=1234)
        t0 = time.perf_counter()
        rows = compare_strategies(config, root / task, budget="passes", archs=probes, split="val")
        seconds = {
            s: float(json.loads((root / task / s / SUMMARY_FILE).read_text())["seconds"])
            for s in ("standard", "random", "sandwich")
        }
        print(f"{task}: trained and evaluated in {time.perf_counter() - t0:.0f} s", flush=True)
        sections.append(
            f"**{title}** — super-net `{config.supernet.describe()}`, space {config.space.name} at scale {scale} "
            f"(smallest `{config.space.min_arch().describe()}`); validation loss (nats) / accuracy "
            f"({'images' if space == 'vit' else 'masked tokens'}), the best per row in bold.\n\n"
            + strategy_table(rows, seconds)
        )
        compressed[task] = compression(root / task / "sandwich", probes, root)
    total = time.perf_counter() - t_start
    body = "\n\n".join(sections)
    body += (
        "\n\n**Compact checkpoints** of the two sandwich runs (`latbench compress`: per-channel int8, norms, "
        "biases and optimiser state kept, small tensors fp16):\n\n" + compression_table(compressed)
    )
    body += _notes(total)
    print(body)
    if args.write and not args.quick:
        from _results import write_section  # the sibling module: this script runs as benchmarks/supernet.py

        write_section(
            "supernet",
            "Super-net training strategies at an equal budget, and compact checkpoints (CPU)",
            body,
            command="taskset -c 1 python benchmarks/supernet.py --write",
        )
    tmp.cleanup()


def _notes(total_s: float) -> str:
    return (
        "\n\nEvery run starts from the same initial weights (seed 0) and sees the same batches; the budget is "
        "equal sub-network passes (batch 64), so `standard` takes 4x and `random` 2x the optimiser steps of "
        "`sandwich` (2 random sub-networks per step). Evaluation: the sub-networks keep the super-net's "
        "shared weights (no fine-tuning, no re-calibration; LayerNorm has no running statistics). "
        f"The whole benchmark took {total_s:.0f} s wall time on one thread, pinned to core 1 of 2 (core 0 runs "
        "latency benchmarks); the machine is shared and was loaded (other jobs ran on core 1 too), so the training "
        "seconds compare strategies only roughly. One seed per run: differences of a few hundredths of a nat "
        "lie within what another seed would change."
    )


if __name__ == "__main__":
    main()
