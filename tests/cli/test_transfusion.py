"""The Transfusion setting end to end through the CLI (SPEC 2b): `mot data synth
--setting transfusion` (version 2 shards with raw pixels), training that is
deterministic and resumes bit-identically (τ, noise and caption dropout come from the
saved training RNG), the diffusion loss falling, sampling images and captions (with and
without the KV cache: the same bytes), evalgen, and bad input: one error line, exit 2."""
import hashlib
import json
import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from motcli import Workdir, metrics, run  # noqa: E402

CONFIG = """
[model]
arch = "mot"
dim = 32
n_layers = 2
n_heads = 4
ffn_hidden = 64
max_seq_len = 160
doc_mask = true
diffusion_steps = 1000
diffusion_weight = 5.0

[train]
seq_len = 128
batch_size = 4
steps = 12
lr = 3e-3
min_lr = 3e-4
warmup_steps = 2
log_every = 3
eval_every = 6
eval_batches = 2
save_every = 6
seed = 3
threads = 2
caption_noise_max = 500
cfg_dropout = 0.5

[data]
path = "{data}"
"""


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Transfusion(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Workdir()
        cls.data = cls.w.p("corpus")
        r = run(["data", "synth", "--setting", "transfusion", "--out", cls.data, "--scenes", "400",
                 "--val-scenes", "24", "--image-size", "16", "--patch", "4", "--text-vocab", "160"])
        assert r.returncode == 0, r.stderr
        cls.cfg = cls.w.file("tf.toml", CONFIG.format(data=cls.data))
        r = run(["train", "--config", cls.cfg, "--out", cls.w.p("straight")])
        assert r.returncode == 0, r.stderr
        cls.model = cls.w.p("straight/model.safetensors")

    def test_corpus_is_pixels_in_version_2_shards(self):
        with open(os.path.join(self.data, "vocab.json")) as f:
            vocab = json.load(f)
        self.assertEqual(vocab["setting"], "transfusion")
        self.assertEqual(vocab["modalities"][1],
                         {"name": "image", "kind": "continuous", "patch": 4, "channels": 3, "image_size": 16})
        self.assertEqual(vocab["vocab_size"], vocab["modalities"][0]["end"])
        self.assertFalse(os.path.exists(os.path.join(self.data, "vq.safetensors")))
        for name in ("train-000.shard", "val-gen.shard", "val-cap.shard", "val-qa.shard"):
            with open(os.path.join(self.data, name), "rb") as f:
                head = f.read(12)
            self.assertEqual(head[:8], b"MOTSHRD1")
            self.assertEqual(struct.unpack("<I", head[8:12])[0], 2, name)
        r = run(["data", "inspect", os.path.join(self.data, "train-000.shard")])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("continuous", r.stdout)
        png = self.w.p("show.png")
        r = run(["data", "show", self.data, "--split", "val-gen", "--doc", "0", "--out", png])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("16 image positions", r.stdout)
        with open(png, "rb") as f:
            head = f.read(24)
        self.assertEqual(head[:8], b"\x89PNG\r\n\x1a\n")
        self.assertEqual(struct.unpack(">II", head[16:24]), (16, 16))

    def test_training_logs_both_objectives_and_diffusion_falls(self):
        m = metrics(self.w.p("straight"))
        self.assertEqual([x["step"] for x in m], list(range(1, 13)))
        for key in ("loss", "loss/lm", "loss/diffusion", "loss/text", "loss/image"):
            self.assertIn(key, m[0])
        # loss = loss/lm + 5 loss/diffusion on every step
        for x in m:
            self.assertAlmostEqual(x["loss"], x["loss/lm"] + 5 * x["loss/diffusion"], places=4)
        evals = [x for x in m if "val_loss" in x]
        self.assertEqual([x["step"] for x in evals], [6, 12])
        for tau in (100, 500, 900):
            self.assertIn(f"val_loss/diffusion@{tau}", evals[0])
        # ε-prediction starts near E[ε²] = 1 and must fall
        self.assertLess(evals[-1]["val_loss/diffusion@500"], evals[0]["val_loss/diffusion@500"] + 1e-9)

    def test_resume_is_bit_identical(self):
        split = self.w.p("split")
        r = run(["train", "--config", self.cfg, "--out", split, "--stop-at", "6"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(["train", "--resume", "--out", split])
        self.assertEqual(r.returncode, 0, r.stderr)
        a, b = metrics(self.w.p("straight")), metrics(split)
        for key in ("loss", "loss/diffusion", "loss/lm", "grad_norm"):
            self.assertEqual([x[key] for x in a], [x[key] for x in b], key)
        self.assertEqual([x.get("val_loss/diffusion@900") for x in a], [x.get("val_loss/diffusion@900") for x in b])
        self.assertEqual(digest(self.model), digest(os.path.join(split, "model.safetensors")))

    def test_another_seed_draws_other_noise(self):
        other = self.w.p("seed4")
        r = run(["train", "--config", self.cfg, "--out", other, "--steps", "3", "--set", "train.seed=4"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotEqual(metrics(other)[0]["loss/diffusion"], metrics(self.w.p("straight"))[0]["loss/diffusion"])

    def test_eval_reports_both_losses(self):
        r = run(["eval", "--model", self.model, "--input", self.data, "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertAlmostEqual(j["loss"], j["loss_lm"] + 5 * j["loss_diffusion"], places=4)
        self.assertGreater(j["targets_by_modality"]["image"], 0)

    def test_generate_images_and_captions(self):
        out, nocache = self.w.p("gen"), self.w.p("gen-nocache")
        args = ["generate", "--model", self.model, "--prompt", "a red circle", "--n", "2", "--steps", "4"]
        r = run(args + ["--out", out])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(args + ["--out", nocache, "--no-kv-cache"])
        self.assertEqual(r.returncode, 0, r.stderr)
        for name in ("000.png", "001.png"):
            self.assertEqual(digest(os.path.join(out, name)), digest(os.path.join(nocache, name)), name)
        with open(os.path.join(out, "generations.jsonl")) as f:
            self.assertEqual(len([l for l in f if l.strip()]), 2)
        # eta 1 (fresh noise every step): another image than deterministic DDIM, the same
        # one again for the same seed, with or without the KV cache.
        noisy = [self.w.p("gen-eta1"), self.w.p("gen-eta1-again"), self.w.p("gen-eta1-nocache")]
        for d, extra in zip(noisy, ([], [], ["--no-kv-cache"])):
            r = run(args + ["--eta", "1", "--out", d] + extra)
            self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(noisy[0], "generations.jsonl")) as f:
            self.assertEqual(json.loads(f.readline())["eta"], 1.0)
        for name in ("000.png", "001.png"):
            self.assertNotEqual(digest(os.path.join(out, name)), digest(os.path.join(noisy[0], name)), name)
            for d in noisy[1:]:
                self.assertEqual(digest(os.path.join(noisy[0], name)), digest(os.path.join(d, name)), name)
        cap = self.w.p("cap")
        r = run(["generate", "--model", self.model, "--prompt-image", os.path.join(out, "000.png"),
                 "--max-tokens", "8", "--out", cap])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(cap, "generations.jsonl")) as f:
            self.assertIn("text", json.loads(f.readline()))

    def test_evalgen(self):
        r = run(["evalgen", "--data", self.data, "--baseline", "truth", "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        truth = json.loads(r.stdout)
        self.assertEqual(truth["setting"], "transfusion")
        self.assertEqual(truth["caption.exact"], 1.0)
        r = run(["evalgen", "--data", self.data, "--baseline", "random", "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertLess(json.loads(r.stdout)["image.exact"], truth["image.exact"] + 1e-9)
        r = run(["evalgen", "--model", self.model, "--n", "3", "--steps", "3", "--json", "--out", self.w.p("eg")])
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual(j["n"], 3)
        self.assertEqual(j["sampling"]["cfg"], 3.0)
        self.assertEqual(j["sampling"]["eta"], 0.0)
        for k in ("image.parse_rate", "image.exact", "caption.exact", "caption.slot_acc", "caption.cider"):
            self.assertIn(k, j)
        self.assertTrue(os.path.exists(self.w.p("eg/grid.png")))

    def bad_row(self, name, row):
        p = self.w.file(name, json.dumps(row) + "\n")
        r = run(["eval", "--model", self.model, "--input", p])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        return r.stderr

    def test_bad_inputs(self):
        with open(os.path.join(self.data, "vocab.json")) as f:
            vocab = json.load(f)
        bos, boi, eoi = vocab["bos_id"], vocab["boi_id"], vocab["eoi_id"]
        P, D = 16, 48

        def row(n=P, width=D, t=10, value=0.1):
            return {"tokens": [bos, 5, boi] + [-2] * n + [eoi],
                    "images": [{"latents": [[value] * width] * n, "noise": [[0.5] * width] * n, "t": t}]}

        self.assertIn("patches per image", self.bad_row("span.jsonl", row(n=P - 1)))
        self.assertIn("latent width 47", self.bad_row("width.jsonl", row(width=D - 1)))
        self.assertIn("outside [0, 999]", self.bad_row("tau.jsonl", row(t=1000)))
        self.assertIn("outside [0, 999]", self.bad_row("tau-neg.jsonl", row(t=-3)))
        p = self.w.file("nan.jsonl", json.dumps(row()).replace("0.1", "NaN", 1) + "\n")
        r = run(["eval", "--model", self.model, "--input", p])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("NaN", r.stderr)
        good = self.w.file("good.jsonl", json.dumps(row()) + "\n")
        r = run(["eval", "--model", self.model, "--input", good, "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(["data", "pack", "--config", self.cfg, "--input", good, "--out", self.w.p("x.shard")])
        self.assertEqual(r.returncode, 2)
        self.assertIn("synth --setting transfusion", r.stderr)
        r = run(["generate", "--model", self.model, "--prompt", "a red circle", "--steps", "1001", "--out",
                 self.w.p("g2")])
        self.assertEqual(r.returncode, 2, r.stderr)
        r = run(["generate", "--model", self.model, "--prompt", "a red circle", "--eta", "1.5", "--out",
                 self.w.p("g3")])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("--eta", r.stderr)


if __name__ == "__main__":
    unittest.main()
