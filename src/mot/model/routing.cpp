#include "mot/model/routing.hpp"

#include <cstdlib>
#include <cstring>

#include "mot/core/error.hpp"

namespace mot {

namespace {
// Test hook: MOT_DEBUG_SWAP_MODALITIES=1 routes modality 0 through modality 1's
// weights and vice versa. The parity tests set it to prove they catch such a bug.
bool debug_swap() {
  static const bool on = [] {
    const char* v = std::getenv("MOT_DEBUG_SWAP_MODALITIES");
    return v && std::strcmp(v, "1") == 0;
  }();
  return on;
}

// One pool per batch row and MoE ffn group: the row's positions whose sorted index lies
// in the group, listed in position order (the order expert choice breaks ties in).
void build_pools(const ModelConfig& c, Routing& r) {
  r.moe.clear();
  r.pools.clear();
  r.pool_rows.resize(r.N);
  if (!c.has_moe()) return;
  const int64_t E = c.n_experts;
  for (const RowGroup& g : r.groups[static_cast<int>(Component::Ffn)]) {
    if (!c.ffn_is_moe(g.copy)) continue;
    MoeGroup mg;
    mg.begin = g.begin;
    mg.end = g.end;
    mg.copy = g.copy;
    mg.pool0 = static_cast<int64_t>(r.pools.size());
    int64_t fill = g.begin;
    for (int64_t b = 0; b < r.B; ++b) {
      MoePool p;
      p.begin = fill;
      p.pick0 = mg.k;
      for (int64_t t = 0; t < r.row_len[b]; ++t) {
        const int32_t s = r.inv[b * r.T + t];
        if (s >= g.begin && s < g.end) r.pool_rows[fill++] = s;
      }
      p.size = fill - p.begin;
      if (p.size == 0) continue;
      mg.k += p.size / E;  // capacity 1: k = floor(1 * n / E)
      r.pools.push_back(p);
    }
    mg.pool1 = static_cast<int64_t>(r.pools.size());
    r.moe.push_back(mg);
  }
}

}  // namespace

void Routing::reserve(const ModelConfig& c, int64_t rows, int64_t len) {
  const size_t n = static_cast<size_t>(rows * len);
  for (auto* v : {&perm, &inv, &input, &target, &target_mod, &pos, &kv_lo, &kv_hi}) v->reserve(n);
  row_len.reserve(rows);
  pool_rows.reserve(n);
  pools.reserve(rows * c.n_modalities());
  moe.reserve(c.n_modalities());
  mod_begin.reserve(c.n_modalities() + 1);
  targets_by_mod.reserve(c.n_modalities());
  for (auto& g : groups) g.reserve(c.n_modalities());
}

void build_routing(const ModelConfig& c, const TokenBatch& batch, Routing& r) {
  const int M = c.n_modalities();
  r.B = batch.rows;
  r.T = batch.len > 0 ? batch.len - 1 : 0;
  r.row_len.assign(r.B, 0);
  r.inv.assign(r.B * r.T, -1);
  r.kv_lo.assign(r.B * r.T, 0);
  r.kv_hi.assign(r.B * r.T, 0);
  r.mod_begin.assign(M + 1, 0);
  r.targets_by_mod.assign(M, 0);
  r.n_targets = 0;

  // Pass 1: validate, count valid tokens per row and positions per modality.
  std::vector<int64_t>& count = r.mod_begin;  // reused as counts first (size M + 1)
  for (int64_t b = 0; b < r.B; ++b) {
    int64_t valid = 0;
    while (valid < batch.len && batch.at(b, valid) != -1) {
      const int32_t tok = batch.at(b, valid);
      if (tok < 0 || tok >= c.vocab_size)
        fail("token id ", tok, " (row ", b, ", position ", valid, ") is outside the vocabulary [0, ",
             c.vocab_size, ")");
      ++valid;
    }
    for (int64_t t = valid; t < batch.len; ++t)
      if (batch.at(b, t) != -1)
        fail("row ", b, ": padding (-1) at position ", valid, " is followed by token ", batch.at(b, t),
             " (-1 may only pad the end of a row)");
    r.row_len[b] = static_cast<int32_t>(valid > 0 ? valid - 1 : 0);
    for (int64_t t = 0; t < r.row_len[b]; ++t) count[c.modality_of_token(batch.at(b, t)) + 1]++;
  }
  for (int m = 0; m < M; ++m) count[m + 1] += count[m];  // exclusive prefix sums = offsets
  r.N = r.mod_begin[M];
  r.perm.resize(r.N);
  r.input.resize(r.N);
  r.target.resize(r.N);
  r.target_mod.resize(r.N);
  r.pos.resize(r.N);

  // Pass 2: stable counting sort of positions by modality (row-major order kept).
  int64_t cursor[64];
  std::vector<int64_t> cursor_big;
  int64_t* cur = cursor;
  if (M > 64) { cursor_big.resize(M); cur = cursor_big.data(); }
  for (int m = 0; m < M; ++m) cur[m] = r.mod_begin[m];
  const bool swap = debug_swap() && M >= 2;
  for (int64_t b = 0; b < r.B; ++b) {
    int32_t start = 0;
    for (int64_t t = 0; t < r.row_len[b]; ++t) {
      const int32_t tok = batch.at(b, t);
      const int m = c.modality_of_token(tok);
      const int64_t s = cur[m]++;
      const int32_t tgt = batch.at(b, t + 1);
      r.perm[s] = static_cast<int32_t>(b * r.T + t);
      r.inv[b * r.T + t] = static_cast<int32_t>(s);
      r.input[s] = tok;
      r.target[s] = tgt;
      r.pos[s] = static_cast<int32_t>(t);
      const int tm = tgt >= 0 ? c.modality_of_token(tgt) : -1;
      r.target_mod[s] = tm;
      if (tm >= 0) { r.n_targets++; r.targets_by_mod[tm]++; }
      if (c.doc_mask && tok == c.bos_id) start = static_cast<int32_t>(t);
      r.kv_lo[b * r.T + t] = c.doc_mask ? start : 0;
      r.kv_hi[b * r.T + t] = static_cast<int32_t>(t + 1);
    }
  }

  // Contiguous row groups per component (tied components: one group for all rows).
  for (int comp = 0; comp < kComponents; ++comp) {
    auto& g = r.groups[comp];
    g.clear();
    for (int m0 = 0; m0 < M; ++m0) {
      const int m = swap && m0 < 2 ? 1 - m0 : m0;  // the deliberate bug of the test hook
      const int copy = c.copy_of(static_cast<Component>(comp), m);
      const int64_t b0 = r.mod_begin[m0], e0 = r.mod_begin[m0 + 1];
      if (b0 == e0) continue;
      if (!g.empty() && g.back().copy == copy && g.back().end == b0) g.back().end = e0;
      else g.push_back({b0, e0, copy});
    }
  }
  build_pools(c, r);
}

}  // namespace mot
