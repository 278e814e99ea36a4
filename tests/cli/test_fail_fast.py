"""Absurd sizes fail fast: the memory a set-up needs is computed from the config before
anything is allocated, and a need beyond this machine's RAM (or beyond 64-bit
arithmetic) is one error line that states it, within seconds and without growing the
process. `mot info` reports sizes (it allocates nothing) but refuses overflow and
nonsense instead of printing negative counts."""
import json
import os
import resource
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from motcli import MOT, ROOT, TINY, Workdir, run  # noqa: E402

# Resident memory a refusal may take. The old behaviour grew several GB (for 20-40 s)
# before an "out of memory". Time is reported, not asserted: speed is for benchmarks,
# and a loaded machine would make a timing assertion flaky.
SMALL_RSS_KIB = 1 << 20  # 1 GiB
# Safety net while a refusal is missing: the child may not map more than this (thread
# pools reserve address space per core, hence the per-core allowance).
AS_LIMIT = max(8 << 30, (os.cpu_count() or 1) * (512 << 20))


def sanitized():
    """An ASan build reserves terabytes of shadow address space at start, so it cannot
    run under an address-space limit at all."""
    with open(MOT, "rb") as f:
        return b"__asan_init" in f.read()


SANITIZED = sanitized()


def run_limited(args):
    """Runs mot under an address-space limit (not under ASan); returns (result, seconds,
    peak RSS KiB of any child so far)."""
    def pre():
        if not SANITIZED:
            resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    t0 = time.monotonic()
    r = subprocess.run([MOT] + args, capture_output=True, text=True, timeout=120, preexec_fn=pre)
    return r, time.monotonic() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


