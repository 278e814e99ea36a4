"""`mot generate` (SPEC section 4): for every arch (dense, MoT, MoE-4x, the MoT+MoE
hybrid) on the built-in corpus with speech, the KV-cache decoder and the uncached one
(the whole prefix recomputed every step) give identical tokens, greedy and sampled;
the output obeys the modality grammar (an image is exactly its code count of image
codes then <eoi>; speech spans hold only units); files and generations.jsonl are
written; same seed, same tokens; bad input gets one line and exit 2."""
import json
import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from motcli import ROOT, Workdir, run  # noqa: E402
from test_corpus import SMALL  # noqa: E402

SPEECH = SMALL + ["--speech", "--speech-units", "32", "--speech-iters", "4"]
ARCHS = {
    "dense": ["model.arch=\"dense\"", "model.untie=[]"],
    "mot": [],
    "moe": ["model.arch=\"moe\"", "model.untie=[]", "model.n_experts=4"],
    "hybrid": ["model.moe_modalities=[\"text\"]", "model.n_experts=4"],
}


def load_meta(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))["__metadata__"]


def gens(out):
    with open(os.path.join(out, "generations.jsonl")) as f:
        return [json.loads(l) for l in f]


class Generate(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Workdir()
        cls.data = cls.w.p("corpus")
        r = run(["data", "synth", "--out", cls.data, "--seed", "4"] + SPEECH)
        assert r.returncode == 0, r.stderr
        with open(os.path.join(cls.data, "vocab.json")) as f:
            cls.vocab = json.load(f)
        cls.models = {}
        for arch, sets in ARCHS.items():
            out = cls.w.p("run-" + arch)
            args = ["train", "--config", os.path.join(ROOT, "configs/tiny-speech.toml"), "--data", cls.data,
                    "--steps", "30", "--out", out, "--set", "train.eval_every=30", "--set", "train.eval_batches=2"]
            for s in sets:
                args += ["--set", s]
            r = run(args)
            assert r.returncode == 0, arch + ": " + r.stderr
            cls.models[arch] = os.path.join(out, "model.safetensors")
        # A held-out image to caption: the first val-cap document's, as the corpus renders it.
        cls.png = cls.w.p("scene.png")
        r = run(["data", "show", cls.data, "--split", "val-cap", "--doc", "0", "--out", cls.png])
        assert r.returncode == 0, r.stderr
        cls.prompts = cls.w.file("prompts.jsonl", "\n".join([
            json.dumps({"prompt": "two shapes: a red square and a blue circle.", "modality": "image"}),
            json.dumps({"image": cls.png}),
            json.dumps({"prompt": "a green cross", "modality": "speech"}),
            json.dumps({"prompt": "three shapes:"}),
        ]) + "\n")

    @classmethod
    def tearDownClass(cls):
        cls.w.tmp.cleanup()

    def generate(self, arch, name, extra):
        out = self.w.p(f"gen-{arch}-{name}")
        r = run(["generate", "--model", self.models[arch], "--prompt-file", self.prompts, "--n", "2",
                 "--max-tokens", "80", "--out", out] + extra)
        self.assertEqual(r.returncode, 0, r.stderr)
        return gens(out), out

    def check_grammar(self, g):
        mods = {m["name"]: (m["begin"], m["end"]) for m in self.vocab["modalities"]}
        v, toks = self.vocab, g["tokens"]
        if g["target"] == "image":
            lo, hi = mods["image"]
            self.assertEqual(toks[0], v["boi_id"])
            self.assertEqual(len(toks), v["tokens_per_image"] + 2)
            self.assertTrue(all(lo <= t < hi for t in toks[1:-1]), toks)
            self.assertEqual(toks[-1], v["eoi_id"])
            self.assertTrue(g["finished"])
        elif g["target"] == "speech":
            lo, hi = mods["speech"]
            self.assertEqual(toks[0], v["bos_speech_id"])
            body = toks[1:-1] if g["finished"] else toks[1:]
            self.assertTrue(all(lo <= t < hi for t in body), toks)
            if g["finished"]:
                self.assertEqual(toks[-1], v["eos_speech_id"])
        else:
            self.assertLessEqual(len(toks), 80)
            if g["finished"]:
                self.assertEqual(toks[-1], v["eos_id"])
            self.assertNotIn(v["bos_id"], toks)

    def test_cached_equals_uncached_every_arch(self):
        for arch in ARCHS:
            for name, extra in (("greedy", ["--temperature", "0"]),
                                ("sampled", ["--temperature", "0.9", "--top-k", "40", "--top-p", "0.95", "--seed", "5"])):
                with self.subTest(arch=arch, sampling=name):
                    cached, out = self.generate(arch, name, extra)
                    uncached, _ = self.generate(arch, name + "-nokv", extra + ["--no-kv-cache"])
                    self.assertEqual([g["tokens"] for g in cached], [g["tokens"] for g in uncached])
                    self.assertEqual(len(cached), 8)
                    for g in cached:
                        self.check_grammar(g)
                        for f in g["files"]:
                            self.assertTrue(os.path.getsize(os.path.join(out, f)) > 0 or f.endswith(".txt"))
                    self.assertTrue(any(f.endswith(".png") for f in cached[0]["files"]))

    def test_audio_prompt_is_transcribed(self):
        wavs = self.w.p("wavs")
        r = run(["data", "show", self.data, "--split", "val-asr", "--doc", "0", "--wav", wavs])
        self.assertEqual(r.returncode, 0, r.stderr)
        wav = os.path.join(wavs, sorted(os.listdir(wavs))[0])
        out = self.w.p("asr")
        r = run(["generate", "--model", self.models["mot"], "--prompt-audio", wav, "--temperature", "0",
                 "--max-tokens", "40", "--out", out])
        self.assertEqual(r.returncode, 0, r.stderr)
        g = gens(out)[0]
        self.assertEqual(g["target"], "text")
        self.assertEqual(g["prompt"], wav)
        self.check_grammar(g)
        # The prompt is the audio's units between the speech markers: tts output back in.
        out2 = self.w.p("tts")
        r = run(["generate", "--model", self.models["mot"], "--prompt", "a red circle.", "--modality", "speech",
                 "--max-tokens", "60", "--seed", "1", "--out", out2])
        self.assertEqual(r.returncode, 0, r.stderr)
        g = gens(out2)[0]
        self.check_grammar(g)
        if len(g["tokens"]) > 2:
            self.assertTrue(any(f.endswith(".wav") for f in g["files"]), g)

    def test_seeded_and_greedy_draws(self):
        a, _ = self.generate("mot", "seed-a", ["--temperature", "1", "--seed", "9"])
        b, _ = self.generate("mot", "seed-b", ["--temperature", "1", "--seed", "9"])
        c, _ = self.generate("mot", "seed-c", ["--temperature", "1", "--seed", "10"])
        self.assertEqual([g["tokens"] for g in a], [g["tokens"] for g in b])
        self.assertNotEqual([g["tokens"] for g in a], [g["tokens"] for g in c])
        # Greedy: the two samples of a prompt are the same; sampled ones differ somewhere.
        g, _ = self.generate("mot", "greedy2", ["--temperature", "0"])
        for i in range(0, 8, 2):
            self.assertEqual(g[i]["tokens"], g[i + 1]["tokens"])
        self.assertTrue(any(a[i]["tokens"] != a[i + 1]["tokens"] for i in range(0, 8, 2)))

    def test_guidance_batched_with_conditional(self):
        out = self.w.p("cfg")
        args = ["generate", "--model", self.models["mot"], "--prompt", "a red square", "--modality", "image",
                "--cfg", "3", "--n", "2", "--seed", "2", "--temperature", "0.8", "--out", out]
        r = run(args)
        self.assertEqual(r.returncode, 0, r.stderr)
        r2 = run(args[:-1] + [out + "-nokv", "--no-kv-cache"])
        self.assertEqual(r2.returncode, 0, r2.stderr)
        self.assertEqual([g["tokens"] for g in gens(out)], [g["tokens"] for g in gens(out + "-nokv")])
        for g in gens(out):
            self.check_grammar(g)

    def test_moe_thresholds_saved(self):
        for arch in ("moe", "hybrid"):
            meta = load_meta(self.models[arch])
            thr = json.loads(meta["moe_thresholds"])
            cfg = json.loads(meta["config"])
            # [layer][ffn copy][expert]: (1 copy | one per modality) x 4 experts; in the
            # hybrid only the text copy (the first) is a mixture.
            copies = 1 if arch == "moe" else 3
            self.assertEqual(len(thr), cfg["n_layers"] * copies * 4)
            for i, t in enumerate(thr):
                if (i // 4) % copies == 0:  # a mixture's expert: a softmax score
                    self.assertTrue(t is not None and 0 < t <= 1, thr)
        self.assertNotIn("moe_thresholds", load_meta(self.models["mot"]))

    def test_threshold_routing_against_expert_choice(self):
        for arch in ("moe", "hybrid"):
            m = self.models[arch]
            r1 = run(["eval", "--model", m, "--input", self.data, "--json", "--max-rows", "16"])
            r2 = run(["eval", "--model", m, "--input", self.data, "--json", "--max-rows", "16", "--routing", "threshold"])
            self.assertEqual(r1.returncode, 0, r1.stderr)
            self.assertEqual(r2.returncode, 0, r2.stderr)
            a, b = json.loads(r1.stdout), json.loads(r2.stdout)
            self.assertNotIn("routing", a)
            g = b["routing"]
            # Calibrated thresholds pick about as often as expert choice (k of n = 1/E per
            # decision) and mostly the same positions; the loss moves little.
            self.assertGreater(g["agreement"], 0.6, g)
            self.assertAlmostEqual(g["choice_picks_per_decision"], 0.25, delta=0.02)
            self.assertLess(abs(g["threshold_picks_per_decision"] - 0.25), 0.15, g)
            self.assertLess(abs(b["loss"] - a["loss"]), 0.1 * a["loss"])
        r = run(["eval", "--model", self.models["mot"], "--input", self.data, "--routing", "threshold"])
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_bad_input(self):
        m = self.models["mot"]
        wrong = self.w.p("wrong.png")
        r = run(["data", "show", self.data, "--split", "val-cap", "--doc", "0", "--out", wrong, "--scale", "2"])
        self.assertEqual(r.returncode, 0, r.stderr)
        cases = {
            "unknown characters": ["--prompt", "\u65e5\u672c\u8a9e \u2603"],
            "image of the wrong size": ["--prompt-image", wrong],
            "--max-tokens 0": ["--prompt", "a", "--max-tokens", "0"],
            "--top-p 2": ["--prompt", "a", "--top-p", "2"],
            "two prompts": ["--prompt", "a", "--prompt-image", self.png],
            "image too short": ["--prompt", "a", "--modality", "image", "--max-tokens", "3"],
            "cfg for text": ["--prompt", "a", "--cfg", "2"],
            "steps on a discrete model": ["--prompt", "a", "--steps", "10"],
        }
        for what, extra in cases.items():
            with self.subTest(what):
                r = run(["generate", "--model", m, "--out", self.w.p("bad")] + extra)
                self.assertEqual(r.returncode, 2, what + ": " + r.stderr)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        # A model with no tokenizers near it.
        lone = self.w.p("lone")
        os.makedirs(lone)
        lone_model = os.path.join(lone, "model.safetensors")
        with open(m, "rb") as f, open(lone_model, "wb") as g:
            g.write(f.read())
        r = run(["generate", "--model", lone_model, "--prompt", "a", "--out", self.w.p("bad2")])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--data", r.stderr)
        # Unless they are given.
        r = run(["generate", "--model", lone_model, "--data", self.data, "--prompt", "a", "--out", self.w.p("ok2")])
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
