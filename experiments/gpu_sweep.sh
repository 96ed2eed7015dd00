#!/usr/bin/env bash
# A lent-GPU session for the realism targets of issue 10 (docs/discovery.md, section 5): K = 16 runs
# on the shipped `default` model, side by side (each is launch-bound, so seven cost little more than
# one), stopped END seconds after the start, then `hspace evaluate` (1,000 pairs) on each run's last
# parts and on its best held-out parts. From the repository root:
#   OUT=$OUT END=450 bash experiments/gpu_sweep.sh
# Runs resume elsewhere with `hspace discover --out RUN --resume` (a checkpoint every 25 steps).
# A check of the plumbing on the CPU (one run; `python3` must be the one with torch):
#   ONLY=norm0.3-pretrainedD DEVICE=cpu STEPS=1 PAIRS=8 RCA_PAIRS=8 END=600 EVAL_SECONDS=500 bash experiments/gpu_sweep.sh
# What comes back under $OUT: one tar of every run folder (checkpoints left out) and one of the logs.
set -u
OUT=${OUT:-/tmp/gpu-out}
END=${END:-450}
STEPS=${STEPS:-1200} # with --lr-warmdown 0.25 the rates fall over the last 300 steps
DEVICE=${DEVICE:-cuda}
PAIRS=${PAIRS:-1000}         # evaluate's pairs
RCA_PAIRS=${RCA_PAIRS:-512} # held-out pairs during training
EVAL_SECONDS=${EVAL_SECONDS:-90}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
rm -rf runs/sweep && mkdir -p "$OUT" runs/sweep/logs
T0=$(date +%s)
nvidia-smi >runs/sweep/logs/nvidia-smi.txt 2>&1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee runs/sweep/logs/env.txt

# NAME and the settings over preset mnist-cpu (K = 16, S = 5, M = 10, batch 32).
RUNS=(
    "free-randomD --discriminator-init random"
    "free-pretrainedD"
    "init0.05-pretrainedD --direction-init-std 0.05"
    "norm0.2-randomD --discriminator-init random --direction-init-std 0.01 --shift-norm 0.2"
    "norm0.3-randomD --discriminator-init random --direction-init-std 0.01 --shift-norm 0.3"
    "norm0.3-pretrainedD --direction-init-std 0.01 --shift-norm 0.3"
    "norm0.4-pretrainedD --direction-init-std 0.01 --shift-norm 0.4"
)
ONLY=${ONLY:-} # a NAME: that run alone
shopt -s nullglob
for spec in "${RUNS[@]}"; do
    read -r name settings <<<"$spec"
    [ -z "$ONLY" ] || [ "$name" = "$ONLY" ] || continue
    # shellcheck disable=SC2086 # the settings are words
    timeout "$((END - 60))" python3 -m hspace discover --preset mnist-cpu --model default --out "runs/sweep/$name" \
        --train-steps "$STEPS" --lr-warmdown 0.25 --rca-every 100 --rca-pairs "$RCA_PAIRS" --grid-every 400 \
        --autocast off --device "$DEVICE" $settings >"runs/sweep/logs/$name.log" 2>&1 &
done
wait
for spec in "${RUNS[@]}"; do
    read -r name _ <<<"$spec"
    for part in "" best; do
        [ -f "runs/sweep/$name/$part/shift_block.safetensors" ] || continue
        timeout "$EVAL_SECONDS" python3 -m hspace evaluate "runs/sweep/$name/$part" --num-pairs "$PAIRS" --recalibrate-pairs "$PAIRS" --device "$DEVICE" \
            --out "runs/sweep/$name/eval$part" --json "runs/sweep/logs/eval-$name${part:+-$part}.json" \
            >>"runs/sweep/logs/eval-$name.log" 2>&1 &
    done
done
wait
summary='import json, sys
r = json.load(open(sys.argv[1]))
lg = "-" if r["lg_mean"] is None else "%.3f" % r["lg_mean"]  # best/ has no log of its own
print(sys.argv[1], "RCA %.3f FID %.1f / %.1f L_G %s overlap %.3f" % (r["rca"], r["fid_raw"], r["fid_shifted"], lg, r["edit_overlap_mean"]))'
for f in runs/sweep/logs/eval-*.json; do python3 -c "$summary" "$f"; done
echo "total $(($(date +%s) - T0)) s"
tar cf "$OUT/sweep.tar" --exclude checkpoint.pt runs/sweep
ls -la "$OUT"
