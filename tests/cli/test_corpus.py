"""The built-in corpus: `mot data synth` is deterministic, its shards respect their
modality ranges and document structure, `mot data show` decodes documents, bad
options are refused, and a model trains on it with per-direction validation."""
import hashlib
import json
import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from motcli import ROOT, Workdir, metrics, run  # noqa: E402

SMALL = ["--scenes", "400", "--val-scenes", "30", "--codebook", "64", "--text-vocab", "128", "--vq-iters", "4"]


def read_shard(path):
    with open(path, "rb") as f:
        b = f.read()
    assert b[:8] == b"MOTSHRD1"
    version, tb, n_tok, n_docs, n_mod, _ = struct.unpack_from("<IIQQII", b, 8)
    off = 40
    mods = []
    for _ in range(n_mod):
        name = b[off:off + 32].rstrip(b"\0").decode()
        begin, end = struct.unpack_from("<II", b, off + 32)
        mods.append((name, begin, end))
        off += 40
    fmt = "<%d%s" % (n_tok, "H" if tb == 2 else "I")
    tokens = struct.unpack_from(fmt, b, off)
    off += n_tok * tb
    docs = struct.unpack_from("<%dQ" % (n_docs + 1), b, off)
    return mods, tokens, docs


def digest_dir(d):
    h = {}
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            h[name] = hashlib.sha256(f.read()).hexdigest()
    return h


