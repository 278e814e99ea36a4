#!/usr/bin/env bash
# Reproduces the comparisons under results/ (issues 6, 15): dense vs MoT vs MoE-4x on the
# built-in corpus at two sizes, dense vs MoT in the Transfusion setting, 2 seeds each, 2 runs at a time on a 2-core machine.
# Run from the repository root after scripts/build. Runs go to runs/results-*; the
# reports, plots, resolved configs and every run's metrics are copied to results/*.
set -euo pipefail
cd "$(dirname "$0")/.."
MOT=${MOT_BIN:-build/mot}

# Size 1: the demo model (configs/tiny.toml: d96 L3 H4 F256, T 128, 2000 steps) on the
# demo corpus (24x24 images = 36 tokens, 512 VQ codes, 512 BPE text pieces).
[ -f data/demo/vocab.json ] || "$MOT" data synth --out data/demo --image-size 24 --codebook 512
"$MOT" compare --config configs/tiny.toml --data data/demo --variants dense,mot,moe --seeds 2 \
  --out runs/results-tiny

# Size 2: configs/small.toml (d128 L4 H4 F384, T 256, 1500 steps) on the default
# corpus (32x32 images = 64 tokens, 1024 VQ codes).
[ -f data/small/vocab.json ] || "$MOT" data synth --out data/small
"$MOT" compare --config configs/small.toml --data data/small --variants dense,mot,moe --seeds 2 \
  --out runs/results-small

# The Transfusion setting (SPEC 2b; issue 15): configs/small-transfusion.toml (d160 L5
# H5 F448, T 128, 16 rows, 4000 steps) on the demo's Transfusion corpus (24x24 images as
# 36 pixel patches of 48 values), dense vs MoT, 2 seeds; about 42 minutes.
[ -f data/transfusion/vocab.json ] || "$MOT" data synth --setting transfusion --out data/transfusion --image-size 24
"$MOT" compare --config configs/small-transfusion.toml --data data/transfusion --variants dense,mot --seeds 2 \
  --out runs/results-transfusion

# The regime study (issue 18) has its own driver, resumable, about 2.5 hours on 2 cores:
#   results/regime/study.py run && results/regime/study.py table
# (its batch32-500 point was run as `mot demo` with that point's settings, 3 seeds).

for size in tiny small transfusion; do
  src=runs/results-$size dst=results/$size
  rm -rf "$dst" && mkdir -p "$dst"
  cp "$src"/report.md "$src"/*.png "$src"/compare.json "$dst"/
  cp -r "$src"/configs "$dst"/
  for run in "$src"/seed-*/*/; do
    rel=${run#"$src"/}
    mkdir -p "$dst/$rel"
    cp "$run"/metrics.jsonl "$dst/$rel"
    # evalgen's grid (the corpus's images above the run's own) and scores, where scored
    if [ -f "$run"/evalgen/grid.png ]; then cp "$run"/evalgen/grid.png "$run"/evalgen/evalgen.json "$dst/$rel"; fi
  done
done
