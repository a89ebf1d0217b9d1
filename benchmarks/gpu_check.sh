#!/usr/bin/env bash
# The project's one-call GPU check: everything benchbench claims about a GPU, measured, into one folder, in at
# most BUDGET_S (480 s) from its start, the wheels' installation included — one command on a lent machine (10 min
# at most per command, 15 min a session).
#
#   bash benchmarks/gpu_check.sh [--dry-run | --rehearse] [--archive FILE] [OUT_DIR]   (default: results/gpu/check)
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
# `--rehearse` (any machine, in CI): every step executed for real on the CPU at the smallest size — the same
# code paths and the same files, `--device cpu`, no CUDA-only answer asserted — so a step that would raise on the
# device raises here first. Each step's answers go to a file of their own (summary.txt lists the steps' rc).
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
REHEARSE=0
ARCHIVE=""
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --rehearse) REHEARSE=1 ;;
        --archive) ARCHIVE="$2"; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) OUT="$1" ;;
    esac
    shift
done
START=$SECONDS  # the deadline counts from here: the wheels' installation is inside it
OUT="${OUT:-results/gpu/check}"
PY="${PYTHON:-python3}"
if [ "$REHEARSE" = 1 ]; then
    DEVICE=cpu
    BUDGET_S="${BUDGET_S:-900}"  # a 2-core CPU runs the smallest sizes slower than the GPU runs the real ones
    LAUNCH_BATCH=2                # gpu_launch's cpu profile
    FIDELITY="--device cpu --resolution 64 --batch-size 2 --amp none --blocks 2 --steps 2"
    CAMVID="n=8, size=(40, 48)"; ATTACH_ARGS="--size 32 --batch-size 2 --epochs 20"; ATTACH_STEPS=4
    RANKS_ARGS="--size 32 --batch-size 2 --epochs 20"
    OOM_SIZE="encoder: resnet18
resolution: 32
batch_size: 2"
else
    DEVICE=cuda
    BUDGET_S="${BUDGET_S:-480}"
    LAUNCH_BATCH=16
    FIDELITY="--blocks 6 --steps 30"
    CAMVID="n=64, size=(256, 320)"; ATTACH_ARGS="--size 256 --batch-size 8 --epochs 50"; ATTACH_STEPS=20
    RANKS_ARGS="--size 256 --batch-size 4 --epochs 50 --workers 2"
    OOM_SIZE="encoder: resnet50
