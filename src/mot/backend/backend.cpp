// What every backend shares: the factory, and host-memory copies as the default for
// upload/download (a device backend overrides them).
#include "mot/backend/backend.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "mot/backend/cpu/cpu_backend.hpp"
#include "mot/backend/cpu/guarded_backend.hpp"
#include "mot/core/error.hpp"
#ifdef MOT_CUDA
#include "mot/backend/cuda/cuda_backend.hpp"
#endif

namespace mot {

// Host memory: a copy is a copy.
void Backend::upload(const void* host, void* dst, size_t bytes) {
  if (bytes) std::memcpy(dst, host, bytes);
}
void Backend::download(const void* src, void* host, size_t bytes) {
  if (bytes) std::memcpy(host, src, bytes);
}

void Backend::rope_table(int64_t positions, int64_t hd, double theta, float* cos, float* sin) {
  const int64_t half = hd / 2;
  std::vector<float> c(static_cast<size_t>(positions * half)), s(c.size());
  for (int64_t t = 0; t < positions; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double freq = std::pow(theta, -2.0 * static_cast<double>(i) / hd);
      c[t * half + i] = static_cast<float>(std::cos(t * freq));
      s[t * half + i] = static_cast<float>(std::sin(t * freq));
    }
  upload(c.data(), cos, sizeof(float) * c.size());
  upload(s.data(), sin, sizeof(float) * s.size());
}

void Backend::zero(float* x, int64_t n) {
  if (n > 0) std::memset(x, 0, sizeof(float) * static_cast<size_t>(n));
}

std::string device_description(Device d) {
#ifdef MOT_CUDA
  if (d == Device::cuda) return cuda::device_summary();
#endif
  return device_name(d);
}

Device parse_device(const std::string& s, const std::string& where) {
  if (s == "cpu") return Device::cpu;
  if (s == "cuda") return Device::cuda;
  fail(where, ": unknown device '", s, "' (cpu or cuda)");
}

const char* device_name(Device d) { return d == Device::cuda ? "cuda" : "cpu"; }

std::unique_ptr<Backend> make_backend(Device device, Precision precision) {
  switch (device) {
    case Device::cpu: {
      // Test hook (guarded_backend.hpp): the CPU's kernels under a device's rules.
      const char* guard = std::getenv("MOT_GUARD_DEVICE_MEMORY");
      if (guard && std::strcmp(guard, "1") == 0) return cpu::make_guarded_backend(precision);
      return std::make_unique<cpu::CpuBackend>(precision);
    }
    case Device::cuda:
#ifdef MOT_CUDA
      return cuda::make_cuda_backend(precision);
#else
      fail("--device cuda: this mot was built without CUDA (configure with -DMOT_CUDA=ON on a machine with the "
           "CUDA toolkit; see README, GPU)");
#endif
  }
  return nullptr;
}

}  // namespace mot

