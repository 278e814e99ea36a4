"""`--device cuda` where it cannot run is one clear error line and exit 2, and leaves
nothing behind: a build without CUDA says so, a CUDA build on a machine without a GPU
says that. On a machine with a GPU (a CUDA build there) the run must instead train and
match the CPU's first loss. `--device` takes only cpu or cuda."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from motcli import Workdir, metrics, run  # noqa: E402


class Device(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Workdir()
        cls.cfg, cls.data = cls.w.tiny_data()

    @classmethod
    def tearDownClass(cls):
        cls.w.tmp.cleanup()

    def train(self, name, device):
        out = self.w.p(name)
        r = run(["train", "--config", self.cfg, "--data", self.data, "--out", out, "--steps", "3", "--device", device,
                 "--set", "train.log_every=1"])
        return r, out

    def test_cuda_trains_or_says_why_not(self):
        r, out = self.train("cuda", "cuda")
        if r.returncode == 0:  # a CUDA build on a GPU machine
            ref_r, ref = self.train("cpu", "cpu")
            self.assertEqual(ref_r.returncode, 0, ref_r.stderr)
            self.assertAlmostEqual(metrics(out)[0]["loss"], metrics(ref)[0]["loss"], delta=1e-4)
            return
        self.assertEqual(r.returncode, 2, r.stderr)
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        errors = [l for l in lines if l.startswith("mot: error")]
        self.assertEqual(errors, lines[-1:], r.stderr)
        self.assertTrue(lines[-1].startswith("mot: error: --device cuda: "), lines[-1])
        self.assertTrue("built without CUDA" in lines[-1] or "no usable GPU" in lines[-1], lines[-1])
        self.assertFalse(os.path.exists(os.path.join(out, "checkpoints")), "a refused run left checkpoints")

    def test_eval_and_grad_refuse_the_same_way(self):
        r, out = self.train("for-eval", "cpu")
        self.assertEqual(r.returncode, 0, r.stderr)
        model = os.path.join(out, "model.safetensors")
        for args in (["eval", "--model", model, "--input", self.data, "--device", "cuda"],
                     ["bench", "--device", "cuda", "--dim", "32", "--layers", "1", "--heads", "2", "--ffn-hidden", "32",
                      "--vocab", "64", "--seq", "16", "--batch", "1", "--steps", "1", "--warmup", "0"]):
            r = run(args)
            if r.returncode == 0:
                continue  # a GPU is here
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("--device cuda: ", r.stderr.strip().splitlines()[-1])

    def test_unknown_device_is_refused(self):
        r = run(["train", "--config", self.cfg, "--data", self.data, "--out", self.w.p("tpu"), "--device", "tpu"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--device", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
