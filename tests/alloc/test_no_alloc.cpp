// A steady-state training step (data batch fill, forward, loss, backward, clipping,
// AdamW) must make no heap allocation of 64 KiB or more: all large buffers come from
// the model's arena. This binary interposes malloc & co. to count large requests.
// Checked for MoT, the MoE-4x baseline and the MoT+MoE hybrid.
#include <dlfcn.h>
#include <malloc.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>

#include "mot/data/format/token_batch.hpp"
#include "mot/model/model.hpp"
#include "mot/train/optimizer.hpp"

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
}

namespace {
std::atomic<bool> counting{false};
std::atomic<long> large{0}, small{0};
constexpr size_t kLarge = 64 * 1024;
void* callers[8];
size_t sizes[8];
std::atomic<int> n_callers{0};
void note(size_t n, void* caller) {
  if (!counting.load(std::memory_order_relaxed)) return;
  (n >= kLarge ? large : small).fetch_add(1, std::memory_order_relaxed);
  if (n >= kLarge) {
    const int i = n_callers.fetch_add(1);
    if (i < 8) { callers[i] = caller; sizes[i] = n; }
  }
}
}  // namespace

extern "C" {
void* malloc(size_t n) { note(n, __builtin_return_address(0)); return __libc_malloc(n); }
void* calloc(size_t a, size_t b) { note(a * b, __builtin_return_address(0)); return __libc_calloc(a, b); }
void* realloc(void* p, size_t n) { note(n, __builtin_return_address(0)); return __libc_realloc(p, n); }
void* memalign(size_t al, size_t n) { note(n, __builtin_return_address(0)); return __libc_memalign(al, n); }
void* aligned_alloc(size_t al, size_t n) { note(n, __builtin_return_address(0)); return __libc_memalign(al, n); }
int posix_memalign(void** out, size_t al, size_t n) {
  note(n, __builtin_return_address(0));
  *out = __libc_memalign(al, n);
  return *out ? 0 : 12;
}
}

// One config's steady state: returns the number of failing (measured) steps.
int check(const mot::ModelConfig& c) {
  using namespace mot;
  const int64_t rows = 4, len = 257;
  Model m(c, rows, len, true);
  init_params(c, m.table(), m.params(), 1);
  TrainConfig tc;
  tc.steps = 10;
  tc.warmup_steps = 2;
  TokenBatch b;
  b.rows = rows;
  b.len = len;
  b.tokens.resize(rows * len);
  uint64_t x = 1;
  auto refill = [&](int step) {
    for (int64_t i = 0; i < rows * len; ++i) {
      x = x * 6364136223846793005ull + 1442695040888963407ull + step;
      const int64_t t = i % len;
      const bool image = (t / 32) % 2 == 1;
      b.tokens[i] = static_cast<int32_t>((x >> 33) % 256 + (image ? 256 : 0));
      if (t == 100) b.tokens[i] = 0;  // a document boundary
      if (i / len == 3 && t >= 200 + step) b.tokens[i] = -1;  // a padded row of varying length
    }
  };
  LossSums s;
  int failures = 0;
  large = 0;
  small = 0;
  n_callers = 0;
  std::printf("arch %s%s\n", c.arch.c_str(), c.moe_modalities.empty() ? "" : " + moe_modalities");
  for (int step = 0; step < 6; ++step) {
    const bool measure = step >= 3;  // the first steps may size thread-local scratch
    refill(step);
    counting = measure;
    std::memset(m.grads(), 0, sizeof(float) * m.table().total);
    s.reset(c.n_modalities());
    m.run(b, true, 1.0f / (rows * (len - 1)), s);
    clip_gradients(m, 1.0);
    adamw_step(m, tc, lr_at(tc, step), step + 1);
    counting = false;
    std::printf("step %d loss %.4f | large allocations %ld, small %ld\n", step, s.loss / s.targets, large.load(),
                small.load());
    if (measure && large.load() > 0) failures++;
  }
  for (int i = 0; i < std::min(8, n_callers.load()); ++i) {
    Dl_info info;
    if (dladdr(callers[i], &info))
      std::printf("  large allocation of %zu bytes from %s (%s)\n", sizes[i], info.dli_sname ? info.dli_sname : "?", info.dli_fname);
  }
  if (failures) std::printf("FAIL: steady-state steps made %ld heap allocations of >= 64 KiB\n", large.load());
  return failures;
}

int main() {
  using namespace mot;
  ModelConfig c;
  c.arch = "mot";
  c.dim = 64; c.n_layers = 2; c.n_heads = 4; c.ffn_hidden = 192; c.vocab_size = 512; c.max_seq_len = 512;
  c.qk_norm = true; c.doc_mask = true; c.bos_id = 0;
  c.untie[0] = c.untie[1] = c.untie[2] = true;
  c.modalities = {{"text", 0, 256}, {"image", 256, 512}};
  c.validate("test");
  int failed = check(c) ? 1 : 0;
  ModelConfig moe = c;  // MoE-4x baseline: expert choice per row
  moe.arch = "moe";
  moe.untie[0] = moe.untie[1] = moe.untie[2] = false;
  moe.validate("test");
  failed += check(moe) ? 1 : 0;
  ModelConfig hybrid = c;  // MoT + MoE on text
  hybrid.moe_modalities = {"text"};
  hybrid.validate("test");
  failed += check(hybrid) ? 1 : 0;
  std::printf("%d passed, %d failed\n", 3 - failed, failed);
  return failed ? 1 : 0;
}
