// Mixture-of-experts feed-forward with expert choice (Zhou et al. 2022; SPEC section 2),
// on one MoE row group (build_routing's MoeGroup):
//   prob = softmax over experts of x · Rᵀ                        (router R: [E, d])
//   in each pool (one batch row's positions in the group), expert e picks the
//   k = floor(n / E) positions with the highest prob[., e]; equal scores go to the
//   earlier position
//   out[s] = Σ over experts e that picked s of prob[s, e] · SwiGLU_e(x[s])   (0 if none)
//
// Each expert's picks are gathered into contiguous rows (expert after expert, k rows
// each, inside the group's own rows of every per-row buffer: E k <= group size), so an
// expert is one GEMM pair like a dense SwiGLU copy. `slot` maps (row, expert) back to
// the pick, so combining the experts' outputs is one pass over the group's rows that
// adds them in expert order (deterministic, no atomics).
//
// Backward: expert weights, d(x) through the experts, and d(prob) -> softmax -> router
// weights and d(x) through the router. No gradient flows through the choice itself
// (it is piecewise constant).
//
// Ties are broken by position only among bit-equal scores. Scores that are equal in
// exact arithmetic can differ in the last bit in fp32 (the GEMMs round equal rows at
// different positions differently), e.g. the first token of every document under
// doc_mask, which attends only to itself; then rounding decides between them.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "mot/backend/cpu/kernels.hpp"
#include "mot/model/model.hpp"

namespace mot {

namespace {

// dst[j] = src[rows[j]] for n rows of d floats.
void gather_rows(const float* src, const int32_t* rows, int64_t n, int64_t d, float* dst) {
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < n; ++j)
    std::memcpy(dst + j * d, src + static_cast<int64_t>(rows[j]) * d, sizeof(float) * d);
}

// Row-wise softmax over E logits, in place, in fp32 with exact exp: the scores decide
// which positions an expert picks, so they are computed the accurate way.
void softmax_rows(float* z, int64_t n, int64_t E) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    float* row = z + r * E;
    float mx = row[0];
    for (int64_t e = 1; e < E; ++e) mx = std::max(mx, row[e]);
    float sum = 0.0f;
    for (int64_t e = 0; e < E; ++e) sum += row[e] = std::exp(row[e] - mx);
    const float inv = 1.0f / sum;
    for (int64_t e = 0; e < E; ++e) row[e] *= inv;
  }
}

// d(logits) = p ⊙ (dp - Σ p dp), row-wise, in place over dp.
void softmax_rows_backward(const float* p, float* dp, int64_t n, int64_t E) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const float* pr = p + r * E;
    float* g = dp + r * E;
    float dot = 0.0f;
    for (int64_t e = 0; e < E; ++e) dot += pr[e] * g[e];
    for (int64_t e = 0; e < E; ++e) g[e] = pr[e] * (g[e] - dot);
  }
}

}  // namespace

// pick[e * g.k + pool.pick0 + j], j < k of the pool: the sorted rows expert e picks in
// each pool, highest score first; slot[s * E + e]: the index of s in pick, or -1. The
// order (score, then position) is total, so the result does not depend on the sort
// algorithm or on threads; a NaN score ranks last (the loss check reports the NaN; the
// sort must still see a strict weak order).
void Model::moe_choose(const MoeGroup& g, const float* prob, int32_t* pick, int32_t* slot) {
  const int64_t E = cfg_.n_experts, N = rt_.N;
  const MoePool* pools = rt_.pools.data();
  const int32_t* members = rt_.pool_rows.data();
  int32_t* order_all = ws_.moe_order;
  // Every (pool, expert) touches only its own members' slots: no races.
#pragma omp parallel for collapse(2) schedule(dynamic)
  for (int64_t p = g.pool0; p < g.pool1; ++p)
    for (int64_t e = 0; e < E; ++e) {
      const MoePool& pool = pools[p];
      const int64_t n = pool.size, k = n / E;  // capacity 1
      const int32_t* mem = members + pool.begin;
      for (int64_t i = 0; i < n; ++i) slot[static_cast<int64_t>(mem[i]) * E + e] = -1;
      if (k == 0) continue;
      int32_t* order = order_all + e * N + pool.begin;  // pool-local indices = position order
      for (int64_t i = 0; i < n; ++i) order[i] = static_cast<int32_t>(i);
      auto score = [&](int32_t i) {
        const float v = prob[static_cast<int64_t>(mem[i]) * E + e];
        return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v;
      };
      std::partial_sort(order, order + k, order + n, [&](int32_t a, int32_t b) {
        const float sa = score(a), sb = score(b);
        return sa > sb || (sa == sb && a < b);
      });
      const int64_t first = e * g.k + pool.pick0;
      for (int64_t j = 0; j < k; ++j) {
        const int32_t s = mem[order[j]];
        pick[first + j] = s;
        slot[static_cast<int64_t>(s) * E + e] = static_cast<int32_t>(first + j);
      }
    }
}

