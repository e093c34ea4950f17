"""The plain command, twice: how far apart are two runs of `latbench profile` with its defaults?

Runs the profile command exactly as a user types it (a subprocess of the CLI, its defaults for
everything not given) two or more times into fresh stores, optionally ``--gap-s`` seconds apart,
and reports per architecture the relative difference of the medians between consecutive runs,
|a - b| / mean(a, b): its mean and max, the shift common to all architectures, the CPU reference
workload's own shift, and the wall time of each run. With ``--normalise-drift`` on the profile
command, the drift-corrected medians are compared too.

    python benchmarks/rerun.py                                   # the issue's command, back to back
    python benchmarks/rerun.py --gap-s 3600                      # an hour apart
    python benchmarks/rerun.py -- --samples 6 --seed 3 --no-blocks --threads 2   # other flags
    python benchmarks/rerun.py --label "3600 s apart" --write    # into RESULTS.md (section rerun-cpu)
    python benchmarks/rerun.py --runs 1 --keep D                 # one run now ...
    python benchmarks/rerun.py --keep D --resume --write         # ... the next one later (the gap as measured)

With ``--resume`` the runs whose stores are already in the ``--keep`` folder are read instead of
measured, so two runs far apart can be two invocations with the machine free in between; the
row's label then gives the gap between the runs' starts as the stores' timestamps say.

The section keeps one table row per labelled invocation (a later run with the same label replaces it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: The command of issue 17: a new user's profile of 6 bert architectures, defaults for everything else.
DEFAULT_ARGS = [
    "--space", "bert", "--device", "cpu", "--backend", "torch", "--batch", "1", "--seq", "128",
    "--samples", "6", "--seed", "3", "--no-blocks",
]  # fmt: skip


def rel_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b) / ((a + b) / 2)


def shift(a: np.ndarray, b: np.ndarray) -> float:
    """The change from one run to the next common to all architectures (median ratio - 1), percent."""
    return 100 * (float(np.median(b / a)) - 1)


def run_profile(args: list[str], out: Path) -> tuple[float, list[float], list[float]]:
    """One run of the CLI; returns (wall s, load before, load after)."""
    cmd = [sys.executable, "-m", "latbench", "profile", *args, "--out", str(out)]
    load_before = list(os.getloadavg())
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"profile failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "", flush=True)
    return wall, load_before, list(os.getloadavg())


def read(out: Path) -> dict[str, dict]:
    import pandas as pd

    df = pd.read_parquet(out)
    df = df[df["scope"] == "model"]
    return {r["arch"]: r for r in df.to_dict("records")}


def compare(rows: list[dict[str, dict]], column: str) -> dict[str, float] | None:
    archs = sorted(rows[0])
    if any(column not in next(iter(r.values())) for r in rows):
        return None
    diffs, shifts = [], []
    for r1, r2 in itertools.pairwise(rows):
        a = np.array([r1[k][column] for k in archs], dtype=float)
        b = np.array([r2[k][column] for k in archs], dtype=float)
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            return None
        diffs.append(rel_diff(a, b))
        shifts.append(shift(a, b))
    d = np.concatenate(diffs)
    return {"mean": 100 * float(d.mean()), "max": 100 * float(d.max()), "shift": float(np.mean(shifts))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--gap-s", type=float, default=0.0, help="seconds between the end of a run and the next")
    ap.add_argument("--label", default=None, help="the row's name in RESULTS (default: the gap)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the stores in this folder")
    ap.add_argument("--write", action="store_true", help="add the row to RESULTS.md's section rerun-cpu")
    ap.add_argument("--resume", action="store_true", help="read the runs already in --keep instead of measuring")
    ap.add_argument("profile_args", nargs="*", help="after --: the profile command's flags (default: issue 17's)")
    args = ap.parse_args()
    extra = args.profile_args or DEFAULT_ARGS

    if args.resume and args.keep is None:
        raise SystemExit("--resume reads the runs kept in --keep: give it")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="latbench-rerun-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows, walls, loads = [], [], []
    started = time.strftime("%H:%M", time.gmtime())
    for i in range(args.runs):
        out = folder / f"run{i}.parquet"
        if args.resume and out.exists():
            rows.append(read(out))
            walls.append(math.nan)
            loads.append((math.nan, math.nan))
            print(f"run {i}: read from {out}", flush=True)
            continue
        if i and args.gap_s:
            print(f"waiting {args.gap_s:.0f} s", flush=True)
            time.sleep(args.gap_s)
        if out.exists():
            out.unlink()
        wall, lb, la = run_profile(extra, out)
        walls.append(wall)
        loads.append((lb[0], la[0]))
        rows.append(read(out))
        print(f"run {i}: {wall:.0f} s, load {lb[0]:.2f} -> {la[0]:.2f}", flush=True)
    if len(rows) < 2:
        print(f"{len(rows)} run kept in {folder}; compare with a later one: --keep {folder} --resume")
        return
    protocols = {str(next(iter(run.values())).get("protocol")) for run in rows}
    if len(protocols) != 1:
        raise SystemExit("the runs were measured with different protocols (a reference workload, say): not comparable")
    starts = [min(float(r["timestamp"]) for r in run.values()) for run in rows]
    started = time.strftime("%H:%M", time.gmtime(starts[0]))
    if len({frozenset(r) for r in rows}) != 1:
        raise SystemExit("the runs measured different architectures")

    raw = compare(rows, "median_ms")
    ref = compare(rows, "ref_ms")
    corrected = compare(rows, "median_ms_normalised")
    n = len(rows[0])
    unstable = sum(bool(r["unstable"]) for run in rows for r in run.values())
    first = next(iter(rows[0].values()))
    placement = json.loads(first["placement"]) if isinstance(first.get("placement"), str) else {}
    gap = float(np.mean(np.diff(starts)))
    label = args.label or ("back to back" if not args.gap_s and not args.resume else f"{gap:.0f} s apart (starts)")
    cells = [
        label,
        started,
        f"`{' '.join(extra)}`",
        f"{raw['mean']:.2f}%",
        f"{raw['max']:.2f}%",
        f"{raw['shift']:+.2f}%",
        "n/a" if ref is None else f"{ref['shift']:+.2f}%",
        "-" if corrected is None else f"{corrected['mean']:.2f}% / {corrected['max']:.2f}%",
        " / ".join("-" if math.isnan(w) else f"{w:.0f}" for w in walls),
        " / ".join("-" if math.isnan(a) else f"{a:.2f}→{b:.2f}" for a, b in loads),
        f"{len(rows) * n - unstable}/{len(rows) * n}",
        placement.get("summary", "-"),
    ]
    line = "| " + " | ".join(cells) + " |"
    print(line)
    for i, run in enumerate(rows[1:], 1):
        ratios = [run[k]["median_ms"] / rows[i - 1][k]["median_ms"] for k in sorted(run)]
        print(f"run {i} / run {i - 1} per architecture:", np.round(ratios, 4).tolist())
    if args.write:
        write_row(label, line)


HEAD = (
    "| runs | started (UTC) | profile flags | rerun difference, mean | max | common shift | reference's shift "
    "| with --normalise-drift: mean / max | wall s per run | load (1 min) before→after | stable rows "
    "| placement |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def write_row(label: str, line: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _results import RESULTS, write_section

    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    m = re.search(r"<!-- rerun-cpu:start -->(.*?)<!-- rerun-cpu:end -->", text, re.S)
    kept, notes = [], ""
    if m:
        lines = m.group(1).splitlines()
        kept = [ln for ln in lines if ln.startswith("| ") and not ln.startswith(("| runs", "| ---"))]
        kept = [ln for ln in kept if ln.split("|")[1].strip() != label]
        # What was written under the table by hand (the reading of the rows) stays under it.
        last = max((i for i, ln in enumerate(lines) if ln.startswith("| ")), default=len(lines))
        notes = "\n".join(lines[last + 1 :]).strip()
    body = (
        "The plain `latbench profile` command (issue 17: 6 bert architectures, whole models, every protocol and "
        "placement option at its default) run twice into fresh stores; per architecture |a - b| / mean(a, b) of "
        "the medians. One row per invocation of `benchmarks/rerun.py`.\n\n" + HEAD + "\n" + "\n".join([*kept, line])
    )
    if notes:
        body += "\n\n" + notes
    write_section("rerun-cpu", "The default profile command, run twice (cpu)", body, "python benchmarks/rerun.py")


if __name__ == "__main__":
    main()
