"""Independent PyTorch reference of the MoT model (SPEC section 2), in float64.

Written the obvious way on purpose: for an untied component, EVERY modality's weights
are applied to ALL positions and the result is then selected per position with
torch.where by modality. Nothing is sorted or routed, so this shares no structure with
an engine that gathers tokens by modality.

Public API
  load_safetensors(path)                 -> (dict name -> torch.Tensor (float32/64), metadata dict)
  save_safetensors(path, tensors, metadata, dtype="F32")
  config_from_metadata(metadata)         -> config dict with defaults filled in
  normalize_config(cfg)                  -> same, from a plain dict of section-5 keys
  param_shapes(config)                   -> {name: shape} exactly per SPEC section 3
  forward_loss(params, config, rows)     -> dict(loss, loss_lm, loss_diffusion, loss_by_modality,
                                                 targets, targets_by_modality, ...)
  loss_and_grads(params, config, rows)   -> (result dict with float values, {name: grad float64})
  cosine_alpha_bar(T)                    -> float64 [T]: the cosine schedule's alpha-bar (SPEC 2b)
  timestep_features(tau, dim)            -> float64 [..., dim]: phi(tau) (SPEC 2b)
  time_embedding(params, m, tau, dim)    -> float64 [..., dim]: W_t2 silu(W_t1 phi(tau))
  lr_at(step0, train)                    -> lr of the 0-based step
  train_reference(params, config, train, rows, steps) -> (per-step records, final params)

MoE (arch = "moe", and the MoT+MoE hybrid: arch = "mot" with moe_modalities) is the
obvious loop: per row, per expert, a sort of that row's pool by the expert's score.

Transfusion (SPEC 2b; a modality with kind = "continuous"): rows are then dicts
{"tokens": [...], "images": [{"latents": [[D]...], "noise": [[D]...], "t": tau}, ...]}
with -2 at each continuous position; images fill the maximal runs of -2 in order. The
continuous input P_in z + temb(tau) is computed for every position and selected with
torch.where, like everything else; the image spans' bidirectional attention is an OR
on the mask. loss = loss_lm + diffusion_weight * loss_diffusion.
"""
from __future__ import annotations

import json
import math
import struct

import numpy as np
import torch

DTYPE = torch.float64

# ---------------------------------------------------------------------------------
# linear layers: plain float64, or emulating a bf16 x bf16 -> fp32 GEMM
# ---------------------------------------------------------------------------------

_MATMUL_BF16 = False


def set_matmul_bf16(on):
    """With on, every weight GEMM (projections, FFN, router, output head) rounds both
    operands to bf16 (via float32, as an engine holding fp32 values does) in the
    forward and in both backward GEMMs (the incoming gradient too), and keeps the
    products and sums in float64. Attention, norms and softmax stay float64."""
    global _MATMUL_BF16
    _MATMUL_BF16 = bool(on)


def round_bf16(t):
    return t.to(torch.float32).to(torch.bfloat16).to(t.dtype)


class _LinearBf16(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        xr, wr = round_bf16(x), round_bf16(w)
        ctx.save_for_backward(xr, wr)
        return xr @ wr.t()

    @staticmethod
    def backward(ctx, dy):
        xr, wr = ctx.saved_tensors
        dyr = round_bf16(dy)
        dx = dyr @ wr
        dw = (dyr.reshape(-1, dyr.shape[-1]).t() @ xr.reshape(-1, xr.shape[-1]))
        return dx, dw


def linear(x, w):
    """x @ w.T (w: [out, in], nn.Linear layout)."""
    if _MATMUL_BF16:
        return _LinearBf16.apply(x, w)
    return x @ w.t()

# ---------------------------------------------------------------------------------
# safetensors: tiny reader / writer (json + struct + numpy)
# ---------------------------------------------------------------------------------

_NP_OF = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I32": np.int32,
          "I64": np.int64, "U8": np.uint8, "I8": np.int8, "I16": np.int16}
_SIZE_OF = {"F32": 4, "F64": 8, "F16": 2, "BF16": 2, "I32": 4, "I64": 8, "U8": 1,
            "I8": 1, "I16": 2}


