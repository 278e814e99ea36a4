"""`mot data prepare` on a small mixed folder: captioned PNGs (captions.jsonl and
same-named .txt), a JPEG, uncaptioned images, text files, and broken files (corrupt
PNG, truncated JPEG, zero-length file, non-UTF-8 text, a corrupt .wav, an unknown
type). Checks the summary against what the folder holds, the skip list, shard
structure, `mot data show`, tokenizer reuse, determinism, refusals, and that `mot
train` trains on the result. PrepareSpeech does the same for audio: WAVs at 16 kHz,
44.1 kHz stereo and 8 kHz with transcripts (.txt, captions.jsonl) or none, a long one
cut into utterances, a zero-length and a corrupt WAV."""
import hashlib
import io
import math
import json
import os
import struct
import sys
import unittest
import wave
import zlib

sys.path.insert(0, os.path.dirname(__file__))
from motcli import ROOT, Workdir, metrics, run  # noqa: E402

COLORS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40),
          "white": (245, 245, 245), "black": (15, 15, 15)}
SHAPES = ["square", "disc", "bar"]
FAST = ["--image-size", "16", "--patch", "4", "--codebook", "64", "--text-vocab", "300", "--vq-iters", "4",
        "--quiet"]
# The split is a hash of each path against --val-fraction, nothing else: 0.2 holds out
# images, text and audio files of these folders (the default 2% might hold out none).
SPLIT = ["--val-fraction", "0.2"]


