#!/usr/bin/env bash
# One lent-GPU session for issue 10 (docs/discovery.md, section 4), run from the repository root:
#   OUT=/some/folder bash experiments/gpu_session.sh
# Three jobs share the GPU (each is launch-bound, so they interleave):
#   A  the DM MNIST32-live, continued from checkpoints/dm-live (step 15,000) for DM_SECONDS at batch 256;
#   B  the K = 16 run of checkpoints/default-k16 (on the step-15,000 model), resumed until the end;
#   C  after A: a new K = 16 run (same recipe as B) on A's fp16 EMA.
# Then `hspace evaluate` (1,000 pairs) on B and C. Everything that comes back is written under $OUT.
set -u
OUT=${OUT:-/tmp/gpu-out}
DM_SECONDS=${DM_SECONDS:-150}
END=${END:-360} # seconds after the start at which the discovery runs are stopped (they checkpoint every 25 steps)
DEVICE=${DEVICE:-cuda}
FID_SAMPLES=${FID_SAMPLES:-1000}
ROOT=$PWD
export PYTHONUNBUFFERED=1
rm -rf runs/dm runs/k16-15k logs /tmp/c # a warm machine keeps what an earlier try left
mkdir -p "$OUT" runs
T0=$(date +%s)
left() { # seconds to END, at least 1 (`timeout 0` would mean no limit)
    local s=$((END - ($(date +%s) - T0)))
    echo $((s > 1 ? s : 1))
}
pack() {
    cd "$ROOT"
    [ -d runs/dm ] && cp runs/dm/checkpoint.pt "$OUT/dm-checkpoint.pt" && tar cf "$OUT/dm.tar" --exclude checkpoint.pt runs/dm
    [ -d runs/k16-15k ] && tar cf "$OUT/k16-15k.tar" runs/k16-15k
    [ -d /tmp/c/runs/k16-new ] && tar cf "$OUT/k16-new.tar" -C /tmp/c runs/k16-new
    tar cf "$OUT/logs.tar" logs
    ls -la "$OUT"
}
mkdir -p logs
nvidia-smi >logs/nvidia-smi.txt 2>&1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee logs/env.txt

# B: the step-15,000 model is `default` in this copy of the tree.
cp checkpoints/default-k16/default-dm.safetensors hspace/assets/default-dm.safetensors
mkdir -p runs/k16-15k
cp checkpoints/default-k16/{checkpoint.pt,config.json,log.csv,shift_block,reconstructor,discriminator}* runs/k16-15k/
PYTHONPATH=$ROOT timeout "$(left)" python3 -m hspace discover --out runs/k16-15k --resume --rca-every 100 \
    --rca-pairs 512 --grid-every 500 --autocast off --device $DEVICE >logs/k16-15k.log 2>&1 &
B=$!

# A
PYTHONPATH=$ROOT:$ROOT/experiments python3 experiments/dm_continue.py checkpoints/dm-live --out runs/dm \
    --seconds "$DM_SECONDS" --batch-size 256 --fid-every 2000 --fid-samples $FID_SAMPLES --device $DEVICE >logs/dm.log 2>&1 &
A=$!
fail() {
    echo "$1 stopped early:"
    tail -n 30 logs/*.log
    kill $A $B 2>/dev/null
    pack
    exit 1
}
# A broken job shows within a minute: stop there, so that the session keeps device time for a second try.
A_RC=
for _ in $(seq 12); do
    sleep 5
    kill -0 $B 2>/dev/null || fail "B (discovery on the step-15,000 model)"
    if ! kill -0 $A 2>/dev/null; then
        wait $A
        A_RC=$?
        break
    fi
done
if [ -z "$A_RC" ]; then
    wait $A
    A_RC=$?
fi
[ "$A_RC" = 0 ] || fail "A (the DM)"
tail -n 5 logs/dm.log

# C: A's fp16 EMA is `default` in a second copy of the package.
mkdir -p /tmp/c/runs
cp -r hspace /tmp/c/hspace
cp runs/dm/ema-fp16.safetensors /tmp/c/hspace/assets/default-dm.safetensors
(cd /tmp/c && PYTHONPATH=/tmp/c timeout "$(left)" python3 -m hspace discover --preset mnist-cpu --model default \
    --out runs/k16-new --lambda1 0.3 --lambda2 0.1 --rca-every 100 --rca-pairs 512 --grid-every 500 \
    --autocast off --device $DEVICE) >logs/k16-new.log 2>&1
wait $B
tail -c 600 logs/k16-15k.log
tail -c 600 logs/k16-new.log

# Evaluate both (the model each run names is `default` in its own copy).
PYTHONPATH=$ROOT timeout 80 python3 -m hspace evaluate runs/k16-15k --num-pairs 1000 --device $DEVICE \
    --json logs/eval-k16-15k.json >logs/eval-k16-15k.log 2>&1 &
(cd /tmp/c && PYTHONPATH=/tmp/c timeout 80 python3 -m hspace evaluate runs/k16-new --num-pairs 1000 --device $DEVICE \
    --json "$ROOT/logs/eval-k16-new.json") >logs/eval-k16-new.log 2>&1
wait
tail -n 3 logs/eval-*.log
echo "total $(($(date +%s) - T0)) s"
pack
