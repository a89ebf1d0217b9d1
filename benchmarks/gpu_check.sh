#!/usr/bin/env bash
# The project's one-call GPU check: everything benchbench claims about a GPU, measured, into one folder, in at
# most BUDGET_S (480 s) of work — one command on a lent machine (10 min at most per command, 15 min a session).
#
#   bash benchmarks/gpu_check.sh [--dry-run] [--archive FILE] [OUT_DIR]     (default OUT_DIR: results/gpu/check)
#
# On the lent machine (bare: Python 3.12 + torch; no network), first here: `python benchmarks/gpu_wheels.py
# download .whl`, then run with `.whl` carried: the script installs the wheels into /tmp/site itself.
#   device run: carry [".whl"], command: bash benchmarks/gpu_check.sh --archive "$OUT/gpu-check.tgz"
#
# Steps run in order of what they prove, each with its own limit, all within one deadline: a step that would
# start with too little time left is skipped and says so; one that fails is recorded in summary.txt and the
# rest still run; whatever was measured stays in OUT (and in the archive, written on every exit).
# `--dry-run` (any machine): every step's command, the imports, each script's arguments, the suites and the
# wheel list's dependency closure — so nothing fails at import or argument parsing under the clock.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
ARCHIVE=""
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --archive) ARCHIVE="$2"; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) OUT="$1" ;;
    esac
    shift
done
OUT="${OUT:-results/gpu/check}"
BUDGET_S="${BUDGET_S:-480}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT/traces" "$OUT/micro"
summary="$OUT/summary.txt"
: > "$summary"
export PYTHONUNBUFFERED=1 KINETO_LOG_LEVEL=5 BENCHBENCH_CACHE="$OUT/.cache"

if [ -d .whl ] && [ "$DRY" = 0 ]; then  # the lent machine: carried wheels, no index
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        > "$OUT/wheels.log" 2>&1 || { echo "wheel install failed: see $OUT/wheels.log" | tee -a "$summary"; }
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
BB="$PY -m benchbench"

