"""Shared helpers for the reference parity tests (not a test itself).

Environment: MOT_BIN (engine binary; default $MOT_ROOT/build/mot), MOT_ROOT (repo root;
default two levels above this file). Set MOT_KEEP_TMP=1 to keep the scratch folders.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mot_ref  # noqa: E402

MOT_ROOT = os.environ.get("MOT_ROOT") or os.path.dirname(os.path.dirname(HERE))
MOT_BIN = os.environ.get("MOT_BIN") or os.path.join(MOT_ROOT, "build", "mot")

GRAD_TOL = 1e-4      # max|g_eng - g_ref| <= GRAD_TOL * max|g_ref| per tensor
LOSS_RTOL = 1e-5


# ---------------------------------------------------------------------------------
# configs, weights, data
# ---------------------------------------------------------------------------------

MODALITY_SETS = {
    1: [("text", 0, 200)],
    2: [("text", 0, 160), ("image", 160, 256)],
    3: [("text", 0, 120), ("image", 120, 220), ("speech", 220, 300)],
}


def make_config(arch="mot", n_mod=2, dim=32, n_layers=2, n_heads=4, ffn_hidden=64,
                untie=None, norm_position="pre", qk_norm=False, doc_mask=False,
                bos_id=1, share=None, max_seq_len=128, rope_theta=10000.0, **extra):
    mods = [{"name": n, "begin": b, "end": e} for n, b, e in MODALITY_SETS[n_mod]]
    if untie is None:
        untie = [] if arch in ("dense", "moe") else ["attention", "ffn", "norm"]
    cfg = {
        "arch": arch, "dim": dim, "n_layers": n_layers, "n_heads": n_heads,
        "ffn_hidden": ffn_hidden, "vocab_size": mods[-1]["end"], "max_seq_len": max_seq_len,
        "bos_id": bos_id, "norm_position": norm_position, "qk_norm": qk_norm,
        "norm_eps": 1e-5, "rope_theta": rope_theta, "untie": list(untie),
        "doc_mask": doc_mask, "modalities": mods,
    }
    if share:
        cfg["share"] = dict(share)
    cfg.update(extra)
    return cfg


def random_params(config, seed):
    """Every tensor random (float32 values, so engine and reference see the same
    numbers). Norm weights are 1 +- 0.2 so a mixed-up norm is visible."""
    cfg = mot_ref.normalize_config(config)
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in sorted(mot_ref.param_shapes(cfg).items()):
        if len(shape) == 1:
            a = 1.0 + rng.uniform(-0.2, 0.2, size=shape)
        elif name == "tok_embeddings.weight":
            a = rng.normal(0.0, 1.0, size=shape)
        else:
            a = rng.normal(0.0, 1.0 / np.sqrt(shape[1]), size=shape)
        out[name] = a.astype(np.float32)
    return out


def random_rows(config, n_rows, length, seed, pad=True, bos_every=0):
    """Rows of interleaved modality spans (every modality appears in every row of
    length >= a few spans). Rows after the first end in -1 padding when pad. With
    bos_every > 0, a bos token is planted about every bos_every positions."""
    rng = np.random.default_rng(seed)
    mods = config["modalities"]
    rows = []
    for r in range(n_rows):
        n = length if (r == 0 or not pad) else int(rng.integers(max(3, length // 2), length))
        toks = []
        k = r % len(mods)
        while len(toks) < n:
            m = mods[k % len(mods)]
            span = int(rng.integers(1, 7))
            toks += [int(t) for t in rng.integers(m["begin"], m["end"], size=span)]
            k += 1 if rng.random() < 0.7 else int(rng.integers(1, len(mods) + 1))
        toks = toks[:n]
        if bos_every:
            toks[0] = config["bos_id"]
            for p in range(1, n):
                if rng.random() < 1.0 / bos_every:
                    toks[p] = config["bos_id"]
        rows.append(toks + [-1] * (length - n))
    return rows


def trim(row):
    while row and row[-1] == -1:
        row = row[:-1]
    return row


def write_jsonl(path, rows, explicit_padding=False):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps({"tokens": row if explicit_padding else trim(list(row))}) + "\n")


# ---------------------------------------------------------------------------------
# Transfusion (SPEC 2b): a continuous image modality beside discrete ones
# ---------------------------------------------------------------------------------

# (name, begin, end) for discrete modalities, (name, None, None) for the continuous one
TRANSFUSION_MODALITY_SETS = {
    2: [("text", 0, 160), ("image", None, None)],
    3: [("text", 0, 120), ("image", None, None), ("speech", 120, 200)],
}
BOI, EOI = 2, 3   # begin/end-of-image tokens (first modality's range)


def make_transfusion_config(arch="mot", n_mod=2, dim=32, n_layers=2, n_heads=4, ffn_hidden=64,
                            untie=None, norm_position="pre", qk_norm=False, doc_mask=False,
                            bos_id=1, max_seq_len=128, rope_theta=10000.0, patch=2, channels=3,
                            image_size=4, diffusion_steps=None, diffusion_weight=None, **extra):
    """Text [0,160) + continuous image (patch 2, 3 channels, 4x4: latent_dim 12, 4 patches
    per image); n_mod=3 adds a discrete speech range [120, 200) after the image (text is
    then [0, 120)). diffusion_steps / diffusion_weight are written only when given (so the
    engine's defaults 1000 / 5 are exercised otherwise)."""
    mods = []
    for n, b, e in TRANSFUSION_MODALITY_SETS[n_mod]:
        if b is None:
            mods.append({"name": n, "kind": "continuous", "patch": patch, "channels": channels,
                         "image_size": image_size})
        else:
            mods.append({"name": n, "begin": b, "end": e})
    if untie is None:
        untie = [] if arch == "dense" else ["attention", "ffn", "norm"]
    cfg = {
        "arch": arch, "dim": dim, "n_layers": n_layers, "n_heads": n_heads,
        "ffn_hidden": ffn_hidden, "vocab_size": max(m["end"] for m in mods if "end" in m),
        "max_seq_len": max_seq_len, "bos_id": bos_id, "norm_position": norm_position,
        "qk_norm": qk_norm, "norm_eps": 1e-5, "rope_theta": rope_theta, "untie": list(untie),
        "doc_mask": doc_mask, "modalities": mods,
    }
    if diffusion_steps is not None:
        cfg["diffusion_steps"] = diffusion_steps
    if diffusion_weight is not None:
        cfg["diffusion_weight"] = diffusion_weight
    cfg.update(extra)
    return cfg


def continuous_modality(config):
    return mot_ref.continuous_modalities(mot_ref.normalize_config(config))[0]


def random_image(config, rng, tau):
    """One image entry: latents U[-1, 1], noise N(0, 1), both float32 values (so the
    JSONL text and the reference hold the same numbers), timestep tau."""
    m = continuous_modality(config)
    n, D = mot_ref.patches_per_image(m), mot_ref.latent_dim(m)
    lat = rng.uniform(-1.0, 1.0, size=(n, D)).astype(np.float32)
    eps = rng.normal(0.0, 1.0, size=(n, D)).astype(np.float32)
    return {"latents": lat.astype(np.float64).tolist(), "noise": eps.astype(np.float64).tolist(),
            "t": int(tau)}


def random_transfusion_rows(config, n_rows, length, seed, pad=True, bos_every=0, image_prob=0.35):
    """Rows {"tokens": [...], "images": [...]} of interleaved segments: text runs,
    discrete runs of the other discrete modalities, and images (<boi> 4 x -2 <eoi>).
    Row 0 has `length` entries; with pad the others are shorter and end in -1 padding
    (so all rows have `length` entries). Every row has at least one image and ends in a
    token. The first two images of the batch get tau = 0 and T-1, the rest uniform on
    [0, T-1]. With bos_every > 0 every row starts with bos and about every bos_every-th
    segment starts with bos too (packed documents, images inside them)."""
    cfg = mot_ref.normalize_config(config)
    T = cfg["diffusion_steps"]
    rng = np.random.default_rng(seed)
    disc = [m for m in cfg["modalities"] if m["kind"] == "discrete"]
    ppi = mot_ref.patches_per_image(mot_ref.continuous_modalities(cfg)[0])
    taus = [0, T - 1]
    rows = []
    for r in range(n_rows):
        n = length if (r == 0 or not pad) else int(rng.integers(max(ppi + 4, length // 2), length))
        toks, imgs = [], []
        if bos_every:
            toks.append(cfg["bos_id"])
        k = r
        while True:
            if rng.random() < image_prob or (not imgs and n - len(toks) <= ppi + 3 + 7):
                seg = [BOI] + [-2] * ppi + [EOI]
                is_img = True
            else:
                m = disc[k % len(disc)]
                k += 1
                lo = 4 if m is disc[0] else m["begin"]  # text: no special tokens by chance
                seg = [int(t) for t in rng.integers(lo, m["end"], size=int(rng.integers(1, 7)))]
                is_img = False
            if bos_every and rng.random() < 1.0 / bos_every:
                seg = [cfg["bos_id"]] + seg
            if len(toks) + len(seg) > n:
                break
            toks += seg
            if is_img:
                tau = taus.pop(0) if taus else int(rng.integers(0, T))
                imgs.append(random_image(config, rng, tau))
        lo = 4
        while len(toks) < n:   # fill with text tokens
            toks.append(int(rng.integers(lo, disc[0]["end"])))
        assert imgs and toks[-1] >= 0, "row too short for an image"
        rows.append({"tokens": toks + [-1] * (length - n), "images": imgs})
    return rows


def write_transfusion_jsonl(path, rows, explicit_padding=False):
    """rows: Transfusion dicts (or plain token lists); -1 padding trimmed unless
    explicit_padding."""
    with open(path, "w") as f:
        for row in rows:
            if not isinstance(row, dict):
                row = {"tokens": list(row)}
            obj = {"tokens": list(row["tokens"]) if explicit_padding else trim(list(row["tokens"]))}
            if row.get("images"):
                obj["images"] = [{"latents": im["latents"], "noise": im["noise"], "t": int(im["t"])}
                                 for im in row["images"]]
            f.write(json.dumps(obj) + "\n")


def model_metadata(config):
    return {"format": "mot", "format_version": "1", "config": json.dumps(config)}


def write_model(path, params, config, dtype="F32"):
    mot_ref.save_safetensors(path, params, model_metadata(config), dtype=dtype)


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, float):
        r = repr(v)
        return r if ("." in r or "e" in r or "inf" in r or "nan" in r) else r + ".0"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def write_toml(path, tables):
    with open(path, "w") as f:
        for tname, tab in tables.items():
            f.write(f"[{tname}]\n")
            for k, v in tab.items():
                f.write(f"{k} = {_toml_value(v)}\n")
            f.write("\n")


# ---------------------------------------------------------------------------------
# running the engine
# ---------------------------------------------------------------------------------

class Scratch:
    def __init__(self, tag):
        self.dir = tempfile.mkdtemp(prefix=f"mot_ref_{tag}_")

    def path(self, name):
        return os.path.join(self.dir, name)

    def cleanup(self):
        if os.environ.get("MOT_KEEP_TMP"):
            print(f"  (kept {self.dir})")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def have_engine():
    return os.path.isfile(MOT_BIN) and os.access(MOT_BIN, os.X_OK)


def run_mot(args, env_extra=None, check=True, timeout=600):
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(min(4, os.cpu_count() or 1)))
    if env_extra:
        env.update(env_extra)
    p = subprocess.run([MOT_BIN] + [str(a) for a in args], capture_output=True, text=True,
                       env=env, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"`mot {' '.join(map(str, args))}` exited {p.returncode}\n"
                             f"stderr: {p.stderr.strip()}\nstdout: {p.stdout.strip()[-2000:]}")
    return p


def parse_json_stdout(text):
    """The eval JSON object printed on stdout (the last line that parses as an object)."""
    text = text.strip()
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            return obj
    except json.JSONDecodeError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise AssertionError(f"no JSON object on stdout: {text[-1000:]!r}")


def engine_eval(model, data, env_extra=None):
    p = run_mot(["eval", "--model", model, "--input", data, "--json"], env_extra)
    return parse_json_stdout(p.stdout)


def engine_grad(model, data, out, env_extra=None):
    p = run_mot(["grad", "--model", model, "--input", data, "--out", out], env_extra)
    ev = parse_json_stdout(p.stdout)
    grads, meta = mot_ref.load_safetensors(out)
    return ev, grads, meta


# ---------------------------------------------------------------------------------
# comparisons (return lists of problems; callers assert the list is empty and print)
# ---------------------------------------------------------------------------------

def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def compare_eval(eng, ref, rtol=LOSS_RTOL, label=""):
    """eng: engine JSON; ref: reference float dict. Returns (problems, report lines)."""
    probs, lines = [], []
    e = float(eng["loss"])
    r = ref["loss"]
    lines.append(f"{label}loss engine={e:.9g} ref={r:.9g} rel={rel(e, r):.2e}")
    if not rel(e, r) <= rtol:
        probs.append(f"loss: engine {e!r} vs ref {r!r} (rel {rel(e, r):.3e} > {rtol})")
    if int(eng.get("targets", -1)) != ref["targets"]:
        probs.append(f"targets: engine {eng.get('targets')} vs ref {ref['targets']}")
    elb = eng.get("loss_by_modality", {})
    if set(elb) != set(ref["loss_by_modality"]):
        probs.append(f"loss_by_modality keys: engine {sorted(elb)} vs ref {sorted(ref['loss_by_modality'])}")
    for m, r in ref["loss_by_modality"].items():
        if m in elb:
            e = float(elb[m])
            lines.append(f"{label}loss/{m} engine={e:.9g} ref={r:.9g} rel={rel(e, r):.2e}")
            if not rel(e, r) <= rtol:
                probs.append(f"loss/{m}: engine {e!r} vs ref {r!r} (rel {rel(e, r):.3e} > {rtol})")
    etb = {k: int(v) for k, v in eng.get("targets_by_modality", {}).items()}
    rtb = ref["targets_by_modality"]
    # SPEC: a modality with no targets counts 0 (the key is present)
    for m in sorted(set(etb) | set(rtb)):
        if m not in etb or m not in rtb or etb[m] != rtb[m]:
            probs.append(f"targets_by_modality[{m}]: engine {etb.get(m)} vs ref {rtb.get(m)}")
    lines.append(f"{label}targets engine={eng.get('targets')} ref={ref['targets']} "
                 f"by_modality engine={etb} ref={rtb}")
    return probs, lines


def compare_transfusion_eval(eng, ref, rtol=LOSS_RTOL, label=""):
    """compare_eval plus loss_lm and loss_diffusion (rel <= rtol each)."""
    probs, lines = compare_eval(eng, ref, rtol=rtol, label=label)
    for k in ("loss_lm", "loss_diffusion"):
        if k not in eng:
            probs.append(f"{k}: missing from the engine's eval JSON")
            continue
        e, r = float(eng[k]), ref[k]
        lines.append(f"{label}{k} engine={e:.9g} ref={r:.9g} rel={rel(e, r):.2e}")
        if not rel(e, r) <= rtol:
            probs.append(f"{k}: engine {e!r} vs ref {r!r} (rel {rel(e, r):.3e} > {rtol})")
    return probs, lines


def compare_grads(eng, ref, tol=GRAD_TOL, label=""):
    """eng/ref: {name: tensor}. Per tensor: max|e - r| <= tol * max|r|."""
    probs, lines = [], []
    missing = sorted(set(ref) - set(eng))
    extra = sorted(set(eng) - set(ref))
    if missing:
        probs.append(f"gradient file lacks tensors: {missing}")
    if extra:
        probs.append(f"gradient file has unexpected tensors: {extra}")
    worst = (0.0, None)
    for name in sorted(set(ref) & set(eng)):
        e = eng[name].double()
        r = ref[name].double()
        if list(e.shape) != list(r.shape):
            probs.append(f"{name}: shape engine {list(e.shape)} vs ref {list(r.shape)}")
            continue
        scale = float(r.abs().max())
        err = float((e - r).abs().max()) if e.numel() else 0.0
        ratio = err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))
        if not torch.isfinite(e).all():
            probs.append(f"{name}: engine gradient has non-finite values")
        if ratio > worst[0] or worst[1] is None:
            worst = (ratio, name)
        if not ratio <= tol:
            probs.append(f"{name}: max|g_eng-g_ref|={err:.3e}, max|g_ref|={scale:.3e}, "
                         f"ratio {ratio:.3e} > {tol}")
    lines.append(f"{label}gradients: {len(set(ref) & set(eng))} tensors compared, worst "
                 f"max|diff|/max|ref| = {worst[0]:.3e} ({worst[1]})")
    return probs, lines
