#!/usr/bin/python3
"""Engine invariants checked with the reference:

1. a MoT model whose modalities all hold identical weights evaluates exactly like the
   dense model with those weights (engine vs engine, rel 1e-5);
2. with MOT_DEBUG_SWAP_MODALITIES=1 (the engine swaps the weights of modality 0 and 1)
   the reference parity check FAILS, i.e. the parity tests can see routing bugs;
3. a checkpoint written by `mot init` loads in the reference (SPEC names, shapes,
   metadata) and the reference loss on it equals `mot eval` (rel 1e-5).
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import mot_ref as R  # noqa: E402
import test_grad_parity as GP  # noqa: E402

MOD_NAMES = ("text", "image", "speech")


class Invariants(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not H.have_engine():
            raise AssertionError(f"engine binary not found/executable: {H.MOT_BIN} (set MOT_BIN)")

    def _identical(self, tag, **kw):
        dense = H.make_config("dense", **kw)
        mot = H.make_config("mot", **kw)
        pd = H.random_params(dense, 301)
        pm = {}
        for name in R.param_shapes(R.normalize_config(mot)):
            pm[name] = pd[".".join(p for p in name.split(".") if p not in MOD_NAMES)]
        rows = H.random_rows(dense, 3, 37, 302, bos_every=7 if kw.get("doc_mask") else 0)
        s = H.Scratch(tag)
        try:
            H.write_model(s.path("dense.safetensors"), pd, dense)
            H.write_model(s.path("mot.safetensors"), pm, mot)
            H.write_jsonl(s.path("d.jsonl"), rows)
            ed = H.engine_eval(s.path("dense.safetensors"), s.path("d.jsonl"))
            em = H.engine_eval(s.path("mot.safetensors"), s.path("d.jsonl"))
        finally:
            s.cleanup()
        ref = R.evaluate(pd, R.normalize_config(dense), rows)
        print(f"\n[{tag}] {kw}: engine dense loss {ed['loss']!r}, engine MoT loss {em['loss']!r}, "
              f"reference {ref['loss']!r}")
        # engine MoT (identical copies) vs engine dense, every field
        as_ref = {"loss": float(ed["loss"]),
                  "loss_by_modality": {k: float(v) for k, v in ed["loss_by_modality"].items()},
                  "targets": int(ed["targets"]),
                  "targets_by_modality": {k: int(v) for k, v in ed["targets_by_modality"].items()}}
        probs, lines = H.compare_eval(em, as_ref, rtol=1e-5, label="  MoT vs dense: ")
        print("\n".join(lines))
        self.assertEqual(probs, [])

    def test_1_identical_modalities_equal_dense_pre(self):
        self._identical("ident_pre", n_mod=3, qk_norm=True, doc_mask=True)

    def test_1_identical_modalities_equal_dense_post(self):
        self._identical("ident_post", n_mod=2, norm_position="post")

    def test_2_swapped_modalities_are_detected(self):
        env = {"MOT_DEBUG_SWAP_MODALITIES": "1"}
        for name in ("mot_2mod_pre_qk_doc", "mot_3mod_untie_ffn_post",
                     "mot_3mod_untie_attention_norm_pre"):
            # the same case passes without the bug injection ...
            probs, _ = GP.run_case("noswap_" + name, GP.CASES[name],
                                   env_extra={"MOT_DEBUG_SWAP_MODALITIES": "0"})
            self.assertEqual(probs, [], f"{name} must pass without the swap")
            # ... and fails with it
            probs, lines = GP.run_case("swap_" + name, GP.CASES[name], env_extra=env)
            print(f"\n[swap {name}] with MOT_DEBUG_SWAP_MODALITIES=1: {len(probs)} mismatches "
                  f"detected (expected > 0)")
            print("\n".join(lines))
            for p in probs[:5]:
                print("    " + p)
            self.assertTrue(any(p.startswith("loss") for p in probs),
                            f"{name}: swapped routing not visible in the loss")
            self.assertTrue(any(".weight:" in p for p in probs),
                            f"{name}: swapped routing not visible in the gradients")

    def _init_case(self, tag, seed, **kw):
        cfg = H.make_config(**kw)
        s = H.Scratch(tag)
        try:
            conf, model, model2, data = (s.path("c.toml"), s.path("m.safetensors"),
                                         s.path("m2.safetensors"), s.path("d.jsonl"))
            H.write_toml(conf, {"model": cfg})
            H.run_mot(["init", "--config", conf, "--seed", seed, "--out", model])
            params, meta = R.load_safetensors(model)
            self.assertEqual(meta.get("format"), "mot", meta)
            self.assertEqual(meta.get("format_version"), "1", meta)
            mcfg = R.config_from_metadata(meta)
            for k in ("arch", "dim", "n_layers", "n_heads", "ffn_hidden", "vocab_size",
                      "norm_position", "qk_norm", "doc_mask", "bos_id"):
                self.assertEqual(mcfg[k], cfg[k], f"metadata config key {k}")
            self.assertEqual(sorted(mcfg["untie"]), sorted(cfg["untie"]))
            self.assertEqual([(m["name"], m["begin"], m["end"]) for m in mcfg["modalities"]],
                             [(m["name"], m["begin"], m["end"]) for m in cfg["modalities"]])
            want = R.param_shapes(mcfg)
            self.assertEqual(sorted(params), sorted(want), "tensor names of `mot init`")
            for n, shp in want.items():
                self.assertEqual(list(params[n].shape), shp, n)
                self.assertTrue(bool(R.torch.isfinite(params[n]).all()), n)
            rows = H.random_rows(cfg, 3, 37, seed + 5, bos_every=6 if cfg["doc_mask"] else 0)
            H.write_jsonl(data, rows)
            ev = H.engine_eval(model, data)
            ref = R.evaluate(params, mcfg, rows)
            probs, lines = H.compare_eval(ev, ref, rtol=1e-5, label="  ")
            print(f"\n[{tag}] `mot init --seed {seed}` {kw}: {len(params)} tensors, names/shapes OK")
            print("\n".join(lines))
            # same seed -> same weights
            H.run_mot(["init", "--config", conf, "--seed", seed, "--out", model2])
            again, _ = R.load_safetensors(model2)
            for n in params:
                if not R.torch.equal(params[n], again[n]):
                    probs.append(f"init not deterministic for seed {seed}: {n}")
                    break
            self.assertEqual(probs, [])
        finally:
            s.cleanup()

    def test_3_init_checkpoint_loads_in_reference(self):
        self._init_case("init_mot3", 7, arch="mot", n_mod=3, qk_norm=True, doc_mask=True)
        self._init_case("init_partial", 8, arch="mot", n_mod=2, untie=["ffn"],
                        norm_position="post")
        self._init_case("init_dense", 9, arch="dense", n_mod=2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
