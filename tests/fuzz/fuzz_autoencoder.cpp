// libFuzzer target: the image autoencoder's loader (ConvAutoencoder::from_safetensors,
// what ConvAutoencoder::load runs on an opened file) must reject hostile bytes with
// mot::Error only — no crash, no out-of-bounds access (ASan), no UB (UBSan), no other
// exception — and whatever it accepts must encode and decode an image safely.
#include <omp.h>

#include <cstdint>
#include <vector>

#include "mot/core/error.hpp"
#include "mot/data/autoencoder/conv_autoencoder.hpp"
#include "mot/io/safetensors.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  omp_set_num_threads(1);  // one core per fuzzer job (the conv and GEMM loops are OpenMP)
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using mot::data::ConvAutoencoder;
  try {
    const auto f = mot::io::SafetensorsFile::parse({data, size}, "fuzz");
    const ConvAutoencoder ae = ConvAutoencoder::from_safetensors(f);
    const mot::data::AutoencoderShape& s = ae.shape();
    // The loader guarantees a valid shape and parameters that match it.
    const auto params = ae.params();
    size_t total = 0;
    for (const auto& p : params) total += p.values.size();
    if (total != ae.flat_params().size()) __builtin_trap();
    // The forward passes scale with the shape, not with the input: keep them small.
    if (s.image_size > 64 || s.width1 > 64 || s.width2 > 64) return 0;
    const size_t S = static_cast<size_t>(s.image_size);
    const std::vector<float> x(S * S * 3, 0.0f);
    std::vector<float> latents(static_cast<size_t>(s.latent_values()));
    ae.encode(x.data(), 1, latents.data());
    std::vector<float> back(x.size());
    ae.decode(latents.data(), 1, back.data());
    // Touch every output (ASan/MSan-style use); the values may be inf/NaN for huge
    // finite weights, which is not a loader bug.
    volatile float sink = 0;
    for (float v : latents) sink = sink + v;
    for (float v : back) sink = sink + v;
  } catch (const mot::Error&) {
  }
  return 0;
}
