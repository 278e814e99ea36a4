// libFuzzer target: SafetensorsFile::parse must reject hostile bytes with mot::Error
// only — no crash, no out-of-bounds read (ASan), no UB (UBSan), no other exception.
#include <cstdint>
#include <vector>

#include "mot/core/error.hpp"
#include "mot/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using mot::io::DType;
  try {
    auto f = mot::io::SafetensorsFile::parse({data, size}, "fuzz");
    // Whatever passes validation must be safe to use: touch every tensor's bytes.
    for (const auto& t : f.tensors()) {
      if (f.find(t.name) != &t || f.raw(t).size() != t.nbytes) __builtin_trap();
      if (t.dtype == DType::Other) continue;
      std::vector<float> buf(static_cast<size_t>(t.numel()));  // bounded by the input size
      f.read_f32(t, buf.data());
    }
  } catch (const mot::Error&) {
  }
  return 0;
}
