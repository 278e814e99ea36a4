"""Bad input gets one clear error line on stderr and exit status 2, never a crash or a
partial file."""
import json
import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from motcli import TINY, Workdir, run  # noqa: E402


class BadInput(unittest.TestCase):
    def setUp(self):
        self.w = Workdir()
        self.cfg = self.w.file("tiny.toml", TINY)

    def tearDown(self):
        self.w.tmp.cleanup()

    def expect_error(self, args, needle, **kw):
        r = run(args, **kw)
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        self.assertEqual(r.returncode, 2, f"{args}: exit {r.returncode}, stderr {r.stderr!r}")
        self.assertEqual(len(lines), 1, f"{args}: expected one error line, got {r.stderr!r}")
        self.assertTrue(lines[0].startswith("mot: error:"), lines[0])
        self.assertIn(needle.lower(), lines[0].lower(), lines[0])
        return lines[0]

    def model(self):
        out = self.w.p("m.safetensors")
        r = run(["init", "--config", self.cfg, "--out", out])
        self.assertEqual(r.returncode, 0, r.stderr)
        return out

    def jsonl(self, rows, name="d.jsonl"):
        return self.w.file(name, "".join(json.dumps({"tokens": r}) + "\n" for r in rows))

    def read_st(self, path):
        b = open(path, "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        return json.loads(b[8:8 + n]), b[8 + n:]

    def write_st(self, path, header, data):
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)

    # -- command line --------------------------------------------------------
    def test_unknown_flag(self):
        self.expect_error(["train", "--config", self.cfg, "--out", self.w.p("r"), "--bogus"], "bogus")

    def test_unknown_subcommand(self):
        self.expect_error(["fly"], "fly")

    def test_missing_required_flag(self):
        self.expect_error(["init", "--config", self.cfg], "--out")

    def test_bad_flag_value(self):
        self.expect_error(["train", "--config", self.cfg, "--out", self.w.p("r"), "--steps", "-3"], "steps")

    def test_integer_flags_say_what_they_want(self):
        # CLI11's PositiveNumber quoted a 309-digit range and let 1e20 through.
        for value in ("0", "-3", "abc", "1.5", "99999999999999999999"):
            with self.subTest(steps=value):
                line = self.expect_error(["train", "--config", self.cfg, "--out", self.w.p("r"), "--steps", value],
                                         "--steps: must be a positive integer (got " + value + ")")
                self.assertLess(len(line), 200, line)
        m = self.w.p("m.safetensors")
        cases = [(["train", "--config", self.cfg, "--out", self.w.p("r"), "--stop-at", "0"], "--stop-at", "positive"),
                 (["eval", "--model", m, "--input", m, "--batch", "0"], "--batch", "positive"),
                 (["eval", "--model", m, "--input", m, "--seq-len", "-1"], "--seq-len", "positive"),
                 (["eval", "--model", m, "--input", m, "--max-rows", "-1"], "--max-rows", ">= 0"),
                 (["eval", "--model", m, "--input", m, "--threads", "100000"], "--threads", "0 to 4096"),
                 (["grad", "--model", m, "--input", m, "--out", m, "--threads", "-1"], "--threads", "0 to 4096"),
                 (["bench", "--threads", "100000"], "--threads", "0 to 4096"),
                 (["bench", "--dim", "0"], "--dim", "positive"),
                 (["bench", "--modalities", "4"], "--modalities", "1 to 3"),
                 (["data", "synth-tokens", "--config", self.cfg, "--out", self.w.p("d"), "--tokens", "0"], "--tokens",
                  "positive"),
                 (["compare", "--config", self.cfg, "--out", self.w.p("c"), "--seeds", "0"], "--seeds", "1 to 100"),
                 (["demo", "--steps", "0"], "--steps", "positive"),
                 (["info", "--config", self.cfg, "--seq-len", "0"], "--seq-len", "positive")]
        for args, flag, what in cases:
            with self.subTest(args=args):
                line = self.expect_error(args, flag + ": must be")
                self.assertIn(what, line)
                self.assertLess(len(line), 200, line)

    # -- config ------------------------------------------------------------------
    def test_unknown_config_key(self):
        cfg = self.w.file("c.toml", TINY.replace("dim = 32", "dim = 32\nwidth = 3"))
        self.expect_error(["init", "--config", cfg, "--out", self.w.p("m")], "width")

    def test_unknown_override_key(self):
        self.expect_error(["init", "--config", self.cfg, "--out", self.w.p("m"), "--set", "train.lrr=1"], "lrr")

    def test_wrong_type(self):
        cfg = self.w.file("c.toml", TINY.replace("dim = 32", 'dim = "wide"'))
        self.expect_error(["init", "--config", cfg, "--out", self.w.p("m")], "dim")

    def test_heads_not_dividing_dim(self):
        cfg = self.w.file("c.toml", TINY.replace("n_heads = 4", "n_heads = 5"))
        self.expect_error(["init", "--config", cfg, "--out", self.w.p("m")], "does not divide")

    def test_bad_modality_ranges(self):
        cfg = self.w.file("c.toml", TINY.replace("begin = 32, end = 64", "begin = 30, end = 64"))
        self.expect_error(["init", "--config", cfg, "--out", self.w.p("m")], "image")

    def test_bad_train_numbers(self):
        # TOML spells inf and nan; none of them may reach the optimizer.
        cases = {"lr": ["inf", "nan", "-1.0", "0.0"], "min_lr": ["inf", "nan", "-1e-3", "1.0"],
                 "eps": ["inf", "nan", "0.0", "-1e-8"], "beta1": ["1.0", "-0.1", "nan", "inf"],
                 "beta2": ["1.5", "nan"], "weight_decay": ["inf", "nan", "-0.1"], "grad_clip": ["inf", "nan", "-1.0"],
                 "threads": ["100000", "-1"]}
        for key, values in cases.items():
            for v in values:
                with self.subTest(key=key, value=v):
                    self.expect_error(["init", "--config", self.cfg, "--out", self.w.p("m"), "--set", f"train.{key}={v}"],
                                      f"train.{key}")
        for key in ("norm_eps", "rope_theta"):
            for v in ("inf", "nan", "-1.0"):
                with self.subTest(key=key, value=v):
                    self.expect_error(["init", "--config", self.cfg, "--out", self.w.p("m"), "--set", f"model.{key}={v}"],
                                      f"model.{key}")
        self.assertFalse(os.path.exists(self.w.p("m")))

    def test_config_is_a_directory(self):
        os.mkdir(self.w.p("run"))
        line = self.expect_error(["train", "--config", self.w.p("run"), "--out", self.w.p("r")], "is a directory")
        self.assertIn("not a TOML config file", line)
        # A run directory holds config.toml: point at it.
        open(self.w.p("run/config.toml"), "w").write(TINY)
        self.expect_error(["init", "--config", self.w.p("run"), "--out", self.w.p("m")], "run/config.toml?")

    def test_config_not_readable(self):
        self.expect_error(["train", "--config", self.w.p("nope.toml"), "--out", self.w.p("r")], "no such config file")
        if os.geteuid() != 0:  # root reads anything
            p = self.w.file("locked.toml", TINY)
            os.chmod(p, 0)
            self.expect_error(["init", "--config", p, "--out", self.w.p("m")], "permission denied")

    def test_config_not_toml(self):
        m = self.model()
        self.expect_error(["init", "--config", m, "--out", self.w.p("m2")], "binary file, not a TOML config")
        self.expect_error(["init", "--config", self.w.file("e.toml", ""), "--out", self.w.p("m2")], "no configuration")
        self.expect_error(["init", "--config", self.w.file("j.json", '{"model": {"dim": 3}}\n'), "--out",
                           self.w.p("m2")], "invalid TOML")
        self.expect_error(["init", "--config", self.w.file("t.toml", "[train]\nlr = 1e-3\n"), "--out",
                           self.w.p("m2")], "missing [model] table")

    def test_invalid_toml(self):
        cfg = self.w.file("c.toml", "[model\narch=")
        self.expect_error(["init", "--config", cfg, "--out", self.w.p("m")], "toml")

    def test_missing_config_file(self):
        self.expect_error(["init", "--config", self.w.p("nope.toml"), "--out", self.w.p("m")], "nope.toml")

    def test_unknown_arch(self):
        cfg = self.w.file("c.toml", TINY.replace('arch = "mot"', 'arch = "rnn"'))
        self.expect_error(["init", "--config", cfg, "--out", self.w.p("m")], "arch")

    # -- model files ---------------------------------------------------------------
    def test_missing_tensor(self):
        m = self.model()
        header, data = self.read_st(m)
        del header["output.weight"]
        self.write_st(m, header, data)
        self.expect_error(["eval", "--model", m, "--input", self.jsonl([[1, 2, 3]])], "output.weight")

    def test_wrong_shape(self):
        m = self.model()
        header, data = self.read_st(m)
        name = "layers.0.attention.wq.text.weight"
        header[name]["shape"] = [16, 64]
        self.write_st(m, header, data)
        self.expect_error(["eval", "--model", m, "--input", self.jsonl([[1, 2, 3]])], "shape")

    def test_truncated_safetensors(self):
        m = self.model()
        b = open(m, "rb").read()
        for cut in (4, 100, len(b) // 2, len(b) - 1):
            open(m, "wb").write(b[:cut])
            self.expect_error(["eval", "--model", m, "--input", self.jsonl([[1, 2, 3]])], m)

    def test_corrupt_safetensors(self):
        m = self.model()
        b = bytearray(open(m, "rb").read())
        b[8:20] = b"\x00garbage!!\xff\x01"
        open(m, "wb").write(bytes(b))
        self.expect_error(["eval", "--model", m, "--input", self.jsonl([[1, 2, 3]])], m)

    def test_model_is_not_a_safetensors_file(self):
        data = self.jsonl([[1, 2, 3]])
        self.expect_error(["eval", "--model", self.cfg, "--input", data], "not a safetensors file")
        self.expect_error(["info", "--model", data], "not a safetensors file")
        self.expect_error(["eval", "--model", self.w.path, "--input", data], "is a directory")

    def test_not_a_mot_model(self):
        p = self.w.p("x.safetensors")
        self.write_st(p, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0\0\0\0")
        self.expect_error(["eval", "--model", p, "--input", self.jsonl([[1, 2, 3]])], "config")

    def test_duplicate_tensor_name(self):
        m = self.model()
        b = open(m, "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        header = b[8:8 + n].decode().rstrip()
        name = '"output.weight":'
        entry_start = header.index(name)
        entry_end = header.index("}", entry_start) + 1
        # The same name again, pointing at the embedding's bytes: nlohmann kept the last.
        emb = json.loads(header)["tok_embeddings.weight"]
        dup = name + json.dumps(emb)
        header = header[:entry_end] + "," + dup + header[entry_end:]
        h = header.encode()
        h += b" " * (-len(h) % 8)
        open(m, "wb").write(struct.pack("<Q", len(h)) + h + b[8 + n:])
        self.expect_error(["eval", "--model", m, "--input", self.jsonl([[1, 2, 3]])], "output.weight' twice")

    # -- eval sequence length --------------------------------------------------------
    def test_eval_seq_len_above_max_seq_len(self):
        cfg, data = self.w.tiny_data()
        m = self.model()
        line = self.expect_error(["eval", "--model", m, "--input", data, "--seq-len", "100"], "--seq-len 100")
        self.assertIn("max_seq_len 64", line)
        r = run(["eval", "--model", m, "--input", data, "--seq-len", "64", "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(["eval", "--model", m, "--input", data, "--json"])  # the default 256 shrinks to 64
        self.assertEqual(r.returncode, 0, r.stderr)

    # -- data ---------------------------------------------------------------------
    def test_token_outside_vocabulary(self):
        self.expect_error(["eval", "--model", self.model(), "--input", self.jsonl([[1, 2, 64]])], "vocabulary")

    def test_negative_token_inside_row(self):
        self.expect_error(["eval", "--model", self.model(), "--input", self.jsonl([[1, -1, 3]])], "-1")

    def test_empty_jsonl(self):
        self.expect_error(["eval", "--model", self.model(), "--input", self.w.file("e.jsonl", "")], "no data")

    def test_malformed_jsonl(self):
        self.expect_error(["eval", "--model", self.model(), "--input", self.w.file("e.jsonl", "{tokens: [1]}\n")],
                          "json")

    def test_empty_data_dir(self):
        os.mkdir(self.w.p("empty"))
        self.expect_error(["train", "--config", self.cfg, "--data", self.w.p("empty"), "--out", self.w.p("r")],
                          "empty")

    def test_missing_data(self):
        self.expect_error(["train", "--config", self.cfg, "--data", self.w.p("nothing"), "--out", self.w.p("r")],
                          "nothing")

    def test_data_is_a_shard_file(self):
        cfg, data = self.w.tiny_data()
        shard = os.path.join(data, "train-000.shard")
        line = self.expect_error(["train", "--config", cfg, "--data", shard, "--out", self.w.p("r")],
                                 "pass its directory " + data)
        self.assertIn("shard directory or a .jsonl file", line)
        self.expect_error(["eval", "--model", self.model(), "--input", shard], "pass its directory " + data)

    def test_data_is_not_jsonl(self):
        m = self.model()
        self.expect_error(["eval", "--model", m, "--input", m], "binary file, not a .jsonl file")
        txt = self.w.file("notes.txt", "hello\n")
        self.expect_error(["train", "--config", self.cfg, "--data", txt, "--out", self.w.p("r")],
                          "shard directory or a .jsonl file")
        self.expect_error(["grad", "--model", m, "--input", txt, "--out", self.w.p("g")],
                          "shard directory or a .jsonl file")

    def test_eval_without_targets(self):
        cfg, data = self.w.tiny_data()
        m = self.model()
        # The 2000 validation tokens make no window of 8001 (it said "nothing to train on").
        big = self.w.file("big.toml", TINY.replace("max_seq_len = 64", "max_seq_len = 8192"))
        mb = self.w.p("mb.safetensors")
        self.assertEqual(run(["init", "--config", big, "--out", mb]).returncode, 0)
        line = self.expect_error(["eval", "--model", mb, "--input", data, "--seq-len", "8000"], "no targets to evaluate in")
        self.assertNotIn("train", line)
        one = self.jsonl([[5], [1, 2, 3]])
        self.expect_error(["eval", "--model", m, "--input", one, "--max-rows", "1"], "no targets to evaluate in")

    def test_truncated_and_corrupt_shard(self):
        cfg, data = self.w.tiny_data()
        shard = os.path.join(data, "train-000.shard")
        b = open(shard, "rb").read()
        for bad in (b[:30], b[:len(b) - 3], b"MOTSHRD9" + b[8:], b[:40] + b"\xff" * 8 + b[48:]):
            open(shard, "wb").write(bad)
            self.expect_error(["train", "--config", cfg, "--data", data, "--out", self.w.p("r")], "shard")

    # -- disk full ------------------------------------------------------------------
    def test_disk_full_keeps_old_file(self):
        m = self.model()
        before = open(m, "rb").read()
        self.expect_error(["init", "--config", self.cfg, "--seed", "5", "--out", m], m, limit_fsize=4096)
        self.assertEqual(open(m, "rb").read(), before, "the old model file was damaged")
        leftovers = [f for f in os.listdir(self.w.path) if ".tmp" in f]
        self.assertEqual(leftovers, [], "temporary files left behind")


if __name__ == "__main__":
    unittest.main(verbosity=2)
