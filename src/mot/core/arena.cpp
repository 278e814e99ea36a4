#include "mot/core/arena.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "mot/core/error.hpp"

namespace mot {

namespace {
constexpr size_t kAlign = 64;       // cache line / AVX-512 vector
constexpr size_t kHuge = 2u << 20;  // transparent huge page size
}  // namespace

Arena& Arena::operator=(Arena&& o) noexcept {
  if (this != &o) {
    free_memory();
    base_ = o.base_;
    capacity_ = o.capacity_;
    used_ = o.used_;
    release_ = o.release_;
    o.base_ = nullptr;
    o.release_ = nullptr;
    o.capacity_ = o.used_ = 0;
  }
  return *this;
}

Arena::~Arena() { free_memory(); }

void Arena::free_memory() {
  if (base_) release_ ? release_(base_, capacity_) : static_cast<void>(munmap(base_, capacity_));
  base_ = nullptr;
  release_ = nullptr;
}

void Arena::adopt(void* base, size_t bytes, Release release) {
  free_memory();
  base_ = static_cast<uint8_t*>(base);
  capacity_ = bytes;
  release_ = release;
  used_ = 0;
}

void Arena::map(size_t bytes) {
  free_memory();
  capacity_ = (bytes + kHuge - 1) / kHuge * kHuge;
  if (capacity_ == 0) capacity_ = kHuge;
  void* p = mmap(nullptr, capacity_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    base_ = nullptr;
    fail("cannot allocate ", capacity_ >> 20, " MiB for the model arena: ", std::strerror(errno));
  }
  base_ = static_cast<uint8_t*>(p);
  madvise(base_, capacity_, MADV_HUGEPAGE);
  // Pre-fault now so that no step pays for first touches.
  std::memset(base_, 0, capacity_);
  used_ = 0;
}

void* Arena::alloc_bytes(size_t bytes) {
  size_t off = (used_ + kAlign - 1) / kAlign * kAlign;
  used_ = off + bytes;
  if (!base_) return nullptr;
  if (used_ > capacity_) fail("internal: arena overflow (", used_, " > ", capacity_, " bytes)");
  return base_ + off;
}

}  // namespace mot