class FailFast(unittest.TestCase):
    def setUp(self):
        self.w = Workdir()
        self.cfg = self.w.file("tiny.toml", TINY)

    def tearDown(self):
        self.w.tmp.cleanup()

    def refused(self, args, *needles):
        r, secs, rss = run_limited(args)
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        self.assertEqual(r.returncode, 2, f"{args}: exit {r.returncode}, stderr {r.stderr!r}")
        self.assertEqual(len(lines), 1, f"{args}: expected one error line, got {r.stderr!r}")
        self.assertTrue(lines[0].startswith("mot: error:"), lines[0])
        for n in needles:
            self.assertIn(n.lower(), lines[0].lower(), lines[0])
        print(f"refused in {secs:.2f} s: {' '.join(args[:1])}", file=sys.stderr)
        self.assertLess(rss, SMALL_RSS_KIB, f"{args}: grew to {rss >> 10} MiB before refusing")
        return lines[0]

    def config(self, **changes):
        text = TINY
        for key, value in changes.items():
            table = "[train]" if key in ("seq_len", "batch_size", "grad_accum") else "[model]"
            text = text.replace(table, f"{table}\n{key} = {value}", 1)
            # drop the original line of that key
            lines = text.splitlines()
            first = next(i for i, l in enumerate(lines) if l.startswith(f"{key} = "))
            lines = [l for i, l in enumerate(lines) if i == first or not l.startswith(f"{key} = ")]
            text = "\n".join(lines) + "\n"
        return self.w.file("big.toml", text)

    def jsonl(self):
        return self.w.file("d.jsonl", "".join(json.dumps({"tokens": [0, 1, 2, 33, 34, 5]}) + "\n" for _ in range(8)))

    # -- training ------------------------------------------------------------------
    def test_train_huge_layer_counts(self):
        for layers in ("100000000", "1000000000"):
            with self.subTest(n_layers=layers):
                line = self.refused(["train", "--config", self.config(n_layers=layers), "--data", self.jsonl(),
                                     "--out", self.w.p("r" + layers)], f"{layers} layers", "needs", "of ram")
                self.assertIn("to train", line)
                self.assertFalse(os.path.exists(self.w.p("r" + layers)) and os.listdir(self.w.p("r" + layers)),
                                 "a refused run left files behind")

    def test_train_huge_widths(self):
        cases = [{"dim": "1000000", "n_heads": "1000"}, {"ffn_hidden": "1000000000000"},
                 {"vocab_size": "2000000000",
                  "modalities": '[ {name = "text", begin = 0, end = 32}, {name = "image", begin = 32, end = 2000000000} ]'}]
        for case in cases:
            with self.subTest(**case):
                self.refused(["train", "--config", self.config(**case), "--data", self.jsonl(), "--out", self.w.p("r")],
                             "needs", "of ram")

    def test_train_huge_batch(self):
        self.refused(["train", "--config", self.config(batch_size="1000000000"), "--data", self.jsonl(),
                      "--out", self.w.p("r")], "1000000000 rows")

    def test_train_many_experts(self):
        cfg = self.config(arch='"moe"', n_experts="1024", dim="4096", n_heads="32", ffn_hidden="16384",
                          untie="[]")
        self.refused(["train", "--config", cfg, "--data", self.jsonl(), "--out", self.w.p("r")], "needs", "of ram")

    # The trainer keeps grad_accum micro-batches; it refuses once it calls
    # ensure_training_fits (src/mot/model/memory.hpp) before building the model.
    def test_train_huge_grad_accum(self):
        self.refused(["train", "--config", self.config(grad_accum="1000000000"), "--data", self.jsonl(),
                      "--out", self.w.p("r")], "grad_accum", "needs", "of ram")

    # -- other commands that build a model -----------------------------------------
    def test_init_huge_model(self):
        self.refused(["init", "--config", self.config(n_layers="1000000000"), "--out", self.w.p("m.safetensors")],
                     "1000000000 layers", "needs", "to run", "of ram")
        self.assertFalse(os.path.exists(self.w.p("m.safetensors")))

    def test_bench_huge_sizes(self):
        small = ["--vocab", "96", "--dim", "32", "--layers", "2", "--heads", "4", "--ffn-hidden", "48", "--seq", "40",
                 "--batch", "2", "--warmup", "0", "--steps", "1"]
        for flag, value in (("--layers", "1000000000"), ("--dim", "1000000"), ("--seq", "100000000"),
                            ("--batch", "10000000"), ("--ffn-hidden", "1000000000000")):
            with self.subTest(flag=flag):
                args = list(small)
                args[args.index(flag) + 1] = value
                if flag == "--dim":
                    args[args.index("--heads") + 1] = "1000"
                self.refused(["bench", *args], "needs")

    def test_overflowing_sizes_are_refused_not_wrapped(self):
        # d^2 alone is 1e24: the parameter count cannot be held in 64 bits.
        cfg = self.config(dim="1000000000000", n_heads="1000", ffn_hidden="64")
        for args in (["init", "--config", cfg, "--out", self.w.p("m")], ["info", "--config", cfg]):
            with self.subTest(cmd=args[0]):
                self.refused(args, "64-bit")

    # -- info ------------------------------------------------------------------------
    def test_info_overflow_exits_2(self):
        # dim 1e9: 4d^2 + 3dF per layer and copy overflows int64 (printed negative before).
        self.refused(["info", "--config", self.cfg, "--set", "model.dim=1000000000", "--set", "model.n_heads=1000"],
                     "64-bit")

    def test_info_refuses_non_positive_seq_len(self):
        for v in ("-5", "0"):
            with self.subTest(seq_len=v):
                self.refused(["info", "--config", self.cfg, "--seq-len", v], "--seq-len", "positive integer")

    def test_info_reports_sizes_beyond_this_machine(self):
        # A billion layers cannot be trained here, but info only counts: it answers without allocating.
        r, secs, rss = run_limited(["info", "--config", self.config(n_layers="1000000000"), "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertGreater(j["params_total"], 10 ** 12)
        self.assertGreater(j["flops_per_token_forward"], 0)
        self.assertLess(rss, SMALL_RSS_KIB)

    def test_info_paper_configs(self):
        for name in ("mot-7b.toml", "dense-7b.toml", "mot-1.5b.toml"):
            with self.subTest(config=name):
                r = run(["info", "--config", os.path.join(ROOT, "configs", name), "--json"])
                self.assertEqual(r.returncode, 0, r.stderr)
                j = json.loads(r.stdout)
                self.assertGreater(j["params_total"], 10 ** 9)
                self.assertGreater(j["flops_per_token_forward_attention"], 0)

    # -- eval ------------------------------------------------------------------------
    def test_eval_large_batch_on_small_data(self):
        # Rows per pass never exceed the rows there are: a huge --batch costs nothing.
        m = self.w.p("m.safetensors")
        r = run(["init", "--config", self.cfg, "--out", m])
        self.assertEqual(r.returncode, 0, r.stderr)
        r, secs, rss = run_limited(["eval", "--model", m, "--input", self.jsonl(), "--batch", "1000000000", "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        small = run(["eval", "--model", m, "--input", self.jsonl(), "--batch", "3", "--json"])
        self.assertEqual(json.loads(r.stdout)["targets"], json.loads(small.stdout)["targets"])
        self.assertAlmostEqual(json.loads(r.stdout)["loss"], json.loads(small.stdout)["loss"], places=5)
        self.assertLess(rss, SMALL_RSS_KIB)


if __name__ == "__main__":
    unittest.main(verbosity=2)
