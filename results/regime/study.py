#!/usr/bin/env python3
"""The regime study of issue 18: where does MoT beat dense on the built-in corpus?

Every point of the grid is one `mot compare` (dense vs MoT, and ablations where named)
on identical data, schedule and seeds; points differ from the base point (the demo's
model and corpus) along one axis each: tokens per parameter, width, image tokens and
codebook, the share of image vs text documents, the learning rate (the same for both
variants). Runs go to runs/regime/<point> (git-ignored, resumable: re-running the same
command continues where it stopped); each finished point's report.md, loss.png and
summary.json are copied to results/regime/<point>/, and `study.py table` writes the
tables of results/regime/TABLE.md from the summaries.

  results/regime/study.py run [POINT ...]     train the named points in that order (default: all, in
                                              the order below)
  results/regime/study.py table               aggregate the finished points
  results/regime/study.py list                the grid

Only the Python standard library; `mot` from build/ (or $MOT_BIN).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MOT = os.environ.get("MOT_BIN", os.path.join(ROOT, "build", "mot"))
RUNS = os.path.join(ROOT, "runs", "regime")
DATA = os.path.join(ROOT, "data", "regime")
OUT = os.path.join(ROOT, "results", "regime")

# Corpora: `mot data synth` arguments. c24-20k is the demo's corpus (0.95M training
# tokens: a 2000-step tiny run sees it about twice); c24-320k has the same images and
# 16x the scenes, so no run below repeats a document.
CORPORA = {
    "c24-80k": ["--image-size", "24", "--codebook", "512", "--scenes", "80000"],
    "c24-20k": ["--image-size", "24", "--codebook", "512", "--scenes", "20000"],
    "c24-320k": ["--image-size", "24", "--codebook", "512", "--scenes", "320000"],
    "c32-160k": ["--image-size", "32", "--codebook", "1024", "--scenes", "160000"],
    "c48-80k": ["--image-size", "48", "--codebook", "2048", "--scenes", "80000"],
    "c24-text": ["--image-size", "24", "--codebook", "512", "--scenes", "320000",
                 "--mix-gen", "0.15", "--mix-cap", "0.15", "--mix-qa", "0.7"],
    "c24-image": ["--image-size", "24", "--codebook", "512", "--scenes", "320000",
                  "--mix-gen", "0.5", "--mix-cap", "0.5", "--mix-qa", "0"],
}


def width(d, ffn):
    return [f"model.dim={d}", f"model.ffn_hidden={ffn}"]


def lr(x):
    return [f"train.lr={x}", f"train.min_lr={x / 10:g}"]


# (point, corpus, steps, --set overrides, variants, what it tests[, seeds]). The base model is
# configs/tiny.toml (d96, 3 layers, 4 heads, FFN 256, 8 rows x 128 tokens, lr 3e-3).
POINTS = [
    ("base", "c24-20k", 2000, [], "dense,mot,mot-untie-ffn,mot-untie-attention",
     "the demo as it was (corpus repeated ~2x); which untied part matters"),
    ("demo", "c24-80k", 2000, [], "dense,mot", "the demo now: base on 80000 scenes (run as `mot demo`)", 3),
    ("fresh-2k", "c24-320k", 2000, [], "dense,mot", "no repeated documents"),
    ("fresh-8k", "c24-320k", 8000, [], "dense,mot", "4x the tokens per parameter"),
    ("batch32", "c24-320k", 2000, ["train.batch_size=32"], "dense,mot",
     "4x the rows per step (the tokens of fresh-8k in a quarter of the steps): less gradient noise per modality"),
    ("batch32-500", "c24-80k", 500, ["train.batch_size=32", "train.eval_every=25", "train.log_every=25"], "dense,mot",
     "32 rows x 500 steps: base's tokens in a quarter of the steps (3 seeds)", 3),
    ("d64", "c24-320k", 2000, width(64, 176), "dense,mot", "width 64"),
    ("d128", "c24-320k", 2000, width(128, 344), "dense,mot", "width 128"),
    ("d192", "c24-320k", 2000, width(192, 512), "dense,mot", "width 192"),
    ("lr1e-3", "c24-320k", 2000, lr(1e-3), "dense,mot", "learning rate 1e-3 (both variants)"),
    ("lr1e-2", "c24-320k", 2000, lr(1e-2), "dense,mot", "learning rate 1e-2 (both variants)"),
    ("text-heavy", "c24-text", 2000, [], "dense,mot", "70% text-only documents"),
    ("image-heavy", "c24-image", 2000, [], "dense,mot", "no text-only documents"),
    ("img32", "c32-160k", 2000, [], "dense,mot", "32x32 images: 64 tokens, 1024 codes"),
    ("img48", "c48-80k", 2000, ["train.seq_len=256", "train.batch_size=4"], "dense,mot",
     "48x48 images: 144 tokens, 2048 codes (rows of 256 tokens, same tokens per step)"),
    ("base-parts", "c24-20k", 2000, [], "dense,mot-untie-ffn+attention,mot-untie-norm",
     "the demo as it was: attention and FFN untied with shared norms, and norms alone"),
    ("d256", "c24-320k", 2000, width(256, 688), "dense,mot", "width 256 (the paper's 37M width)"),
]
SEEDS = 2
CONFIG = "configs/tiny.toml"


def corpus(name):
    path = os.path.join(DATA, name)
    if not os.path.exists(os.path.join(path, "vocab.json")):
        subprocess.run([MOT, "data", "synth", "--out", path, "--force", *CORPORA[name]], check=True)
    return path


def run_point(p):
    name, corp, steps, sets, variants = p[:5]
    seeds = p[6] if len(p) > 6 else SEEDS
    data = corpus(corp)
    cmd = [MOT, "compare", "--config", os.path.join(ROOT, CONFIG), "--data", data, "--variants", variants,
           "--steps", str(steps), "--seeds", str(seeds), "--parallel", "2", "--evalgen-scenes", "0",
           "--out", os.path.join(RUNS, name)]
    for s in sets:
        cmd += ["--set", s]
    print("study:", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode
    if rc != 0:
        sys.exit(f"study: {name}: mot compare exited {rc}; run the same command again to resume")
    dst = os.path.join(OUT, name)
    os.makedirs(dst, exist_ok=True)
    for f in ("report.md", "loss.png", "summary.json"):
        src = os.path.join(RUNS, name, f)
        if os.path.exists(src):
            shutil.copy(src, dst)


def main():
    args = sys.argv[1:]
    if not args or args[0] not in ("run", "table", "list"):
        sys.exit(__doc__)
    if args[0] == "list":
        for p in POINTS:
            print(f"{p[0]:12} {p[1]:10} {p[2]:6} steps  {p[4]:45} {p[5]}")
        return
    if args[0] == "run":
        names = args[1:] or [p[0] for p in POINTS]
        unknown = set(names) - {p[0] for p in POINTS}
        if unknown:
            sys.exit(f"study: unknown point(s) {', '.join(sorted(unknown))} (see `study.py list`)")
        by_name = {p[0]: p for p in POINTS}
        for n in names:  # in the order given
            run_point(by_name[n])
        return
    import regime_table  # noqa: E402  (results/regime/regime_table.py)
    regime_table.write(OUT, POINTS)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
