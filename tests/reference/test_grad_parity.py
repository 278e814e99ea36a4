#!/usr/bin/python3
"""Engine vs PyTorch reference: loss, per-modality loss, target counts and EVERY
parameter gradient of `mot grad`, across the model variants of SPEC section 2.

For each case the test writes random weights (all tensors random, norms 1 +- 0.2)
with its own safetensors writer and SPEC names, random interleaved-modality rows
(some ending in -1 padding, bos tokens inside rows when doc_mask) as JSONL, runs
`mot grad --model M --input D.jsonl --out G.safetensors` and compares with the
float64 reference: loss and loss/<modality> rel <= 1e-5, target counts exact,
per tensor max|g_eng - g_ref| <= 1e-4 * max|g_ref|.

MoE cases (arch = "moe" and the MoT+MoE hybrid) use rows of different lengths, so the
per-row pools differ in size, down to pools where k = floor(n / E) is 1 and 0. Their
rows hold no packed documents: under doc_mask the first position of every document
attends only to itself, so all of a row's document starts have mathematically equal
router scores, and which of them an expert picks at its capacity boundary is decided
by fp32 rounding in the engine (its GEMMs round equal rows at different positions
differently) but by position in the float64 reference. The tie rule itself is tested
with a zero router (every score exactly 1/E in both).
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


def run_case(name, spec, env_extra=None, rows_fn=None, params_fn=None):
    """Returns (problems, report lines). rows_fn(config, rows) may rewrite the rows,
    params_fn(params) the weights."""
    kw, n_rows, length, seed, explicit = spec[:5]
    dtype = spec[5] if len(spec) > 5 else "F32"
    cfg = H.make_config(**kw)
    ncfg = R.normalize_config(cfg)
    params = H.random_params(cfg, seed)
    if params_fn is not None:
        params_fn(params)
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


def small_pools(cfg, rows):
    """Cuts rows 1.. to 5, 4, 13, 8, 2 valid tokens: pools of 4, 3, 12, 7 and 1
    positions, so k = floor(n / 4) = 1, 0, 3, 1, 0 (row 0 keeps all 36: k = 9)."""
    cut = [None, 5, 4, 13, 8, 2]
    return [row if cut[i % len(cut)] is None else row[:cut[i % len(cut)]] + [-1] * (len(row) - cut[i % len(cut)])
            for i, row in enumerate(rows)]


def zero_routers(params):
    """Every router 0: all scores are exactly 1/E, so each expert picks the first k
    positions of each pool (the tie rule: lower position first)."""
    for name in params:
        if ".router" in name:
            params[name][...] = 0.0


def zero_router_layer0(params):
    for name in params:
        if name.startswith("layers.0.") and ".router" in name:
            params[name][...] = 0.0


# name: (spec as in CASES, rows_fn, params_fn)
MOE_CASES = {
    "moe_1mod_pre": ((dict(arch="moe", n_mod=1, dim=32), 3, 37, 121, False), None, None),
    "moe_2mod_post_qk": ((dict(arch="moe", n_mod=2, dim=32, norm_position="post", qk_norm=True),
                         3, 37, 122, False), None, None),
    "moe_3mod_untie_attention_norm_pre_qk": ((dict(arch="moe", n_mod=3, dim=48, untie=["attention", "norm"],
                                                   qk_norm=True), 3, 100, 123, True), None, None),
    "moe_2mod_small_pools_pre": ((dict(arch="moe", n_mod=2, dim=32, qk_norm=True), 6, 37, 124, False),
                                 small_pools, None),
    "moe_2mod_small_pools_post": ((dict(arch="moe", n_mod=2, dim=32, norm_position="post"), 6, 37, 125, False),
                                  small_pools, None),
    "moe_2mod_2experts_pre": ((dict(arch="moe", n_mod=2, dim=32, n_experts=2, ffn_hidden=48), 3, 37, 126, False),
                              None, None),
    "moe_2mod_zero_router_ties_pre": ((dict(arch="moe", n_mod=2, dim=32), 6, 37, 127, False),
                                      small_pools, zero_routers),
    "moe_1mod_zero_router_layer0_post": ((dict(arch="moe", n_mod=1, dim=32, norm_position="post"), 3, 37, 128,
                                         False), None, zero_router_layer0),
    "moe_2mod_bf16_checkpoint": ((dict(arch="moe", n_mod=2, dim=32, qk_norm=True), 3, 37, 129, False, "BF16"),
                                 None, None),
    "hybrid_2mod_text_pre_qk": ((dict(arch="mot", n_mod=2, dim=32, qk_norm=True, moe_modalities=["text"]),
                                 3, 37, 131, False), None, None),
    # (Post-norm with tiny pools can leave a layer where no position has two experts:
    # then RMSNorm's scale invariance makes the router gradient ~0 and a relative
    # comparison meaningless, so the tiny-pool hybrid case is pre-norm.)
    "hybrid_2mod_text_pre_small_pools": ((dict(arch="mot", n_mod=2, dim=32, moe_modalities=["text"]),
                                          6, 37, 132, False), small_pools, None),
    "hybrid_2mod_text_post": ((dict(arch="mot", n_mod=2, dim=32, norm_position="post", moe_modalities=["text"]),
                              3, 37, 136, False), None, None),
    "hybrid_3mod_text_image_pre": ((dict(arch="mot", n_mod=3, dim=32, moe_modalities=["text", "image"]),
                                    3, 100, 133, False), None, None),
    "hybrid_3mod_image_share_speech_text_post_qk": ((dict(arch="mot", n_mod=3, dim=32, norm_position="post",
                                                          qk_norm=True, moe_modalities=["image"],
                                                          share={"speech": "text"}), 4, 37, 134, False),
                                                    small_pools, None),
    "hybrid_3mod_text_untie_ffn_only_pre": ((dict(arch="mot", n_mod=3, dim=32, untie=["ffn"],
                                                  moe_modalities=["text"]), 3, 37, 135, False),
                                            None, zero_router_layer0),
}


def _make_moe(name, spec, rows_fn, params_fn):
    def test(self):
        print(f"\n[{name}] config {spec[0]}, rows {spec[1]} x {spec[2]}"
              f"{', ' + rows_fn.__name__ if rows_fn else ''}{', ' + params_fn.__name__ if params_fn else ''}")
        probs, lines = run_case(name, spec, rows_fn=rows_fn, params_fn=params_fn)
        print("\n".join(lines))
        if probs:
            print("  MISMATCHES:\n    " + "\n    ".join(probs))
        self.assertEqual(probs, [], f"{name}: {len(probs)} mismatches")
    return test


for _n, _spec in CASES.items():
    setattr(GradParity, f"test_{_n}", _make(_n, _spec))
for _n, (_spec, _rows_fn, _params_fn) in MOE_CASES.items():
    setattr(GradParity, f"test_{_n}", _make_moe(_n, _spec, _rows_fn, _params_fn))


if __name__ == "__main__":
    unittest.main(verbosity=2)