class Corpus(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Workdir()
        cls.data = cls.w.p("corpus")
        r = run(["data", "synth", "--out", cls.data, "--seed", "3"] + SMALL)
        assert r.returncode == 0, r.stderr

    @classmethod
    def tearDownClass(cls):
        cls.w.tmp.cleanup()

    def test_deterministic(self):
        other = self.w.p("again")
        r = run(["data", "synth", "--out", other, "--seed", "3"] + SMALL)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(digest_dir(self.data), digest_dir(other), "same seed must give the same bytes")
        third = self.w.p("seed4")
        self.assertEqual(run(["data", "synth", "--out", third, "--seed", "4"] + SMALL).returncode, 0)
        self.assertNotEqual(digest_dir(self.data)["train-000.shard"], digest_dir(third)["train-000.shard"])

    def test_shards_respect_ranges_and_structure(self):
        with open(os.path.join(self.data, "vocab.json")) as f:
            vocab = json.load(f)
        text_end = vocab["modalities"][0]["end"]
        per_image = vocab["tokens_per_image"]
        files = [f for f in os.listdir(self.data) if f.endswith(".shard")]
        self.assertEqual(sorted(files), ["train-000.shard", "val-cap.shard", "val-gen.shard", "val-qa.shard"])
        for name in files:
            mods, tokens, docs = read_shard(os.path.join(self.data, name))
            self.assertEqual([m[0] for m in mods], ["text", "image"])
            self.assertEqual(mods[0][2], text_end)
            self.assertEqual(mods[1][2], vocab["vocab_size"])
            for t in tokens:
                self.assertTrue(0 <= t < vocab["vocab_size"])
            for d in range(len(docs) - 1):
                doc = tokens[docs[d]:docs[d + 1]]
                self.assertEqual(doc[0], vocab["bos_id"])
                self.assertEqual(doc[-1], vocab["eos_id"])
                inside = False
                n_img = 0
                for t in doc:
                    if t == vocab["boi_id"]:
                        inside, n_img = True, 0
                    elif t == vocab["eoi_id"]:
                        self.assertEqual(n_img, per_image)
                        inside = False
                    elif inside:
                        self.assertGreaterEqual(t, text_end, "a text token inside an image span")
                        n_img += 1
                    else:
                        self.assertLess(t, text_end, "an image token outside an image span")

    def test_show_decodes_a_document(self):
        out = self.w.p("doc.png")
        r = run(["data", "show", self.data, "--doc", "0", "--split", "val-cap", "--out", out])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("<image>", r.stdout)
        with open(out, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        r = run(["data", "show", self.data, "--doc", "999999"])
        self.assertEqual(r.returncode, 2)

    def test_bad_options(self):
        cases = [
            (["--out", self.data] + SMALL, "not empty"),
            (["--out", self.w.p("z0"), "--scenes", "0"], "scenes"),
            (["--out", self.w.p("z1"), "--image-size", "2", "--patch", "4"], "smaller than one patch"),
            (["--out", self.w.p("z2"), "--image-size", "30", "--patch", "4"], "multiple"),
            (["--out", "/proc/mot-cannot-write-here"], "/proc/mot-cannot-write-here"),
        ]
        for args, needle in cases:
            r = run(["data", "synth"] + args)
            lines = r.stderr.strip().splitlines()
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertEqual(len(lines), 1, (args, r.stderr))
            self.assertIn(needle, lines[0])

    def test_trains_with_per_direction_validation(self):
        cfg = os.path.join(ROOT, "configs", "tiny.toml")
        out = self.w.p("run")
        r = run(["train", "--config", cfg, "--data", self.data, "--out", out, "--steps", "6",
                 "--set", "train.eval_every=3", "--set", "train.eval_batches=1", "--set", "train.warmup_steps=2"])
        self.assertEqual(r.returncode, 0, r.stderr)
        last = metrics(out)[-1]
        for key in ("val_loss/text", "val_loss/image", "val/cap/loss/text", "val/gen/loss/image", "val/qa/loss/text"):
            self.assertIn(key, last)

    def test_demo_writes_report_and_plot(self):
        out = self.w.p("demo")
        r = run(["demo", "--config", os.path.join(ROOT, "configs", "tiny.toml"), "--data", self.data,
                 "--out", out, "--seeds", "2", "--steps", "20", "--evalgen-scenes", "6"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.count("evalgen seed"), 4, r.stderr)
        with open(os.path.join(out, "report.md")) as f:
            report = f.read()
        for needle in ("## Final validation loss", "## Step matching against dense", "caption given image",
                       "image given caption", "seed 2", "## Generation", "![generated images](generation.png)",
                       "- **Generation** (mot vs dense): better images? "):
            self.assertIn(needle, report)
        # the plain-language verdict is printed and is the report's
        verdict = [l for l in r.stdout.splitlines() if l.startswith("**mot against dense in one line:**")]
        self.assertEqual(len(verdict), 1, r.stdout)
        self.assertIn(verdict[0], report)
        gen = report.split("## Generation")[1].split("## Time per step")[0]
        self.assertIn("| images → captions: slot accuracy |", gen)
        # The corpus row of the generation table: its own captions are exact.
        self.assertIn("| images → captions: exact |", gen)
        exact_row = [l for l in gen.splitlines() if l.startswith("| images → captions: exact |")][0]
        self.assertEqual([c.strip() for c in exact_row.strip("|").split("|")][-2], "1.000")
        # every step-matching cell is a ratio or says "not reached"
        rows = [l for l in report.split("## Step matching")[1].split("## FLOPs matching")[0].splitlines()
                if l.startswith("| ") and "| mot |" in l]
        self.assertEqual(len(rows), 7)
        for row in rows:
            cells = [c.strip() for c in row.strip("|").split("|")][2:4]
            for c in cells:
                self.assertTrue(c == "not reached" or 0 < float(c) < 10, row)
        for png in ("loss.png", "loss-flops.png", "loss-wallclock.png", "generation.png"):
            with open(os.path.join(out, png), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        # A second run reuses the finished runs.
        r = run(["demo", "--config", os.path.join(ROOT, "configs", "tiny.toml"), "--data", self.data,
                 "--out", out, "--seeds", "2", "--steps", "20", "--evalgen-scenes", "6"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("already finished", r.stderr)
        self.assertNotIn("evalgen seed", r.stderr)  # the scores of finished runs are reused


if __name__ == "__main__":
    unittest.main(verbosity=2)