def load_safetensors(path):
    """Returns ({name: torch tensor}, metadata). BF16/F16 are widened to float32."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} past end of file")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    metadata = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        dt = info["dtype"]
        shape = [int(s) for s in info["shape"]]
        b, e = info["data_offsets"]
        count = int(np.prod(shape)) if shape else 1
        if e - b != count * _SIZE_OF[dt]:
            raise ValueError(f"{path}: tensor {name}: {e - b} bytes for {dt}{shape}")
        buf = data[b:e]
        if dt == "BF16":
            u = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=np.dtype(_NP_OF[dt]).newbyteorder("<"))
            if dt == "F16":
                arr = arr.astype(np.float32)
        out[name] = torch.from_numpy(np.array(arr, copy=True).reshape(shape))
    return out, metadata


def _to_bf16_bytes(a):
    a = np.ascontiguousarray(a, dtype=np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    # round to nearest even
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return rounded.astype("<u2").tobytes()


def save_safetensors(path, tensors, metadata=None, dtype="F32"):
    """tensors: {name: numpy array or torch tensor}; written in sorted name order."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name]
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().double().numpy()
        a = np.asarray(t)
        if dtype == "F32":
            b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        elif dtype == "BF16":
            b = _to_bf16_bytes(a)
        elif dtype == "F64":
            b = np.ascontiguousarray(a, dtype="<f8").tobytes()
        else:
            raise ValueError(dtype)
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------

def default_ffn_hidden(dim):
    return int(math.ceil(8 * dim / 3 / 256.0)) * 256


def normalize_config(cfg):
    c = dict(cfg)
    c.setdefault("norm_position", "pre")
    c.setdefault("qk_norm", False)
    c.setdefault("norm_eps", 1e-5)
    c.setdefault("rope_theta", 10000.0)
    c.setdefault("doc_mask", False)
    c.setdefault("max_seq_len", 4096)
    c.setdefault("share", {})
    c["share"] = dict(c["share"] or {})
    if c["arch"] in ("dense", "moe"):
        c.setdefault("untie", [])
    elif c["arch"] == "mot":
        c.setdefault("untie", ["attention", "ffn", "norm"])
    else:
        raise NotImplementedError(f"reference does not implement arch={c['arch']!r}")
    c["untie"] = list(c["untie"] or [])
    for u in c["untie"]:
        if u not in ("attention", "ffn", "norm"):
            raise ValueError(f"bad untie entry {u!r}")
    if not c.get("ffn_hidden"):
        c["ffn_hidden"] = default_ffn_hidden(c["dim"])
    c.setdefault("n_experts", 4)
    c["moe_modalities"] = list(c.get("moe_modalities") or [])
    if c["arch"] == "moe" and "ffn" in c["untie"]:
        raise ValueError("arch moe: the FFN is tied (untie may not include ffn)")
    if c["moe_modalities"] and (c["arch"] != "mot" or "ffn" not in c["untie"]):
        raise ValueError("moe_modalities needs arch mot with an untied ffn")
    mods = c["modalities"]
    names = [m["name"] for m in mods]
    for m in c["moe_modalities"]:
        if m not in names or m in c["share"] or m in c["share"].values():
            raise ValueError(f"moe_modalities: {m!r} unknown or shared")
    if len(set(names)) != len(names):
        raise ValueError("duplicate modality names")
    mods = [dict(m) for m in mods]
    c["modalities"] = mods
    for i, m in enumerate(mods):
        m.setdefault("kind", "discrete")
        if m["kind"] == "discrete":
            if "begin" not in m or "end" not in m:
                raise ValueError(f"discrete modality {m['name']!r} needs begin/end")
        elif m["kind"] == "continuous":
            if i == 0:
                raise ValueError("the first modality must be discrete")
            for k in ("patch", "channels", "image_size"):
                if int(m.get(k, 0)) <= 0:
                    raise ValueError(f"continuous modality {m['name']!r}: bad {k}")
                m[k] = int(m[k])
            if m["image_size"] % m["patch"]:
                raise ValueError(f"continuous modality {m['name']!r}: image_size % patch != 0")
            if m["name"] in c["share"] or m["name"] in c["share"].values():
                raise NotImplementedError("reference: a continuous modality in the share table")
        else:
            raise ValueError(f"modality {m['name']!r}: bad kind {m['kind']!r}")
    if len(continuous_modalities(c)) > 1:
        raise NotImplementedError("reference: more than one continuous modality")
    if continuous_modalities(c) and c["moe_modalities"] or continuous_modalities(c) and c["arch"] == "moe":
        raise NotImplementedError("reference: MoE with a continuous modality")
    c.setdefault("diffusion_steps", 1000)
    c.setdefault("diffusion_weight", 5.0)
    c["diffusion_steps"] = int(c["diffusion_steps"])
    c["diffusion_weight"] = float(c["diffusion_weight"])
    for k, v in c["share"].items():
        if k not in names or v not in names:
            raise ValueError(f"share {k}->{v}: unknown modality")
    return c


