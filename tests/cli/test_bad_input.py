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

    def test_not_a_mot_model(self):
        p = self.w.p("x.safetensors")
        self.write_st(p, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0\0\0\0")
        self.expect_error(["eval", "--model", p, "--input", self.jsonl([[1, 2, 3]])], "config")

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
