"""The shipped CPU look-up tables: how long they took to build, and how well a LUT sum predicts whole models.

For each table: grid size, coverage (stable / unstable / missing points), build time (the wall time
of its measurements in the result store the build wrote), and value range. Then the bert table is
judged against whole bert models measured on the same CPU and deployment (``datasets/``): the plain sum
of block latencies, the fit ``a·Σ + b·n + c`` (overhead alone) and the full fit with the non-block term
``+ d·rest_gflop`` (embeddings and the MLM head), each fitted on the first 500 architectures and judged
on up to 200 others.

    python benchmarks/lut_cpu.py --write
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
TABLES = (
    ("lookup_tables/bert_cpu_b1_s128.json", "runs/cpu/lut_bert.parquet"),
    ("lookup_tables/vit_cpu_b1.json", "runs/cpu/lut_vit.parquet"),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="datasets/bert_cpu_b1_s128.parquet", help="Whole bert models (a store).")
    ap.add_argument("--train", type=int, default=500)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    from latbench.lut.latency_model import LutSumModel, accuracy, lut_features
    from latbench.lut.table import LookupTable
    from latbench.profiling.store import read_store
    from latbench.space import Arch

    lines = [
        "| table | grid | coverage (stable / unstable / missing) | build time | values |",
        "| --- | --- | --- | --: | --- |",
    ]
    for path, store in TABLES:
        table = LookupTable.load(ROOT / path)
        cov = table.coverage()
        build = "-"
        if (ROOT / store).is_file():
            frame = read_store(ROOT / store)
            build = f"{frame['wall_s'].sum() / 60:.1f} min" if "wall_s" in frame else "-"
        grid = " × ".join(f"{a.name} {len(a.values)}" for a in table.axes)
        vals = table.values[np.isfinite(table.values)]
        lines.append(
            f"| `{path}` | {grid} = {table.values.size} | {cov.stable} / {cov.unstable} / {cov.missing} | {build} | "
            f"{vals.min():.3g} to {vals.max():.3g} ms |"
        )

    table = LookupTable.load(ROOT / TABLES[0][0])
    frame = read_store(ROOT / args.models)
    frame = frame[frame["scope"] == "model"].reset_index(drop=True)
    archs = [Arch.from_json(a) for a in frame["arch"]]
    measured = frame["median_ms"].to_numpy(np.float64)
    train = slice(0, min(args.train, len(archs) - 1))
    test = slice(train.stop, min(len(archs), train.stop + args.test))
    sums, counts, rest = lut_features(table, archs)
    full = LutSumModel.fit(sums[train], counts[train], measured[train], rest[train])
    overhead = LutSumModel.fit(sums[train], counts[train], measured[train])
    rows = [
        ("plain sum of blocks", accuracy(sums[test], measured[test])),
        ("a·Σ + b·n + c", accuracy(overhead.predict(sums[test], counts[test]), measured[test])),
        ("a·Σ + b·n + c + d·rest_gflop", accuracy(full.predict(sums[test], counts[test], rest[test]), measured[test])),
    ]
    lines += [
        "",
        f"LUT-sum on whole bert models (`{args.models}`, the same CPU and deployment): fitted on "
        f"{train.stop} architectures, judged on {test.stop - test.start} others. Full fit: a={full.a:.3f}, "
        f"b={full.b:.3f} ms/block, c={full.c:.3f} ms, d={full.d:.3f} ms/GFLOP.",
        "",
        "| model | test MAPE | ±10% | max APE |",
        "| --- | --: | --: | --: |",
    ]
    for name, acc in rows:
        lines.append(f"| {name} | {acc.mape:.2f}% | {100 * acc.within_10pct:.1f}% | {acc.max_ape:.1f}% |")
    body = "\n".join(lines)
    print(body)
    if args.write:
        from _results import write_section

        write_section("lut-cpu", "Look-up tables measured on this CPU, and LUT-sum against whole models", body)


if __name__ == "__main__":
    main()