void Model::moe_forward(int l, const MoeGroup& g, const float* in, float* out) {
  const ExpertOffsets& w = table_.layers[l].experts[g.copy];
  LayerActs& a = acts_[l];
  const int64_t d = cfg_.dim, F = cfg_.ffn_hidden, E = cfg_.n_experts, n = g.end - g.begin, k = g.k;
  // Router scores for every position of the group.
  float* prob = a.moe_prob + g.begin * E;
  mm_.nt(n, E, d, in + g.begin * d, d, wmat_ + w.router, d, prob, E, 0.0f);
  softmax_rows(prob, n, E);
  // Expert choice, then each expert's SwiGLU on its gathered picks.
  int32_t* pick = a.moe_pick + g.begin;  // indices into the group's rows of X, Y, ac, g
  moe_choose(g, a.moe_prob, pick, a.moe_slot);
  float* X = ws_.moe_x + g.begin * d;
  float* Y = ws_.moe_y + g.begin * d;
  float* ac = a.ac + g.begin * 2 * F;
  float* gl = ws_.g + g.begin * F;
  gather_rows(in, pick, E * k, d, X);
  for (int64_t e = 0; e < E; ++e)
    mm_.nt(k, 2 * F, d, X + e * k * d, d, wmat_ + w.w13[e], d, ac + e * k * 2 * F, 2 * F, 0.0f);
  cpu::swiglu_forward(ac, gl, E * k, F);
  for (int64_t e = 0; e < E; ++e)
    mm_.nt(k, d, F, gl + e * k * F, F, wmat_ + w.w2[e], F, Y + e * k * d, d, 0.0f);
  // Combine, experts in a fixed order; positions no expert picked get 0.
  const float* P = a.moe_prob;
  const int32_t* slot = a.moe_slot;
#pragma omp parallel for schedule(static)
  for (int64_t s = g.begin; s < g.end; ++s) {
    float* o = out + s * d;
    std::memset(o, 0, sizeof(float) * d);
    for (int64_t e = 0; e < E; ++e) {
      const int32_t r = slot[s * E + e];
      if (r < 0) continue;
      const float p = P[s * E + e];
      const float* y = Y + static_cast<int64_t>(r) * d;
#pragma omp simd
      for (int64_t i = 0; i < d; ++i) o[i] += p * y[i];
    }
  }
}

// din (=, or += if accumulate) d/d(in) over the group's rows; weight gradients
// accumulate into grads_. With y_e = SwiGLU_e(x) and out = Σ_e p_e y_e:
//   d(y_e) = p_e dout,  d(p_e) = dout · y_e = g_e · (dout W2_e)  (so y_e is not kept).
void Model::moe_backward(int l, const MoeGroup& g, const float* in, const float* dout, float* din, bool accumulate) {
  const ExpertOffsets& w = table_.layers[l].experts[g.copy];
  const LayerActs& a = acts_[l];
  const int64_t d = cfg_.dim, F = cfg_.ffn_hidden, E = cfg_.n_experts, n = g.end - g.begin, k = g.k;
  const int32_t* pick = a.moe_pick + g.begin;
  const int32_t* slot = a.moe_slot;
  const float* P = a.moe_prob;
  const float* ac = a.ac + g.begin * 2 * F;
  float* X = ws_.moe_x + g.begin * d;
  float* D = ws_.moe_y + g.begin * d;  // d(out) at the picks, later d(x) from the experts
  float* gl = ws_.g + g.begin * F;
  float* dg = ws_.dg + g.begin * F;
  float* dac = ws_.dac + g.begin * 2 * F;
  float* dprob = ws_.moe_dprob + g.begin * E;
  gather_rows(dout, pick, E * k, d, D);
  gather_rows(in, pick, E * k, d, X);
  cpu::swiglu_forward(ac, gl, E * k, F);  // recompute g rather than keep it per layer
  for (int64_t e = 0; e < E; ++e)
    mm_.nn(k, F, d, D + e * k * d, d, wmat_ + w.w2[e], F, dg + e * k * F, F, 0.0f);
  // d(prob) of each (row, expert), 0 where not picked; then scale the pick's rows by
  // prob to get d(y) and d(g).
#pragma omp parallel for schedule(static)
  for (int64_t s = g.begin; s < g.end; ++s)
    for (int64_t e = 0; e < E; ++e) {
      const int64_t r = slot[s * E + e];
      float& dp = dprob[(s - g.begin) * E + e];
      if (r < 0) { dp = 0.0f; continue; }
      const float p = P[s * E + e];
      float* dgr = dg + r * F;
      const float* gr = gl + r * F;
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int64_t i = 0; i < F; ++i) dot += gr[i] * dgr[i];
      dp = dot;
#pragma omp simd
      for (int64_t i = 0; i < F; ++i) dgr[i] *= p;
      float* Dr = D + r * d;
#pragma omp simd
      for (int64_t i = 0; i < d; ++i) Dr[i] *= p;
    }
  for (int64_t e = 0; e < E; ++e)
    mm_.tn(d, F, k, D + e * k * d, d, gl + e * k * F, F, grads_ + w.w2[e], F, 1.0f);
  cpu::swiglu_backward(ac, dg, dac, E * k, F);
  for (int64_t e = 0; e < E; ++e) {
    const float* dac_e = dac + e * k * 2 * F;
    mm_.nn(k, d, 2 * F, dac_e, 2 * F, wmat_ + w.w13[e], d, D + e * k * d, d, 0.0f);
    mm_.tn(2 * F, d, k, dac_e, 2 * F, X + e * k * d, d, grads_ + w.w13[e], d, 1.0f);
  }
  // Router: prob = softmax(x Rᵀ). This writes (or adds to) every row of din.
  softmax_rows_backward(P + g.begin * E, dprob, n, E);
  mm_.tn(E, d, n, dprob, E, in + g.begin * d, d, grads_ + w.router, d, 1.0f);
  mm_.nn(n, d, E, dprob, E, wmat_ + w.router, d, din + g.begin * d, d, accumulate ? 1.0f : 0.0f);
  // d(x) through the experts, added in expert order.
#pragma omp parallel for schedule(static)
  for (int64_t s = g.begin; s < g.end; ++s) {
    float* o = din + s * d;
    for (int64_t e = 0; e < E; ++e) {
      const int32_t r = slot[s * E + e];
      if (r < 0) continue;
      const float* x = D + static_cast<int64_t>(r) * d;
#pragma omp simd
      for (int64_t i = 0; i < d; ++i) o[i] += x[i];
    }
  }
}

}  // namespace mot
