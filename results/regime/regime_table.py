"""Aggregates the regime study's points (results/regime/<point>/summary.json, written by
`mot compare`) into results/regime/TABLE.md.

One number per cell: the step ratio rho of a variant against dense on one validation
loss. When the variant reaches dense's final loss, rho is the paper's step-matching
ratio (below 1: it needs fewer steps). When it ends behind, rho = 1 / (the share of its
steps dense needed to reach the variant's final loss): 1.25 means dense got there in
80% of the steps, so the variant is about 1.25x slower. Such cells carry a '+'. Mean over
seeds, (min-max) in brackets."""
import json
import os
import statistics

LOSSES = [
    ("val_loss/image", "image"),
    ("val_loss/text", "text"),
    ("val/gen/loss/image", "image given caption"),
    ("val/cap/loss/text", "caption given image"),
    ("val/qa/loss/text", "text-only QA"),
]


def rho(summary_metric, variant):
    """Per seed: the step ratio, and whether it is the extrapolated (behind) direction."""
    out = []
    for fwd, rev in zip(summary_metric["step_matching"][variant], summary_metric["reverse_step_matching"][variant]):
        if fwd is not None:
            out.append((fwd, False))
        elif rev:
            out.append((1.0 / rev, True))
    return out


def cell(vals):
    if not vals:
        return "n/a"
    xs = [v for v, _ in vals]
    mark = "+" if any(b for _, b in vals) else ""
    if len(xs) == 1:
        return f"{xs[0]:.2f}{mark}"
    return f"{statistics.mean(xs):.2f}{mark} ({min(xs):.2f}–{max(xs):.2f})"


def gap(summary, key, variant, train=False):
    """Relative final-loss difference variant vs dense, mean over seeds, in percent."""
    if train:
        runs = {(r["variant"], r["seed"]): r["train_loss_tail"].get(key) for r in summary["runs"]}
        d = [runs[("dense", s)] for s in summary["seeds"]]
        v = [runs[(variant, s)] for s in summary["seeds"]]
    else:
        m = next(x for x in summary["metrics"] if x["key"] == key)
        d, v = m["final"]["dense"], m["final"][variant]
    if None in d or None in v:
        return "n/a"
    return f"{100 * (statistics.mean(v) / statistics.mean(d) - 1):+.1f}%"


def corpus_tokens(root, corpus):
    with open(os.path.join(root, "data", "regime", corpus, "summary.json")) as f:
        return json.load(f)["shards"]["train-000.shard"]["tokens"]


def finished(out_dir, points):
    """The points with a summary: (point, its summary, dense's entry, dense's mean training
    tokens, the summary's metrics by key)."""
    for p in points:
        path = os.path.join(out_dir, p[0], "summary.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            s = json.load(f)
        dense = next(v for v in s["variants"] if v["name"] == "dense")
        tokens = statistics.mean(r["tokens"] for r in s["runs"] if r["variant"] == "dense")
        yield p, s, dense, tokens, {m["key"]: m for m in s["metrics"]}


def write(out_dir, points):
    root = os.path.dirname(os.path.dirname(out_dir))
    head = ["point", "what changes", "variant", "dense params", "tokens trained", "tokens / param", "epochs"]
    head += [label for _, label in LOSSES]
    head += ["final image loss vs dense", "train image loss vs dense", "final text loss vs dense"]
    lines = ["# The regime study: step ratio of MoT against dense at each point", "", __doc__.split("\n\n", 1)[1], "",
             "Seeds per point: 2 unless the point says otherwise. Written by `results/regime/study.py table`.", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    done = list(finished(out_dir, points))
    for (name, corpus, _, _, _, what, *_), s, dense, tokens, metrics in done:
        try:
            epochs = f"{tokens / corpus_tokens(root, corpus):.2f}"
        except OSError:
            epochs = "n/a"
        for v in s["variants"][1:]:
            row = [name, what, v["name"], f"{dense['params_total'] / 1e6:.2f}M", f"{tokens / 1e6:.1f}M",
                   f"{tokens / dense['params_total']:.1f}", epochs]
            row += [cell(rho(metrics[k], v["name"])) if k in metrics else "n/a" for k, _ in LOSSES]
            row += [gap(s, "val_loss/image", v["name"]), gap(s, "loss/image", v["name"], train=True),
                    gap(s, "val_loss/text", v["name"])]
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", "The same, compact (as in results/README.md):", "",
              "| point | what changes | tokens / param | seeds | " + " | ".join(l for _, l in LOSSES)
              + " | final image loss | final text loss |", "|" + " --- |" * (4 + len(LOSSES) + 2)]
    for (name, _, _, _, _, what, *_), s, dense, tokens, metrics in done:
        for v in s["variants"][1:]:
            label = name if v["name"] == "mot" else f"{name}: {v['name']}"
            row = [label, what, f"{tokens / dense['params_total']:.1f}", str(len(s["seeds"]))]
            row += [cell(rho(metrics[k], v["name"])) if k in metrics else "n/a" for k, _ in LOSSES]
            row += [gap(s, "val_loss/image", v["name"]), gap(s, "val_loss/text", v["name"])]
            lines.append("| " + " | ".join(row) + " |")
    with open(os.path.join(out_dir, "TABLE.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