def png_bytes(w, h, rgb):
    """A truecolour 8-bit PNG from h*w*3 bytes (no PIL needed)."""
    raw = b"".join(b"\x00" + bytes(rgb[y * w * 3:(y + 1) * w * 3]) for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def jpeg_bytes(w, h, rgb):
    """A baseline YCbCr JPEG that codes only each 8x8 block's mean (every AC
    coefficient zero): valid, decodable by any JPEG reader, and needs no PIL.
    w and h must be multiples of 8."""
    dc_bits = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]  # the standard luminance DC table
    dc_vals = list(range(12))
    codes, code, k = {}, 0, 0
    for length in range(1, 17):
        for _ in range(dc_bits[length - 1]):
            codes[dc_vals[k]] = (code, length)
            code, k = code + 1, k + 1
        code <<= 1
    out, acc, nbits = bytearray(), 0, 0

    def put(value, n):
        nonlocal acc, nbits
        for i in range(n - 1, -1, -1):
            acc, nbits = (acc << 1) | ((value >> i) & 1), nbits + 1
            if nbits == 8:
                out.append(acc)
                if acc == 0xFF:
                    out.append(0)  # byte stuffing
                acc, nbits = 0, 0
    prev = [0, 0, 0]
    for by in range(h // 8):
        for bx in range(w // 8):
            sums = [0.0, 0.0, 0.0]
            for y in range(by * 8, by * 8 + 8):
                for x in range(bx * 8, bx * 8 + 8):
                    r, g, b = rgb[(y * w + x) * 3:(y * w + x) * 3 + 3]
                    sums[0] += 0.299 * r + 0.587 * g + 0.114 * b
                    sums[1] += -0.168736 * r - 0.331264 * g + 0.5 * b + 128
                    sums[2] += 0.5 * r - 0.418688 * g - 0.081312 * b + 128
            for c in range(3):
                dc = int(round(sums[c] / 64 - 128))  # quantiser 8: DC coefficient 8*(mean-128) / 8
                diff, prev[c] = dc - prev[c], dc
                cat = abs(diff).bit_length()
                put(*codes[cat])
                if cat:
                    put(diff if diff > 0 else diff + (1 << cat) - 1, cat)
                put(0, 1)  # end of block: the AC table's only code, "0"
    if nbits:
        put((1 << (8 - nbits)) - 1, 8 - nbits)  # pad with ones
    seg = lambda marker, body: bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body  # noqa: E731
    comps = b"".join(bytes([i, 0x11, 0]) for i in (1, 2, 3))
    return (b"\xFF\xD8" + seg(0xDB, b"\x00" + bytes([8] * 64)) +
            seg(0xC0, struct.pack(">BHHB", 8, h, w, 3) + comps) +
            seg(0xC4, b"\x00" + bytes(dc_bits) + bytes(dc_vals) + b"\x10" + bytes([1] + [0] * 15) + b"\x00") +
            seg(0xDA, b"\x03" + b"".join(bytes([i, 0]) for i in (1, 2, 3)) + b"\x00\x3f\x00") +
            bytes(out) + b"\xFF\xD9")


def render(w, h, shape, fg, bg):
    px = bytearray()
    for y in range(h):
        for x in range(w):
            u, v = (x + 0.5) / w - 0.5, (y + 0.5) / h - 0.5
            inside = {"square": max(abs(u), abs(v)) < 0.3, "disc": u * u + v * v < 0.09,
                      "bar": abs(v) < 0.12}[shape]
            px += bytes(fg if inside else bg)
    return px


def read_shard(path):
    with open(path, "rb") as f:
        b = f.read()
    assert b[:8] == b"MOTSHRD1"
    _, tb, n_tok, n_docs, n_mod, _ = struct.unpack_from("<IIQQII", b, 8)
    off = 40 + 40 * n_mod
    tokens = struct.unpack_from("<%d%s" % (n_tok, "H" if tb == 2 else "I"), b, off)
    docs = struct.unpack_from("<%dQ" % (n_docs + 1), b, off + n_tok * tb)
    return tokens, docs


def digests(d, suffix=""):
    out = {}
    for name in sorted(os.listdir(d)):
        if name.endswith(suffix):
            with open(os.path.join(d, name), "rb") as f:
                out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def make_folder(root):
    """The mixed input; returns what it holds."""
    def put(rel, data):
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
    captions, jsonl = [], []
    names = sorted(COLORS)
    for i in range(30):
        fg, bg = names[i % 6], names[(i // 6 + i + 1) % 6]
        if fg == bg:
            bg = names[(names.index(bg) + 1) % 6]
        shape = SHAPES[i % 3]
        w, h = [(16, 16), (24, 20), (32, 32), (20, 28)][i % 4]
        caption = "a %s %s on a %s background" % (fg, shape, bg)
        rel = "pics/%s/img%03d.png" % ("one" if i < 15 else "two", i)
        put(rel, png_bytes(w, h, render(w, h, shape, COLORS[fg], COLORS[bg])))
        captions.append(caption)
        if i < 20:  # captions.jsonl paths are relative to its own folder
            jsonl.append(json.dumps({"image": rel[len("pics/"):], "caption": caption}))
        else:
            put(rel[:-4] + ".txt", caption + "\n")
    jsonl.append(json.dumps({"image": "one/missing.png", "caption": "no such file"}))  # a warning
    jsonl.append("this line is not json")                                            # a warning
    put("pics/captions.jsonl", "\n".join(jsonl) + "\n")
    for i in range(2):  # uncaptioned images: image-only documents
        put("pics/plain%d.png" % i, png_bytes(16, 16, render(16, 16, "disc", COLORS["white"], COLORS["black"])))
    photo = render(48, 32, "square", COLORS["red"], COLORS["blue"])
    put("photo.jpg", jpeg_bytes(48, 32, photo))
    put("photo.txt", "a red square on a blue background\n")
    captions.append("a red square on a blue background")
    texts = []
    for i in range(6):
        body = "\n".join("The %s %s sits next to the %s one. It is item %d of note %d." %
                         (names[(i + j) % 6], SHAPES[j % 3], names[(i + 2 * j + 1) % 6], j, i) for j in range(12))
        put("notes/note%d.txt" % i, body + "\n")
        texts.append(body)
    good_jpeg = jpeg_bytes(48, 32, photo)
    broken = {
        "broken/corrupt.png": png_bytes(16, 16, render(16, 16, "bar", COLORS["red"], COLORS["green"]))[:60] +
        b"\x00" * 40,
        "broken/truncated.jpg": good_jpeg[:len(good_jpeg) // 2],
        "broken/empty.txt": b"",
        "broken/latin1.txt": "caf\xe9 cr\xe8me br\xfbl\xe9e\n".encode("latin-1"),
        "broken/sound.wav": b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 28,
        "broken/sound.txt": "a transcript of the sound\n",
        "broken/data.bin": b"\x01\x02\x03",
    }
    for rel, data in broken.items():
        put(rel, data)
    put(".DS_Store", b"junk")  # hidden: ignored
    return {"captions": captions, "texts": texts, "broken": sorted(set(broken) - {"broken/sound.txt"}), "images": 33, "captioned": 31,
            "caption_files": 10 + 1 + 1 + 1, "files": 30 + 10 + 1 + 2 + 2 + 6 + len(broken)}


class Prepare(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Workdir()
        cls.src = cls.w.p("in")
        cls.held = make_folder(cls.src)
        cls.data = cls.w.p("data")
        cls.r = run(["data", "prepare", "--in", cls.src, "--out", cls.data] + FAST + SPLIT)
        assert cls.r.returncode == 0, cls.r.stderr
        with open(os.path.join(cls.data, "summary.json")) as f:
            cls.summary = json.load(f)
        with open(os.path.join(cls.data, "vocab.json")) as f:
            cls.vocab = json.load(f)

    @classmethod
    def tearDownClass(cls):
        cls.w.tmp.cleanup()

    def test_summary_counts_match_the_folder(self):
        s, held = self.summary, self.held
        self.assertEqual(s["files"]["seen"], held["files"])
        self.assertEqual(s["files"]["text"], 6)
        self.assertEqual(s["files"]["image"], held["images"])
        self.assertEqual(s["files"]["caption_files"], held["caption_files"])
        self.assertEqual(s["files"]["skipped"], len(held["broken"]))
        self.assertEqual(s["files"]["hidden_ignored"], 1)
        self.assertEqual(s["media"], {"captioned": 31, "uncaptioned": 2, "captions": 31})
        docs = {}
        for split in s["documents"].values():
            for k, n in split.items():
                docs[k] = docs.get(k, 0) + n
        self.assertEqual(docs, {"text": 6, "gen": 31, "cap": 31, "img": 2})
        for split in ("train", "val"):
            self.assertGreater(s["tokens"][split]["text"], 0)
            self.assertGreater(s["tokens"][split]["image"], 0)
        self.assertEqual(len(s["caption_warnings"]), 2)
        self.assertGreater(s["image"]["vq_psnr_db"], 15)

    def test_broken_files_are_skipped_with_reasons(self):
        reasons = {e["path"]: e["reason"] for e in self.summary["skipped"]}
        self.assertEqual(sorted(reasons), self.held["broken"])
        self.assertIn("PNG", reasons["broken/corrupt.png"])
        self.assertIn("JPEG", reasons["broken/truncated.jpg"])
        self.assertEqual(reasons["broken/empty.txt"], "empty file")
        self.assertIn("not UTF-8", reasons["broken/latin1.txt"])
        self.assertIn("cannot read audio", reasons["broken/sound.wav"])
        self.assertIn("unsupported file type (.bin)", reasons["broken/data.bin"])
        last = self.r.stderr.strip().splitlines()[-1]
        self.assertIn("6 skipped", last)
        self.assertIn("broken/corrupt.png", last)
        self.assertNotIn("\r", self.r.stderr)  # not a terminal: plain lines

    def test_shards_parse_and_hold_documents(self):
        names = sorted(n for n in os.listdir(self.data) if n.endswith(".shard"))
        self.assertIn("train-000.shard", names)
        self.assertTrue(any(n.startswith("val") for n in names), names)
        text_end = self.vocab["modalities"][0]["end"]
        per_image = self.vocab["tokens_per_image"]
        self.assertEqual(per_image, 16)
        for name in names:
            r = run(["data", "inspect", os.path.join(self.data, name)])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("image", r.stdout)
            tokens, docs = read_shard(os.path.join(self.data, name))
            for d in range(len(docs) - 1):
                doc = tokens[docs[d]:docs[d + 1]]
                self.assertEqual((doc[0], doc[-1]), (self.vocab["bos_id"], self.vocab["eos_id"]))
                if self.vocab["boi_id"] in doc:
                    i = doc.index(self.vocab["boi_id"])
                    self.assertEqual(doc[i + 1 + per_image], self.vocab["eoi_id"])
                    self.assertTrue(all(t >= text_end for t in doc[i + 1:i + 1 + per_image]))

    def test_show_decodes_a_caption(self):
        tokens, docs = read_shard(os.path.join(self.data, "train-000.shard"))
        k = next(d for d in range(len(docs) - 1) if tokens[docs[d] + 1] == self.vocab["boi_id"])  # a cap document
        out = self.w.p("doc.png")
        r = run(["data", "show", self.data, "--doc", str(k), "--out", out])
        self.assertEqual(r.returncode, 0, r.stderr)
        text = r.stdout.splitlines()[0].split("): ", 1)[1]
        self.assertTrue(text.startswith("<image>"), text)
        self.assertIn(text[len("<image>"):].strip(), self.held["captions"])
        with open(out, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_deterministic_and_reusable_tokenizers(self):
        again = self.w.p("again")
        r = run(["data", "prepare", "--in", self.src, "--out", again] + FAST + SPLIT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(digests(self.data), digests(again), "two runs must write identical bytes")
        reuse = self.w.p("reuse")
        r = run(["data", "prepare", "--in", self.src, "--out", reuse, "--tokenizers", self.data, "--quiet"] + SPLIT)
        self.assertEqual(r.returncode, 0, r.stderr)
        mine, theirs = digests(self.data), digests(reuse)
        for name in ("vocab.json", "text.model", "vq.safetensors"):
            self.assertEqual(mine[name], theirs[name], name)
        # Same tokenizers, same input: the same shards.
        self.assertEqual(digests(self.data, ".shard"), digests(reuse, ".shard"))
        with open(os.path.join(reuse, "summary.json")) as f:
            self.assertEqual(json.load(f)["tokenizers"]["source"], self.data)

    def test_refusals(self):
        empty = self.w.p("empty-in")
        os.makedirs(empty, exist_ok=True)
        only_broken = self.w.p("broken-in")
        os.makedirs(only_broken, exist_ok=True)
        with open(os.path.join(only_broken, "x.png"), "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
        cases = [
            (["--in", empty, "--out", self.w.p("o1")], "nothing to prepare"),
            (["--in", only_broken, "--out", self.w.p("o2")] + FAST, "nothing to prepare"),
            (["--out", self.w.p("o3")], "--in"),
            (["--in", self.w.p("no-such-dir"), "--out", self.w.p("o4")], "no such folder"),
            (["--in", self.src, "--out", self.data], "not empty"),
            (["--in", self.src, "--out", self.w.p("o5"), "--val-fraction", "2"], "--val-fraction"),
            (["--in", self.src, "--out", self.w.p("o6"), "--image-docs", "both"], "--image-docs"),
            (["--in", self.src, "--out", self.w.p("o7"), "--tokenizers", empty], "vocab.json"),
        ]
        for args, needle in cases:
            r = run(["data", "prepare"] + args)
            lines = r.stderr.strip().splitlines()
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertEqual(len(lines), 1, (args, r.stderr))
            self.assertTrue(lines[0].startswith("mot: error: "), lines[0])
            self.assertIn(needle, lines[0])
        self.assertFalse(os.path.exists(self.w.p("o2")), "a failed prepare leaves no empty output folder")

    def test_force_replaces_earlier_output(self):
        out = self.w.p("forced")
        os.makedirs(out)
        for stale in ("train-007.shard", "summary.json"):
            with open(os.path.join(out, stale), "w") as f:
                f.write("stale")
        with open(os.path.join(out, "keep.md"), "w") as f:
            f.write("the user's own notes")
        r = run(["data", "prepare", "--in", self.src, "--out", out, "--force"] + FAST + SPLIT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists(os.path.join(out, "train-007.shard")))
        self.assertTrue(os.path.exists(os.path.join(out, "keep.md")))

    def test_long_text_is_cut_into_documents(self):
        src = self.w.p("long-in")
        os.makedirs(src)
        line = "the quick brown fox jumps over the lazy dog and runs far away\n"
        with open(os.path.join(src, "long.txt"), "wb") as f:  # 1.5 MB with a byte-order mark
            f.write(b"\xef\xbb\xbf" + (line * (1500000 // len(line))).encode())
        with open(os.path.join(src, "short.txt"), "w") as f:
            f.write("a short note\n")
        out = self.w.p("long-out")
        r = run(["data", "prepare", "--in", src, "--out", out, "--val-fraction", "0", "--text-vocab", "128",
                 "--quiet"])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "summary.json")) as f:
            s = json.load(f)
        self.assertEqual(s["files"]["text"], 2)
        self.assertEqual(s["documents"], {"train": {"text": 3}})  # 1 MiB documents at most: 2 + 1
        with open(os.path.join(out, "vocab.json")) as f:
            self.assertEqual([m["name"] for m in json.load(f)["modalities"]], ["text"])  # no images: text only

    def test_trains(self):
        out = self.w.p("run")
        r = run(["train", "--config", os.path.join(ROOT, "configs", "tiny.toml"), "--data", self.data, "--out", out,
                 "--steps", "5", "--set", "train.seq_len=64", "--set", "train.batch_size=4",
                 "--set", "train.eval_every=5", "--set", "train.eval_batches=8", "--set", "train.warmup_steps=2"])
        self.assertEqual(r.returncode, 0, r.stderr)
        last = metrics(out)[-1]
        self.assertEqual(last["step"], 5)
        for key in ("loss/text", "loss/image", "val_loss/text", "val_loss/image"):
            self.assertIn(key, last)

SPEECH = ["--speech-units", "32", "--speech-iters", "5", "--speech-max-seconds", "10"]
WORDS = ["low", "high", "rising", "falling", "steady", "bright", "soft", "loud"]


def wav_bytes(seconds, rate, channels, seed):
    """16-bit PCM WAV of a harmonic tone whose pitch sweeps (seeded), with short gaps of
    silence every second so there are pauses to cut at."""
    f0, f1 = 120 + 37 * (seed % 7), 180 + 53 * (seed % 5)
    frames = bytearray()
    phase = 0.0
    for n in range(int(seconds * rate)):
        t = n / rate
        f = f0 + (f1 - f0) * (t / seconds)
        phase += 2 * math.pi * f / rate
        gate = 0.0 if (t % 1.0) > 0.85 else 1.0
        x = gate * 0.3 * sum(math.sin(h * phase) / h for h in (1, 2, 3))
        v = struct.pack("<h", int(max(-1, min(1, x)) * 32000))
        frames += v * channels
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return buf.getvalue()


def make_speech_folder(root):
    """Audio with transcripts (.txt and captions.jsonl) and without, a long recording,
    broken audio, plus a few captioned images and text files: three modalities."""
    def put(rel, data):
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
    formats = [(16000, 1), (44100, 2), (8000, 1)]
    transcripts, jsonl = [], []
    for i in range(12):
        rate, ch = formats[i % 3]
        rel = "audio/clip%02d.wav" % i
        put(rel, wav_bytes(2.0 + 0.5 * (i % 3), rate, ch, i))
        text = "a %s tone number %d" % (WORDS[i % 8], i)
        if i < 4:
            put(rel[:-4] + ".txt", text + "\n")
            transcripts.append(text)
        elif i < 8:
            jsonl.append(json.dumps({"audio": rel[len("audio/"):], "caption": text}))
            transcripts.append(text)
    put("audio/captions.jsonl", "\n".join(jsonl) + "\n")
    put("long/lecture.wav", wav_bytes(25.0, 16000, 1, 99))  # cut into 3 utterances of <= 10 s
    put("long/lecture.txt", "a long lecture about tones\n")
    empty = io_wav(0)
    put("broken/empty.wav", empty)  # a valid header with no samples
    put("broken/corrupt.wav", b"RIFF\xff\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + b"\x07" * 40)
    for i in range(6):
        fg, bg = sorted(COLORS)[i % 6], sorted(COLORS)[(i + 2) % 6]
        put("pics/p%d.png" % i, png_bytes(16, 16, render(16, 16, SHAPES[i % 3], COLORS[fg], COLORS[bg])))
        put("pics/p%d.txt" % i, "a %s %s on %s\n" % (fg, SHAPES[i % 3], bg))
    for i in range(3):
        put("notes/n%d.txt" % i, "a note about %s and %s sounds\n" % (WORDS[i], WORDS[i + 3]))
    return {"transcripts": transcripts}


def io_wav(n):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x00" * n)
    return buf.getvalue()


class PrepareSpeech(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Workdir()
        cls.src = cls.w.p("in")
        cls.held = make_speech_folder(cls.src)
        cls.data = cls.w.p("data")
        cls.r = run(["data", "prepare", "--in", cls.src, "--out", cls.data] + FAST + SPEECH + SPLIT)
        assert cls.r.returncode == 0, cls.r.stderr
        with open(os.path.join(cls.data, "summary.json")) as f:
            cls.summary = json.load(f)
        with open(os.path.join(cls.data, "vocab.json")) as f:
            cls.vocab = json.load(f)

    @classmethod
    def tearDownClass(cls):
        cls.w.tmp.cleanup()

    def docs(self):
        for name in sorted(n for n in os.listdir(self.data) if n.endswith(".shard")):
            tokens, offs = read_shard(os.path.join(self.data, name))
            for d in range(len(offs) - 1):
                yield name, d, tokens[offs[d]:offs[d + 1]]

    def test_counts_and_skips(self):
        s = self.summary
        self.assertEqual(s["files"]["speech"], 13)
        self.assertEqual(s["files"]["image"], 6)
        self.assertEqual(s["files"]["text"], 3)
        reasons = {e["path"]: e["reason"] for e in s["skipped"]}
        self.assertEqual(sorted(reasons), ["broken/corrupt.wav", "broken/empty.wav"])
        self.assertIn("zero length", reasons["broken/empty.wav"])
        docs = {}
        for split in s["documents"].values():
            for k, n in split.items():
                docs[k] = docs.get(k, 0) + n
        # 8 transcribed clips: asr + tts each; 4 without and the lecture's 3 utterances:
        # speech; the lecture's transcript: a text document next to the 3 notes.
        self.assertEqual(docs, {"asr": 8, "tts": 8, "speech": 4 + 3, "text": 3 + 1, "gen": 6, "cap": 6})
        sp = s["speech"]
        self.assertEqual((sp["files"], sp["utterances"], sp["cut_files"], sp["units"]), (13, 12 + 3, 1, 32))
        expected_s = sum(2.0 + 0.5 * (i % 3) for i in range(12)) + 25.0
        self.assertAlmostEqual(sp["seconds"], expected_s, delta=13 * 0.04 + 0.01)
        self.assertGreater(sp["reconstruction"]["files"], 0)
        self.assertGreater(sp["reconstruction"]["frames"], 0)
        self.assertTrue(0 < sp["reconstruction"]["quantisation_db"] < sp["reconstruction"]["total_db"] < 60, sp)
        tokens = sum(s["tokens"][split].get("speech", 0) for split in s["tokens"])
        # 25 units a second (floor of samples / 640; resampling may shift a unit); asr and
        # tts both hold a transcribed clip's units.
        units = [int((2.0 + 0.5 * (i % 3)) * 25) for i in range(12)]
        expected = 2 * sum(units[:8]) + sum(units[8:]) + 25 * 25
        self.assertLessEqual(abs(tokens - expected), 2 * 8 + 4 + 1, (tokens, expected))

    def test_vocab_and_speech_spans(self):
        v = self.vocab
        self.assertEqual([m["name"] for m in v["modalities"]], ["text", "image", "speech"])
        sp = v["modalities"][2]
        self.assertEqual(sp["end"] - sp["begin"], 32)
        self.assertEqual(v["speech_units"], 32)
        self.assertEqual((v["speech_units_per_second"], v["speech_samples_per_unit"]), (25, 640))
        self.assertEqual(v["vocab_size"], sp["end"])
        bos, eos = v["bos_speech_id"], v["eos_speech_id"]
        self.assertLess(max(bos, eos), v["modalities"][0]["end"])
        spans = 0
        longest = 0
        for _, _, doc in self.docs():
            self.assertEqual((doc[0], doc[-1]), (v["bos_id"], v["eos_id"]))
            if bos in doc:
                i, j = doc.index(bos), doc.index(eos)
                units = doc[i + 1:j]
                self.assertTrue(units and all(sp["begin"] <= t < sp["end"] for t in units))
                self.assertTrue(all(t < sp["begin"] for t in doc[:i] + doc[j + 1:]))
                longest = max(longest, len(units))
                spans += 1
        self.assertEqual(spans, 8 + 8 + 7)
        self.assertLessEqual(longest, 10 * 25)

    def test_show_decodes_asr_tts_and_speech(self):
        v = self.vocab
        seen = set()
        for name, d, doc in self.docs():
            if not name.startswith("train"):
                continue
            kind = ("asr" if doc[1] == v["bos_speech_id"] and doc[-2] != v["eos_speech_id"] else
                    "speech" if doc[1] == v["bos_speech_id"] else "tts" if v["bos_speech_id"] in doc else None)
            if kind is None or kind in seen:
                continue
            seen.add(kind)
            wavdir = self.w.p("wav-" + kind)
            os.makedirs(wavdir, exist_ok=True)
            r = run(["data", "show", self.data, "--split", name[:-6], "--doc", str(d), "--wav", wavdir])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("<speech>", r.stdout)
            self.assertIn("units", r.stdout)
            n_units = doc.index(v["eos_speech_id"]) - doc.index(v["bos_speech_id"]) - 1
            text = r.stdout.splitlines()[0].split("): ", 1)[1]
            if kind == "asr":
                self.assertIn(text[len("<speech>"):].strip(), self.held["transcripts"])
            if kind == "tts":
                self.assertIn(text.split("<speech>")[0].strip(), self.held["transcripts"])
            wavs = os.listdir(wavdir)
            self.assertEqual(len(wavs), 1)
            with wave.open(os.path.join(wavdir, wavs[0])) as w:
                self.assertEqual((w.getframerate(), w.getnchannels(), w.getnframes()), (16000, 1, n_units * 640))
        self.assertEqual(seen, {"asr", "tts", "speech"})

    def test_deterministic_and_reusable_tokenizers(self):
        again = self.w.p("again")
        r = run(["data", "prepare", "--in", self.src, "--out", again] + FAST + SPEECH + SPLIT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(digests(self.data), digests(again), "two runs must write identical bytes")
        reuse = self.w.p("reuse")
        r = run(["data", "prepare", "--in", self.src, "--out", reuse, "--tokenizers", self.data, "--quiet",
                 "--speech-max-seconds", "10"] + SPLIT)
        self.assertEqual(r.returncode, 0, r.stderr)
        mine, theirs = digests(self.data), digests(reuse)
        for name in ("vocab.json", "text.model", "vq.safetensors", "speech.safetensors"):
            self.assertEqual(mine[name], theirs[name], name)
        self.assertEqual(digests(self.data, ".shard"), digests(reuse, ".shard"))

    def test_trains_three_modalities(self):
        out = self.w.p("run")
        r = run(["train", "--config", os.path.join(ROOT, "configs", "tiny-speech.toml"), "--data", self.data,
                 "--out", out, "--steps", "5", "--set", "train.seq_len=128", "--set", "train.batch_size=4",
                 "--set", "train.eval_every=5", "--set", "train.eval_batches=4", "--set", "train.warmup_steps=2"])
        self.assertEqual(r.returncode, 0, r.stderr)
        last = metrics(out)[-1]
        self.assertEqual(last["step"], 5)
        for key in ("loss/text", "loss/image", "loss/speech", "val_loss/speech"):
            self.assertIn(key, last)


def put_file(root, rel, data):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def shard_docs(d):
    """{"train": set of documents, "val": set of documents} (documents as token tuples)."""
    out = {"train": set(), "val": set()}
    for name in sorted(n for n in os.listdir(d) if n.endswith(".shard")):
        tokens, offs = read_shard(os.path.join(d, name))
        for i in range(len(offs) - 1):
            out["val" if name.startswith("val") else "train"].add(tuple(tokens[offs[i]:offs[i + 1]]))
    return out


def summed_docs(summary):
    docs = {}
    for split in summary["documents"].values():
        for k, n in split.items():
            docs[k] = docs.get(k, 0) + n
    return docs


class PrepareBrokenNeighbours(unittest.TestCase):
    """A broken file only ever removes itself. The names put each valid file in the
    validation split and each broken one of its kind in the training split at
    --val-fraction 0.5 (asserted below through the documents per split): the case where
    the image and speech tokenizers, learning from training files only, found nothing
    usable and dropped the valid held-out file as well."""

    ARGS = ["--image-size", "16", "--patch", "4", "--codebook", "16", "--text-vocab", "300", "--vq-iters", "4",
            "--val-fraction", "0.5"] + SPEECH

    def setUp(self):
        self.w = Workdir()

    def tearDown(self):
        self.w.tmp.cleanup()

    def test_valid_files_survive_a_broken_one_of_their_kind(self):
        src = self.w.p("in")
        put_file(src, "talk.wav", wav_bytes(3.0, 16000, 1, 3))                     # held out
        put_file(src, "talk.txt", "a transcribed talk about tones\n")
        put_file(src, "broken.flac", b"fLaC\x00\x00\x00\x22" + b"\x5a" * 60)      # training
        put_file(src, "dog.png", png_bytes(16, 16, render(16, 16, "disc", COLORS["red"], COLORS["blue"])))  # held out
        put_file(src, "dog.txt", "a red disc on a blue background\n")
        put_file(src, "corrupt.jpg", jpeg_bytes(16, 16, render(16, 16, "bar", COLORS["green"], COLORS["white"]))[:40])
        put_file(src, "story.txt", "a held out story about a red disc and a tone\n")  # held out
        put_file(src, "notes.txt", "caf\xe9 cr\xe8me\n".encode("latin-1"))           # training, not UTF-8
        put_file(src, "diary.txt", "a training diary about blue backgrounds and tones\n")  # training
        out = self.w.p("out")
        r = run(["data", "prepare", "--in", src, "--out", out, "--quiet"] + self.ARGS)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "summary.json")) as f:
            s = json.load(f)
        reasons = {e["path"]: e["reason"] for e in s["skipped"]}
        self.assertEqual(sorted(reasons), ["broken.flac", "corrupt.jpg", "notes.txt"], reasons)
        self.assertIn("cannot read audio", reasons["broken.flac"])
        self.assertIn("JPEG", reasons["corrupt.jpg"])
        self.assertIn("not UTF-8", reasons["notes.txt"])
        self.assertEqual((s["files"]["speech"], s["files"]["image"], s["files"]["text"]), (1, 1, 2), s["files"])
        self.assertEqual(s["documents"]["val"], {"asr": 1, "tts": 1, "gen": 1, "cap": 1, "text": 1})
        self.assertEqual(s["documents"]["train"], {"text": 1})
        self.assertEqual((s["speech"]["files"], s["speech"]["codebook_files"]), (1, 1))
        self.assertEqual(s["image"]["vq_sample_images"], 1)
        with open(os.path.join(out, "vocab.json")) as f:
            self.assertEqual([m["name"] for m in json.load(f)["modalities"]], ["text", "image", "speech"])
        last = r.stderr.strip().splitlines()[-1]
        self.assertIn("3 skipped", last)
        self.assertIn("broken.flac (cannot read audio", last)

    def test_held_out_text_feeds_the_bpe_when_training_text_is_broken(self):
        src = self.w.p("in")
        put_file(src, "story.txt", "a held out story about a red disc and a tone\n")  # held out
        put_file(src, "notes.txt", "caf\xe9 cr\xe8me\n".encode("latin-1"))           # training, not UTF-8
        out = self.w.p("out")
        r = run(["data", "prepare", "--in", src, "--out", out, "--quiet"] + self.ARGS)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "summary.json")) as f:
            s = json.load(f)
        self.assertEqual([e["path"] for e in s["skipped"]], ["notes.txt"])
        self.assertEqual(s["documents"], {"val": {"text": 1}})
        # The BPE learned from the valid file, not from nothing.
        self.assertEqual(s["tokenizers"]["text_sample_bytes"], len("a held out story about a red disc and a tone"))

    def test_only_broken_audio_is_reported_as_such(self):
        src = self.w.p("in")
        put_file(src, "a.txt", "some text to keep\n")
        put_file(src, "bad.wav", b"RIFF\xff\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + b"\x07" * 40)
        out = self.w.p("out")
        r = run(["data", "prepare", "--in", src, "--out", out] + self.ARGS)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "summary.json")) as f:
            s = json.load(f)
        self.assertEqual([e["path"] for e in s["skipped"]], ["bad.wav"])
        self.assertIn("cannot read audio", s["skipped"][0]["reason"])
        self.assertIn("no usable speech file", r.stderr)
        self.assertIn("bad.wav", r.stderr)
        with open(os.path.join(out, "vocab.json")) as f:
            self.assertEqual([m["name"] for m in json.load(f)["modalities"]], ["text"])


class PrepareStableSplit(unittest.TestCase):
    """Adding files never moves a file between train and validation: each file's split
    depends on its own path (and --seed) only. The second run reuses the first one's
    tokenizers, so a file's documents are the same tokens in both runs."""

    ARGS = ["--image-size", "16", "--patch", "4", "--codebook", "16", "--text-vocab", "300", "--vq-iters", "2",
            "--quiet"]

    @staticmethod
    def add_files(root, first, count):
        for i in range(first, first + count):
            name = sorted(COLORS)[i % 6]
            if i % 2:
                put_file(root, "img/im%03d.png" % i,
                         png_bytes(16, 16, render(16, 16, SHAPES[i % 3], COLORS[name], COLORS["black"])))
                put_file(root, "img/im%03d.txt" % i, "picture %d of a %s %s\n" % (i, name, SHAPES[i % 3]))
            else:
                put_file(root, "txt/t%03d.txt" % i, "note %d about the %s things\n" % (i, name))

    def test_adding_files_keeps_every_split(self):
        # The default 2% (which used to be topped up to min(8, n/5) files: adding files
        # moved some), and a share that holds out 3 of the first 10 files.
        for fraction in (None, "0.45"):
            with self.subTest(val_fraction=fraction):
                w = Workdir()
                try:
                    split = [] if fraction is None else ["--val-fraction", fraction]
                    src, first, second = w.p("in"), w.p("first"), w.p("second")
                    self.add_files(src, 0, 10)
                    r = run(["data", "prepare", "--in", src, "--out", first] + self.ARGS + split)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    before = shard_docs(first)
                    self.add_files(src, 10, 40)
                    r = run(["data", "prepare", "--in", src, "--out", second, "--tokenizers", first] + self.ARGS + split)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    after = shard_docs(second)
                    with open(os.path.join(first, "summary.json")) as f:
                        self.assertEqual(sum(summed_docs(json.load(f)).values()), 5 * 2 + 5)
                    for split_name in ("train", "val"):
                        other = "val" if split_name == "train" else "train"
                        moved = before[split_name] & after[other]
                        self.assertEqual(len(moved), 0, "documents moved from %s to %s" % (split_name, other))
                        self.assertLessEqual(before[split_name], after[split_name])
                    if fraction is not None:
                        self.assertTrue(before["val"] and before["train"], "both splits should hold files at 0.45")
                finally:
                    w.tmp.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
