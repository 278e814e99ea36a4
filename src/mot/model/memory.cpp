#include "mot/model/memory.hpp"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>

#include "mot/backend/backend.hpp"
#include "mot/core/error.hpp"
#include "mot/data/format/token_batch.hpp"  // sizeof(TokenBatch): the micro-batches
#include "mot/model/routing.hpp"

namespace mot {

namespace {

// The arena's carve-up (Arena::alloc_bytes: every buffer starts 64-byte aligned),
// tallied per kind. Mirrors Model::carve; tests/unit/test_memory.cpp checks that the
// two agree byte for byte.
struct Sizer {
  static constexpr int64_t kAlign = 64;
  Checked aligned;   // sum of sizes rounded up to kAlign
  Checked last_pad;  // padding of the last buffer (the arena does not pad after it)
  Checked weights, optimizer, activations;

  void add(Checked& kind, Checked n, int64_t elem, Checked times = 1) {
    const Checked bytes = n * Checked(elem);
    const Checked padded = bytes.round_up(kAlign);
    aligned += padded * times;
    kind += padded * times;
    if (times.value() > 0) last_pad = padded + Checked(-bytes.value());
  }
  Checked used() const { return aligned + Checked(-last_pad.value()); }
};

std::string describe(const ModelConfig& c) {
  return cat("model of ", c.n_layers, c.n_layers == 1 ? " layer" : " layers", ", dim ", c.dim, ", ffn_hidden ",
             c.ffn_hidden, ", vocab_size ", c.vocab_size);
}

[[noreturn]] void overflow(const ModelConfig& c, const char* what) {
  fail(describe(c), ": ", what,
       " overflows 64-bit integers; no machine holds that (check n_layers, dim, ffn_hidden, vocab_size, "
       "n_experts and the batch size and sequence length)");
}

[[noreturn]] void refuse(const ModelConfig& c, const MemoryNeed& n, int64_t rows, int64_t len, bool training,
                         int64_t accum, int64_t ram) {
  std::string parts;
  auto part = [&](int64_t bytes, const std::string& what) {
    if (bytes <= 0) return;
    parts += cat(parts.empty() ? "" : ", ", format_bytes(bytes), " for ", what);
  };
  part(n.weights + n.optimizer,
       training ? "parameters, gradients and AdamW moments" : "parameters");
  part(n.activations, cat("activations of ", rows, rows == 1 ? " row x " : " rows x ", len,
                          len == 1 ? " position" : " positions"));
  part(n.batches, cat(accum, " micro-batches (grad_accum)"));
  part(n.other, "the tensor table, routing and token buffers");
  // Point at what dominates.
  const int64_t model_part = n.weights + n.optimizer + (n.other > n.activations ? n.other : 0);
  const char* hint = "use fewer layers or a smaller dim, ffn_hidden or vocab_size";
  if (n.batches > model_part && n.batches > n.activations) hint = "use a smaller grad_accum or batch_size";
  else if (n.activations > model_part) hint = "use a smaller batch size or sequence length";
  fail(describe(c), " (", format_count(static_cast<double>(n.params), 1), " parameters) needs ", format_bytes(n.total()),
       training ? " to train: " : " to run: ", parts, "; this machine has ", format_bytes(ram), " of RAM (", hint,
       ")");
}

void check_sequence(const ModelConfig& c, int64_t rows, int64_t len) {
  if (len < 2) fail("sequence length must be at least 2 tokens (got ", len, ")");
  if (len - 1 > c.max_seq_len)
    fail("sequence of ", len - 1, " positions exceeds the model's max_seq_len ", c.max_seq_len);
  if (rows < 1) fail("a batch needs at least one row (got ", rows, ")");
  // Routing indexes positions with int32.
  const Checked positions = Checked(rows) * Checked(len);
  if (!positions.ok() || positions.value() > INT32_MAX)
    fail("a batch of ", rows, " rows x ", len, " tokens has more than 2^31 - 1 positions; use fewer rows per batch");
}

}  // namespace

MemoryNeed model_memory(const ModelConfig& c, int64_t rows, int64_t len, bool training, Precision precision) {
  const Checked P = param_count(c);
  if (!P.ok()) overflow(c, "its parameter count");
  const Checked N = Checked(rows) * Checked(len - 1), d = c.dim, F = c.ffn_hidden, H = c.n_heads, L = c.n_layers,
                V = c.vocab_size, E = c.n_experts, hd = c.head_dim();
  const Checked BHT = Checked(rows) * H * Checked(len - 1);
  const Checked chunk = std::clamp<int64_t>((int64_t{2} << 20) / c.vocab_size, 16, 1024);
  const bool post = c.post_norm(), moe = c.has_moe();
  Sizer s;
  // Same order as Model::carve.
  s.add(s.weights, P, 4);
  if (precision == Precision::bf16) {
    s.add(s.weights, P, 4);
    const Checked widest = Checked::max(Checked::max(Checked::max(Checked(2) * F, Checked(3) * d), E), Checked(c.latent_dim()));
    const Checked scratch = Checked::max(N * widest, chunk * V);
    s.add(s.activations, scratch, 4, 2);
    if (!training) s.add(s.weights, P, 2);
  }
  if (training) s.add(s.optimizer, P, 4, 3);
  // One layer's activations (LayerActs), as a block of aligned buffers.
  Sizer layer;
  Checked& a = layer.activations;
  layer.add(a, N, 4, 2);  // rstd1, rstd2
  layer.add(a, N * Checked(3) * d, 4);
  if (c.qk_norm) layer.add(a, N * Checked(2) * H, 4);
  layer.add(a, BHT * hd, 4, 4);  // Q, K, V, O
  layer.add(a, BHT, 4);
  layer.add(a, N * d, 4);  // cat
  if (post) layer.add(a, N * d, 4);
  layer.add(a, N * d, 4);  // h
  layer.add(a, N * Checked(2) * F, 4);
  if (post) layer.add(a, N * d, 4);
  if (moe) {
    layer.add(a, N * E, 4);
    layer.add(a, N, 4);
    layer.add(a, N * E, 4);
  }
  const Checked layers = training ? L : Checked(1);  // inference: layers share one set
  s.aligned += layer.aligned * layers;
  s.activations += layer.aligned * layers;
  s.add(s.activations, N * d, 4, training ? L + Checked(1) : Checked(2));  // residual stream
  s.add(s.activations, N * d, 4, 2);  // xn, tmp
  s.add(s.activations, N * F, 4);
  s.add(s.activations, N * d, 4);
  s.add(s.activations, N, 4);
  s.add(s.activations, chunk * V, 4);
  s.add(s.activations, N, 8);
  s.add(s.activations, Checked(kReduceChunks) * Checked(std::max<int64_t>(c.dim, 2 * c.head_dim())), 4);
  s.add(s.activations, Checked(len) * Checked(c.head_dim() / 2), 4, 2);
  if (moe) {
    s.add(s.activations, N * d, 4, 2);
    s.add(s.activations, E * N, 4);
    if (training) s.add(s.activations, N * E, 4);
  }
  if (training) {
    s.add(s.activations, N * d, 4, 3);
    s.add(s.activations, N * Checked(3) * d, 4);
    s.add(s.activations, N * Checked(2) * F, 4);
    s.add(s.activations, N * F, 4);
    s.add(s.activations, BHT * hd, 4, 4);
  }
  if (c.has_continuous()) {  // ContinuousBuffers (model/io.hpp)
    const Checked D = c.latent_dim();
    s.add(s.activations, N * D, 4, 3);
    s.add(s.activations, N * d, 4, training ? 5 : 4);
    s.add(s.activations, N, 4);
    s.add(s.activations, N + Checked(1), 4);
  }
  const Checked arena = s.used();
  // Outside the arena (estimates): per tensor its ParamEntry (name, shape) with vector
  // growth slack; per layer its offset lists and activation pointers; routing keeps
  // eight int32 arrays per position; the caller holds at least one input batch.
  const Checked tensors = tensor_count(c);
  const Checked positions = Checked(rows) * Checked(len);
  const Checked other = tensors * Checked(256) + L * Checked(768) + positions * Checked(8 * 4 + 4) +
                        Checked(rows) * Checked(c.n_modalities()) * Checked(sizeof(MoePool));
  const Checked total = arena + other;
  if (!total.ok() || !s.weights.ok() || !s.optimizer.ok() || !s.activations.ok())
    overflow(c, cat("its memory need at ", rows, " rows x ", len, " tokens").c_str());
  MemoryNeed n;
  n.params = P.value();
  n.weights = s.weights.value();
  n.optimizer = s.optimizer.value();
  n.activations = s.activations.value();
  n.arena = arena.value();
  n.other = other.value();
  return n;
}

void ensure_model_fits(const ModelConfig& c, int64_t rows, int64_t len, bool training, Precision precision) {
  check_sequence(c, rows, len);
  const MemoryNeed n = model_memory(c, rows, len, training, precision);
  const int64_t ram = physical_memory_bytes();
  if (ram > 0 && n.total() > ram) refuse(c, n, rows, len - 1, training, 0, ram);
}

MemoryNeed training_memory(const RunConfig& rc, int64_t row_len) {
  const TrainConfig& t = rc.train;
  check_sequence(rc.model, t.batch_size, row_len);
  MemoryNeed n = model_memory(rc.model, t.batch_size, row_len, true, parse_precision(t.dtype, "train.dtype"));
  const Checked batches = Checked(t.grad_accum) * (Checked(sizeof(TokenBatch)) +
                                                   Checked(t.batch_size) * Checked(row_len) * Checked(4));
  if (!batches.ok() || !(Checked(n.total()) + batches).ok())
    overflow(rc.model, cat("the token buffers of ", t.grad_accum, " micro-batches of ", t.batch_size, " rows x ",
                           row_len, " tokens").c_str());
  n.batches = batches.value();
  return n;
}

void ensure_training_fits(const RunConfig& rc, int64_t row_len) {
  const MemoryNeed n = training_memory(rc, row_len);
  const int64_t ram = physical_memory_bytes();
  if (ram > 0 && n.total() > ram) refuse(rc.model, n, rc.train.batch_size, row_len - 1, true, rc.train.grad_accum, ram);
}

int64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return 0;
  const Checked b = Checked(pages) * Checked(page);
  return b.ok() ? b.value() : INT64_MAX;
}

}  // namespace mot
