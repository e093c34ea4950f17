"""Side by side with the peers: latbench, optimum-benchmark and a timeit loop on the same four BERTs, twice.

Four ``transformers`` BERT encoders of the BERT-tiny/mini/small/medium shapes (random weights,
``BertModel.save_pretrained`` into a temporary folder, nothing downloaded: ``HF_HUB_OFFLINE=1``)
are measured at batch 1, sequence 128, on the CPU, one thread, by four tools, each as its users
run it:

- ``latbench measure`` with ``--backend torch`` and with ``--backend onnxruntime``: the CLI in a
  subprocess, ``--threads 1 --normalise-drift --json``, every protocol option at its default (no
  protocol flag is given, so the figure follows the defaults of the latbench that runs it). The same
  runs are reported twice: as measured (``median_ms``), and at one fixed speed of the machine
  (``median_ms_normalised``: the median times the reference workload's time in this benchmark's
  first latbench measurement over its time in this one's rounds; rows named ``--normalise-drift``).
  The model is given as ``benchmarks/_peers_factory.py:bert``, a factory that loads the saved folder.
- optimum-benchmark's inference scenario, PyTorch backend, ``device="cpu"``, the saved folder as
  the model, ``input_shapes`` batch 1 / sequence 128 and every other scenario setting at its
  default (10 warm-up forwards, then forwards until both 10 iterations and 10 s are reached, one
  ``perf_counter`` pair per forward); its ``p50`` is the median. Launched ``inline`` in a
  subprocess of this script (its ``process`` launcher would only add a second interpreter).
- a plain ``timeit`` loop, as the field writes one: the model loaded by ``from_pretrained``,
  10 warm-up calls under ``torch.inference_mode()``, ``Timer.autorange()`` to pick the loop
  length, then ``repeat(5, number)``; the median of the five per-call means.

Every measurement is its own process (so a tool's wall time includes what a user waits for:
interpreter start, imports, model load, export or warm-up), pinned to one CPU (``--cpu``, default
the last CPU of this process's affinity mask) with ``OMP_NUM_THREADS=1`` and ``MKL_NUM_THREADS=1``
and each tool's own thread setting at 1. A pass runs every model through every tool (models in
order, tools interleaved within a model, so slow drift hits all tools alike); pass 2 follows pass 1.

Reported per tool: the rerun difference between the passes, |a - b| / mean(a, b) of the medians,
mean and max over the models; each median; its ratio to latbench torch's median in the same pass
(agreement across tools); and the wall time per model (mean over models and passes). The target
of issue 17: latbench's rerun difference the lowest of all, at a wall time no worse than twice
optimum-benchmark's. A tool whose package is not importable is skipped, with the reason.

    /tmp/peers-venv/bin/python benchmarks/peers.py                   # the full run (about 8 min on a quiet machine)
    /tmp/peers-venv/bin/python benchmarks/peers.py --quick           # plumbing: the smallest model, short runs
    /tmp/peers-venv/bin/python benchmarks/peers.py --write           # into RESULTS.md (section peers-cpu)

The peers live in a venv of their own, so that latbench's stays clean (torch first, so that pip
keeps the CPU build; optimum-benchmark 0.6.0 imports ``transformers.SpecialTokensMixin``, which
transformers 5 removed, hence ``transformers<5`` and the ``datasets`` that goes with its hub)::

    python3 -m venv /tmp/peers-venv
    /tmp/peers-venv/bin/pip install torch==2.13.0
    /tmp/peers-venv/bin/pip install optimum-benchmark -e '.[onnx,hf]'
    /tmp/peers-venv/bin/pip install 'transformers<5' 'datasets>=4,<5'

Run from latbench's own venv, the optimum-benchmark row is skipped (not installed).

``--quick`` shortens the peers' runs (optimum-benchmark ``duration=1``, timeit 2 repeats) and measures
only BERT-tiny; latbench keeps its defaults. Its figures check the plumbing and mean nothing else.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FACTORY = HERE / "_peers_factory.py"
BATCH, SEQ, VOCAB = 1, 128, 30522

#: name -> (layers, hidden); heads = hidden / 64, intermediate = 4 * hidden (the BERT-tiny..medium shapes).
MODELS: dict[str, tuple[int, int]] = {
    "bert-tiny (L2/H128)": (2, 128),
    "bert-mini (L4/H256)": (4, 256),
    "bert-small (L4/H512)": (4, 512),
    "bert-medium (L8/H512)": (8, 512),
}
TOOLS = ("latbench torch", "latbench onnxruntime", "optimum-benchmark", "timeit")
REFERENCE = "latbench torch"
LATBENCH_TOOLS = ("latbench torch", "latbench onnxruntime")
#: latbench's rows again, from the same runs: the medians at one fixed machine speed (``--normalise-drift``).
NORMALISED = " --normalise-drift"
PEER_OF_WALL = "optimum-benchmark"


# --------------------------------------------------------------------------- pure helpers


def rel_diff(a: list[float], b: list[float]) -> np.ndarray:
    """|a - b| / mean(a, b), elementwise: the rerun difference of two passes' medians."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.abs(x - y) / ((x + y) / 2)