archive() {
    [ -n "$ARCHIVE" ] || return 0
    gzip -f "$OUT"/traces/*.json "$OUT"/micro/trace-*.json 2>/dev/null
    rm -rf "$OUT/.cache"
    tar czf "$ARCHIVE" -C "$(dirname "$OUT")" "$(basename "$OUT")" && echo "archive: $ARCHIVE"
}
trap archive EXIT

START=$SECONDS
PLANNED=0
FAILED=0

step() {  # step NAME LIMIT_S COMMAND...   (a command string run by bash -c)
    local name=$1 limit=$2 cmd=$3
    PLANNED=$((PLANNED + limit))
    if [ "$DRY" = 1 ]; then
        printf '%-20s limit %4ss  %s\n' "$name" "$limit" "$cmd" | tee -a "$summary"
        return 0
    fi
    local left=$((BUDGET_S - (SECONDS - START)))
    if [ "$left" -lt 15 ]; then
        printf '%-20s skipped: %ss of the %ss budget left\n' "$name" "$left" "$BUDGET_S" | tee -a "$summary"
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local t0=$SECONDS
    timeout -k 5 "$limit" bash -c "$cmd" > "$OUT/$name.log" 2>&1
    local rc=$?
    [ "$rc" = 0 ] || FAILED=$((FAILED + 1))
    printf '%-20s rc=%-3s %4ss%s\n' "$name" "$rc" "$((SECONDS - t0))" "$([ "$rc" = 124 ] && echo ' (timed out)')" \
        | tee -a "$summary"
}

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

# 1. What was measured on: benchbench's fingerprint, the driver's view.
step env 30 "$BB env --device cuda > '$OUT/env.json' && (nvidia-smi -q > '$OUT/nvidia-smi.txt' || true) && \
$PY -m pip list --format=freeze > '$OUT/pip-freeze.txt' 2>/dev/null; true"
# 2. Known answers: .item() = 1 sync, non-blocking copy = 0, GradScaler AdamW 1 / fused 0 (in bb.step ranges,
#    the harness's sync outside them); TF32 vs fp32 peak; GradScaler's back-off skips and their verdict.
step micro 150 "$PY benchmarks/gpu_micro.py --out '$OUT/micro' --cases syncs,peak,scaler"
# 3. NVML under load (raw reason bits of every sample), the tracker's own cost, a SLURM job's cell alone.
step conditions 120 "$PY benchmarks/gpu_conditions.py --out '$OUT/conditions.json'"
# 4. The CUDA-only tests (they skip on CPU machines; here they must run).
step cuda-tests 150 "$PY -m pytest -q -p no:cacheprovider -rs tests/test_cuda_timing.py tests/test_gpu_state.py \
tests/test_flops.py"
# 5. Fidelity: benchbench's CUDA loop against a plain loop timed by its block wall time (target >= 0.98).
step fidelity 120 "$PY benchmarks/gpu_fidelity.py --blocks 6 --steps 30 --out '$OUT/fidelity.json'"
# 6. The fp16 pair of gpu_launch (AdamW vs fused AdamW under GradScaler), explained and traced.
step gpu-launch-fp16 180 "$BB run suites/gpu_launch.yaml --device cuda --filter amp=fp16 --filter batch_size=16 \
--filter compile=false --trace '$OUT/traces' --output '$OUT/gpu_launch_fp16.jsonl' --reports-dir '$OUT/reports'"
# 7. A real OOM: recorded as status oom, the run goes on.
step oom 90 "$BB run '$OUT/oom.yaml' --device cuda --no-explain --allow-failures --output '$OUT/oom.jsonl' \
--reports-dir '$OUT/reports'"
# 8. CUDA graphs: compile reduce-overhead really replays graphs (cudaGraphLaunch in its trace), losses finite.
step graphs 120 "$PY benchmarks/gpu_micro.py --out '$OUT/micro' --cases graphs"
# 9. explain-trace on the fresh traces, against their records' timed steps.
step explain-traces 40 "for t in '$OUT'/traces/*.json; do [ -e \"\$t\" ] || continue; \
$BB explain-trace \"\$t\" --record '$OUT/gpu_launch_fp16.jsonl' --json > \"\$t.explain.json\" || exit 1; done"

if [ "$DRY" = 1 ]; then
    fail=0
    check() {  # check NAME COMMAND
        if bash -c "$2" > "$OUT/dry-$1.log" 2>&1; then echo "dry-run ok    $1" | tee -a "$summary";
        else echo "dry-run FAIL  $1 (see $OUT/dry-$1.log)" | tee -a "$summary"; fail=1; fi
    }
    check imports "$PY -c 'import benchbench.cli, benchbench.runner.program, benchbench.runner.slurm, \
benchbench.measure.gpu_state, benchbench.measure.trackers, segmentation_models_pytorch, fvcore, pydantic, torch'"
    check micro-args "$PY benchmarks/gpu_micro.py --dry-run --cases syncs,peak,scaler,graphs"
    check conditions-args "$PY benchmarks/gpu_conditions.py --dry-run"
    check fidelity-args "$PY benchmarks/gpu_fidelity.py --dry-run --blocks 6 --steps 30"
    check suites "$BB list suites/gpu_launch.yaml --device cuda --filter amp=fp16 --filter batch_size=16 \
--filter compile=false && $BB list '$OUT/oom.yaml' --device cuda"
    check cli-help "$BB run --help && $BB explain-trace --help && $BB env --help"
    check tests-collect "$PY -m pytest -q --collect-only -p no:cacheprovider tests/test_cuda_timing.py \
tests/test_gpu_state.py tests/test_flops.py"
    check wheels "$PY benchmarks/gpu_wheels.py check $([ -d .whl ] && echo .whl)"
    if [ "$PLANNED" -gt "$BUDGET_S" ]; then
        echo "note: step limits add up to ${PLANNED}s; the ${BUDGET_S}s deadline caps them (later steps shrink)" \
            | tee -a "$summary"
    fi
    echo "dry run: $([ $fail = 0 ] && echo ok || echo FAILED)" | tee -a "$summary"
    exit $fail
fi
echo "done in $((SECONDS - START))s of ${BUDGET_S}s: $OUT ($FAILED step(s) failed; summary.txt: rc 0 = ok)" \
    | tee -a "$summary"
exit $([ "$FAILED" = 0 ] && echo 0 || echo 1)
