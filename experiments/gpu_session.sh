#!/usr/bin/env bash
# A lent-GPU session for issue 10 (docs/discovery.md, section 4), run from the repository root:
#   OUT=/some/folder bash experiments/gpu_session.sh
#   A  the DM MNIST32-live, continued from checkpoints/dm-live (step 15,000) for DM_SECONDS at batch 256;
#   C  then a new K = 16 run (the shipped run's recipe) on A's fp16 EMA, until END seconds after the start;
# then `hspace evaluate` (1,000 pairs) on C. Everything that comes back is written under $OUT.
# The version run on 2026-11-30 (commit 0f6f8a8) also resumed the shipped run beside them (job B).
set -u
OUT=${OUT:-/tmp/gpu-out}
DM_SECONDS=${DM_SECONDS:-240}
END=${END:-480} # seconds after the start at which the discovery runs are stopped (they checkpoint every 25 steps)
DEVICE=${DEVICE:-cuda}
FID_SAMPLES=${FID_SAMPLES:-1000}
ROOT=$PWD
export PYTHONUNBUFFERED=1
rm -rf runs/dm logs /tmp/c # a warm machine keeps what an earlier try left
mkdir -p "$OUT" runs
T0=$(date +%s)
left() { # seconds to END, at least 1 (`timeout 0` would mean no limit)
    local s=$((END - ($(date +%s) - T0)))
    echo $((s > 1 ? s : 1))
}
pack() {
    cd "$ROOT"
    [ -d runs/dm ] && cp runs/dm/checkpoint.pt "$OUT/dm-checkpoint.pt" && tar cf "$OUT/dm.tar" --exclude checkpoint.pt runs/dm
    [ -d /tmp/c/runs/k16-new ] && tar cf "$OUT/k16-new.tar" -C /tmp/c runs/k16-new
    tar cf "$OUT/logs.tar" logs
    ls -la "$OUT"
}
mkdir -p logs
nvidia-smi >logs/nvidia-smi.txt 2>&1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee logs/env.txt

fail() {
    echo "$1 stopped early:"
    tail -n 30 logs/*.log
    pack
    exit 1
}

# A
PYTHONPATH=$ROOT:$ROOT/experiments python3 experiments/dm_continue.py checkpoints/dm-live --out runs/dm \
    --seconds "$DM_SECONDS" --batch-size 256 --fid-every 2000 --fid-samples "$FID_SAMPLES" --device "$DEVICE" \
    >logs/dm.log 2>&1 || fail "A (the DM)"
tail -n 5 logs/dm.log

# C: A's fp16 EMA is `default` in a second copy of the package.
mkdir -p /tmp/c/runs
cp -r hspace /tmp/c/hspace
cp runs/dm/ema-fp16.safetensors /tmp/c/hspace/assets/default-dm.safetensors
(cd /tmp/c && PYTHONPATH=/tmp/c timeout "$(left)" python3 -m hspace discover --preset mnist-cpu --model default \
    --out runs/k16-new --lambda1 0.3 --lambda2 0.1 --rca-every 100 --rca-pairs 512 --grid-every 500 \
    --autocast off --device "$DEVICE") >logs/k16-new.log 2>&1
tail -c 600 logs/k16-new.log

# Evaluate it (the model the run names is `default` in its copy of the package).
(cd /tmp/c && PYTHONPATH=/tmp/c timeout 80 python3 -m hspace evaluate runs/k16-new --num-pairs 1000 --device "$DEVICE" \
    --json "$ROOT/logs/eval-k16-new.json") >logs/eval-k16-new.log 2>&1
tail -n 3 logs/eval-*.log
echo "total $(($(date +%s) - T0)) s"
pack
