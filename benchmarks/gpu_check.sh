#!/usr/bin/env bash
# The project's one-call GPU check (about 6-8 minutes on one H100): everything benchbench claims about a GPU,
# measured, into one folder. Run it first whenever a GPU is available, commit the folder under
# results/gpu/<date>-<gpu>/, and turn what it shows into CPU-testable fixtures (tests/fixtures/).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]          (default: results/gpu/check)
#
# Steps are independent: one that fails is recorded in summary.txt and the rest still run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-results/gpu/check}"
mkdir -p "$OUT/traces"
BB="${BENCHBENCH:-python -m benchbench}"
export PYTHONUNBUFFERED=1 KINETO_LOG_LEVEL=5
summary="$OUT/summary.txt"
: > "$summary"

step() {  # step NAME TIMEOUT_S COMMAND...
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    printf '%-22s rc=%-3s %4ss\n' "$name" "$rc" "$((SECONDS - t0))" | tee -a "$summary"
}

# 1. What was measured on: benchbench's fingerprint, the driver's view, NVML's.
step env 60 bash -c "$BB env --device cuda > '$OUT/env.json' && nvidia-smi -q > '$OUT/nvidia-smi.txt'"
# 2. The CUDA-only tests (they skip on CPU machines; here they must run).
step cuda-tests 150 python -m pytest -q -p no:cacheprovider tests/test_cuda_timing.py tests/test_gpu_state.py \
    tests/test_flops.py -k "cuda or gpu or tf32" -rs
# 3. Micro-cases with a known answer: one .item() = 1 sync; non-blocking copy = 0; fused AdamW + GradScaler = 0;
#    TF32 vs fp32 peak. Their traces go to $OUT/micro.
step micro 120 python benchmarks/gpu_micro.py --out "$OUT/micro"
# 4. Fidelity: benchbench's CUDA loop against a plain loop timed by its block wall time (target >= 0.98).
step fidelity 150 python benchmarks/gpu_fidelity.py --blocks 6 --steps 30 --out "$OUT/fidelity.json"
# 5. A real OOM: recorded as status oom, the run goes on.
cat > "$OUT/oom.yaml" <<'EOF'
name: gpu_check_oom
arch: Unet
encoder: resnet50
resolution: 1024
batch_size: 512
warmup: 1
steps: 1
timeout_s: 120
EOF
step oom 150 $BB run "$OUT/oom.yaml" --device cuda --no-explain --allow-failures --output "$OUT/oom.jsonl" \
    --reports-dir "$OUT/reports"
# 6. The fp16 pair of gpu_launch (AdamW vs fused AdamW under GradScaler), traced.
step gpu-launch-fp16 240 $BB run suites/gpu_launch.yaml --device cuda --filter amp=fp16 --filter batch_size=16 \
    --filter compile=false --trace "$OUT/traces" --output "$OUT/gpu_launch_fp16.jsonl" --reports-dir "$OUT/reports"
# 7. explain-trace on each fresh trace, against its record's timed step.
for t in "$OUT"/traces/*.json; do
    [ -e "$t" ] || continue
    step "explain-$(basename "$t" .json)" 60 bash -c \
        "$BB explain-trace '$t' --record '$OUT/gpu_launch_fp16.jsonl' --json > '$OUT/explain-$(basename "$t")'"
done
gzip -f "$OUT"/traces/*.json "$OUT"/micro/trace-*.json 2>/dev/null
echo "done: $OUT (summary.txt: rc 0 = ok)" | tee -a "$summary"
