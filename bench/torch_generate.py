"""The benchmark model of `mot bench --generate` in PyTorch, as a plain KV-cache decode
loop under torch.no_grad(): one forward over the prompts (filling preallocated K/V
caches), then one position per row per step, greedy over the text tokens. Timed like
mot: prefill seconds and decode seconds, median of --repeats runs after a warm-up.

MoT is written as PyTorch users write it (the official MoT code's approach): per
modality, index the positions, apply that modality's weights, scatter back.
Prints one JSON object. Run by bench/compare --generate."""
import argparse
import json
import math
import statistics
import time

import torch

from torch_step import rms_norm, rope, rope_tables  # the same math as the training peer


class Decoder:
    def __init__(self, a):
        self.a = a
        self.M = a.modalities if a.arch == "mot" else 1
        d, Fh, L, V, M = a.dim, a.ffn_hidden, a.layers, a.vocab, self.M
        g = torch.Generator().manual_seed(1)
        init = lambda *s: torch.randn(*s, generator=g) * 0.02
        self.emb, self.out = init(V, d), init(V, d)
        self.wqkv = [init(M, 3 * d, d) for _ in range(L)]
        self.wo = [init(M, d, d) for _ in range(L)]
        self.w13 = [init(M, 2 * Fh, d) for _ in range(L)]
        self.w2 = [init(M, d, Fh) for _ in range(L)]
        self.n1 = [torch.ones(M, d) for _ in range(L)]
        self.n2 = [torch.ones(M, d) for _ in range(L)]
        self.nf = torch.ones(M, d)
        self.cos, self.sin = rope_tables(a.prompt + a.new_tokens, d // a.heads)
        self.params = sum(t.numel() for t in [self.emb, self.out, self.nf] + self.wqkv + self.wo + self.w13 +
                          self.w2 + self.n1 + self.n2)

    def per_modality(self, x, mods, fn, out_dim):
        if self.M == 1:
            return fn(x, 0)
        out = x.new_empty(x.shape[:-1] + (out_dim,))
        for m in range(self.M):
            idx = mods == m
            if idx.any():
                out[idx] = fn(x[idx], m)
        return out

    def forward(self, tokens, mods, p0, K, V):
        a = self.a
        B, T = tokens.shape
        d, H = a.dim, a.heads
        hd = d // H
        x = self.emb[tokens]
        cos, sin = self.cos[p0:p0 + T], self.sin[p0:p0 + T]
        mask = torch.full((T, p0 + T), float("-inf")).triu(p0 + 1)
        for l in range(a.layers):
            h = self.per_modality(x, mods, lambda r, m: rms_norm(r, self.n1[l][m]) @ self.wqkv[l][m].T, 3 * d)
            q, k, v = h.view(B, T, 3, H, hd).permute(2, 0, 3, 1, 4)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            K[l][:, :, p0:p0 + T] = k
            V[l][:, :, p0:p0 + T] = v
            att = (q @ K[l][:, :, :p0 + T].transpose(-1, -2)) / math.sqrt(hd) + mask
            o = (att.softmax(-1) @ V[l][:, :, :p0 + T]).transpose(1, 2).reshape(B, T, d)
            x = x + self.per_modality(o, mods, lambda r, m: r @ self.wo[l][m].T, d)

            def ffn(r, m):
                ac = rms_norm(r, self.n2[l][m]) @ self.w13[l][m].T
                A, C = ac.chunk(2, dim=-1)
                return (torch.nn.functional.silu(A) * C) @ self.w2[l][m].T
            x = x + self.per_modality(x, mods, ffn, d)
        last = x[:, -1]
        lm = mods[:, -1]
        z = self.per_modality(last, lm, lambda r, m: rms_norm(r, self.nf[m]), d)
        return z @ self.out.T


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="dense")
    p.add_argument("--modalities", type=int, default=2)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--ffn-hidden", type=int, default=1408)
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--gen-batch", default="1,16")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a, _ = p.parse_known_args()
    torch.set_num_threads(a.threads)
    dec = Decoder(a)
    per = a.vocab // a.modalities
    cap, H, hd = a.prompt + a.new_tokens, a.heads, a.dim // a.heads
    results = []
    with torch.no_grad():
        for B in [int(x) for x in a.gen_batch.split(",")]:
            g = torch.Generator().manual_seed(7)
            span = (torch.arange(a.prompt) * a.modalities) // a.prompt  # text, then image, ... spans
            prompt = span * per + torch.randint(0, per, (B, a.prompt), generator=g)
            pre_t, dec_t = [], []
            for r in range(a.repeats + 1):
                K = [torch.zeros(B, H, cap, hd) for _ in range(a.layers)]
                V = [torch.zeros(B, H, cap, hd) for _ in range(a.layers)]
                t0 = time.perf_counter()
                z = dec.forward(prompt, span.expand(B, -1), 0, K, V)
                pre = time.perf_counter() - t0
                t0 = time.perf_counter()
                zero = torch.zeros(B, 1, dtype=torch.long)
                for t in range(a.prompt, cap - 1):
                    nxt = z[:, :per].argmax(-1, keepdim=True)  # greedy over the text tokens
                    z = dec.forward(nxt, zero, t, K, V)
                dect = time.perf_counter() - t0
                if r > 0:
                    pre_t.append(pre)
                    dec_t.append(dect)
            pre, dect = statistics.median(pre_t), statistics.median(dec_t)
            results.append({"batch": B, "prefill_s": pre, "decode_s": dect,
                            "prefill_tokens_per_s": B * a.prompt / pre,
                            "decode_tokens_per_s": B * (a.new_tokens - 1) / dect})
    print(json.dumps({"params": dec.params, "torch": torch.__version__, "threads": a.threads, "results": results}))


if __name__ == "__main__":
    main()
