#!/usr/bin/env bash
# The main job on the CPU, end to end with what exists today. Called by `make quickstart`.
set -euo pipefail
venv=${1:-.venv}
lb="$venv/bin/latbench"
out=${QUICKSTART_OUT:-runs/quickstart}
mkdir -p "$out"

echo "== latbench env: the machine every measurement will be tied to"
"$lb" env
echo
echo "== latbench space show bert: AutoTinyBERT's search space"
"$lb" space show bert
echo
echo "== latbench space sample: 5 architectures, seed 0 (same seed, same architectures)"
"$lb" space sample --space bert --n 5 --seed 0 --out "$out/archs.jsonl"
first=$(head -n 1 "$out/archs.jsonl")
echo
echo "== latbench arch convert: the first one as AutoTinyBERT prints it"
"$lb" arch convert --to autotinybert "$first"
echo
echo "== latbench arch cost: analytic cost at batch 1, sequence 128"
"$lb" arch cost "$first" --batch 1 --seq 128
echo
echo "== latbench profile: 6 architectures of the bert space on this CPU (whole models and their blocks);"
echo "   run it again and it resumes: only missing rows are measured"
"$lb" profile --space bert --device cpu --backend torch --batch 1 --seq 128 --samples 6 --seed 0 \
    --threads 1 --budget-s 2 --out "$out/bert_cpu.parquet"
echo
echo "== latbench show: what the store holds"
"$lb" show "$out/bert_cpu.parquet"
