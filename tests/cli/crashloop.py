"""Kill a training run with SIGKILL at random instants, resume it each time, and check
that it ends bit-identical to the same run left alone. Used by the CI test
(tests/cli/test_crash_safety.py, a short loop) and by scripts/crash-loop (minutes)."""
import hashlib
import json
import os
import random
import signal
import struct
import subprocess
import time

from motcli import MOT, run

# Keys of a metrics line that depend on timing, not on the arithmetic.
TIMING = ("ms", "tokens_per_s")


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def metadata(path):
    """__metadata__ of a safetensors file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)).get("__metadata__", {})


def checkpoint_dirs(run_dir):
    """Committed checkpoint directories (step-<digits>), oldest first."""
    root = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(root):
        return []
    names = [n for n in os.listdir(root) if n.startswith("step-") and n[5:].isdigit()]
    return [os.path.join(root, n) for n in sorted(names, key=lambda n: int(n[5:]))]


def check_checkpoints(run_dir):
    """Every committed checkpoint is complete and consistent: both files present, both
    at the directory's step. Returns the newest step (0 if none)."""
    newest = 0
    for d in checkpoint_dirs(run_dir):
        step = int(os.path.basename(d)[5:])
        model, state = os.path.join(d, "model.safetensors"), os.path.join(d, "state.safetensors")
        assert os.path.exists(model) and os.path.exists(state), f"{d}: incomplete checkpoint {os.listdir(d)}"
        assert metadata(model).get("step") == str(step), f"{model}: step {metadata(model).get('step')}"
        assert metadata(state).get("step") == str(step), f"{state}: step {metadata(state).get('step')}"
        newest = step
    return newest


def losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def final_files(run_dir):
    d = checkpoint_dirs(run_dir)[-1]
    return {n: digest(os.path.join(d, n)) for n in ("model.safetensors", "state.safetensors")} | {
        "published": digest(os.path.join(run_dir, "model.safetensors"))}


def train_args(cfg, data, out, steps, resume, save_every=1, log_every=1000):
    """The command line of the runs compared here (a resumed run keeps the config it
    was started with, save_every and log_every included, unless told otherwise)."""
    if resume:
        return ["train", "--resume", "--out", out, "--steps", str(steps)]
    return ["train", "--config", cfg, "--data", data, "--out", out, "--steps", str(steps),
            "--set", f"train.save_every={save_every}", "--set", f"train.log_every={log_every}"]


def reference(cfg, data, out, steps):
    r = run(train_args(cfg, data, out, steps, False))
    assert r.returncode == 0, r.stderr
    return losses(out), final_files(out)


def crash_loop(cfg, data, out, steps, ref, tries=None, seconds=None, rng=None, max_delay=0.6, log=None):
    """Kills `mot train` on `out` at random instants `tries` times (or for `seconds`),
    checking the checkpoints after each kill, then lets it finish and compares it with
    `ref` (from reference()). Returns (kills, kills that landed after a checkpoint)."""
    rng = rng or random.Random(1)
    kills = progressed = 0
    t0 = time.time()
    while (tries is None or kills < tries) and (seconds is None or time.time() - t0 < seconds):
        before = check_checkpoints(out) if os.path.isdir(out) else 0
        resume = before > 0
        p = subprocess.Popen([MOT] + train_args(cfg, data, out, steps, resume), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.0, max_delay))
        p.send_signal(signal.SIGKILL)
        _, err = p.communicate()
        if p.returncode == 0:
            # It finished before the kill: start over on a fresh directory to keep killing.
            assert losses(out) == ref[0], "an interrupted run diverged from the reference"
            assert final_files(out) == ref[1], "an interrupted run's final checkpoint differs"
            subprocess.run(["rm", "-rf", out], check=True)
            continue
        assert p.returncode == -signal.SIGKILL, f"exit {p.returncode}: {err}"
        kills += 1
        after = check_checkpoints(out) if os.path.isdir(out) else 0
        assert after >= before, f"checkpoint went back from step {before} to {after}"
        progressed += after > before
        if log:
            log(f"kill {kills}: checkpoint step {before} -> {after}")
    r = run(train_args(cfg, data, out, steps, check_checkpoints(out) > 0 if os.path.isdir(out) else False))
    assert r.returncode == 0, r.stderr
    assert losses(out) == ref[0], "the resumed run's metrics differ from the uninterrupted run"
    assert final_files(out) == ref[1], "the resumed run's final checkpoint differs from the uninterrupted run"
    leftovers = [os.path.join(dp, n) for dp, dns, fns in os.walk(out) for n in dns + fns
                 if ".tmp." in n or ".trash." in n]
    assert not leftovers, f"temporaries left behind: {leftovers}"
    return kills, progressed
