#!/usr/bin/python3
"""MoE-4x (expert choice) and the MoT+MoE hybrid: invariants beyond the gradient
parity cases of test_grad_parity.py.

1. Batching invariance (SPEC: per-row pools make a row's result independent of
   batching): `mot eval --batch 1` (every row alone, at its own length) and
   `--batch 8` (rows padded together) give the same loss and per-modality losses
   (rel 1e-6), and both equal the reference; in the reference, each row's loss alone
   equals its share of the batch's loss.
2. One expert is the dense FFN: with n_experts = 1 the expert picks every position
   (k = n) with score 1, so arch = "moe" equals arch = "dense" with the expert's
   weights, and the hybrid equals MoT (engine vs engine, rel 1e-6).
3. Expert choice is not causal: changing only the last tokens of a row changes the
   loss at its first positions (they compete for the same experts), in the
   reference and in the engine alike.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import mot_ref as R  # noqa: E402

ROWS_LEN = 41


def rows_of_many_lengths(cfg, seed):
    """Rows of 41, 2, 6, 17, 40, 9, 30 tokens (pools of 40, 1, 5, 16, 39, 8, 29)."""
    rows = H.random_rows(cfg, 7, ROWS_LEN, seed, pad=False)
    lengths = [41, 2, 6, 17, 40, 9, 30]
    return [r[:n] + [-1] * (ROWS_LEN - n) for r, n in zip(rows, lengths)]


class MoeInvariants(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not H.have_engine():
            raise AssertionError(f"engine binary not found/executable: {H.MOT_BIN} (set MOT_BIN)")

    def _batching(self, tag, seed, **kw):
        cfg = H.make_config(**kw)
        ncfg = R.normalize_config(cfg)
        params = H.random_params(cfg, seed)
        rows = rows_of_many_lengths(cfg, seed + 1)
        s = H.Scratch(tag)
        try:
            model, data = s.path("m.safetensors"), s.path("d.jsonl")
            H.write_model(model, params, cfg)
            H.write_jsonl(data, rows)
            one = H.parse_json_stdout(H.run_mot(["eval", "--model", model, "--input", data, "--json",
                                                 "--batch", 1]).stdout)
            all_ = H.parse_json_stdout(H.run_mot(["eval", "--model", model, "--input", data, "--json",
                                                  "--batch", 8]).stdout)
        finally:
            s.cleanup()
        ref = R.evaluate(params, ncfg, rows)
        as_ref = {"loss": float(one["loss"]),
                  "loss_by_modality": {k: float(v) for k, v in one["loss_by_modality"].items()},
                  "targets": int(one["targets"]),
                  "targets_by_modality": {k: int(v) for k, v in one["targets_by_modality"].items()}}
        print(f"\n[{tag}] {kw}: rows of {[len(H.trim(r)) for r in rows]} tokens")
        p1, l1 = H.compare_eval(all_, as_ref, rtol=1e-6, label="  batch 8 vs batch 1: ")
        p2, l2 = H.compare_eval(all_, ref, label="  batch 8 vs reference: ")
        print("\n".join(l1 + l2))
        # the reference, row by row: the sum of per-row nll sums is the batch's sum
        total = sum(float(R.forward_loss({k: R.torch.as_tensor(v).double() for k, v in params.items()},
                                         ncfg, [r])["nll_sum"]) for r in rows if len(H.trim(r)) > 1)
        batch_sum = ref["loss"] * ref["targets"]
        print(f"  reference: sum over rows alone {total:.12g}, batch {batch_sum:.12g}")
        self.assertEqual(p1 + p2, [])
        self.assertLess(H.rel(total, batch_sum), 1e-12)

    def test_batching_invariance_moe_pre(self):
        self._batching("batch_moe_pre", 401, arch="moe", n_mod=2, qk_norm=True)

    def test_batching_invariance_moe_post(self):
        self._batching("batch_moe_post", 402, arch="moe", n_mod=3, norm_position="post")

    def test_batching_invariance_hybrid(self):
        self._batching("batch_hybrid", 403, arch="mot", n_mod=3, moe_modalities=["text"])

    def _one_expert(self, tag, seed, base_arch, **kw):
        moe_kw = dict(kw, n_experts=1)
        if base_arch == "dense":
            moe_cfg = H.make_config("moe", **moe_kw)
        else:
            moe_cfg = H.make_config("mot", moe_modalities=["text", "image"], **moe_kw)
        base_cfg = H.make_config(base_arch, **kw)
        pb = H.random_params(base_cfg, seed)
        pm = {}
        for name in R.param_shapes(R.normalize_config(moe_cfg)):
            if ".router" in name:
                pm[name] = H.random_params(moe_cfg, seed + 1)[name]  # any router: softmax over 1 is 1
            else:
                pm[name] = pb[name.replace(".experts.0", "")]
        rows = rows_of_many_lengths(base_cfg, seed + 2)
        s = H.Scratch(tag)
        try:
            H.write_model(s.path("base.safetensors"), pb, base_cfg)
            H.write_model(s.path("moe.safetensors"), pm, moe_cfg)
            H.write_jsonl(s.path("d.jsonl"), rows)
            eb = H.engine_eval(s.path("base.safetensors"), s.path("d.jsonl"))
            em = H.engine_eval(s.path("moe.safetensors"), s.path("d.jsonl"))
        finally:
            s.cleanup()
        as_ref = {"loss": float(eb["loss"]),
                  "loss_by_modality": {k: float(v) for k, v in eb["loss_by_modality"].items()},
                  "targets": int(eb["targets"]),
                  "targets_by_modality": {k: int(v) for k, v in eb["targets_by_modality"].items()}}
        probs, lines = H.compare_eval(em, as_ref, rtol=1e-6, label=f"  1 expert vs {base_arch}: ")
        print(f"\n[{tag}] {kw}\n" + "\n".join(lines))
        self.assertEqual(probs, [])

    def test_one_expert_is_dense(self):
        self._one_expert("one_expert_dense", 411, "dense", n_mod=2, qk_norm=True)

    def test_one_expert_hybrid_is_mot(self):
        self._one_expert("one_expert_mot", 412, "mot", n_mod=3, norm_position="post")

    def test_not_causal(self):
        # 20 text tokens, then 13 image tokens; only the image tokens change. In a
        # causal model loss/text (targets 1..19) could not move; here the image
        # positions compete with the text positions for the same experts.
        cfg = H.make_config("moe", n_mod=2)
        ncfg = R.normalize_config(cfg)
        params = H.random_params(cfg, 421)
        gen = R.np.random.default_rng(422)
        text = [int(t) for t in gen.integers(0, 160, size=20)]
        row = text + [int(t) for t in gen.integers(160, 256, size=13)]
        changed = text + [int(t) for t in gen.integers(160, 256, size=13)]
        ref = [R.evaluate(params, ncfg, [r]) for r in (row, changed)]
        print(f"\n[not_causal] reference loss/text {ref[0]['loss_by_modality']['text']!r} vs "
              f"{ref[1]['loss_by_modality']['text']!r} after changing the image tokens only")
        self.assertGreater(H.rel(ref[0]["loss_by_modality"]["text"], ref[1]["loss_by_modality"]["text"]), 1e-6)
        s = H.Scratch("not_causal")
        try:
            model = s.path("m.safetensors")
            H.write_model(model, params, cfg)
            for r, rr in zip((row, changed), ref):
                H.write_jsonl(s.path("d.jsonl"), [r])
                probs, lines = H.compare_eval(H.engine_eval(model, s.path("d.jsonl")), rr, label="  ")
                print("\n".join(lines))
                self.assertEqual(probs, [])
        finally:
            s.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
