"""`mot compare`: a small comparison of every kind of variant writes a well-formed
report (every table cell a number or "not reached", valid PNGs, ratios that agree with
the runs' own metrics), re-runs reuse finished runs and resume interrupted ones, and
bad input gets one error line and exit status 2."""
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import unittest
import zlib

sys.path.insert(0, os.path.dirname(__file__))
from motcli import MOT, TINY, Workdir, metrics, run  # noqa: E402

VARIANTS = ["dense", "mot", "moe", "hybrid", "mot-untie-ffn", "share-image=text"]
STEPS = 12
MEAN_CELL = re.compile(r"^(\d+\.\d\d( \(\d+\.\d\d–\d+\.\d\d\))?(, not reached in \d+ of \d+ seeds)?|not reached)$")


def check_png(test, path):
    """Signature, then chunks with valid CRCs from IHDR (non-empty image) to IEND."""
    with open(path, "rb") as f:
        b = f.read()
    test.assertEqual(b[:8], b"\x89PNG\r\n\x1a\n", path)
    off, kinds = 8, []
    while off < len(b):
        n, kind = struct.unpack_from(">I4s", b, off)
        data = b[off + 8:off + 8 + n]
        (crc,) = struct.unpack_from(">I", b, off + 8 + n)
        test.assertEqual(zlib.crc32(kind + data), crc, f"{path}: bad CRC in {kind}")
        kinds.append(kind)
        if kind == b"IHDR":
            w, h = struct.unpack_from(">II", data)
            test.assertTrue(w > 0 and h > 0)
        off += 12 + n
    test.assertEqual((kinds[0], kinds[-1]), (b"IHDR", b"IEND"), path)
    test.assertIn(b"IDAT", kinds)


def tables(section):
    """The markdown tables of a report section: lists of rows of stripped cells."""
    out, cur = [], []
    for line in section.splitlines() + [""]:
        if line.startswith("|"):
            cur.append([c.strip() for c in line.strip()[1:-1].split("|")])
        elif cur:
            out.append(cur)
            cur = []
    return out


def sections(report):
    return {s.split("\n", 1)[0]: s for s in report.split("\n## ")[1:]}


def ratio(dense, variant):
    """The step-matching ratio, computed here independently of the engine."""
    target = dense[-1][1]
    for i, (x, v) in enumerate(variant):
        if v <= target:
            if i == 0:
                return x / dense[-1][0]
            x0, v0 = variant[i - 1]
            frac = (v0 - target) / (v0 - v) if v0 > v else 1.0
            return (x0 + frac * (x - x0)) / dense[-1][0]
    return None


def curve(run_dir, key, per_token=None, seconds=False):
    rows = metrics(run_dir)
    out, tokens, ms = [], 0, 0.0
    for r in rows:
        tokens += r["tokens"]
        ms += r["ms"]
        if key in r:
            x = tokens * per_token if per_token else (ms * 1e-3 if seconds else r["step"])  # as the engine computes it
            out.append((x, r[key]))
    return out


