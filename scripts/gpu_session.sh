#!/usr/bin/env bash
# The GPU work of the open issues, for a session lent a GPU (the `device` tool's H100), in as few calls as
# its 30 minutes of device time allow. Each step is bounded and resumable; its results come back in
# $OUT/gpu_session.tgz (the device tool brings $OUT back); nothing is downloaded.
#
#   bash scripts/gpu_session.sh STEP [STEP ...]       steps run in the order given, each timed
#
# Steps:
#   check     the GPU as torch and NVML see it (`latbench env`), then every `gpu`-marked test     (issue 3)
#   noise     benchmarks/noise.py in CUDA-graph mode; RESULTS.md comes back with its section     (issue 3)
#   data      profile the bert space, torch graph fp16 b1 s128, resumable, bounded by DATA_S     (issue 5)
#   predictor train the H100 predictor on that store (needs xgboost: carry its wheel, below)     (issue 5)
#   lut       build-lut: ViT on a coarse NViT grid (batch 256, fp16) and BERT (b1 and b32)      (issue 4)
#   search    search 7x with the H100 predictor, measure the top candidates, validate on cuda  (issue 6)
#
# From the session (here), once: echo /.whl/ >> .git/info/exclude, then fetch xgboost-cpu for Python 3.12
# (5.6 MB; the device's image has every other dependency):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl xgboost-cpu==3.2.0
# then, e.g., run(command="bash scripts/gpu_session.sh check noise data", carry=[".whl"], timeout_s=600) and
# run(command="bash scripts/gpu_session.sh data predictor lut search", carry=[".whl", "runs/gpu"]).
# A warm machine keeps runs/ between calls; a fresh one gets it back through carry (unpack the tarball's
# store into runs/gpu here first). Then, here: take the noise section into benchmarks/RESULTS.md, commit the
# store to datasets/, retrain the predictor into predictors/ with the command in its card, the tables into
# lookup_tables/, and write what was measured into the issues' notes.
#
# GPU_DEVICE=cpu runs the same plumbing on a CPU with tiny sizes (a dry run of this script, not a figure).
set -uo pipefail

# The device tool brings back at most 8 files from $OUT: everything is staged in runs/gpu/out (kept on a
# warm machine between calls) and packed into $OUT/gpu_session.tgz at the end, beside steps.txt.
OUT=${OUT:-out/gpu_session}
stage=runs/gpu/out
mkdir -p "$OUT" "$stage"
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
    samples=${DATA_SAMPLES:-6} budget=0.2 minsamp=5 tag=dryrun lutgrid=runs/gpu/tiny_vit.json lutbatch=1 bert_batches=(1)
    echo '{"family": "vit", "axes": {"emb": [64], "heads": [1, 2], "qk_dim": [16], "v_dim": [16], "mlp": [64]}}' \
        >"$lutgrid"
    noise_args=(--device cpu --n 3 --rounds 2 --calls-per-round 3 --budget-s 0.5)  # not --write: no figure
else
    deploy=(--device "$dev" --mode graph --precision fp16)
    samples=${DATA_SAMPLES:-700} budget=1 minsamp=50 tag=h100 lutbatch=256 bert_batches=(1 32)
    lutgrid=lookup_tables/grids/vit_nvit_coarse.json
    noise_args=(--device "$dev" --mode graph --precision fp16 --write)
fi
store=runs/gpu/bert_${tag}_graph_fp16_b1_s128.parquet
pred=runs/gpu/predictor_bert_${tag}
keep() { cp -r "$@" "$stage"/ 2>/dev/null || true; }

step_check() {
    nvidia-smi || true
    lb env | tee "$stage/env.txt"
    "$PY" -m pytest -m gpu -q -p no:cacheprovider -o addopts="" tests/profiling/test_backends.py \
        tests/models/test_export.py 2>&1 | tee "$stage/gpu_tests.log"
}

step_noise() {
    "$PY" benchmarks/noise.py "${noise_args[@]}" 2>&1 | tee "$stage/noise.log"
    keep benchmarks/RESULTS.md
}

step_data() {
    # bounded: a killed profile resumes from its store (issue 3), so DATA_S only splits the work across calls
    timeout "${DATA_S:-480}" "$PY" -m latbench profile --space bert "${deploy[@]}" --batch 1 --seq 128 \
        --samples "$samples" --seed 1 --no-blocks --budget-s "$budget" --min-samples "$minsamp" --group-size 4 \
        --out "$store"
    echo "profile exit $? (124: stopped by DATA_S; run the step again to go on)"
    lb show "$store" | tee "$stage/data_show.txt"
    keep "$store"
}

step_predictor() {
    rm -rf "$pred"
    lb train-predictor --data "$store" --model xgboost --out "$pred" --seed 0 --max-train-archs 500 \
        --max-test-archs 200 2>&1 | tee "$stage/predictor.log"
    keep "$pred"
}

step_lut() {
    lb build-lut --grid "$lutgrid" "${deploy[@]}" --batch "$lutbatch" --budget-s "$budget" --min-samples "$minsamp" \
        --store "runs/gpu/lut_vit_${tag}.parquet" --out "runs/gpu/vit_${tag}_graph_fp16_b${lutbatch}.json"
    for b in "${bert_batches[@]}"; do
        lb build-lut --grid lookup_tables/grids/bert_cpu.json "${deploy[@]}" --batch "$b" --seq 128 \
            --budget-s "$budget" --min-samples "$minsamp" --store "runs/gpu/lut_bert_${tag}_b$b.parquet" \
            --out "runs/gpu/bert_${tag}_graph_fp16_b${b}_s128.json"
    done
    keep runs/gpu/*.json
}

step_search() {
    rm -rf runs/gpu/search
    lb search --predictor "$pred" --space bert --latency-constraint 7 --method evolutionary --budget 1000 \
        --seed 0 "${deploy[@]}" --measure-top 8 --rounds 5 --min-samples "$minsamp" --budget-s 2 --validate \
        --out runs/gpu/search 2>&1 | tee "$stage/search.log"
    keep runs/gpu/search
}

for s in "$@"; do
    declare -F "step_$s" >/dev/null || { echo "gpu_session.sh: unknown step '$s'" >&2; exit 2; }
done
for s in "$@"; do
    t0=$SECONDS
    echo "== $s"
    "step_$s"
    echo "== $s: $((SECONDS - t0)) s ($(date -u +%FT%TZ))" | tee -a "$stage/steps.txt"
done
tar -czf "$OUT/gpu_session.tgz" -C "$stage" . && cp "$stage/steps.txt" "$OUT/"
