"""The benchmark model of `mot bench` in PyTorch (Debian python3-torch 1.13), timed the
same way: median step time of full training steps (forward, loss, backward, AdamW).

MoT is written as PyTorch users write it (the official MoT code's approach): per
modality, index the positions, apply that modality's weights, scatter back.
Prints one JSON object. Run by bench/compare, which sets up the environment.

On a GPU (--device cuda, the device's own PyTorch: bf16 autocast, SDPA flash attention,
fused AdamW, --compile for torch.compile) it is the side-by-side peer of
`mot bench --device cuda` (scripts/cuda-device-check runs both on the same card).
The FLOPs and MFU follow mot bench's formula (6*N_active*tokens + 12*L*d*T^2*B, against
989.4 TFLOP/s)."""
import argparse
import json
import math
import resource
import statistics
import time

import torch
import torch.nn.functional as F


def rms_norm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(T, hd, theta=10000.0):
    i = torch.arange(hd // 2, dtype=torch.float64)
    freq = theta ** (-2.0 * i / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()


def rope(x, cos, sin):  # x [B, H, T, hd], rotate-half
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)


class Model(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        M = a.modalities if a.arch == "mot" else 1
        d, Fh, L = a.dim, a.ffn_hidden, a.layers
        P = torch.nn.Parameter
        init = lambda *s: P(torch.randn(*s) * 0.02)
        self.emb = init(a.vocab, d)
        self.out = init(a.vocab, d)
        self.wqkv = torch.nn.ParameterList([init(M, 3 * d, d) for _ in range(L)])
        self.wo = torch.nn.ParameterList([init(M, d, d) for _ in range(L)])
        self.w13 = torch.nn.ParameterList([init(M, 2 * Fh, d) for _ in range(L)])
        self.w2 = torch.nn.ParameterList([init(M, d, Fh) for _ in range(L)])
        self.n1 = torch.nn.ParameterList([P(torch.ones(M, d)) for _ in range(L)])
        self.n2 = torch.nn.ParameterList([P(torch.ones(M, d)) for _ in range(L)])
        self.nf = P(torch.ones(M, d))
        self.M = M

    def per_modality(self, x, idx, fn):
        """Apply fn(x_rows, m) to each modality's rows and scatter back."""
        if self.M == 1:
            return fn(x, 0)
        parts = [fn(x[idx[m]], m) for m in range(self.M)]
        out = torch.empty(x.shape[:-1] + (fn.out_dim,), dtype=parts[0].dtype, device=x.device)
        for m in range(self.M):
            out[idx[m]] = parts[m]
        return out

    def forward(self, tokens, targets, idx, cos, sin):
        a = self.a
        B, T = tokens.shape
        H, hd = a.heads, a.dim // a.heads
        x = self.emb[tokens].reshape(B * T, a.dim)

        def lin(w):
            def f(v, m):
                return v @ w[m].t()
            f.out_dim = w.shape[1]
            return f

        def norm(w):
            def f(v, m):
                return rms_norm(v, w[m])
            f.out_dim = a.dim
            return f

        for l in range(a.layers):
            h = self.per_modality(x, idx, norm(self.n1[l]))
            qkv = self.per_modality(h, idx, lin(self.wqkv[l])).view(B, T, 3, H, hd)
            q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True) if hasattr(F, "scaled_dot_product_attention") \
                else self.attention(q, k, v)
            o = o.transpose(1, 2).reshape(B * T, a.dim)
            x = x + self.per_modality(o, idx, lin(self.wo[l]))
            h = self.per_modality(x, idx, norm(self.n2[l]))
            ac = self.per_modality(h, idx, lin(self.w13[l]))
            g = F.silu(ac[:, :a.ffn_hidden]) * ac[:, a.ffn_hidden:]
            x = x + self.per_modality(g, idx, lin(self.w2[l]))
        x = self.per_modality(x, idx, norm(self.nf))
        logits = x @ self.out.t()
        return F.cross_entropy(logits, targets.reshape(-1))

    @staticmethod
    def attention(q, k, v):
        T = q.shape[-2]
        s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        return torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1) @ v


def main():
    p = argparse.ArgumentParser()
    for k, v in dict(arch="dense", modalities=2, dtype="fp32", vocab=8192, dim=512, layers=8, heads=8,
                     ffn_hidden=1408, seq=512, batch=8, warmup=2, steps=5, threads=2, device="cpu").items():
        p.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPU peer)")
    a = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    gpu = dev.type == "cuda"
    layout = {1: [(0, a.seq)], 2: [(0, 64), (1, 256), (0, 64), (1, 128)],
              3: [(0, 64), (1, 256), (2, 128), (0, 64)]}[a.modalities]
    per = a.vocab // a.modalities
    mods = []
    while len(mods) < a.seq + 1:
        for m, n in layout:
            mods += [m] * n
    mods = torch.tensor(mods[:a.seq + 1])
    tok = torch.randint(0, per, (a.batch, a.seq + 1)) + mods[None, :] * per
    tokens, targets = tok[:, :-1].contiguous(), tok[:, 1:].contiguous()
    flat_mod = mods[:-1].repeat(a.batch)
    idx = [torch.nonzero(flat_mod == m).squeeze(1).to(dev) for m in range(a.modalities)]  # routing built once
    tokens, targets = tokens.to(dev), targets.to(dev)
    model = Model(a).to(dev)
    extra = {"fused": True} if gpu else {}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, **extra)
    cos, sin = (t.to(dev) for t in rope_tables(a.seq, a.dim // a.heads))
    step_fn = torch.compile(model) if a.compile else model
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    times = []
    for s in range(a.warmup + a.steps):
        sync()
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
            loss = step_fn(tokens, targets, idx, cos, sin)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sync()
        if s >= a.warmup:
            times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    d, Fh, L, T = a.dim, a.ffn_hidden, a.layers, a.seq
    tokens_n = a.batch * T
    flops = 6.0 * (L * (4 * d * d + 3 * d * Fh) + a.vocab * d) * tokens_n + 12.0 * L * d * T * T * a.batch
    out = {"engine": "pytorch " + torch.__version__ + (" compiled" if a.compile else ""), "arch": a.arch,
           "dtype": a.dtype, "device": torch.cuda.get_device_name() if gpu else "cpu",
           "tokens_per_s": tokens_n / step, "step_s": step,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
           "threads": torch.get_num_threads(), "loss": float(loss)}
    if gpu:
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 1048576.0
        out["mfu"] = flops / step / 989.4e12
    print(json.dumps(out))


if __name__ == "__main__":
    main()