def continuous_modalities(config):
    return [m for m in config["modalities"] if m.get("kind", "discrete") == "continuous"]


def latent_dim(m):
    """patch^2 * channels of a continuous modality."""
    return m["patch"] * m["patch"] * m["channels"]


def patches_per_image(m):
    return (m["image_size"] // m["patch"]) ** 2


def config_from_metadata(metadata):
    cfg = metadata["config"]
    if isinstance(cfg, str):
        cfg = json.loads(cfg)
    return normalize_config(cfg)


def owner(config, name):
    """The modality whose untied tensors `name` uses (follows the share table)."""
    seen = set()
    while name in config["share"]:
        if name in seen:
            raise ValueError("share cycle")
        seen.add(name)
        name = config["share"][name]
    return name


def owners(config):
    """Ordered distinct owner modalities (those that have untied tensors)."""
    out = []
    for m in config["modalities"]:
        o = owner(config, m["name"])
        if o not in out:
            out.append(o)
    # keep modality order
    order = [m["name"] for m in config["modalities"]]
    return sorted(out, key=order.index)


def _names(config, base, comp):
    """[(owner or None, tensor name)] for component base name, e.g. 'layers.0.attention.wq'."""
    if comp in config["untie"]:
        return [(o, f"{base}.{o}.weight") for o in owners(config)]
    return [(None, f"{base}.weight")]


def is_moe(config, owner_name):
    """Whether the FFN weight copy of owner_name (None when the FFN is tied) is MoE."""
    return config["arch"] == "moe" or owner_name in config["moe_modalities"]


def param_shapes(config):
    c = config
    d, V, F = c["dim"], c["vocab_size"], c["ffn_hidden"]
    hd = d // c["n_heads"]
    shapes = {"tok_embeddings.weight": [V, d], "output.weight": [V, d]}
    for i in range(c["n_layers"]):
        for w in ("wq", "wk", "wv", "wo"):
            for _, n in _names(c, f"layers.{i}.attention.{w}", "attention"):
                shapes[n] = [d, d]
        if c["qk_norm"]:
            for w in ("q_norm", "k_norm"):
                for _, n in _names(c, f"layers.{i}.attention.{w}", "attention"):
                    shapes[n] = [hd]
        for w in ("attention_norm", "ffn_norm"):
            for _, n in _names(c, f"layers.{i}.{w}", "norm"):
                shapes[n] = [d]
        for o, n in _names(c, f"layers.{i}.feed_forward.w1", "ffn"):
            if is_moe(c, o):
                sfx = f".{o}" if o else ""
                shapes[f"layers.{i}.feed_forward.router{sfx}.weight"] = [c["n_experts"], d]
                for e in range(c["n_experts"]):
                    x = f"layers.{i}.feed_forward.experts.{e}"
                    shapes[f"{x}.w1{sfx}.weight"] = [F, d]
                    shapes[f"{x}.w3{sfx}.weight"] = [F, d]
                    shapes[f"{x}.w2{sfx}.weight"] = [d, F]
            else:
                shapes[n] = [F, d]
                shapes[n.replace(".w1", ".w3")] = [F, d]
                shapes[n.replace(".w1", ".w2")] = [d, F]
    for _, n in _names(c, "norm", "norm"):
        shapes[n] = [d]
    for m in continuous_modalities(c):
        D = latent_dim(m)
        shapes[f"patch_in.{m['name']}.weight"] = [d, D]
        shapes[f"patch_out.{m['name']}.weight"] = [D, d]
        shapes[f"time_embed.{m['name']}.w1.weight"] = [d, d]
        shapes[f"time_embed.{m['name']}.w2.weight"] = [d, d]
    return shapes


# ---------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------

def token_modality(config, tokens):
    """Modality index (into config['modalities']) of each token; -1 -> -1."""
    mi = torch.full_like(tokens, -1)
    for k, m in enumerate(config["modalities"]):
        if m.get("kind", "discrete") != "discrete":
            continue
        sel = (tokens >= m["begin"]) & (tokens < m["end"])
        mi = torch.where(sel, torch.full_like(tokens, k), mi)
    return mi


def rmsnorm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def _select(config, comp, pos_owner, per_owner):
    """per_owner: {owner-or-None: tensor [..., T, X]}; returns per-position selection.

    pos_owner: [B, T] owner index into owners(config) for each position."""
    if comp not in config["untie"]:
        return per_owner[None]
    ows = owners(config)
    out = torch.zeros_like(per_owner[ows[0]])
    for k, o in enumerate(ows):
        sel = (pos_owner == k).unsqueeze(-1)
        out = torch.where(sel, per_owner[o], out)
    return out


def _apply(config, comp, pos_owner, params, base, fn):
    """Applies fn(weight, ...) with every modality's weight, then selects per position."""
    return _select(config, comp, pos_owner,
                   {o: fn(params[n]) for o, n in _names(config, base, comp)})


def rope(x, theta):
    """x: [B, H, T, hd]; rotate-half layout, positions 0..T-1."""
    T, hd = x.shape[-2], x.shape[-1]
    half = hd // 2
    i = torch.arange(half, dtype=DTYPE)
    freq = theta ** (-2.0 * i / hd)
    ang = torch.arange(T, dtype=DTYPE)[:, None] * freq[None, :]
    cos, sin = torch.cos(ang), torch.sin(ang)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def _check_rows(rows):
    L = len(rows[0])
    for r, row in enumerate(rows):
        if len(row) != L:
            raise ValueError("rows must be padded to equal length")
        seen_pad = False
        for t in row:
            if t == -1:
                seen_pad = True
            elif seen_pad:
                raise ValueError(f"row {r}: -1 not at the end")


# ---------------------------------------------------------------------------------
# Transfusion pieces (SPEC 2b)
# ---------------------------------------------------------------------------------

def cosine_alpha_bar(T):
    """alpha-bar_tau for tau = 0..T-1 of the cosine schedule, float64 [T]:
    g(x) = cos((x + 0.008) / 1.008 * pi/2)^2, beta_tau = min(1 - g((tau+1)/T) / g(tau/T), 0.999),
    alpha-bar_tau = prod_{j <= tau} (1 - beta_j)."""
    def g(x):
        return math.cos((x + 0.008) / 1.008 * math.pi / 2) ** 2
    out, acc = [], 1.0
    for tau in range(T):
        beta = min(1.0 - g((tau + 1) / T) / g(tau / T), 0.999)
        acc *= (1.0 - beta)
        out.append(acc)
    return torch.tensor(out, dtype=DTYPE)


def timestep_features(tau, dim):
    """phi(tau): [..., dim] float64; cos(tau f_j) for j < dim/2, then sin(tau f_j),
    f_j = 10000^(-j / (dim/2))."""
    half = dim // 2
    f = 10000.0 ** (-torch.arange(half, dtype=DTYPE) / half)
    ang = torch.as_tensor(tau, dtype=DTYPE).unsqueeze(-1) * f
    return torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1)


