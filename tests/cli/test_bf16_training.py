"""bf16 mixed precision (`train.dtype = "bf16"`) trains like fp32: 200 steps of the
tiny config (configs/tiny.toml, the demo's model) on a small built-in corpus, once in
fp32 and once in bf16, same seed and data order.

Tolerances (stated in the README): every step's training loss within TRAIN_ATOL of
fp32's, the mean over every 20-step window within WINDOW_ATOL, and the final validation loss of every set and modality within
VAL_RTOL relative. bf16 GEMM operands carry 8 significant bits, so the curves are not
identical (asserted too: a run that silently fell back to fp32 would be bit-identical).
"""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from motcli import MOT, ROOT, Workdir, metrics, run  # noqa: E402

STEPS = 200
TRAIN_ATOL = 0.08      # any single step's training loss
WINDOW_ATOL = 0.03     # mean training loss over each 20-step window
VAL_RTOL = 0.03
SMALL = ["--scenes", "600", "--val-scenes", "60", "--image-size", "16", "--codebook", "64", "--text-vocab", "256",
         "--vq-iters", "4"]


class Bf16Training(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Workdir()
        cls.data = cls.w.p("corpus")
        r = run(["data", "synth", "--out", cls.data, "--seed", "5"] + SMALL)
        assert r.returncode == 0, r.stderr
        cfg = os.path.join(ROOT, "configs", "tiny.toml")
        procs = {}
        env = dict(os.environ, OMP_NUM_THREADS="1")
        for dtype in ("fp32", "bf16"):
            out = cls.w.p(dtype)
            args = [MOT, "train", "--config", cfg, "--data", cls.data, "--out", out, "--steps", str(STEPS),
                    "--set", f"train.dtype={dtype}", "--set", "train.log_every=10", "--set", "train.eval_every=100",
                    "--set", "train.save_every=0", "--set", "train.threads=1"]
            procs[dtype] = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        cls.results = {}
        for dtype, p in procs.items():
            out, err = p.communicate(timeout=900)
            assert p.returncode == 0, f"{dtype} run failed: {err[-2000:]}"
            cls.results[dtype] = metrics(cls.w.p(dtype))

    @classmethod
    def tearDownClass(cls):
        cls.w.tmp.cleanup()

    def test_config_records_dtype(self):
        with open(self.w.p("bf16/config.toml")) as f:
            self.assertIn("dtype = 'bf16'", f.read())

    def test_training_losses_agree(self):
        a = {m["step"]: m["loss"] for m in self.results["fp32"] if "loss" in m}
        b = {m["step"]: m["loss"] for m in self.results["bf16"] if "loss" in m}
        self.assertEqual(sorted(a), sorted(b))
        self.assertEqual(max(a), STEPS)
        worst = max(abs(a[s] - b[s]) for s in a)
        steps = sorted(a)
        windows = [steps[i:i + 20] for i in range(0, len(steps), 20)]
        worst_w = max(abs(sum(a[s] for s in w) - sum(b[s] for s in w)) / len(w) for w in windows)
        print(f"\ntraining loss: fp32 {a[10]:.4f} -> {a[STEPS]:.4f}, bf16 {b[10]:.4f} -> {b[STEPS]:.4f}, "
              f"worst |diff| over {len(a)} steps {worst:.4f} (tolerance {TRAIN_ATOL}), "
              f"of 20-step means {worst_w:.4f} (tolerance {WINDOW_ATOL})")
        self.assertLess(a[STEPS], a[10] - 0.5, "fp32 should learn")
        self.assertLessEqual(worst, TRAIN_ATOL)
        self.assertLessEqual(worst_w, WINDOW_ATOL)
        self.assertNotEqual([a[s] for s in sorted(a)], [b[s] for s in sorted(b)], "bf16 run identical to fp32")

    def test_validation_losses_agree(self):
        va = {k: v for m in self.results["fp32"] if m["step"] == STEPS for k, v in m.items() if k.startswith("val/")}
        vb = {k: v for m in self.results["bf16"] if m["step"] == STEPS for k, v in m.items() if k.startswith("val/")}
        self.assertTrue(va, "no validation losses at the last step")
        self.assertEqual(sorted(va), sorted(vb))
        worst = max(abs(va[k] - vb[k]) / abs(va[k]) for k in va)
        print(f"\nvalidation at step {STEPS}: " + ", ".join(f"{k} {va[k]:.4f}/{vb[k]:.4f}" for k in sorted(va)) +
              f"; worst rel diff {worst:.4f} (tolerance {VAL_RTOL})")
        self.assertLessEqual(worst, VAL_RTOL)


if __name__ == "__main__":
    unittest.main(verbosity=2)
