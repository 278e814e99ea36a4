"""Training behaviour: determinism, bit-identical resume, Ctrl-C, a full disk during a
checkpoint, gradient accumulation, eval/info output."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from motcli import MOT, Workdir, metrics, run  # noqa: E402


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def latest(run_dir, name="state.safetensors"):
    """A file of the run's newest checkpoint (RUN/checkpoints/step-N/)."""
    root = os.path.join(run_dir, "checkpoints")
    steps = sorted(n for n in os.listdir(root) if n.startswith("step-") and n[5:].isdigit())
    return os.path.join(root, steps[-1], name)


def read_safetensors(path):
    """(header without __metadata__, metadata, data section) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    return {k: v for k, v in header.items() if k != "__metadata__"}, header.get("__metadata__", {}), raw[8 + n:]


def rng_state(path):
    """The training RNG's four 64-bit words from a state.safetensors (metadata: 16-digit hex words)."""
    text = read_safetensors(path)[1]["rng_state"]
    words = text.split(" ")
    assert len(words) == 4 and all(len(w) == 16 for w in words), text
    return [int(w, 16) for w in words]


def drop_metadata(path, key):
    """Rewrites a safetensors file without metadata `key` (as an older mot wrote it)."""
    tensors, meta, data = read_safetensors(path)
    header = dict(tensors, __metadata__={k: v for k, v in meta.items() if k != key})
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + data)


def train_rng(seed, step):
    """src/mot/train/train_rng.hpp: the RNG state derived from seed and step (splitmix64 seeding)."""
    mask = (1 << 64) - 1
    h = 0xcbf29ce484222325
    for c in b"mot/train-rng":
        h = ((h ^ c) * 0x100000001b3) & mask
    x = (seed ^ h ^ (step * 0x9e3779b97f4a7c15)) & mask
    words = []
    for _ in range(4):
        x = (x + 0x9e3779b97f4a7c15) & mask
        z = x
        z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & mask
        z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & mask
        words.append(z ^ (z >> 31))
    return words