def time_embedding(params, m, tau, dim):
    """temb(tau) = W_t2 silu(W_t1 phi(tau)) with modality m's time_embed tensors."""
    phi = timestep_features(tau, dim)
    w1 = params[f"time_embed.{m}.w1.weight"].to(DTYPE)
    w2 = params[f"time_embed.{m}.w2.weight"].to(DTYPE)
    return linear(torch.nn.functional.silu(linear(phi, w1)), w2)


def _runs(tokens, value):
    """[(begin, end)] of the maximal runs of `value` in a list."""
    out, t = [], 0
    while t < len(tokens):
        if tokens[t] == value:
            b = t
            while t < len(tokens) and tokens[t] == value:
                t += 1
            out.append((b, t))
        else:
            t += 1
    return out


def _parse_rows(config, rows):
    """rows: token lists (padded to equal length, as before) or Transfusion dicts (any
    lengths; padded here). Returns (tok [B, T] long with -1 padding and -2 continuous
    entries, cont) where cont is None for plain rows, else dict(z0 [B,T,D] clean latents,
    noise [B,T,D], tau [B,T] long, span [B,T] long: image index within the batch or -1)."""
    if not any(isinstance(r, dict) for r in rows):
        _check_rows(rows)
        if any(t == -2 for r in rows for t in r):
            raise ValueError("-2 (continuous entry) in a plain token row")
        return torch.tensor(rows, dtype=torch.long), None
    toks = [list(r["tokens"]) if isinstance(r, dict) else list(r) for r in rows]
    imgs = [list(r.get("images") or []) if isinstance(r, dict) else [] for r in rows]
    L = max(len(t) for t in toks)
    cms = continuous_modalities(config)
    B = len(rows)
    Dl = latent_dim(cms[0]) if cms else 0
    z0 = torch.zeros(B, L, Dl, dtype=DTYPE)
    noise = torch.zeros(B, L, Dl, dtype=DTYPE)
    tau = torch.zeros(B, L, dtype=torch.long)
    span = torch.full((B, L), -1, dtype=torch.long)
    n_span = 0
    for r, (tk, im) in enumerate(zip(toks, imgs)):
        n = len(tk)
        while n and tk[n - 1] == -1:
            n -= 1
        if any(t == -1 for t in tk[:n]):
            raise ValueError(f"row {r}: -1 not at the end")
        if any(t < -2 for t in tk):
            raise ValueError(f"row {r}: bad entry")
        runs = _runs(tk[:n], -2)
        if runs and not cms:
            raise ValueError(f"row {r}: continuous entries but no continuous modality")
        if n and tk[n - 1] == -2:
            raise ValueError(f"row {r}: a continuous entry is the row's last entry")
        if len(runs) != len(im):
            raise ValueError(f"row {r}: {len(runs)} runs of -2 but {len(im)} images")
        for (b, e), img in zip(runs, im):
            ppi = patches_per_image(cms[0])
            if e - b != ppi:
                raise ValueError(f"row {r}: a run of {e - b} continuous entries, not {ppi}")
            lat = torch.tensor(img["latents"], dtype=DTYPE)
            eps = torch.tensor(img["noise"], dtype=DTYPE)
            if list(lat.shape) != [ppi, Dl] or list(eps.shape) != [ppi, Dl]:
                raise ValueError(f"row {r}: latents/noise shape {list(lat.shape)}/{list(eps.shape)}")
            t_ = int(img["t"])
            if not 0 <= t_ < config["diffusion_steps"]:
                raise ValueError(f"row {r}: t = {t_} outside [0, diffusion_steps)")
            z0[r, b:e], noise[r, b:e], tau[r, b:e], span[r, b:e] = lat, eps, t_, n_span
            n_span += 1
    tok = torch.tensor([t + [-1] * (L - len(t)) for t in toks], dtype=torch.long)
    return tok, {"z0": z0, "noise": noise, "tau": tau, "span": span}


