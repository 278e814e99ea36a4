#!/usr/bin/env bash
# Does a small Transfusion model draw the captioned shapes? (issue 15; results/README.md,
# "Shapes".) Two corpora of the built-in scenes, 80% caption -> image documents as in the
# paper: one object per scene, and up to three as in the demo. Dense models trained on
# them, each scored by evalgen on 100 held-out scenes with deterministic DDIM (eta 0, SPEC
# 2b's sampler) and with ancestral steps (eta 1), guidance 3, 50 steps.
# Two runs at a time, one thread each: about 80 minutes on 2 cores. Resumable.
set -euo pipefail
cd "$(dirname "$0")/../.."
MOT=${MOT_BIN:-build/mot}
OUT=results/transfusion/shapes

for objects in 1 3; do
  d=data/transfusion-shapes-$objects
  [ -f "$d/vocab.json" ] || "$MOT" data synth --setting transfusion --out "$d" --image-size 24 \
    --max-objects "$objects" --mix-gen 0.8 --mix-cap 0.1 --mix-qa 0.1 --scenes 80000
done

# train NAME CONFIG DATA STEPS [--set ...]: trains (or resumes) runs/shapes/NAME, then scores it.
train() {
  local name=$1 config=$2 data=$3 steps=$4
  shift 4
  local run=runs/shapes/$name resume=()
  [ -d "$run" ] && resume=(--resume)
  OMP_NUM_THREADS=1 "$MOT" train --config "$config" --set model.arch=dense --set data.path="$data" \
    --set train.save_every=2000 --set train.eval_every=1000 "$@" --steps "$steps" --out "$run" "${resume[@]}" \
    > "$run.log" 2>&1
  for eta in 0 1; do
    OMP_NUM_THREADS=1 "$MOT" evalgen --model "$run/model.safetensors" --n 100 --eta "$eta" --json \
      --out "$run/evalgen-eta$eta" > /dev/null
    mkdir -p "$OUT/$name/eta$eta"
    cp "$run/evalgen-eta$eta/grid.png" "$run/evalgen-eta$eta/evalgen.json" "$OUT/$name/eta$eta/"
  done
  cp "$run/config.toml" "$OUT/$name/"
}

mkdir -p runs/shapes
# The demo's d96 L3 model at 32 rows per step (10000 steps), on one and on three objects.
train tiny-1-object configs/tiny-transfusion.toml data/transfusion-shapes-1 10000 \
  --set train.batch_size=32 --set train.warmup_steps=200 &
train tiny-3-objects configs/tiny-transfusion.toml data/transfusion-shapes-3 10000 \
  --set train.batch_size=32 --set train.warmup_steps=200 &
wait
# One object: results/transfusion's d160 L5 model (16 rows, 8000 steps) and the tiny model
# at 6 layers (32 rows, 7000 steps), about 40 minutes each.
train small-1-object configs/small-transfusion.toml data/transfusion-shapes-1 8000 &
train tiny-6-layers-1-object configs/tiny-transfusion.toml data/transfusion-shapes-1 7000 \
  --set model.n_layers=6 --set train.batch_size=32 --set train.warmup_steps=200 &
wait