def agreement(tool: list[float], reference: list[float]) -> np.ndarray:
    """Each median relative to the reference tool's, minus 1."""
    return np.asarray(tool, dtype=float) / np.asarray(reference, dtype=float) - 1


# --------------------------------------------------------------------------- children (one measurement each)


def save_models(folder: Path, names: list[str], seed: int) -> dict[str, Path]:
    """Save a randomly initialised ``BertModel`` of each shape into ``folder``; returns name -> directory."""
    import torch
    from transformers import BertConfig, BertModel

    out = {}
    for i, name in enumerate(names):
        layers, hidden = MODELS[name]
        torch.manual_seed(seed + i)
        config = BertConfig(
            vocab_size=VOCAB,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=hidden // 64,
            intermediate_size=4 * hidden,
            max_position_embeddings=512,
        )
        path = folder / f"bert-L{layers}-H{hidden}"
        BertModel(config).eval().save_pretrained(path)
        out[name] = path
    return out


def child_optimum(model_dir: str, quick: bool) -> dict:
    """optimum-benchmark's inference scenario on ``model_dir``; returns its median (p50) and sample count."""
    import torch
    from optimum_benchmark import Benchmark, BenchmarkConfig, InferenceConfig, InlineConfig, PyTorchConfig
    from optimum_benchmark.logging_utils import setup_logging

    setup_logging(level="ERROR")
    torch.set_num_threads(1)
    scenario = InferenceConfig(
        latency=True,
        memory=False,
        input_shapes={"batch_size": BATCH, "sequence_length": SEQ},
        **({"duration": 1} if quick else {}),
    )
    config = BenchmarkConfig(
        name="peers",
        launcher=InlineConfig(),
        scenario=scenario,
        backend=PyTorchConfig(model=model_dir, device="cpu", no_weights=False),
        log_report=False,
        print_report=False,
    )
    report = Benchmark.launch(config)
    lat = report.forward.latency  # seconds, one perf_counter pair per forward
    return {
        "median_ms": 1e3 * float(lat.p50),
        "n": int(lat.count),
        "threads": torch.get_num_threads(),
        "settings": f"iterations {scenario.iterations}, duration {scenario.duration} s, warmup {scenario.warmup_runs}",
    }


def child_timeit(model_dir: str, quick: bool) -> dict:
    """The plain loop: autorange, then ``repeat`` timings of ``number`` calls; median of per-call means."""
    import timeit

    import torch
    from transformers import BertModel

    torch.set_num_threads(1)
    model = BertModel.from_pretrained(model_dir, local_files_only=True).eval()
    gen = torch.Generator().manual_seed(0)
    inputs = {
        "input_ids": torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen),
        "attention_mask": torch.ones(BATCH, SEQ, dtype=torch.long),
        "token_type_ids": torch.randint(0, 2, (BATCH, SEQ), generator=gen),
    }
    repeats = 2 if quick else 5
    with torch.inference_mode():
        for _ in range(10):
            model(**inputs)
        timer = timeit.Timer(lambda: model(**inputs))
        number, _ = timer.autorange()
        loops = timer.repeat(repeat=repeats, number=number)
    per_call_ms = [1e3 * t / number for t in loops]
    return {
        "median_ms": float(np.median(per_call_ms)),
        "n": repeats * number,
        "threads": torch.get_num_threads(),
        "settings": f"autorange: {number} calls per loop, {repeats} loops",
    }


# --------------------------------------------------------------------------- the parent


