#!/usr/bin/python3
"""`mot train` vs the reference training loop (AdamW exactly like torch.optim.AdamW,
clipping like clip_grad_norm_, warmup + cosine schedule), 10 steps from the same
random start (written by this test with --init).

Compared per step: loss and loss/<modality> (rel 1e-4), lr (rel 1e-6), grad_norm
(rel 1e-4), presence of tokens/ms/tokens_per_s; at the end:
the reference loss of the engine's final model vs the reference's final model
(rel 1e-4) and every final tensor (the update Δ = final - start must agree:
max|Δ_eng - Δ_ref| <= 2e-2 * max|Δ_ref| + 1e-6 per tensor).

grad_clip is chosen as the median of the unclipped gradient norms, so clipping is
active on some steps and not on others (asserted).
"""
import json
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import mot_ref as R  # noqa: E402

STEPS = 10
DELTA_TOL = 2e-2


def read_metrics(path):
    recs = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            o = json.loads(line)
            if "step" in o and "loss" in o:
                recs[int(o["step"])] = o
    return recs


class AdamWParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not H.have_engine():
            raise AssertionError(f"engine binary not found/executable: {H.MOT_BIN} (set MOT_BIN)")

    def _run(self, tag, cfg_kw, n_rows, length, batch_size, grad_accum, seed):
        cfg = H.make_config(**cfg_kw)
        ncfg = R.normalize_config(cfg)
        params = H.random_params(cfg, seed)
        rows = H.random_rows(cfg, n_rows, length, seed + 1,
                             bos_every=8 if cfg["doc_mask"] else 0)
        train = dict(seq_len=length, batch_size=batch_size, grad_accum=grad_accum, lr=1e-3,
                     min_lr=1e-4, warmup_steps=3, steps=STEPS, weight_decay=0.1, beta1=0.9,
                     beta2=0.95, eps=1e-8, grad_clip=1e9, seed=1, log_every=1,
                     eval_every=1000, save_every=1000)
        free, _ = R.train_reference(params, ncfg, train, rows, STEPS)
        norms = sorted(r["grad_norm"] for r in free)
        train["grad_clip"] = float(np.float32(norms[len(norms) // 2]))
        ref, ref_final = R.train_reference(params, ncfg, train, rows, STEPS)
        clipped = [r["clipped"] for r in ref]
        print(f"\n[{tag}] config {cfg_kw}; {n_rows} rows x {length}, batch_size {batch_size}, "
              f"grad_accum {grad_accum}, grad_clip {train['grad_clip']:.6g}, "
              f"clipped steps {[i + 1 for i, c in enumerate(clipped) if c]}")
        self.assertTrue(any(clipped) and not all(clipped))

        s = H.Scratch(tag)
        try:
            init, data, conf, run = (s.path("init.safetensors"), s.path("data.jsonl"),
                                     s.path("config.toml"), s.path("run"))
            H.write_model(init, params, cfg)
            H.write_jsonl(data, rows)
            model_toml = {k: v for k, v in cfg.items()}
            H.write_toml(conf, {"model": model_toml, "train": train})
            H.run_mot(["train", "--config", conf, "--data", data, "--steps", STEPS, "--out", run,
                       "--init", init])
            recs = read_metrics(os.path.join(run, "metrics.jsonl"))
            eng_final, _ = R.load_safetensors(os.path.join(run, "model.safetensors"))
        finally:
            s.cleanup()

        probs = []
        print("  step  loss_eng      loss_ref      rel      lr_eng      lr_ref      "
              "gnorm_eng   gnorm_ref   rel")
        worst_mod = 0.0
        for r in ref:
            e = recs.get(r["step"])
            if e is None:
                probs.append(f"metrics.jsonl has no line for step {r['step']}")
                continue
            le, lr_e, gn_e = float(e["loss"]), float(e.get("lr", "nan")), float(e.get("grad_norm", "nan"))
            print(f"  {r['step']:4d}  {le:.9f}  {r['loss']:.9f}  {H.rel(le, r['loss']):.1e}  "
                  f"{lr_e:.4e}  {r['lr']:.4e}  {gn_e:.6e}  {r['grad_norm']:.6e}  "
                  f"{H.rel(gn_e, r['grad_norm']):.1e}")
            if not H.rel(le, r["loss"]) <= 1e-4:
                probs.append(f"step {r['step']} loss: engine {le} vs ref {r['loss']}")
            if not H.rel(lr_e, r["lr"]) <= 1e-6:
                probs.append(f"step {r['step']} lr: engine {lr_e} vs ref {r['lr']}")
            if not H.rel(gn_e, r["grad_norm"]) <= 1e-4:
                probs.append(f"step {r['step']} grad_norm: engine {gn_e} vs ref {r['grad_norm']}")
            # SPEC section 4: loss/<modality> per step (mean over that step's targets of it)
            for m, lm in r["loss_by_modality"].items():
                key = f"loss/{m}"
                if key not in e:
                    probs.append(f"step {r['step']}: metrics line lacks {key}")
                elif not H.rel(float(e[key]), lm) <= 1e-4:
                    probs.append(f"step {r['step']} {key}: engine {e[key]} vs ref {lm}")
                else:
                    worst_mod = max(worst_mod, H.rel(float(e[key]), lm))
            for key in ("tokens", "ms", "tokens_per_s"):
                if key not in e:
                    probs.append(f"step {r['step']}: metrics line lacks {key}")

        print(f"  per-step loss/<modality>: worst rel diff {worst_mod:.1e}")
        # final model
        if set(eng_final) != set(ref_final):
            probs.append(f"final model tensor names differ: only engine "
                         f"{sorted(set(eng_final) - set(ref_final))}, only ref "
                         f"{sorted(set(ref_final) - set(eng_final))}")
        worst = (0.0, None)
        for name in sorted(set(eng_final) & set(ref_final)):
            start = R.torch.tensor(params[name], dtype=R.DTYPE)
            de = eng_final[name].double() - start
            dr = ref_final[name] - start
            err = float((de - dr).abs().max())
            scale = float(dr.abs().max())
            ratio = err / max(scale, 1e-30)
            if ratio > worst[0]:
                worst = (ratio, name)
            if not err <= DELTA_TOL * scale + 1e-6:
                probs.append(f"final {name}: max|Δeng-Δref|={err:.3e}, max|Δref|={scale:.3e} "
                             f"(ratio {ratio:.3e} > {DELTA_TOL})")
        print(f"  final weights: worst max|Δeng-Δref|/max|Δref| = {worst[0]:.3e} ({worst[1]})")
        if set(eng_final) == set(ref_final):
            le = R.evaluate(eng_final, ncfg, rows)["loss"]
            lr_ = R.evaluate(ref_final, ncfg, rows)["loss"]
            print(f"  reference loss of final models on all rows: engine's {le:.9f}, "
                  f"reference's {lr_:.9f}, rel {H.rel(le, lr_):.1e}")
            if not H.rel(le, lr_) <= 1e-4:
                probs.append(f"final model loss: engine's {le} vs reference's {lr_}")
        if probs:
            print("  MISMATCHES:\n    " + "\n    ".join(probs))
        self.assertEqual(probs, [], f"{tag}: {len(probs)} mismatches")

    def test_mot_grad_accum_same_rows_every_step(self):
        # 4 rows = batch_size 2 x grad_accum 2: every step sees the whole file; rows are
        # padded differently, so a mean of micro-batch means would differ from the
        # mean over all targets.
        self._run("adamw_accum", dict(arch="mot", n_mod=2, dim=32, qk_norm=True, doc_mask=True),
                  4, 37, 2, 2, 201)

    def test_mot_3mod_wrapping_rows(self):
        # 5 rows, batch_size 2: steps use rows (0,1), (2,3), (4,0), (1,2), ...
        self._run("adamw_wrap", dict(arch="mot", n_mod=3, dim=32, norm_position="post",
                                     untie=["attention", "ffn", "norm"]),
                  5, 30, 2, 1, 202)

    def test_moe(self):
        # expert choice: the picks move as the router and the residual stream train
        self._run("adamw_moe", dict(arch="moe", n_mod=2, dim=32, qk_norm=True), 4, 37, 2, 1, 204)

    def test_hybrid_text_moe(self):
        self._run("adamw_hybrid", dict(arch="mot", n_mod=2, dim=32, norm_position="post",
                                       moe_modalities=["text"]), 4, 37, 2, 2, 205)

    def test_dense(self):
        self._run("adamw_dense", dict(arch="dense", n_mod=2, dim=32, qk_norm=True), 2, 37, 2, 1, 203)


if __name__ == "__main__":
    unittest.main(verbosity=2)
