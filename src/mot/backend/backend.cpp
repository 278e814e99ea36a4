// What every backend shares: the factory, and host-memory copies as the default for
// upload/download (a device backend overrides them).
#include "mot/backend/backend.hpp"

#include <cstring>

#include "mot/backend/cpu/cpu_backend.hpp"

namespace mot {

// Host memory: a copy is a copy.
void Backend::upload(const void* host, void* dst, size_t bytes) {
  if (bytes) std::memcpy(dst, host, bytes);
}
void Backend::download(const void* src, void* host, size_t bytes) {
  if (bytes) std::memcpy(host, src, bytes);
}

std::unique_ptr<Backend> make_backend(Device device, Precision precision) {
  switch (device) {
    case Device::cpu: return std::make_unique<cpu::CpuBackend>(precision);
  }
  return nullptr;
}

}  // namespace mot

