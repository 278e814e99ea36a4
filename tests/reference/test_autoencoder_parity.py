#!/usr/bin/python3
"""The image autoencoder (src/mot/data/autoencoder/) against the same net in float64
PyTorch: its hand-written backward is checked here, not by finite differences (the
engine computes in float32).

AutoencoderReference (no engine needed): the torch net's own autograd against central
finite differences on a few entries of every tensor, so the reference itself is sound.

AutoencoderParity (needs tests/tools/mot_ae_check; set MOT_AE_CHECK, default
build/tests/mot_ae_check; skipped with a message when the default is missing, FAILS
when MOT_AE_CHECK names a missing file): per case, random weights (written as a
mot-autoencoder file, so load() is exercised on a file it did not write), n = 3 random
images in [-1, 1] (8, 12 and 24 px, the last in the default shape) and latent noise
xi ~ N(0, 1), run through loss_and_grad, encode and decode. Checks: the loss (rel 1e-5), the latents and the reconstruction (and encode()'s
latents, decode()'s images) within 1e-4 of the tensor's max |.|, and EVERY gradient
(max|g_eng - g_ref| <= 1e-4 max|g_ref| per tensor).
"""
import os
import subprocess
import sys
import unittest

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import mot_ref as R  # noqa: E402

D64 = torch.float64
DEFAULT_TOOL = os.path.join(H.MOT_ROOT, "build", "tests", "mot_ae_check")
AE_CHECK = os.environ.get("MOT_AE_CHECK") or DEFAULT_TOOL
VALUE_TOL = 1e-4

# name: (image_size, latent_channels, width1, width2, latent_noise)
CASES = {
    "s8_c3": (8, 3, 4, 6, 0.1),
    "s12_c1": (12, 1, 5, 7, 0.1),
    "s12_c4_big_noise": (12, 4, 3, 8, 0.7),
    "s8_c2_no_noise": (8, 2, 6, 5, 0.0),
    "s24_default_shape": (24, 4, 16, 32, 0.1),  # big enough for the engine's parallel paths
}

# (name, stride, upsample before, activation), as in conv_autoencoder.hpp
ENCODER = [("encoder.conv1", 1, False, "silu"), ("encoder.conv2", 2, False, "silu"),
           ("encoder.conv3", 2, False, "silu"), ("encoder.conv4", 1, False, "tanh")]
DECODER = [("decoder.conv1", 1, False, "silu"), ("decoder.conv2", 1, False, "silu"),
           ("decoder.conv3", 1, True, "silu"), ("decoder.conv4", 1, True, "silu"),
           ("decoder.conv5", 1, False, None)]


def param_shapes(S, C, w1, w2):
    io = [(3, w1, 3), (w1, w2, 3), (w2, w2, 3), (w2, C, 1),
          (C, w2, 3), (w2, w2, 3), (w2, w1, 3), (w1, w1, 3), (w1, 3, 3)]
    out = {}
    for (name, *_), (cin, cout, k) in zip(ENCODER + DECODER, io):
        out[name + ".weight"] = (cout, cin, k, k)
        out[name + ".bias"] = (cout,)
    return out


def random_params(shapes, seed):
    """Weights N(0, 1.5 / sqrt(fan_in)), biases U(-0.3, 0.3), float32 values: large
    enough that no layer is near-linear or saturated everywhere."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        if name.endswith(".bias"):
            a = rng.uniform(-0.3, 0.3, size=shape)
        else:
            fan_in = shape[1] * shape[2] * shape[3]
            a = rng.normal(0.0, 1.5 / np.sqrt(fan_in), size=shape)
        out[name] = a.astype(np.float32)
    return out


def run_layers(p, h, layers):
    for name, stride, up, act in layers:
        if up:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        w = p[name + ".weight"]
        h = F.conv2d(h, w, p[name + ".bias"], stride=stride, padding=w.shape[-1] // 2)
        if act == "silu":
            h = F.silu(h)
        elif act == "tanh":
            h = torch.tanh(h)
    return h


def reference(params, images, noise, sigma):
    """images [n, S, S, 3], noise [n, G, G, C] (HWC, as the engine). Returns a dict of
    float64 tensors in the engine's layouts, gradients as grad.<name>."""
    p = {k: torch.tensor(v, dtype=D64, requires_grad=True) for k, v in params.items()}
    x = torch.tensor(images, dtype=D64).permute(0, 3, 1, 2)
    xi = torch.tensor(noise, dtype=D64).permute(0, 3, 1, 2)
    z = run_layers(p, x, ENCODER)
    y = run_layers(p, z + sigma * xi, DECODER)
    loss = ((y - x) ** 2).mean()
    loss.backward()
    out = {"loss": loss.detach(), "latents": z.detach().permute(0, 2, 3, 1),
           "reconstruction": y.detach().permute(0, 2, 3, 1)}
    for k, v in p.items():
        out["grad." + k] = v.grad.detach()
    return out


def ref_loss(params64, images, noise, sigma):
    x = torch.tensor(images, dtype=D64).permute(0, 3, 1, 2)
    xi = torch.tensor(noise, dtype=D64).permute(0, 3, 1, 2)
    y = run_layers(params64, run_layers(params64, x, ENCODER) + sigma * xi, DECODER)
    return float(((y - x) ** 2).mean())


