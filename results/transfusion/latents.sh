#!/usr/bin/env bash
# Shapes on a learned latent space (issue 15; results/README.md, "Latents"): the corpora
# of shapes.sh (80% caption -> image documents, one object per scene and up to three),
# with each 24x24 image diffused as the 6x6x4 latents of the corpus's own convolutional
# autoencoder (`mot data synth --autoencoder`, 2x2 latent tiles: 9 positions of 16
# values) instead of 36 pixel patches of 48 values. The demo's d96 L3 model, dense, 32 rows per
# step, scored by evalgen on 100 held-out scenes with eta 0 and 1, guidance 3, 50 steps,
# next to the decoded corpus itself (--baseline truth: the autoencoder's ceiling).
# Two runs at a time, one thread each: about 60 minutes on 2 cores. Resumable.
set -euo pipefail
cd "$(dirname "$0")/../.."
MOT=${MOT_BIN:-build/mot}
OUT=results/transfusion/latents
STEPS=${STEPS:-8000}

for objects in 1 3; do
  d=data/transfusion-latents-$objects
  [ -f "$d/vocab.json" ] || "$MOT" data synth --setting transfusion --autoencoder --out "$d" --image-size 24 \
    --max-objects "$objects" --mix-gen 0.8 --mix-cap 0.1 --mix-qa 0.1 --scenes 80000
  mkdir -p "$OUT/corpus-$objects-object"
  cp "$d/summary.json" "$OUT/corpus-$objects-object/"
  "$MOT" evalgen --data "$d" --baseline truth --n 100 --json --out "$OUT/corpus-$objects-object/truth" > /dev/null
done

# train NAME DATA [--set ...]: trains (or resumes) runs/latents/NAME, then scores it.
train() {
  local name=$1 data=$2
  shift 2
  local run=runs/latents/$name resume=()
  [ -d "$run" ] && resume=(--resume)
  OMP_NUM_THREADS=1 "$MOT" train --config configs/tiny-transfusion.toml --set model.arch=dense \
    --set data.path="$data" --set train.batch_size=32 --set train.warmup_steps=200 \
    --set train.save_every=2000 --set train.eval_every=1000 "$@" --steps "$STEPS" --out "$run" "${resume[@]}" \
    > "$run.log" 2>&1
  for eta in 0 1; do
    OMP_NUM_THREADS=1 "$MOT" evalgen --model "$run/model.safetensors" --n 100 --eta "$eta" --json \
      --out "$run/evalgen-eta$eta" > /dev/null
    mkdir -p "$OUT/$name/eta$eta"
    cp "$run/evalgen-eta$eta/grid.png" "$run/evalgen-eta$eta/evalgen.json" "$OUT/$name/eta$eta/"
  done
  cp "$run/config.toml" "$OUT/$name/"
}

mkdir -p runs/latents
train tiny-1-object data/transfusion-latents-1 &
train tiny-3-objects data/transfusion-latents-3 &
wait

# Pairs the one-object model trained on (the held-out scenes use 7 pairs it never saw):
# one prompt per shape, 4 samples each at eta 1, as a grid (a column per prompt).
seen=runs/latents/tiny-1-object/seen-pairs
prompts=("a blue square." "a cyan heart." "a green triangle." "a purple cross." "a red circle." "a white star."
         "a yellow diamond." "an orange ring.")
for i in "${!prompts[@]}"; do
  OMP_NUM_THREADS=1 "$MOT" generate --model runs/latents/tiny-1-object/model.safetensors --prompt "${prompts[$i]}" \
    --n 4 --eta 1 --out "$seen/$i" > /dev/null 2>&1
done
/usr/bin/python3 results/transfusion/pnggrid.py "$OUT/tiny-1-object/seen-pairs-eta1.png" 8 \
  $(for k in 0 1 2 3; do for i in "${!prompts[@]}"; do echo "$seen/$i/00$k.png"; done; done)
