#!/usr/bin/env bash
# The GPU work of the open issues, for a session lent a GPU (the `device` tool), planned for its limits:
# 15 minutes of device time per issue, machine start included, and 600 s per call. Two calls:
#
#   run(command="bash scripts/gpu_session.sh check noise", carry=[".whl"], timeout_s=600)
#   run(command="bash scripts/gpu_session.sh data predictor lut search", carry=[".whl"], timeout_s=600)
#   give_back()
#
# Each step has a budget in seconds (below; each overridable, e.g. DATA_S=240) and is stopped at it with
# SIGINT (pytest and the profiler print what they have; a stopped profile resumes from its store). The
# budgets of one call add up to at most 570 s, both calls to about 760 s: with a machine start (1-2 min)
# and the transfers, inside 15 minutes. Whatever a step left, the results are packed into
# $OUT/gpu_session.tgz with steps.txt beside it (2 files; the device brings back at most 8, 2 folders
# deep) before the call's limit, also when a step ran out of time: the figures come back from both calls.
# Call 2 needs nothing from call 1 (its store is made in it), so a fresh machine does.
#
#   bash scripts/gpu_session.sh STEP [STEP ...]       steps run in the order given, each bounded
#   GPU_PLAN=1 bash scripts/gpu_session.sh STEPS      print "plan STEP SECONDS" per step and the pack; run nothing
#
# Steps (budget, s):
#   check     150  the GPU as torch and NVML see it (`latbench env`: which ORT providers load), the `gpu` tests
#   noise     150  benchmarks/noise.py in CUDA-graph mode, 20 bert models, two passes; RESULTS.md section
#   data      180  profile the bert space, torch graph fp16 b1 s128, resumable (as many models as fit)
#   predictor  45  train the GPU predictor on that store (needs xgboost: carry its wheel, below)
#   lut       120  build-lut: ViT on a coarse NViT grid (batch 256, fp16), then BERT b1 (b32 if time is left)
#   search     90  search 7x (2x in the dry run) with the GPU predictor, measure the top candidates, validate on cuda
#
# From the session (here), once: echo /.whl/ >> .git/info/exclude, then fetch xgboost-cpu for Python 3.12
# (5.6 MB; the device's image has every other dependency):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl xgboost-cpu==3.2.0
# Then, here: take the noise section into benchmarks/RESULTS.md, commit the store to datasets/, retrain the
# predictor into predictors/ with the command in its card, the tables into lookup_tables/, and write what
# was measured into the issues' notes.
#
# GPU_DEVICE=cpu runs the same plumbing on a CPU with tiny sizes (a dry run of this script, not a figure).
set -uo pipefail

declare -A BUDGET=(
    [check]=${CHECK_S:-150} [noise]=${NOISE_S:-150} [data]=${DATA_S:-180}
    [predictor]=${PREDICTOR_S:-45} [lut]=${LUT_S:-120} [search]=${SEARCH_S:-90}
)
PACK_S=10  # packing $OUT, kept free at the end of the call

for s in "$@"; do
    [[ -n ${BUDGET[$s]:-} ]] || { echo "gpu_session.sh: unknown step '$s'" >&2; exit 2; }
done
if [[ -n ${GPU_PLAN:-} ]]; then
    for s in "$@"; do echo "plan $s ${BUDGET[$s]}"; done
    echo "plan pack $PACK_S"
    exit 0
fi

# The device tool brings back at most 8 files from $OUT: everything is staged in runs/gpu/out and packed
# into $OUT/gpu_session.tgz at the end, beside steps.txt.
OUT=${OUT:-out/gpu_session}
stage=runs/gpu/out
mkdir -p "$OUT" "$stage"
pack() { tar -czf "$OUT/gpu_session.tgz" -C "$stage" . && cp "$stage/steps.txt" "$OUT/" 2>/dev/null; }
trap pack EXIT  # a step that fails or a call that ends early still sends back what there is
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
lb() { "$PY" -m latbench "$@"; }

dev=${GPU_DEVICE:-cuda:0}
if [[ $dev == cpu ]]; then  # dry run: the same commands, tiny
    deploy=(--device cpu --threads 1 --precision fp32)
    samples=${DATA_SAMPLES:-6} budget=0.2 minsamp=5 tag=dryrun speedup=2 top=2 lutgrid=runs/gpu/tiny_vit.json lutbatch=1 bert_batches=(1)
    echo '{"family": "vit", "axes": {"emb": [64], "heads": [1, 2], "qk_dim": [16], "v_dim": [16], "mlp": [64]}}' \
        >"$lutgrid"
    noise_args=(--device cpu --n 3 --rounds 2 --calls-per-round 3 --budget-s 0.5)  # not --write: no figure