def forward_loss(params, config, rows, span_attention=True):
    """params: {name: tensor} (any float dtype; used as given, so pass float64 leaves
    with requires_grad for gradients). rows: list of token lists padded with -1, or of
    Transfusion dicts {"tokens", "images"} (SPEC 2b; lengths may differ).
    span_attention=False drops the image spans' bidirectional attention (plain causal
    mask): NOT the model, only for tests that show a mask difference is detectable.

    Returns dict(loss (0-d tensor), loss_lm, loss_diffusion (0-d tensors),
    loss_by_modality {name: 0-d tensor}, targets int (LM targets),
    targets_by_modality {name: int} (continuous modality: its position count),
    nll_sum, diff_sq [B, T] (per position mean over latent dims of (eps_hat - eps)^2,
    0 off continuous positions), is_cont [B, T] bool)."""
    c = config
    tok, cont = _parse_rows(c, rows)
    B, T = tok.shape
    d, H = c["dim"], c["n_heads"]
    hd = d // H
    eps = c["norm_eps"]
    tok_in = tok >= 0          # token inputs
    is_cont = tok == -2        # continuous inputs
    valid_in = tok != -1       # every input
    mod = token_modality(c, tok)
    if bool(((mod < 0) & tok_in).any()):
        raise ValueError("token outside every modality range")
    names = [m["name"] for m in c["modalities"]]
    cms = continuous_modalities(c)
    if cms:
        cname = cms[0]["name"]
        mod = torch.where(is_cont, torch.full_like(mod, names.index(cname)), mod)
        if cont is None:  # plain token rows: no continuous entries
            Dl = latent_dim(cms[0])
            cont = {"z0": torch.zeros(B, T, Dl, dtype=DTYPE), "noise": torch.zeros(B, T, Dl, dtype=DTYPE),
                    "tau": torch.zeros(B, T, dtype=torch.long),
                    "span": torch.full((B, T), -1, dtype=torch.long)}
    ows = owners(c)
    own_idx = torch.tensor([ows.index(owner(c, n)) for n in names], dtype=torch.long)
    pos_owner = own_idx[mod.clamp(min=0)]  # padding positions: modality 0's owner

    x = params["tok_embeddings.weight"].to(DTYPE)[tok.clamp(min=0)]  # [B, T, d]
    if cms:
        # every position gets the continuous input too; selected where the entry is -2
        ab = cosine_alpha_bar(c["diffusion_steps"])[cont["tau"]].unsqueeze(-1)  # [B, T, 1]
        z = torch.sqrt(ab) * cont["z0"] + torch.sqrt(1.0 - ab) * cont["noise"]
        xc = linear(z, params[f"patch_in.{cname}.weight"].to(DTYPE)) + \
            time_embedding(params, cname, cont["tau"], d)
        x = torch.where(is_cont.unsqueeze(-1), xc, x)

    # attention mask [B, 1, T, T]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    allowed = causal.unsqueeze(0).expand(B, T, T)
    if cont is not None and span_attention:
        sp = cont["span"]
        same_span = (sp[:, :, None] == sp[:, None, :]) & (sp[:, :, None] >= 0)
        allowed = allowed | same_span
    if c["doc_mask"]:
        start = (tok == c["bos_id"])
        start[:, 0] = True
        doc = torch.cumsum(start.long(), dim=1)
        allowed = allowed & (doc[:, :, None] == doc[:, None, :])
    neg = torch.zeros(B, T, T, dtype=DTYPE).masked_fill(~allowed, float("-inf")).unsqueeze(1)

    def P(name):
        return params[name].to(DTYPE)

    def attention(l, xin):
        base = f"layers.{l}.attention"

        def proj(wname, normname=None):
            per = {}
            for (o, n) in _names(c, f"{base}.{wname}", "attention"):
                y = linear(xin, P(n))  # [B, T, d]
                y = y.view(B, T, H, hd)
                if normname is not None:
                    nn_ = n.replace(f".{wname}", f".{normname}")
                    y = rmsnorm(y, P(nn_), eps)
                per[o] = y.reshape(B, T, d)
            return _select(c, "attention", pos_owner, per)

        if c["qk_norm"]:
            q, k = proj("wq", "q_norm"), proj("wk", "k_norm")
        else:
            q, k = proj("wq"), proj("wk")
        v = proj("wv")
        q = q.view(B, T, H, hd).transpose(1, 2)
        k = k.view(B, T, H, hd).transpose(1, 2)
        v = v.view(B, T, H, hd).transpose(1, 2)
        q, k = rope(q, c["rope_theta"]), rope(k, c["rope_theta"])
        s = q @ k.transpose(-1, -2) / math.sqrt(hd) + neg
        a = torch.softmax(s, dim=-1) @ v  # [B, H, T, hd]
        a = a.transpose(1, 2).reshape(B, T, d)
        return _apply(c, "attention", pos_owner, params, f"{base}.wo", lambda w: linear(a, w.to(DTYPE)))

    def swiglu(xin, n1, n3, n2):
        return linear(torch.nn.functional.silu(linear(xin, P(n1))) * linear(xin, P(n3)), P(n2))

    # MoE pools: a position belongs to its row's pool when it is an input with a
    # target. The last valid token of a row is only a target: the model's input
    # sequence is the row without it (the engine never runs it), so it takes no part
    # in the experts' choice. (In dense/MoT it does not matter: attention is causal.)
    in_pool = valid_in & torch.cat([tok[:, 1:] != -1, torch.zeros(B, 1, dtype=torch.bool)], dim=1)

    def moe(base, o, xin):
        """Expert choice over each row's pool (SPEC section 2), the obvious loop."""
        sfx = f".{o}" if o else ""
        E = c["n_experts"]
        prob = torch.softmax(linear(xin, P(f"{base}.router{sfx}.weight")), dim=-1)  # [B, T, E]
        pool_mask = in_pool if o is None else in_pool & (pos_owner == ows.index(o))
        rows_out = []
        for b in range(B):
            out = torch.zeros(T, d, dtype=DTYPE)
            pool = torch.nonzero(pool_mask[b]).flatten()  # positions, ascending
            k = len(pool) // E  # capacity 1
            for e in range(E) if k else []:
                # torch.topk documents no order among equal scores; a stable descending
                # sort ranks the earlier position first, the tie rule of the spec.
                order = torch.sort(prob[b, pool, e].detach(), descending=True, stable=True).indices
                chosen = pool[order[:k]]
                x = f"{base}.experts.{e}"
                y = swiglu(xin[b, chosen], f"{x}.w1{sfx}.weight", f"{x}.w3{sfx}.weight", f"{x}.w2{sfx}.weight")
                out = out.index_add(0, chosen, prob[b, chosen, e:e + 1] * y)
            rows_out.append(out)
        return torch.stack(rows_out)

    def ffn(l, xin):
        base = f"layers.{l}.feed_forward"
        per = {}
        for (o, n1) in _names(c, f"{base}.w1", "ffn"):
            if is_moe(c, o):
                per[o] = moe(base, o, xin)
            else:
                per[o] = swiglu(xin, n1, n1.replace(".w1", ".w3"), n1.replace(".w1", ".w2"))
        return _select(c, "ffn", pos_owner, per)

    def norm(base, xin):
        return _apply(c, "norm", pos_owner, params, base, lambda w: rmsnorm(xin, w.to(DTYPE), eps))

    for l in range(c["n_layers"]):
        if c["norm_position"] == "pre":
            h = x + attention(l, norm(f"layers.{l}.attention_norm", x))
            x = h + ffn(l, norm(f"layers.{l}.ffn_norm", h))
        elif c["norm_position"] == "post":
            h = x + norm(f"layers.{l}.attention_norm", attention(l, x))
            x = h + norm(f"layers.{l}.ffn_norm", ffn(l, h))
        else:
            raise ValueError(c["norm_position"])
    x = norm("norm", x)
    logits = linear(x, P("output.weight"))  # [B, T, V]

    tgt = torch.full_like(tok, -1)
    tgt[:, :-1] = tok[:, 1:]
    valid = tok_in & (tgt >= 0)   # LM targets: input and target both tokens
    tmod = token_modality(c, tgt)
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # [B, T]
    n = int(valid.sum())
    vf = valid.to(DTYPE)
    nll_sum = (nll * vf).sum()
    loss_lm = nll_sum / max(n, 1)
    lbm, tbm = {}, {}
    for k, name in enumerate(names):
        if c["modalities"][k].get("kind", "discrete") != "discrete":
            continue
        sel = valid & (tmod == k)
        cnt = int(sel.sum())
        tbm[name] = cnt
        if cnt:
            lbm[name] = (nll * sel.to(DTYPE)).sum() / cnt
    n_cont = int(is_cont.sum())
    if cms:
        eps_hat = linear(x, params[f"patch_out.{cname}.weight"].to(DTYPE))  # [B, T, D]
        diff_sq = ((eps_hat - cont["noise"]) ** 2).mean(-1) * is_cont.to(DTYPE)  # [B, T]
        loss_diff = diff_sq.sum() / max(n_cont, 1)
        tbm[cname] = n_cont
        if n_cont:
            lbm[cname] = loss_diff
        loss = loss_lm + c["diffusion_weight"] * loss_diff
    else:
        diff_sq = torch.zeros(B, T, dtype=DTYPE)
        loss_diff = torch.zeros((), dtype=DTYPE)
        loss = loss_lm
    # keep the modality order in the dicts
    tbm = {m: tbm[m] for m in names if m in tbm}
    lbm = {m: lbm[m] for m in names if m in lbm}
    return {"loss": loss, "loss_lm": loss_lm, "loss_diffusion": loss_diff,
            "loss_by_modality": lbm, "targets": n, "targets_by_modality": tbm,
            "nll_sum": nll_sum, "diff_sq": diff_sq, "is_cont": is_cont}


