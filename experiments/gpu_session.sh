#!/usr/bin/env bash
# A lent-GPU session for issue 10 (docs/discovery.md, section 4), run from the repository root:
#   OUT=/some/folder bash experiments/gpu_session.sh
# Four jobs share the GPU (each is launch-bound, so side by side they cost little more than alone):
#   A   the DM MNIST32-live, continued from checkpoints/dm-live for DM_SECONDS at batch DM_BATCH
#       (removed since the step-22,310 EMA shipped: `git checkout f94b2e5 -- checkpoints/dm-live` first);
#   B   from the start, K = 16 (preset mnist-cpu, the default recipe) on the shipped `default` model;
#   C   after A, K = 16 on A's fp16 EMA (`default` in a second copy of the package);
#   A2  after A, the DM continued from A until about END (a checkpoint for later sessions);
# then `hspace evaluate` (1,000 pairs) on B and C. B and C are stopped END seconds after the start
# (they checkpoint every 25 steps and resume elsewhere with `discover --resume`).
# Everything that comes back is written under $OUT (at most 8 files). Run on 2026-11-30 as
#   OUT=$OUT END=470 DM_SECONDS=150 DM_BATCH=512 bash experiments/gpu_session.sh  (493 s; docs/discovery.md)
set -u
OUT=${OUT:-/tmp/gpu-out}
DM_SECONDS=${DM_SECONDS:-150}
DM_BATCH=${DM_BATCH:-512}
END=${END:-480}
DEVICE=${DEVICE:-cuda}
FID_SAMPLES=${FID_SAMPLES:-1000}
ROOT=$PWD
export PYTHONUNBUFFERED=1
rm -rf runs/dm runs/dm2 runs/k16-15k logs /tmp/c # a warm machine keeps what an earlier try left
mkdir -p "$OUT" runs logs /tmp/c/runs
T0=$(date +%s)
left() { # seconds to END minus $1, at least 1 (`timeout 0` would mean no limit)
    local s=$((END - ${1:-0} - ($(date +%s) - T0)))
    echo $((s > 1 ? s : 1))
}
pack() {
    cd "$ROOT"
    [ -f runs/dm2/checkpoint.pt ] && cp runs/dm2/checkpoint.pt "$OUT/dm2-checkpoint.pt"
    [ -d runs/dm ] && tar cf "$OUT/dm.tar" --exclude checkpoint.pt runs/dm
    [ -d runs/dm2 ] && tar cf "$OUT/dm2.tar" --exclude checkpoint.pt runs/dm2
    [ -d runs/k16-15k ] && tar cf "$OUT/k16-15k.tar" runs/k16-15k
    [ -d /tmp/c/runs/k16-new ] && tar cf "$OUT/k16-new.tar" -C /tmp/c runs/k16-new
    tar cf "$OUT/logs.tar" logs
    ls -la "$OUT"
}
nvidia-smi >logs/nvidia-smi.txt 2>&1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee logs/env.txt
discover() { # OUT_FOLDER: K = 16 with the default recipe until END
    timeout "$(left)" python3 -m hspace discover --preset mnist-cpu --model default --out "$1" \
        --rca-every 100 --rca-pairs 512 --grid-every 500 --autocast off --device "$DEVICE"
}
evaluate() { # RUN JSON
    timeout 90 python3 -m hspace evaluate "$1" --num-pairs 1000 --device "$DEVICE" --json "$2"
}

# A and B
PYTHONPATH=$ROOT:$ROOT/experiments python3 experiments/dm_continue.py checkpoints/dm-live --out runs/dm \
    --seconds "$DM_SECONDS" --batch-size "$DM_BATCH" --fid-every 1000 --fid-samples "$FID_SAMPLES" \
    --device "$DEVICE" >logs/dm.log 2>&1 &
A=$!
(PYTHONPATH=$ROOT discover runs/k16-15k >logs/k16-15k.log 2>&1
    PYTHONPATH=$ROOT evaluate runs/k16-15k "$ROOT/logs/eval-k16-15k.json" >logs/eval-k16-15k.log 2>&1) &
B=$!
wait $A
tail -n 5 logs/dm.log

# A2 and C, if A left a model
if [ -f runs/dm/ema-fp16.safetensors ]; then
    PYTHONPATH=$ROOT:$ROOT/experiments python3 experiments/dm_continue.py runs/dm --out runs/dm2 \
        --seconds "$(left 45)" --batch-size "$DM_BATCH" --fid-every 2000 --fid-samples "$FID_SAMPLES" \
        --device "$DEVICE" >logs/dm2.log 2>&1 &
    A2=$!
    cp -r hspace /tmp/c/hspace
    cp runs/dm/ema-fp16.safetensors /tmp/c/hspace/assets/default-dm.safetensors
    (cd /tmp/c && PYTHONPATH=/tmp/c discover runs/k16-new) >logs/k16-new.log 2>&1
    (cd /tmp/c && PYTHONPATH=/tmp/c evaluate runs/k16-new "$ROOT/logs/eval-k16-new.json") >logs/eval-k16-new.log 2>&1
    wait $A2
    tail -n 3 logs/dm2.log
fi
wait $B
for f in logs/k16-*.log; do echo "$f"; tail -c 400 "$f"; echo; done
tail -n 3 logs/eval-*.log
echo "total $(($(date +%s) - T0)) s"
pack
