#!/usr/bin/env bash
# The main job on the CPU, end to end: profile a sample of the bert space, train a predictor,
# search for an architecture 7x faster than BERT-base on this machine, and validate it by measuring.
# Called by `make quickstart`; about 8 minutes on a 2-core machine (after the install).
# Every measurement uses latbench's defaults (one thread pinned to a core, 10 interleaved rounds of
# 10 calls, the CPU reference workload in every round): no flag is needed for a trustworthy number.
set -euo pipefail
venv=${1:-.venv}
lb="$venv/bin/latbench"
out=${QUICKSTART_OUT:-runs/quickstart}
samples=${QUICKSTART_SAMPLES:-40}
mkdir -p "$out"

echo "== latbench env: the machine every measurement will be tied to"
"$lb" env
echo
echo "== latbench profile: $samples architectures of AutoTinyBERT's bert space, whole models, on this CPU"
echo "   (run it again and it resumes: only missing rows are measured)"
"$lb" profile --device cpu --samples "$samples" --no-blocks --out "$out/bert_cpu.parquet"
"$lb" show "$out/bert_cpu.parquet"
echo
echo "== latbench train-predictor: XGBoost on those measurements (architectures split 80/10/10)"
"$lb" train-predictor --data "$out/bert_cpu.parquet" --model xgboost --out "$out/predictor" --seed 0
echo
echo "== latbench search: 7x faster than BERT-base, measured on this CPU; evolutionary search on the predictor,"
echo "   then 8 candidates near the bound measured together with BERT-base (the best that"
echo "   meets 7x as measured, by a 3% margin for this machine's drift between runs, is kept);"
echo "   then validate: the result and BERT-base measured together once more"
rm -rf "$out/search"
"$lb" search --predictor "$out/predictor" --space bert --latency-constraint 7 \
    --method evolutionary --budget 1000 --seed 0 --device cpu --measure-top 8 \
    --measure-margin 0.03 --validate --out "$out/search"
echo
echo "== report"
"$venv/bin/python" - "$out/search" <<'PY'
import json, sys
from pathlib import Path

d = Path(sys.argv[1])
r, v = json.loads((d / "result.json").read_text()), json.loads((d / "validate.json").read_text())
b, ref = v["best"], v["reference"]
print(f"reference (BERT-base)  {ref['measured_ms']:.2f} ms measured on this CPU")
print(f"found                  {b['describe']}")
print(f"  predicted            {b['predicted_ms']:.2f} ms  (speed-up {r['best']['predicted_speedup']:.2f}x)")
print(f"  measured             {b['measured_ms']:.2f} ms  (speed-up {b['measured_speedup']:.2f}x, "
      f"prediction error {b['prediction_error_pct']:+.1f}%)")
print(f"  constraint 7x        {'holds' if b['constraint_holds'] else 'VIOLATED'} by measurement; "
      f"speed-up {b['speedup_error_pct']:+.1f}% from 7x")
print(f"files                  {d}/result.json, history.parquet, validate.json")
PY