def to_leaves(params):
    return {k: torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v)
            .detach().to(DTYPE).clone().requires_grad_(True) for k, v in params.items()}


def _floats(res):
    return {"loss": float(res["loss"]),
            "loss_lm": float(res["loss_lm"]), "loss_diffusion": float(res["loss_diffusion"]),
            "loss_by_modality": {k: float(v) for k, v in res["loss_by_modality"].items()},
            "targets": res["targets"], "targets_by_modality": dict(res["targets_by_modality"])}


def evaluate(params, config, rows, **kw):
    """Float results of forward_loss (kw: forward_loss's keywords)."""
    with torch.no_grad():
        return _floats(forward_loss({k: torch.as_tensor(v).to(DTYPE) for k, v in params.items()},
                                    config, rows, **kw))


def loss_and_grads(params, config, rows):
    leaves = to_leaves(params)
    res = forward_loss(leaves, config, rows)
    res["loss"].backward()
    grads = {k: (v.grad if v.grad is not None else torch.zeros_like(v)).detach()
             for k, v in leaves.items()}
    return _floats(res), grads


# ---------------------------------------------------------------------------------
# training (AdamW exactly like torch.optim.AdamW, clip like clip_grad_norm_)
# ---------------------------------------------------------------------------------

TRAIN_DEFAULTS = dict(weight_decay=0.1, beta1=0.9, beta2=0.95, eps=1e-8, grad_clip=1.0,
                      grad_accum=1, warmup_steps=0, min_lr=0.0)


