#include "mot/model/routing.hpp"

#include <algorithm>
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
  for (auto* v : {&perm, &key_slot, &inv, &input, &target, &target_mod, &pos}) v->reserve(n);
  row_len.reserve(rows);
  key_len.reserve(rows);
  pool_rows.reserve(n);
  pools.reserve(rows * c.n_modalities());
  moe.reserve(c.n_modalities());
  mod_begin.reserve(c.n_modalities() + 1);
  targets_by_mod.reserve(c.n_modalities());
  for (auto& g : groups) g.reserve(c.n_modalities());
}

namespace {

// A batch built by hand (tests, generation) gets the same checks as one from shards.
void check_batch(const ModelConfig& c, const Batch& batch, int64_t key_capacity, int64_t positions) {
  const int M = c.n_modalities();
  if (batch.vector_dim < 0 || static_cast<int64_t>(batch.vector.size()) != batch.rows * batch.len * batch.vector_dim)
    fail("batch: ", batch.vector.size(), " continuous values for ", batch.rows, " x ", batch.len, " positions of ",
         batch.vector_dim);
  if (!batch.past.empty() && static_cast<int64_t>(batch.past.size()) != batch.rows)
    fail("batch: ", batch.past.size(), " cached-key counts for ", batch.rows, " rows");
  for (int64_t b = 0; b < batch.rows; ++b) {
    const int64_t n = batch.row_len[b], past = batch.past_of(b), keys = past + n;
    if (n < 0 || n > batch.len) fail("batch row ", b, ": length ", n, " is outside [0, ", batch.len, "]");
    if (past < 0 || (past > 0 && key_capacity == 0))
      fail("batch row ", b, ": ", past, " cached keys, but the model has no KV cache attached");
    if (key_capacity > 0 && keys > key_capacity)
      fail("batch row ", b, ": ", keys, " keys exceed the KV cache's ", key_capacity, " per row");
    for (int64_t t = 0; t < n; ++t) {
      const int64_t i = batch.at(b, t);
      if (batch.modality[i] < 0 || batch.modality[i] >= M)
        fail("batch row ", b, ", position ", t, ": modality ", batch.modality[i], " is not one of the ", M,
             " modalities");
      if (const Modality& mod = c.modalities[batch.modality[i]]; mod.continuous) {
        if (batch.vector_dim != mod.latent_dim() || batch.diffusion_t.size() != batch.vector.size() / std::max<int64_t>(batch.vector_dim, 1))
          fail("batch row ", b, ", position ", t, ": a ", mod.name, " position needs ", mod.latent_dim(),
               " continuous values and a diffusion step (the batch has ", batch.vector_dim, ")");
        if (batch.diffusion_t[i] < 0 || batch.diffusion_t[i] >= c.diffusion_steps)
          fail("batch row ", b, ", position ", t, ": diffusion step ", batch.diffusion_t[i], " is outside [0, ",
               c.diffusion_steps - 1, "]");
      }
      if (batch.token[i] < 0 || batch.token[i] >= c.vocab_size)
        fail("token id ", batch.token[i], " (row ", b, ", position ", t, ") is outside the vocabulary [0, ",
             c.vocab_size, ")");
      if (batch.target[i] >= c.vocab_size || (batch.target[i] >= 0) != (batch.target_modality[i] >= 0) ||
          batch.target_modality[i] >= M)
        fail("batch row ", b, ", position ", t, ": target ", batch.target[i], " of modality ",
             batch.target_modality[i], " is invalid");
      if (batch.pos[i] < 0 || batch.pos[i] >= positions)
        fail("batch row ", b, ", position ", t, ": rotary position ", batch.pos[i], " is outside [0, ", positions,
             ")");
      if (batch.kv_lo[i] < 0 || batch.kv_lo[i] > batch.kv_hi[i] || batch.kv_hi[i] > keys)
        fail("batch row ", b, ", position ", t, ": key range [", batch.kv_lo[i], ", ", batch.kv_hi[i],
             ") is outside the row's ", keys, " keys");
    }
  }
}

}  // namespace

void build_routing(const ModelConfig& c, const Batch& batch, Routing& r, int64_t key_capacity, int64_t positions) {
  check_batch(c, batch, key_capacity, positions);
  const int M = c.n_modalities();
  r.B = batch.rows;
  r.T = batch.len;
  r.Tk = key_capacity > 0 ? key_capacity : batch.len;
  r.row_len.assign(batch.row_len.begin(), batch.row_len.end());
  r.key_len.resize(r.B);
  for (int64_t b = 0; b < r.B; ++b) r.key_len[b] = batch.past_of(b) + batch.row_len[b];
  r.inv.assign(r.B * r.T, -1);
  r.mod_begin.assign(M + 1, 0);
  r.targets_by_mod.assign(M, 0);
  r.n_targets = 0;
  r.keys = {r.row_len.data(), r.key_len.data(), batch.kv_lo.data(), batch.kv_hi.data()};

  // Pass 1: positions per modality.
  std::vector<int64_t>& count = r.mod_begin;  // reused as counts first (size M + 1)
  for (int64_t b = 0; b < r.B; ++b)
    for (int64_t t = 0; t < r.row_len[b]; ++t) count[batch.modality[batch.at(b, t)] + 1]++;
  for (int m = 0; m < M; ++m) count[m + 1] += count[m];  // exclusive prefix sums = offsets
  r.N = r.mod_begin[M];
  r.perm.resize(r.N);
  r.key_slot.resize(r.N);
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
    for (int64_t t = 0; t < r.row_len[b]; ++t) {
      const int64_t i = batch.at(b, t);
      const int64_t s = cur[batch.modality[i]]++;
      r.perm[s] = static_cast<int32_t>(b * r.T + t);
      r.key_slot[s] = static_cast<int32_t>(b * r.Tk + batch.past_of(b) + t);
      r.inv[b * r.T + t] = static_cast<int32_t>(s);
      r.input[s] = batch.token[i];
      r.target[s] = batch.target[i];
      r.pos[s] = batch.pos[i];
      const int tm = batch.target_modality[i];
      r.target_mod[s] = tm;
      if (tm >= 0) { r.n_targets++; r.targets_by_mod[tm]++; }
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
  r.tables = {r.perm.data(), r.key_slot.data(), r.input.data(), r.target.data(), r.pos.data(),
              r.pool_rows.data(), r.pools.data(), r.keys};
}

}  // namespace mot
