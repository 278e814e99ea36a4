#!/usr/bin/python3
"""Engine vs PyTorch reference: loss, per-modality loss, target counts and EVERY
parameter gradient of `mot grad`, across the model variants of SPEC section 2.

For each case the test writes random weights (all tensors random, norms 1 +- 0.2)
with its own safetensors writer and SPEC names, random interleaved-modality rows
(some ending in -1 padding, bos tokens inside rows when doc_mask) as JSONL, runs
`mot grad --model M --input D.jsonl --out G.safetensors` and compares with the
float64 reference: loss and loss/<modality> rel <= 1e-5, target counts exact,
per tensor max|g_eng - g_ref| <= 1e-4 * max|g_ref|.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import mot_ref as R  # noqa: E402

# name: (config kwargs, n_rows, row length, seed, jsonl with explicit -1 padding)
CASES = {
    "dense_1mod_pre": (dict(arch="dense", n_mod=1, dim=32), 3, 37, 101, False),
    "dense_2mod_post_qk_doc": (dict(arch="dense", n_mod=2, dim=48, norm_position="post",
                                    qk_norm=True, doc_mask=True), 3, 100, 102, False),
    "mot_1mod_pre_qk": (dict(arch="mot", n_mod=1, dim=32, qk_norm=True), 2, 37, 103, False),
    "mot_2mod_pre_qk_doc": (dict(arch="mot", n_mod=2, dim=32, qk_norm=True, doc_mask=True),
                            4, 37, 104, False),
    "mot_2mod_post": (dict(arch="mot", n_mod=2, dim=64, norm_position="post", ffn_hidden=96),
                      3, 100, 105, False),
    "mot_3mod_pre_qk_doc": (dict(arch="mot", n_mod=3, dim=48, qk_norm=True, doc_mask=True),
                            4, 100, 106, False),
    "mot_3mod_post_qk_doc": (dict(arch="mot", n_mod=3, dim=32, norm_position="post",
                                  qk_norm=True, doc_mask=True), 3, 37, 107, False),
    "mot_3mod_untie_ffn_post": (dict(arch="mot", n_mod=3, dim=32, untie=["ffn"],
                                     norm_position="post", qk_norm=True), 3, 37, 108, False),
    "mot_3mod_untie_attention_norm_pre": (dict(arch="mot", n_mod=3, dim=32,
                                               untie=["attention", "norm"], qk_norm=True,
                                               doc_mask=True), 3, 100, 109, False),
    "mot_2mod_untie_attention_pre": (dict(arch="mot", n_mod=2, dim=32, untie=["attention"]),
                                     3, 37, 110, False),
    "mot_2mod_untie_norm_post_qk": (dict(arch="mot", n_mod=2, dim=32, untie=["norm"],
                                         norm_position="post", qk_norm=True), 3, 37, 111, False),
    "mot_2mod_explicit_padding_in_jsonl": (dict(arch="mot", n_mod=2, dim=32, qk_norm=True),
                                           3, 37, 112, True),
    "mot_3mod_share_speech_image": (dict(arch="mot", n_mod=3, dim=32, qk_norm=True,
                                         share={"speech": "image"}), 3, 37, 113, False),
    # a BF16 checkpoint (the reference uses the bf16 values read back from the file)
    "mot_2mod_bf16_checkpoint": (dict(arch="mot", n_mod=2, dim=32, qk_norm=True), 3, 37, 114,
                                 False, "BF16"),
}


def run_case(name, spec, env_extra=None, rows_fn=None):
    """Returns (problems, report lines). rows_fn(config, rows) may rewrite the rows."""
    kw, n_rows, length, seed, explicit = spec[:5]
    dtype = spec[5] if len(spec) > 5 else "F32"
    cfg = H.make_config(**kw)
    ncfg = R.normalize_config(cfg)
    params = H.random_params(cfg, seed)
    rows = H.random_rows(cfg, n_rows, length, seed + 1000,
                         bos_every=8 if cfg["doc_mask"] else 0)
    if rows_fn is not None:
        rows = rows_fn(cfg, rows)
    s = H.Scratch(name)
    try:
        model, data, gout = s.path("model.safetensors"), s.path("data.jsonl"), s.path("grad.safetensors")
        H.write_model(model, params, cfg, dtype=dtype)
        if dtype != "F32":
            params, _ = R.load_safetensors(model)
        H.write_jsonl(data, rows, explicit_padding=explicit)
        ref_eval, ref_grads = R.loss_and_grads(params, ncfg, rows)
        eng_eval, eng_grads, _ = H.engine_grad(model, data, gout, env_extra)
        p1, l1 = H.compare_eval(eng_eval, ref_eval, label="  ")
        p2, l2 = H.compare_grads(eng_grads, ref_grads, label="  ")
        return p1 + p2, l1 + l2
    finally:
        s.cleanup()


class GradParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not H.have_engine():
            raise AssertionError(f"engine binary not found/executable: {H.MOT_BIN} (set MOT_BIN)")


def _make(name, spec):
    def test(self):
        kw = spec[0]
        print(f"\n[{name}] config {kw}, rows {spec[1]} x {spec[2]}")
        probs, lines = run_case(name, spec)
        print("\n".join(lines))
        if probs:
            print("  MISMATCHES:\n    " + "\n    ".join(probs))
        self.assertEqual(probs, [], f"{name}: {len(probs)} mismatches")
    return test


def _speech_only_as_first_input(cfg, rows):
    """Speech tokens only at position 0 of each row: speech is an input modality but
    never a target, so loss/speech must be absent and targets_by_modality.speech 0."""
    sp = cfg["modalities"][2]
    out = []
    for i, row in enumerate(rows):
        row = [t if t < 0 or t < sp["begin"] else t % 100 + 2 for t in row]
        row[0] = sp["begin"] + 3 * i
        out.append(row)
    return out


def test_mot_3mod_modality_without_targets(self):
    name = "mot_3mod_modality_without_targets"
    spec = (dict(arch="mot", n_mod=3, dim=32, qk_norm=True, doc_mask=True), 3, 37, 115, False)
    print(f"\n[{name}] config {spec[0]}; speech tokens only at position 0 of each row")
    probs, lines = run_case(name, spec, rows_fn=_speech_only_as_first_input)
    print("\n".join(lines))
    if probs:
        print("  MISMATCHES:\n    " + "\n    ".join(probs))
    self.assertEqual(probs, [], f"{name}: {len(probs)} mismatches")


GradParity.test_mot_3mod_modality_without_targets = test_mot_3mod_modality_without_targets

for _n, _spec in CASES.items():
    setattr(GradParity, f"test_{_n}", _make(_n, _spec))


if __name__ == "__main__":
    unittest.main(verbosity=2)
