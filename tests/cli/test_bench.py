"""`mot bench`: every arch x dtype x modality count runs and reports the fields other
tools script against, the FLOPs figure follows the stated formula, --profile accounts
for the step, and bad flag values are one clear error line with exit 2.
No timing assertions: speed lives in the benchmarks, not in tests."""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from motcli import run  # noqa: E402

SMALL = ["--vocab", "96", "--dim", "32", "--layers", "2", "--heads", "4", "--ffn-hidden", "48", "--seq", "40",
         "--batch", "2", "--warmup", "1", "--steps", "2"]
FIELDS = ["tokens_per_s", "step_s", "fwd_s", "bwd_s", "opt_s", "gflops", "peak_rss_mib", "page_faults_per_step"]


def bench(*args):
    r = run(["bench", *SMALL, *args, "--json"])
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


class Bench(unittest.TestCase):
    def test_generate_reports_prefill_and_decode(self):
        for arch in ("dense", "mot"):
            for dtype in ("fp32", "bf16"):
                with self.subTest(arch=arch, dtype=dtype):
                    r = run(["bench", "--generate", "--arch", arch, "--dtype", dtype, "--vocab", "96", "--dim", "32",
                             "--layers", "2", "--heads", "4", "--ffn-hidden", "48", "--prompt", "12",
                             "--new-tokens", "5", "--gen-batch", "1,3", "--json"])
                    self.assertEqual(r.returncode, 0, r.stderr)
                    j = json.loads(r.stdout)
                    self.assertEqual([x["batch"] for x in j["results"]], [1, 3])
                    for x in j["results"]:
                        # tokens/s = rows x positions / seconds: prefill the prompt, decode 4 steps
                        self.assertAlmostEqual(x["prefill_tokens_per_s"], x["batch"] * 12 / x["prefill_s"], delta=1e-6 * x["prefill_tokens_per_s"])
                        self.assertAlmostEqual(x["decode_tokens_per_s"], x["batch"] * 4 / x["decode_s"], delta=1e-6 * x["decode_tokens_per_s"])
        r = run(["bench", "--generate", "--new-tokens", "1"])
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_every_arch_dtype_and_modality_count(self):
        for arch in ("dense", "mot"):
            for dtype in ("fp32", "bf16"):
                for mods in (1, 2, 3):
                    with self.subTest(arch=arch, dtype=dtype, modalities=mods):
                        j = bench("--arch", arch, "--dtype", dtype, "--modalities", str(mods))
                        for f in FIELDS:
                            self.assertIn(f, j)
                        self.assertEqual((j["arch"], j["dtype"], j["modalities"]), (arch, dtype, mods))
                        self.assertGreater(j["tokens_per_s"], 0)
                        self.assertAlmostEqual(j["tokens_per_s"], 2 * 40 / j["step_s"], delta=1e-6 * j["tokens_per_s"])
                        self.assertGreaterEqual(j["page_faults_per_step"], 0)
                        # FLOPs = 6*N_active*tokens + 12*L*d*T^2*B with N_active = L(4d^2 + 3dF) + V*d
                        L, d, F, V, T, B = 2, 32, 48, 96, 40, 2
                        n_active = L * (4 * d * d + 3 * d * F) + V * d
                        flops = 6 * n_active * T * B + 12 * L * d * T * T * B
                        self.assertEqual(j["flops_per_step"], flops)
                        self.assertAlmostEqual(j["gflops"], flops / j["step_s"] / 1e9, delta=1e-6 * j["gflops"])
                        self.assertTrue(j["loss"] > 0 and j["loss"] < 20, j["loss"])

    def test_mot_has_more_parameters_but_same_flops(self):
        d, m = bench("--arch", "dense", "--modalities", "3"), bench("--arch", "mot", "--modalities", "3")
        self.assertEqual(d["flops_per_step"], m["flops_per_step"])
        # 3 copies of every layer weight (attention 4d^2 + norms 2d, FFN 3dF) instead of 1
        L, dim, F = 2, 32, 48
        per_layer = 4 * dim * dim + 3 * dim * F + 2 * dim
        self.assertEqual(m["params"] - d["params"], 2 * L * per_layer + 2 * dim)  # + per-modality final norm

    def test_profile_accounts_for_the_step(self):
        j = bench("--arch", "mot", "--dtype", "bf16", "--profile")
        prof = j["profile"]
        for k in ("gemm_forward", "gemm_input_grad", "gemm_weight_grad", "attention_forward", "attention_backward",
                  "rmsnorm", "swiglu", "loss_softmax", "optimizer", "round_bf16", "other"):
            self.assertIn(k, prof)
        total = sum(v["s"] for v in prof.values())
        self.assertAlmostEqual(total, j["profile_step_s"], delta=0.05 * j["profile_step_s"] + 1e-4)
        self.assertGreater(prof["round_bf16"]["calls"], 0)
        self.assertEqual(bench("--arch", "mot", "--profile")["profile"]["round_bf16"]["calls"], 0)
        r = run(["bench", *SMALL, "--profile"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("gemm_forward", r.stdout)

    def test_bad_flag_values(self):
        cases = [["--arch", "transformer"], ["--dtype", "fp16"], ["--modalities", "4"], ["--modalities", "0"],
                 ["--dim", "0"], ["--heads", "5"], ["--steps", "0"], ["--warmup", "-1"], ["--batch", "-2"],
                 ["--vocab", "3", "--modalities", "3"], ["--seq", "abc"], ["--no-such-flag"]]
        for extra in cases:
            with self.subTest(extra=extra):
                r = run(["bench", *SMALL, *extra])
                self.assertEqual(r.returncode, 2, (extra, r.stdout, r.stderr))
                lines = [l for l in r.stderr.splitlines() if l.strip()]
                self.assertEqual(len(lines), 1, r.stderr)
                self.assertTrue(lines[0].startswith("mot: error:") or "error" in lines[0].lower(), lines[0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
