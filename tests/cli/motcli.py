"""Helpers shared by the CLI tests: run the engine binary, make small inputs."""
import json
import os
import resource
import subprocess
import tempfile

MOT = os.environ.get("MOT_BIN", os.path.join(os.path.dirname(__file__), "../../build/mot"))
ROOT = os.environ.get("MOT_ROOT", os.path.join(os.path.dirname(__file__), "../.."))

TINY = """
[model]
arch = "mot"
dim = 32
n_layers = 2
n_heads = 4
ffn_hidden = 64
vocab_size = 64
max_seq_len = 64
bos_id = 0
doc_mask = true
qk_norm = true
modalities = [ {name = "text", begin = 0, end = 32}, {name = "image", begin = 32, end = 64} ]

[train]
seq_len = 32
batch_size = 4
steps = 20
lr = 3e-3
min_lr = 3e-4
warmup_steps = 3
log_every = 5
eval_every = 10
eval_batches = 2
save_every = 10
seed = 7
threads = 2
"""


def run(args, limit_fsize=None, env=None, timeout=300):
    def pre():
        if limit_fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_fsize, limit_fsize))
    return subprocess.run([MOT] + args, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=pre, env=env)


class Workdir:
    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="mot-test-")
        self.path = self.tmp.name

    def file(self, name, text):
        p = os.path.join(self.path, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def p(self, name):
        return os.path.join(self.path, name)

    def tiny_data(self, name="data"):
        cfg = self.file("tiny.toml", TINY)
        out = self.p(name)
        r = run(["data", "synth-tokens", "--config", cfg, "--out", out, "--tokens", "20000",
                 "--val-tokens", "2000"])
        assert r.returncode == 0, r.stderr
        return cfg, out


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(l) for l in f if l.strip()]
