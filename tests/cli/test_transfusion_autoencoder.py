"""Transfusion on a learned latent space (`mot data synth --setting transfusion
--autoencoder`): the corpus holds each image as the latents of a small convolutional
autoencoder trained on the corpus's training images, the model's continuous modality is
that latent image, and everything that meets real images (data show, generate, caption
an image, evalgen) goes through the autoencoder: images in and out are the corpus's
pixel size. Checked against the autoencoder's own files: the shards' bytes are what
`mot data show` decodes, and a missing or corrupt autoencoder is one error line, exit 2."""
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
steps = 8
lr = 3e-3
min_lr = 3e-4
warmup_steps = 2
log_every = 2
eval_every = 4
eval_batches = 2
save_every = 4
seed = 3
threads = 2
caption_noise_max = 500
cfg_dropout = 0.5

[data]
path = "{data}"
"""


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


class TransfusionAutoencoder(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Workdir()
        cls.data = cls.w.p("corpus")
        r = run(["data", "synth", "--setting", "transfusion", "--autoencoder", "--autoencoder-steps", "30",
                 "--out", cls.data, "--scenes", "300", "--val-scenes", "16", "--image-size", "16",
                 "--latent-channels", "3", "--latent-patch", "2", "--text-vocab", "160"])
        assert r.returncode == 0, r.stderr
        cls.synth_log = r.stderr
        cls.cfg = cls.w.file("tf.toml", CONFIG.format(data=cls.data))
        r = run(["train", "--config", cls.cfg, "--out", cls.w.p("run")])
        assert r.returncode == 0, r.stderr
        cls.model = cls.w.p("run/model.safetensors")

    def test_corpus_holds_latents_the_model_sees(self):
        with open(os.path.join(self.data, "vocab.json")) as f:
            vocab = json.load(f)
        # 16 px images -> a 4x4x3 latent grid, cut into 2x2 tiles: 4 positions of 12 values.
        self.assertEqual(vocab["modalities"][1],
                         {"name": "image", "kind": "continuous", "patch": 2, "channels": 3, "image_size": 4})
        self.assertEqual(vocab["autoencoder"], {"file": "autoencoder.safetensors", "modality": "image",
                                                "image_size": 16, "latent_size": 4, "latent_channels": 3})
        self.assertEqual(vocab["tokens_per_image"], 4)
        self.assertTrue(os.path.exists(os.path.join(self.data, "autoencoder.safetensors")))
        with open(os.path.join(self.data, "summary.json")) as f:
            summary = json.load(f)
        self.assertEqual(summary["autoencoder"]["steps"], 30)
        self.assertGreater(summary["autoencoder"]["psnr_db"]["heldout"], 0)
        self.assertIn("autoencoder step 30/30", self.synth_log)
        r = run(["data", "inspect", os.path.join(self.data, "val-gen.shard")])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("4x4x3", r.stdout)
        png = self.w.p("show.png")
        r = run(["data", "show", self.data, "--split", "val-gen", "--doc", "0", "--out", png])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("4 image positions", r.stdout)
        self.assertEqual(png_size(png), (16, 16))  # decoded to pixels, not the 4x4 latent grid

    def test_training_runs_on_latents(self):
        m = metrics(self.w.p("run"))
        self.assertEqual([x["step"] for x in m], list(range(1, 9)))
        for x in m:
            self.assertAlmostEqual(x["loss"], x["loss/lm"] + 5 * x["loss/diffusion"], places=4)

    def test_generate_and_caption_through_the_autoencoder(self):
        out = self.w.p("gen")
        r = run(["generate", "--model", self.model, "--prompt", "a red circle", "--n", "2", "--steps", "3",
                 "--out", out])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(png_size(os.path.join(out, "000.png")), (16, 16))
        cap = self.w.p("cap")
        r = run(["generate", "--model", self.model, "--prompt-image", os.path.join(out, "000.png"),
                 "--max-tokens", "6", "--out", cap])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(cap, "generations.jsonl")) as f:
            self.assertIn("text", json.loads(f.readline()))
        r = run(["evalgen", "--model", self.model, "--n", "2", "--steps", "2", "--json", "--out", self.w.p("eg")])
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual(j["n"], 2)
        self.assertGreater(png_size(self.w.p("eg/grid.png"))[1], 16)

    def test_truth_baseline_scores_the_decoded_corpus(self):
        # The held-out images as the shards hold them (latent bytes), decoded: an honest
        # ceiling for this latent space, at most the pixel corpus's 1.0.
        r = run(["evalgen", "--data", self.data, "--baseline", "truth", "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual(j["caption.exact"], 1.0)
        self.assertLessEqual(j["image.exact"], 1.0)

    def test_missing_or_corrupt_autoencoder(self):
        import shutil
        bad = self.w.p("bad-corpus")
        shutil.copytree(self.data, bad)
        ae = os.path.join(bad, "autoencoder.safetensors")
        args = ["generate", "--model", self.model, "--data", bad, "--prompt", "a red circle", "--steps", "2"]
        with open(ae, "rb") as f:
            blob = f.read()
        with open(ae, "wb") as f:
            f.write(blob[: len(blob) // 2])
        r = run(args + ["--out", self.w.p("g-trunc")])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("autoencoder.safetensors", r.stderr)
        os.remove(ae)
        r = run(args + ["--out", self.w.p("g-missing")])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("autoencoder.safetensors", r.stderr)

    def test_bad_options(self):
        for extra, msg in ((["--setting", "chameleon"], "--setting transfusion"),
                           (["--setting", "transfusion", "--patch", "2", "--image-size", "18"], "multiple of 4"),
                           (["--setting", "transfusion", "--latent-patch", "3"], "--latent-patch")):
            r = run(["data", "synth", "--autoencoder", "--out", self.w.p("x"), "--scenes", "10"] + extra)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertIn(msg, r.stderr)


if __name__ == "__main__":
    unittest.main()
