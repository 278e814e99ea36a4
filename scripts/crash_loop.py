"""Driver of scripts/crash-loop (see there)."""
import argparse
import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "cli"))
os.environ.setdefault("MOT_BIN", os.path.join(os.path.dirname(__file__), "..", "build", "mot"))
from crashloop import crash_loop, reference  # noqa: E402
from motcli import Workdir  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("minutes", nargs="?", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=40, help="steps per run (each run is killed many times)")
    ap.add_argument("--max-delay", type=float, default=0.8, help="longest wait before a kill, seconds")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    a = ap.parse_args()
    rng = random.Random(a.seed)
    w = Workdir()
    cfg, data = w.tiny_data()
    print(f"crash loop: {a.minutes} min, {a.steps} steps per run, kills within {a.max_delay} s, seed {a.seed}",
          flush=True)
    ref = reference(cfg, data, w.p("reference"), a.steps)
    deadline = time.time() + a.minutes * 60
    rounds = total = progressed = 0
    while time.time() < deadline:
        out = w.p(f"run-{rounds}")
        kills, moved = crash_loop(cfg, data, out, a.steps, ref, seconds=max(1.0, min(60.0, deadline - time.time())),
                                  rng=rng, max_delay=a.max_delay)
        rounds += 1
        total += kills
        progressed += moved
        shutil.rmtree(out)
        print(f"round {rounds}: {kills} kills, {moved} after a new checkpoint; finished bit-identical "
              f"[{total} kills in all]", flush=True)
    print(f"crash loop passed: {total} kills in {rounds} rounds, every resumed run bit-identical to the "
          f"uninterrupted one ({progressed} kills landed after a new checkpoint)")


if __name__ == "__main__":
    main()