def make_case(spec, seed):
    S, C, w1, w2, sigma = spec
    G = S // 4
    rng = np.random.default_rng(seed)
    params = random_params(param_shapes(S, C, w1, w2), seed)
    images = rng.uniform(-1.0, 1.0, size=(3, S, S, 3)).astype(np.float32)
    noise = rng.normal(0.0, 1.0, size=(3, G, G, C)).astype(np.float32)
    meta = {"format": "mot-autoencoder", "image_size": S, "latent_channels": C, "width1": w1, "width2": w2}
    return params, images, noise, sigma, meta


class AutoencoderReference(unittest.TestCase):
    def test_autograd_against_finite_differences(self):
        params, images, noise, sigma, _ = make_case(CASES["s8_c3"], 11)
        ref = reference(params, images, noise, sigma)
        rng = np.random.default_rng(5)
        h, worst, count = 1e-6, 0.0, 0
        for name, a in params.items():
            base = {k: torch.tensor(v, dtype=D64) for k, v in params.items()}
            g = ref["grad." + name].numpy()
            scale = float(np.abs(g).max())
            for _ in range(3):
                idx = tuple(int(rng.integers(0, s)) for s in a.shape)
                plus = {k: v.clone() for k, v in base.items()}
                minus = {k: v.clone() for k, v in base.items()}
                plus[name][idx] += h
                minus[name][idx] -= h
                fd = (ref_loss(plus, images, noise, sigma) - ref_loss(minus, images, noise, sigma)) / (2 * h)
                err = abs(fd - float(g[idx])) / max(scale, 1e-12)
                worst = max(worst, err)
                count += 1
                self.assertLess(err, 1e-5, f"{name}{list(idx)}: fd {fd!r} vs autograd {float(g[idx])!r}")
        print(f"  reference autograd vs central differences: {count} entries (every tensor), "
              f"worst |fd - autograd| / max|grad| = {worst:.2e}")


def run_engine(scratch, params, images, noise, sigma, meta):
    model, inputs, out = scratch.path("ae.safetensors"), scratch.path("in.safetensors"), scratch.path("out.safetensors")
    R.save_safetensors(model, params, meta)
    R.save_safetensors(inputs, {"images": images, "noise": noise}, {"latent_noise": repr(float(sigma))})
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    p = subprocess.run([AE_CHECK, model, inputs, out], capture_output=True, text=True, env=env, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"mot_ae_check exited {p.returncode}: {p.stderr.strip()}")
    return R.load_safetensors(out)


def compare_values(name, eng, ref, probs, lines):
    e, r = eng.double(), ref.double()
    if list(e.shape) != list(r.shape):
        probs.append(f"{name}: shape engine {list(e.shape)} vs ref {list(r.shape)}")
        return
    scale = float(r.abs().max())
    err = float((e - r).abs().max())
    ratio = err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))
    lines.append(f"  {name}: max|diff| = {err:.3e}, max|ref| = {scale:.3e}, ratio {ratio:.2e}")
    if not ratio <= VALUE_TOL:
        probs.append(f"{name}: max|eng-ref| = {err:.3e} > {VALUE_TOL} * max|ref| = {scale:.3e}")


def run_case(spec, seed):
    params, images, noise, sigma, meta = make_case(spec, seed)
    ref = reference(params, images, noise, sigma)
    s = H.Scratch("ae")
    try:
        eng, eng_meta = run_engine(s, params, images, noise, sigma, meta)
    finally:
        s.cleanup()
    probs, lines = [], []
    e, r = float(eng_meta["loss"]), float(ref["loss"])
    lines.append(f"  loss engine={e:.9g} ref={r:.9g} rel={H.rel(e, r):.2e}")
    if not H.rel(e, r) <= H.LOSS_RTOL:
        probs.append(f"loss: engine {e!r} vs ref {r!r} (rel {H.rel(e, r):.3e} > {H.LOSS_RTOL})")
    compare_values("latents", eng["latents"], ref["latents"], probs, lines)
    compare_values("reconstruction", eng["reconstruction"], ref["reconstruction"], probs, lines)
    compare_values("encode()", eng["encoded"], ref["latents"], probs, lines)
    compare_values("decode()", eng["decoded"], ref["reconstruction"], probs, lines)
    eg = {k[5:]: v for k, v in eng.items() if k.startswith("grad.")}
    rg = {k[5:]: v for k, v in ref.items() if k.startswith("grad.")}
    gp, gl = H.compare_grads(eg, rg, tol=H.GRAD_TOL, label="  ")
    return probs + gp, lines + gl


class AutoencoderParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not (os.path.isfile(AE_CHECK) and os.access(AE_CHECK, os.X_OK)):
            if os.environ.get("MOT_AE_CHECK"):
                raise AssertionError(f"MOT_AE_CHECK={AE_CHECK} is not an executable")
            raise unittest.SkipTest(f"{AE_CHECK} not built")


def _make(name, spec, seed):
    def test(self):
        S, C, w1, w2, sigma = spec
        print(f"\n[{name}] {S}x{S} -> {S // 4}x{S // 4}x{C}, widths {w1}/{w2}, latent noise {sigma}, 3 images")
        probs, lines = run_case(spec, seed)
        print("\n".join(lines))
        if probs:
            print("  MISMATCHES:\n    " + "\n    ".join(probs))
        self.assertEqual(probs, [], f"{name}: engine and reference differ")
    return test


for _i, (_n, _spec) in enumerate(CASES.items()):
    setattr(AutoencoderParity, f"test_{_n}", _make(_n, _spec, 100 + _i))


if __name__ == "__main__":
    unittest.main(verbosity=2)
