#!/usr/bin/python3
"""Data-parallel scaling of `mot train` on the benchmark model (README: Speed): tokens/s at
1 and 2 ranks (1 thread each; weak scaling, batch_size rows per rank), the share of the
step spent waiting for communication after backward, and how much of it the overlap of
the reduce-scatter with backward hides (MOT_DP_OVERLAP=0 sends every bucket after
backward instead). With --tcp (root, iproute2) the 2 ranks also run as two hosts: network
namespaces joined by veth, OpenMPI over TCP (tests/cli/netns_cluster.py).

    bench/data_parallel.py [--steps 6] [--dim 512 --layers 8 ...] [--tcp] [--json OUT.json]

Runs are alternated (1, 2, 2 without overlap, ...) over --rounds so machine drift hits
all alike; the first step of every run is a warm-up and not counted."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "cli"))
MOT = os.environ.get("MOT_BIN", os.path.join(ROOT, "build", "mot"))
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_btl_vader_single_copy_mechanism="none", OMPI_MCA_rmaps_base_oversubscribe="1")

CONFIG = """
[model]
arch = "{arch}"
dim = {dim}
n_layers = {layers}
n_heads = {heads}
ffn_hidden = {ffn}
vocab_size = {vocab}
max_seq_len = {maxlen}
modalities = [ {{name = "text", begin = 0, end = {half}}}, {{name = "image", begin = {half}, end = {vocab}}} ]

[train]
seq_len = {seq}
batch_size = {batch}
steps = {steps}
lr = 1e-3
min_lr = 1e-4
warmup_steps = 2
log_every = 1
eval_every = 0
save_every = 0
seed = 1
threads = 1
"""


def train(tmp, name, ranks, cfg, data, extra_env=None, cluster=None):
    out = os.path.join(tmp, name)
    shutil.rmtree(out, ignore_errors=True)
    argv = [MOT, "train", "--config", cfg, "--data", data, "--out", out]
    env = dict(ENV, **(extra_env or {}))
    if cluster:
        r = cluster.mpirun(ranks, argv, env)
    elif ranks > 1:
        r = subprocess.run(["mpirun", "-np", str(ranks)] + argv, capture_output=True, text=True, env=env)
    else:
        r = subprocess.run(argv, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"bench/data_parallel: {name} failed:\n{r.stderr[-2000:]}")
    with open(os.path.join(out, "metrics.jsonl")) as f:
        m = [json.loads(line) for line in f][1:]  # step 1: warm-up
    return {"tokens_per_s": statistics.median(x["tokens_per_s"] for x in m),
            "ms": statistics.median(x["ms"] for x in m),
            "comm_ms": statistics.median(x.get("comm_ms", 0.0) for x in m),
            "reduce_ms": statistics.median(x.get("comm_reduce_ms", 0.0) for x in m),
            "gather_ms": statistics.median(x.get("comm_gather_ms", 0.0) for x in m),
            "floats_sent": m[-1].get("comm_floats_sent", 0)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="mot")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--ffn-hidden", type=int, default=1408)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--tcp", action="store_true", help="also 2 hosts over TCP in network namespaces")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    if not os.access(MOT, os.X_OK):
        sys.exit("bench/data_parallel: build first (scripts/build)")
    with tempfile.TemporaryDirectory(prefix="mot-dp-bench-") as tmp:
        cfg = os.path.join(tmp, "bench.toml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(arch=a.arch, dim=a.dim, layers=a.layers, heads=a.heads, ffn=a.ffn_hidden,
                                  vocab=a.vocab, half=a.vocab // 2, seq=a.seq, maxlen=a.seq + 1, batch=a.batch,
                                  steps=a.steps))
        data = os.path.join(tmp, "data")
        tokens = 2 * a.batch * (a.seq + 1) * (a.steps + 2)
        r = subprocess.run([MOT, "data", "synth-tokens", "--config", cfg, "--out", data, "--tokens", str(tokens),
                            "--val-tokens", str(4 * (a.seq + 1))], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"bench/data_parallel: synth-tokens failed: {r.stderr}")
        runs = {"1 rank": [], "2 ranks": [], "2 ranks, no overlap": [], "2 hosts (TCP, veth)": []}
        cluster = None
        if a.tcp:
            from netns_cluster import Cluster
            cluster = Cluster(2).__enter__()
        try:
            for _ in range(a.rounds):
                runs["1 rank"].append(train(tmp, "r1", 1, cfg, data))
                runs["2 ranks"].append(train(tmp, "r2", 2, cfg, data))
                runs["2 ranks, no overlap"].append(train(tmp, "r2n", 2, cfg, data, {"MOT_DP_OVERLAP": "0"}))
                if cluster:
                    runs["2 hosts (TCP, veth)"].append(train(tmp, "r2t", 2, cfg, data, cluster=cluster))
        finally:
            if cluster:
                cluster.__exit__(None, None, None)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    flags = next((l for l in open("/proc/cpuinfo") if l.startswith("flags")), "")
    res = {"cpu": cpu, "avx512": " avx512f" in flags, "model": vars(a), "runs": {}}
    base = statistics.median(x["tokens_per_s"] for x in runs["1 rank"])
    print(f"{a.arch} d{a.dim} L{a.layers} vocab {a.vocab}, T {a.seq}, {a.batch} rows per rank, 1 thread per rank; {cpu}")
    print(f"{'':22} {'tokens/s':>9} {'vs 1 rank':>9} {'step ms':>9} {'comm ms':>8} {'share':>6} "
          f"{'reduce':>7} {'gather':>7} {'MB sent':>8}")
    for k, v in runs.items():
        if not v:
            continue
        med = {f: statistics.median(x[f] for x in v) for f in v[0]}
        res["runs"][k] = med
        print(f"{k:22} {med['tokens_per_s']:9.0f} {med['tokens_per_s'] / base:9.2f} {med['ms']:9.0f} "
              f"{med['comm_ms']:8.1f} {med['comm_ms'] / med['ms']:6.1%} {med['reduce_ms']:7.1f} {med['gather_ms']:7.1f} "
              f"{med['floats_sent'] * 4 / 1e6:8.1f}")
    if runs["2 ranks, no overlap"]:
        hidden = 1 - res["runs"]["2 ranks"]["reduce_ms"] / max(res["runs"]["2 ranks, no overlap"]["reduce_ms"], 1e-9)
        res["reduce_hidden_by_overlap"] = hidden
        print(f"the reduce-scatter's wait after backward: {res['runs']['2 ranks']['reduce_ms']:.1f} ms with overlap, "
              f"{res['runs']['2 ranks, no overlap']['reduce_ms']:.1f} ms without ({hidden:.0%} hidden)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
