#!/usr/bin/python3
"""Checks the PyTorch reference (mot_ref.py) on its own, without the engine:

1. against a second, deliberately different implementation (per-position Python loop
   that looks up each position's weights by name; expert choice by Python's sorted);
2. autograd gradients against central finite differences (also MoE and the hybrid);
3. MoT with identical per-modality weights == dense;
4. doc_mask: a packed document scores the same as the document on its own row;
5. share table == explicit copies of the shared modality's tensors;
6. safetensors round trip (F32, BF16) and the tensor names of SPEC section 3;
7. the AdamW/clip/schedule training loop against a hand-written update.
"""
import math
import os
import sys
import tempfile
import unittest

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import mot_ref as R  # noqa: E402

D = torch.float64


# ----------------------------------------------------------------------------------
# second implementation: loop over positions, weights looked up by name per position
# ----------------------------------------------------------------------------------

def loop_nll(params, cfg, row):
    """Returns (sum of nll over valid targets, count, per-target-modality sums)."""
    cfg = R.normalize_config(cfg)
    p = {k: torch.as_tensor(v).to(D) for k, v in params.items()}
    d, nh = cfg["dim"], cfg["n_heads"]
    hd = d // nh
    eps = cfg["norm_eps"]
    mods = cfg["modalities"]

    def mod_of(tok):
        for m in mods:
            if m["begin"] <= tok < m["end"]:
                return m["name"]
        raise ValueError(tok)

    toks = [t for t in row if t >= 0]
    T = len(toks)
    mname = [R.owner(cfg, mod_of(t)) for t in toks]

    def W(base, comp, t):
        if comp in cfg["untie"]:
            return p[f"{base}.{mname[t]}.weight"]
        return p[f"{base}.weight"]

    def rms(v, w):
        return v / math.sqrt(float((v * v).mean()) + eps) * w

    def rot(v, pos):
        out = v.clone()
        half = hd // 2
        for i in range(half):
            ang = pos * cfg["rope_theta"] ** (-2.0 * i / hd)
            a, b = v[i], v[i + half]
            out[i] = a * math.cos(ang) - b * math.sin(ang)
            out[i + half] = a * math.sin(ang) + b * math.cos(ang)
        return out

    doc = []
    cur = 0
    for t in range(T):
        if t > 0 and toks[t] == cfg["bos_id"] and cfg["doc_mask"]:
            cur += 1
        doc.append(cur)

    def attn(l, xs):
        base = f"layers.{l}.attention"
        q, k, v = [], [], []
        for t in range(T):
            qq = W(f"{base}.wq", "attention", t) @ xs[t]
            kk = W(f"{base}.wk", "attention", t) @ xs[t]
            vv = W(f"{base}.wv", "attention", t) @ xs[t]
            qh, kh = [], []
            for h in range(nh):
                a = qq[h * hd:(h + 1) * hd]
                b = kk[h * hd:(h + 1) * hd]
                if cfg["qk_norm"]:
                    a = rms(a, W(f"{base}.q_norm", "attention", t))
                    b = rms(b, W(f"{base}.k_norm", "attention", t))
                qh.append(rot(a, t))
                kh.append(rot(b, t))
            q.append(qh)
            k.append(kh)
            v.append(vv)
        outs = []
        for t in range(T):
            heads = []
            for h in range(nh):
                ss = [s for s in range(t + 1) if doc[s] == doc[t]]
                sc = torch.stack([q[t][h] @ k[s][h] / math.sqrt(hd) for s in ss])
                w = torch.softmax(sc, 0)
                heads.append(sum(w[j] * v[s][h * hd:(h + 1) * hd] for j, s in enumerate(ss)))
            outs.append(W(f"{base}.wo", "attention", t) @ torch.cat(heads))
        return outs

    def swiglu(w1, w3, w2, x):
        a, b = w1 @ x, w3 @ x
        return w2 @ (a * torch.sigmoid(a) * b)

    def ffn(l, xs):
        base = f"layers.{l}.feed_forward"
        out = [None] * T
        moe_positions = {}  # owner (None: tied) -> its positions
        for t in range(T):
            o = mname[t] if "ffn" in cfg["untie"] else None
            if R.is_moe(cfg, o):
                moe_positions.setdefault(o, []).append(t)
            else:
                out[t] = swiglu(W(f"{base}.w1", "ffn", t), W(f"{base}.w3", "ffn", t), W(f"{base}.w2", "ffn", t),
                                xs[t])
        # expert choice: the pool is the row's positions of that weight copy that
        # have a target; each expert ranks it by (score descending, position)
        for o, ts in moe_positions.items():
            sfx = f".{o}" if o else ""
            E = cfg["n_experts"]
            prob = {t: torch.softmax(p[f"{base}.router{sfx}.weight"] @ xs[t], 0) for t in ts}
            pool = [t for t in ts if t < T - 1]
            for t in ts:
                out[t] = torch.zeros(d, dtype=D)
            for e in range(E):
                ranked = sorted(pool, key=lambda t: (-float(prob[t][e]), t))
                x = f"{base}.experts.{e}"
                for t in ranked[:len(pool) // E]:
                    y = swiglu(p[f"{x}.w1{sfx}.weight"], p[f"{x}.w3{sfx}.weight"], p[f"{x}.w2{sfx}.weight"], xs[t])
                    out[t] = out[t] + prob[t][e] * y
        return out

    def norm(base, xs):
        return [rms(xs[t], W(base, "norm", t)) for t in range(T)]

    x = [p["tok_embeddings.weight"][t] for t in toks]
    for l in range(cfg["n_layers"]):
        if cfg["norm_position"] == "pre":
            a = attn(l, norm(f"layers.{l}.attention_norm", x))
            h = [x[t] + a[t] for t in range(T)]
            f = ffn(l, norm(f"layers.{l}.ffn_norm", h))
            x = [h[t] + f[t] for t in range(T)]
        else:
            a = norm(f"layers.{l}.attention_norm", attn(l, x))
            h = [x[t] + a[t] for t in range(T)]
            f = norm(f"layers.{l}.ffn_norm", ffn(l, h))
            x = [h[t] + f[t] for t in range(T)]
    x = norm("norm", x)
    total, n, by = 0.0, 0, {}
    for t in range(T - 1):
        logits = p["output.weight"] @ x[t]
        nll = float(torch.logsumexp(logits, 0) - logits[toks[t + 1]])
        total += nll
        n += 1
        m = mod_of(toks[t + 1])
        s, c = by.get(m, (0.0, 0))
        by[m] = (s + nll, c + 1)
    return total, n, by


def loop_eval(params, cfg, rows):
    total, n, by = 0.0, 0, {}
    for row in rows:
        s, c, b = loop_nll(params, cfg, row)
        total += s
        n += c
        for m, (ss, cc) in b.items():
            s0, c0 = by.get(m, (0.0, 0))
            by[m] = (s0 + ss, c0 + cc)
    return {"loss": total / n, "targets": n,
            "loss_by_modality": {m: s / c for m, (s, c) in by.items()},
            "targets_by_modality": {m: c for m, (s, c) in by.items()}}


class ReferenceSelfCheck(unittest.TestCase):
    def _vs_loop(self, cfg, seed, length=11, n_rows=2):
        params = H.random_params(cfg, seed)
        rows = H.random_rows(cfg, n_rows, length, seed + 1, bos_every=4 if cfg["doc_mask"] else 0)
        ref = R.evaluate(params, R.normalize_config(cfg), rows)
        lp = loop_eval(params, cfg, rows)
        print(f"  vs loop [{cfg['arch']} mods={len(cfg['modalities'])} untie={cfg['untie']} "
              f"{cfg['norm_position']} qk={cfg['qk_norm']} doc={cfg['doc_mask']}]: "
              f"ref={ref['loss']:.12f} loop={lp['loss']:.12f}")
        self.assertAlmostEqual(ref["loss"], lp["loss"], delta=1e-10)
        self.assertEqual(ref["targets"], lp["targets"])
        for m, v in lp["loss_by_modality"].items():
            self.assertAlmostEqual(ref["loss_by_modality"][m], v, delta=1e-10)
            self.assertEqual(ref["targets_by_modality"][m], lp["targets_by_modality"][m])
        for m, c in ref["targets_by_modality"].items():
            if c == 0:
                self.assertNotIn(m, ref["loss_by_modality"])

    def test_against_loop_implementation(self):
        small = dict(dim=16, n_heads=2, ffn_hidden=24)
        self._vs_loop(H.make_config("dense", 1, **small), 1)
        self._vs_loop(H.make_config("dense", 2, norm_position="post", qk_norm=True, **small), 2)
        self._vs_loop(H.make_config("mot", 2, qk_norm=True, doc_mask=True, **small), 3)
        self._vs_loop(H.make_config("mot", 3, norm_position="post", doc_mask=True, **small), 4, 13, 3)
        self._vs_loop(H.make_config("mot", 3, untie=["ffn"], qk_norm=True, **small), 5)
        self._vs_loop(H.make_config("mot", 3, untie=["attention", "norm"], qk_norm=True,
                                    norm_position="post", **small), 6)
        self._vs_loop(H.make_config("mot", 3, share={"speech": "image"}, qk_norm=True, **small), 7)
        # MoE-4x and the hybrid (small pools: k of 1 to 4)
        self._vs_loop(H.make_config("moe", 2, qk_norm=True, **small), 8)
        self._vs_loop(H.make_config("moe", 3, norm_position="post", untie=["attention"], **small), 9, 11, 3)
        self._vs_loop(H.make_config("mot", 3, moe_modalities=["text"], **small), 10, 20, 3)
        self._vs_loop(H.make_config("mot", 2, moe_modalities=["image"], norm_position="post", **small), 11, 20, 3)

    def test_finite_differences(self):
        cfg = H.make_config("mot", 3, dim=16, n_heads=2, ffn_hidden=24, qk_norm=True,
                            doc_mask=True, untie=["attention", "ffn", "norm"])
        ncfg = R.normalize_config(cfg)
        for post in (False, True):
            ncfg["norm_position"] = "post" if post else "pre"
            params = {k: torch.tensor(v, dtype=D) for k, v in H.random_params(cfg, 11).items()}
            rows = H.random_rows(cfg, 3, 14, 12, bos_every=5)
            _, g = R.loss_and_grads(params, ncfg, rows)
            rng = np.random.default_rng(0)
            worst = 0.0
            for name in sorted(params):
                for _ in range(2):
                    idx = tuple(int(rng.integers(0, s)) for s in params[name].shape)
                    if name == "tok_embeddings.weight":  # pick a used row
                        idx = (rows[0][3],) + idx[1:]
                    h = 1e-6
                    pp = {k: v.clone() for k, v in params.items()}
                    pp[name][idx] += h
                    lp = float(R.forward_loss(pp, ncfg, rows)["loss"])
                    pp[name][idx] -= 2 * h
                    lm = float(R.forward_loss(pp, ncfg, rows)["loss"])
                    fd = (lp - lm) / (2 * h)
                    an = float(g[name][idx])
                    err = abs(fd - an)
                    worst = max(worst, err)
                    self.assertLess(err, 1e-7 + 1e-5 * abs(an), f"{name}{idx}: fd {fd} vs autograd {an}")
            print(f"  finite differences ({ncfg['norm_position']}): {2 * len(params)} entries, "
                  f"max |fd - autograd| = {worst:.2e}")

    def test_finite_differences_moe(self):
        # Expert choice is piecewise constant in the weights: a step of 1e-6 changes no
        # pick here (if it did, the difference quotient would jump and fail).
        for cfg in (H.make_config("moe", 2, dim=16, n_heads=2, ffn_hidden=24, qk_norm=True),
                    H.make_config("mot", 3, dim=16, n_heads=2, ffn_hidden=24, norm_position="post",
                                  moe_modalities=["text"])):
            ncfg = R.normalize_config(cfg)
            params = {k: torch.tensor(v, dtype=D) for k, v in H.random_params(cfg, 13).items()}
            rows = H.random_rows(cfg, 3, 14, 14)
            _, g = R.loss_and_grads(params, ncfg, rows)
            rng = np.random.default_rng(1)
            worst = 0.0
            checked = 0
            for name in sorted(params):
                if "feed_forward" not in name and "norm" not in name:
                    continue
                for _ in range(3):
                    idx = tuple(int(rng.integers(0, s)) for s in params[name].shape)
                    h = 1e-6
                    pp = {k: v.clone() for k, v in params.items()}
                    pp[name][idx] += h
                    lp = float(R.forward_loss(pp, ncfg, rows)["loss"])
                    pp[name][idx] -= 2 * h
                    lm = float(R.forward_loss(pp, ncfg, rows)["loss"])
                    fd = (lp - lm) / (2 * h)
                    an = float(g[name][idx])
                    err = abs(fd - an)
                    worst = max(worst, err)
                    checked += 1
                    self.assertLess(err, 1e-7 + 1e-5 * abs(an), f"{name}{idx}: fd {fd} vs autograd {an}")
            print(f"  finite differences ({cfg['arch']} moe_modalities={cfg.get('moe_modalities')}): "
                  f"{checked} entries of FFN/router/norm tensors, max |fd - autograd| = {worst:.2e}")

    def test_identical_modalities_equal_dense(self):
        dense = H.make_config("dense", 3, qk_norm=True, doc_mask=True)
        mot = H.make_config("mot", 3, qk_norm=True, doc_mask=True)
        pd = H.random_params(dense, 21)
        pm = {}
        for name in R.param_shapes(R.normalize_config(mot)):
            parts = name.split(".")
            base = ".".join(p for p in parts if p not in ("text", "image", "speech"))
            pm[name] = pd[base]
        rows = H.random_rows(dense, 3, 30, 22, bos_every=9)
        a = R.evaluate(pd, R.normalize_config(dense), rows)
        b = R.evaluate(pm, R.normalize_config(mot), rows)
        print(f"  identical modalities: dense {a['loss']:.12f} mot {b['loss']:.12f}")
        self.assertAlmostEqual(a["loss"], b["loss"], delta=1e-12)
        for m in a["loss_by_modality"]:
            self.assertAlmostEqual(a["loss_by_modality"][m], b["loss_by_modality"][m], delta=1e-12)

    def test_doc_mask_packed_equals_alone(self):
        cfg = H.make_config("mot", 2, doc_mask=True, qk_norm=True)
        ncfg = R.normalize_config(cfg)
        params = H.random_params(cfg, 31)
        rng = np.random.default_rng(32)
        A = [1] + [int(t) for t in rng.integers(2, 256, size=9)]
        Bd = [1] + [int(t) for t in rng.integers(2, 256, size=12)]
        with torch.no_grad():
            P = {k: torch.tensor(v, dtype=D) for k, v in params.items()}
            packed = float(R.forward_loss(P, ncfg, [A + Bd])["nll_sum"])
            alone = float(R.forward_loss(P, ncfg, [A + [1]])["nll_sum"]) + \
                float(R.forward_loss(P, ncfg, [Bd])["nll_sum"])
            ncfg2 = dict(ncfg, doc_mask=False)
            nomask = float(R.forward_loss(P, ncfg2, [A + Bd])["nll_sum"])
        print(f"  doc_mask: packed {packed:.12f} alone {alone:.12f} (no mask {nomask:.6f})")
        self.assertAlmostEqual(packed, alone, delta=1e-9)
        self.assertGreater(abs(nomask - packed), 1e-4)

    def test_padding_is_not_a_target(self):
        cfg = H.make_config("mot", 2)
        ncfg = R.normalize_config(cfg)
        params = H.random_params(cfg, 41)
        rows = H.random_rows(cfg, 3, 20, 42)
        a = R.evaluate(params, ncfg, rows)
        b = R.evaluate(params, ncfg, [r + [-1] * 5 for r in rows])
        self.assertEqual(a["targets"], sum(len(H.trim(r)) - 1 for r in rows))
        self.assertAlmostEqual(a["loss"], b["loss"], delta=1e-12)
        with self.assertRaises(ValueError):
            R.evaluate(params, ncfg, [[3, -1, 4]])

    def test_share_equals_copies(self):
        cfg = H.make_config("mot", 3, share={"speech": "image"}, qk_norm=True)
        ncfg = R.normalize_config(cfg)
        params = H.random_params(cfg, 51)
        self.assertFalse(any(".speech." in n for n in params))
        full = H.make_config("mot", 3, qk_norm=True)
        pf = {}
        for name in R.param_shapes(R.normalize_config(full)):
            pf[name] = params[name.replace(".speech.", ".image.")]
        rows = H.random_rows(cfg, 2, 25, 52)
        a = R.evaluate(params, ncfg, rows)
        b = R.evaluate(pf, R.normalize_config(full), rows)
        self.assertAlmostEqual(a["loss"], b["loss"], delta=1e-12)

    def test_names_and_safetensors_roundtrip(self):
        cfg = R.normalize_config(H.make_config("mot", 2, untie=["attention", "norm"], qk_norm=True))
        names = set(R.param_shapes(cfg))
        for n in ["tok_embeddings.weight", "output.weight", "layers.1.attention.wq.image.weight",
                  "layers.0.attention.q_norm.text.weight", "layers.0.attention_norm.image.weight",
                  "layers.1.feed_forward.w2.weight", "layers.0.ffn_norm.text.weight",
                  "norm.image.weight"]:
            self.assertIn(n, names)
        self.assertNotIn("layers.0.feed_forward.w1.text.weight", names)
        self.assertNotIn("layers.0.attention.wq.weight", names)
        params = H.random_params(cfg, 61)
        with tempfile.TemporaryDirectory() as d:
            for dt, tol in (("F32", 0.0), ("BF16", 2 ** -8)):
                path = os.path.join(d, f"m_{dt}.safetensors")
                H.write_model(path, params, cfg, dtype=dt)
                back, meta = R.load_safetensors(path)
                self.assertEqual(meta["format"], "mot")
                self.assertEqual(R.config_from_metadata(meta)["modalities"], cfg["modalities"])
                self.assertEqual(set(back), set(params))
                for n, v in params.items():
                    err = float((back[n].double() - torch.tensor(v, dtype=D)).abs().max())
                    self.assertLessEqual(err, tol * float(np.abs(v).max()) + 0.0, n)
                with open(path, "rb") as f:
                    raw = f.read()
                hl = int.from_bytes(raw[:8], "little")
                self.assertEqual(hl % 8, 0)

    def test_training_loop_against_hand_written_adamw(self):
        cfg = H.make_config("mot", 2, dim=16, n_heads=2, ffn_hidden=24)
        ncfg = R.normalize_config(cfg)
        params = H.random_params(cfg, 71)
        rows = H.random_rows(cfg, 5, 12, 72)
        train = dict(batch_size=2, grad_accum=2, lr=1e-2, min_lr=1e-3, warmup_steps=2, steps=4,
                     weight_decay=0.1, beta1=0.9, beta2=0.95, eps=1e-8, grad_clip=0.3)
        recs, final = R.train_reference(params, ncfg, train, rows, 4)
        # hand-written: whole batch at once (loss = mean over all targets of both micro-batches)
        P = {k: torch.tensor(v, dtype=D) for k, v in params.items()}
        m = {k: torch.zeros_like(v) for k, v in P.items()}
        v2 = {k: torch.zeros_like(v) for k, v in P.items()}
        b1, b2 = 0.9, 0.95
        for s in range(4):
            batch = [rows[(s * 4 + j) % 5] for j in range(4)]
            res, g = R.loss_and_grads(P, ncfg, batch)
            self.assertAlmostEqual(res["loss"], recs[s]["loss"], delta=1e-12)
            gn = math.sqrt(sum(float((x ** 2).sum()) for x in g.values()))
            self.assertAlmostEqual(gn, recs[s]["grad_norm"], delta=1e-10)
            if 0.3 / (gn + 1e-6) < 1:
                g = {k: x * (0.3 / (gn + 1e-6)) for k, x in g.items()}
            lr = 1e-2 * (s + 1) / 2 if s < 2 else \
                1e-3 + 0.5 * (1e-2 - 1e-3) * (1 + math.cos(math.pi * (s - 2) / 2))
            self.assertAlmostEqual(lr, recs[s]["lr"], delta=1e-15)
            t = s + 1
            for k in P:
                if P[k].dim() == 2 and k != "tok_embeddings.weight":
                    P[k] = P[k] * (1 - lr * 0.1)
                m[k] = b1 * m[k] + (1 - b1) * g[k]
                v2[k] = b2 * v2[k] + (1 - b2) * g[k] ** 2
                mh = m[k] / (1 - b1 ** t)
                denom = (v2[k] / (1 - b2 ** t)).sqrt() + 1e-8
                P[k] = P[k] - lr * mh / denom
        print("  training loop: clipped per step", [r["clipped"] for r in recs],
              "lr", [round(r["lr"], 6) for r in recs])
        self.assertTrue(any(r["clipped"] for r in recs))
        for k in P:
            self.assertLess(float((P[k] - final[k]).abs().max()), 1e-12, k)


if __name__ == "__main__":
    unittest.main(verbosity=2)