resolution: 1024
batch_size: 512"
fi
mkdir -p "$OUT/traces" "$OUT/micro" "$OUT/attach" "$OUT/ranks/traces"
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
    gzip -f "$OUT"/traces/*.json "$OUT"/micro/trace-*.json "$OUT"/attach/*.json "$OUT"/ranks/traces/*.json 2>/dev/null
    gzip -d "$OUT"/attach/record.json.gz 2>/dev/null
    rm -rf "$OUT/camvid"
    rm -rf "$OUT/.cache"
    tar czf "$ARCHIVE" -C "$(dirname "$OUT")" "$(basename "$OUT")" && echo "archive: $ARCHIVE"
}
trap archive EXIT

PLANNED=0
FAILED=0
if [ "$DRY" = 1 ] && [ "$REHEARSE" = 1 ]; then echo "--dry-run and --rehearse: choose one" >&2; exit 2; fi

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

cat > "$OUT/oom.yaml" <<EOF
name: gpu_check_oom
arch: Unet
$OOM_SIZE
warmup: 1
steps: 1
timeout_s: 120
EOF

CUDA_TESTS="tests/test_cuda_timing.py tests/test_gpu_state.py tests/test_flops.py tests/test_attach_cuda.py"

# 1. What was measured on: benchbench's fingerprint, the driver's view.
step env 30 "$BB env --device $DEVICE > '$OUT/env.json' && (nvidia-smi -q > '$OUT/nvidia-smi.txt' || true) && \
$PY -m pip list --format=freeze > '$OUT/pip-freeze.txt' 2>/dev/null; true"
# 2. Known answers: .item() = 1 sync, non-blocking copy = 0, GradScaler AdamW 1 / fused 0 (in bb.step ranges,
#    the harness's sync outside them); TF32 vs fp32 peak; GradScaler's back-off skips and their verdict.
#    Answers in micro/syncs.json, micro/peak.json, micro/scaler.json.
step micro 150 "$PY benchmarks/gpu_micro.py --device $DEVICE --out '$OUT/micro' --cases syncs,peak,scaler"
# 3. attach, the feature users meet first: the CamVid loop of tests/scripts (a Dataset class, a pageable copy to
#    the device, fp16 with GradScaler, loss.item() every step) attached unmodified; record in attach/record.json.
step attach 120 "$PY -c \"import sys; sys.path.insert(0, 'tests'); from pathlib import Path; \
from conftest import make_camvid; make_camvid(Path('$OUT/camvid'), $CAMVID)\" && \
$BB attach --steps $ATTACH_STEPS --timeout 100 --trace '$OUT/attach' --json '$OUT/attach/record.json' \
--output '$OUT/attach/attach.jsonl' --reports-dir '$OUT/reports' -- $PY tests/scripts/train_camvid.py \
--data '$OUT/camvid' --device $DEVICE --workers 2 --amp fp16 $ATTACH_ARGS"
# 4. The CUDA-only tests (they skip on CPU machines; here they must run), attach's on CUDA among them.
step cuda-tests 150 "$PY -m pytest -q -p no:cacheprovider -rs $CUDA_TESTS"
# 4b. attach under torchrun on the GPU: one NCCL rank (its collectives in its trace), then two gloo ranks sharing
#     the one GPU (NCCL refuses two ranks on one device) — the ranks' step clock with CUDA work in flight.
step ranks 100 "for spec in 'nccl 1' 'gloo 2'; do set -- \$spec; \
$BB attach --steps $ATTACH_STEPS --timeout 45 --trace '$OUT/ranks/traces' --json \"$OUT/ranks/record-\$1.json\" \
--output '$OUT/ranks/ranks.jsonl' --reports-dir '$OUT/reports' -- $PY -m torch.distributed.run --standalone \
--nproc-per-node \$2 tests/scripts/train_ddp.py --data '$OUT/camvid' --device $DEVICE \
--backend \$([ $DEVICE = cuda ] && echo \$1 || echo gloo) $RANKS_ARGS || exit 1; done"
# 5. NVML under load (raw reason bits of every sample), the tracker's own cost, a SLURM job's cell alone (each
#    case in a process of its own).
step conditions 120 "$PY benchmarks/gpu_conditions.py --device $DEVICE --out '$OUT/conditions.json'"
# 6. Fidelity: benchbench's CUDA loop against a plain loop timed by its block wall time (target >= 0.98).
step fidelity 120 "$PY benchmarks/gpu_fidelity.py $FIDELITY --out '$OUT/fidelity.json'"
# 7. The fp16 pair of gpu_launch (AdamW vs fused AdamW under GradScaler), explained and traced.
step gpu-launch-fp16 180 "$BB run suites/gpu_launch.yaml --device $DEVICE --filter amp=fp16 \
--filter batch_size=$LAUNCH_BATCH --filter compile=false --trace '$OUT/traces' --output '$OUT/gpu_launch_fp16.jsonl' \
--reports-dir '$OUT/reports'"
# 8. A real OOM: recorded as status oom, the run goes on (the rehearsal's cell is small: it just runs).
step oom 90 "$BB run '$OUT/oom.yaml' --device $DEVICE --no-explain --allow-failures --output '$OUT/oom.jsonl' \
--reports-dir '$OUT/reports'"
# 9. CUDA graphs: compile reduce-overhead really replays graphs (cudaGraphLaunch in its trace), losses finite.
#    Answers in micro/graphs.json (their own file: the first micro step's answers stay as they were).
step graphs 120 "$PY benchmarks/gpu_micro.py --device $DEVICE --out '$OUT/micro' --cases graphs"
# 10. explain-trace on the fresh traces, against their records' timed steps.
#     (the rehearsal's CPU traces hold no device work: explain-trace must refuse them, exit 2, and say so)
step explain-traces 40 "for t in '$OUT'/traces/*.json; do [ -e \"\$t\" ] || continue; \
$BB explain-trace \"\$t\" --record '$OUT/gpu_launch_fp16.jsonl' --json > \"\$t.explain.json\" 2> \"\$t.err\"; \
rc=\$?; cat \"\$t.err\"; [ \$rc = 0 ] && continue; \
[ $DEVICE = cpu ] && [ \$rc = 2 ] && grep -q 'holds no device work' \"\$t.err\" && continue; exit 1; done"

if [ "$DRY" = 1 ]; then
    fail=0
    check() {  # check NAME COMMAND
        if bash -c "$2" > "$OUT/dry-$1.log" 2>&1; then echo "dry-run ok    $1" | tee -a "$summary";
        else echo "dry-run FAIL  $1 (see $OUT/dry-$1.log)" | tee -a "$summary"; fail=1; fi
    }
    # each script imports at its top what its cases import: its --dry-run imports them all
    check imports "$PY -c 'import benchbench.cli, benchbench.runner.program, benchbench.runner.slurm, \
benchbench.measure.gpu_state, benchbench.measure.trackers, benchbench.runner.attach.install, \
benchbench.runner.attach.launch, segmentation_models_pytorch, fvcore, pydantic, torch' && \
$PY -c \"import sys; sys.path.insert(0, 'tests'); import conftest\" && \
$PY -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' tests/scripts/train_camvid.py"
    check micro-args "$PY benchmarks/gpu_micro.py --dry-run --cases syncs,peak,scaler,graphs"
    check conditions-args "$PY benchmarks/gpu_conditions.py --dry-run"
    check fidelity-args "$PY benchmarks/gpu_fidelity.py --dry-run --blocks 6 --steps 30"
    check suites "$BB list suites/gpu_launch.yaml --device cuda --filter amp=fp16 --filter batch_size=16 \
--filter compile=false && $BB list '$OUT/oom.yaml' --device cuda"
    check cli-help "$BB run --help && $BB explain-trace --help && $BB env --help && $BB attach --help"
    check tests-collect "$PY -m pytest -q --collect-only -p no:cacheprovider $CUDA_TESTS"
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
