// One allocation for everything a model needs (parameters, gradients, optimizer
// moments, activations, workspaces). Buffers are carved in two passes: a measuring
// pass sums the sizes, then the arena maps that many bytes once (MADV_HUGEPAGE,
// pre-faulted, because a first touch costs ~10 us per 4 KiB page here) and a second
// pass hands out the same carve-up. Nothing is allocated or freed per step.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mot {

class Arena {
 public:
  Arena() = default;  // measuring mode: alloc() returns nullptr and only counts
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  Arena(Arena&& o) noexcept { *this = static_cast<Arena&&>(o); }
  Arena& operator=(Arena&& o) noexcept;
  ~Arena();

  // Maps `bytes` (rounded up to 2 MiB), zeroed and pre-faulted; ends measuring mode.
  void map(size_t bytes);
  // Uses memory someone else allocated (a device backend's), zeroed by them; `release`
  // frees it when the arena goes. Ends measuring mode.
  using Release = void (*)(void* base, size_t bytes);
  void adopt(void* base, size_t bytes, Release release);
  void reset_cursor() { used_ = 0; }

  template <class T>
  T* alloc(size_t n) { return static_cast<T*>(alloc_bytes(n * sizeof(T))); }
  void* alloc_bytes(size_t bytes);

  size_t used() const { return used_; }
  void* base() const { return base_; }
  size_t capacity() const { return capacity_; }
  bool measuring() const { return base_ == nullptr; }

 private:
  void free_memory();
  uint8_t* base_ = nullptr;
  size_t capacity_ = 0, used_ = 0;
  Release release_ = nullptr;  // nullptr: mapped by map(), unmapped by munmap
};

}  // namespace mot