def lr_at(s, train):
    t = dict(TRAIN_DEFAULTS, **train)
    lr, min_lr, warm, T = t["lr"], t["min_lr"], t["warmup_steps"], t["steps"]
    if s < warm:
        return lr * (s + 1) / warm
    p = (s - warm) / max(1, T - warm)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * p))


def decays(name, shape):
    return len(shape) == 2 and name != "tok_embeddings.weight"


def step_rows(rows, step0, batch_size, grad_accum):
    n = batch_size * grad_accum
    return [rows[(step0 * n + j) % len(rows)] for j in range(n)]


def train_reference(params, config, train, rows, steps, batch_rows=None):
    """Runs `steps` AdamW steps. rows: all data rows (already padded to equal length).
    Each step uses batch_size*grad_accum consecutive rows (wrapping) and its loss is the
    mean over all valid targets of those rows (micro-batches combined by target count).
    Returns (records [{step, loss, lr, grad_norm, clipped, targets, loss_by_modality}],
    final params float64)."""
    t = dict(TRAIN_DEFAULTS, **train)
    B, A = t["batch_size"], t["grad_accum"]
    leaves = to_leaves(params)
    names = sorted(leaves)
    wd_names = [n for n in names if decays(n, leaves[n].shape)]
    nd_names = [n for n in names if not decays(n, leaves[n].shape)]
    opt = torch.optim.AdamW(
        [{"params": [leaves[n] for n in wd_names], "weight_decay": t["weight_decay"]},
         {"params": [leaves[n] for n in nd_names], "weight_decay": 0.0}],
        lr=t["lr"], betas=(t["beta1"], t["beta2"]), eps=t["eps"], foreach=False)
    records = []
    for s in range(steps):
        batch = (batch_rows or step_rows)(rows, s, B, A)
        opt.zero_grad(set_to_none=False)
        for v in leaves.values():
            if v.grad is None:
                v.grad = torch.zeros_like(v)
        # micro-batches: sum of nll over all of them / total target count
        total = 0
        nll_sum = 0.0
        micro = [batch[i * B:(i + 1) * B] for i in range(A)]
        counts = []
        for mb in micro:
            with torch.no_grad():
                r = forward_loss({k: v.detach() for k, v in leaves.items()}, config, mb)
            counts.append(r["targets"])
        total = sum(counts)
        by_mod = {}
        for mb in micro:
            r = forward_loss(leaves, config, mb)
            (r["nll_sum"] / total).backward()
            nll_sum += float(r["nll_sum"])
            for m, l in r["loss_by_modality"].items():
                c = r["targets_by_modality"][m]
                s0, c0 = by_mod.get(m, (0.0, 0))
                by_mod[m] = (s0 + float(l) * c, c0 + c)
        loss = nll_sum / total
        gn = math.sqrt(sum(float((leaves[n].grad ** 2).sum()) for n in names))
        coef = t["grad_clip"] / (gn + 1e-6)
        clipped = coef < 1.0
        if clipped:
            for n in names:
                leaves[n].grad.mul_(coef)
        lr = lr_at(s, t)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        records.append({"step": s + 1, "loss": loss, "lr": lr, "grad_norm": gn, "clipped": clipped,
                        "targets": total,
                        "loss_by_modality": {m: a / c for m, (a, c) in by_mod.items()}})
    return records, {k: v.detach().clone() for k, v in leaves.items()}