class Compare(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Workdir()
        cls.cfg, cls.data = cls.w.tiny_data()
        # Two validation sets, so the per-set losses are reported too.
        os.rename(os.path.join(cls.data, "val-000.shard"), os.path.join(cls.data, "val-a.shard"))
        shutil.copy(os.path.join(cls.data, "val-a.shard"), os.path.join(cls.data, "val-b.shard"))
        cls.out = cls.w.p("cmp")
        cls.args = ["compare", "--config", cls.cfg, "--data", cls.data, "--variants", ",".join(VARIANTS),
                    "--steps", str(STEPS), "--seeds", "2", "--set", "train.eval_every=3", "--out", cls.out]
        cls.first = run(cls.args)
        with open(os.path.join(cls.out, "report.md")) as f:
            cls.report = f.read()

    @classmethod
    def tearDownClass(cls):
        cls.w.tmp.cleanup()

    def expect_error(self, args, needle):
        r = run(args)
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        self.assertEqual(r.returncode, 2, f"{args}: exit {r.returncode}, stderr {r.stderr!r}")
        self.assertEqual(len(lines), 1, f"{args}: expected one error line, got {r.stderr!r}")
        self.assertTrue(lines[0].startswith("mot: error:"), lines[0])
        self.assertIn(needle.lower(), lines[0].lower(), lines[0])

    def compare_args(self, out, variants="dense,mot", extra=()):
        return ["compare", "--config", self.cfg, "--data", self.data, "--variants", variants, "--steps", "6",
                "--seeds", "1", "--out", out] + list(extra)

    def test_report_is_well_formed(self):
        self.assertEqual(self.first.returncode, 0, self.first.stderr)
        for png in ("loss.png", "loss-flops.png", "loss-wallclock.png"):
            check_png(self, os.path.join(self.out, png))
            self.assertIn(f"]({png})", self.report)
        s = sections(self.report)
        for name in ("Variants", "Final validation loss", "Step matching against dense",
                     "FLOPs matching against dense", "Wall-clock matching against dense", "Summary", "Time per step"):
            self.assertIn(name, s)
        for name, text in s.items():
            for t in tables(text):
                for row in t:
                    self.assertEqual(len(row), len(t[0]), f"{name}: ragged row {row}")
                    for c in row:
                        self.assertTrue(c and c != "n/a" and c != "—", f"{name}: empty cell in {row}")
        variants = [r[0] for r in tables(s["Variants"])[0][2:]]
        self.assertEqual(variants, VARIANTS)
        losses = ["text tokens, all validation data", "image tokens, all validation data"] + [
            f"{m} tokens of validation set '{v}'" for v in "ab" for m in ("text", "image")]
        self.assertEqual([r[0] for r in tables(s["Final validation loss"])[0][2:]], losses)
        for name in ("Step matching against dense", "FLOPs matching against dense",
                     "Wall-clock matching against dense"):
            rows = tables(s[name])[0][2:]
            self.assertEqual([(r[0], r[1]) for r in rows], [(l, v) for l in losses for v in VARIANTS[1:]], name)
            for r in rows:
                for c in r[2:4]:
                    self.assertTrue(c == "not reached" or 0 < float(c) < 100, f"{name}: {r}")
                self.assertRegex(r[4], MEAN_CELL, f"{name}: {r}")

    def test_ratios_match_the_runs_metrics(self):
        s = sections(self.report)
        info = {}
        for v in ("dense", "mot", "moe"):
            r = run(["info", "--config", os.path.join(self.out, "configs", v + ".toml"), "--json"])
            self.assertEqual(r.returncode, 0, r.stderr)
            info[v] = json.loads(r.stdout)["flops_per_token_train"]
        self.assertGreater(info["moe"], info["dense"], "the router's FLOPs count")
        numbers = 0
        for v in ("mot", "moe"):
            for key, label in (("val_loss/text", "text tokens, all validation data"),
                               ("val_loss/image", "image tokens, all validation data")):
                for seed in (1, 2):
                    d, m = (os.path.join(self.out, f"seed-{seed}", x) for x in ("dense", v))
                    for name, kw in (("Step matching against dense", ({}, {})),
                                     ("FLOPs matching against dense",
                                      ({"per_token": info["dense"]}, {"per_token": info[v]})),
                                     ("Wall-clock matching against dense", ({"seconds": True}, {"seconds": True}))):
                        want = ratio(curve(d, key, **kw[0]), curve(m, key, **kw[1]))
                        row = [r for r in tables(s[name])[0] if r[0] == label and r[1] == v][0]
                        self.assertEqual(row[1 + seed], "not reached" if want is None else f"{want:.2f}",
                                         (name, v, key, seed))
                        numbers += want is not None
        self.assertGreater(numbers, 0, "every ratio was 'not reached': the check compared nothing")

    def test_summary_json_agrees_with_the_runs_metrics(self):
        with open(os.path.join(self.out, "summary.json")) as f:
            sj = json.load(f)
        self.assertEqual([v["name"] for v in sj["variants"]], VARIANTS)
        self.assertEqual(sj["seeds"], [1, 2])
        by_key = {m["key"]: m for m in sj["metrics"]}
        compared = 0
        for key in ("val_loss/text", "val_loss/image"):
            m = by_key[key]
            for v in VARIANTS[1:]:
                for i, seed in enumerate((1, 2)):
                    d, x = (curve(os.path.join(self.out, f"seed-{seed}", n), key) for n in ("dense", v))
                    self.assertEqual(m["final"]["dense"][i], d[-1][1])
                    self.assertEqual(m["final"][v][i], x[-1][1])
                    for got, want in ((m["step_matching"][v][i], ratio(d, x)),
                                      # the other direction: dense against the variant's final loss
                                      (m["reverse_step_matching"][v][i],
                                       None if ratio(x, d) is None else ratio(x, d) * x[-1][0] / d[-1][0])):
                        if want is None:
                            self.assertIsNone(got, (key, v, seed))
                        else:
                            self.assertAlmostEqual(got, want, places=9, msg=(key, v, seed))
                            compared += 1
                    # one of the two directions always exists: whichever ends lower is reached
                    self.assertTrue(m["step_matching"][v][i] is not None
                                    or m["reverse_step_matching"][v][i] is not None, (key, v, seed))
        self.assertGreater(compared, 0)
        for r in sj["runs"]:
            rows = metrics(os.path.join(self.out, f"seed-{r['seed']}", r["variant"]))
            self.assertEqual(r["steps"], STEPS)
            self.assertEqual(r["tokens"], sum(x["tokens"] for x in rows))
            tail = [x["loss"] for x in rows if "loss" in x][-1:]  # 12 steps: the last tenth is one step
            self.assertAlmostEqual(r["train_loss_tail"]["loss"], sum(tail) / len(tail), places=12)

    def test_one_line_verdict_sorts_every_loss_by_the_ratios(self):
        summary = sections(self.report)["Summary"]
        line = [l for l in summary.splitlines() if l.startswith("**mot against dense in one line:**")]
        self.assertEqual(len(line), 1, summary)
        groups = {}
        for part in line[0].split(":** ", 1)[1].rstrip(".").split(". "):
            for head in ("Ahead in every seed on ", "Behind in every seed on ", "Even, or the seeds disagree, on "):
                if part.startswith(head):
                    groups[head.split()[0]] = part[len(head):]
        for key, label in (("val_loss/text", "text tokens, all validation data"),
                           ("val_loss/image", "image tokens, all validation data")):
            fwd, rev = [], []
            for seed in (1, 2):
                d, m = (curve(os.path.join(self.out, f"seed-{seed}", x), key) for x in ("dense", "mot"))
                fwd.append(ratio(d, m))
                rev.append(ratio(m, d))  # steps dense needs to reach mot's final (same step counts)
            if all(f is not None and f < 0.95 for f in fwd):
                want = "Ahead"
            elif all(f is None for f in fwd) and all(r is not None and r < 0.95 for r in rev):
                want = "Behind"
            else:
                want = "Even,"
            self.assertIn(label, groups.get(want, ""), (key, fwd, rev, line[0]))
            for other in set(groups) - {want}:
                self.assertNotIn(label + " (", groups[other] + " (", (key, other, line[0]))

    def test_variants_share_data_order_schedule_and_seed(self):
        for seed in (1, 2):
            steps = None
            for v in VARIANTS:
                d = os.path.join(self.out, f"seed-{seed}", v)
                rows = metrics(d)
                self.assertEqual(rows[-1]["step"], STEPS)
                mine = [(r["step"], r["tokens"], r["lr"]) for r in rows]
                self.assertEqual(mine, steps or mine, f"{v}: different batches or schedule")
                steps = mine
                with open(os.path.join(d, "config.toml")) as f:
                    self.assertIn(f"seed = {seed}\n", f.read())
        with open(os.path.join(self.out, "compare.json")) as f:
            desc = json.load(f)
        self.assertEqual(desc["variants"], VARIANTS)
        self.assertEqual(desc["seeds"], [1, 2])
        trains = {json.dumps(c["train"], sort_keys=True) for c in desc["configs"].values()}
        self.assertEqual(len(trains), 1)
        self.assertEqual(desc["configs"]["hybrid"]["model"]["moe_modalities"], ["text"])
        self.assertEqual(desc["configs"]["mot-untie-ffn"]["model"]["untie"], ["ffn"])
        self.assertEqual(desc["configs"]["share-image=text"]["model"]["share"], {"image": "text"})

    def test_rerun_reuses_finished_runs(self):
        r = run(self.args)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.count("already finished"), 2 * len(VARIANTS), r.stderr)
        self.assertNotIn("started", r.stderr)

    def test_resumes_an_unfinished_run(self):
        out = self.w.p("resume")
        r = run(self.compare_args(out))
        self.assertEqual(r.returncode, 0, r.stderr)
        mot = os.path.join(out, "seed-1", "mot")
        full = [{k: v for k, v in m.items() if k not in ("ms", "tokens_per_s")} for m in metrics(mot)]
        with open(os.path.join(mot, "config.toml")) as f:
            threads = re.search(r"threads = (\d+)", f.read()).group(1)
        shutil.rmtree(mot)
        # The same run as compare starts it, stopped after 3 of 6 steps.
        r = run(["train", "--config", os.path.join(out, "configs", "mot.toml"), "--set", "train.seed=1", "--set",
                 "train.threads=" + threads, "--out", mot, "--steps", "6", "--stop-at", "3"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(self.compare_args(out))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stderr, r"seed 1 dense +already finished")
        self.assertRegex(r.stderr, r"seed 1 mot +resumed")
        again = [{k: v for k, v in m.items() if k not in ("ms", "tokens_per_s")} for m in metrics(mot)]
        self.assertEqual(again, full, "a resumed run must continue bit-identically")

    def test_interrupt_saves_and_resumes(self):
        out = self.w.p("interrupt")
        args = self.compare_args(out, extra=["--set", "train.batch_size=32", "--set", "train.save_every=50"])
        args[args.index("--steps") + 1] = "600"
        p = subprocess.Popen([MOT] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        log = os.path.join(out, "seed-1", "mot", "metrics.jsonl")
        deadline = time.time() + 60
        while time.time() < deadline and not (os.path.exists(log) and os.path.getsize(log) > 0):
            time.sleep(0.02)
        p.send_signal(signal.SIGINT)  # the compare process alone: it must stop its children itself
        _, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 130, err)
        self.assertIn("run the same command again", err)
        for proc in os.listdir("/proc"):
            try:
                with open(f"/proc/{proc}/cmdline", "rb") as f:
                    self.assertNotIn(out.encode(), f.read(), "a training child outlived the comparison")
            except OSError:
                pass
        r = run(args)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("resumed", r.stderr)
        self.assertEqual(metrics(os.path.dirname(log))[-1]["step"], 600)

    def test_bad_input(self):
        other = self.w.file("other-vocab.toml", TINY.replace("vocab_size = 64", "vocab_size = 96")
                            .replace("begin = 32, end = 64", "begin = 32, end = 96"))
        elsewhere = self.w.file("elsewhere.toml", TINY.replace('arch = "mot"', 'arch = "moe"')
                                + '\n[data]\npath = "/nonexistent/data"\n')
        junk = self.w.p("junk")
        os.makedirs(junk)
        self.w.file("junk/notes.txt", "mine")
        no_val = self.w.p("no-val")
        os.makedirs(no_val)
        shutil.copy(os.path.join(self.data, "train-000.shard"), no_val)
        cases = [
            (self.compare_args(self.w.p("e1"), "dense,bogus"), "unknown variant 'bogus'"),
            (self.compare_args(self.w.p("e2"), "mot,moe"), "dense baseline is missing"),
            (self.compare_args(self.w.p("e3"), "dense,mot,mot"), "listed twice"),
            (self.compare_args(self.w.p("e4"), "dense,share-video=text"), "unknown modality 'video'"),
            (self.compare_args(self.w.p("e5"), "dense," + other), "vocabulary"),
            (self.compare_args(self.w.p("e6"), "dense," + elsewhere), "different data"),
            (self.compare_args(self.out, "dense,mot"), "holds a different comparison"),
            (self.compare_args(junk), "no compare.json"),
            (self.compare_args(junk, extra=["--fresh"]), "holds no earlier comparison"),
            (self.compare_args(self.w.p("e7"), extra=["--bogus"]), "bogus"),
            (self.compare_args(self.w.p("e8"), extra=["--seeds", "0"]), "seeds"),
            (self.compare_args(self.w.p("e9"), extra=["--parallel", "0"]), "parallel"),
            (["compare", "--config", self.cfg, "--data", self.data, "--out", self.w.p("e10")], "variants"),
            (["compare", "--config", self.cfg, "--data", no_val, "--variants", "dense,mot", "--out", self.w.p("e11")],
             "no validation data"),
        ]
        for args, needle in cases:
            self.expect_error(args, needle)
        for i in range(1, 12):
            self.assertFalse(os.path.exists(self.w.p(f"e{i}")), f"e{i}: a refused comparison left a directory")
        self.assertEqual(os.listdir(junk), ["notes.txt"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