class Training(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Workdir()
        cls.cfg, cls.data = cls.w.tiny_data()

    @classmethod
    def tearDownClass(cls):
        cls.w.tmp.cleanup()

    def train(self, out, *extra, **kw):
        r = run(["train", "--config", self.cfg, "--data", self.data, "--out", self.w.p(out), *extra], **kw)
        return r

    def test_deterministic(self):
        a = self.train("det-a", "--steps", "12")
        b = self.train("det-b", "--steps", "12")
        self.assertEqual(a.returncode, 0, a.stderr)
        self.assertEqual(b.returncode, 0, b.stderr)
        la = [m["loss"] for m in metrics(self.w.p("det-a"))]
        lb = [m["loss"] for m in metrics(self.w.p("det-b"))]
        self.assertEqual(len(la), 12)
        self.assertEqual(la, lb, "same seed, config and threads must give bit-identical losses")
        self.assertEqual(digest(self.w.p("det-a/model.safetensors")), digest(self.w.p("det-b/model.safetensors")))
        self.assertLess(la[-1], la[0], "loss should fall")

    def test_resume_is_bit_identical(self):
        a = self.train("straight", "--steps", "20")
        self.assertEqual(a.returncode, 0, a.stderr)
        b = self.train("split", "--steps", "20", "--stop-at", "10")
        self.assertEqual(b.returncode, 0, b.stderr)
        self.assertEqual(len(metrics(self.w.p("split"))), 10)
        c = run(["train", "--resume", "--out", self.w.p("split")])
        self.assertEqual(c.returncode, 0, c.stderr)
        ma, mb = metrics(self.w.p("straight")), metrics(self.w.p("split"))
        self.assertEqual([m["step"] for m in mb], list(range(1, 21)))
        self.assertEqual([m["loss"] for m in ma], [m["loss"] for m in mb])
        self.assertEqual([m.get("val_loss") for m in ma], [m.get("val_loss") for m in mb])
        self.assertEqual(digest(self.w.p("straight/model.safetensors")), digest(self.w.p("split/model.safetensors")))
        self.assertEqual(digest(latest(self.w.p("straight"))), digest(latest(self.w.p("split"))))
        self.assertEqual(rng_state(latest(self.w.p("straight"))), rng_state(latest(self.w.p("split"))))

    def test_rng_state_is_saved_and_resumed(self):
        """The training RNG (DESIGN: part of the training state) is in every checkpoint;
        a --stop-at/--resume run holds the same state at each step as a straight run,
        and a state file without it (an older mot) resumes from a state derived from
        seed and step."""
        straight, split = self.w.p("rng-straight"), self.w.p("rng-split")
        self.assertEqual(self.train("rng-straight", "--steps", "6", "--stop-at", "3").returncode, 0)
        at_3 = rng_state(latest(straight))
        self.assertEqual(run(["train", "--resume", "--out", straight]).returncode, 0)
        self.assertEqual(self.train("rng-split", "--steps", "6", "--stop-at", "3").returncode, 0)
        self.assertEqual(rng_state(latest(split)), at_3)
        self.assertEqual(run(["train", "--resume", "--out", split, "--stop-at", "5"]).returncode, 0)
        self.assertEqual(run(["train", "--resume", "--out", split]).returncode, 0)
        self.assertEqual(rng_state(latest(split)), rng_state(latest(straight)))
        self.assertEqual([m["loss"] for m in metrics(split)], [m["loss"] for m in metrics(straight)])
        # An older state file: no rng_state.
        old = self.w.p("rng-old")
        self.assertEqual(self.train("rng-old", "--steps", "6", "--stop-at", "3").returncode, 0)
        drop_metadata(latest(old), "rng_state")
        self.assertNotIn("rng_state", read_safetensors(latest(old))[1])
        r = run(["train", "--resume", "--out", old])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([m["loss"] for m in metrics(old)], [m["loss"] for m in metrics(straight)])
        with open(os.path.join(old, "config.toml"), "rb") as f:
            seed = tomllib.load(f)["train"]["seed"]
        # Nothing draws from the RNG yet, so the state at step 6 is the one derived at step 3.
        self.assertEqual(rng_state(latest(old)), train_rng(seed, 3))
        self.assertNotEqual(train_rng(seed, 3), at_3)

    def test_existing_run_needs_resume(self):
        self.assertEqual(self.train("twice", "--steps", "2").returncode, 0)
        r = self.train("twice", "--steps", "2")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--resume", r.stderr)

    def test_ctrl_c_saves_and_resumes(self):
        out = self.w.p("interrupted")
        p = subprocess.Popen([MOT, "train", "--config", self.cfg, "--data", self.data, "--out", out,
                              "--steps", "100000", "--set", "train.save_every=0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            if os.path.exists(os.path.join(out, "metrics.jsonl")) and len(metrics(out)) >= 3:
                break
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 130, err)
        self.assertIn("interrupted", err)
        steps = len(metrics(out))
        r = run(["eval", "--model", os.path.join(out, "model.safetensors"), "--input", self.data, "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(["train", "--resume", "--out", out, "--steps", str(steps + 2)])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([m["step"] for m in metrics(out)], list(range(1, steps + 3)))

    def test_full_disk_during_checkpoint_keeps_last_checkpoint(self):
        out = self.w.p("diskfull")
        self.assertEqual(self.train("diskfull", "--steps", "4").returncode, 0)
        model, state = digest(os.path.join(out, "model.safetensors")), digest(latest(out))
        # The model file is ~200 KB: a 64 KiB file-size limit makes the next save fail.
        r = run(["train", "--resume", "--out", out, "--steps", "8"], limit_fsize=64 * 1024)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertTrue(r.stderr.strip().splitlines()[-1].startswith("mot: error:"), r.stderr)
        self.assertEqual(digest(os.path.join(out, "model.safetensors")), model)
        self.assertEqual(digest(latest(out)), state)
        self.assertEqual(digest(latest(out, "model.safetensors")), model)
        self.assertEqual([os.path.join(d, f) for d, ds, fs in os.walk(out) for f in ds + fs if ".tmp" in f], [])
        # And the run still resumes from its last good checkpoint.
        r = run(["train", "--resume", "--out", out, "--steps", "6"])
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_resumes_a_run_saved_by_an_older_mot(self):
        """Runs from before checkpoint directories kept RUN/model.safetensors and
        RUN/state.safetensors side by side: they still resume, and a torn pair (a crash
        between the two renames) is refused."""
        import shutil
        straight = self.w.p("legacy-straight")
        self.assertEqual(self.train("legacy-straight", "--steps", "4").returncode, 0)
        out = self.w.p("legacy")
        self.assertEqual(self.train("legacy", "--steps", "4", "--stop-at", "2").returncode, 0)
        shutil.copy(latest(out), os.path.join(out, "state.safetensors"))
        state_at_2 = self.w.p("legacy-state-at-2")
        shutil.copy(latest(out), state_at_2)
        shutil.rmtree(os.path.join(out, "checkpoints"))
        r = run(["train", "--resume", "--out", out])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(digest(latest(out)), digest(latest(straight)))
        self.assertFalse(os.path.exists(os.path.join(out, "state.safetensors")), "the legacy state was superseded")
        # A torn legacy pair: model at step 4, state still at step 2.
        shutil.copy(state_at_2, os.path.join(out, "state.safetensors"))
        shutil.rmtree(os.path.join(out, "checkpoints"))
        r = run(["train", "--resume", "--out", out, "--steps", "6"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("step", r.stderr.strip().splitlines()[-1])

    def test_grad_accumulation_matches_big_batch(self):
        a = self.train("accum-1", "--steps", "3", "--set", "train.batch_size=4", "--set", "train.grad_accum=1")
        b = self.train("accum-2", "--steps", "3", "--set", "train.batch_size=2", "--set", "train.grad_accum=2")
        self.assertEqual(a.returncode, 0, a.stderr)
        self.assertEqual(b.returncode, 0, b.stderr)
        for ma, mb in zip(metrics(self.w.p("accum-1")), metrics(self.w.p("accum-2"))):
            self.assertAlmostEqual(ma["loss"], mb["loss"], delta=1e-5 * abs(ma["loss"]))
            self.assertAlmostEqual(ma["grad_norm"], mb["grad_norm"], delta=1e-4 * ma["grad_norm"])

    def test_metrics_and_outputs(self):
        out = self.w.p("outputs")
        r = self.train("outputs", "--steps", "10")
        self.assertEqual(r.returncode, 0, r.stderr)
        for f in ("model.safetensors", "checkpoints/step-00000010/model.safetensors",
                  "checkpoints/step-00000010/state.safetensors", "config.toml", "metrics.jsonl"):
            self.assertTrue(os.path.exists(os.path.join(out, f)), f)
        self.assertEqual(os.listdir(os.path.join(out, "checkpoints")), ["step-00000010"], "older checkpoints go")
        m = metrics(out)
        for k in ("step", "loss", "loss/text", "loss/image", "lr", "grad_norm", "tokens", "ms", "tokens_per_s"):
            self.assertIn(k, m[0])
        self.assertIn("val_loss", m[9])
        self.assertIn("val_loss/image", m[9])
        self.assertIn("tok/s", r.stdout)
        r = run(["eval", "--model", os.path.join(out, "model.safetensors"), "--input", self.data, "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual(set(j), {"loss", "loss_by_modality", "targets", "targets_by_modality"})
        self.assertEqual(sum(j["targets_by_modality"].values()), j["targets"])
        # The resolved config reproduces the run.
        r = run(["info", "--config", os.path.join(out, "config.toml"), "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreater(json.loads(r.stdout)["params_total"], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