@dataclass
class Outcome:
    """One tool's measurements: per pass, per model, the median (ms) and the child's wall time (s)."""

    tool: str
    skipped: str | None = None
    medians: list[dict[str, float]] = field(default_factory=lambda: [{}, {}])
    walls: list[dict[str, float]] = field(default_factory=lambda: [{}, {}])
    settings: str = ""
    failures: list[str] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)
    normalised: list[dict[str, float]] = field(default_factory=lambda: [{}, {}])

    def summary(self) -> str:
        """How the tool's runs went: sample counts, and for latbench how each measurement stopped."""
        ns = [int(r["n"]) for r in self.runs]
        text = f"n {min(ns)}–{max(ns)}" if ns else ""
        if self.tool.endswith(NORMALISED):
            return "the same runs, medians at the reference speed of the benchmark's first measurement"
        if self.tool.startswith("latbench") and self.runs:
            stops = [str(r.get("stop_reason")) for r in self.runs]
            counts = ", ".join(f"{s} {stops.count(s)}" for s in sorted(set(stops)))
            unstable = sum(bool(r.get("unstable")) for r in self.runs)
            threads = sorted({str(r.get("threads")) for r in self.runs})
            unstable_text = f"unstable {unstable}/{len(self.runs)}"
            return f"defaults; stopped: {counts}; {text}; {unstable_text}; threads {'/'.join(threads)}"
        return f"{self.settings}; {text}"


def missing(tool: str) -> str | None:
    """Why ``tool`` cannot run in this interpreter, or None."""
    need = {
        "latbench torch": ("latbench",),
        "latbench onnxruntime": ("latbench", "onnx", "onnxruntime"),
        "optimum-benchmark": ("optimum_benchmark",),
        "timeit": (),
    }[tool]
    absent = [m for m in need if importlib.util.find_spec(m) is None]
    return f"not installed here: {', '.join(absent)}" if absent else None


def child_env(model_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        # The drift anchor is this benchmark's own: set by its first latbench measurement, read by the others.
        LATBENCH_CACHE_DIR=str(model_dir.parent / "latbench-cache"),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        LATBENCH_PEERS_MODEL=str(model_dir),
    )
    return env


def command(tool: str, model_dir: Path, quick: bool) -> list[str]:
    if tool.startswith("latbench"):
        backend = tool.split()[1]
        inputs = [
            "--input",
            f"input_ids:{BATCH}x{SEQ}:int64:{VOCAB}",
            "--input",
            f"token_type_ids:{BATCH}x{SEQ}:int64:2",
        ]
        return [sys.executable, "-m", "latbench", "measure", f"{FACTORY}:bert", *inputs,
                "--device", "cpu", "--backend", backend, "--threads", "1", "--normalise-drift", "--json"]  # fmt: skip
    child = {"optimum-benchmark": "optimum", "timeit": "timeit"}[tool]
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        child,
        str(model_dir),
        *(["--quick"] if quick else []),
    ]


def run_child(tool: str, model_dir: Path, cpu: int, quick: bool) -> tuple[dict, float]:
    """Run one measurement pinned to ``cpu``; returns (its JSON, wall s)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        command(tool, model_dir, quick),
        env=child_env(model_dir),
        capture_output=True,
        text=True,
        check=False,
        cwd=HERE.parent,  # `-m latbench` then runs the latbench of this checkout, not another editable install
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )
    wall = time.perf_counter() - t0
    out = proc.stdout
    if proc.returncode != 0 or "{" not in out:
        tail = (proc.stderr.strip() or out.strip()).splitlines()[-3:]
        raise RuntimeError(f"exit {proc.returncode}: {' / '.join(tail)}")
    return json.loads(out[out.index("{") :]), wall


def cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat", encoding="ascii") as fh:
        vals = [int(v) for v in fh.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return (sum(vals[:8]) - idle) / ticks, sum(vals[:8]) / ticks


def process_cpu() -> dict[int, tuple[str, float]]:
    """pid -> (command, CPU seconds so far) of every process readable in /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as fh:
                stat = fh.read()
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(entry)] = (
            cmd or stat[stat.index("(") + 1 : stat.rindex(")")],
            (int(fields[11]) + int(fields[12])) / ticks,
        )
    return out