else
    deploy=(--device "$dev" --mode graph --precision fp16)
    samples=${DATA_SAMPLES:-700} budget=1 minsamp=50 tag=gpu speedup=7 top=8 lutbatch=256 bert_batches=(1 32)
    lutgrid=lookup_tables/grids/vit_nvit_coarse.json
    noise_args=(--device "$dev" --mode graph --precision fp16 --n 20 --budget-s 2 --write)
fi
store=runs/gpu/bert_${tag}_graph_fp16_b1_s128.parquet
pred=runs/gpu/predictor_bert_${tag}
keep() { cp -r "$@" "$stage"/ 2>/dev/null || true; }
# Run a command inside what is left of the current step's budget (SIGINT at the end, then KILL 5 s later).
bounded() {
    local left=$((step_end - SECONDS))
    if ((left <= 0)); then echo "step budget spent: skipped $*"; return 124; fi
    timeout -s INT -k 5 "$left" "$@"
}

step_check() {
    nvidia-smi || true
    bounded "$PY" -m latbench env | tee "$stage/env.txt"
    bounded "$PY" -m pytest -m gpu -q -p no:cacheprovider -o addopts="" tests/profiling/test_backends.py \
        tests/profiling/test_gpu_paths.py tests/models/test_export.py 2>&1 | tee "$stage/gpu_tests.log"
}

step_noise() {
    bounded "$PY" benchmarks/noise.py "${noise_args[@]}" 2>&1 | tee "$stage/noise.log"
    keep benchmarks/RESULTS.md
}

step_data() {
    # bounded: a stopped profile resumes from its store, so DATA_S only says how many models this call adds
    bounded "$PY" -m latbench profile --space bert "${deploy[@]}" --batch 1 --seq 128 \
        --samples "$samples" --seed 1 --no-blocks --budget-s "$budget" --min-samples "$minsamp" --group-size 4 \
        --out "$store"
    echo "profile exit $? (124 or 130: stopped by DATA_S; the rows so far are in the store)"
    lb show "$store" | tee "$stage/data_show.txt"
    keep "$store"
}

step_predictor() {
    rm -rf "$pred"
    bounded "$PY" -m latbench train-predictor --data "$store" --model xgboost --out "$pred" --seed 0 --max-train-archs 500 \
        --max-test-archs 200 2>&1 | tee "$stage/predictor.log"
    keep "$pred"
}

step_lut() {
    bounded "$PY" -m latbench build-lut --grid "$lutgrid" "${deploy[@]}" --batch "$lutbatch" --budget-s "$budget" --min-samples "$minsamp" \
        --store "runs/gpu/lut_vit_${tag}.parquet" --out "runs/gpu/vit_${tag}_graph_fp16_b${lutbatch}.json"
    for b in "${bert_batches[@]}"; do
        bounded "$PY" -m latbench build-lut --grid lookup_tables/grids/bert_cpu.json "${deploy[@]}" --batch "$b" --seq 128 \
            --budget-s "$budget" --min-samples "$minsamp" --store "runs/gpu/lut_bert_${tag}_b$b.parquet" \
            --out "runs/gpu/bert_${tag}_graph_fp16_b${b}_s128.json"
    done
    keep runs/gpu/*.json
}

step_search() {
    rm -rf runs/gpu/search
    bounded "$PY" -m latbench search --predictor "$pred" --space bert --latency-constraint "$speedup" --method evolutionary --budget 1000 \
        --seed 0 "${deploy[@]}" --measure-top "$top" --rounds 5 --min-samples "$minsamp" --budget-s 2 --validate \
        --out runs/gpu/search 2>&1 | tee "$stage/search.log"
    keep runs/gpu/search
}

for s in "$@"; do
    t0=$SECONDS
    step_end=$((SECONDS + BUDGET[$s]))
    echo "== $s (budget ${BUDGET[$s]} s)"
    "step_$s"
    echo "== $s: $((SECONDS - t0)) s of ${BUDGET[$s]} ($(date -u +%FT%TZ))" | tee -a "$stage/steps.txt"
done