def others_text(busy0: float, procs0: dict[int, tuple[str, float]], wall: float) -> str:
    """What else used the machine while this script ran: busy CPU seconds not ours, and the largest users."""
    busy = cpu_seconds()[0] - busy0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    mine = usage.ru_utime + usage.ru_stime + sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    other = max(busy - mine, 0.0)
    procs1 = process_cpu()
    me = os.getpid()
    top = sorted(
        ((cpu - procs0.get(pid, ("", 0.0))[1], cmd) for pid, (cmd, cpu) in procs1.items() if pid != me),
        reverse=True,
    )
    named = "; ".join(f"`{cmd[:60]}` {sec:.0f} s" for sec, cmd in top[:3] if sec >= 1) or "none over 1 s"
    return (
        f"Other work on the machine during the run: {other:.0f} CPU-seconds in {wall:.0f} s "
        f"({other / wall:.2f} cores on average); largest users still alive at the end: {named}."
    )


def versions_text() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("latbench", "torch", "transformers", "onnxruntime", "optimum-benchmark"):
        try:
            out.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            out.append(f"{dist} -")
    return (
        f"Versions (one interpreter for every tool, `{sys.executable}`): {', '.join(out)}; "
        f"latbench run from `{HERE.parent}`."
    )


def fmt_pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def report(outcomes: list[Outcome], names: list[str]) -> tuple[str, dict[str, float]]:
    """The markdown tables; also returns each tool's mean rerun difference (for the target line)."""
    ok = {o.tool: o for o in outcomes if o.skipped is None and not o.failures}
    ref = ok.get(REFERENCE)
    lines = [
        "| tool | rerun difference, mean | max | wall s per model | settings |",
        "| --- | --- | --- | --- | --- |",
    ]
    rerun: dict[str, float] = {}
    walls: dict[str, float] = {}
    for o in outcomes:
        if o.tool not in ok:
            why = o.skipped or "failed: " + "; ".join(o.failures[:2])
            lines.append(f"| {o.tool} | skipped | - | - | {why} |")
            continue
        d = rel_diff([o.medians[0][m] for m in names], [o.medians[1][m] for m in names])
        rerun[o.tool] = float(d.mean())
        walls[o.tool] = float(np.mean([w for p in o.walls for w in p.values()]))
        lines.append(f"| {o.tool} | {fmt_pct(d.mean())} | {fmt_pct(d.max())} | {walls[o.tool]:.1f} | {o.summary()} |")
    lines += ["", "Median per model (ms), pass 1 / pass 2:", ""]
    lines += ["| tool | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for tool, o in ok.items():
        cells = [f"{o.medians[0][m]:.3f} / {o.medians[1][m]:.3f}" for m in names]
        lines.append(f"| {tool} | " + " | ".join(cells) + " |")
    if ref is not None:
        lines += ["", f"Agreement: median / {REFERENCE}'s median - 1, same pass (pass 1 / pass 2):", ""]
        lines += ["| tool | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
        for tool, o in ok.items():
            if tool == REFERENCE:
                continue
            cells = []
            for m in names:
                a = [agreement([o.medians[p][m]], [ref.medians[p][m]])[0] for p in (0, 1)]
                cells.append(f"{100 * a[0]:+.1f}% / {100 * a[1]:+.1f}%")
            lines.append(f"| {tool} | " + " | ".join(cells) + " |")
    lines += ["", target_text(rerun, walls)]
    return "\n".join(lines), rerun


def target_text(rerun: dict[str, float], walls: dict[str, float]) -> str:
    peers = {t: d for t, d in rerun.items() if not t.startswith("latbench")}
    parts = []
    for tool in [t for t in rerun if t.startswith("latbench")]:
        lowest = all(rerun[tool] < d for d in peers.values()) if peers else None
        ratio = walls[tool] / walls[PEER_OF_WALL] if PEER_OF_WALL in walls else None
        low_text = "n/a (no peer ran)" if lowest is None else ("yes" if lowest else "no")
        ratio_text = "n/a" if ratio is None else f"{ratio:.2f}x"
        if lowest is None or ratio is None:
            verdict = "not judged (a peer is missing)"
        else:
            verdict = "met" if lowest and ratio <= 2 else "not met"
        parts.append(
            f"{tool}: rerun difference lowest of all: {low_text}; wall time / optimum-benchmark's: {ratio_text}; "
            f"target {verdict}."
        )
    return "Target (latbench's rerun difference the lowest, wall time at most 2x optimum-benchmark's): " + " ".join(
        parts or ["no latbench row ran."]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_cpu = max(os.sched_getaffinity(0))
    ap.add_argument(
        "--cpu", type=int, default=default_cpu, help=f"the CPU every measurement is pinned to ({default_cpu})"
    )
    ap.add_argument("--quick", action="store_true", help="plumbing check: BERT-tiny only, short peer runs")
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of: " + ", ".join(TOOLS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="write the section peers-cpu of benchmarks/RESULTS.md")
    ap.add_argument("--child", nargs=2, metavar=("TOOL", "MODEL_DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        kind, model_dir = args.child
        result = (child_optimum if kind == "optimum" else child_timeit)(model_dir, args.quick)
        print(json.dumps(result))
        return

    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        raise SystemExit(f"unknown tools {unknown}; choose from {', '.join(TOOLS)}")
    if importlib.util.find_spec("transformers") is None:
        raise SystemExit("transformers is needed to build the models (pip install -e '.[hf]')")
    if args.cpu not in os.sched_getaffinity(0):
        raise SystemExit(f"--cpu {args.cpu} is not in this process's affinity mask {sorted(os.sched_getaffinity(0))}")
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    names = list(MODELS)[:1] if args.quick else list(MODELS)
    outcomes = [Outcome(tool, skipped=missing(tool)) for tool in tools]

    load_before = os.getloadavg()
    busy0, procs0, t_start = cpu_seconds()[0], process_cpu(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="latbench-peers-") as tmp:
        dirs = save_models(Path(tmp), names, args.seed)
        for p in range(2):
            for name in names:
                for o in outcomes:
                    if o.skipped is not None:
                        continue
                    try:
                        res, wall = run_child(o.tool, dirs[name], args.cpu, args.quick)
                    except RuntimeError as exc:
                        o.failures.append(f"{name} pass {p + 1}: {exc}")
                        print(f"pass {p + 1} {name} {o.tool}: FAILED {exc}", flush=True)
                        continue
                    o.medians[p][name], o.walls[p][name] = float(res["median_ms"]), wall
                    if res.get("median_ms_normalised") is not None:
                        o.normalised[p][name] = float(res["median_ms_normalised"])
                    o.runs.append(res)
                    if not o.tool.startswith("latbench"):
                        o.settings = f"{res['settings']}, threads {res['threads']}"
                    print(
                        f"pass {p + 1} {name} {o.tool}: {o.medians[p][name]:.3f} ms (n {res.get('n')}), "
                        f"{wall:.1f} s wall",
                        flush=True,
                    )
    wall_total = time.perf_counter() - t_start
    load_after = os.getloadavg()
    for o in list(outcomes):
        if o.tool in LATBENCH_TOOLS and all(len(n) == len(names) for n in o.normalised):
            outcomes.insert(
                outcomes.index(o) + 1,
                Outcome(o.tool + NORMALISED, medians=o.normalised, walls=o.walls, runs=o.runs),
            )

    tables, _ = report(outcomes, names)
    head = (
        f"{len(names)} random-weight `BertModel`s ({', '.join(names)}; heads = H/64, FFN = 4H, vocab {VOCAB}), "
        f"saved locally; batch {BATCH}, sequence {SEQ}, CPU, one thread, every measurement a process of its own "
        f"pinned to CPU {args.cpu}; two passes, pass 2 after pass 1. latbench: `latbench measure` with its "
        "default protocol, `--normalise-drift` (the same runs: raw medians, and medians at the reference speed of "
        "the first latbench measurement); optimum-benchmark: inference scenario, PyTorch backend, default "
        "duration/iterations/warm-up, inline launcher, p50; timeit: `autorange` then 5 repeats, median of "
        "per-call means. "
        "Rerun difference: |a - b| / mean(a, b) of the two passes' medians over the models. Wall time: the "
        "tool's process per model (start, imports, load, warm-up, measurement), mean over models and passes."
        + (" QUICK RUN (BERT-tiny only, shortened peers): plumbing only." if args.quick else "")
    )
    body = "\n\n".join(
        [
            head,
            versions_text(),
            tables,
            f"Load average (1 min) before: {load_before[0]:.2f}, after: {load_after[0]:.2f}. "
            + others_text(busy0, procs0, wall_total)
            + f" Total wall time: {wall_total:.0f} s.",
        ]
    )
    print()
    print(body)
    if args.write:
        sys.path.insert(0, str(HERE))
        from _results import write_section

        cmd = " ".join([sys.executable, "benchmarks/peers.py", *sys.argv[1:]])
        write_section("peers-cpu", "Side by side with the peers (cpu)", body, cmd)


if __name__ == "__main__":
    main()
